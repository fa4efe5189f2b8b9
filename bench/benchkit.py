"""What the benchmark scripts share: the tests' private daemons (tests/conftest.py: Berthd and
Dockerd, each on its own root and socket, ended by its pid), wall-clock timing and medians, and
the end of a benchmark's berthd (its containers, its log kept quiet, its cgroup parent)."""

import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import Berthd, Dockerd, sweep_mounts  # noqa: E402, F401

BERTH = str(REPO / ".venv" / "bin" / "berth")


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


def stop_berthd(bd: Berthd, cgroup_parent: str | None = None) -> None:
    """Remove the daemon's containers, stop it without printing its log (the tests want it
    printed, a benchmark's output does not), then remove its cgroup parent."""
    ids = bd.berth("ps", "-aq", check=False).stdout.split()
    if ids:
        bd.berth("rm", "-f", *ids, check=False)
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        bd.stop()
    if cgroup_parent:
        from tests.containers.conftest import remove_cgroup_parent

        remove_cgroup_parent(cgroup_parent)
