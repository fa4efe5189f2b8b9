"""Helpers for the network tests through berthd: what a daemon's network holds (from its state
files and from the kernel), so that a test can say "nothing leaked" the way a user would check
it (`ip link`, `nft list table`, mounts), and small clients for HTTP and UDP on loopback.

The network rule holds: traffic goes to 127.0.0.1 and to the test's own containers only; a
container that must look a name up that berth does not know gets ``--dns 127.0.0.1`` (nothing
listens there: the resolver's forward fails at once, on loopback).
"""

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

#: the parent cgroup of the network tests' containers (removed at the end of the session)
CGROUP_PARENT = f"berth-nettest-{os.getpid()}"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def http_get(url: str, timeout: float = 10.0) -> str:
    """GET ``url`` until it answers (a container's httpd takes a moment to listen)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class State:
    """A berthd's network as its files and the kernel show it."""

    def __init__(self, d) -> None:
        self.d = d
        self.netdir = Path(d.root) / "network" / "networks"
        self.nsdir = Path(d.run) / "network" / "netns"
        self.pubdir = Path(d.root) / "network" / "sandboxes"

    def networks(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted(self.netdir.glob("*.json"))]

    def network(self, name: str) -> dict:
        return next(n for n in self.networks() if n["name"] == name)

    def leases(self) -> dict[str, dict[str, str]]:
        return {n["name"]: (n.get("ipam") or {}).get("leases") or {} for n in self.networks()}

    def bridges(self) -> list[str]:
        return [n["bridge"] for n in self.networks()]

    def sandboxes(self) -> list[str]:
        return sorted(p.name for p in self.nsdir.iterdir()) if self.nsdir.exists() else []

    def published(self) -> list[str]:
        return sorted(p.name for p in self.pubdir.glob("*.json")) if self.pubdir.exists() \
            else []

    def veths(self) -> list[str]:
        """Links enslaved to one of this daemon's bridges."""
        out = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, text=True,
                                        check=True).stdout)
        bridges = set(self.bridges())
        return [link["ifname"] for link in out if link.get("master") in bridges]

    def nft(self) -> str:
        return subprocess.run(["nft", "list", "table", "ip", self.d.nft_table],
                              capture_output=True, text=True).stdout

    def dnat_elements(self) -> list[str]:
        """Published-port map elements in berth's table."""
        out = []
        for line in self.nft().splitlines():
            line = line.strip()
            if line.startswith("elements = {") and " : " in line:  # a map's, not a set's
                out.append(line)
        return out

    def leaks(self) -> list[str]:
        """What a daemon without containers must not hold."""
        out = [f"lease {net} {ip}" for net, ls in self.leases().items() for ip in ls]
        out += [f"netns {s}" for s in self.sandboxes()]
        out += [f"ports of {p}" for p in self.published()]
        out += [f"veth {v}" for v in self.veths()]
        out += [f"nft {e}" for e in self.dnat_elements()]
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
        out += [f"mount {m.split()[4]}" for m in mounts if str(self.nsdir) + "/" in m.split()[4]]
        return out

    def wait_no_leaks(self, timeout: float = 10.0) -> list[str]:
        """Veths of a removed namespace go asynchronously: give the kernel a moment."""
        deadline = time.monotonic() + timeout
        left = self.leaks()
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = self.leaks()
        return left


def clean(d) -> None:
    """Remove every container and user network of ``d`` (best effort)."""
    ids = d.berth("ps", "-aq", check=False).stdout.split()
    if ids:
        d.berth("rm", "-f", *ids, check=False)
    for name in d.berth("network", "ls", "-q", "--filter", "type=custom",
                        check=False).stdout.split():
        d.berth("network", "rm", name, check=False)
