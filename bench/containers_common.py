"""Shared by the container benchmarks: a private berthd and a private dockerd side by side,
both with the same busybox image (from Debian's busybox-static), cleaned up at the end.

Both daemons use the tests' helpers (tests/conftest.py: Berthd, Dockerd): their own data
root, run dir and socket, ended by their pids; dockerd without its bridge (``--network
none`` is what the benchmarks compare).
"""

import contextlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from benchkit import BERTH, REPO, Berthd, Dockerd, median, stop_berthd, timed  # noqa: F401


@contextlib.contextmanager
def peers():
    """(berthd, dockerd), each with busybox:latest."""
    work = Path(tempfile.mkdtemp(prefix="berth-bench-"))
    bd = dd = None
    cgroup_parent = None
    try:
        rootfs = work / "rootfs"
        subprocess.run([str(REPO / "scripts" / "busybox-rootfs.sh"), str(rootfs)], check=True)
        tar = work / "busybox.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
        cgroup_parent = f"berth-bench-{work.name[-8:]}"
        bd = Berthd(Path(tempfile.mkdtemp(prefix="berth-b-")),
                    ("--cgroup-parent", cgroup_parent))
        bd.berth("import", str(tar), "busybox:latest")
        dd = Dockerd(Path(tempfile.mkdtemp(prefix="berth-dockerd-")))
        dd.docker("import", str(tar), "busybox:latest")
        # warm both: first runs pay for caches (page cache, the shim zygote, containerd)
        for _ in range(2):
            bd.berth("run", "--rm", "--network", "none", "busybox", "true")
            dd.docker("run", "--rm", "--network", "none", "busybox", "true")
        yield bd, dd
    finally:
        if dd is not None:
            ids = dd.docker("ps", "-aq", check=False).stdout.split()
            if ids:
                dd.docker("rm", "-f", *ids, check=False)
            dd.stop()
        if bd is not None:
            stop_berthd(bd, cgroup_parent)
        shutil.rmtree(work, ignore_errors=True)
