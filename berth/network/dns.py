"""Name resolution for user-defined networks: berthd's DNS server, reached at 127.0.0.11.

As Docker's embedded server: a container on a user-defined network gets ``nameserver
127.0.0.11``; berthd holds a UDP and a TCP socket on 127.0.0.11 (kernel-picked ports) inside
that container's network namespace, and a nat rule there sends 127.0.0.11:53 to them (so a
process of the container may still bind port 53 itself). The address never changes while the
container's networks do (connect, disconnect). berthd also answers on ``<gateway>:53`` of
each user-defined network (one UDP and one TCP socket per network), for clients that ask the
gateway.

Who asks decides what is visible: a query on a container's own sockets is that container's;
one on a gateway is answered only when its source address is an endpoint of that network. The
names visible are those of every network that container is attached to (as Docker's
per-container resolver). Names of other networks are not resolved: a single-label name berth
does not know gets NXDOMAIN here (Docker forwards it upstream, where it cannot resolve either,
and the name would leave the host); other unknown names go to the container's ``--dns``
servers, or the host's resolv.conf servers, from the host's namespace (so a host resolver on
127.0.0.53 works); internal networks never forward (no way out).

The codec is sans-IO (``parse_query``, ``answer``); ``DnsServer`` adds the sockets.
"""

import asyncio
import socket
import struct
import threading
from collections.abc import Callable

QTYPE_A = 1
QTYPE_PTR = 12
QTYPE_AAAA = 28
QCLASS_IN = 1
RCODE_OK = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_REFUSED = 5
TTL = 600  # as Docker's embedded server

_HDR = struct.Struct("!HHHHHH")


class Query:
    __slots__ = ("id", "flags", "name", "qtype", "qclass", "question")

    def __init__(self, qid: int, flags: int, name: str, qtype: int, qclass: int,
                 question: bytes) -> None:
        self.id, self.flags, self.name = qid, flags, name
        self.qtype, self.qclass, self.question = qtype, qclass, question


def parse_query(msg: bytes) -> Query | None:
    """The first question of a query; None if ``msg`` is not a well-formed query."""
    if len(msg) < 12:
        return None
    qid, flags, qd, _, _, _ = _HDR.unpack_from(msg)
    if flags & 0x8000 or qd < 1 or (flags >> 11) & 0xF != 0:
        return None
    off = 12
    labels = []
    while True:
        if off >= len(msg):
            return None
        n = msg[off]
        if n == 0:
            off += 1
            break
        if n > 63 or off + 1 + n > len(msg):
            return None  # compression pointers never appear in a query's first name
        labels.append(msg[off + 1:off + 1 + n].decode("ascii", "replace"))
        off += 1 + n
    if off + 4 > len(msg):
        return None
    qtype, qclass = struct.unpack_from("!HH", msg, off)
    return Query(qid, flags, ".".join(labels).lower(), qtype, qclass, msg[12:off + 4])


def answer(q: Query, rcode: int, addrs: list[str] = (), ptr: str | None = None) -> bytes:
    """A response to ``q``: A records for ``addrs`` (or one PTR) pointing at the question."""
    rd = q.flags & 0x0100
    flags = 0x8000 | 0x0400 | rd | 0x0080 | rcode  # QR, AA, RD copied, RA
    body = b""
    count = 0
    if q.qtype == QTYPE_A:
        for a in addrs:
            body += struct.pack("!HHHIH", 0xC00C, QTYPE_A, QCLASS_IN, TTL, 4) + socket.inet_aton(a)
            count += 1
    elif q.qtype == QTYPE_PTR and ptr:
        name = b"".join(bytes([len(p)]) + p.encode() for p in ptr.split(".") if p) + b"\0"
        body += struct.pack("!HHHIH", 0xC00C, QTYPE_PTR, QCLASS_IN, TTL, len(name)) + name
        count = 1
    return _HDR.pack(q.id, flags, 1, count, 0, 0) + q.question + body


def error_reply(msg: bytes, rcode: int) -> bytes | None:
    """A bare error answer for a query we could not parse (FORMERR), when it has a header."""
    if len(msg) < 12:
        return None
    qid, flags, _, _, _, _ = _HDR.unpack_from(msg)
    if flags & 0x8000:
        return None
    return _HDR.pack(qid, 0x8000 | (flags & 0x0100) | 0x0080 | rcode, 0, 0, 0, 0)


def ptr_to_ip(name: str) -> str | None:
    if not name.endswith(".in-addr.arpa"):
        return None
    parts = name[: -len(".in-addr.arpa")].split(".")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        return None
    return ".".join(reversed(parts))


def host_nameservers(path: str = "/etc/resolv.conf") -> list[str]:
    out = []
    try:
        with open(path) as f:
            for line in f:
                w = line.split()
                if len(w) >= 2 and w[0] == "nameserver":
                    out.append(w[1])
    except OSError:
        pass
    return out


class Answer:
    """What a lookup decided: ``addrs`` or ``ptr`` to answer, or ``upstream`` to forward to;
    ``refuse`` when the asker is not an endpoint of the network it asked; ``nxdomain`` for a
    name berth is the authority for and does not have (a reverse name in its own subnets)."""

    __slots__ = ("addrs", "ptr", "upstream", "refuse", "nxdomain")

    def __init__(self, addrs: list[str] | None = None, ptr: str | None = None,
                 upstream: list[str] | None = None, refuse: bool = False,
                 nxdomain: bool = False) -> None:
        self.addrs, self.ptr, self.upstream, self.refuse = addrs, ptr, upstream, refuse
        self.nxdomain = nxdomain


#: lookup(where, client_ip, qname, qtype) -> Answer; ``where`` is the gateway address asked,
#: or ``STUB + sandbox id`` for a container's own 127.0.0.11 sockets
Lookup = Callable[[str, str, str, int], Answer]
STUB = "sandbox:"
#: the address containers are given as their nameserver on user-defined networks
STUB_IP = "127.0.0.11"


def decide(q: Query, a: Answer) -> bytes | None:
    """The reply when ``a`` settles it locally; None means forward upstream."""
    if a.refuse:
        return answer(q, RCODE_REFUSED)
    if a.nxdomain:
        return answer(q, RCODE_NXDOMAIN)
    if a.addrs is not None:
        # A known name: A records for A queries, an empty NOERROR for the rest (AAAA...), so that
        # a resolver does not go on to search domains or upstream for it.
        return answer(q, RCODE_OK, a.addrs)
    if a.ptr is not None:
        return answer(q, RCODE_OK, ptr=a.ptr)
    if not a.upstream:
        return answer(q, RCODE_SERVFAIL)
    return None


async def _forward_udp(msg: bytes, servers: list[str], timeout: float) -> bytes | None:
    loop = asyncio.get_running_loop()
    for server in servers:
        host, _, port = server.partition("#")  # "ip#port": tests point this at a loopback fake
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        s.setblocking(False)
        try:
            await loop.sock_connect(s, (host, int(port or 53)))
            await loop.sock_sendall(s, msg)
            reply = await asyncio.wait_for(loop.sock_recv(s, 65535), timeout)
            if len(reply) >= 2 and reply[:2] == msg[:2]:
                return reply
        except (TimeoutError, OSError):
            continue
        finally:
            s.close()
    return None


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: "DnsServer", key: str) -> None:
        self.server, self.ip = server, key

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        reply = self.server.handle_local(self.ip, addr[0], data)
        if reply is not None:
            self.transport.sendto(reply, addr)
        elif parse_query(data) is not None:
            asyncio.ensure_future(self._forward(data, addr))

    async def _forward(self, data: bytes, addr) -> None:
        q = parse_query(data)
        a = self.server.lookup(self.ip, addr[0], q.name, q.qtype)
        reply = await _forward_udp(data, a.upstream or [], self.server.timeout)
        if reply is None:
            reply = answer(q, RCODE_SERVFAIL)
        self.transport.sendto(reply, addr)


def sockets(ip: str, port: int = 0, *, freebind: bool = False
            ) -> tuple[socket.socket, socket.socket]:
    """A bound UDP socket and a listening TCP socket on ``ip``:``port`` (0: a port the kernel
    picks for each), in the calling thread's network namespace."""
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        for s in (u, t):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if freebind:
                s.setsockopt(socket.IPPROTO_IP, 15, 1)  # IP_FREEBIND: a bridge coming up
        u.bind((ip, port))
        t.bind((ip, port))
        t.listen(64)
        t.setblocking(False)
        u.setblocking(False)
    except BaseException:
        u.close()
        t.close()
        raise
    return u, t


class DnsServer:
    """Serves ``lookup`` on each bound address (UDP and TCP port ``port``) in its own thread."""

    def __init__(self, lookup: Lookup, *, port: int = 53, timeout: float = 2.0) -> None:
        self.lookup = lookup
        self.port = port
        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        self.bound: dict[str, tuple[object, object]] = {}
        self.thread = threading.Thread(target=self.loop.run_forever, name="berth-dns",
                                       daemon=True)
        self.thread.start()

    def handle_local(self, where: str, client_ip: str, data: bytes) -> bytes | None:
        q = parse_query(data)
        if q is None:
            return error_reply(data, RCODE_FORMERR)
        if q.qclass != QCLASS_IN:
            return answer(q, RCODE_REFUSED)
        return decide(q, self.lookup(where, client_ip, q.name, q.qtype))

    async def _tcp_client(self, ip: str, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")[0]
        try:
            while True:
                n = struct.unpack("!H", await reader.readexactly(2))[0]
                data = await reader.readexactly(n)
                reply = self.handle_local(ip, peer, data)
                if reply is None:
                    q = parse_query(data)
                    a = self.lookup(ip, peer, q.name, q.qtype)
                    reply = await _forward_udp(data, a.upstream or [], self.timeout)
                    reply = reply or answer(q, RCODE_SERVFAIL)
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, OSError):
            pass
        finally:
            writer.close()

    async def _serve(self, key: str, u: socket.socket, t: socket.socket) -> None:
        await self._unbind(key)  # never two pairs for one key: the first would be orphaned
        loop = asyncio.get_running_loop()
        udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self, key), sock=u)
        try:
            tcp = await asyncio.start_server(lambda r, w: self._tcp_client(key, r, w), sock=t)
        except BaseException:
            udp.close()
            raise
        self.bound[key] = (udp, tcp)

    async def _unbind(self, key: str) -> None:
        pair = self.bound.pop(key, None)
        if pair:
            udp, tcp = pair
            udp.close()
            tcp.close()  # the listening socket is closed here and now
            # A datagram transport closes its socket on the loop's next turn: a socket left
            # open would keep a container's network namespace (and its veths) alive. (Not
            # Server.wait_closed: from Python 3.12 on it waits for clients' connections too.)
            await asyncio.sleep(0)

    def serve(self, key: str, udp: socket.socket, tcp: socket.socket) -> None:
        """Answer for ``key`` on the bound sockets ``udp`` and ``tcp`` (listening); they are
        the server's from now on, closed by ``unbind(key)`` (or here, on failure)."""
        try:
            asyncio.run_coroutine_threadsafe(self._serve(key, udp, tcp), self.loop).result(5)
        except BaseException:
            udp.close()
            tcp.close()
            raise

    def bind(self, ip: str) -> None:
        """Serve on ``ip``:port (idempotent); OSError if the address cannot be bound."""
        if ip in self.bound:
            return
        u, t = sockets(ip, self.port, freebind=True)
        self.serve(ip, u, t)

    def unbind(self, key: str) -> None:
        asyncio.run_coroutine_threadsafe(self._unbind(key), self.loop).result(5)

    def close(self) -> None:
        for key in list(self.bound):
            self.unbind(key)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
