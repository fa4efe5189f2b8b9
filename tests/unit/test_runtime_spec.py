"""config.json validation (each error names its field), mount option parsing, `spec`'s default,
signal names and runc-style argument parsing."""

import copy

import pytest

from berth.runtime import cli, spec
from berth.runtime.container import parse_signal
from berth.runtime.errors import InvalidConfig

GOOD = spec.default_spec()
NNS = len(GOOD["linux"]["namespaces"])  # (a cgroup namespace only on a cgroup v2 host)


def check(edit, field):
    c = copy.deepcopy(GOOD)
    edit(c)
    with pytest.raises(InvalidConfig) as e:
        spec.validate(c)
    assert str(e.value).startswith(field), str(e.value)
    assert "\n" not in str(e.value)


def test_default_spec_is_valid():
    spec.validate(copy.deepcopy(GOOD))
    spec.validate(spec.default_spec(rootless=True))


def _idmapped(c, opts, maps=True):
    m = {"destination": "/data", "type": "bind", "source": "/tmp", "options": opts}
    if maps:
        m["uidMappings"] = m["gidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]
    c["mounts"].append(m)


@pytest.mark.parametrize("edit,field", [
    (lambda c: _idmapped(c, ["rbind", "idmap"], False), "mounts[7].options[1]"),
    (lambda c: _idmapped(c, ["ridmap"], False), "mounts[7].options[0]"),
    (lambda c: _idmapped(c, ["rbind"]), "mounts[7].uidMappings"),
])
def test_idmapped_mounts_are_refused_not_ignored(edit, field):
    check(edit, field)


@pytest.mark.parametrize("edit,field", [
    (lambda c: c.pop("root"), "root"),
    (lambda c: c["root"].update(readonly="yes"), "root.readonly"),
    (lambda c: c["process"].update(args=[]), "process.args"),
    (lambda c: c["process"].update(args=["sh", 1]), "process.args[1]"),
    (lambda c: c["process"].update(env=["NOEQUALS"]), "process.env[0]"),
    (lambda c: c["process"]["user"].update(uid=True), "process.user.uid"),
    (lambda c: c["process"]["user"].update(gid=-1), "process.user.gid"),
    (lambda c: c["process"]["user"].update(additionalGids=["5"]),
     "process.user.additionalGids[0]"),
    (lambda c: c["process"].update(oomScoreAdj=5000), "process.oomScoreAdj"),
    (lambda c: c["process"].update(rlimits=[{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1},
                                            {"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1}]),
     "process.rlimits[1].type"),
    (lambda c: c["mounts"].append({"destination": "rel"}), "mounts[7].destination"),
    (lambda c: c["mounts"].append({"source": "x"}), "mounts[7].destination"),
    (lambda c: c["linux"]["namespaces"].append({"type": "pid"}), f"linux.namespaces[{NNS}].type"),
    (lambda c: c["linux"]["namespaces"].append({"type": "net", "path": "/x"}),
     f"linux.namespaces[{NNS}].type"),
    (lambda c: c["linux"]["namespaces"].append({"type": "user"}), "linux.uidMappings"),
    (lambda c: c["linux"].update(uidMappings=[{"containerID": 0, "hostID": 0, "size": 1}]),
     "linux.uidMappings"),
    (lambda c: (c["linux"]["namespaces"].append({"type": "user"}), c["linux"].update(
        uidMappings=[{"containerID": 0, "hostID": 0, "size": 0}])), "linux.uidMappings[0].size"),
    (lambda c: c["linux"].update(sysctl={"net.ipv4.ip_forward": 1}),
     "linux.sysctl.net.ipv4.ip_forward"),
    (lambda c: (c["linux"].update(namespaces=[{"type": "mount"}]), c.update(hostname="h")),
     "hostname"),
    (lambda c: c["linux"].update(maskedPaths=["proc/kcore"]), "linux.maskedPaths[0]"),
    (lambda c: c["linux"].update(devices=[{"path": "/dev/x", "type": "z", "major": 1,
                                           "minor": 1}]), "linux.devices[0].type"),
    (lambda c: c["linux"]["resources"].update(devices=[{"allow": True, "access": "x"}]),
     "linux.resources.devices[0].access"),
    (lambda c: c["linux"]["resources"].update(pids={}), "linux.resources.pids.limit"),
    (lambda c: c["linux"]["resources"].update(cpu={"shares": -2}),
     "linux.resources.cpu.shares"),
    (lambda c: c["linux"].update(seccomp={"defaultAction": "SCMP_ACT_ALLOW",
                                          "architectures": ["SCMP_ARCH_Z80"]}),
     "linux.seccomp.architectures[0]"),
    (lambda c: c["linux"].update(seccomp={"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ROUGHLY"}]}]}),
     "linux.seccomp.syscalls[0].args[0].op"),
    (lambda c: c.update(hooks={"prestop": []}), "hooks.prestop"),
    (lambda c: c.update(hooks={"poststop": [{"path": "/bin/true", "timeout": 0}]}),
     "hooks.poststop[0].timeout"),
    (lambda c: c["linux"].update(cgroupsPath="a/../../b"), "linux.cgroupsPath"),
])
def test_bad_fields_are_named(edit, field):
    check(edit, field)


def test_mount_flags():
    f, p, data, _ = spec.mount_flags(["rbind", "ro", "nosuid", "rslave", "size=1m", "mode=755"])
    assert f == 0x1000 | 0x4000 | 0x1 | 0x2
    assert p == 0x80000 | 0x4000
    assert data == "size=1m,mode=755"
    f, _, _, rec = spec.mount_flags(["ro", "rw", "noexec", "exec", "nodev"])
    assert f == 0x4 and rec is None


def test_recursive_mount_options():
    # MOUNT_ATTR_RDONLY 1, NOSUID 2, NODEV 4, NOEXEC 8, atime field 0x70, NOATIME 0x10,
    # STRICTATIME 0x20, NOSYMFOLLOW 0x200000
    _, _, data, rec = spec.mount_flags(["rbind", "rro", "rnosuid", "rnodev", "size=1"])
    assert rec == (0x1 | 0x2 | 0x4, 0) and data == "size=1"
    assert spec.mount_flags(["rro", "rrw"])[3] == (0, 0x1)  # the last one wins
    assert spec.mount_flags(["rrw", "rro"])[3] == (0x1, 0)
    assert spec.mount_flags(["rnoatime"])[3] == (0x10, 0x70)
    assert spec.mount_flags(["rnoatime", "rstrictatime"])[3] == (0x20, 0x70)
    assert spec.mount_flags(["rnoatime", "ratime"])[3] == (0, 0x70)  # relatime
    assert spec.mount_flags(["rexec", "rnosymfollow"])[3] == (0x200000, 0x8)
    # none of them reaches mount(2)'s data
    assert spec.mount_flags(list(spec.RECURSIVE))[2] == ""


def test_signal_names():
    assert parse_signal("KILL") == parse_signal("SIGKILL") == parse_signal("9") == 9
    assert parse_signal("term") == 15 and parse_signal("RTMIN+2") == 36
    with pytest.raises(Exception, match="unknown signal"):
        parse_signal("NOPE")


def test_runc_style_arguments():
    opts, args = cli.parse(["--bundle=/b", "-d", "--pid-file", "/p", "id1", "extra"],
                           cli.OPTIONS["run"])
    assert opts == {"--bundle": "/b", "--detach": True, "--pid-file": "/p"}
    assert args == ["id1", "extra"]
    opts, args = cli.parse(["-e", "A=1", "--env", "B=2", "-t", "id", "sh", "-c", "x"],
                           cli.OPTIONS["exec"])
    assert opts["--env"] == ["A=1", "B=2"] and opts["--tty"] is True
    assert args == ["id", "sh", "-c", "x"]  # options stop at the first positional
    with pytest.raises(cli.UsageError, match="not defined"):
        cli.parse(["--bogus"], cli.OPTIONS["start"])
    import json

    v = {"a": [1, {"b": None}], "c": "d"}
    assert cli._pretty(v) == json.dumps(v, indent=2)


def test_features_claims_only_what_is_honoured(capsys):
    import json

    assert cli.main(["features"]) == 0
    f = json.loads(capsys.readouterr().out)
    assert f["ociVersionMin"] == "1.0.0" and f["ociVersionMax"] == "1.1.0"
    opts = f["mountOptions"]
    assert {"rro", "rnosuid", "rnosymfollow", "tmpcopyup", "symfollow", "rbind"} <= set(opts)
    # each listed option has a meaning of its own: none falls through to mount(2)'s data
    for o in opts:
        assert spec.mount_flags([o])[2] == "", o
    # idmapped mounts are not implemented: neither listed nor accepted
    assert "idmap" not in opts and "ridmap" not in opts
    assert "mountExtensions" not in f["linux"]  # (a runtime-spec 1.2 field anyway)
    sc = f["linux"]["seccomp"]
    assert "SCMP_ACT_NOTIFY" not in sc["actions"]
    assert set(sc["supportedFlags"]) <= set(sc["knownFlags"])
    assert f["linux"]["apparmor"] == {"enabled": True}  # applied at exec, as runc does
    assert f["linux"]["cgroup"]["v2"] is True


def test_sizes_as_runc_reads_them():
    for text, n in (("50M", 50 << 20), ("50MiB", 50 << 20), ("1.5g", 3 << 29), ("100", 100),
                    ("64 k", 64 << 10), ("-1", -1)):
        assert cli._bytes(text) == n, text
    for bad in ("abc", "m", "1x", "-5", "5i"):
        with pytest.raises(cli.UsageError, match="invalid size"):
            cli._bytes(bad)


def test_options_may_follow_arguments_except_for_exec():
    opts, args = cli.parse(["ct", "--memory", "1M", "--pids-limit=5"], cli.OPTIONS["update"],
                           reorder=True)
    assert opts == {"--memory": "1M", "--pids-limit": "5"} and args == ["ct"]
    opts, args = cli.parse(["-a", "ct", "9"], cli.OPTIONS["kill"], reorder=True)
    assert opts == {"--all": True} and args == ["ct", "9"]
    opts, args = cli.parse(["ct", "--", "--memory"], cli.OPTIONS["update"], reorder=True)
    assert opts == {} and args == ["ct", "--memory"]
    opts, args = cli.parse(["ct", "echo", "--memory"], cli.OPTIONS["exec"])
    assert args == ["ct", "echo", "--memory"]
