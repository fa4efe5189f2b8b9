"""config.json cases that opencontainers/runtime-tools' validation suite drives and that a
plain busybox bundle does not: namespaces joined by path (right and wrong type), no mount
namespace at all, a seccomp profile that allows only what runc itself needs after loading it,
non-default rootfs propagation, and resources whose controller this host lacks. Each runs
under berth-runtime and under runc where runc can run it without harming the host.
"""

import os
import subprocess
import time

import pytest

from .conftest import run_both
from .test_compare_runc import _userns

pytestmark = [pytest.mark.root, pytest.mark.interop]


def _ok(res: dict) -> tuple[str, str]:
    for name in ("runc", "berth"):
        r = res[name]
        assert r.returncode == 0, f"{name} failed ({r.returncode}): {r.stderr!r}"
    return res["berth"].stdout.decode(), res["runc"].stdout.decode()


def _empty(root) -> bool:
    return not root.exists() or not any(root.iterdir())


@pytest.mark.parametrize("nnp", [False, True], ids=["seccomp-early", "seccomp-late"])
def test_seccomp_profile_without_close_range(runtimes, make_bundle, nnp):
    """Profiles written before close_range(2) existed (runtime-tools', older Docker's) deny
    it; what the runtime does after loading the filter must not need it."""

    def edit(cfg, b):
        cfg["process"]["noNewPrivileges"] = nnp
        cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["close_range"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}

    res = run_both(runtimes, make_bundle, edit, ["sh", "-c", "grep ^Seccomp: /proc/self/status"],
                   "scr")
    b, r = _ok(res)
    assert b == r == "Seccomp:\t2\n"


def _child_of(pid: int) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                kids = f.read().split()
            if kids:
                return int(kids[0])
        except OSError:
            pass
        time.sleep(0.01)
    raise AssertionError("unshare did not start its child")


@pytest.fixture
def unshare():
    """unshare() -> pid of a process in a mount, ipc and uts namespace of its own
    (util-linux unshare forks the sleep once it has made them)."""
    procs = []

    def start() -> int:
        p = subprocess.Popen(["unshare", "--mount", "--ipc", "--uts", "--fork", "sleep", "300"],
                             start_new_session=True)
        procs.append(p)
        return _child_of(p.pid)

    try:
        yield start
    finally:
        for p in procs:
            os.killpg(p.pid, 9)
            p.wait()


@pytest.fixture
def unshared(unshare):
    return unshare()


def test_join_mount_namespace_by_path(runtimes, make_bundle, unshare):
    """A mount namespace joined by path is where the container's rootfs is built (runc does
    the same; pivot_root then moves the namespace's other processes too, so each runtime
    gets a namespace of its own): the container is in it, with its own /proc."""
    want = {}

    def edit(cfg, b):
        pid = unshare()
        want[b.path.name] = os.readlink(f"/proc/{pid}/ns/mnt")
        for n in cfg["linux"]["namespaces"]:
            if n["type"] == "mount":
                n["path"] = f"/proc/{pid}/ns/mnt"

    res = run_both(runtimes, make_bundle, edit,
                   ["sh", "-c", "readlink /proc/self/ns/mnt; cat /proc/1/comm; true"], "mj")
    b, r = _ok(res)
    assert b == f"{want['bundle-mj-berth']}\nsh\n"
    assert r == f"{want['bundle-mj-runc']}\nsh\n"


@pytest.mark.parametrize("typ,ns", [("ipc", "net"), ("network", "mnt"), ("uts", "ipc"),
                                    ("mount", "uts")])
def test_namespace_path_of_another_type_is_refused(runtimes, make_bundle, unshared, typ, ns):
    path = f"/proc/{unshared}/ns/{ns}"

    def edit(cfg, b):
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"]
                                      if n["type"] != typ] + [{"type": typ, "path": path}]

    res = run_both(runtimes, make_bundle, edit, ["true"], "wt")
    assert res["runc"].returncode != 0
    b = res["berth"]
    assert b.returncode == 1
    msg = b.stderr.decode()
    assert "linux.namespaces[" in msg and f"not {typ}" in msg and path in msg, msg
    assert msg.count("\n") == 1
    assert _empty(runtimes["berth"].root)  # nothing was made


def test_no_mount_namespace(berth, make_bundle):
    """With no mount namespace the container shares the host's, chrooted into its rootfs,
    and nothing is mounted on the host (runc would mount the config's mounts in the host's
    namespace and leave them there after delete, so it is not run here)."""
    b = make_bundle("nomnt", ["sh", "-c", "ls /bin/busybox; readlink /proc/self/ns/mnt"])

    def ours() -> list[str]:
        # other work on this host mounts and unmounts too: look only at the bundle's paths
        return [m for m in open("/proc/self/mountinfo").read().splitlines()
                if str(b.path) in m]

    before = ours()
    b.cfg["linux"]["namespaces"] = [n for n in b.cfg["linux"]["namespaces"]
                                    if n["type"] not in ("mount", "uts")]
    b.cfg.pop("hostname", None)
    b.cfg["linux"].pop("maskedPaths", None)
    b.cfg["linux"].pop("readonlyPaths", None)
    b.write()
    cid = berth.new_id("nomnt")
    r = berth("create", "--bundle", str(b.path), cid)
    assert r.returncode == 0, r.stderr
    st = berth.state(cid)
    assert st["status"] == "created" and st["pid"] > 0
    assert os.readlink(f"/proc/{st['pid']}/ns/mnt") == os.readlink("/proc/self/ns/mnt")
    assert os.readlink(f"/proc/{st['pid']}/root") == str(b.rootfs)
    berth("start", cid, check=True)
    deadline = time.monotonic() + 10
    while berth.state(cid)["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.02)
    berth("delete", cid, check=True)
    assert ours() == before


@pytest.mark.parametrize("prop", ["shared", "rshared", "slave", "private"])
def test_rootfs_propagation(runtimes, make_bundle, prop):
    def edit(cfg, b):
        cfg["linux"]["rootfsPropagation"] = prop

    res = run_both(runtimes, make_bundle, edit, ["sh", "-c", "echo in"], f"rp{prop[:2]}")
    b, r = _ok(res)
    assert b == r == "in\n"


def test_network_resources_need_their_controller(runtimes, make_bundle):
    from berth.runtime import cgroups

    fs = cgroups.CgroupFS()
    if fs.mode() == "unified" or "net_cls" in fs.v1:
        pytest.skip("needs a v1 host without the net_cls hierarchy")

    def edit(cfg, b):
        cfg["linux"]["resources"]["network"] = {"classID": 1048577}

    made = {}

    def edit_and_remember(cfg, b):
        edit(cfg, b)
        made[b.path.name] = cfg["linux"]["cgroupsPath"]

    res = run_both(runtimes, make_bundle, edit_and_remember, ["true"], "net")
    assert res["runc"].returncode != 0
    b = res["berth"]
    assert b.returncode == 1
    assert b"linux.resources.network.classID needs the net_cls controller" in b.stderr
    assert _empty(runtimes["berth"].root)
    path = made["bundle-net-berth"]
    for p in cgroups.V1Manager.for_path(path, fs).paths.values():
        assert not os.path.exists(p), p


def test_read_only_dev_with_devpts_below(runtimes, make_bundle):
    """A read-only /dev tmpfs is made read-only after the nodes and /dev/pts go in it."""
    def edit(cfg, b):
        for m in cfg["mounts"]:
            if m["destination"] == "/dev":
                m["options"].append("ro")

    res = run_both(runtimes, make_bundle, edit, ["sh", "-c", "grep '^tmpfs /dev ' /proc/mounts;"
                                                 " test -c /dev/null && ls /dev/pts/ptmx"],
                   "rodev")
    b, r = _ok(res)
    assert b.split()[3].startswith("ro,") and r.split()[3].startswith("ro,")
    assert b.splitlines()[1:] == r.splitlines()[1:] == ["/dev/pts/ptmx"]


def test_no_pivot_hides_the_host_proc(runtimes, make_bundle):
    """With --no-pivot the host's /proc must not stay reachable: a nested user namespace can
    then not mount a fresh procfs (and write /proc/sysrq-trigger through it)."""
    out = {}
    for name, rt in runtimes.items():
        b = make_bundle(f"np-{name}", ["unshare", "-mrpf", "sh", "-c",
                                       "mount -t proc none /proc && echo mounted"])
        caps = b.cfg["process"]["capabilities"]
        for k in ("bounding", "permitted"):
            caps[k].append("CAP_SETFCAP")
        b.write()
        out[name] = rt("run", "--no-pivot", "--bundle", str(b.path), rt.new_id("np"))
    for name, r in out.items():
        assert r.returncode == 1, (name, r.stdout, r.stderr)
        assert b"mounted" not in r.stdout, name
        assert b"permission denied" in (r.stdout + r.stderr).lower(), (name, r.stderr)


@pytest.fixture
def closed_dir(tmp_path):
    """A directory only the host's root may enter, holding dir/foo.txt."""
    d = tmp_path / "closed"
    (d / "dir").mkdir(parents=True)
    (d / "dir" / "foo.txt").write_text("x")
    d.chmod(0o700)
    return d / "dir"


def test_user_namespace_binds_a_source_only_host_root_can_reach(runtimes, make_bundle,
                                                                 mapped_rootfs, closed_dir):
    from pathlib import Path

    def edit(cfg, b):
        _userns(cfg, b)
        cfg["mounts"].append({"source": str(closed_dir), "destination": "/mnt/closed",
                              "options": ["bind"]})

    res = run_both(runtimes, make_bundle, edit, ["ls", "/mnt/closed"], "ub",
                   rootfs=Path(mapped_rootfs))
    b, r = _ok(res)
    assert b == r == "foo.txt\n"


def test_stdio_belongs_to_the_process_user(runtimes, make_bundle):
    """As runc: the stdio the process is given is chowned to its uid (so that it can reopen
    /proc/self/fd/1 or use its terminal); /dev/null is left alone."""
    def edit(cfg, b):
        cfg["process"]["user"] = {"uid": 1000, "gid": 100}

    res = run_both(runtimes, make_bundle, edit,
                   ["sh", "-c", "stat -L -c %u /proc/self/fd/1 /proc/self/fd/2 /dev/null"],
                   "so")
    b, r = _ok(res)
    assert b == r == "1000\n1000\n0\n"


def test_start_container_hook_runs_under_the_filter(runtimes, make_bundle):
    def edit(cfg, b):
        cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                   "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_KILL"}]}
        cfg["hooks"] = {"startContainer": [{"path": "/bin/sh",
                                            "args": ["sh", "-c", "mkdir /tmp/x"]}]}

    res = run_both(runtimes, make_bundle, edit, ["true"], "sch")
    for name, r in res.items():
        assert r.returncode != 0, name
        text = (r.stdout + r.stderr).decode()
        assert "error running hook" in text and "bad system call" in text, (name, text)
    assert res["berth"].stderr.count(b"\n") == 1


ENOSYS_PROBE = r"""
#include <errno.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
    long a = syscall(1000, 0, 0, 0);          /* beyond every syscall the profile names */
    int ea = errno;
    long b = syscall(SYS_getppid);            /* named, allowed */
    long c = syscall(SYS_kcmp, 0, 0, 0, 0, 0); /* known, not named: the default action */
    int ec = errno;
    printf("%ld %d %d %ld %d\n", a, ea, b > 0 || b == 0, c, ec);
    return 0;
}
"""


@pytest.fixture(scope="module")
def enosys_probe(tmp_path_factory):
    import shutil

    if not shutil.which("gcc"):
        pytest.skip("gcc is needed to build the probe")
    d = tmp_path_factory.mktemp("probe")
    (d / "p.c").write_text(ENOSYS_PROBE)
    r = subprocess.run(["gcc", "-static", "-O1", "-o", str(d / "probe"), str(d / "p.c")],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot build a static probe: {r.stderr[-200:]!r}")
    return d / "probe"


def test_syscall_newer_than_the_profile_gets_enosys(runtimes, make_bundle, enosys_probe):
    """runc's -ENOSYS stub: a syscall above every one the profile names gets ENOSYS (so libc
    falls back), a known one the profile leaves out gets the default action (EPERM)."""
    import shutil

    names = ["read", "write", "exit", "exit_group", "brk", "mmap", "munmap", "arch_prctl",
             "set_tid_address", "set_robust_list", "rseq", "prlimit64", "readlinkat",
             "getrandom", "mprotect", "uname", "newfstatat", "fstat", "ioctl", "getppid",
             "execve", "close", "openat", "futex", "rt_sigaction", "rt_sigprocmask",
             "capget", "capset", "prctl", "setgroups", "setresuid", "setresgid", "chdir",
             "umask", "getpid", "fcntl", "lseek", "access", "fstatfs", "statfs",
             "getdents64", "sched_yield", "nanosleep", "sigaltstack", "rt_sigreturn",
             "gettid", "tgkill", "madvise", "clone", "epoll_pwait", "epoll_ctl", "pipe2",
             "dup3", "faccessat2", "getcwd", "write"]

    def edit(cfg, b):
        cfg["root"]["readonly"] = False
        shutil.copy(enosys_probe, b.rootfs / "probe")
        cfg["process"]["noNewPrivileges"] = True
        cfg["linux"]["seccomp"] = {
            "defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]}

    res = run_both(runtimes, make_bundle, edit, ["/probe"], "nosys", copy_rootfs=True)
    b, r = _ok(res)
    assert b == r == "-1 38 1 -1 1\n"  # ENOSYS, then EPERM for kcmp


def test_lsm_settings_this_host_cannot_honour_fail(runtimes, make_bundle):
    """An AppArmor profile on a host without AppArmor, a mount label without SELinux: the
    container is refused (as by runc), never started unconfined."""
    if os.path.isdir("/sys/kernel/security/apparmor") or os.path.isdir("/sys/fs/selinux"):
        pytest.skip("a host without AppArmor and SELinux")
    for edit, says in (
            (lambda c, b: c["process"].update(apparmorProfile="berth-test"),
             b"unable to apply apparmor profile"),
            (lambda c, b: c["linux"].update(mountLabel="system_u:object_r:svirt_sandbox_file_t:s0"),
             b"invalid argument")):
        res = run_both(runtimes, make_bundle, edit, ["true"], f"lsm{len(says)}")
        for name, r in res.items():
            assert r.returncode != 0, name
            assert says in r.stderr.lower(), (name, r.stderr)


@pytest.mark.parametrize("arg0,says", [("/etc/passwd", b"permission denied"),
                                       ("/etc", b"permission denied"),
                                       ("/no/such", b"no such file or directory"),
                                       ("nosuchcmd", b"executable file not found in $PATH")])
def test_process_that_cannot_be_executed(runtimes, make_bundle, arg0, says):
    """runc's words (Go's LookPath), which docker turns into exit codes 126 and 127."""
    res = run_both(runtimes, make_bundle, None, [arg0], "nx")
    for name, r in res.items():
        assert r.returncode != 0, name
        assert says in r.stderr, (name, r.stderr)
        assert f'exec: "{arg0}"'.encode() in r.stderr.replace(b'\\"', b'"'), (name, r.stderr)
