"""Pure logic of the container engine: checks, mounts, users, /etc files, state, logs, paths."""

import json
import os

import pytest

from berth.engine import (
    container_state as cs,
)
from berth.engine import (
    detachkeys,
    etcfiles,
    hostconfig,
    logs,
    mounts,
    rootpath,
    users,
)
from berth.engine.archive import changes
from berth.engine.cphelper import go_mode
from berth.errors import Conflict, InvalidArgument, NotFound


@pytest.mark.parametrize("host,message", [
    ({"Memory": 1024}, "Minimum memory limit allowed is 6MB"),
    ({"MemorySwap": 10 << 20}, "You should always set the Memory limit when using Memoryswap"),
    ({"Memory": 10 << 20, "MemorySwap": 5 << 20}, "Minimum memoryswap limit should be larger"),
    ({"Memory": 10 << 20, "MemoryReservation": 20 << 20}, "can not be less than memory "
                                                          "reservation"),
    ({"NanoCpus": 3_000_000_000}, "Range of CPUs is from 0.01 to 2.00, as there are only 2 "
                                  "CPUs available"),
    ({"NanoCpus": -1}, "Range of CPUs is from 0.01 to 2.00"),
    ({"CpuPeriod": 100}, "CPU cfs period can not be less than 1ms"),
    ({"CpuQuota": 100}, "CPU cfs quota can not be less than 1ms"),
    ({"CpusetCpus": "abc"}, "Invalid value abc for cpuset cpus: invalid format: abc"),
    ({"CpusetCpus": "7"}, "Requested CPUs are not available - requested 7"),
    ({"OomScoreAdj": 2000}, "Invalid value 2000, range for oom score adj is [-1000, 1000]"),
    ({"IpcMode": "foo"}, "Invalid IPC mode: foo"),
    ({"Runtime": "nope"}, "Unknown runtime specified nope"),
    ({"RestartPolicy": {"Name": "bogus"}}, "invalid restart policy 'bogus'"),
    ({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 2}},
     "maximum retry count cannot be used with restart policy 'always'"),
    ({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": -1}},
     "maximum retry count cannot be negative"),
    ({"AutoRemove": True, "RestartPolicy": {"Name": "always"}}, "can't create 'AutoRemove'"),
    ({"CapAdd": ["bogus"]}, 'invalid CapAdd: unknown capability: "CAP_BOGUS"'),
    ({"Isolation": "hyperv"}, 'Invalid isolation: "hyperv"'),
])
def test_hostconfig_checks(host, message):
    with pytest.raises(InvalidArgument) as e:
        hostconfig.check({}, host, 2, ("runc", "berth-runtime"))
    assert message in e.value.message


def test_log_driver_and_signal():
    with pytest.raises(NotFound, match='plugin "gelf" not found'):
        hostconfig.check({}, {"LogConfig": {"Type": "gelf"}}, 2, ())
    assert hostconfig.parse_signal("SIGUSR1") == 10
    assert hostconfig.parse_signal("kill") == 9
    assert hostconfig.parse_signal("RTMIN+2") == 36
    with pytest.raises(InvalidArgument, match="Invalid signal: FOO"):
        hostconfig.parse_signal("FOO")


def test_complete_has_dockers_shape():
    c, h = hostconfig.complete({"Image": "x"}, {}, "berth-runtime")
    assert h["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert h["LogConfig"] == {"Type": "json-file", "Config": {}}
    assert h["NetworkMode"] == "default" and h["ShmSize"] == 64 << 20
    assert h["Runtime"] == "berth-runtime" and h["PortBindings"] == {}
    assert "/proc/kcore" in h["MaskedPaths"]
    assert c["Labels"] == {} and c["Env"] is None


def test_binds_parse_and_refuse():
    p = mounts.parse_bind("/src:/dst:ro,rslave")
    assert (p["Type"], p["Source"], p["Destination"], p["RW"], p["Propagation"]) == \
        ("bind", "/src", "/dst", False, "rslave")
    v = mounts.parse_bind("data:/d:nocopy")
    assert v["Type"] == "volume" and v["Name"] == "data" and v["_nocopy"]
    for spec, msg in (("/a:b", "mount path must be absolute"), ("/a:/b:zz", "invalid mode: zz"),
                      (":/x", "empty section between colons"), ("bad/name:/x",
                                                               "includes invalid characters")):
        with pytest.raises(InvalidArgument, match=msg):
            mounts.parse_bind(spec)


def test_mount_plan(tmp_path):
    pts = mounts.plan({"Volumes": {"/anon": {}}},
                      {"Binds": [f"{tmp_path}:/b"], "Tmpfs": {"/t": "size=1m"},
                       "Mounts": [{"Type": "volume", "Source": "named", "Target": "/v"}]},
                      {"/img": {}, "/b": {}})
    kinds = {p["Destination"]: p["Type"] for p in pts}
    assert kinds == {"/b": "bind", "/v": "volume", "/t": "tmpfs", "/anon": "volume",
                     "/img": "volume"}
    with pytest.raises(InvalidArgument, match="Duplicate mount point: /x"):
        mounts.plan({}, {"Binds": ["/tmp:/x"], "Tmpfs": {"/x": ""}}, None)
    with pytest.raises(InvalidArgument, match="bind source path does not exist"):
        mounts.plan({}, {"Mounts": [{"Type": "bind", "Source": str(tmp_path / "no"),
                                     "Target": "/x"}]}, None)
    with pytest.raises(InvalidArgument, match="field Source must not be specified"):
        mounts.plan({}, {"Mounts": [{"Type": "tmpfs", "Source": "/a", "Target": "/x"}]}, None)
    oci = mounts.oci_mounts(pts)
    b = next(m for m in oci if m["destination"] == "/b")
    assert b["options"] == ["rbind", "rprivate"]


def _rootfs(tmp_path):
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                      "app:x:1000:1000:app:/home/app:/bin/sh\n")
    (r / "etc" / "group").write_text("root:x:0:\nappgrp:x:1000:\nextra:x:2000:app\n")
    return r


def test_users(tmp_path):
    r = str(_rootfs(tmp_path))
    assert users.resolve(r, "") == (0, 0, [0], "/root")
    assert users.resolve(r, "app") == (1000, 1000, [1000, 2000], "/home/app")
    assert users.resolve(r, "1000:extra") == (1000, 2000, [2000], "/home/app")
    assert users.resolve(r, "4242") == (4242, 0, [0], "/")
    assert users.resolve(r, "app", ["root", "77"])[2] == [1000, 2000, 0, 77]
    with pytest.raises(InvalidArgument, match="unable to find user nobody2: no matching"):
        users.resolve(r, "nobody2")
    with pytest.raises(InvalidArgument, match="unable to find group nogrp"):
        users.resolve(r, "app:nogrp")
    with pytest.raises(InvalidArgument, match="uids and gids must be in range"):
        users.resolve(r, "99999999999")


def test_symlinks_stay_inside_the_rootfs(tmp_path):
    r = _rootfs(tmp_path)
    os.unlink(r / "etc" / "passwd")
    os.symlink("/../../../../etc/shadow", r / "etc" / "passwd")  # an escape, tried
    assert rootpath.secure_join(str(r), "/etc/passwd") == str(r / "etc" / "shadow")
    assert rootpath.read_file(str(r), "/etc/passwd") is None  # the container has none
    os.symlink("..", r / "up")
    assert rootpath.secure_join(str(r), "/up/up/etc") == str(r / "etc")
    made = rootpath.mkdir_all(str(r), "/a/b/c")
    assert made == str(r / "a" / "b" / "c") and os.path.isdir(made)


def test_etc_files(tmp_path):
    host = tmp_path / "resolv.conf"
    host.write_text("nameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch corp\n"
                    "options ndots:2\n")
    assert etcfiles.resolv_conf("none", None, None, None, str(host)) == \
        "nameserver 10.0.0.2\nsearch corp\noptions ndots:2\n"
    host.write_text("nameserver 127.0.0.53\n")
    assert etcfiles.resolv_conf("default", None, None, None, str(host)) == \
        "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    assert etcfiles.resolv_conf("host", None, None, None, str(host)) == "nameserver 127.0.0.53\n"
    assert etcfiles.resolv_conf("none", ["1.1.1.1"], ["."], None, str(host)) == \
        "nameserver 1.1.1.1\n"
    h = etcfiles.hosts("bridge", "box", "", ["172.20.0.2"], ["db:10.0.0.9"])
    assert h.startswith("127.0.0.1\tlocalhost\n")
    assert h.endswith("172.20.0.2\tbox\n10.0.0.9\tdb\n")


def test_state_transitions():
    s = cs.new_state()
    assert cs.can_start(s) and not cs.can_kill(s) and cs.can_delete(s)
    s = cs.transition(s, "start", "c1", pid=42)
    assert s["Status"] == "running" and s["Running"] and s["Pid"] == 42
    assert not cs.can_start(s) and cs.can_kill(s) and not cs.can_delete(s)
    assert cs.can_delete(s, force=True)
    with pytest.raises(Conflict, match="is already running"):
        cs.transition(s, "start", "c1")
    p = cs.transition(s, "pause", "c1")
    with pytest.raises(Conflict, match="already paused"):
        cs.transition(p, "pause", "c1")
    e = cs.transition(s, "exit", "c1", exit_code=137, oom_killed=True)
    # the shim's times of both ends, when it gives them: a quick exit is never before its start
    q = cs.transition(dict(s, StartedAt="2026-12-01T07:00:00.5Z"), "exit", "c1",
                      started_at="2026-12-01T07:00:00.2Z", finished_at="2026-12-01T07:00:00.3Z")
    assert (q["StartedAt"], q["FinishedAt"]) == ("2026-12-01T07:00:00.2Z",
                                                 "2026-12-01T07:00:00.3Z")
    assert (e["Status"], e["ExitCode"], e["OOMKilled"], e["Pid"]) == ("exited", 137, True, 0)
    assert cs.status_text(e).startswith("Exited (137) ")
    assert cs.status_text(cs.new_state()) == "Created"
    assert cs.human_duration(0.5) == "Less than a second"
    assert cs.human_duration(90) == "About a minute"


def test_log_reading(tmp_path):
    p = tmp_path / "c-json.log"
    recs = [{"log": f"line {i}\n", "stream": "stdout" if i % 2 else "stderr",
             "time": f"2026-12-01T07:00:0{i}.5Z"} for i in range(5)]
    p.write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"log": "partial')
    got, _ino, off = logs.read_records(str(p))
    assert [g[1] for g in got] == [f"line {i}\n".encode() for i in range(5)]
    assert off == p.read_bytes().rfind(b"\n") + 1
    assert [g[1] for g in logs.read_records(str(p), tail=2)[0]] == [b"line 3\n", b"line 4\n"]
    since = logs.parse_time_ns("2026-12-01T07:00:03Z")
    assert len(logs.read_records(str(p), since_ns=since)[0]) == 2
    assert logs.format_time(logs.parse_time_ns("2026-12-01T07:00:03.5Z")) == \
        "2026-12-01T07:00:03.5Z"


def test_detach_keys():
    assert detachkeys.parse_detach_keys("") == b"\x10\x11"
    assert detachkeys.parse_detach_keys("ctrl-a,x") == b"\x01x"
    with pytest.raises(InvalidArgument, match="Invalid detach keys"):
        detachkeys.parse_detach_keys("ctrl-zz")


@pytest.mark.root  # a whiteout is a 0/0 character device: mknod needs CAP_MKNOD
def test_changes_of_an_upper_dir(tmp_path):
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc" / "group").write_text("g")
    (lower / "etc" / "passwd").write_text("p")
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "passwd").write_text("p2")
    os.mknod(upper / "etc" / "group", 0o600 | 0o020000, os.makedev(0, 0))  # a whiteout
    (upper / "etc" / "hosts").write_text("mount point")
    (upper / "new").mkdir()
    (upper / "new" / "f").write_text("x")
    got = changes(str(upper), [str(lower)], {"/etc/hosts"})
    assert got == [{"Path": "/etc", "Kind": 0}, {"Path": "/etc/group", "Kind": 2},
                   {"Path": "/etc/passwd", "Kind": 0}, {"Path": "/new", "Kind": 1},
                   {"Path": "/new/f", "Kind": 1}]


def test_go_file_modes():
    assert go_mode(0o40755) == (1 << 31) | 0o755
    assert go_mode(0o100644) == 0o644
    assert go_mode(0o120777) == (1 << 27) | 0o777
    assert go_mode(0o104755) == (1 << 23) | 0o755


def test_cli_rows():
    from berth.cli.containers import _go_quote, format_ports, ps_rows, stats_row

    rows = ps_rows([{"Id": "a" * 64, "Names": ["/web"], "Image": "busybox",
                     "Command": "sh -c 'while true; do sleep 1; done'", "Created": 0,
                     "Ports": [], "State": "running", "Status": "Up 2 hours"}], False)
    assert rows[0]["ID"] == "a" * 12 and rows[0]["Names"] == "web"
    assert rows[0]["Command"] == '"sh -c \'while true; …"'  # 20 characters, as docker ps
    assert _go_quote('a"b') == '"a\\"b"'
    assert format_ports([{"PrivatePort": 80, "PublicPort": 8080, "IP": "0.0.0.0",
                          "Type": "tcp"}, {"PrivatePort": 53, "Type": "udp"}]) == \
        "53/udp, 0.0.0.0:8080->80/tcp"
    s = {"id": "b" * 64, "name": "/x", "read": "2026-12-01T00:00:01Z",
         "cpu_stats": {"cpu_usage": {"total_usage": 2_000_000}, "system_cpu_usage": 20_000_000,
                       "online_cpus": 2},
         "precpu_stats": {"cpu_usage": {"total_usage": 1_000_000},
                          "system_cpu_usage": 10_000_000},
         "memory_stats": {"usage": 3 << 20, "limit": 100 << 20,
                          "stats": {"total_inactive_file": 1 << 20}},
         "pids_stats": {"current": 3}, "networks": {"eth0": {"rx_bytes": 1500, "tx_bytes": 0}},
         "blkio_stats": {"io_service_bytes_recursive": [{"op": "Read", "value": 4096}]}}
    r = stats_row(s, None, False)
    assert r["CPUPerc"] == "20.00%" and r["MemUsage"] == "2MiB / 100MiB"
    assert r["MemPerc"] == "2.00%" and r["NetIO"] == "1.5kB / 0B" and r["BlockIO"] == "4.1kB / 0B"
    assert r["PIDs"] == "3" and r["Name"] == "x"
