"""Shared by the container benchmarks: a private berthd and a private dockerd side by side,
both with the same busybox image (from Debian's busybox-static), cleaned up at the end.

Both daemons use the tests' helpers (tests/conftest.py: Berthd, Dockerd): their own data
root, run dir and socket, ended by their pids; dockerd without its bridge (``--network
none`` is what the benchmarks compare).
"""

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from conftest import Berthd, Dockerd  # noqa: E402  (the tests' private daemons)

BERTH = str(REPO / ".venv" / "bin" / "berth")


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
            ids = bd.berth("ps", "-aq", check=False).stdout.split()
            if ids:
                bd.berth("rm", "-f", *ids, check=False)
            with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
                bd.stop()  # (it prints the daemon's log, for tests)
        if cgroup_parent:
            from containers.conftest import remove_cgroup_parent

            remove_cgroup_parent(cgroup_parent)
        shutil.rmtree(work, ignore_errors=True)


def timed(cmd: list[str]) -> float:
    """Wall time of one command in ms (its output thrown away; a failure is fatal)."""
    t = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ms = (time.perf_counter() - t) * 1000
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])}... failed: {r.stderr.decode().strip()}")
    return ms


def median(xs: list[float]) -> float:
    return statistics.median(xs)
