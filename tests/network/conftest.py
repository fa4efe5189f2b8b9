"""Fixtures for the network package's tests (helpers in netkit.py).

``net``: a NetworkManager on a private root whose kernel-global names (bridges, nft table) carry
a random suffix; everything it made is removed in the finally, also when the test fails, and
the fixture then asserts that no link, nft table or mount of the test is left.
"""

import time
from pathlib import Path

import pytest
from netkit import FakeUpstream, Net, leftovers


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


