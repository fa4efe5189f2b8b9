"""Bad input and faults: a bad config.json makes nothing; a create killed half-way leaves only
what `delete --force` removes; a hostile rootfs cannot make the runtime mount or write outside
itself."""

import os
import random
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from berth.runtime import cgroups

pytestmark = [pytest.mark.root]


def leftovers(rt, cfg: dict, cid: str) -> list[str]:
    """Everything of container ``cid`` still on the host: state dir, cgroups, mounts."""
    out = []
    if (rt.root / cid).exists():
        out.append(f"state dir {rt.root / cid}")
    fs = cgroups.CgroupFS()
    for p in cgroups.V1Manager.for_path(cfg["linux"]["cgroupsPath"], fs).paths.values():
        if os.path.isdir(p):
            out.append(f"cgroup {p}")
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if cid in line:
            out.append(f"mount {line}")
    return out


BAD = [
    (lambda c: c["linux"]["namespaces"].append({"type": "bogus"}), "linux.namespaces[5].type"),
    (lambda c: c["mounts"][1].update(destination="dev"), "mounts[1].destination"),
    (lambda c: (c["linux"]["namespaces"].append({"type": "user"}),
                c["linux"].update(uidMappings=[{"containerID": 0, "hostID": -5, "size": 1}],
                                  gidMappings=[{"containerID": 0, "hostID": 0, "size": 1}])),
     "linux.uidMappings[0].hostID"),
    (lambda c: (c["linux"]["namespaces"].append({"type": "user"}),
                c["linux"].update(uidMappings=[{"containerID": 0, "size": 1}])),
     "linux.uidMappings[0].hostID"),
    (lambda c: c["process"].pop("args"), "process.args"),
    (lambda c: c["process"].update(args="sh"), "process.args"),
    (lambda c: c["process"]["user"].update(uid="0"), "process.user.uid"),
    (lambda c: c["process"].update(cwd="tmp"), "process.cwd"),
    (lambda c: c.pop("ociVersion"), "ociVersion"),
    (lambda c: c["root"].pop("path"), "root.path"),
    (lambda c: c["process"].update(rlimits=[{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]),
     "process.rlimits[0].type"),
    (lambda c: c["linux"].update(seccomp={"defaultAction": "SCMP_ACT_NOPE"}),
     "linux.seccomp.defaultAction"),
    (lambda c: c["linux"].update(seccomp={"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}), "linux.seccomp.syscalls[0]"),
    (lambda c: c["linux"].update(seccomp={"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
     "linux.seccomp.syscalls[0].args[0].index"),
    (lambda c: c["linux"]["resources"].update(memory={"limit": "64m"}),
     "linux.resources.memory.limit"),
    (lambda c: c["linux"].update(rootfsPropagation="sideways"), "linux.rootfsPropagation"),
    (lambda c: c["hooks"] if c.update(hooks={"poststart": [{"path": "rel/hook"}]}) else None,
     "hooks.poststart[0].path"),
]


@pytest.mark.parametrize("edit,field", BAD, ids=[f for _, f in BAD])
def test_bad_config_fails_naming_the_field_and_makes_nothing(berth, make_bundle, edit, field):
    b = make_bundle("bad", ["true"])
    edit(b.cfg)
    b.write()
    cid = berth.new_id("bad")
    r = berth("run", "--bundle", str(b.path), cid)
    err = r.stderr.decode()
    assert r.returncode == 1
    assert err.count("\n") == 1 and field in err, err
    assert leftovers(berth, b.cfg, cid) == []
    assert not (berth.root / cid).exists()


def test_invalid_json_and_missing_bundle(berth, tmp_path):
    d = tmp_path / "broken"
    d.mkdir()
    (d / "config.json").write_text("{not json")
    r = berth("create", "--bundle", str(d), berth.new_id("bj"))
    assert r.returncode == 1 and b"invalid JSON" in r.stderr
    r = berth("create", "--bundle", str(tmp_path / "nope"), berth.new_id("bj"))
    assert r.returncode == 1 and b"no config.json" in r.stderr
    assert berth("create", "--bundle", str(d), "bad/id").returncode == 1


def test_failing_create_hook_cleans_up(berth, make_bundle):
    b = make_bundle("hf", ["true"])
    b.cfg["hooks"] = {"createRuntime": [{"path": "/bin/false"}]}
    b.write()
    cid = berth.new_id("hf")
    r = berth("create", "--bundle", str(b.path), cid)
    assert r.returncode == 1
    assert b"error running hook #0 (createRuntime /bin/false): exit status 1" in r.stderr
    assert leftovers(berth, b.cfg, cid) == []


def _pids_of(cfg) -> list[int]:
    m = cgroups.V1Manager.for_path(cfg["linux"]["cgroupsPath"], cgroups.CgroupFS())
    return m.pids()


def test_create_killed_at_the_hook_leaves_only_what_delete_force_removes(berth, make_bundle,
                                                                         tmp_path):
    mark = tmp_path / "hook-ran"
    b = make_bundle("k9", ["sleep", "100"])
    b.cfg["hooks"] = {"createRuntime": [{"path": "/bin/sh", "args": [
        "sh", "-c", f"echo $$ > {mark}; exec sleep 30"]}]}
    b.write()
    cid = berth.new_id("k9")
    p = subprocess.Popen([*berth.cmd, "--root", str(berth.root), "create", "--bundle",
                          str(b.path), cid], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not (mark.exists() and mark.read_text().strip()):
        assert time.monotonic() < deadline and p.poll() is None
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    os.kill(int(mark.read_text()), signal.SIGKILL)  # the hook is ours to end, not the runtime's
    assert berth.state(cid)["status"] == "stopped"
    r = berth("delete", "--force", cid)
    assert r.returncode == 0, r.stderr
    assert leftovers(berth, b.cfg, cid) == []


def test_create_killed_at_random_points(berth, make_bundle):
    rng = random.Random(7)
    for i in range(8):
        b = make_bundle(f"kr{i}", ["sleep", "100"]).write()
        cid = berth.new_id(f"kr{i}")
        p = subprocess.Popen([*berth.cmd, "--root", str(berth.root), "create", "--bundle",
                              str(b.path), cid], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, 0.06))
        p.send_signal(signal.SIGKILL)
        p.wait()
        r = berth("delete", "--force", cid)
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + 5
        while leftovers(berth, b.cfg, cid) and time.monotonic() < deadline:
            time.sleep(0.02)  # an init that lost its parent exits on EOF
            berth("delete", "--force", cid)
        assert leftovers(berth, b.cfg, cid) == []


@pytest.fixture
def escape_target():
    """A host directory a hostile rootfs points at: it must stay empty."""
    d = Path(f"/tmp/berth-escape-{uuid.uuid4().hex[:8]}")
    d.mkdir()
    try:
        yield d
    finally:
        for line in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
            if str(d) in line.split()[4]:
                subprocess.run(["umount", "-l", line.split()[4]], check=False)
        subprocess.run(["rm", "-rf", str(d)], check=False)


def test_hostile_symlinks_stay_inside_the_rootfs(berth, make_bundle, escape_target):
    b = make_bundle("hs", ["sh", "-c", "ls /mnt/sub /data; cat /proc/self/mountinfo"],
                    copy_rootfs=True)
    r = b.rootfs
    os.symlink(str(escape_target), r / "mnt")          # absolute link to a host directory
    os.symlink("../../../../../../" + str(escape_target).lstrip("/"), r / "data")
    os.symlink("/etc", r / "devlink")
    b.cfg["root"]["readonly"] = False
    b.cfg["mounts"] += [
        {"destination": "/mnt/sub", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/data/x", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/../../../.." + str(escape_target) + "/up", "type": "tmpfs",
         "source": "tmpfs"},
    ]
    b.write()
    cid = berth.new_id("hs")
    res = berth("run", "--bundle", str(b.path), cid)
    assert res.returncode == 0, res.stderr
    assert list(escape_target.iterdir()) == []
    # The mounts landed inside the rootfs, where the links lead when it is the root.
    assert (r / str(escape_target).lstrip("/") / "sub").is_dir()
    assert (r / str(escape_target).lstrip("/") / "up").is_dir()


def test_dev_symlink_to_etc_writes_only_inside(berth, make_bundle):
    b = make_bundle("de", ["true"], copy_rootfs=True)
    (b.rootfs / "dev").rmdir()
    os.symlink("/etc", b.rootfs / "dev")
    b.cfg["root"]["readonly"] = False
    b.write()
    before = sorted(os.listdir("/etc"))
    res = berth("run", "--bundle", str(b.path), berth.new_id("de"))
    assert res.returncode == 0, res.stderr
    assert sorted(os.listdir("/etc")) == before
    assert not os.path.exists("/etc/null") and not os.path.exists("/etc/ptmx")


@pytest.mark.interop
def test_proc_symlinked_to_root_is_refused(runtimes, make_bundle):
    codes = {}
    for name, rt in runtimes.items():
        b = make_bundle(f"pr-{name}", ["true"], copy_rootfs=True)
        (b.rootfs / "proc").rmdir()
        os.symlink("/", b.rootfs / "proc")
        b.write()
        cid = rt.new_id("pr")
        r = rt("run", "--bundle", str(b.path), cid)
        codes[name] = r.returncode
        # runc's wording, which its users match on
        assert b"must be mounted on ordinary directory" in r.stderr, (name, r.stderr)
        if name == "berth":
            assert leftovers(rt, b.cfg, cid) == []
    assert codes == {"berth": 1, "runc": 1}


@pytest.mark.interop
def test_proc_symlink_to_a_missing_target_makes_nothing(runtimes, make_bundle):
    """A dangling /proc symlink is refused before anything is made (no directory appears
    where it points), as runc refuses it."""
    for name, rt in runtimes.items():
        b = make_bundle(f"pd-{name}", ["true"], copy_rootfs=True)
        (b.rootfs / "proc").rmdir()
        os.symlink("/symlink", b.rootfs / "proc")
        b.write()
        r = rt("run", "--bundle", str(b.path), rt.new_id("pd"))
        assert r.returncode == 1, (name, r.stderr)
        assert b"must be mounted on ordinary directory" in r.stderr, (name, r.stderr)
        assert not (b.rootfs / "symlink").exists(), name
