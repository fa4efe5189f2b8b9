"""The same bundle under berth-runtime and under runc: what the container sees must match.

Each case edits runc's default config, runs one busybox script in it under both runtimes and
compares exit status and output (normalised only where the two legitimately differ, such as
mount ids). Each case also checks the expected value itself, so that a bug both runtimes
shared would not pass unnoticed.
"""

import os
import subprocess
import uuid

import pytest

from .conftest import run_both

pytestmark = [pytest.mark.root, pytest.mark.interop]


def norm_mountinfo(text: str) -> list[tuple]:
    out = []
    for line in text.splitlines():
        a = line.split()
        if len(a) < 10 or "-" not in a:
            continue
        sep = a.index("-")
        fstype = a[sep + 1]
        supers = "" if fstype.startswith("cgroup") else a[sep + 3]
        out.append((a[4], fstype, a[5], supers))
    return sorted(out)


def both_ok(res: dict) -> tuple[str, str]:
    b, r = res["berth"], res["runc"]
    assert r.returncode == 0, f"runc failed: {r.stderr!r}"
    assert b.returncode == 0, f"berth-runtime failed: {b.stderr!r}"
    return b.stdout.decode(), r.stdout.decode()


def test_default_spec_isolation(runtimes, make_bundle):
    script = ("cat /proc/self/status | grep -E '^(Cap|NoNewPrivs|Seccomp)'; id; hostname; "
              "ls /; cat /proc/1/cmdline; echo; set -- /proc/[0-9]*; echo $#; "
              "ls -l /dev | awk '{print $1, $5, $6, $NF}'; readlink /proc/self/ns/pid")
    res = run_both(runtimes, make_bundle, None, ["sh", "-c", script], "iso")
    b, r = both_ok(res)
    bl, rl = b.splitlines(), r.splitlines()
    # The pid namespace inode differs by nature: compare all lines but the last.
    assert bl[:-1] == rl[:-1]
    assert "CapEff:\t0000000020000420" in bl
    assert "NoNewPrivs:\t1" in bl
    assert "uid=0(root) gid=0(root)" in bl
    assert bl[bl.index("runc") - 1 if "runc" in bl else 0]  # hostname printed
    # pid 1 is the process itself, and only the container's processes are visible.
    assert any(line.startswith("sh-c") or line.startswith("sh\x00") or "sh" in line
               for line in bl)
    assert bl[-1] != os.readlink("/proc/self/ns/pid")
    assert "1" in bl  # the shell, pid 1, is the only process it can see


def test_mountinfo_matches(runtimes, make_bundle):
    res = run_both(runtimes, make_bundle, None, ["cat", "/proc/self/mountinfo"], "mnt")
    b, r = both_ok(res)
    nb, nr = norm_mountinfo(b), norm_mountinfo(r)
    assert nb == nr
    assert ("/", "ext4", "ro,relatime", nb[0][3]) in nb or any(m[0] == "/" and
                                                                  m[2].startswith("ro")
                                                                  for m in nb)
    assert any(m[0] == "/proc/keys" for m in nb)  # masked
    assert any(m[0] == "/proc/sys" and m[2].startswith("ro") for m in nb)  # read-only


def _user(cfg, b):
    cfg["process"]["user"] = {"uid": 1, "gid": 1, "additionalGids": [65534, 5],
                              "umask": 0o027}


def test_user_groups_umask(runtimes, make_bundle):
    res = run_both(runtimes, make_bundle, _user, ["sh", "-c", "id; umask; echo $HOME"], "usr")
    b, r = both_ok(res)
    assert b == r
    assert "uid=1(daemon) gid=1(daemon) groups=5,65534(nogroup)" in b or "uid=1" in b
    assert "0027" in b


def _caps(cfg, b):
    caps = ["CAP_CHOWN", "CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_KILL"]
    cfg["process"]["capabilities"] = {"bounding": caps, "effective": caps[:2],
                                      "permitted": caps, "inheritable": caps[1:3],
                                      "ambient": ["CAP_NET_ADMIN"]}
    cfg["process"]["noNewPrivileges"] = False


def test_capability_sets(runtimes, make_bundle):
    res = run_both(runtimes, make_bundle, _caps,
                   ["sh", "-c", "grep -E '^(Cap|NoNewPrivs)' /proc/self/status"], "cap")
    b, r = both_ok(res)
    assert b == r
    assert "NoNewPrivs:\t0" in b
    assert "CapBnd:\t0000000000201021" in b  # chown(0) kill(5) net_admin(12) sys_admin(21)


def _rlimits(cfg, b):
    cfg["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456},
                                 {"type": "RLIMIT_NPROC", "soft": 77, "hard": 88},
                                 {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]


def test_rlimits(runtimes, make_bundle):
    res = run_both(runtimes, make_bundle, _rlimits, ["sh", "-c", "cat /proc/self/limits"],
                   "rl")
    b, r = both_ok(res)
    assert b == r
    assert any(line.startswith("Max open files") and "123" in line and "456" in line
               for line in b.splitlines())


def _seccomp(cfg, b):
    cfg["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            # chmod to exactly 0777 is refused (EPERM); other modes pass.
            {"names": ["chmod"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 1, "value": 0o777, "op": "SCMP_CMP_EQ"}]},
            {"names": ["fchmodat"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 2, "value": 0o777, "op": "SCMP_CMP_EQ"}]},
            {"names": ["no_such_syscall_xyz"], "action": "SCMP_ACT_ERRNO"},
        ]}


def test_seccomp_errno_and_args(runtimes, make_bundle):
    script = ("{ grep -E '^Seccomp' /proc/self/status; mkdir /tmp/d; echo mkdir=$?; "
              "touch /tmp/f; chmod 755 /tmp/f; echo c755=$?; chmod 777 /tmp/f; echo c777=$?; }")

    def edit(cfg, b):
        _seccomp(cfg, b)
        cfg["root"]["readonly"] = False
        cfg["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"})

    res = run_both(runtimes, make_bundle, edit, ["sh", "-c", script + " 2>&1"], "sc")
    b, r = both_ok(res)
    assert b == r
    assert "Seccomp:\t2" in b
    assert "Permission denied" in b and "mkdir=1" in b
    assert "c755=0" in b and "c777=1" in b


def test_seccomp_kill_process(runtimes, make_bundle):
    def edit(cfg, b):
        cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}]}

    # busybox sh asks getppid() for $PPID as it starts: the kernel kills it with SIGSYS.
    res = run_both(runtimes, make_bundle, edit, ["sh", "-c", "echo $PPID"], "sk")
    assert res["runc"].returncode == 128 + 31
    assert res["berth"].returncode == 128 + 31


def _readonly_rw(cfg, b):
    cfg["root"]["readonly"] = False


@pytest.mark.parametrize("readonly", [True, False])
def test_readonly_root(runtimes, make_bundle, readonly):
    def edit(cfg, b):
        cfg["root"]["readonly"] = readonly

    res = run_both(runtimes, make_bundle, edit,
                   ["sh", "-c", "touch /etc/berth-ro-probe 2>&1; echo rc=$?; "
                                "rm -f /etc/berth-ro-probe"], "ro", copy_rootfs=True)
    b, r = both_ok(res)
    assert b == r
    assert ("rc=1" in b) == readonly


def _names(cfg, b):
    cfg["hostname"] = "box-one"
    cfg["domainname"] = "example.test"
    cfg["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmax": "123456789"}


def test_hostname_domainname_sysctl(runtimes, make_bundle):
    res = run_both(runtimes, make_bundle, _names,
                   ["sh", "-c", "hostname; cat /proc/sys/kernel/domainname; "
                                "cat /proc/sys/net/ipv4/ip_forward; cat /proc/sys/kernel/shmmax"],
                   "uts")
    b, r = both_ok(res)
    # runc 1.1 predates domainname (runtime-spec 1.1): it leaves "(none)"; the rest must match.
    bl, rl = b.split(), r.split()
    assert bl[:1] + bl[2:] == rl[:1] + rl[2:]
    assert bl == ["box-one", "example.test", "1", "123456789"]


def _limits(cfg, b):
    cfg["linux"]["resources"].update({
        "memory": {"limit": 64 << 20, "reservation": 32 << 20},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"},
        "pids": {"limit": 32}})


def test_cgroup_limits_seen_inside(runtimes, make_bundle):
    script = ("cd /sys/fs/cgroup; cat memory/memory.limit_in_bytes "
              "memory/memory.soft_limit_in_bytes cpu/cpu.shares cpu/cpu.cfs_quota_us "
              "cpu/cpu.cfs_period_us cpuset/cpuset.cpus pids/pids.max")
    res = run_both(runtimes, make_bundle, _limits, ["sh", "-c", script], "cg")
    b, r = both_ok(res)
    assert b == r
    assert b.split() == [str(64 << 20), str(32 << 20), "512", "50000", "100000", "0", "32"]


def test_pids_limit_enforced(runtimes, make_bundle):
    def edit(cfg, b):
        cfg["linux"]["resources"]["pids"] = {"limit": 5}

    script = "for i in 1 2 3 4 5 6 7 8; do sleep 5 & done 2>/dev/null; wait; echo done"
    res = run_both(runtimes, make_bundle, edit, ["sh", "-c", script], "pl")
    assert res["berth"].returncode == res["runc"].returncode


@pytest.mark.parametrize("script,code", [("exit 0", 0), ("exit 42", 42),
                                         ("kill -9 $$", 0), ("sh -c 'kill -9 $$'; exit $?", 137),
                                         ("nonexistent-cmd", 127)])
def test_exit_codes(runtimes, make_bundle, script, code):
    # pid 1 of a namespace gets no signal from inside it that it has no handler for, not even
    # SIGKILL; its child dies by it (137). A kill from the host is in test_lifecycle.
    res = run_both(runtimes, make_bundle, None, ["sh", "-c", script], "ex")
    assert res["runc"].returncode == code
    assert res["berth"].returncode == code


def test_exec_not_found_fails_create(runtimes, make_bundle):
    res = run_both(runtimes, make_bundle, None, ["/no/such/binary"], "nf")
    assert res["runc"].returncode != 0
    assert res["berth"].returncode != 0
    assert b"no such file" in res["berth"].stderr.lower()


def _userns(cfg, b):
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    cfg["linux"]["resources"] = {}
    # In a user namespace sysfs can only be bind-mounted, and cgroupfs is left out.
    cfg["mounts"] = [m for m in cfg["mounts"] if m["type"] not in ("cgroup", "sysfs")]


def test_user_namespace(runtimes, make_bundle, mapped_rootfs):
    from pathlib import Path

    res = run_both(runtimes, make_bundle, _userns, rootfs=Path(mapped_rootfs), args=
                   ["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id; "
                                "grep CapEff /proc/self/status"], name="un")
    b, r = both_ok(res)
    assert b == r
    assert "100000" in b and "uid=0(root)" in b


@pytest.fixture
def netns():
    name = f"berth-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield f"/var/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_join_network_namespace_by_path(runtimes, make_bundle, netns):
    def edit(cfg, b):
        for n in cfg["linux"]["namespaces"]:
            if n["type"] == "network":
                n["path"] = netns

    res = run_both(runtimes, make_bundle, edit, ["sh", "-c", "stat -L -c %i /proc/self/ns/net"],
                   "nj")
    b, r = both_ok(res)
    assert b == r
    assert int(b) == os.stat(netns).st_ino


def _devices(cfg, b):
    cfg["linux"]["devices"] = [{"path": "/dev/berthnull", "type": "c", "major": 1, "minor": 3,
                                "fileMode": 0o606, "uid": 1, "gid": 1}]
    cfg["linux"]["resources"]["devices"] = [{"allow": False, "access": "rwm"}]


def test_devices(runtimes, make_bundle):
    script = ("ls -ln /dev/berthnull /dev/null /dev/zero /dev/full /dev/tty /dev/random "
              "/dev/urandom | awk '{print $1,$3,$4,$5,$6,$NF}'; readlink /dev/fd /dev/stdin "
              "/dev/ptmx; echo x > /dev/berthnull && echo wrote; "
              "head -c 1 /dev/zero | od -An -tx1")
    res = run_both(runtimes, make_bundle, _devices, ["sh", "-c", script], "dv")
    b, r = both_ok(res)
    assert b == r
    assert "crw----rw- 1 1 1, 3 /dev/berthnull" in b
    assert "wrote" in b


def test_mounts_bind_tmpfs_created_destination(runtimes, make_bundle, tmp_path):
    host = tmp_path / "hostdir"
    host.mkdir()
    (host / "file.txt").write_text("from the host\n")

    def edit(cfg, b):
        cfg["mounts"] += [
            {"destination": "/data/ro", "type": "bind", "source": str(host),
             "options": ["rbind", "ro", "nosuid", "nodev"]},
            {"destination": "/new/deep/dir", "type": "tmpfs", "source": "tmpfs",
             "options": ["size=1m", "mode=700", "noexec"]},
            {"destination": "/etc/hostfile", "type": "bind", "source": str(host / "file.txt"),
             "options": ["bind", "ro"]},
        ]

    script = ("cat /data/ro/file.txt /etc/hostfile; touch /data/ro/x 2>&1; "
              "grep -E ' /(data/ro|new/deep/dir|etc/hostfile) ' /proc/self/mountinfo | "
              "awk '{print $5, $6, $9}'; stat -c %a /new/deep/dir")
    res = run_both(runtimes, make_bundle, edit, ["sh", "-c", script], "bm", copy_rootfs=True)
    b, r = both_ok(res)
    assert b == r
    assert b.count("from the host") == 2
    assert "Read-only file system" in b
    assert not (host / "x").exists()


@pytest.fixture
def host_tree(tmp_path):
    """A host directory with a tmpfs mounted below it: what a recursive option must reach."""
    host = tmp_path / "tree"
    (host / "sub").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "berth-test-sub",
                    str(host / "sub")], check=True)
    try:
        yield host
    finally:
        subprocess.run(["umount", "-l", str(host / "sub")], check=False)


def test_recursive_mount_options_reach_submounts(runtimes, make_bundle, host_tree):
    def edit(cfg, b):
        cfg["mounts"] += [
            {"destination": "/rec", "type": "bind", "source": str(host_tree),
             "options": ["rbind", "rro", "rnosuid", "rnodev", "rnoexec"]},
            {"destination": "/flat", "type": "bind", "source": str(host_tree),
             "options": ["rbind", "ro", "nosuid"]},
        ]

    script = ("grep -E ' /(rec|flat)(/sub)? ' /proc/self/mountinfo | awk '{print $5, $6}'; "
              "for d in /rec/sub /flat/sub; do touch $d/x 2>/dev/null && echo $d=rw || "
              "echo $d=ro; done")
    res = run_both(runtimes, make_bundle, edit, ["sh", "-c", script], "rec")
    b, r = both_ok(res)
    assert b == r
    lines = b.splitlines()
    assert "/rec/sub ro,nosuid,nodev,noexec,relatime" in lines
    assert "/rec ro,nosuid,nodev,noexec,relatime" in lines
    assert "/flat/sub rw,relatime" in lines  # plain ro/nosuid: the top mount only
    assert "/rec/sub=ro" in lines and "/flat/sub=rw" in lines
    assert (host_tree / "sub" / "x").exists()  # what the flat mount let through


def test_tmpfs_copyup(runtimes, make_bundle):
    def edit(cfg, b):
        cfg["mounts"] += [
            {"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "size=1m", "tmpcopyup"]},
            {"destination": "/bin", "type": "tmpfs", "source": "tmpfs",
             "options": ["tmpcopyup", "ro", "size=4m"]},
        ]

    script = ("head -1 /etc/passwd; stat -c '%a %u %g' /etc /etc/passwd /bin; "
              "ls -l /bin/sh | awk '{print $1, $NF}'; ls /bin | wc -l; "
              "echo hi > /etc/new && cat /etc/new; touch /bin/x 2>&1 | sed 's/.*: //'; "
              "grep -E ' /(etc|bin) ' /proc/self/mountinfo | awk '{print $5, $6, $9}'")
    res = run_both(runtimes, make_bundle, edit, ["sh", "-c", script], "cu")
    b, r = both_ok(res)
    assert b == r
    lines = b.splitlines()
    assert lines[0].startswith("root:x:0:0")  # the image's /etc, now on a tmpfs
    assert "hi" in lines and "Read-only file system" in lines
    assert "/etc rw,nosuid,nodev,relatime tmpfs" in lines
    assert "/bin ro,relatime tmpfs" in lines
    assert int(lines[5]) > 100  # busybox's applet links came along, as links


def test_host_processes_and_files_invisible(runtimes, make_bundle, tmp_path):
    marker = tmp_path / f"host-marker-{uuid.uuid4().hex[:6]}"
    marker.write_text("secret")
    # (pid numbers differ: runc's Go init spends some of the namespace's pids on threads)
    # (no pipeline: what ps sees of its neighbours in a pipe depends on timing)
    script = (f"ls {marker} 2>&1; ps -o comm; set -- $(ps -o pid); echo $#")
    res = run_both(runtimes, make_bundle, None, ["sh", "-c", script], "hv")
    b, r = both_ok(res)
    assert b == r
    assert "No such file" in b
    assert b.split()[-4:] == ["COMMAND", "sh", "ps", "3"]  # PID header, sh, ps


def _hooks(cfg, b):
    log = b.path / "hooks.log"
    mk = lambda name: {"path": "/bin/sh",  # noqa: E731
                       "args": ["sh", "-c", f"read s; echo {name} \"$s\" >> {log}"]}
    cfg["hooks"] = {"createRuntime": [mk("createRuntime")],
                    "createContainer": [mk("createContainer")],
                    "startContainer": [{"path": "/bin/sh", "args": [
                        "sh", "-c", "read s; echo startContainer > /dev/shm/hook"]}],
                    "poststart": [mk("poststart")], "poststop": [mk("poststop")]}


def test_hooks_run_in_order_with_state(runtimes, make_bundle):
    out = {}
    for name, rt in runtimes.items():
        b = make_bundle(f"hk-{name}", ["sh", "-c", "cat /dev/shm/hook"])
        _hooks(b.cfg, b)
        b.write()
        cid = rt.new_id("hk")
        r = rt("run", "--bundle", str(b.path), cid)
        assert r.returncode == 0, r.stderr
        lines = (b.path / "hooks.log").read_text().splitlines()
        out[name] = (r.stdout, [line.split()[0] for line in lines])
        for line in lines:
            assert f'"id":"{cid}"' in line.replace(" ", "")
    assert out["berth"] == out["runc"]
    assert out["berth"][1] == ["createRuntime", "createContainer", "poststart", "poststop"]
    assert out["berth"][0] == b"startContainer\n"


def test_masked_and_readonly_paths(runtimes, make_bundle):
    script = ("cat /proc/keys | wc -c; ls /proc/acpi | wc -l; "
              "echo 1 > /proc/sys/kernel/domainname 2>&1; echo rc=$?")
    res = run_both(runtimes, make_bundle, None, ["sh", "-c", script], "mk")
    b, r = both_ok(res)
    assert b == r
    assert b.split()[:2] == ["0", "0"]
    assert "rc=1" in b
