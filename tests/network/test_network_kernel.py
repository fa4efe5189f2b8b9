"""The network package against the real kernel: bridges, veths, netns, nftables, DNS.

Each "box" is a sandbox of the manager with a busybox rootfs, its processes run with nsenter +
chroot — the namespace and files a container of the engine gets. Traffic goes only to loopback
and to the boxes the test made; unknown names go to a fake upstream on 127.0.0.1.
"""

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from berth.errors import Conflict, FailedPrecondition, InvalidArgument, PermissionDenied
from berth.network.ipam import NoAddress
from berth.network.ports import PortBinding, PortInUse, parse_publish

from .netkit import dns_query, free_port

pytestmark = pytest.mark.root


def wait_http(url: str, timeout: float = 5.0) -> str:
    """GET ``url`` from the host (loopback) until it answers; the body."""
    deadline = time.monotonic() + timeout
    while True:
        # busybox 1.35's wget crashes with -T: bound it with the timeout applet instead.
        r = subprocess.run(["busybox", "timeout", "3", "busybox", "wget", "-qO-", url],
                           capture_output=True, text=True)
        if r.returncode == 0 or time.monotonic() > deadline:
            return r.stdout
        time.sleep(0.1)


def test_two_boxes_reach_each_other_by_name_and_alias(net, upstream):
    net.mgr.upstream = [upstream.addr]
    n = net.mgr.create(net.name("app"))
    a = net.box(network=n.name, names=["web"], aliases=["www"])
    b = net.box(network=n.name, names=["client"])
    a.start("httpd", "-f", "-p", "8080", "-h", "/var/www")
    assert "nameserver 127.0.0.11" in (b.rootfs / "etc/resolv.conf").read_text()

    r = b.run("ping", "-c1", "-W2", "web")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"({a.ip})" in r.stdout
    deadline = time.monotonic() + 5
    while (r := b.run("timeout", "3", "wget", "-qO-", "http://web:8080/")).returncode != 0 \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert r.stdout == "<h1>hello from berth</h1>\n"
    r = b.run("nslookup", "www")
    assert r.returncode == 0 and a.ip in r.stdout, r.stdout
    # Its own name too, and nothing of it went upstream.
    assert b.ip in b.run("nslookup", "client").stdout
    assert upstream.names == []


def test_other_network_is_unreachable_and_its_names_do_not_resolve(net, upstream):
    net.mgr.upstream = [upstream.addr]
    n1 = net.mgr.create(net.name("one"))
    n2 = net.mgr.create(net.name("two"))
    a = net.box(network=n1.name, names=["alpha"])
    c = net.box(network=n2.name, names=["gamma"])
    r = c.run("ping", "-c1", "-W1", a.ip)
    assert r.returncode != 0, "a box on another network answered"
    # The name is not berth's to answer here, and a single-label name is nobody's upstream
    # (Docker would forward it): NXDOMAIN, nothing leaves. A dotted one goes upstream.
    r = c.run("nslookup", "alpha")
    assert a.ip not in r.stdout and "NXDOMAIN" in r.stdout
    assert upstream.names == []
    r = c.run("nslookup", "alpha.example")
    assert "127.0.0.99" in r.stdout and "alpha.example" in upstream.names
    # Asked from the host (no endpoint of the network): refused, nothing forwarded.
    asked = len(upstream.names)
    reply = dns_query(n1.gateway, "alpha")
    assert reply[3] & 0xF == 5
    assert len(upstream.names) == asked


def test_default_bridge_has_no_name_resolution(net, upstream):
    net.mgr.upstream = [upstream.addr]
    d = net.mgr.ensure_default()
    a = net.box(network="bridge", names=["first"])
    b = net.box(network="bridge", names=["second"])
    conf = (b.rootfs / "etc/resolv.conf").read_text()
    assert d.gateway not in conf
    assert b.run("ping", "-c1", "-W1", a.ip).returncode == 0
    # Nothing answers on the default bridge's gateway.
    r = b.run("nslookup", "first", d.gateway, timeout=30)
    assert a.ip not in r.stdout and r.returncode != 0


def test_unknown_names_fall_through_to_the_containers_dns(net, upstream):
    n = net.mgr.create(net.name("up"))
    a = net.box(network=n.name, names=["a"], dns=[upstream.addr])
    r = a.run("nslookup", "example.invalid")
    assert "127.0.0.99" in r.stdout, r.stdout
    assert upstream.names == ["example.invalid"] * len(upstream.names) and upstream.names


def test_internal_network_has_no_route_out_and_no_forwarding(net, upstream):
    n = net.mgr.create(net.name("int"), internal=True)
    ext = net.mgr.create(net.name("ext"))
    a = net.box(network=n.name, names=["inside"], dns=[upstream.addr])
    b = net.box(network=n.name, names=["peer"])
    e = net.box(network=ext.name)
    assert "default" not in a.run("ip", "route").stdout
    assert a.run("ping", "-c1", "-W1", "peer").returncode == 0
    assert a.run("ping", "-c1", "-W1", e.ip).returncode != 0
    assert e.run("ping", "-c1", "-W1", a.ip).returncode != 0
    # Internal networks do not forward unknown names either.
    a.run("nslookup", "example.invalid")
    assert upstream.names == []
    del b


def test_mtu_subnet_gateway_and_range_from_options(net):
    n = net.mgr.create(net.name("opt"), subnet="10.213.64.0/24", gateway="10.213.64.254",
                       ip_range="10.213.64.128/28",
                       options={"com.docker.network.driver.mtu": "1400",
                                "com.docker.network.bridge.name": f"bt{net.sfx}x"})
    assert n.bridge == f"bt{net.sfx}x"
    a = net.box(network=n.name)
    link = a.run("ip", "-o", "link", "show", "eth0").stdout
    assert "mtu 1400" in link
    assert a.ip.startswith("10.213.64.12") or a.ip.startswith("10.213.64.13")
    assert "default via 10.213.64.254" in a.run("ip", "route").stdout
    br = subprocess.run(["ip", "-o", "addr", "show", n.bridge], capture_output=True, text=True)
    assert "10.213.64.254/24" in br.stdout
    b = net.box(network=n.name, ip="10.213.64.7")
    assert b.ip == "10.213.64.7"
    assert b.run("ping", "-c1", "-W1", a.ip).returncode == 0


def test_published_tcp_port_from_loopback_and_from_another_network(net):
    net.mgr.ensure_default()
    other = net.mgr.create(net.name("other"))
    web = net.box(network="bridge")
    web.start("httpd", "-f", "-p", "80", "-h", "/var/www")
    port = free_port()
    pub = net.mgr.publish(web.sid, parse_publish(f"{port}:80"))
    assert [(p.host_ip, p.host_port, p.container_port) for p in pub] == [("", port, 80)]
    assert wait_http(f"http://127.0.0.1:{port}/") == "<h1>hello from berth</h1>\n"
    # From a box on another network, through the host's address (its gateway).
    c = net.box(network=other.name)
    r = c.run("timeout", "3", "wget", "-qO-", f"http://{other.gateway}:{port}/")
    assert r.stdout == "<h1>hello from berth</h1>\n", r.stderr
    # And from a box on the same bridge (hairpin through the host).
    d = net.box(network="bridge")
    gw = net.mgr.get("bridge").gateway
    r = d.run("timeout", "3", "wget", "-qO-", f"http://{gw}:{port}/")
    assert r.stdout == "<h1>hello from berth</h1>\n", r.stderr
    # Gone with the sandbox.
    web.stop()
    net.mgr.destroy_sandbox(web.sid)
    assert str(port) not in subprocess.run(["nft", "list", "table", "ip", net.mgr.table],
                                           capture_output=True, text=True).stdout


def test_published_port_on_one_host_ip_only(net):
    net.mgr.ensure_default()
    web = net.box(network="bridge")
    web.start("httpd", "-f", "-p", "80", "-h", "/var/www")
    port = free_port()
    net.mgr.publish(web.sid, parse_publish(f"127.0.0.1:{port}:80"))
    assert wait_http(f"http://127.0.0.1:{port}/") == "<h1>hello from berth</h1>\n"
    # The gateway is a host address too, but the port is bound to 127.0.0.1 only.
    gw = net.mgr.get("bridge").gateway
    r = subprocess.run(["busybox", "timeout", "3", "busybox", "wget", "-qO-",
                        f"http://{gw}:{port}/"],
                       capture_output=True, text=True)
    assert r.returncode != 0


def test_published_udp_port_delivers_a_datagram(net):
    net.mgr.ensure_default()
    box = net.box(network="bridge")
    # busybox's nc has no UDP mode: a one-datagram receiver in the box's netns.
    rx = box.start_in_netns(
        sys.executable, "-c", "import socket; s = socket.socket(socket.AF_INET, "
        "socket.SOCK_DGRAM); s.bind(('0.0.0.0', 9999)); print('ready', flush=True); "
        "d, a = s.recvfrom(100); print(d.decode(), a[0], flush=True)",
        stdout=subprocess.PIPE, text=True)
    assert rx.stdout.readline() == "ready\n"
    port = free_port(socket.SOCK_DGRAM)
    pub = net.mgr.publish(box.sid, parse_publish(f"127.0.0.1:{port}:9999/udp"))
    assert pub[0].proto == "udp"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendto(b"ping-berth", ("127.0.0.1", port))
        out, _ = rx.communicate(timeout=5)
    finally:
        s.close()
    # Delivered, from the bridge's gateway (the loopback source is masqueraded).
    assert out.split() == ["ping-berth", net.mgr.get("bridge").gateway]


def test_taken_port_is_an_error_and_changes_nothing(net):
    net.mgr.ensure_default()
    a = net.box(network="bridge")
    b = net.box(network="bridge")
    port = free_port()
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", port))
    squatter.listen()
    try:
        table_before = subprocess.run(["nft", "list", "table", "ip", net.mgr.table],
                                      capture_output=True, text=True).stdout
        # A host process holds it: the kernel's words, as dockerd's bind failure.
        with pytest.raises(PortInUse, match=f"listen tcp4 127.0.0.1:{port}: bind: address "
                                            "already in use"):
            net.mgr.publish(a.sid, [PortBinding(80, "tcp", "127.0.0.1", port)])
        # 0.0.0.0 overlaps 127.0.0.1 too.
        with pytest.raises(PortInUse):
            net.mgr.publish(a.sid, parse_publish(f"{port}:80"))
        assert net.mgr.ports(a.sid) == []
        assert subprocess.run(["nft", "list", "table", "ip", net.mgr.table],
                              capture_output=True, text=True).stdout == table_before
    finally:
        squatter.close()
    # A port berth itself holds: the second publisher fails, the first keeps it.
    p2 = free_port()
    net.mgr.publish(a.sid, parse_publish(f"{p2}:80"))
    with pytest.raises(PortInUse, match=f"Bind for 127.0.0.1:{p2} failed: port is already "
                                        "allocated"):
        net.mgr.publish(b.sid, parse_publish(f"127.0.0.1:{p2}:80"))
    assert [p.host_port for p in net.mgr.ports(a.sid)] == [p2]
    # And the publish of several ports is all or nothing.
    p3 = free_port()
    with pytest.raises(PortInUse):
        net.mgr.publish(b.sid, parse_publish(f"{p3}:81") + parse_publish(f"{p2}:82"))
    assert net.mgr.ports(b.sid) == []
    s = socket.socket()
    s.bind(("0.0.0.0", p3))  # p3 was released again
    s.close()


def test_ephemeral_and_range_ports(net):
    net.mgr.ensure_default()
    a = net.box(network="bridge")
    lo, hi = (int(x) for x in open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    pub = net.mgr.publish(a.sid, parse_publish("80") + parse_publish("53/udp"))
    assert all(lo <= p.host_port <= hi for p in pub)
    base = free_port()
    squat = socket.socket()
    squat.bind(("0.0.0.0", base))
    try:
        b = net.box(network="bridge")
        pub = net.mgr.publish(b.sid, parse_publish(f"{base}-{base + 5}:80"))
        assert base < pub[0].host_port <= base + 5
    finally:
        squat.close()


def test_200_boxes_unique_addresses_none_leaked(net):
    n = net.mgr.create(net.name("many"), subnet="10.213.8.0/24")
    sids = [f"{net.sfx}-{i:03d}" for i in range(200)]
    ips = []
    t0 = time.monotonic()
    for sid in sids:
        net.mgr.create_sandbox(sid)
        ips.append(net.mgr.attach(sid, n.name).ip)
    up = time.monotonic() - t0
    assert len(set(ips)) == 200
    assert len(net.mgr.get(n.name).leases.leases) == 200
    for sid in sids:
        net.mgr.destroy_sandbox(sid)
    assert net.mgr.get(n.name).leases.leases == {}
    assert net.mgr.get(n.name).endpoints == {}
    assert os.listdir(net.mgr.nsdir) == []
    # Persisted as released too.
    net.restart()
    assert net.mgr.get(n.name).leases.leases == {}
    assert up < 30, f"200 attaches took {up:.1f} s"


def test_race_for_the_last_address_in_a_slash_30(net):
    n = net.mgr.create(net.name("tiny"), subnet="10.213.9.0/30")
    for round_ in range(5):
        sids = [f"{net.sfx}-r{round_}-{i}" for i in range(2)]
        for sid in sids:
            net.mgr.create_sandbox(sid)
        results: dict[str, object] = {}
        go = threading.Barrier(2)

        def attach(sid, go=go, results=results):
            go.wait()
            try:
                results[sid] = net.mgr.attach(sid, n.name).ip
            except Exception as e:  # noqa: BLE001 - the result under test
                results[sid] = e

        threads = [threading.Thread(target=attach, args=(s,)) for s in sids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        won = [r for r in results.values() if isinstance(r, str)]
        lost = [r for r in results.values() if not isinstance(r, str)]
        assert won == ["10.213.9.2"], results
        assert len(lost) == 1 and isinstance(lost[0], NoAddress)
        assert "no available IPv4 addresses" in str(lost[0]) and n.name in str(lost[0])
        for sid in sids:
            net.mgr.destroy_sandbox(sid)


def test_bad_input_changes_nothing(net):
    n = net.mgr.create(net.name("a"), subnet="10.213.10.0/24")
    with pytest.raises(PermissionDenied, match="overlaps"):
        net.mgr.create(net.name("b"), subnet="10.213.10.128/25")
    with pytest.raises(Conflict, match="already exists"):
        net.mgr.create(net.name("a"))
    with pytest.raises(InvalidArgument, match="^Invalid subnet 10.213.300.0/24 : invalid CIDR"):
        net.mgr.create(net.name("c"), subnet="10.213.300.0/24")
    with pytest.raises(InvalidArgument, match="no matching subnet for gateway"):
        net.mgr.create(net.name("c"), subnet="10.213.11.0/24", gateway="10.213.12.1")
    with pytest.raises(InvalidArgument, match="docker0"):
        net.mgr.create(net.name("c"), options={"com.docker.network.bridge.name": "docker0"})
    assert [x.name for x in net.mgr.list()] == [n.name]
    a = net.box(network=None)
    with pytest.raises(InvalidArgument, match="does not belong to any of this network"):
        net.mgr.attach(a.sid, n.name, ip="10.213.99.5")
    with pytest.raises(Conflict, match="Address already in use"):
        net.mgr.attach(a.sid, n.name, ip="10.213.10.1")
    assert net.mgr.get(n.name).leases.leases == {}
    net.mgr.attach(a.sid, n.name, ip="10.213.10.5")
    b = net.box(network=None)
    with pytest.raises(Conflict, match="Address already in use"):
        net.mgr.attach(b.sid, n.name, ip="10.213.10.5")
    with pytest.raises(PermissionDenied, match="already exists in network"):
        net.mgr.attach(a.sid, n.name)
    with pytest.raises(FailedPrecondition, match="no network"):
        net.mgr.publish(b.sid, parse_publish("80"))
    # (on the network's bridge: other tests on this machine make and remove links meanwhile)
    ports = subprocess.run(["ip", "-o", "link", "show", "master", n.bridge],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(ports) == 1  # a's one veth, nothing of the failures
    addrs = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    assert [ln.split()[1] for ln in addrs if " 10.213." in ln] == [n.bridge]  # no other bridge
    with pytest.raises(PermissionDenied, match="active endpoints"):
        net.mgr.remove(n.name)


def test_connect_second_network_and_disconnect(net):
    n1 = net.mgr.create(net.name("n1"))
    n2 = net.mgr.create(net.name("n2"))
    a = net.box(network=n1.name, names=["multi"])
    b = net.box(network=n2.name, names=["other"])
    ep2 = net.mgr.attach(a.sid, n2.name)
    assert ep2.ifname == "eth1"
    assert a.run("ping", "-c1", "-W1", b.ip).returncode == 0
    # Its default route stays on its first network.
    assert f"default via {n1.gateway}" in a.run("ip", "route").stdout
    # A container on two networks resolves names of both (from its first network's resolver).
    assert b.ip in a.run("nslookup", "other").stdout
    net.mgr.detach(a.sid, n2.name)
    assert "eth1" not in a.run("ip", "-o", "link").stdout
    assert a.run("ping", "-c1", "-W1", b.ip).returncode != 0
    assert ep2.ip not in net.mgr.get(n2.name).leases.leases


def test_host_tables_untouched(net):
    other = f"bt_{net.sfx}_host"
    subprocess.run(["nft", "-f", "-"], check=True, text=True, input=(
        f"table ip {other} {{ chain f {{ type filter hook forward priority 0; "
        "policy accept; counter; }; }\n"))
    try:
        before = subprocess.run(["nft", "list", "table", "ip", other], capture_output=True,
                                text=True).stdout
        net.mgr.ensure_default()
        n = net.mgr.create(net.name("x"))
        a = net.box(network=n.name)
        net.mgr.publish(a.sid, parse_publish("80"))
        after = subprocess.run(["nft", "list", "table", "ip", other], capture_output=True,
                               text=True).stdout
        strip = [ln for ln in before.splitlines() if "counter" not in ln]
        assert strip == [ln for ln in after.splitlines() if "counter" not in ln]
    finally:
        subprocess.run(["nft", "delete", "table", "ip", other])


def test_subnet_pool_avoids_routes_on_the_host(net):
    from berth.network import ipam

    first = ipam.pick_subnet(net.mgr._taken_subnets())
    dummy = f"bt{net.sfx}y"
    subprocess.run(["ip", "link", "add", dummy, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", f"{first.network_address + 1}/{first.prefixlen}",
                        "dev", dummy], check=True)
        n = net.mgr.create(net.name("pool"))
        assert not ipam.network(n.subnet).overlaps(first)
        assert not ipam.network(n.subnet).overlaps(ipam.network("172.17.0.0/16"))
        n2 = net.mgr.create(net.name("pool2"))
        assert not ipam.network(n2.subnet).overlaps(ipam.network(n.subnet))
    finally:
        subprocess.run(["ip", "link", "del", dummy])


def test_reconcile_after_a_crash(net):
    net.mgr.ensure_default()
    n = net.mgr.create(net.name("rc"), subnet="10.213.20.0/24")
    keep = net.box(network=n.name, names=["keep"])
    gone = net.box(network=n.name, names=["gone"])
    keep.start("httpd", "-f", "-p", "80", "-h", "/var/www")
    port, port2 = free_port(), free_port()
    net.mgr.publish(keep.sid, parse_publish(f"127.0.0.1:{port}:80"))
    net.mgr.publish(gone.sid, parse_publish(f"127.0.0.1:{port2}:80"))
    gone_veth = net.mgr.endpoints_of(gone.sid)[0].veth
    keep_ip, gone_ip = keep.ip, gone.ip
    # The crash: berthd dies mid-way. Its sockets go with it; the kernel state stays, plus
    # debris of operations it was in the middle of: a half-made network's bridge (its intent
    # file written, its state not), a stray veth on a bridge of ours, a netns nobody owns, and
    # an nft table that lost its rules.
    net.mgr.close()
    orphan = f"bt{net.sfx}o"
    subprocess.run(["ip", "link", "add", orphan, "type", "bridge"], check=True)
    with open(os.path.join(net.mgr.netdir, "f" * 64 + ".intent"), "w") as f:
        f.write(f"create {orphan}")
    stray = f"vb{net.sfx}st"
    subprocess.run(["ip", "link", "add", stray, "type", "veth", "peer", "name", stray + "p"],
                   check=True)
    subprocess.run(["ip", "link", "set", stray, "master", n.bridge], check=True)
    os.makedirs(net.mgr.nsdir, exist_ok=True)
    subprocess.run(["nft", "flush", "table", "ip", net.mgr.table], check=True)
    assert wait_http(f"http://127.0.0.1:{port}/", timeout=0.5) == ""

    net.restart()
    done = net.mgr.reconcile([keep.sid])
    assert orphan in done["bridges"]
    assert stray in done["veths"]
    assert gone.sid in done["sandboxes"]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert orphan not in links and stray not in links
    deadline = time.monotonic() + 10
    while gone_veth in links and time.monotonic() < deadline:
        time.sleep(0.1)
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert gone_veth not in links
    leases = net.mgr.get(n.name).leases.leases
    assert keep_ip in leases and gone_ip not in leases
    assert net.mgr.ports(gone.sid) == []
    # What lives is served again, and its port is held against others.
    assert wait_http(f"http://127.0.0.1:{port}/") == "<h1>hello from berth</h1>\n"
    with pytest.raises(PortInUse):
        net.mgr.publish(keep.sid, parse_publish(f"127.0.0.1:{port}:81"))
    assert keep.run("nslookup", "keep").returncode == 0
    # A new box does not get the live one's address, and may take the dead one's port.
    c = net.box(network=n.name)
    assert c.ip != keep_ip
    net.mgr.publish(c.sid, parse_publish(f"127.0.0.1:{port2}:80"))


def test_dns_over_tcp_and_reverse_lookup(net):
    n = net.mgr.create(net.name("tcp"))
    a = net.box(network=n.name, names=["server1"])
    b = net.box(network=n.name, names=["asker"])
    code = (
        "import socket, struct, sys\n"
        "q = struct.pack('!HHHHHH', 9, 0x100, 1, 0, 0, 0) + b'\\x07server1\\x00' + "
        "struct.pack('!HH', 1, 1)\n"
        f"s = socket.create_connection(('{n.gateway}', 53), timeout=5)\n"
        "s.sendall(struct.pack('!H', len(q)) + q)\n"
        "n = struct.unpack('!H', s.recv(2))[0]\n"
        "r = b''\n"
        "while len(r) < n: r += s.recv(n - len(r))\n"
        "print(socket.inet_ntoa(r[-4:]), struct.unpack_from('!H', r, 6)[0])\n")
    p = b.start_in_netns(sys.executable, "-c", code, stdout=subprocess.PIPE, text=True)
    out, _ = p.communicate(timeout=10)
    assert out.split() == [a.ip, "1"]
    r = b.run("nslookup", a.ip)
    assert "server1" in r.stdout, r.stdout


def test_sandbox_pool_hands_out_ready_namespaces(net):
    from berth.network import sandbox

    pool = sandbox.SandboxPool(net.mgr.nsdir, size=2)
    pool.fill()
    assert len(pool.ready) == 2
    sid = f"{net.sfx}-pooled"
    pool.take(net.mgr.sandbox_path(sid))
    try:
        n = net.mgr.create(net.name("pool"))
        ep = net.mgr.attach(sid, n.name)
        b = net.box(network=n.name)
        r = b.run("ping", "-c1", "-W2", ep.ip)
        assert r.returncode == 0, r.stdout
        assert len(pool.ready) == 1
    finally:
        pool.drain()
        net.mgr.destroy_sandbox(sid)
    assert sandbox.list_dir(net.mgr.nsdir) == sorted(
        net.mgr.sandbox_path(b.sid) for b in net.boxes)
