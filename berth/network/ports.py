"""Published ports: the ``-p`` grammar, Docker's PortBindings form, and host-port reservations.

A ``PortBinding`` says "host ``host_ip``:``host_port`` (or the first free port of
``host_port``..``host_port_end``, or any ephemeral port when 0) forwards ``proto`` to the
container's ``container_port``". ``Reservations`` holds one bound socket per published host port,
so that the kernel itself is the referee of who owns a port: a port some host process already
bound (or berth already published) fails to bind, and no host process can take it later while
berth forwards it. The data path itself is nftables (``firewall``); these sockets never carry
traffic, since DNAT rewrites packets before the socket lookup.

The ``-p`` grammar is Docker's (``nat.ParsePortSpec``)::

    [[HOST_IP:][HOST_PORT[-END]]:]CONTAINER_PORT[-END][/tcp|/udp]

with an IPv6 host address in brackets.
"""

import ipaddress
import socket
import threading
from dataclasses import dataclass

from ..errors import Conflict, InvalidArgument

PROTOS = ("tcp", "udp")


class InvalidPortSpec(InvalidArgument):
    pass


class PortInUse(Conflict):
    pass


@dataclass(frozen=True)
class PortBinding:
    container_port: int
    proto: str = "tcp"
    host_ip: str = ""  # "" is every IPv4 address of the host
    host_port: int = 0  # 0: any free ephemeral port
    host_port_end: int = 0  # > host_port: the first free port in host_port..host_port_end

    def to_docker(self) -> tuple[str, dict[str, str]]:
        return f"{self.container_port}/{self.proto}", {
            "HostIp": self.host_ip or "0.0.0.0", "HostPort": str(self.host_port)}


def _port(s: str, what: str) -> int:
    if not s.isdigit() or not 0 < int(s) < 65536:
        raise InvalidPortSpec(f"invalid {what}: {s}")
    return int(s)


def _range(s: str, what: str) -> tuple[int, int]:
    lo, sep, hi = s.partition("-")
    a = _port(lo, what)
    b = _port(hi, what) if sep else a
    if b < a:
        raise InvalidPortSpec(f"invalid {what}: {s}")
    return a, b


def check_host_ip(ip: str) -> str:
    if ip in ("", "0.0.0.0"):
        return ""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        raise InvalidPortSpec(f"invalid ip address: {ip}") from None
    if addr.version != 4:
        raise InvalidPortSpec(f"ipv6 host address not supported: {ip}")
    return ip


def parse_publish(spec: str) -> list[PortBinding]:
    """One ``-p`` argument as bindings (a range gives one binding per container port)."""
    rest, _, proto = spec.partition("/")
    proto = proto.lower() or "tcp"
    if proto not in PROTOS:
        raise InvalidPortSpec(f"invalid proto: {proto}")
    host_ip = ""
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0 or rest[close + 1:close + 2] != ":":
            raise InvalidPortSpec(f"invalid port spec: {spec}")
        host_ip, rest = rest[1:close], rest[close + 2:]
        host_part, _, ctr_part = rest.rpartition(":")
    else:
        fields = rest.split(":")
        if len(fields) == 1:
            host_part, ctr_part = "", fields[0]
        elif len(fields) == 2:
            host_part, ctr_part = fields
        elif len(fields) == 3:
            host_ip, host_part, ctr_part = fields
        else:
            raise InvalidPortSpec(f"invalid port spec: {spec}")
    host_ip = check_host_ip(host_ip)
    if not ctr_part:
        raise InvalidPortSpec(f"no port specified: {spec}")
    c_lo, c_hi = _range(ctr_part, "containerPort")
    if not host_part:
        return [PortBinding(p, proto, host_ip) for p in range(c_lo, c_hi + 1)]
    h_lo, h_hi = _range(host_part, "hostPort")
    if c_lo == c_hi and h_hi > h_lo:
        return [PortBinding(c_lo, proto, host_ip, h_lo, h_hi)]
    if h_hi - h_lo != c_hi - c_lo:
        raise InvalidPortSpec(f"invalid ranges specified for container and host ports: {spec}")
    return [PortBinding(c, proto, host_ip, h_lo + i) for i, c in
            enumerate(range(c_lo, c_hi + 1))]


def from_docker(port_bindings: dict[str, list[dict[str, str]] | None]) -> list[PortBinding]:
    """HostConfig.PortBindings (``{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}``)."""
    out = []
    for key, binds in (port_bindings or {}).items():
        port, _, proto = key.partition("/")
        proto = proto.lower() or "tcp"
        if proto not in PROTOS:
            raise InvalidPortSpec(f"invalid proto: {proto}")
        c = _port(port, "containerPort")
        for b in binds or [{}]:
            ip = check_host_ip((b or {}).get("HostIp") or "")
            hp = (b or {}).get("HostPort") or ""
            # "0" is dockerd's "any port" too (the docker CLI's -p 0:80, docker-py's 0)
            lo, hi = _range(hp, "hostPort") if hp not in ("", "0") else (0, 0)
            out.append(PortBinding(c, proto, ip, lo, hi if hi > lo else 0))
    return out


def exposed(exposed_ports: dict[str, object] | list[str]) -> list[PortBinding]:
    """``-P``: every EXPOSEd port to an ephemeral host port."""
    out = []
    for key in exposed_ports:
        port, _, proto = key.partition("/")
        c_lo, c_hi = _range(port, "containerPort")
        proto = proto.lower() or "tcp"
        if proto not in PROTOS:
            raise InvalidPortSpec(f"invalid proto: {proto}")
        out += [PortBinding(p, proto) for p in range(c_lo, c_hi + 1)]
    return out


@dataclass(frozen=True)
class Published:
    """A binding resolved to one host port, as the data path and ``port`` show it."""

    proto: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int

    def to_json(self) -> dict:
        return {"proto": self.proto, "host_ip": self.host_ip, "host_port": self.host_port,
                "container_ip": self.container_ip, "container_port": self.container_port}

    @classmethod
    def from_json(cls, d: dict) -> "Published":
        return cls(d["proto"], d["host_ip"], d["host_port"], d["container_ip"],
                   d["container_port"])


class Reservations:
    """One bound (never listening) socket per host port berth forwards."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held: dict[tuple[str, str, int], socket.socket] = {}

    def _bind(self, proto: str, ip: str, port: int) -> socket.socket:
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        s = socket.socket(socket.AF_INET, kind | socket.SOCK_CLOEXEC)
        try:
            s.bind((ip or "0.0.0.0", port))
        except OSError:
            s.close()
            raise
        return s

    def reserve(self, b: PortBinding) -> tuple[str, int]:
        """Bind the host side of ``b``; the (host_ip, port) now held, or PortInUse."""
        ip = b.host_ip
        with self.lock:
            if b.host_port == 0:
                s = self._bind(b.proto, ip, 0)
                port = s.getsockname()[1]
            else:
                last = max(b.host_port_end, b.host_port)
                s = None
                err: OSError | None = None
                for port in range(b.host_port, last + 1):
                    try:
                        s = self._bind(b.proto, ip, port)
                        break
                    except OSError as e:
                        err = e
                if s is None:
                    where = f"{ip or '0.0.0.0'}:{b.host_port}"
                    if last > b.host_port:
                        where += f"-{last}"
                    ours = any(self._ours(b.proto, ip, p) for p in range(b.host_port, last + 1))
                    if ours or last > b.host_port:
                        # dockerd's words when its own allocator holds the port
                        raise PortInUse(f"Bind for {where} failed: port is already allocated")
                    why = err.strerror.lower() if err and err.strerror else "in use"
                    raise PortInUse(f"listen {b.proto}4 {where}: bind: {why}")
            self.held[(b.proto, ip, port)] = s
            return ip, port

    def _ours(self, proto: str, ip: str, port: int) -> bool:
        return (proto, ip, port) in self.held or (proto, "", port) in self.held or (
            not ip and any(k[0] == proto and k[2] == port for k in self.held))

    def hold(self, proto: str, ip: str, port: int) -> bool:
        """Take back a port published before a restart; False if someone else holds it now."""
        with self.lock:
            if (proto, ip, port) in self.held:
                return True
            try:
                self.held[(proto, ip, port)] = self._bind(proto, ip, port)
            except OSError:
                return False
            return True

    def release(self, proto: str, ip: str, port: int) -> None:
        with self.lock:
            s = self.held.pop((proto, ip, port), None)
        if s is not None:
            s.close()

    def close(self) -> None:
        with self.lock:
            held, self.held = self.held, {}
        for s in held.values():
            s.close()
