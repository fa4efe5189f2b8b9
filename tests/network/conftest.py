"""Fixtures for the network package's tests (helpers in netkit.py).

``net``: a NetworkManager on a private root whose kernel-global names (bridges, nft table) carry
a random suffix; everything it made is removed in the finally, also when the test fails, and
the fixture then asserts that no link, nft table or mount of the test is left.
"""

import time
from pathlib import Path

import pytest

from .daemonkit import CGROUP_PARENT, State, clean
from .netkit import FakeUpstream, Net, leftovers


@pytest.fixture
def net(tmp_path, busybox_rootfs):
    n = Net(tmp_path, busybox_rootfs, upstream=[])
    try:
        yield n
    finally:
        veths = n.veths
        n.cleanup()
        # Veths of destroyed sandboxes go with their netns, asynchronously: give it a moment.
        deadline = time.monotonic() + 10
        while leftovers(n.sfx, veths) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = leftovers(n.sfx, veths)
        mounts = [ln for ln in Path("/proc/self/mountinfo").read_text().splitlines()
                  if str(tmp_path) in ln]
        assert not left and not mounts, f"left behind: {left} {mounts}"


@pytest.fixture
def upstream():
    u = FakeUpstream()
    try:
        yield u
    finally:
        u.close()




# --- through berthd (the engine's network service; helpers in daemonkit.py) ---------------

def _remove_cgroups() -> None:
    for base in Path("/sys/fs/cgroup").iterdir():
        p = base / CGROUP_PARENT
        if p.is_dir():
            for sub in sorted((q for q in p.rglob("*") if q.is_dir()),
                              key=lambda q: -len(q.parts)):
                sub.rmdir()
            p.rmdir()


@pytest.fixture(scope="session")
def nbd(busybox_tar):
    """One berthd for the session's network tests, with busybox:latest and busybox-exposing:1
    (EXPOSE 80 and 53/udp)."""
    from tests.conftest import _start_berthd

    d = _start_berthd(("--cgroup-parent", CGROUP_PARENT))
    try:
        d.berth("import", str(busybox_tar), "busybox:latest")
        d.berth("import", "-c", "EXPOSE 80", "-c", "EXPOSE 53/udp", str(busybox_tar),
                "busybox-exposing:1")
        yield d
    finally:
        try:
            clean(d)
        finally:
            d.stop()
            _remove_cgroups()


@pytest.fixture
def nd(nbd):
    """The session's berthd, and after the test: every container and user network removed,
    and nothing of theirs left (leases, namespaces, veths, published ports, nft elements)."""
    yield nbd
    clean(nbd)
    left = State(nbd).wait_no_leaks()
    assert not left, f"left behind: {left}"
