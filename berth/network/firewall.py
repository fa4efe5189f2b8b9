"""berth's nftables table: port publishing (DNAT), masquerade, isolation — built as data.

``render(table, bridges, published)`` is a pure function from berth's state to one nft script
that replaces the whole table in one transaction (``table`` + ``delete table`` + the new table,
so the kernel swaps rulesets atomically and never shows a half-built one). ``apply`` runs it
in-process through libnftables (~1 ms; the ``nft`` command costs 25-45 ms here). Only berth's own
table is ever touched, so the host's other tables (iptables-nft, firewalld, a dockerd) are left
alone; conntrack entries survive a swap, so established flows keep their NAT.

The table, for one network ``B`` with subnet ``S`` and a port published at 0.0.0.0:8080::

    map pub_tcp     { inet_service : ipv4_addr . inet_service }   8080 : 172.18.0.2 . 80
    map pub_tcp_ip  { ipv4_addr . inet_service : ipv4_addr . inet_service }   (host-ip bound)
    chain prerouting  nat dstnat   fib daddr type local -> jump publish
    chain output      nat dstnat   fib daddr type local -> jump publish   (host's own traffic,
                                                                           loopback included)
    chain publish     dnat via the maps
    chain postrouting nat srcnat   oif B, saddr 127/8            masquerade  (loopback clients;
                                                               route_localnet is on for B)
                                   oif B, ct dnat, saddr S       masquerade  (hairpin: a reply
                                                               must come back through the host)
                                   saddr S, oif != B             masquerade  (unless internal)
    chain forward     filter       internal B: nothing in or out but B itself
                                   ct status dnat accept (published ports reach across networks)
                                   iif B, oif another berth bridge: drop (isolation)
"""

from collections.abc import Iterable
from dataclasses import dataclass

from ..linux import nftables
from .ports import Published


@dataclass(frozen=True)
class BridgeRules:
    bridge: str
    subnet: str
    internal: bool = False
    masquerade: bool = True
    icc: bool = True


def _q(name: str) -> str:
    return '"' + name.replace('"', "") + '"'


def render(table: str, bridges: Iterable[BridgeRules], published: Iterable[Published]) -> str:
    bridges = sorted(bridges, key=lambda b: b.bridge)
    pub = sorted(set(published), key=lambda p: (p.proto, p.host_ip, p.host_port))
    out = [f"table ip {table} {{}}", f"delete table ip {table}", f"table ip {table} {{"]
    for proto in ("tcp", "udp"):
        any_el = [f"{p.host_port} : {p.container_ip} . {p.container_port}"
                  for p in pub if p.proto == proto and not p.host_ip]
        ip_el = [f"{p.host_ip} . {p.host_port} : {p.container_ip} . {p.container_port}"
                 for p in pub if p.proto == proto and p.host_ip]
        out.append(f"  map pub_{proto} {{ type inet_service : ipv4_addr . inet_service;")
        if any_el:
            out.append(f"    elements = {{ {', '.join(any_el)} }}")
        out.append("  }")
        out.append(f"  map pub_{proto}_ip {{ type ipv4_addr . inet_service : "
                   "ipv4_addr . inet_service;")
        if ip_el:
            out.append(f"    elements = {{ {', '.join(ip_el)} }}")
        out.append("  }")
    names = ", ".join(_q(b.bridge) for b in bridges)
    out.append("  set bridges { type ifname;" + (f" elements = {{ {names} }}" if names else "")
               + " }")
    out += [
        "  chain publish {",
        "    dnat ip to ip daddr . tcp dport map @pub_tcp_ip",
        "    dnat ip to tcp dport map @pub_tcp",
        "    dnat ip to ip daddr . udp dport map @pub_udp_ip",
        "    dnat ip to udp dport map @pub_udp",
        "  }",
        "  chain prerouting {",
        "    type nat hook prerouting priority dstnat; policy accept;",
        "    fib daddr type local jump publish",
        "  }",
        "  chain output {",
        "    type nat hook output priority -100; policy accept;",
        "    fib daddr type local jump publish",
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
    ]
    for b in bridges:
        br = _q(b.bridge)
        out.append(f"    oifname {br} ip saddr 127.0.0.0/8 masquerade")
        out.append(f"    oifname {br} ct status dnat ip saddr {b.subnet} masquerade")
        if not b.internal and b.masquerade:
            out.append(f"    ip saddr {b.subnet} oifname != {br} masquerade")
    out += [
        "  }",
        "  chain forward {",
        "    type filter hook forward priority filter; policy accept;",
    ]
    for b in bridges:
        if b.internal:
            br = _q(b.bridge)
            out.append(f"    iifname {br} oifname != {br} drop")
            out.append(f"    oifname {br} iifname != {br} drop")
    out.append("    ct status dnat accept")
    for b in bridges:
        br = _q(b.bridge)
        out.append(f"    iifname {br} oifname @bridges oifname != {br} drop")
        if not b.icc:
            out.append(f"    iifname {br} oifname {br} drop")
    out += ["  }", "}", ""]
    return "\n".join(out)


#: the table in a container's own namespace that sends 127.0.0.11:53 to berthd's sockets
STUB_TABLE = "berth_dns"


def stub_rules(udp_port: int, tcp_port: int, ip: str = "127.0.0.11", *,
               replace: bool = False) -> str:
    """The script (run in a container's namespace) that DNATs ``ip``:53 to berthd's resolver
    sockets on ``ip``. As Docker's rules in each container: port 53 stays free for the
    container's own processes. ``replace`` swaps a previous table (a restarted berthd's new
    ports); a fresh namespace does without: deleting a table costs ~7 ms of grace period."""
    t = STUB_TABLE
    head = [f"table ip {t} {{}}", f"delete table ip {t}"] if replace else []
    return "\n".join([
        *head, f"table ip {t} {{",
        "  chain output {",
        "    type nat hook output priority -100; policy accept;",
        f"    ip daddr {ip} udp dport 53 dnat to {ip}:{udp_port}",
        f"    ip daddr {ip} tcp dport 53 dnat to {ip}:{tcp_port}",
        "  }", "}", ""])


def apply(script: str) -> None:
    nftables.run(script)


def apply_here(script: str) -> None:
    """Run ``script`` in the calling thread's network namespace (a container's, after setns)."""
    nftables.run_fresh(script)


def remove(table: str) -> None:
    """Delete berth's table; a missing one is fine."""
    nftables.run(f"table ip {table} {{}}\ndelete table ip {table}\n")


def exists(table: str) -> bool:
    try:
        nftables.run(f"list table ip {table}")
    except OSError:
        return False
    return True
