"""Device access control, for real: the cgroup v2 eBPF filter and the v1 devices cgroup.

This host is hybrid (v1 controllers, an empty cgroup2 at /sys/fs/cgroup/unified). A
BPF_CGROUP_DEVICE program attaches to any v2 cgroup whatever controllers v1 holds, so the v2
path is tested on cgroups made there: the kernel's own verdict on open(2) and mknod(2) of
real device nodes, from a process inside the cgroup. A whole container is also run with the
v2 manager on that hierarchy (berth-runtime picks v1 on a hybrid host, as runc does; runc
attaches no program here, checked below) and compared with berth on v1 and with runc.
"""

import os
import subprocess
import sys
import tempfile
import uuid

import pytest

from berth.runtime import cgroups, devices
from berth.runtime.errors import CgroupError

from .conftest import run_both

pytestmark = [pytest.mark.root]

UNIFIED = "/sys/fs/cgroup/unified"
DENY_ALL = [{"allow": False, "access": "rwm"}]


def host_disk() -> tuple[int, int]:
    """A host block device this test process can open (the disk holding / if the host lets
    root open it, else a loop device): what a container must never reach."""
    cands = []
    st = os.stat("/")
    if os.major(st.st_dev):
        cands.append((os.major(st.st_dev), os.minor(st.st_dev)))
    cands += [(7, i) for i in range(8)]
    with tempfile.TemporaryDirectory() as d:
        for ma, mi in cands:
            path = f"{d}/{ma}-{mi}"
            os.mknod(path, 0o60600, os.makedev(ma, mi))
            try:
                os.close(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
                return ma, mi
            except OSError:
                continue
    pytest.skip("no host block device that root may open here")


@pytest.fixture
def v2_top():
    if not os.path.exists(UNIFIED + "/cgroup.procs"):
        pytest.skip(f"no cgroup2 hierarchy at {UNIFIED}")
    top = f"{UNIFIED}/berth-test-{uuid.uuid4().hex[:8]}"
    os.mkdir(top)
    try:
        yield top
    finally:
        for d, _dirs, _files in sorted(os.walk(top), key=lambda x: -len(x[0])):
            try:
                os.rmdir(d)
            except OSError:
                pass


PROBE = r"""
import os, sys
cg, node = sys.argv[1], sys.argv[2]
with open(cg + "/cgroup.procs", "w") as f:
    f.write(str(os.getpid()))
def try_(what, fn):
    try:
        fn()
        print(what, "ok")
    except OSError as e:
        print(what, e.errno)
def op(path, flags):
    os.close(os.open(path, flags))
try_("null-rw", lambda: op("/dev/null", os.O_RDWR))
try_("kmsg-r", lambda: op("/dev/kmsg", os.O_RDONLY))
try_("mknod-disk", lambda: os.mknod(node + ".new", 0o60600, os.makedev(*map(int, sys.argv[3:5]))))
try_("disk-r", lambda: op(node, os.O_RDONLY))
try_("disk-w", lambda: op(node, os.O_WRONLY))
"""


def probe(cg: str, node: str, disk: tuple[int, int]) -> dict:
    for p in (node + ".new",):
        if os.path.exists(p):
            os.unlink(p)
    r = subprocess.run([sys.executable, "-c", PROBE, cg, node, *map(str, disk)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return dict(line.split() for line in r.stdout.splitlines())


def test_bpf_filter_on_a_real_v2_cgroup(v2_top, tmp_path):
    disk = host_disk()
    node = str(tmp_path / "disk")
    os.mknod(node, 0o60600, os.makedev(*disk))
    m = cgroups.V2Manager({"": v2_top + "/c"}, mountpoint=v2_top)
    m.create()
    # Before any program: the cgroup allows everything (the v1 devices cgroup of this test
    # process, the host's root, allows everything too).
    assert probe(m.dir, node, disk) == {"null-rw": "ok", "kmsg-r": "ok", "mknod-disk": "ok",
                                        "disk-r": "ok", "disk-w": "ok"}

    m.set_devices(devices.evaluate(DENY_ALL))
    progs = m.device_filters()
    assert [(p["type"], p["name"]) for p in progs] == [(15, "berth_devices")]
    # runc's default list: /dev/null usable, mknod of any node allowed, opening a disk or
    # /dev/kmsg refused with EPERM
    assert probe(m.dir, node, disk) == {"null-rw": "ok", "kmsg-r": "1", "mknod-disk": "ok",
                                        "disk-r": "1", "disk-w": "1"}

    # update: read access to the disk only; the old program is replaced, not stacked
    m.set_devices(devices.evaluate(DENY_ALL + [{"allow": True, "type": "b",
                                                "major": disk[0], "minor": disk[1],
                                                "access": "r"}]))
    now = m.device_filters()
    assert len(now) == 1 and now[0]["id"] != progs[0]["id"]
    assert probe(m.dir, node, disk) == {"null-rw": "ok", "kmsg-r": "1", "mknod-disk": "ok",
                                        "disk-r": "ok", "disk-w": "1"}

    # a deny-list: everything but reading /dev/kmsg and writing the disk (the mknod a spec
    # takes away, runc's defaults give back)
    m.set_devices(devices.evaluate([{"allow": True, "access": "rwm"},
                                    {"allow": False, "type": "b", "access": "mw"},
                                    {"allow": False, "type": "c", "major": 1, "minor": 11,
                                     "access": "r"}]))
    assert probe(m.dir, node, disk) == {"null-rw": "ok", "kmsg-r": "1", "mknod-disk": "ok",
                                        "disk-r": "ok", "disk-w": "1"}
    assert len(m.device_filters()) == 1
    m.destroy()


def test_attach_to_something_not_a_cgroup_fails_clearly(tmp_path):
    with pytest.raises(CgroupError, match=rf"cgroup: device filter for {tmp_path}: "):
        cgroups.attach_device_filter(str(tmp_path), devices.program(devices.evaluate(None)))


def _mknod_cfg(disk):
    def edit(cfg, b):
        caps = cfg["process"]["capabilities"]
        for k in ("bounding", "effective", "permitted"):
            caps[k] = sorted(set(caps.get(k, [])) | {"CAP_MKNOD"})
    return edit


DISK_SCRIPT = ("mknod /dev/hostdisk b {0} {1} && echo mknod=ok; "
               "(exec 3</dev/hostdisk && echo open=ok) 2>&1; "
               "echo x > /dev/null && echo null=ok; "
               "cat /sys/fs/cgroup/devices/devices.list 2>/dev/null | sort | tr '\\n' ' '")


def test_container_cannot_open_the_host_disk_v1_like_runc(runtimes, make_bundle):
    disk = host_disk()
    res = run_both(runtimes, make_bundle, _mknod_cfg(disk),
                   ["sh", "-c", DISK_SCRIPT.format(*disk)], "dk")
    b, r = res["berth"], res["runc"]
    assert (b.returncode, r.returncode) == (0, 0), (b.stderr, r.stderr)
    bo, ro = b.stdout.decode(), r.stdout.decode()
    assert bo == ro
    assert "mknod=ok" in bo and "Operation not permitted" in bo and "null=ok" in bo
    # the same v1 allow-list, line for line
    assert "c 136:* rwm" in bo and "a *:* rwm" not in bo


def test_container_on_cgroup_v2_cannot_open_the_host_disk(make_bundle, v2_top, tmp_path,
                                                          monkeypatch, capfd):
    """A whole container with the v2 manager (what a unified host gets), run in-process so
    that the cgroup can be placed on this host's cgroup2 hierarchy."""
    from berth.runtime import container

    disk = host_disk()
    monkeypatch.setattr(cgroups, "manager", lambda path, fs=None: cgroups.V2Manager(
        {"": f"{v2_top}/{os.path.basename(path)}"}, mountpoint=v2_top))
    root = str(tmp_path / "state")
    out = {}
    for name, rules in (("deny", None), ("allow", [{"allow": True, "type": "b",
                                                    "major": disk[0], "minor": disk[1],
                                                    "access": "r"}])):
        b = make_bundle(f"v2{name}", ["sh", "-c", DISK_SCRIPT.format(*disk) +
                                      "; cat /proc/self/cgroup"])
        _mknod_cfg(disk)(b.cfg, b)
        if rules:
            b.cfg["linux"]["resources"]["devices"] += rules
        b.write()
        cid = f"v2{name}-{uuid.uuid4().hex[:8]}"
        capfd.readouterr()
        code = container.run(root, cid, str(b.path))
        out[name] = capfd.readouterr().out
        assert code == 0, out[name]
        assert not os.path.exists(f"{v2_top}/{os.path.basename(b.cfg['linux']['cgroupsPath'])}")
    assert "mknod=ok" in out["deny"] and "Operation not permitted" in out["deny"]
    assert "null=ok" in out["deny"]
    assert "Operation not permitted" not in out["allow"] and "open=ok" in out["allow"]
    # it ran in the v2 cgroup (runc's default spec has no cgroup namespace: the full path)
    assert f"0::/{os.path.basename(v2_top)}/v2deny-" in out["deny"]


def test_runc_attaches_no_program_on_this_hybrid_host(runtimes, make_bundle):
    """Why the v2 comparison above is with berth's v1 path: runc on a hybrid host uses the v1
    devices cgroup only and leaves the unified cgroup it joins without a filter."""
    runc = runtimes["runc"]
    b = make_bundle("rch", ["sleep", "30"]).write()
    cid = runc.new_id("rch")
    runc("run", "-d", "--bundle", str(b.path), cid, check=True)
    path = f"{UNIFIED}/{b.cfg['linux']['cgroupsPath']}"
    if not os.path.isdir(path):
        pytest.skip("runc did not join the unified hierarchy")
    assert cgroups.V2Manager({"": path}).device_filters() == []


def test_a_rule_cgroup_v1_would_ignore_fails_before_anything_is_made(berth, make_bundle):
    b = make_bundle("hole")
    b.cfg["linux"]["resources"]["devices"] = DENY_ALL + [
        {"allow": True, "type": "c", "access": "rw"},
        {"allow": False, "type": "c", "major": 1, "minor": 1, "access": "r"}]
    b.write()
    cid = berth.new_id("hole")
    r = berth("create", "--bundle", str(b.path), cid)
    assert r.returncode == 1
    err = r.stderr.decode().strip()
    assert err.startswith("berth-runtime: linux.resources.devices[2]: cannot deny c 1:1 r")
    assert "\n" not in err
    assert not (berth.root / cid).exists()
    fs = cgroups.CgroupFS()
    assert not any(os.path.exists(p) for p in cgroups.V1Manager.for_path(
        b.cfg["linux"]["cgroupsPath"], fs).paths.values())
