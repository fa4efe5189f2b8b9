"""Issue 5 through berthd and the berth CLI: containers on the default bridge and on user
networks, by name and alias, published ports from the host and from other containers, the
/etc files, isolation, internal networks, connect/disconnect, the /30 race through the API, and
200 containers on one network — each test ending with nothing of its own left (fixture ``nd``).

Traffic goes only to loopback and to the test's containers (see daemonkit).
"""

import json
import socket
import subprocess
import sys
import threading
import time

import pytest

from .daemonkit import State, free_port, http_get

pytestmark = pytest.mark.root

HELLO = "<h1>hello from berth</h1>\n"


def ip_of(d, name: str, net: str | None = None) -> str:
    ns = json.loads(d.berth("inspect", "-f", "{{json .NetworkSettings}}", name).stdout)
    return ns["Networks"][net]["IPAddress"] if net else ns["IPAddress"]


def net_inspect(d, name: str) -> dict:
    return json.loads(d.berth("network", "inspect", name).stdout)[0]


def httpd(d, name: str, *opts: str, port: int = 8080) -> str:
    return d.berth("run", "-d", "--name", name, *opts, "busybox", "httpd", "-f", "-p",
                   str(port), "-h", "/var/www").stdout.strip()


def test_user_network_by_name_and_alias_and_isolation(nd):
    nd.berth("network", "create", "front")
    nd.berth("network", "create", "back")
    httpd(nd, "web", "--network", "front", "--network-alias", "www")
    nd.berth("run", "-d", "--name", "db", "--network", "back", "busybox", "sleep", "300")
    out = nd.berth("run", "--rm", "--network", "front", "busybox", "sh", "-c",
                   "ping -c1 -W2 web && wget -qO- http://web:8080/ && "
                   "wget -qO- http://www:8080/ && nslookup web").stdout
    assert "1 packets received" in out
    assert out.count("hello from berth") == 2
    assert ip_of(nd, "web", "front") in out
    # the other network: its address unreachable, its name not berth's to answer here (it
    # goes upstream, to --dns 127.0.0.1 where nothing listens)
    db_ip = ip_of(nd, "db", "back")
    r = nd.berth("run", "--rm", "--network", "front", "--dns", "127.0.0.1", "busybox", "sh",
                 "-c", f"ping -c1 -W1 {db_ip} >/dev/null; echo ping=$?; "
                 "nslookup db >/dev/null; echo ns=$?", check=False)
    assert "ping=1" in r.stdout and "ns=1" in r.stdout, r.stdout + r.stderr


def test_default_bridge_has_no_name_resolution_but_addresses_work(nd):
    httpd(nd, "plain")
    ip = ip_of(nd, "plain")
    r = nd.berth("run", "--rm", "--dns", "127.0.0.1", "busybox", "sh", "-c",
                 f"wget -qO- http://{ip}:8080/; ping -c1 -W1 plain >/dev/null 2>&1; "
                 "echo byname=$?; cat /etc/resolv.conf")
    assert r.stdout.startswith(HELLO)
    assert "byname=1" in r.stdout
    # --dns on the default bridge is written as it is, not queried by berth
    assert "nameserver 127.0.0.1" in r.stdout


def test_etc_files_routes_and_inspect(nd):
    nd.berth("network", "create", "--subnet", "10.231.0.0/24", "--gateway", "10.231.0.254",
             "-o", "com.docker.network.driver.mtu=1400", "fixed")
    bridge_gw = net_inspect(nd, "bridge")["IPAM"]["Config"][0]["Gateway"]
    cid = nd.berth("run", "-d", "--name", "f1", "--network", "fixed", "--ip", "10.231.0.10",
                   "--hostname", "box1", "--add-host", "extra:10.1.2.3",
                   "--add-host", "gw:host-gateway", "--dns-search", "example.test",
                   "--dns-option", "timeout:2", "--mac-address", "02:42:0a:e7:00:63",
                   "--network-alias", "al1", "busybox", "sleep", "300").stdout.strip()
    out = nd.berth("exec", "f1", "sh", "-c", "cat /etc/hosts; echo ---; cat /etc/resolv.conf; "
                   "echo ---; cat /etc/hostname; ip -o addr show eth0; ip route; "
                   "cat /sys/class/net/eth0/mtu /sys/class/net/eth0/address; ip -o link show lo"
                   ).stdout
    hosts, resolv, rest = out.split("---\n")
    assert "10.231.0.10\tbox1\n" in hosts
    assert "10.1.2.3\textra\n" in hosts and f"{bridge_gw}\tgw\n" in hosts
    assert hosts.startswith("127.0.0.1\tlocalhost\n")
    assert resolv.splitlines() == ["search example.test", "nameserver 127.0.0.11",
                                   "options timeout:2 ndots:0"]
    assert rest.startswith("box1\n")
    assert "inet 10.231.0.10/24" in rest and "default via 10.231.0.254 dev eth0" in rest
    assert "\n1400\n02:42:0a:e7:00:63\n" in rest
    assert "lo: <LOOPBACK,UP,LOWER_UP>" in rest
    ins = json.loads(nd.berth("inspect", "f1").stdout)[0]
    ns = ins["NetworkSettings"]
    ep = ns["Networks"]["fixed"]
    net = net_inspect(nd, "fixed")
    assert ep["IPAddress"] == "10.231.0.10" and ep["IPPrefixLen"] == 24
    assert ep["Gateway"] == "10.231.0.254" and ep["MacAddress"] == "02:42:0a:e7:00:63"
    assert ep["NetworkID"] == net["Id"] and len(ep["EndpointID"]) == 64
    assert ep["IPAMConfig"] == {"IPv4Address": "10.231.0.10"}
    assert ep["Aliases"] == ["al1", cid[:12], "box1"]
    assert ep["DNSNames"] == ["f1", "al1", cid[:12], "box1"]
    # top-level addresses are the default bridge's only, as dockerd fills them
    assert ns["IPAddress"] == "" and ns["Gateway"] == "" and ns["SandboxID"] == cid
    assert ns["SandboxKey"].endswith(f"/network/netns/{cid}")
    assert net["Containers"][cid] == {"Name": "f1", "EndpointID": ep["EndpointID"],
                                      "MacAddress": "02:42:0a:e7:00:63",
                                      "IPv4Address": "10.231.0.10/24", "IPv6Address": ""}
    assert net["IPAM"]["Config"] == [{"Subnet": "10.231.0.0/24", "Gateway": "10.231.0.254"}]
    assert net["Options"] == {"com.docker.network.driver.mtu": "1400"}
    # the default bridge: top-level fields mirror Networks.bridge, no aliases, no DNS names
    nd.berth("run", "-d", "--name", "b1", "busybox", "sleep", "300")
    b = json.loads(nd.berth("inspect", "b1").stdout)[0]["NetworkSettings"]
    be = b["Networks"]["bridge"]
    assert b["IPAddress"] == be["IPAddress"] != "" and b["Gateway"] == be["Gateway"] == bridge_gw
    assert b["MacAddress"] == be["MacAddress"] and b["EndpointID"] == be["EndpointID"]
    assert be["Aliases"] is None and be.get("DNSNames") is None
    # stopped: the endpoint is gone, what the container asked for stays
    nd.berth("stop", "-t", "0", "f1")
    ep2 = json.loads(nd.berth("inspect", "f1").stdout)[0]["NetworkSettings"]["Networks"]["fixed"]
    assert ep2["IPAddress"] == "" and ep2["EndpointID"] == "" and ep2["NetworkID"] == net["Id"]
    assert ep2["IPAMConfig"] == {"IPv4Address": "10.231.0.10"}
    assert net_inspect(nd, "fixed")["Containers"] == {}
    # and it gets its address again
    nd.berth("start", "f1")
    assert ip_of(nd, "f1", "fixed") == "10.231.0.10"


def test_published_ports_from_the_host_and_from_other_containers(nd):
    p, q = free_port(), free_port()
    httpd(nd, "lo-only", "-p", f"127.0.0.1:{p}:80", port=80)
    httpd(nd, "everywhere", "-p", f"{q}:80", port=80)
    assert http_get(f"http://127.0.0.1:{p}/") == HELLO
    assert http_get(f"http://127.0.0.1:{q}/") == HELLO
    assert nd.berth("port", "lo-only").stdout == f"80/tcp -> 127.0.0.1:{p}\n"
    assert nd.berth("port", "everywhere", "80").stdout == f"0.0.0.0:{q}\n"
    ps = nd.berth("ps", "--format", "{{.Names}} {{.Ports}}").stdout
    assert f"lo-only 127.0.0.1:{p}->80/tcp" in ps and f"everywhere 0.0.0.0:{q}->80/tcp" in ps
    # other containers reach the host port through the host: from the default bridge (its
    # gateway is the host) and from a user network (through its own gateway)
    nd.berth("network", "create", "other")
    bridge_gw = net_inspect(nd, "bridge")["IPAM"]["Config"][0]["Gateway"]
    other_gw = net_inspect(nd, "other")["IPAM"]["Config"][0]["Gateway"]
    out = nd.berth("run", "--rm", "busybox", "wget", "-qO-", f"http://{bridge_gw}:{q}/").stdout
    assert out == HELLO
    out = nd.berth("run", "--rm", "--network", "other", "busybox", "wget", "-qO-",
                   f"http://{other_gw}:{q}/").stdout
    assert out == HELLO
    # the container reaches its own published port too (hairpin)
    out = nd.berth("exec", "everywhere", "wget", "-qO-", f"http://{bridge_gw}:{q}/").stdout
    assert out == HELLO
    r = nd.berth("port", "lo-only", "81", check=False)
    assert r.returncode == 1 and r.stderr == "Error: No public port '81' published for " \
                                             "lo-only\n"


def test_udp_port_delivers_a_datagram(nd):
    u = free_port(socket.SOCK_DGRAM)
    nd.berth("run", "-d", "--name", "udp", "-p", f"127.0.0.1:{u}:9999/udp", "busybox", "sleep",
             "300")
    key = nd.berth("inspect", "-f", "{{.NetworkSettings.SandboxKey}}", "udp").stdout.strip()
    # Debian's busybox nc has no UDP: the listener is a host program in the container's own
    # network namespace (the same kernel path as a process of the container)
    code = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "s.bind(('0.0.0.0', 9999)); print(s.recv(100).decode(), flush=True)")
    p = subprocess.Popen(["nsenter", f"--net={key}", sys.executable, "-c", code],
                         stdout=subprocess.PIPE, text=True)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    deadline = time.monotonic() + 10
    try:
        while p.poll() is None:
            assert time.monotonic() < deadline, "no datagram arrived"
            s.sendto(b"datagram-through-berth", ("127.0.0.1", u))
            time.sleep(0.2)
        assert p.stdout.read() == "datagram-through-berth\n"
    finally:
        s.close()
        if p.poll() is None:
            p.kill()
        p.wait()
    assert nd.berth("port", "udp").stdout == f"9999/udp -> 127.0.0.1:{u}\n"


def test_taken_port_fails_at_start_and_leaves_nothing(nd):
    st = State(nd)
    p = free_port()
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", p))
    squatter.listen()
    try:
        before = st.nft()
        r = nd.berth("run", "-d", "--name", "late", "-p", f"127.0.0.1:{p}:80", "busybox",
                     "sleep", "300", check=False)
        assert r.returncode == 125
        assert "driver failed programming external connectivity on endpoint late" in r.stderr
        assert f"listen tcp4 127.0.0.1:{p}: bind: address already in use" in r.stderr
        state = nd.berth("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}",
                         "late").stdout.split()
        assert state == ["created", "128"]
        assert st.nft() == before and st.wait_no_leaks() == []
    finally:
        squatter.close()
    # a port berth itself forwards: the second container fails the same way, the first keeps it
    httpd(nd, "first", "-p", f"127.0.0.1:{p}:80", port=80)
    r = nd.berth("run", "-d", "--name", "second", "-p", f"{p}:80", "busybox", "sleep", "300",
                 check=False)
    assert r.returncode == 125 and f"Bind for 0.0.0.0:{p} failed: port is already " \
                                  "allocated" in r.stderr
    assert http_get(f"http://127.0.0.1:{p}/") == HELLO
    nd.berth("rm", "-f", "first")
    # released: the port is free for anyone now
    s = socket.socket()
    s.bind(("127.0.0.1", p))
    s.close()


def test_publish_all_takes_the_images_exposed_ports(nd):
    lo, hi = (int(x) for x in open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    nd.berth("run", "-d", "--name", "exp", "-P", "busybox-exposing:1", "httpd", "-f", "-p",
             "80", "-h", "/var/www")
    lines = nd.berth("port", "exp").stdout.splitlines()
    assert [ln.split(" -> ")[0] for ln in lines] == ["53/udp", "80/tcp"]
    ports = {ln.split(" -> ")[0]: int(ln.rsplit(":", 1)[1]) for ln in lines}
    assert all(lo <= x <= hi for x in ports.values())
    assert http_get(f"http://127.0.0.1:{ports['80/tcp']}/") == HELLO
    # without -P an exposed port is listed, not published
    nd.berth("run", "-d", "--name", "noexp", "busybox-exposing:1", "sleep", "300")
    ns = json.loads(nd.berth("inspect", "noexp").stdout)[0]["NetworkSettings"]
    assert ns["Ports"] == {"80/tcp": None, "53/udp": None}
    assert nd.berth("port", "noexp").stdout == ""


def test_internal_network_has_no_way_out(nd):
    nd.berth("network", "create", "--internal", "inner")
    nd.berth("network", "create", "outer")
    httpd(nd, "out1", "--network", "outer")
    out_ip = ip_of(nd, "out1", "outer")
    httpd(nd, "in1", "--network", "inner")
    r = nd.berth("run", "--rm", "--network", "inner", "busybox", "sh", "-c",
                 "ip route; wget -qO- http://in1:8080/; "
                 f"ping -c1 -W1 {out_ip} >/dev/null 2>&1; echo ping=$?", check=False)
    assert "default" not in r.stdout
    assert HELLO in r.stdout and "ping=1" in r.stdout
    assert net_inspect(nd, "inner")["Internal"] is True


def test_connect_and_disconnect_a_running_container(nd):
    nd.berth("network", "create", "late-net")
    httpd(nd, "joiner")  # on the default bridge
    nd.berth("network", "connect", "--alias", "extra1", "late-net", "joiner")
    out = nd.berth("exec", "joiner", "sh", "-c", "ip -o -4 addr; cat /etc/resolv.conf").stdout
    ip = ip_of(nd, "joiner", "late-net")
    assert f"eth1    inet {ip}/" in out
    # its first network with a resolver: resolv.conf names the resolver now
    assert "nameserver 127.0.0.11" in out
    out = nd.berth("run", "--rm", "--network", "late-net", "busybox", "sh", "-c",
                   "wget -qO- http://joiner:8080/ && wget -qO- http://extra1:8080/").stdout
    assert out == HELLO * 2
    r = nd.berth("network", "connect", "late-net", "joiner", check=False)
    assert r.returncode == 1 and "endpoint with name joiner already exists in network " \
                                 "late-net" in r.stderr
    nd.berth("network", "disconnect", "late-net", "joiner")
    out = nd.berth("exec", "joiner", "ip", "-o", "link").stdout
    assert "eth1" not in out and "eth0" in out
    r = nd.berth("run", "--rm", "--network", "late-net", "--dns", "127.0.0.1", "busybox",
                 "nslookup", "joiner", check=False)
    assert r.returncode == 1
    r = nd.berth("network", "disconnect", "late-net", "joiner", check=False)
    assert r.returncode == 1 and "is not connected to network late-net" in r.stderr
    assert State(nd).leases()["late-net"] == {}


def test_connect_while_created_applies_at_start(nd):
    nd.berth("network", "create", "n-a")
    nd.berth("network", "create", "n-b")
    cid = nd.berth("create", "--name", "two", "--network", "n-a", "busybox", "sleep", "300"
                   ).stdout.strip()
    nd.berth("network", "connect", "--ip", "10.0.0.1", "n-b", "two", check=False)
    nd.berth("network", "connect", "--alias", "second", "n-b", "two")
    nets = json.loads(nd.berth("inspect", "-f", "{{json .NetworkSettings.Networks}}",
                               "two").stdout)
    # as dockerd: the short id is an alias on a user network from the connect on
    assert set(nets) == {"n-a", "n-b"} and nets["n-b"]["Aliases"] == ["second", cid[:12]]
    nd.berth("start", "two")
    out = nd.berth("exec", "two", "ip", "-o", "-4", "addr").stdout
    assert "eth0" in out and "eth1" in out
    # the default route is the first network's
    route = nd.berth("exec", "two", "ip", "route").stdout
    gw_a = net_inspect(nd, "n-a")["IPAM"]["Config"][0]["Gateway"]
    assert f"default via {gw_a} dev eth0" in route
    assert set(net_inspect(nd, "n-b")["Containers"]) == {
        nd.berth("inspect", "-f", "{{.Id}}", "two").stdout.strip()}


def test_container_network_mode_shares_the_namespace(nd):
    httpd(nd, "owner", "--hostname", "ownerhost")
    out = nd.berth("run", "--rm", "--network", "container:owner", "busybox", "sh", "-c",
                   "wget -qO- http://127.0.0.1:8080/; hostname; ip -o -4 addr show eth0").stdout
    assert out.startswith(HELLO + "ownerhost\n")
    assert ip_of(nd, "owner") in out
    r = nd.berth("run", "--rm", "--network", "container:nosuch-berth", "busybox", "true",
                 check=False)
    assert r.returncode == 125 and "No such container: nosuch-berth" in r.stderr


def test_race_for_the_last_address_of_a_slash_30_through_the_api(nd):
    import docker

    net_id = nd.berth("network", "create", "--subnet", "10.233.0.0/30", "tiny").stdout.strip()
    api = docker.APIClient(base_url=nd.host, version="1.41", timeout=60)
    try:
        for round_ in range(3):
            ids = [api.create_container("busybox", "sleep 300", name=f"race{round_}-{i}",
                                        host_config=api.create_host_config(
                                            network_mode="tiny"))["Id"] for i in range(2)]
            results: dict[str, object] = {}
            go = threading.Barrier(2)

            def start(cid, go=go, results=results):
                c = docker.APIClient(base_url=nd.host, version="1.41", timeout=60)
                try:
                    go.wait()
                    c.start(cid)
                    results[cid] = "started"
                except docker.errors.APIError as e:
                    results[cid] = e
                finally:
                    c.close()

            ts = [threading.Thread(target=start, args=(cid,)) for cid in ids]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            won = [c for c, r in results.items() if r == "started"]
            lost = [r for r in results.values() if r != "started"]
            assert len(won) == 1 and len(lost) == 1, results
            assert "no available IPv4 addresses on this network's address pools: tiny " \
                   f"({net_id})" in str(lost[0])
            assert api.inspect_container(won[0])["NetworkSettings"]["Networks"]["tiny"][
                "IPAddress"] == "10.233.0.2"
            loser = next(c for c in ids if c not in won)
            assert api.inspect_container(loser)["State"]["Status"] == "created"
            assert list(State(nd).leases()["tiny"]) == ["10.233.0.2"]
            for cid in ids:
                api.remove_container(cid, force=True)
            assert State(nd).wait_no_leaks() == []
    finally:
        api.close()


def test_200_containers_on_one_network_unique_addresses_none_leaked(nd):
    nd.berth("network", "create", "--subnet", "10.232.0.0/24", "many")
    st = State(nd)
    ids = [nd.berth("run", "-d", "--network", "many", "busybox", "sleep", "600").stdout.strip()
           for _ in range(200)]
    ips = nd.berth("inspect", "-f", "{{.NetworkSettings.Networks.many.IPAddress}}",
                   *ids).stdout.split()
    assert len(ips) == 200 and len(set(ips)) == 200
    assert sorted(st.leases()["many"]) == sorted(ips)
    assert len(st.veths()) >= 200
    nd.berth("rm", "-f", *ids)
    assert st.wait_no_leaks() == []
    # the addresses go round: the next container does not get the one just released
    nd.berth("run", "-d", "--name", "after", "--network", "many", "busybox", "sleep", "60")
    assert ip_of(nd, "after", "many") not in ips[-1:]


def test_network_commands_and_their_errors(nd):
    nid = nd.berth("network", "create", "--label", "team=a", "cmds").stdout.strip()
    assert len(nid) == 64
    ls = nd.berth("network", "ls").stdout.splitlines()
    assert ls[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    names = [ln.split()[1] for ln in ls[1:]]
    assert names == sorted(names) and {"bridge", "host", "none", "cmds"} <= set(names)
    assert nd.berth("network", "ls", "-q", "-f", "label=team=a").stdout == nid[:12] + "\n"
    assert nd.berth("network", "ls", "--format", "{{.Name}} {{.Driver}}", "-f",
                    "type=builtin").stdout == "bridge bridge\nhost host\nnone null\n"
    assert nd.berth("network", "inspect", "-f", "{{.Name}} {{.Labels}}", "cmds").stdout == \
        "cmds map[team:a]\n"
    for args, err in [
        (("network", "create", "cmds"), "network with name cmds already exists"),
        (("network", "create", "bridge"), "operation is not permitted on predefined bridge "
                                          "network"),
        (("network", "rm", "host"), "host is a pre-defined network and cannot be removed"),
        (("network", "rm", "nosuch-net"), "network nosuch-net not found"),
        (("network", "create", "--subnet", "10.234.0.0/16", "--gateway", "10.9.0.1", "x"),
         "no matching subnet for gateway 10.9.0.1"),
        (("network", "create", "-d", "overlay", "x"), "plugin \"overlay\" not found"),
        (("run", "--rm", "--network", "nosuch-net", "busybox", "true"),
         "network nosuch-net not found"),
        (("run", "--rm", "--network", "cmds", "--ip", "10.9.9.9", "busybox", "true"),
         "user specified IP address is supported only when connecting to networks with user "
         "configured subnets"),
    ]:
        r = nd.berth(*args, check=False)
        assert r.returncode != 0 and err in r.stderr, (args, r.stderr)
    nd.berth("run", "-d", "--name", "user", "--network", "cmds", "busybox", "sleep", "300")
    r = nd.berth("network", "rm", "cmds", check=False)
    assert r.returncode == 1 and "has active endpoints" in r.stderr
    nd.berth("network", "create", "unused")
    out = nd.berth("network", "prune", "-f").stdout
    assert out == "Deleted Networks:\nunused\n\n"
    nd.berth("rm", "-f", "user")
    assert nd.berth("network", "rm", "cmds").stdout == "cmds\n"


def test_rename_changes_the_name_a_container_resolves_by(nd):
    nd.berth("network", "create", "names")
    httpd(nd, "before", "--network", "names")
    nd.berth("rename", "before", "after")
    r = nd.berth("run", "--rm", "--network", "names", "--dns", "127.0.0.1", "busybox", "sh",
                 "-c", "wget -qO- http://after:8080/; nslookup before >/dev/null; echo old=$?")
    assert r.stdout == HELLO + "old=1\n"
    ep = json.loads(nd.berth("inspect", "-f", "{{json .NetworkSettings.Networks.names}}",
                             "after").stdout)
    assert ep["DNSNames"][0] == "after" and "before" not in ep["DNSNames"]


def test_legacy_links_on_the_default_bridge(nd):
    cid = httpd(nd, "linked", "--expose", "8080", "-e", "ROLE=db")
    ip = ip_of(nd, "linked")
    out = nd.berth("run", "--rm", "--link", "linked:db", "busybox", "sh", "-c",
                   "grep -w db /etc/hosts; wget -qO- http://db:8080/").stdout
    assert out == f"{ip}\tdb {cid[:12]} linked\n" + HELLO
    # and dockerd's variables (docker-py's test_create_with_links reads them); -e wins
    out = nd.berth("run", "--rm", "--name", "linker", "--link", "linked:db", "-e",
                   "DB_NAME=mine", "busybox", "env").stdout.splitlines()
    assert "DB_NAME=mine" in out and f"DB_PORT_8080_TCP=tcp://{ip}:8080" in out
    out = nd.berth("run", "--rm", "--name", "linker", "--link", "linked:db", "busybox", "env"
                   ).stdout.splitlines()
    assert {"DB_NAME=/linker/db", f"DB_PORT=tcp://{ip}:8080", f"DB_PORT_8080_TCP_ADDR={ip}",
            "DB_ENV_ROLE=db"} <= set(out)


def test_network_events(nd):
    import docker

    since = time.time() - 1
    nid = nd.berth("network", "create", "evnet").stdout.strip()
    cid = nd.berth("run", "-d", "--network", "evnet", "busybox", "sleep", "300").stdout.strip()
    nd.berth("rm", "-f", cid)
    nd.berth("network", "rm", "evnet")
    api = docker.APIClient(base_url=nd.host, version="1.41")
    try:
        evs = list(api.events(since=since, until=time.time() + 1, decode=True,
                              filters={"type": "network"}))
    finally:
        api.close()
    got = [(e["Action"], e["Actor"]["ID"], e["Actor"]["Attributes"].get("container")) for e in
           evs if e["Actor"]["ID"] == nid]
    assert got == [("create", nid, None), ("connect", nid, cid), ("disconnect", nid, cid),
                   ("destroy", nid, None)]
    assert all(e["Actor"]["Attributes"]["name"] == "evnet" and
               e["Actor"]["Attributes"]["type"] == "bridge" for e in evs
               if e["Actor"]["ID"] == nid)


def test_a_restarting_container_keeps_its_network(nd):
    nd.berth("run", "-d", "--name", "flappy", "--restart", "on-failure:2", "busybox", "sh", "-c",
             "ip -o -4 addr show eth0 | cut -d' ' -f7; sleep 0.3; exit 3")
    deadline = time.monotonic() + 30
    while nd.berth("inspect", "-f", "{{.State.Status}}", "flappy").stdout.strip() != "exited":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert nd.berth("inspect", "-f", "{{.RestartCount}}", "flappy").stdout.strip() == "2"
    # each run saw eth0 with the one address of its namespace, kept across the restarts
    seen = nd.berth("logs", "flappy").stdout.split()
    assert len(seen) == 3 and len(set(seen)) == 1 and seen[0].count(".") == 3, seen
    assert State(nd).sandboxes() == []  # released once it stopped for good


def test_resolver_at_127_0_0_11_follows_connect_and_disconnect(nd):
    """As dockerd's: nameserver 127.0.0.11 whatever the container's networks become (after
    disconnecting the network it started on, names still resolve), and port 53 of the
    container stays its own (the resolver's sockets sit on other ports behind a nat rule)."""
    nd.berth("network", "create", "first-net")
    nd.berth("network", "create", "second-net")
    nd.berth("run", "-d", "--name", "peer2", "--network", "second-net", "busybox", "sleep", "300")
    nd.berth("run", "-d", "--name", "mover", "--network", "first-net", "busybox", "sh", "-c",
             "httpd -p 53 -h /etc; sleep 300")
    peer2 = ip_of(nd, "peer2")
    assert nd.berth("exec", "mover", "cat", "/etc/resolv.conf").stdout == \
        "nameserver 127.0.0.11\noptions ndots:0\n"
    assert "NXDOMAIN" in nd.berth("exec", "mover", "nslookup", "peer2", check=False).stdout
    nd.berth("network", "connect", "second-net", "mover")
    nd.berth("network", "disconnect", "first-net", "mover")
    out = nd.berth("exec", "mover", "sh", "-c", "cat /etc/resolv.conf; nslookup peer2; "
                   "netstat -lnt").stdout
    assert out.startswith("nameserver 127.0.0.11\n")
    assert f"Address: {peer2}" in out
    # the container's own server on port 53 (busybox httpd) is reachable by name, over TCP
    assert ":::53 " in out or "0.0.0.0:53 " in out
    r = nd.berth("exec", "peer2", "wget", "-qO-", "http://mover:53/hostname")
    assert r.stdout.strip() == nd.berth("inspect", "-f", "{{.Config.Hostname}}", "mover"
                                        ).stdout.strip()


def test_shim_killed_leaves_no_network_behind(nd):
    """kill -9 of a container's shim: the container is reported exited and its namespace,
    veth, lease, published port and resolver sockets all go (the nd fixture checks them)."""
    import os
    import signal
    from pathlib import Path

    nd.berth("network", "create", "shimnet")
    p = free_port()
    cid = httpd(nd, "doomed", "--network", "shimnet", "-p", f"127.0.0.1:{p}:80", port=80)
    assert http_get(f"http://127.0.0.1:{p}/") == HELLO
    shim_pid = int((Path(nd.run) / "c" / cid[:12] / "shim.pid").read_text())
    os.kill(shim_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while nd.berth("inspect", "-f", "{{.State.Status}}", "doomed").stdout.strip() != "exited":
        assert time.monotonic() < deadline, "the container is still reported running"
        time.sleep(0.1)
    assert State(nd).wait_no_leaks() == []
    # the port is free again for anyone
    s = socket.socket()
    s.bind(("127.0.0.1", p))
    s.close()
