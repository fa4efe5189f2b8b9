"""The cgroup v2 manager on a real cgroup2 hierarchy, as far as this hybrid host allows: a fresh
cgroup2 mount (the kernel's one unified hierarchy) where only controllers unbound from v1 exist
(here hugetlb). Memory, cpu, pids and io limits cannot be tried on v2 here: those controllers
are bound to v1 and cannot move while v1 uses them; the test checks the clear error instead."""

import os
import subprocess
import tempfile
import time
import uuid

import pytest

from berth.runtime import cgroups
from berth.runtime.errors import CgroupError

pytestmark = [pytest.mark.root]


@pytest.fixture
def cgroup2_mount():
    d = tempfile.mkdtemp(prefix="berth-cg2-")
    r = subprocess.run(["mount", "-t", "cgroup2", "none", d], capture_output=True)
    if r.returncode != 0:
        os.rmdir(d)
        pytest.skip(f"cannot mount cgroup2 here: {r.stderr.decode().strip()}")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", d], check=False)
        os.rmdir(d)


def test_v2_manager_on_a_real_cgroup2(cgroup2_mount):
    top = cgroup2_mount
    before = open(top + "/cgroup.subtree_control").read().split()
    name = f"berth-test-{uuid.uuid4().hex[:8]}"
    m = cgroups.V2Manager({"": f"{top}/{name}/c"}, mountpoint=top)
    p = subprocess.Popen(["sleep", "60"])
    try:
        m.create()
        assert os.path.isdir(m.dir)
        m.apply(p.pid)
        assert m.pids() == [p.pid]
        assert f"0::/{name}/c" in open(f"/proc/{p.pid}/cgroup").read()
        m.freeze()
        assert m.frozen()
        m.thaw()
        assert not m.frozen()
        s = m.stats()
        assert s["cpu"]["usage"]["total"] >= 0 and "throttling" in s["cpu"]
        avail = open(top + "/cgroup.controllers").read().split()
        if "hugetlb" in avail:
            enabled = open(m.dir + "/cgroup.controllers").read().split()
            assert "hugetlb" in enabled  # create() enabled it down the tree
            assert os.path.exists(m.dir + "/hugetlb.2MB.max")
            m.set({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 21}]})
            assert open(m.dir + "/hugetlb.2MB.max").read().strip() == str(4 << 21)
        if "memory" not in avail:
            with pytest.raises(CgroupError, match="memory controller"):
                m.set({"memory": {"limit": 64 << 20}})
        # `exec --cgroup`: a sub-cgroup below ours only
        os.mkdir(m.dir + "/sub")
        q = subprocess.Popen(["sleep", "60"])
        try:
            m.join(q.pid, m.sub_paths({"": "sub"}))
            assert f"0::/{name}/c/sub" in open(f"/proc/{q.pid}/cgroup").read()
            with pytest.raises(CgroupError, match="not a sub cgroup path"):
                m.sub_paths({"": ".."})
        finally:
            q.kill()
            q.wait()
        deadline = time.monotonic() + 5
        while open(m.dir + "/sub/cgroup.procs").read() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.rmdir(m.dir + "/sub")
        # `events` ends when the cgroup empties (cgroup.events wakes a poll for POLLPRI)
        import select

        watch = m.oom_watch()
        try:
            poll = select.poll()
            for fd in watch.fds:
                poll.register(fd, select.POLLPRI)
            poll.poll(0)  # a kernfs file reports itself changed once after opening
            m.kill_all(9)
            assert p.wait(10) == -9
            ends = []
            deadline = time.monotonic() + 5
            while not ends and time.monotonic() < deadline:
                ends = [watch.event(fd) for fd, _ in poll.poll(1000)]
            assert "end" in ends
        finally:
            watch.close()
        deadline = time.monotonic() + 5
        while m.pids() and time.monotonic() < deadline:
            time.sleep(0.01)
        m.destroy()
        assert not os.path.exists(m.dir)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for d in (f"{top}/{name}/c", f"{top}/{name}"):
            if os.path.isdir(d):
                os.rmdir(d)
        now = open(top + "/cgroup.subtree_control").read().split()
        extra = [c for c in now if c not in before]
        if extra:
            try:
                with open(top + "/cgroup.subtree_control", "w") as f:
                    f.write(" ".join("-" + c for c in extra))
            except OSError:
                pass
