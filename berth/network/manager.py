"""NetworkManager: the network package's one entry point for the engine.

It owns, under ``root`` (persistent) and ``run_dir`` (gone at reboot):

    root/networks/<id>.json      a network: config, address leases, endpoints (atomic writes)
    root/networks/<id>.intent    "create" or "remove" while the bridge is being made / removed
    root/sandboxes/<sid>.json    a sandbox's published ports
    run_dir/netns/<sid>          the sandbox's network namespace (bind mount)

and in the kernel: one Linux bridge per network (``berth0`` for the default ``bridge`` network,
``berth-<id9>`` for the others — IFNAMSIZ allows 15 characters — unless
``com.docker.network.bridge.name`` says otherwise), one veth pair per endpoint (host end
``vb<endpoint id 12>`` enslaved to the bridge, the other end ``eth<N>`` in the sandbox), one
nftables table (``table``), and DNS sockets on user networks' gateways; in each sandbox on a
user network, berthd's DNS sockets on 127.0.0.11 and the ``berth_dns`` nat table pointing at
them (closed before the sandbox goes: an open socket would keep its namespace alive).

Invariants:
- every kernel object berth makes can be traced to a state file: a bridge to a network (or its
  intent file, written before the bridge exists), a veth to an endpoint of a network on that
  bridge, a netns to run_dir; ``reconcile`` deletes what cannot be traced to a live container;
- a lease is written before its veth is made and released after its veth is gone (or its
  sandbox is), so a crash never lets two containers hold one address;
- the nftables table is always the rendering of the current state, applied whole;
- calls are thread-safe: one lock guards the in-memory state and its files; kernel work for one
  endpoint (veth, addresses, routes) runs outside it, so attaches to different sandboxes proceed
  in parallel. The engine (asyncio) calls these from worker threads.

Lease and endpoint files are written without fsync: a rename is atomic against a crash of
berthd, and after a crash of the machine no container survives for a lease to protect —
reconcile then clears them all. That keeps fsync off every container start.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from .. import atomic, fastjson
from ..errors import Conflict, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from . import firewall, ipam, netlink, sandbox
from .dns import STUB, STUB_IP, Answer, DnsServer, host_nameservers, ptr_to_ip
from .dns import sockets as dns_sockets
from .files import hosts as hosts_text
from .files import resolv_conf as resolv_text
from .ports import PortBinding, Published, Reservations

OPT_BRIDGE_NAME = "com.docker.network.bridge.name"
OPT_MTU = "com.docker.network.driver.mtu"
OPT_MASQ = "com.docker.network.bridge.enable_ip_masquerade"
OPT_ICC = "com.docker.network.bridge.enable_icc"
OPT_HOST_IP = "com.docker.network.bridge.host_binding_ipv4"
OPT_DEFAULT = "com.docker.network.bridge.default_bridge"
PREDEFINED = ("bridge", "host", "none")
VETH_PREFIX = "vb"


class NoSuchNetwork(NotFound):
    pass


class NetworkInUse(PermissionDenied):
    """dockerd answers 403 (forbidden) for a network that still has endpoints."""


class NetworkExists(Conflict):
    pass


class Predefined(PermissionDenied):
    """An operation dockerd forbids on the predefined networks (bridge, host, none)."""


class PoolOverlaps(PermissionDenied):
    pass


class EndpointExists(PermissionDenied):
    pass


class NotConnected(NotFound):
    pass


class Ambiguous(InvalidArgument):
    pass


def ambiguous_message(ref: str, count: int) -> str:
    """dockerd 20.10's words for an id prefix that names several networks."""
    return f"{count} matches found based on ID prefix: network {ref} is ambiguous"


@dataclass
class Endpoint:
    id: str
    network_id: str
    sandbox_id: str
    ip: str
    mac: str
    ifname: str
    veth: str
    names: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    #: the sandbox's default route goes through this endpoint's gateway
    gateway_route: bool = False
    #: legacy links on a user network: alias → the name it stands for, for this endpoint only
    links: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, d: dict) -> Endpoint:
        return cls(**d)


@dataclass
class Network:
    id: str
    name: str
    bridge: str
    subnet: str
    gateway: str
    ip_range: str = ""
    internal: bool = False
    default: bool = False
    user_subnet: bool = False
    user_gateway: bool = False
    mtu: int = 1500
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    attachable: bool = False
    created: str = ""
    driver: str = "bridge"
    #: Docker's AuxiliaryAddresses: name → address, never handed out
    aux: dict[str, str] = field(default_factory=dict)
    #: IPAM options as given (None when the request had none: dockerd shows null then)
    ipam_options: dict[str, str] | None = None
    leases: ipam.Subnet | None = None
    endpoints: dict[str, Endpoint] = field(default_factory=dict)

    @property
    def prefixlen(self) -> int:
        return int(self.subnet.rsplit("/", 1)[1])

    @property
    def dns(self) -> bool:
        """Name resolution: user-defined networks only, as Docker."""
        return not self.default

    @property
    def masquerade(self) -> bool:
        return self.options.get(OPT_MASQ, "true").lower() != "false"

    @property
    def icc(self) -> bool:
        return self.options.get(OPT_ICC, "true").lower() != "false"

    def to_json(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("leases", "endpoints")}
        d["ipam"] = self.leases.to_json() if self.leases else {}
        d["endpoints"] = {k: e.to_json() for k, e in self.endpoints.items()}
        return d

    @classmethod
    def from_json(cls, d: dict) -> Network:
        d = dict(d)
        leases = d.pop("ipam", {}) or {}
        eps = d.pop("endpoints", {}) or {}
        n = cls(**d)
        n.leases = ipam.Subnet(n.subnet, n.gateway, n.ip_range, leases.get("leases"),
                               leases.get("last", ""), list(n.aux.values()))
        n.endpoints = {k: Endpoint.from_json(e) for k, e in eps.items()}
        return n


HOST_LOCK = "/run/berth-network.lock"


class _host_lock:
    """flock on HOST_LOCK: one subnet pick at a time on this machine, whichever daemon."""

    def __enter__(self) -> None:
        import fcntl

        self.fd = os.open(HOST_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def _mac_for(ip: str) -> str:
    # As dockerd: 02:42 and the IPv4 address, so a MAC is unique wherever its address is.
    return "02:42:" + ":".join(f"{int(x):02x}" for x in ip.split("."))


def _now() -> str:
    """Go's RFC3339Nano, as dockerd writes Created: trailing zeros of the fraction dropped."""
    ns = time.time_ns()
    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + \
        (f".{frac}" if frac else "") + "Z"


class NetworkManager:
    def __init__(self, root: str, run_dir: str, *, table: str = "berth",
                 default_bridge: str = "berth0", default_subnet: str | None = None,
                 pools: list[tuple[str, int]] | None = None, dns_port: int = 53,
                 upstream: list[str] | None = None, default_mtu: int | None = None,
                 host_resolv: str = "/etc/resolv.conf") -> None:
        self.root = root
        self.netdir = os.path.join(root, "networks")
        self.sbdir = os.path.join(root, "sandboxes")
        self.nsdir = os.path.join(run_dir, "netns")
        self.table = table
        self.default_bridge = default_bridge
        self.default_subnet = default_subnet
        self.pools = pools
        self.host_resolv = host_resolv
        #: where unknown names go when a container has no --dns of its own
        self.upstream = upstream
        self.default_mtu = default_mtu
        self.lock = threading.RLock()
        self.fw_lock = threading.Lock()
        self.stub_lock = threading.Lock()
        self.local = threading.local()
        self.networks: dict[str, Network] = {}
        #: sandbox id → published ports
        self.published: dict[str, list[Published]] = {}
        self.reservations = Reservations()
        self.closed = False
        self.dns = DnsServer(self._lookup, port=dns_port)
        for d in (self.netdir, self.sbdir):
            os.makedirs(d, mode=0o700, exist_ok=True)
        self._load()

    # -- state -------------------------------------------------------------------------------

    def _load(self) -> None:
        for fn in sorted(os.listdir(self.netdir)):
            if fn.endswith(".json"):
                with open(os.path.join(self.netdir, fn), "rb") as f:
                    n = Network.from_json(fastjson.loads(f.read()))
                self.networks[n.id] = n
        for fn in sorted(os.listdir(self.sbdir)):
            if fn.endswith(".json"):
                with open(os.path.join(self.sbdir, fn), "rb") as f:
                    d = fastjson.loads(f.read())
                self.published[fn[:-5]] = [Published.from_json(p) for p in d["ports"]]

    def _save(self, n: Network, *, sync: bool = False) -> None:
        atomic.write_text(os.path.join(self.netdir, f"{n.id}.json"), fastjson.dumps(n.to_json()),
                          0o600, sync=sync)

    def _save_published(self, sid: str) -> None:
        p = os.path.join(self.sbdir, f"{sid}.json")
        ports = self.published.get(sid)
        if ports:
            atomic.write_text(p, fastjson.dumps({"ports": [x.to_json() for x in ports]}), 0o600,
                              sync=False)
        else:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass

    def _intent(self, nid: str, what: str | None) -> None:
        p = os.path.join(self.netdir, f"{nid}.intent")
        if what is None:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        else:
            atomic.write_text(p, what, 0o600)

    def _nl(self) -> netlink.Netlink:
        nl = getattr(self.local, "nl", None)
        if nl is None:
            nl = self.local.nl = netlink.Netlink()
        return nl

    # -- networks ----------------------------------------------------------------------------

    def get(self, ref: str) -> Network:
        """A network by full id, name, or unique id prefix (as Docker resolves them)."""
        with self.lock:
            if ref in self.networks:
                return self.networks[ref]
            for n in self.networks.values():
                if n.name == ref:
                    return n
            hits = [n for n in self.networks.values() if n.id.startswith(ref)] if ref else []
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise Ambiguous(ambiguous_message(ref, len(hits)))
        raise NoSuchNetwork(f"network {ref} not found")

    def list(self) -> list[Network]:
        with self.lock:
            return sorted(self.networks.values(), key=lambda n: n.created)

    def _taken_subnets(self) -> list[ipam.IPv4Network]:
        nl = self._nl()
        taken = [ipam.network(n.subnet) for n in self.networks.values()]
        for dst, plen, table in nl.routes():
            if table == 255 and plen == 32:
                continue  # local table host routes: the addresses below cover them
            if plen:
                taken.append(ipam.IPv4Network(f"{dst}/{plen}", strict=False))
        for _, addr, plen in nl.addrs():
            if not addr.startswith("127."):
                taken.append(ipam.IPv4Network(f"{addr}/{plen}", strict=False))
        return taken

    def ensure_default(self) -> Network:
        """The predefined ``bridge`` network, made on first start (``default_subnet`` may be
        dockerd's ``--bip`` form, ``gateway/prefix``)."""
        with self.lock:
            for n in self.networks.values():
                if n.default:
                    return n
        bip = self.default_subnet or self._adopt_stale_default()
        subnet = gateway = None
        if bip:
            addr, _, plen = bip.partition("/")
            sn = ipam.network(bip)
            subnet = str(sn)
            if ipam.address(addr) != sn.network_address:
                gateway = addr
        return self.create("bridge", subnet=subnet, gateway=gateway, _default=True,
                           options={OPT_BRIDGE_NAME: self.default_bridge, OPT_DEFAULT: "true",
                                    OPT_ICC: "true", OPT_MASQ: "true", OPT_HOST_IP: "0.0.0.0",
                                    OPT_MTU: str(self.default_mtu or 1500)})

    def _adopt_stale_default(self) -> str | None:
        """A default bridge left on the host with nothing attached (berthd stopped, its root
        since removed or another one used): made anew on the address it had, as dockerd adopts
        docker0, instead of refusing to start. Its ``gateway/prefix``, or None."""
        nl = self._nl()
        old = nl.link(self.default_bridge)
        if old is None or old.kind != "bridge" or any(lk.master == old.index
                                                      for lk in nl.links()):
            return None  # absent, or in use: create() says so
        bip = next((f"{ip}/{plen}" for idx, ip, plen in nl.addrs()
                    if idx == old.index and ":" not in ip), None)
        nl.del_link(self.default_bridge)
        return bip

    def create(self, name: str, *, subnet: str | None = None, gateway: str | None = None,
               ip_range: str | None = None, internal: bool = False,
               options: dict[str, str] | None = None, labels: dict[str, str] | None = None,
               driver: str = "bridge", attachable: bool = False, check_duplicate: bool = True,
               aux_addresses: dict[str, str] | None = None,
               ipam_options: dict[str, str] | None = None, _default: bool = False) -> Network:
        """A bridge network; InvalidArgument / Conflict and nothing made on bad input."""
        options = dict(options or {})
        if driver in ("host", "null"):
            raise Predefined(f'only one instance of "{driver}" network is allowed')
        if driver not in ("bridge", ""):
            raise NotFound(f"plugin \"{driver}\" not found")
        # dockerd takes any name but an empty one (spaces and slashes included)
        if not name or not name.isprintable():
            raise InvalidArgument(f"invalid name: {name}")
        if name in PREDEFINED and not _default:
            raise Predefined(f"operation is not permitted on predefined {name} network")
        if (gateway or ip_range or aux_addresses) and not subnet:
            raise InvalidArgument("every ip-range or gateway must have a corresponding subnet")
        mtu = self.default_mtu or 1500
        if OPT_MTU in options:
            try:
                mtu = int(options[OPT_MTU])
            except ValueError:
                raise InvalidArgument(f"failed to parse {OPT_MTU} value: {options[OPT_MTU]}"
                                      ) from None
            if not 68 <= mtu <= 65535:
                raise InvalidArgument(f"invalid mtu: {mtu}")
        for k in (OPT_ICC, OPT_MASQ):
            if options.get(k, "true").lower() not in ("true", "false", "1", "0"):
                raise InvalidArgument(f"failed to parse {k} value: {options[k]}")
        if options.get(OPT_HOST_IP):
            ipam.address(options[OPT_HOST_IP], OPT_HOST_IP)
        nid = secrets.token_hex(32)
        # IFNAMSIZ: 15 characters at most, hence 9 of the id.
        bridge = options.get(OPT_BRIDGE_NAME) or f"berth-{nid[:9]}"
        if len(bridge) > 15 or not bridge.isprintable() or " " in bridge or "/" in bridge:
            raise InvalidArgument(f"invalid bridge name: {bridge}")
        if bridge == "docker0":
            raise InvalidArgument("bridge name docker0 belongs to dockerd")
        # Subnets are picked from what the host's routes leave free: two daemons (two berthds,
        # or tests side by side) picking at once would see the same hole, so the pick and the
        # bridge's address, which claims it, happen under one host-wide lock.
        with self.lock, _host_lock():
            if check_duplicate and any(n.name == name for n in self.networks.values()):
                raise NetworkExists(f"network with name {name} already exists")
            if any(n.bridge == bridge for n in self.networks.values()):
                raise NetworkExists(f"bridge {bridge} is already used by another network")
            existing = self._nl().link(bridge)
            if existing is not None:
                if existing.kind != "bridge":
                    raise Conflict(f"existing interface {bridge} is not a bridge")
                raise Conflict(f"bridge {bridge} already exists on the host")
            if subnet:
                try:
                    sn = ipam.network(subnet)
                except ipam.InvalidSubnet as e:
                    if not e.message.startswith("invalid subnet:"):
                        raise
                    raise ipam.InvalidSubnet(f"Invalid subnet {subnet} : invalid CIDR address: "
                                             f"{subnet}") from None
                for other in self.networks.values():
                    if sn.overlaps(ipam.network(other.subnet)):
                        raise PoolOverlaps("Pool overlaps with other one on this address space")
                if gateway and ipam.address(gateway, "gateway") not in sn:
                    raise InvalidArgument(f"no matching subnet for gateway {gateway}")
                if ip_range and not ipam.network(ip_range, "ip range").subnet_of(sn):
                    raise InvalidArgument(f"no matching subnet for range {ip_range}")
            else:
                sn = ipam.pick_subnet(self._taken_subnets(), self.pools)
            aux = {str(k): str(v) for k, v in (aux_addresses or {}).items()}
            sub = ipam.Subnet(str(sn), gateway or "", ip_range or "", reserved=list(aux.values()))
            n = Network(id=nid, name=name, bridge=bridge, subnet=str(sn),
                        gateway=str(sub.gateway), ip_range=ip_range or "", internal=internal,
                        default=_default, user_subnet=bool(subnet),
                        user_gateway=bool(gateway), mtu=mtu, options=options,
                        labels=dict(labels or {}), attachable=attachable, created=_now(),
                        driver="bridge", aux=aux, ipam_options=ipam_options, leases=sub)
            self._intent(nid, f"create {bridge}")
            try:
                self._make_bridge(n)
                self._save(n, sync=True)
                self.networks[nid] = n
                try:
                    self._apply_firewall()
                    if n.dns:
                        self._bind_dns(n)
                except BaseException:
                    del self.networks[nid]
                    os.unlink(os.path.join(self.netdir, f"{nid}.json"))
                    raise
            except BaseException:
                self._nl().del_link(bridge)
                self._intent(nid, None)
                self._apply_firewall_quiet()
                raise
            self._intent(nid, None)
            return n

    def _bind_dns(self, n: Network) -> None:
        try:
            self.dns.bind(n.gateway)
        except OSError as e:
            raise FailedPrecondition(f"name resolution for network {n.name}: cannot bind "
                                     f"{n.gateway}:{self.dns.port}: {e.strerror or e}") from e

    def _make_bridge(self, n: Network) -> None:
        nl = self._nl()
        if not n.internal:
            # As dockerd: containers reach other networks' published ports and the outside
            # only through the host's IPv4 forwarding.
            with open("/proc/sys/net/ipv4/ip_forward") as f:
                if f.read().strip() == "0":
                    sandbox.write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")
        try:
            nl.add_bridge(n.bridge, mtu=n.mtu)
            # Loopback clients of published ports are DNATed out of this bridge; without
            # route_localnet the kernel drops their 127.0.0.1 source as a martian.
            sandbox.write_sysctl(f"/proc/sys/net/ipv4/conf/{n.bridge}/route_localnet", "1")
            try:
                sandbox.write_sysctl(f"/proc/sys/net/ipv6/conf/{n.bridge}/disable_ipv6", "1")
            except OSError:
                pass
            link = nl.link(n.bridge)
            nl.add_addr(link.index, n.gateway, n.prefixlen)
        except OSError as e:
            nl.del_link(n.bridge)
            raise FailedPrecondition(f"create bridge {n.bridge}: {e.strerror or e}") from e

    def remove(self, ref: str) -> None:
        n = self.get(ref)
        with self.lock:
            if n.default:
                raise Predefined(f"{n.name} is a pre-defined network and cannot be removed")
            if n.endpoints:
                raise NetworkInUse(f"error while removing network: network {n.name} id {n.id} "
                                   "has active endpoints")
            self._intent(n.id, f"remove {n.bridge}")
            self._drop_network(n)

    def _drop_network(self, n: Network) -> None:
        if n.dns:
            self.dns.unbind(n.gateway)
        self.networks.pop(n.id, None)
        self._apply_firewall_quiet()
        self._nl().del_link(n.bridge)
        try:
            os.unlink(os.path.join(self.netdir, f"{n.id}.json"))
        except FileNotFoundError:
            pass
        self._intent(n.id, None)

    def prune(self) -> list[str]:
        """Remove every user network without endpoints; their names."""
        gone = []
        for n in self.list():
            if not n.default and not n.endpoints:
                try:
                    self.remove(n.id)
                    gone.append(n.name)
                except (NetworkInUse, NotFound):
                    pass
        return gone

    # -- sandboxes and endpoints -------------------------------------------------------------

    def sandbox_path(self, sid: str) -> str:
        if not sid or "/" in sid or sid.startswith("."):
            raise InvalidArgument(f"invalid sandbox id: {sid!r}")
        return os.path.join(self.nsdir, sid)

    def create_sandbox(self, sid: str) -> str:
        """A network namespace for container ``sid``; its path for config.json."""
        p = self.sandbox_path(sid)
        sandbox.create(p)
        return p

    def endpoints_of(self, sid: str) -> list[Endpoint]:
        with self.lock:
            eps = [e for n in self.networks.values() for e in n.endpoints.values()
                   if e.sandbox_id == sid]
        return sorted(eps, key=lambda e: int(e.ifname[3:]))

    def attach(self, sid: str, ref: str, *, ip: str | None = None, aliases: Iterable[str] = (),
               names: Iterable[str] = (), mac: str | None = None,
               dns: Iterable[str] = (), links: dict[str, str] | None = None) -> Endpoint:
        """Connect sandbox ``sid`` to network ``ref``: a veth into it, an address, a route."""
        path = self.sandbox_path(sid)
        if not sandbox.exists(path):
            raise sandbox.NoSuchSandbox(f"no such sandbox: {sid}")
        if mac:
            try:
                if len(netlink.mac_bytes(mac)) != 6:
                    raise ValueError
            except ValueError:
                raise InvalidArgument(f"invalid mac address: {mac}") from None
        with self.lock:
            n = self.get(ref)
            if ip and not n.user_subnet:
                raise InvalidArgument("user specified IP address is supported only when "
                                      "connecting to networks with user configured subnets")
            mine = [e for x in self.networks.values() for e in x.endpoints.values()
                    if e.sandbox_id == sid]
            if any(e.network_id == n.id for e in mine):
                raise EndpointExists(f"endpoint with name {sid[:12]} already exists in network "
                                     f"{n.name}")
            used = {e.ifname for e in mine}
            ifname = next(f"eth{i}" for i in range(len(used) + 1) if f"eth{i}" not in used)
            # The first non-internal network gives the default route (internal ones have none).
            route = not n.internal and not any(e.gateway_route for e in mine)
            eid = secrets.token_hex(32)
            try:
                addr = n.leases.allocate(eid, ip)
            except ipam.NoAddress:
                raise ipam.NoAddress(f"no available IPv4 addresses on this network's address "
                                     f"pools: {n.name} ({n.id})") from None
            ep = Endpoint(id=eid, network_id=n.id, sandbox_id=sid, ip=addr,
                          mac=mac or _mac_for(addr), ifname=ifname,
                          veth=VETH_PREFIX + eid[:12], names=list(names),
                          aliases=list(aliases), dns=list(dns), gateway_route=route,
                          links=dict(links or {}))
            n.endpoints[eid] = ep
            self._save(n)
        try:
            self._plumb(n, ep, path, default_route=route)
            if n.dns:
                self._ensure_stub(sid, path)
        except BaseException:
            self._nl().del_link(ep.veth)
            with self.lock:
                n.endpoints.pop(eid, None)
                n.leases.release(addr, eid)
                self._save(n)
            raise
        return ep

    def rename(self, sid: str, old: str, new: str) -> None:
        """Sandbox ``sid``'s endpoints answer to ``new`` where they answered to ``old``."""
        with self.lock:
            for n in self.networks.values():
                eps = [e for e in n.endpoints.values() if e.sandbox_id == sid]
                for e in eps:
                    e.names = [new if x == old else x for x in e.names]
                if eps:
                    self._save(n)

    def _plumb(self, n: Network, ep: Endpoint, path: str, default_route: bool) -> None:
        nl = self._nl()
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            br = nl.link(n.bridge)
            if br is None:
                raise FailedPrecondition(f"bridge {n.bridge} of network {n.name} is missing")
            try:
                nl.add_veth(ep.veth, ep.ifname, master=br.index, mtu=n.mtu, peer_netns_fd=fd,
                            peer_mac=ep.mac)
                # Hairpin: a container reaching its own published port. Where br_netfilter is
                # loaded (a dockerd loads it) the DNAT happens while the frame is still being
                # bridged, and the bridge sends it back out of the port it came in on only
                # with hairpin mode, as dockerd sets it without its userland proxy.
                sandbox.write_sysctl(f"/sys/class/net/{ep.veth}/brport/hairpin_mode", "1")
                with netlink.in_netns(fd):
                    inner = netlink.Netlink()
                try:
                    link = inner.link(ep.ifname)
                    inner.add_addr(link.index, ep.ip, n.prefixlen)
                    inner.set_link(link.index, up=True, what=f"set {ep.ifname} up")
                    if default_route:
                        inner.add_route(gateway=n.gateway, oif=link.index)
                finally:
                    inner.close()
            except OSError as e:
                raise FailedPrecondition(f"attach to network {n.name}: {e.strerror or e}") from e
        finally:
            os.close(fd)

    def _ensure_stub(self, sid: str, path: str, *, again: bool = False) -> None:
        """The container's own DNS sockets on 127.0.0.11 in its namespace, and the nat rule
        there that sends 127.0.0.11:53 to them (see dns). ``again``: replace what a previous
        berthd left (its sockets died with it, so their ports are stale)."""
        key = STUB + sid
        with self.stub_lock:  # two attaches of one sandbox must not make two stubs
            if key in self.dns.bound and not again:
                return
            self.dns.unbind(key)
            self._make_stub(key, path, again)

    def _make_stub(self, key: str, path: str, again: bool) -> None:
        sid = key[len(STUB):]
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            with netlink.in_netns(fd):
                u, t = dns_sockets(STUB_IP)
                try:
                    firewall.apply_here(firewall.stub_rules(
                        u.getsockname()[1], t.getsockname()[1], replace=again))
                except BaseException:
                    u.close()
                    t.close()
                    raise
        except OSError as e:
            raise FailedPrecondition(f"name resolution for container {sid[:12]}: "
                                     f"{e.strerror or e}") from e
        finally:
            os.close(fd)
        self.dns.serve(key, u, t)

    def detach(self, sid: str, ref: str) -> None:
        """Disconnect sandbox ``sid`` from network ``ref`` (its veth goes, its address too)."""
        with self.lock:
            n = self.get(ref)
            ep = next((e for e in n.endpoints.values() if e.sandbox_id == sid), None)
            if ep is None:
                raise NotConnected(f"container {sid[:12]} is not connected to network {n.name}")
        self._nl().del_link(ep.veth)
        with self.lock:
            n.endpoints.pop(ep.id, None)
            n.leases.release(ep.ip, ep.id)
            self._save(n)
            heir = None
            if ep.gateway_route:
                # The default route went with the veth: the next non-internal network takes it.
                heir = next((e for e in self.endpoints_of(sid)
                             if not self.networks[e.network_id].internal), None)
            ports = self.published.get(sid, [])
            keep = [p for p in ports if p.container_ip != ep.ip]
            if len(keep) != len(ports):
                for p in ports:
                    if p.container_ip == ep.ip:
                        self.reservations.release(p.proto, p.host_ip, p.host_port)
                self.published[sid] = keep
                self._save_published(sid)
                self._apply_firewall()
        if heir is not None:
            self._default_route(heir)

    def _default_route(self, ep: Endpoint) -> None:
        n = self.networks[ep.network_id]
        fd = os.open(self.sandbox_path(ep.sandbox_id), os.O_RDONLY | os.O_CLOEXEC)
        try:
            with netlink.in_netns(fd):
                inner = netlink.Netlink()
            try:
                link = inner.link(ep.ifname)
                if link is not None:
                    inner.add_route(gateway=n.gateway, oif=link.index)
            finally:
                inner.close()
        except OSError as e:
            raise FailedPrecondition(f"default route via network {n.name}: {e.strerror or e}"
                                     ) from e
        finally:
            os.close(fd)
        with self.lock:
            ep.gateway_route = True
            self._save(n)

    def destroy_sandbox(self, sid: str) -> None:
        """Everything of container ``sid`` goes: ports, addresses, endpoints, the namespace."""
        path = self.sandbox_path(sid)
        self.unpublish(sid)
        with self.lock:
            touched = []
            for n in self.networks.values():
                for ep in [e for e in n.endpoints.values() if e.sandbox_id == sid]:
                    del n.endpoints[ep.id]
                    n.leases.release(ep.ip, ep.id)
                    touched.append(n)
        # Our sockets in the namespace would keep it (and its veths) alive: they go first.
        self.dns.unbind(STUB + sid)
        # The veths die with the namespace; the leases go once nothing can use them.
        sandbox.destroy(path)
        with self.lock:
            for n in touched:
                self._save(n)

    # -- published ports ---------------------------------------------------------------------

    def publish(self, sid: str, bindings: Iterable[PortBinding]) -> list[Published]:
        """Forward host ports to the address of sandbox ``sid`` on its first network that is
        not internal (as dockerd, an internal network gives no external connectivity); all of
        them or none."""
        bindings = list(bindings)
        if not bindings:
            return self.ports(sid)
        eps = [e for e in self.endpoints_of(sid) if not self.networks[e.network_id].internal]
        if not eps:
            raise FailedPrecondition(f"container {sid[:12]} has no network to publish ports on")
        ep = eps[0]
        n = self.get(ep.network_id)
        default_ip = n.options.get(OPT_HOST_IP, "")
        if default_ip == "0.0.0.0":
            default_ip = ""
        done: list[Published] = []
        with self.lock:
            try:
                for b in bindings:
                    if not b.host_ip and default_ip:
                        b = PortBinding(b.container_port, b.proto, default_ip, b.host_port,
                                        b.host_port_end)
                    hip, hport = self.reservations.reserve(b)
                    done.append(Published(b.proto, hip, hport, ep.ip, b.container_port))
                self.published[sid] = self.published.get(sid, []) + done
                self._apply_firewall()
            except BaseException:
                for p in done:
                    self.reservations.release(p.proto, p.host_ip, p.host_port)
                cur = self.published.get(sid, [])
                self.published[sid] = [p for p in cur if p not in done]
                if not self.published[sid]:
                    del self.published[sid]
                raise
            self._save_published(sid)
            return list(self.published[sid])

    def unpublish(self, sid: str) -> None:
        with self.lock:
            ports = self.published.pop(sid, [])
            if not ports:
                return
            self._apply_firewall()
            self._save_published(sid)
        for p in ports:
            self.reservations.release(p.proto, p.host_ip, p.host_port)

    def ports(self, sid: str) -> list[Published]:
        with self.lock:
            return list(self.published.get(sid, []))

    def _apply_firewall(self) -> None:
        with self.fw_lock:
            rules = [firewall.BridgeRules(n.bridge, n.subnet, n.internal, n.masquerade, n.icc)
                     for n in self.networks.values()]
            pubs = [p for ps in self.published.values() for p in ps]
            if not rules and not pubs:
                firewall.remove(self.table)
            else:
                firewall.apply(firewall.render(self.table, rules, pubs))

    def _apply_firewall_quiet(self) -> None:
        try:
            self._apply_firewall()
        except OSError:
            pass

    # -- files for the container -------------------------------------------------------------

    def hosts(self, sid: str, hostname: str, *, extra: list[tuple[str, str]] = (),
              domainname: str = "") -> str:
        eps = self.endpoints_of(sid)
        return hosts_text(hostname, eps[0].ip if eps else None, extra, domainname)

    def resolv_conf(self, sid: str, *, dns: list[str] = (), search: list[str] = (),
                    options: list[str] = ()) -> str:
        # As Docker: 127.0.0.11 as soon as one endpoint has a resolver (a user network).
        embedded = None
        if any(self.get(ep.network_id).dns for ep in self.endpoints_of(sid)):
            embedded = STUB_IP
        return resolv_text(embedded=embedded, dns=dns, search=search, options=options,
                           host_resolv=self.host_resolv)

    def host_gateway(self) -> str:
        """The address ``--add-host x:host-gateway`` means: the default bridge's gateway."""
        with self.lock:
            return next((n.gateway for n in self.networks.values() if n.default), "")

    # -- name resolution ---------------------------------------------------------------------

    def _lookup(self, where: str, client_ip: str, qname: str, qtype: int) -> Answer:
        with self.lock:
            if where.startswith(STUB):
                # A container's own sockets: it is the asker, whatever its networks now.
                sid = where[len(STUB):]
                mine = [e for e in self.endpoints_of(sid) if self.networks[e.network_id].dns]
                asker = mine[0] if mine else None
                internal = all(self.networks[e.network_id].internal for e in mine)
            else:
                net = next((n for n in self.networks.values() if n.gateway == where and n.dns),
                           None)
                asker = None if net is None else next(
                    (e for e in net.endpoints.values() if e.ip == client_ip), None)
                internal = net is not None and net.internal
            if asker is None:
                return Answer(refuse=True)
            nets = [n for n in self.networks.values() if n.dns and any(
                e.sandbox_id == asker.sandbox_id for e in n.endpoints.values())]
            name = qname.rstrip(".").lower()
            name = {k.lower(): v.lower() for k, v in asker.links.items()}.get(name, name)
            rev = ptr_to_ip(name)
            addrs: list[str] = []
            for n in nets:
                for e in n.endpoints.values():
                    if rev is not None:
                        if e.ip == rev and (e.names or e.aliases):
                            return Answer(ptr=(e.names or e.aliases)[0] + "." + n.name)
                    elif name in (x.lower() for x in (*e.names, *e.aliases)) or \
                            name in (f"{x.lower()}.{n.name.lower()}" for x in e.names):
                        addrs.append(e.ip)
            if addrs:
                return Answer(addrs=sorted(set(addrs), key=addrs.index))
            if rev is not None and any(ipam.address(rev) in ipam.network(n.subnet)
                                       for n in self.networks.values()):
                # An address of berth's own subnets: nobody upstream knows it better (and a
                # private address's PTR query has no business leaving the host).
                return Answer(nxdomain=True)
            if "." not in name and rev is None:
                # A single-label name that no endpoint has (another network's container, a
                # typo): no upstream resolves bare names (systemd-resolved refuses to forward
                # them too), and a container name has no business leaving the host.
                return Answer(nxdomain=True)
            if internal:
                return Answer(upstream=[])
            up = asker.dns or self.upstream
            if up is None:
                up = host_nameservers(self.host_resolv)
            return Answer(upstream=up)

    # -- start-up ----------------------------------------------------------------------------

    def reconcile(self, live: Iterable[str]) -> dict[str, list[str]]:
        """Make the kernel and the state agree for the live containers ``live`` (sandbox ids).

        Finishes half-done network creates/removes, removes every endpoint, lease, port, veth
        and netns of a sandbox not in ``live``, restores what live ones need (bridges, nft
        table, port reservations, DNS sockets). Returns what it did, for the log.
        """
        live = set(live)
        done: dict[str, list[str]] = {"networks": [], "bridges": [], "endpoints": [],
                                      "veths": [], "sandboxes": [], "ports": [], "lost_ports": []}
        nl = self._nl()
        with self.lock:
            for fn in sorted(os.listdir(self.netdir)):
                if not fn.endswith(".intent"):
                    continue
                nid = fn[:-7]
                with open(os.path.join(self.netdir, fn)) as f:
                    what, _, bridge = f.read().partition(" ")
                n = self.networks.get(nid)
                if what == "remove" and n is not None:
                    self._drop_network(n)
                    done["networks"].append(n.name)
                elif n is None:
                    # A create that never finished: its bridge, if made, is an orphan.
                    if bridge and nl.del_link(bridge):
                        done["bridges"].append(bridge)
                    self._intent(nid, None)
                else:
                    self._intent(nid, None)
            for path in sandbox.list_dir(self.nsdir):
                sid = os.path.basename(path)
                if sid not in live:
                    sandbox.destroy(path)
                    done["sandboxes"].append(sid)
            for n in self.networks.values():
                if nl.link(n.bridge) is None:
                    self._make_bridge(n)
                    done["bridges"].append(n.bridge)
                for ep in list(n.endpoints.values()):
                    p = os.path.join(self.nsdir, ep.sandbox_id)
                    if ep.sandbox_id not in live or not sandbox.exists(p):
                        del n.endpoints[ep.id]
                        n.leases.release(ep.ip, ep.id)
                        done["endpoints"].append(ep.id[:12])
                for ip, owner in list(n.leases.leases.items()):
                    if owner not in n.endpoints:
                        n.leases.release(ip)
                self._save(n)
            bridges = {n.bridge: n for n in self.networks.values()}
            index_to_bridge = {}
            links = nl.links()
            for link in links:
                if link.name in bridges:
                    index_to_bridge[link.index] = bridges[link.name]
            wanted = {e.veth for n in self.networks.values() for e in n.endpoints.values()}
            for link in links:
                if link.master in index_to_bridge and link.name not in wanted and \
                        link.kind == "veth":
                    nl.del_link(link.name)
                    done["veths"].append(link.name)
            # Live endpoints whose veth is gone (a crash between lease and veth): replug them.
            present = {link.name for link in links}
            for n in self.networks.values():
                for ep in list(n.endpoints.values()):
                    if ep.veth not in present:
                        p = os.path.join(self.nsdir, ep.sandbox_id)
                        try:
                            self._plumb(n, ep, p, default_route=ep.gateway_route)
                        except FailedPrecondition:
                            del n.endpoints[ep.id]
                            n.leases.release(ep.ip, ep.id)
                            self._save(n)
            for sid in list(self.published):
                if sid not in live:
                    ports = self.published.pop(sid)
                    for p in ports:
                        self.reservations.release(p.proto, p.host_ip, p.host_port)
                    self._save_published(sid)
                    done["ports"] += [f"{p.host_port}/{p.proto}" for p in ports]
                    continue
                for p in self.published[sid]:
                    if not self.reservations.hold(p.proto, p.host_ip, p.host_port):
                        done["lost_ports"].append(f"{p.host_ip or '0.0.0.0'}:{p.host_port}/"
                                                  f"{p.proto}")
            for fn in os.listdir(self.sbdir):
                if fn.endswith(".json") and fn[:-5] not in self.published:
                    os.unlink(os.path.join(self.sbdir, fn))
            self._apply_firewall()
            for n in self.networks.values():
                if n.dns:
                    try:
                        self._bind_dns(n)
                    except FailedPrecondition as e:
                        done.setdefault("errors", []).append(str(e))
            for sid in sorted({e.sandbox_id for n in self.networks.values() if n.dns
                               for e in n.endpoints.values()}):
                try:
                    self._ensure_stub(sid, self.sandbox_path(sid), again=True)
                except FailedPrecondition as e:
                    done.setdefault("errors", []).append(str(e))
        return done

    def close(self) -> None:
        """Stop serving (DNS, port reservations); leaves the kernel state for live containers."""
        if self.closed:
            return
        self.closed = True
        self.dns.close()
        self.reservations.close()
        nl = getattr(self.local, "nl", None)
        if nl is not None:
            nl.close()

    def teardown(self) -> None:
        """Remove everything this manager made: for tests and `berthd --purge`, not shutdown."""
        for sid in {e.sandbox_id for n in self.list() for e in n.endpoints.values()} | \
                {os.path.basename(p) for p in sandbox.list_dir(self.nsdir)}:
            self.destroy_sandbox(sid)
        with self.lock:
            for n in list(self.networks.values()):
                self._intent(n.id, f"remove {n.bridge}")
                self._drop_network(n)
            firewall.remove(self.table)
        if not sandbox.list_dir(self.nsdir):
            sandbox.release_dir(self.nsdir)
        self.close()
