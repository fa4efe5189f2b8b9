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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from conftest import Berthd  # noqa: E402  (the tests' private daemon)

BERTH = str(REPO / ".venv" / "bin" / "berth")


def sh(*a: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(a, check=True, capture_output=True, text=True, **kw)


class BridgedDockerd:
    """dockerd on ``base`` with ``bridge`` (made here, with ``subnet``) as its default bridge."""

    def __init__(self, base: Path, bridge: str, subnet) -> None:
        self.base, self.bridge = base, bridge
        sh("ip", "link", "add", bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{subnet.network_address + 1}/{subnet.prefixlen}", "dev",
           bridge)
        sh("ip", "link", "set", bridge, "up")
        self.host = f"unix://{base}/docker.sock"
        self.log = open(base / "dockerd.log", "wb")
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", str(base / "data"), "--exec-root", str(base / "exec"),
             "-H", self.host, "--pidfile", str(base / "docker.pid"), "--bridge", bridge,
             "--iptables=false", "--ip6tables=false"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while self.docker("version", check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"dockerd did not start: {(base / 'dockerd.log').read_text()}")
            time.sleep(0.2)

    def docker(self, *a: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "-H", self.host, *a], check=check, capture_output=True,
                              text=True)

    def stop(self) -> None:
        ids = self.docker("ps", "-aq", check=False).stdout.split()
        if ids:
            self.docker("rm", "-f", *ids, check=False)
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        for line in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
            mnt = line.split()[4]
            if mnt.startswith(str(self.base)):
                subprocess.run(["umount", "-l", mnt], check=False)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


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
            ids = bd.berth("ps", "-aq", check=False).stdout.split()
            if ids:
                bd.berth("rm", "-f", *ids, check=False)
            with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
                bd.stop()  # (it prints the daemon's log, for tests)
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
