"""Fixtures for the container tests: one berthd with the busybox image for the session, and a
clean slate after every test (no container, volume, mount or cgroup of berth's left)."""

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import _start_berthd  # the root conftest (tests/conftest.py)

CGROUP_PARENT = f"berth-test-{os.getpid()}"


@pytest.fixture(scope="session", autouse=True)
def _cgroup_parent():
    """Every daemon of these tests puts its containers' cgroups under CGROUP_PARENT; it goes
    at the end of the session, whichever tests ran."""
    yield
    remove_cgroup_parent(CGROUP_PARENT)


@pytest.fixture(scope="session")
def cbd(busybox_tar):
    """A berthd (its own root, run dir, socket, cgroup parent) with busybox:latest."""
    d = _start_berthd(("--cgroup-parent", CGROUP_PARENT))
    try:
        d.berth("import", str(busybox_tar), "busybox:latest")
        yield d
    finally:
        d.stop()


def remove_cgroup_parent(name: str) -> None:
    """The (empty by now) parent cgroup the tests' containers had, in every hierarchy."""
    for base in Path("/sys/fs/cgroup").iterdir():
        p = base / name
        if not p.is_dir():
            continue
        for sub in sorted((q for q in p.rglob("*") if q.is_dir()), key=lambda q: -len(q.parts)):
            try:
                sub.rmdir()
            except OSError:
                pass
        try:
            p.rmdir()
        except OSError:
            pass


def leftovers(d) -> list[str]:
    """Mounts under the daemon's directories and cgroups of its containers, if any."""
    out = []
    # the network service's own mounts, not a container's: the shared netns directory and
    # the spare namespaces made ahead of starts (a container's sandbox under netns/ counts)
    net = (str(d.run / "network" / "netns"), str(d.run / "network" / "spare"))
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mnt = line.split()[4]
        if mnt in net or mnt.startswith(net[1] + "/"):
            continue
        if mnt.startswith(str(d.base)):
            out.append(f"mount {mnt}")
    for base in Path("/sys/fs/cgroup").iterdir():
        p = base / CGROUP_PARENT
        if p.is_dir():
            out += [f"cgroup {c}" for c in p.iterdir() if c.is_dir()]
    return out


@pytest.fixture
def bd(cbd):
    """The session's berthd, cleaned after the test: containers, volumes, images beyond
    busybox; and the test fails if a mount or cgroup of a removed container is left."""
    yield cbd
    ids = cbd.berth("ps", "-aq", check=False).stdout.split()
    if ids:
        cbd.berth("rm", "-f", "-v", *ids, check=False)
    cbd.berth("volume", "prune", "-f", "-a", check=False)
    deadline = time.monotonic() + 5
    left = leftovers(cbd)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = leftovers(cbd)
    assert not left, f"left behind: {left}"


def run(d, *args, check=True, **kw) -> subprocess.CompletedProcess:
    """``berth run --rm --network none busybox ARGS``."""
    return d.berth("run", "--rm", "--network", "none", *args, check=check, **kw)
