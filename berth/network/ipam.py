"""IPAM: subnets for new networks and addresses for endpoints. Pure logic, no kernel calls.

Subnets come from a pool laid out as Docker's default address pools (172.17-31.0.0/16, then
192.168.0.0/16 in /20s) and skip every subnet that overlaps a route or address already on the
host (the caller passes them in: a dockerd's docker0, podman's 10.88/16, a VPN) or another of
berth's networks. 172.17.0.0/16 is skipped even when absent, because a dockerd started later
takes it for docker0 without looking.

Addresses inside a network are handed out in order after the last one given (as Docker does),
so that a just-released address is not reused at once by the next container, where a stale ARP
entry or conntrack flow of the old one could still point. The network address, the broadcast
address and the gateway are never handed out. A ``Subnet`` is not thread-safe; its owner (the
network store) serialises calls under the network's lock.
"""

import ipaddress

from ..errors import Conflict, FailedPrecondition, InvalidArgument

IPv4Network = ipaddress.IPv4Network
IPv4Address = ipaddress.IPv4Address

#: (base, size of each subnet carved from it), as dockerd's default-address-pools.
DEFAULT_POOLS: list[tuple[str, int]] = [(f"172.{n}.0.0/16", 16) for n in range(17, 32)] + [
    ("192.168.0.0/16", 20)]
#: Subnets peers on the same host take without checking for routes first.
PEER_RESERVED = ["172.17.0.0/16"]


class PoolExhausted(FailedPrecondition):
    pass


class AddressInUse(Conflict):
    pass


class NoAddress(FailedPrecondition):
    pass


class InvalidSubnet(InvalidArgument):
    pass


def network(s: str, what: str = "subnet") -> IPv4Network:
    try:
        n = ipaddress.ip_network(s, strict=False)
    except ValueError:
        raise InvalidSubnet(f"invalid {what}: {s}") from None
    if n.version != 4:
        raise InvalidSubnet(f"ipv6 {what} not supported: {s}")
    if n.prefixlen > 30:
        raise InvalidSubnet(f"{what} too small for a network: {s}")
    return n


def address(s: str, what: str = "address") -> IPv4Address:
    try:
        a = ipaddress.ip_address(s)
    except ValueError:
        raise InvalidArgument(f"invalid {what}: {s}") from None
    if a.version != 4:
        raise InvalidArgument(f"ipv6 {what} not supported: {s}")
    return a


def pick_subnet(taken: list[IPv4Network], pools: list[tuple[str, int]] | None = None,
                reserved: list[str] | None = None) -> IPv4Network:
    """The first pool subnet that overlaps nothing in ``taken`` nor ``reserved``."""
    avoid = list(taken) + [ipaddress.ip_network(r) for r in
                           (PEER_RESERVED if reserved is None else reserved)]
    # A default route (0.0.0.0/0) overlaps everything: it is not a claim on any subnet.
    avoid = [n for n in avoid if n.prefixlen > 0]
    for base, size in pools or DEFAULT_POOLS:
        for cand in ipaddress.ip_network(base).subnets(new_prefix=size):
            if not any(cand.overlaps(n) for n in avoid):
                return cand
    raise PoolExhausted("could not find an available, non-overlapping IPv4 address pool among "
                        "the defaults to assign to the network")


class Subnet:
    """Address allocation in one network: ``subnet``, allocating only in ``ip_range``."""

    def __init__(self, subnet: str, gateway: str = "", ip_range: str = "",
                 leases: dict[str, str] | None = None, last: str = "",
                 reserved: list[str] = ()) -> None:
        self.net = network(subnet)
        self.range = network(ip_range, "ip range") if ip_range else self.net
        if not self.range.subnet_of(self.net):
            raise InvalidSubnet(f"ip range {ip_range} is not within subnet {subnet}")
        gw = address(gateway, "gateway") if gateway else self.net.network_address + 1
        if gw not in self.net:
            raise InvalidSubnet(f"gateway {gw} is not a host address of subnet {subnet}")
        if gw in (self.net.network_address, self.net.broadcast_address):
            # dockerd 20.10's words: its allocator has these two marked as taken
            raise InvalidSubnet(f"failed to allocate gateway ({gw}): Address already in use")
        self.gateway = gw
        #: addresses never handed out (Docker's AuxiliaryAddresses: a router, a printer...)
        self.reserved: set[str] = set()
        for r in reserved:
            a = address(r, "auxiliary address")
            if a not in self.net:
                raise InvalidSubnet(f"auxiliary address {a} is not within subnet {subnet}")
            self.reserved.add(str(a))
        #: address → owner (an endpoint id)
        self.leases: dict[str, str] = dict(leases or {})
        self.last = int(address(last)) if last else 0

    def _usable(self, a: IPv4Address) -> bool:
        return (a in self.net and a != self.gateway and a != self.net.network_address
                and a != self.net.broadcast_address and str(a) not in self.reserved)

    def allocate(self, owner: str, ip: str | None = None) -> str:
        """An address for ``owner``: ``ip`` if given and free, else the next free in range."""
        if ip:
            a = address(ip)
            # dockerd 20.10's words, which users and scripts match: the gateway, the network
            # and broadcast addresses count as taken, as in its allocator's bitmap.
            if a not in self.net:
                raise InvalidArgument(f"Invalid address {a}: It does not belong to any of this "
                                      "network's subnets")
            s = str(a)
            if not self._usable(a) or self.leases.get(s, owner) != owner:
                raise AddressInUse("Address already in use")
            self.leases[s] = owner
            return s
        lo = int(self.range.network_address)
        hi = int(self.range.broadcast_address)
        n = hi - lo + 1
        start = self.last + 1 if lo <= self.last < hi else lo
        for i in range(n):
            a = IPv4Address(lo + (start - lo + i) % n)
            s = str(a)
            if s not in self.leases and self._usable(a):
                self.leases[s] = owner
                self.last = int(a)
                return s
        raise NoAddress(f"no available ip addresses on network with subnet {self.range}")

    def release(self, ip: str, owner: str | None = None) -> None:
        if owner is None or self.leases.get(ip) == owner:
            self.leases.pop(ip, None)

    def to_json(self) -> dict:
        return {"leases": self.leases, "last": str(IPv4Address(self.last)) if self.last else ""}
