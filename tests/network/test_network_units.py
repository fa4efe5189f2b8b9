"""Pure logic of the network package, without root: -p grammar, IPAM, the nft ruleset, the DNS
codec, the container's files, the netlink attribute codec."""

import ipaddress
import struct

import pytest

from berth.network import dns, files, firewall, ipam, netlink
from berth.network.ports import (
    InvalidPortSpec,
    PortBinding,
    Published,
    exposed,
    from_docker,
    parse_publish,
)


@pytest.mark.parametrize("spec, want", [
    ("80", [PortBinding(80)]),
    ("8080:80", [PortBinding(80, "tcp", "", 8080)]),
    ("127.0.0.1:18080:80", [PortBinding(80, "tcp", "127.0.0.1", 18080)]),
    ("127.0.0.1::80", [PortBinding(80, "tcp", "127.0.0.1", 0)]),
    ("18081:80/udp", [PortBinding(80, "udp", "", 18081)]),
    ("0.0.0.0:53:53/UDP", [PortBinding(53, "udp", "", 53)]),
    ("8000-8001:80-81", [PortBinding(80, "tcp", "", 8000), PortBinding(81, "tcp", "", 8001)]),
    ("8000-8010:80", [PortBinding(80, "tcp", "", 8000, 8010)]),
    ("80-81", [PortBinding(80), PortBinding(81)]),
])
def test_parse_publish(spec, want):
    assert parse_publish(spec) == want


@pytest.mark.parametrize("spec, msg", [
    ("0:80", "invalid hostPort: 0"),
    ("8080:70000", "invalid containerPort: 70000"),
    ("8080:80/sctpx", "invalid proto: sctpx"),
    ("1.2.3:8080:80", "invalid ip address: 1.2.3"),
    ("[::1]:8080:80", "ipv6 host address not supported"),
    ("8000-8002:80-81", "invalid ranges"),
    ("a:b:c:d", "invalid port spec"),
    ("8080:", "no port specified"),
    ("90-80", "invalid containerPort: 90-80"),
])
def test_parse_publish_errors(spec, msg):
    with pytest.raises(InvalidPortSpec, match=msg.replace("[", r"\[")):
        parse_publish(spec)


def test_docker_forms():
    got = from_docker({"80/tcp": [{"HostIp": "", "HostPort": "8080"}],
                       "53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
                       "90/tcp": [{"HostIp": "0.0.0.0", "HostPort": "9000-9005"}],
                       "91/tcp": None,
                       "92/tcp": [{"HostIp": "", "HostPort": "0"}]})  # -p 0:92: any port
    assert got == [PortBinding(80, "tcp", "", 8080), PortBinding(53, "udp", "127.0.0.1", 0),
                   PortBinding(90, "tcp", "", 9000, 9005), PortBinding(91), PortBinding(92)]
    assert exposed({"80/tcp": {}, "53/udp": {}, "7000-7001": {}}) == [
        PortBinding(80), PortBinding(53, "udp"), PortBinding(7000), PortBinding(7001)]
    assert PortBinding(80, "tcp", "", 8080).to_docker() == (
        "80/tcp", {"HostIp": "0.0.0.0", "HostPort": "8080"})


def test_pick_subnet_skips_taken_and_reserved():
    n = ipaddress.ip_network
    assert ipam.pick_subnet([]) == n("172.18.0.0/16")  # 172.17 is dockerd's
    assert ipam.pick_subnet([n("0.0.0.0/0"), n("172.18.5.0/24")]) == n("172.19.0.0/16")
    taken = [n(f"172.{i}.0.0/16") for i in range(16, 32)]
    assert ipam.pick_subnet(taken) == n("192.168.0.0/20")
    taken.append(n("192.168.0.0/16"))
    with pytest.raises(ipam.PoolExhausted):
        ipam.pick_subnet(taken)
    assert ipam.pick_subnet([], [("10.99.0.0/16", 24)], reserved=[]) == n("10.99.0.0/24")


def test_allocation_is_sequential_and_skips_gateway_and_edges():
    s = ipam.Subnet("10.0.0.0/29")
    got = [s.allocate(f"e{i}") for i in range(5)]
    assert got == ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
    with pytest.raises(ipam.NoAddress, match="no available ip addresses"):
        s.allocate("e9")
    s.release("10.0.0.3")
    # Next after the last handed out, wrapping: the freed one only when nothing else is.
    assert s.allocate("e10") == "10.0.0.3"
    s.release("10.0.0.2")
    s.release("10.0.0.5")
    assert s.allocate("e11") == "10.0.0.5"


def test_allocation_in_range_and_requested():
    s = ipam.Subnet("10.1.0.0/24", gateway="10.1.0.254", ip_range="10.1.0.16/30")
    assert s.gateway == ipaddress.ip_address("10.1.0.254")
    assert [s.allocate(f"e{i}") for i in range(4)] == [
        "10.1.0.16", "10.1.0.17", "10.1.0.18", "10.1.0.19"]
    assert s.allocate("x", "10.1.0.100") == "10.1.0.100"  # outside the range, inside the subnet
    with pytest.raises(ipam.AddressInUse):
        s.allocate("y", "10.1.0.100")
    assert s.allocate("x", "10.1.0.100") == "10.1.0.100"  # same owner: idempotent
    # dockerd 20.10's words: the gateway, network and broadcast addresses count as taken
    for taken in ("10.1.0.254", "10.1.0.255", "10.1.0.0"):
        with pytest.raises(ipam.AddressInUse, match="^Address already in use$"):
            s.allocate("y", taken)
    with pytest.raises(ipam.InvalidArgument, match="^Invalid address 10.2.0.1: It does not "
                       "belong to any of this network's subnets$"):
        s.allocate("y", "10.2.0.1")
    with pytest.raises(ipam.InvalidSubnet, match=r"^failed to allocate gateway \(10.1.0.0\): "
                       "Address already in use$"):
        ipam.Subnet("10.1.0.0/24", gateway="10.1.0.0")
    with pytest.raises(ipam.InvalidSubnet, match="not within"):
        ipam.Subnet("10.1.0.0/24", ip_range="10.2.0.0/28")
    with pytest.raises(ipam.InvalidSubnet, match="too small"):
        ipam.Subnet("10.1.0.0/31")
    with pytest.raises(ipam.InvalidSubnet, match="ipv6"):
        ipam.Subnet("fd00::/64")
    restored = ipam.Subnet("10.1.0.0/24", "10.1.0.254", "10.1.0.16/30", **s.to_json())
    assert restored.leases == s.leases and restored.last == s.last


def test_ruleset_shape():
    script = firewall.render("bt", [
        firewall.BridgeRules("br-a", "10.0.1.0/24"),
        firewall.BridgeRules("br-i", "10.0.2.0/24", internal=True),
        firewall.BridgeRules("br-n", "10.0.3.0/24", masquerade=False, icc=False),
    ], [Published("tcp", "", 8080, "10.0.1.2", 80),
        Published("tcp", "127.0.0.1", 8081, "10.0.1.2", 81),
        Published("udp", "", 5353, "10.0.1.3", 53)])
    lines = [ln.strip() for ln in script.splitlines()]
    # One transaction that replaces only berth's table.
    assert lines[:3] == ["table ip bt {}", "delete table ip bt", "table ip bt {"]
    assert "elements = { 8080 : 10.0.1.2 . 80 }" in lines
    assert "elements = { 127.0.0.1 . 8081 : 10.0.1.2 . 81 }" in lines
    assert "elements = { 5353 : 10.0.1.3 . 53 }" in lines
    assert 'ip saddr 10.0.1.0/24 oifname != "br-a" masquerade' in lines
    assert not any("10.0.2.0/24 oifname !=" in ln for ln in lines)  # internal: no way out
    assert not any("10.0.3.0/24 oifname !=" in ln for ln in lines)  # masquerade off
    assert 'iifname "br-i" oifname != "br-i" drop' in lines
    assert 'iifname "br-n" oifname "br-n" drop' in lines  # icc off
    assert lines.index('iifname "br-i" oifname != "br-i" drop') < lines.index(
        "ct status dnat accept") < lines.index('iifname "br-a" oifname @bridges oifname != '
                                               '"br-a" drop')
    assert [ln for ln in lines if "table" in ln] == lines[:3]  # no other table named


def _query(name: str, qtype: int = dns.QTYPE_A, qid: int = 7) -> bytes:
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack("!HH", qtype, 1)


def test_dns_codec():
    q = dns.parse_query(_query("Web.Example"))
    assert (q.id, q.name, q.qtype) == (7, "web.example", dns.QTYPE_A)
    r = dns.answer(q, dns.RCODE_OK, ["172.18.0.2", "172.18.0.3"])
    qid, flags, qd, an, _, _ = struct.unpack_from("!HHHHHH", r)
    assert (qid, flags & 0x8000, flags & 0xF, qd, an) == (7, 0x8000, 0, 1, 2)
    assert r.endswith(bytes([172, 18, 0, 2]) + struct.pack("!HHHIH", 0xC00C, 1, 1, 600, 4)
                      + bytes([172, 18, 0, 3]))
    aaaa = dns.parse_query(_query("web", dns.QTYPE_AAAA))
    assert struct.unpack_from("!HHHHHH", dns.answer(aaaa, 0, ["1.2.3.4"]))[3] == 0
    ptr = dns.answer(dns.parse_query(_query("2.0.18.172.in-addr.arpa", dns.QTYPE_PTR)), 0,
                     ptr="web.net")
    assert ptr.endswith(b"\x03web\x03net\x00")
    assert dns.ptr_to_ip("2.0.18.172.in-addr.arpa") == "172.18.0.2"
    assert dns.parse_query(b"short") is None
    assert dns.parse_query(_query("x")[:-3]) is None
    assert dns.error_reply(b"\x00\x01\x01\x00" + b"\0" * 8, dns.RCODE_FORMERR)[3] & 0xF == 1


def test_dns_decisions():
    q = dns.parse_query(_query("x"))

    def rcode(b):
        return b[3] & 0xF

    assert rcode(dns.decide(q, dns.Answer(refuse=True))) == dns.RCODE_REFUSED
    assert rcode(dns.decide(q, dns.Answer(addrs=["10.0.0.2"]))) == 0
    assert rcode(dns.decide(q, dns.Answer(upstream=[]))) == dns.RCODE_SERVFAIL
    assert dns.decide(q, dns.Answer(upstream=["127.0.0.1"])) is None


def test_container_files(tmp_path):
    host = tmp_path / "resolv.conf"
    host.write_text("nameserver 127.0.0.53\nnameserver 10.9.9.9\nsearch corp.example\n"
                    "options edns0\n")
    # dockerd's order (search, nameservers, options) and its rebuild on user networks: the
    # host's search and options kept, ndots:0 added
    assert files.resolv_conf(embedded="127.0.0.11", host_resolv=str(host)) == (
        "search corp.example\nnameserver 127.0.0.11\noptions edns0 ndots:0\n")
    assert files.resolv_conf(embedded="127.0.0.11", options=["ndots:3"],
                             host_resolv=str(host)) == (
        "search corp.example\nnameserver 127.0.0.11\noptions ndots:3\n")
    assert files.resolv_conf(embedded=None, host_resolv=str(host)) == (
        "search corp.example\nnameserver 10.9.9.9\noptions edns0\n")
    assert files.resolv_conf(embedded=None, dns=["1.1.1.1"], search=["a.b"],
                             host_resolv=str(host)).startswith("search a.b\nnameserver 1.1.1.1")
    host.write_text("nameserver 127.0.0.53\n")
    assert "nameserver 8.8.8.8" in files.resolv_conf(embedded=None, host_resolv=str(host))
    assert files.hosts("h.x.y", "10.0.0.2").endswith("\n10.0.0.2\th.x.y h\n")
    assert files.hosts("h", "10.0.0.2", domainname="d.example").endswith(
        "\n10.0.0.2\th.d.example h\n")
    h = files.hosts("web", "172.18.0.2", [("db", "10.0.0.9")])
    assert h.splitlines()[0] == "127.0.0.1\tlocalhost"
    assert h.splitlines()[-2:] == ["10.0.0.9\tdb", "172.18.0.2\tweb"]
    assert files.parse_extra_host("gw:host-gateway", "172.18.0.1") == ("gw", "172.18.0.1")
    assert files.parse_extra_host("a=[::1]") == ("a", "::1")
    with pytest.raises(files.InvalidArgument, match="bad format"):
        files.parse_extra_host("nocolon")


def test_netlink_attrs_roundtrip():
    blob = netlink._str(netlink.IFLA_IFNAME, "eth0") + netlink._u32(netlink.IFLA_MTU, 1400) + \
        netlink._attr(netlink.IFLA_LINKINFO, netlink._str(netlink.IFLA_INFO_KIND, "veth"))
    assert len(blob) % 4 == 0
    a = netlink.parse_attrs(blob)
    assert netlink._cstr(a[netlink.IFLA_IFNAME]) == "eth0"
    assert struct.unpack("=I", a[netlink.IFLA_MTU]) == (1400,)
    assert netlink._cstr(netlink.parse_attrs(a[netlink.IFLA_LINKINFO])[1]) == "veth"
    assert netlink.mac_bytes("02:42:ac:11:00:02") == b"\x02\x42\xac\x11\x00\x02"


def test_reverse_names_of_own_subnets_never_leave():
    from berth.network.dns import RCODE_NXDOMAIN, Answer, Query, decide

    q = Query(7, 0x100, "1.0.18.172.in-addr.arpa", dns.QTYPE_PTR, 1, b"")
    assert struct.unpack_from("!H", decide(q, Answer(nxdomain=True)), 2)[0] & 0xF == \
        RCODE_NXDOMAIN


def test_cli_groups_ipam_flags_as_the_docker_cli():
    from berth.cli.networks import CreateError, _natural_key, ipam_config

    assert ipam_config(["10.1.0.0/16", "10.2.0.0/16"], ["10.2.5.0/24"], ["10.1.0.254"],
                       {"r": "10.2.0.9", "empty": ""}) == [
        {"Subnet": "10.1.0.0/16", "Gateway": "10.1.0.254"},
        {"Subnet": "10.2.0.0/16", "IPRange": "10.2.5.0/24",
         "AuxiliaryAddresses": {"r": "10.2.0.9"}}]
    for args, msg in [
        (([], [], ["10.1.0.1"], {}), "every ip-range or gateway must have a corresponding "
                                     "subnet"),
        ((["10.1.0.0/16", "10.1.2.0/24"], [], [], {}), "multiple overlapping subnet"),
        ((["10.1.0.0/16"], [], ["10.9.0.1"], {}), "no matching subnet for gateway 10.9.0.1"),
        ((["10.1.0.0/16"], ["10.9.0.0/24"], [], {}), "no matching subnet for range "
                                                     "10.9.0.0/24"),
        ((["10.1.0.0/16"], [], [], {"a": "10.9.0.1"}), "no matching subnet for aux-address"),
        ((["bogus"], [], [], {}), "invalid subnet"),
    ]:
        with pytest.raises(CreateError, match=msg):
            ipam_config(*args)
    names = ["net10", "bridge", "net9", "Net1", "host"]
    assert sorted(names, key=_natural_key) == ["Net1", "bridge", "host", "net9", "net10"]


def test_endpoint_settings_as_dockerd_shows_them():
    from berth.engine.networks import _check_endpoint_config, _endpoint_view, _links
    from berth.errors import InvalidArgument

    v = _endpoint_view({"Aliases": ["a"], "IPAMConfig": {"IPv4Address": "10.0.0.5",
                                                          "IPv6Address": ""},
                        "MacAddress": "02:42:0a:00:00:05"})
    assert v["Aliases"] == ["a"] and v["IPAMConfig"] == {"IPv4Address": "10.0.0.5"}
    assert v["MacAddress"] == "02:42:0a:00:00:05" and v["NetworkID"] == "" and \
        v["Links"] is None and v["DriverOpts"] is None
    assert _endpoint_view(None)["IPAMConfig"] is None
    assert _links({"Links": ["/up:bar", "other"]}) == {"bar": "up", "other": "other"}
    for cfg, msg in [({"IPAMConfig": {"IPv4Address": "bad"}}, "invalid IPv4 address: bad"),
                     ({"IPAMConfig": {"IPv6Address": "2001::1"}}, "IPv6"),
                     ({"MacAddress": "zz"}, "invalid MAC address"),
                     ({"Aliases": ["x"]}, "network-scoped alias")]:
        with pytest.raises(InvalidArgument, match=msg):
            _check_endpoint_config("bridge", cfg)


def test_legacy_link_environment_as_dockerd():
    from berth.engine.networks import link_env

    env = link_env("/web/db", "172.18.0.5", ["PATH=/bin", "HOME=/root", "PGUSER=x", "EMPTY="],
                   ["5432/tcp", "53/udp", "7001/tcp", "7000/tcp"])
    assert env[0] == "DB_PORT=udp://172.18.0.5:53"  # the lowest port
    assert "DB_PORT_5432_TCP=tcp://172.18.0.5:5432" in env
    assert {"DB_PORT_5432_TCP_ADDR=172.18.0.5", "DB_PORT_5432_TCP_PORT=5432",
            "DB_PORT_5432_TCP_PROTO=tcp"} <= set(env)
    # a run of consecutive ports is also given as a range
    assert {"DB_PORT_7000_TCP_START=tcp://172.18.0.5:7000", "DB_PORT_7000_TCP_PORT_END=7001",
            "DB_PORT_7000_TCP_END=tcp://172.18.0.5:7001"} <= set(env)
    assert "DB_NAME=/web/db" in env and "DB_ENV_PGUSER=x" in env and "DB_ENV_EMPTY=" in env
    assert not [e for e in env if e.startswith(("DB_ENV_PATH", "DB_ENV_HOME"))]
    assert link_env("/a/my-cache", "10.0.0.2", [], []) == ["MY_CACHE_NAME=/a/my-cache"]
