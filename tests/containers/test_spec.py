"""The OCI spec builder, capabilities and the seccomp profile: pure logic, no root."""

import pytest

from berth.engine import capabilities, oci, seccomp
from berth.errors import InvalidArgument


def build(config=None, host=None, **kw):
    args = dict(config=config or {}, host=host or {}, rootfs="/r", args=["sh"], env=[], cwd="/",
                user=(0, 0, []))
    args.update(kw)
    return oci.build(oci.SpecInput(**args))


def test_default_capabilities_are_dockers_fourteen():
    caps = build()["process"]["capabilities"]
    assert caps["bounding"] == caps["effective"] == caps["permitted"]
    assert set(caps["bounding"]) == set(capabilities.DEFAULT)
    assert len(caps["bounding"]) == 14
    assert "inheritable" not in caps and "ambient" not in caps


@pytest.mark.parametrize("add,drop,has,lacks", [
    (["NET_ADMIN"], [], ["CAP_NET_ADMIN", "CAP_CHOWN"], []),
    (["cap_sys_admin"], ["chown"], ["CAP_SYS_ADMIN"], ["CAP_CHOWN"]),
    ([], ["ALL"], [], ["CAP_CHOWN", "CAP_KILL"]),
    (["KILL"], ["all"], ["CAP_KILL"], ["CAP_CHOWN"]),
    (["ALL"], ["SYS_ADMIN"], ["CAP_SYS_MODULE", "CAP_BPF"], ["CAP_SYS_ADMIN"]),
])
def test_cap_add_drop(add, drop, has, lacks):
    caps = capabilities.effective(add, drop)
    for c in has:
        assert c in caps
    for c in lacks:
        assert c not in caps


def test_unknown_capability_is_dockers_message():
    with pytest.raises(InvalidArgument, match='unknown capability: "CAP_FOO"'):
        capabilities.effective(["foo"], [])


def test_privileged_lifts_seccomp_masks_and_devices():
    s = build(host={"Privileged": True})
    assert "seccomp" not in s["linux"]
    assert "maskedPaths" not in s["linux"]
    assert s["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert set(s["process"]["capabilities"]["bounding"]) == capabilities.available()
    sysfs = next(m for m in s["mounts"] if m["destination"] == "/sys")
    assert "ro" not in sysfs["options"]
    assert any(d["path"] == "/dev/null" for d in s["linux"]["devices"])


def test_masked_and_readonly_paths_by_default():
    s = build()
    assert "/proc/kcore" in s["linux"]["maskedPaths"]
    assert "/proc/keys" in s["linux"]["maskedPaths"]
    assert "/proc/sys" in s["linux"]["readonlyPaths"]
    sysfs = next(m for m in s["mounts"] if m["destination"] == "/sys")
    assert "ro" in sysfs["options"]


def _allowed(spec_seccomp, name):
    for r in spec_seccomp["syscalls"]:
        if name in r["names"] and r["action"] == "SCMP_ACT_ALLOW" and not r.get("args"):
            return True
    return False


def test_default_seccomp_blocks_host_wide_calls_and_allows_the_rest():
    sc = build()["linux"]["seccomp"]
    assert sc["defaultAction"] == "SCMP_ACT_ERRNO" and sc["defaultErrnoRet"] == 1
    assert sc["architectures"][:2] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]
    for name in ("read", "write", "execve", "openat", "futex", "epoll_wait", "socketpair",
                 "ptrace", "chroot", "arch_prctl", "getrandom"):
        assert _allowed(sc, name), name
    for name in ("mount", "umount2", "unshare", "setns", "reboot", "init_module", "kexec_load",
                 "bpf", "perf_event_open", "keyctl", "add_key", "swapon", "pivot_root",
                 "open_by_handle_at", "clock_settime", "userfaultfd", "io_uring_setup",
                 "syslog", "iopl"):
        assert not _allowed(sc, name), name
    clone = [r for r in sc["syscalls"] if "clone" in r["names"]]
    assert clone and all(r.get("args") for r in clone)
    clone3 = [r for r in sc["syscalls"] if "clone3" in r["names"]]
    assert clone3 == [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]


def test_seccomp_follows_capabilities():
    sc = build(host={"CapAdd": ["SYS_ADMIN", "SYS_TIME"]})["linux"]["seccomp"]
    for name in ("mount", "unshare", "setns", "clone", "clone3", "clock_settime"):
        assert _allowed(sc, name), name
    assert not [r for r in sc["syscalls"] if r["action"] != "SCMP_ACT_ALLOW"]


def test_seccomp_unconfined_and_custom_profile():
    assert "seccomp" not in build(host={"SecurityOpt": ["seccomp=unconfined"]})["linux"]
    prof = ('{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],'
            '"action":"SCMP_ACT_ERRNO"}]}')
    sc = build(host={"SecurityOpt": [f"seccomp={prof}"]})["linux"]["seccomp"]
    assert sc == {"defaultAction": "SCMP_ACT_ALLOW",
                  "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
    with pytest.raises(InvalidArgument, match="decoding seccomp profile failed"):
        build(host={"SecurityOpt": ["seccomp={nope"]})


def test_no_new_privileges_spellings():
    for opt in ("no-new-privileges", "no-new-privileges=true", "no-new-privileges:true"):
        assert build(host={"SecurityOpt": [opt]})["process"]["noNewPrivileges"] is True
    assert build()["process"]["noNewPrivileges"] is False
    with pytest.raises(InvalidArgument, match="invalid --security-opt 2"):
        build(host={"SecurityOpt": ["bogus=1"]})


def test_resources():
    s = build(host={"Memory": 32 << 20, "NanoCpus": 500_000_000, "PidsLimit": 50,
                    "CpuShares": 512, "CpusetCpus": "0", "MemorySwap": -1})
    r = s["linux"]["resources"]
    assert r["memory"] == {"limit": 32 << 20, "swap": -1}
    assert r["cpu"] == {"shares": 512, "period": 100000, "quota": 50000, "cpus": "0"}
    assert r["pids"] == {"limit": 50}
    assert oci.resources({"Memory": 10 << 20})["memory"]["swap"] == 20 << 20
    assert oci.resources({"PidsLimit": -1}) == {}


def test_user_mounts_sorted_and_replace_defaults():
    s = build(mounts=[{"destination": "/a/b/c", "type": "bind", "source": "/x", "options": []},
                      {"destination": "/a", "type": "bind", "source": "/y", "options": []},
                      {"destination": "/dev/shm", "type": "tmpfs", "source": "tmpfs",
                       "options": []}],
              etc_files={"/etc/hosts": "/h", "/etc/hostname": "/n", "/etc/resolv.conf": "/r"})
    dests = [m["destination"] for m in s["mounts"]]
    assert dests.count("/dev/shm") == 1
    assert dests.index("/a") < dests.index("/a/b/c")
    assert {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf"} <= set(dests)
    shm = next(m for m in s["mounts"] if m["destination"] == "/dev/shm")
    assert shm["type"] == "tmpfs" and shm["options"] == []


def test_network_namespaces():
    def types(s):
        return {n["type"]: n.get("path") for n in s["linux"]["namespaces"]}
    assert types(build())["network"] is None
    assert "network" not in types(build(netns="host"))
    assert types(build(netns="/run/netns/x"))["network"] == "/run/netns/x"
    assert {"pid", "ipc", "uts", "mount", "cgroup"} <= set(types(build()))


def test_init_wraps_args():
    s = build(init_binary="/usr/bin/tini-static")
    assert s["process"]["args"] == [oci.INIT_PATH, "--", "sh"]
    m = next(m for m in s["mounts"] if m["destination"] == oci.INIT_PATH)
    assert m["source"] == "/usr/bin/tini-static" and "ro" in m["options"]


def test_env_rules():
    assert oci.merge_env(["PATH=/bin", "A=1"], ["A=2", "B=3"]) == ["PATH=/bin", "A=2", "B=3"]
    assert oci.merge_env(["A=1", "B=2"], ["A"]) == ["B=2"]
    env = oci.process_env(["FOO=bar"], "abc", True, "/root")
    assert env == [f"PATH={oci.DEFAULT_PATH}", "HOSTNAME=abc", "TERM=xterm", "FOO=bar",
                   "HOME=/root"]
    assert oci.process_env(["PATH=/x", "HOME=/h"], "h", False, "/root") == \
        ["PATH=/x", "HOSTNAME=h", "HOME=/h"]


def test_seccomp_arch_conditions():
    sc = seccomp.to_oci(seccomp.DEFAULT_PROFILE, list(capabilities.DEFAULT), "aarch64")
    assert sc["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert _allowed(sc, "set_tls") and not _allowed(sc, "arch_prctl")


def test_socket_rules_have_one_condition_each():
    # Runtimes read several conditions on one argument as alternatives (runc does): a rule
    # "> AF_ALG and < AF_VSOCK" would allow every family.
    sc = build()["linux"]["seccomp"]
    sock = [r for r in sc["syscalls"] if r["names"] == ["socket"]]
    assert [(r["args"][0]["op"], r["args"][0]["value"]) for r in sock] == \
        [("SCMP_CMP_LT", 38), ("SCMP_CMP_EQ", 39), ("SCMP_CMP_GT", 40)]
    for r in sc["syscalls"]:
        idx = [a["index"] for a in r.get("args", [])]
        assert len(idx) == len(set(idx)), r
