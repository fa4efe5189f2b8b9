"""Shared by the network benchmarks: a private berthd and a private dockerd, each with its own
default bridge network and the same busybox image, cleaned up at the end.

berthd is the tests' daemon (tests/conftest.py: its own root, run dir, socket, bridge and nft
table). dockerd runs on its own root and socket with a bridge this module makes (never
docker0) and ``--iptables=false``: the host's iptables (and the FORWARD traffic of other work
on this machine) are left alone; its published ports are then served by docker-proxy, its
userland proxy, which is also what serves a loopback client with iptables on.
"""

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from benchkit import BERTH, REPO, Berthd, Dockerd, median, stop_berthd, timed  # noqa: F401


def sh(*a: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(a, check=True, capture_output=True, text=True, **kw)


class BridgedDockerd(Dockerd):
    """The tests' dockerd on ``base`` with ``bridge`` (made here, with ``subnet``) as its
    default bridge; the docker CLI's output as text; the bridge goes at the end."""

    def __init__(self, base: Path, bridge: str, subnet) -> None:
        self.bridge = bridge
        sh("ip", "link", "add", bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{subnet.network_address + 1}/{subnet.prefixlen}", "dev",
           bridge)
        sh("ip", "link", "set", bridge, "up")
        super().__init__(base, bridge=bridge)

    def docker(self, *a: str, check: bool = True) -> subprocess.CompletedProcess:
        return super().docker(*a, check=check, text=True)

    def stop(self) -> None:
        ids = self.docker("ps", "-aq", check=False).stdout.split()
        if ids:
            self.docker("rm", "-f", *ids, check=False)
        super().stop()
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


@contextlib.contextmanager
def peers():
    """(berthd, dockerd), each with busybox:latest and its own default bridge network."""
    if os.geteuid() != 0:
        raise SystemExit("needs root")
    work = Path(tempfile.mkdtemp(prefix="berth-nbench-"))
    bd = dd = None
    cgroup_parent = f"berth-nbench-{work.name[-8:]}"
    try:
        rootfs = work / "rootfs"
        sh(str(REPO / "scripts" / "busybox-rootfs.sh"), str(rootfs))
        tar = work / "busybox.tar"
        sh("tar", "-C", str(rootfs), "-cf", str(tar), ".")
        bd = Berthd(Path(tempfile.mkdtemp(prefix="berth-nb-")), ("--cgroup-parent",
                                                                  cgroup_parent))
        bd.berth("import", str(tar), "busybox:latest")
        # dockerd's bridge gets a subnet that nothing on the host (berth's included) holds
        from berth.network import ipam
        from berth.network.netlink import Netlink

        with Netlink() as nl:
            taken = [ipam.IPv4Network(f"{a}/{p}", strict=False) for _, a, p in nl.addrs()
                     if not a.startswith("127.")]
        dd = BridgedDockerd(Path(tempfile.mkdtemp(prefix="berth-nbd-")),
                            f"bnd{secrets.token_hex(3)}", ipam.pick_subnet(taken))
        dd.docker("import", str(tar), "busybox:latest")
        yield bd, dd
    finally:
        if dd is not None:
            dd.stop()
        if bd is not None:
            stop_berthd(bd)
        from tests.containers.conftest import remove_cgroup_parent

        remove_cgroup_parent(cgroup_parent)
        shutil.rmtree(work, ignore_errors=True)
