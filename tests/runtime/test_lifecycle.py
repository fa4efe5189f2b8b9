"""The runc command line, driven as containerd drives it: create/start/state/kill/delete,
exec, ps, list, pause/resume, update, events, spec, console sockets — beside runc where the two
can be compared."""

import array
import json
import os
import signal
import socket
import subprocess
import time

import pytest

from berth.runtime import cgroups

pytestmark = [pytest.mark.root]


def cgroup_dirs(cfg: dict) -> list[str]:
    fs = cgroups.CgroupFS()
    return [p for p in cgroups.V1Manager.for_path(cfg["linux"]["cgroupsPath"], fs).paths.values()
            if os.path.isdir(p)]


def wait_status(rt, cid, want, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = rt("state", cid)
        if r.returncode == 0 and json.loads(r.stdout)["status"] == want:
            return
        time.sleep(0.02)
    raise AssertionError(f"{cid} never became {want}")


@pytest.mark.interop
def test_create_start_kill_delete_like_runc(runtimes, make_bundle, tmp_path):
    seen = {}
    for name, rt in runtimes.items():
        b = make_bundle(f"lc-{name}", ["sleep", "100"])
        b.cfg["annotations"] = {"org.berth.test": "yes"}
        b.write()
        cid = rt.new_id("lc")
        pidfile = tmp_path / f"{name}.pid"
        rt("create", "--bundle", str(b.path), "--pid-file", str(pidfile), cid, check=True)
        s1 = rt.state(cid)
        assert int(pidfile.read_text()) == s1["pid"]
        # created: the init waits for start; it is not yet the container's process
        assert b"sleep" not in open(f"/proc/{s1['pid']}/cmdline", "rb").read()
        rt("start", cid, check=True)
        s2 = rt.state(cid)
        assert open(f"/proc/{s2['pid']}/cmdline", "rb").read() == b"sleep\x00100\x00"
        r = rt("delete", cid)
        assert r.returncode == 1  # running: refused without --force
        rt("kill", cid, "KILL", check=True)
        wait_status(rt, cid, "stopped")
        s3 = rt.state(cid)
        assert rt("start", cid).returncode == 1
        rt("delete", cid, check=True)
        assert rt("state", cid).returncode == 1
        assert cgroup_dirs(b.cfg) == []
        seen[name] = [(s["status"], sorted(s)) for s in (s1, s2)] + [s3["status"]]
        assert s1["annotations"] == {"org.berth.test": "yes"}
    assert seen["berth"][:1] == seen["runc"][:1] or [x[0] for x in seen["berth"][:2]] == \
        [x[0] for x in seen["runc"][:2]]
    assert [x[0] for x in seen["berth"][:2]] == ["created", "running"]
    assert seen["berth"][2] == "stopped" == seen["runc"][2]
    # the same fields as runc's state, plus nothing unknown to it
    assert set(seen["berth"][0][1]) >= {"ociVersion", "id", "pid", "status", "bundle"}


@pytest.mark.interop
def test_run_killed_from_host_exits_128_plus_signal(runtimes, make_bundle):
    codes = {}
    for name, rt in runtimes.items():
        b = make_bundle(f"rk-{name}", ["sleep", "100"]).write()
        cid = rt.new_id("rk")
        p = subprocess.Popen([*rt.cmd, "--root", str(rt.root), "run", "--bundle", str(b.path),
                              cid], stdin=subprocess.DEVNULL)
        try:
            wait_status(rt, cid, "running")
            rt("kill", cid, "KILL", check=True)
            codes[name] = p.wait(20)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert rt("state", cid).returncode == 1  # run deletes the container after exit
    assert codes == {"berth": 137, "runc": 137}


@pytest.mark.interop
def test_exec_variants_like_runc(runtimes, make_bundle, tmp_path):
    out = {}
    for name, rt in runtimes.items():
        b = make_bundle(f"ex-{name}", ["sleep", "100"]).write()
        cid = rt.new_id("ex")
        rt("run", "--detach", "--bundle", str(b.path), cid, check=True)
        r1 = rt("exec", "--env", "FOO=bar", "--cwd", "/tmp", "--user", "1:1", cid,
                "sh", "-c", "id; pwd; echo $FOO; grep CapEff /proc/self/status; exit 3")
        proc = dict(b.cfg["process"], args=["sh", "-c", "echo from-process-json; ps -o comm"],
                    env=["PATH=/bin", "X=1"], cwd="/")
        pj = tmp_path / f"{name}-process.json"
        pj.write_text(json.dumps(proc))
        r2 = rt("exec", "--process", str(pj), cid)
        pidfile = tmp_path / f"{name}-exec.pid"
        rt("exec", "--detach", "--pid-file", str(pidfile), cid, "sleep", "30", check=True)
        epid = int(pidfile.read_text())
        assert open(f"/proc/{epid}/cmdline", "rb").read() == b"sleep\x0030\x00"
        ps = json.loads(rt("ps", "--format", "json", cid, check=True).stdout)
        assert epid in ps and rt.state(cid)["pid"] in ps
        r3 = rt("exec", cid, "/no/such/cmd")
        out[name] = (r1.returncode, r1.stdout, r2.returncode, r2.stdout, r3.returncode != 0)
        rt("delete", "--force", cid, check=True)
        assert not os.path.exists(f"/proc/{epid}/cmdline") or \
            b"sleep" not in open(f"/proc/{epid}/cmdline", "rb").read()
    assert out["berth"] == out["runc"]
    assert out["berth"][0] == 3
    assert b"uid=1(daemon) gid=1(daemon)\n/tmp\nbar\n" in out["berth"][1]


def test_ps_list_pause_resume(berth, make_bundle):
    b = make_bundle("pp", ["sleep", "100"]).write()
    cid = berth.new_id("pp")
    berth("run", "-d", "--bundle", str(b.path), cid, check=True)
    pid = berth.state(cid)["pid"]
    r = berth("ps", cid, check=True).stdout.decode().splitlines()
    assert r[0].split()[1] == "PID" and any(line.split()[1] == str(pid) for line in r[1:])
    lst = json.loads(berth("list", "--format", "json", check=True).stdout)
    assert [c["id"] for c in lst] == [cid]
    assert berth("list", "-q", check=True).stdout.decode().split() == [cid]
    table = berth("list", check=True).stdout.decode().splitlines()
    assert table[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    berth("pause", cid, check=True)
    assert berth.state(cid)["status"] == "paused"
    fz = [p for p in cgroup_dirs(b.cfg) if "/freezer/" in p][0]
    assert open(fz + "/freezer.state").read().strip() == "FROZEN"
    r = berth("exec", cid, "true")  # exec's own failures exit 255, as runc's
    assert r.returncode == 255 and b"cannot exec in a paused container" in r.stderr
    berth("resume", cid, check=True)
    assert berth.state(cid)["status"] == "running"
    assert berth("resume", cid).returncode == 1
    berth("delete", "-f", cid, check=True)
    assert cgroup_dirs(b.cfg) == []


@pytest.mark.interop
def test_update_and_events_stats(runtimes, make_bundle):
    keys = {}
    for name, rt in runtimes.items():
        b = make_bundle(f"up-{name}", ["sleep", "100"])
        b.cfg["linux"]["resources"]["memory"] = {"limit": 128 << 20}
        b.write()
        cid = rt.new_id("up")
        rt("run", "-d", "--bundle", str(b.path), cid, check=True)
        res = {"memory": {"limit": 96 << 20}, "pids": {"limit": 50},
               "cpu": {"shares": 256}}
        rt("update", "--resources", "-", cid, input=json.dumps(res).encode(), check=True)
        d = cgroups.V1Manager.for_path(b.cfg["linux"]["cgroupsPath"],
                                       cgroups.CgroupFS()).paths
        assert open(d["memory"] + "/memory.limit_in_bytes").read().strip() == str(96 << 20)
        assert open(d["pids"] + "/pids.max").read().strip() == "50"
        assert open(d["cpu"] + "/cpu.shares").read().strip() == "256"
        rt("update", "--memory", "80m", cid, check=True)
        assert open(d["memory"] + "/memory.limit_in_bytes").read().strip() == str(80 << 20)
        ev = json.loads(rt("events", "--stats", cid, check=True).stdout)
        assert ev["type"] == "stats" and ev["id"] == cid
        data = ev["data"]
        assert data["memory"]["usage"]["limit"] == 80 << 20
        assert data["memory"]["usage"]["usage"] > 0
        assert data["pids"] == {"current": 1, "limit": 50}
        assert data["cpu"]["usage"]["total"] > 0
        keys[name] = (sorted(data["memory"]["usage"]), sorted(data["pids"]),
                      "total" in data["cpu"]["usage"])
    assert keys["berth"] == keys["runc"]


def _console_server(path):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    return srv


def _recv_master(srv) -> int:
    srv.settimeout(20)
    conn, _ = srv.accept()
    fds = array.array("i")
    msg, anc, _flags, _addr = conn.recvmsg(1024, socket.CMSG_LEN(fds.itemsize))
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            fds.frombytes(data[:fds.itemsize])
    conn.close()
    assert fds, "no fd received on the console socket"
    return fds[0]


def _read_all(fd, timeout=10) -> bytes:
    import select

    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            out += chunk
    return out


@pytest.mark.interop
def test_console_socket_terminal(runtimes, make_bundle, tmp_path):
    out = {}
    for name, rt in runtimes.items():
        b = make_bundle(f"tty-{name}", ["sh", "-c", "tty; stty size; echo ok-$TERM"])
        b.cfg["process"]["terminal"] = True
        b.cfg["process"]["consoleSize"] = {"height": 30, "width": 100}
        b.write()
        cid = rt.new_id("tty")
        sock = str(tmp_path / f"{name}.sock")
        srv = _console_server(sock)
        try:
            p = subprocess.Popen([*rt.cmd, "--root", str(rt.root), "create", "--bundle",
                                  str(b.path), "--console-socket", sock, cid])
            master = _recv_master(srv)
            assert p.wait(20) == 0
            rt("start", cid, check=True)
            out[name] = _read_all(master).replace(b"\r\n", b"\n")
            os.close(master)
        finally:
            srv.close()
    assert out["berth"] == out["runc"]
    assert out["berth"].startswith(b"/dev/pts/0\n30 100\nok-xterm")


def test_spec_writes_a_config_berth_runs(berth, tmp_path, busybox_rootfs):
    import shutil

    d = tmp_path / "specb"
    d.mkdir()
    shutil.copytree(busybox_rootfs, d / "rootfs", symlinks=True)
    r = subprocess.run([*berth.cmd, "spec"], cwd=d, capture_output=True)
    assert r.returncode == 0, r.stderr
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["process"]["args"] == ["sh"] and cfg["root"]["path"] == "rootfs"
    assert subprocess.run([*berth.cmd, "spec"], cwd=d, capture_output=True).returncode == 1
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["sh", "-c", "echo spec-ok"]
    cfg["linux"]["cgroupsPath"] = f"{berth.root.name}-spec/{berth.new_id('sp')}"
    (d / "config.json").write_text(json.dumps(cfg))
    cid = berth.ids[-1]
    r = berth("run", "--bundle", str(d), cid)
    assert (r.returncode, r.stdout) == (0, b"spec-ok\n"), r.stderr
    for p in cgroups.V1Manager.for_path(cfg["linux"]["cgroupsPath"].split("/")[0],
                                        cgroups.CgroupFS()).paths.values():
        if os.path.isdir(p):
            os.rmdir(p)


def test_kill_all_and_signal_names(berth, make_bundle):
    b = make_bundle("ka", ["sh", "-c", "sleep 100 & sleep 100 & wait"]).write()
    cid = berth.new_id("ka")
    berth("run", "-d", "--bundle", str(b.path), cid, check=True)
    deadline = time.monotonic() + 10
    while len(json.loads(berth("ps", "-f", "json", cid).stdout)) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert berth("kill", cid, "NOSUCHSIG").returncode == 1
    berth("kill", "--all", cid, "SIGKILL", check=True)
    wait_status(berth, cid, "stopped")
    assert berth("kill", cid, "TERM").returncode == 1  # not running any more
    berth("delete", cid, check=True)
    assert signal.SIGKILL == 9
