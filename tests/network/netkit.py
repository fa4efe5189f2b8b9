"""Helpers for the network tests: a NetworkManager on a private root with kernel-global names
made unique per test (bridges, nft table), and "boxes" — a sandbox plus a busybox rootfs that
processes run in through nsenter + chroot, as a container would see it (its own /etc/hosts and
/etc/resolv.conf, written from what the manager says).

Everything a test makes is removed in the fixture's finally, also when the test fails; the
fixture then checks that no veth, bridge, netns mount or nft table of the test is left.
"""

import secrets
import shutil
import signal
import socket
import struct
import subprocess
import threading
from pathlib import Path

from berth.network import dns as dnsmod


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Box:
    """A sandbox with a rootfs: what a container of the engine will be, minus the runtime."""

    def __init__(self, mgr, sid: str, rootfs: Path) -> None:
        self.mgr, self.sid, self.rootfs = mgr, sid, rootfs
        self.path = mgr.create_sandbox(sid)
        self.procs: list[subprocess.Popen] = []

    def write_files(self, hostname: str | None = None) -> None:
        etc = self.rootfs / "etc"
        (etc / "resolv.conf").write_text(self.mgr.resolv_conf(self.sid))
        (etc / "hosts").write_text(self.mgr.hosts(self.sid, hostname or self.sid[:12]))

    def argv(self, *cmd: str) -> list[str]:
        return ["nsenter", f"--net={self.path}", "chroot", str(self.rootfs), *cmd]

    def run(self, *cmd: str, timeout: float = 20) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*cmd), capture_output=True, text=True, timeout=timeout)

    def start(self, *cmd: str, **kw) -> subprocess.Popen:
        p = subprocess.Popen(self.argv(*cmd), **kw)
        self.procs.append(p)
        return p

    def start_in_netns(self, *cmd: str, **kw) -> subprocess.Popen:
        """A host program in the box's netns only (busybox has no UDP listener)."""
        p = subprocess.Popen(["nsenter", f"--net={self.path}", *cmd], **kw)
        self.procs.append(p)
        return p

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.wait()
        self.procs = []

    @property
    def ip(self) -> str:
        return self.mgr.endpoints_of(self.sid)[0].ip


class Net:
    """The per-test world: ``mgr`` and a factory of boxes."""

    def __init__(self, tmp: Path, rootfs: Path, **kw) -> None:
        from berth.network.manager import NetworkManager

        self.sfx = secrets.token_hex(3)
        self.tmp = tmp
        self.rootfs = rootfs
        self.kw = dict(table=f"bt_{self.sfx}", default_bridge=f"bt{self.sfx}d", **kw)
        self.root = str(tmp / "root")
        self.run_dir = str(tmp / "run")
        self.veths: set[str] = set()
        self.mgr = self._record(NetworkManager(self.root, self.run_dir, **self.kw))
        self.boxes: list[Box] = []

    def _record(self, mgr):
        """Note every veth the manager makes, so the leak check knows all of them."""
        attach = mgr.attach

        def recording(*a, **kw):
            ep = attach(*a, **kw)
            self.veths.add(ep.veth)
            return ep

        mgr.attach = recording
        return mgr

    def name(self, what: str) -> str:
        return f"{what}-{self.sfx}"

    def box(self, sid: str | None = None, network: str | None = None, *, hostname=None,
            **attach) -> Box:
        sid = sid or secrets.token_hex(32)
        d = self.tmp / "boxes" / sid[:12]
        shutil.copytree(self.rootfs, d, symlinks=True)
        b = Box(self.mgr, sid, d)
        self.boxes.append(b)
        if network:
            self.mgr.attach(sid, network, **attach)
        b.write_files(hostname)
        return b

    def restart(self, **kw) -> None:
        """A new manager on the same root, as berthd after a restart (the old one is closed)."""
        from berth.network.manager import NetworkManager

        self.mgr.close()
        self.mgr = self._record(NetworkManager(self.root, self.run_dir, **{**self.kw, **kw}))
        for b in self.boxes:
            b.mgr = self.mgr

    def cleanup(self) -> None:
        for b in self.boxes:
            b.stop()
        self.mgr.teardown()


def leftovers(sfx: str, veths: set[str]) -> list[str]:
    """Kernel objects of this test still present: links named for it, its veths, nft table."""
    out = []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    for line in links.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if sfx in name or name in veths:
            out.append(f"link {name}")
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    if f"bt_{sfx}" in tables:
        out.append(f"nft table bt_{sfx}")
    return out


class FakeUpstream:
    """A DNS server on 127.0.0.1 standing for the host's resolvers: it records every name it is
    asked and answers each with ``answer_ip`` (the network rule: no query ever leaves the host).
    """

    def __init__(self, answer_ip: str = "127.0.0.99") -> None:
        self.answer_ip = answer_ip
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.names: list[str] = []
        self.done = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def addr(self) -> str:
        return f"127.0.0.1#{self.port}"

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.done:
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            q = dnsmod.parse_query(data)
            if q is None:
                continue
            self.names.append(q.name)
            self.sock.sendto(dnsmod.answer(q, 0, [self.answer_ip]), peer)

    def close(self) -> None:
        self.done = True
        self.thread.join(2)
        self.sock.close()


def dns_query(server: str, name: str, port: int = 53, qid: int = 0x1234) -> bytes:
    """A raw A query for ``name`` sent from the host; the reply."""
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack("!HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    try:
        s.sendto(q, (server, port))
        return s.recv(4096)
    finally:
        s.close()

