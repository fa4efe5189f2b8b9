"""The docker CLI 28 and the Docker SDK for Python drive networks against berthd as against
dockerd: the same commands side by side on both engines (the private dockerd fixture, without
its default bridge), the same output, exit codes and error words where clients or users would
notice; ids, ports and timestamps aside.

Both engines' containers on user networks have their resolver at 127.0.0.11."""

import difflib
import json
import re
import secrets

import docker
import pytest

from .daemonkit import free_port, http_get

pytestmark = [pytest.mark.root, pytest.mark.interop]

HELLO = "<h1>hello from berth</h1>\n"


def _norm(text: str, *ids: str) -> str:
    for i in ids:
        if i:
            text = text.replace(i, "<id>").replace(i[:12], "<id12>")
    text = re.sub(r"\b[0-9a-f]{64}\b", "<id>", text)
    return re.sub(r"\b[0-9a-f]{12}\b", "<id12>", text)


class Both:
    """Run one docker command on berthd and on dockerd; (berth result, dockerd result)."""

    def __init__(self, bd, dd) -> None:
        self.bd, self.dd = bd, dd
        self.sfx = secrets.token_hex(3)
        self.nets: list[str] = []
        self.ctrs: list[str] = []

    def name(self, what: str) -> str:
        return f"{what}-{self.sfx}"

    def __call__(self, *args: str, check: bool = False):
        b = self.bd.docker(*args, check=check)
        d = self.dd.docker(*args, check=check)
        d.stdout, d.stderr = d.stdout.decode(), d.stderr.decode()
        return b, d

    def same(self, *args: str):
        b, d = self(*args)
        assert (b.returncode, _norm(b.stdout), _norm(b.stderr)) == \
               (d.returncode, _norm(d.stdout), _norm(d.stderr)), args
        return b, d

    def cleanup(self) -> None:
        for c in self.ctrs:
            self("rm", "-f", c)
        for n in self.nets:
            self("network", "rm", n)


@pytest.fixture
def both(nd, dockerd):
    dockerd.docker("image", "inspect", "busybox:latest")
    b = Both(nd, dockerd)
    try:
        yield b
    finally:
        b.cleanup()


def test_network_commands_side_by_side(both):
    n = both.name("par")
    both.nets.append(n)
    b, d = both("network", "create", "--subnet", "10.236.0.0/24", "--ip-range",
                "10.236.0.128/25", "--gateway", "10.236.0.254", "--aux-address", "r=10.236.0.5",
                "--label", "k=v", "-o", "com.docker.network.driver.mtu=1400", n)
    assert b.returncode == d.returncode == 0
    assert re.fullmatch(r"[0-9a-f]{64}\n", b.stdout) and re.fullmatch(r"[0-9a-f]{64}\n",
                                                                         d.stdout)
    both.same("network", "ls", "-f", f"name={n}", "--format",
              "{{.Name}} {{.Driver}} {{.Scope}} {{.Internal}} {{.IPv6}} {{.Labels}}")
    both.same("network", "inspect", "-f", "{{json .IPAM}} {{json .Options}} {{json .Labels}} "
              "{{.Internal}} {{.Attachable}} {{.Scope}} {{json .Containers}} {{.EnableIPv6}}", n)
    bi = json.loads(both.bd.docker("network", "inspect", n).stdout)[0]
    di = json.loads(both.dd.docker("network", "inspect", n).stdout)[0]
    assert set(bi) == set(di)
    for args in [("network", "create", n), ("network", "rm", "nosuch-berth-net"),
                 ("network", "inspect", "nosuch-berth-net"),
                 ("network", "create", "--subnet", "10.236.0.0/25", both.name("over")),
                 ("network", "create", "--gateway", "10.1.1.1", both.name("gw")),
                 ("network", "create", "--subnet", "10.237.0.0/24", "--ip-range",
                  "10.238.0.0/24", both.name("rng")),
                 ("network", "create", "-d", "nosuchdriver", both.name("drv")),
                 ("network", "create", "--scope", "swarm", both.name("swarm")),
                 ("network", "create", "--scope", "global", both.name("global")),
                 ("network", "create", "--subnet", "10.250.0.0/16", "--subnet",
                  "10.251.0.0/16", both.name("two")),
                 ("network", "rm", "none"),
                 ("network", "create", "host"),
                 ("network", "connect", n, "nosuch-berth-ctr"),
                 ("network", "connect", "nosuch-berth-net", "nosuch-berth-ctr"),
                 ("run", "--rm", "--network", "nosuch-berth-net", "busybox", "true"),
                 ("run", "--rm", "--network-alias", "x", "busybox", "true")]:
        both.same(*args)
    both.same("network", "rm", n)
    both.nets.remove(n)


def test_containers_on_a_user_network_side_by_side(both):
    n = both.name("cnet")
    both.nets.append(n)
    both("network", "create", "--subnet", "10.239.0.0/24", n, check=True)
    web = both.name("web")
    both.ctrs.append(web)
    b, d = both("run", "-d", "--name", web, "--network", n, "--network-alias", "www", "-h",
                "webhost", "--add-host", "x.test:10.9.8.7", "busybox", "httpd", "-f", "-p",
                "8080", "-h", "/var/www", check=True)
    bid, did = b.stdout.strip(), d.stdout.strip()
    fmt = "{{json .NetworkSettings.Networks}}"
    bn = json.loads(both.bd.docker("inspect", "-f", fmt, web).stdout)[n]
    dn = json.loads(both.dd.docker("inspect", "-f", fmt, web).stdout)[n]
    for k in ("IPAddress", "IPPrefixLen", "Gateway", "MacAddress", "IPAMConfig", "Links",
              "DriverOpts", "IPv6Gateway", "GlobalIPv6Address"):
        assert bn[k] == dn[k], k
    assert bn["Aliases"] == ["www", bid[:12], "webhost"]
    assert dn["Aliases"] == ["www", did[:12], "webhost"]
    assert set(bn) >= set(dn) - {"GwPriority"}
    # what the container sees: /etc/hosts alike; resolv.conf names each engine's resolver
    bh = both.bd.docker("exec", web, "cat", "/etc/hosts").stdout
    dh = both.dd.docker("exec", web, "cat", "/etc/hosts").stdout.decode()
    assert bh == dh
    br = both.bd.docker("exec", web, "cat", "/etc/resolv.conf").stdout.splitlines()
    dr = both.dd.docker("exec", web, "cat", "/etc/resolv.conf").stdout.decode().splitlines()
    assert br == [x for x in dr if not x.startswith("#")]
    assert "nameserver 127.0.0.11" in br
    # by name and alias (the private dockerd runs without iptables, which its 127.0.0.11
    # resolver needs: names are checked on berthd only)
    out = both.bd.docker("run", "--rm", "--network", n, "busybox", "sh", "-c",
                         f"wget -qO- http://{web}:8080/ && wget -qO- http://www:8080/").stdout
    assert out == HELLO * 2
    both.same("network", "connect", n, web)
    both.same("network", "disconnect", both.name("nonet"), web)
    b, d = both.same("network", "inspect", "-f", "{{len .Containers}}", n)
    assert b.stdout == "1\n"
    both.same("network", "disconnect", n, web)
    both.same("network", "disconnect", n, web)


def test_address_errors_side_by_side(both):
    """dockerd 20.10's words for --ip and --gateway addresses it will not hand out."""
    n = both.name("addr")
    both.nets.append(n)
    both("network", "create", "--subnet", "10.241.0.0/24", n, check=True)
    holder = both.name("holder")
    both.ctrs.append(holder)
    both("run", "-d", "--name", holder, "--network", n, "--ip", "10.241.0.7", "busybox",
         "sleep", "300", check=True)
    for ip in ("10.241.0.7", "10.241.0.1", "10.241.0.0", "10.241.0.255", "10.99.0.5"):
        b, d = both.same("run", "--rm", "--network", n, "--ip", ip, "busybox", "true")
        assert b.returncode == 125
    assert "Invalid address 10.99.0.5: It does not belong to any of this network's " \
        "subnets" in b.stderr
    for gw in ("10.242.0.0", "10.242.0.255"):
        both.same("network", "create", "--subnet", "10.242.0.0/24", "--gateway", gw,
                  both.name("gw"))
    both.same("network", "create", "--subnet", "bogus", both.name("bad"))


def test_connect_stopped_and_container_mode_side_by_side(both):
    """What dockerd records for a stopped container's connect (the short id as an alias, the
    CLI's empty IPAMConfig and DriverOpts kept), its two disconnect messages, and
    container:NAME kept as container:<full id>."""
    n = both.name("stop")
    both.nets.append(n)
    both("network", "create", n, check=True)
    st, base, joiner = both.name("st"), both.name("base"), both.name("join")
    both.ctrs += [st, base, joiner]
    ids = {}
    for eng in (both.bd, both.dd):
        out = eng.docker("create", "--name", st, "busybox", "sleep", "300").stdout
        ids[eng] = (out if isinstance(out, str) else out.decode()).strip()
        eng.docker("run", "-d", "--name", base, "--network", n, "busybox", "sleep", "300")
    both.same("network", "connect", "--alias", "a1", n, st)
    b, d = both.same("inspect", "-f", "{{json .NetworkSettings.Networks}}", st)
    bv, dv = json.loads(b.stdout)[n], json.loads(d.stdout)[n]
    assert bv["Aliases"] == ["a1", ids[both.bd][:12]] and dv["Aliases"] == ["a1",
                                                                            ids[both.dd][:12]]
    assert bv["IPAMConfig"] == dv["IPAMConfig"] == {} and bv["DriverOpts"] == {}
    both.same("network", "disconnect", n, st)
    b, _ = both.same("network", "disconnect", n, st)  # stopped: "the network"
    both.same("network", "disconnect", "-f", n, "nosuch-berth-ctr")  # ForceEndpointDelete
    both.same("network", "disconnect", "-f", "nosuch-berth-net", "nosuch-berth-ctr")
    assert "is not connected to the network" in b.stderr
    other = both.name("other")
    both.nets.append(other)
    both("network", "create", other, check=True)
    b, _ = both.same("network", "disconnect", other, base)  # running: "network"
    assert "is not connected to network" in b.stderr
    both.same("create", "--name", joiner, "--network", f"container:{base}", "busybox", "true")
    b, d = both.same("inspect", "-f", "{{.HostConfig.NetworkMode}}", joiner)
    assert re.fullmatch(r"container:[0-9a-f]{64}\n", b.stdout)


def test_start_after_its_network_was_removed_side_by_side(both):
    n = both.name("gone")
    both.nets.append(n)
    both("network", "create", n, check=True)
    ctr = both.name("orphan")
    both.ctrs.append(ctr)
    both("run", "-d", "--name", ctr, "--network", n, "busybox", "sleep", "300", check=True)
    both("stop", "-t", "0", ctr, check=True)
    both.same("network", "rm", n)
    both.nets.remove(n)
    # the endpoint's network by the id it had; the exit code of the last run kept
    both.same("start", ctr)
    b, d = both.same("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} {{.State.Error}}",
                     ctr)
    assert re.fullmatch(r"exited 137 network [0-9a-f]{64} not found\n", b.stdout)


def test_network_mode_conflicts_side_by_side(both):
    """dockerd's validateNetMode: what container: and host modes cannot be combined with, in
    its words and order, and its warning for ports published in host mode."""
    n = both.name("modes")
    both.nets.append(n)
    both("network", "create", n, check=True)
    owner = both.name("owner")
    both.ctrs.append(owner)
    both("run", "-d", "--name", owner, "--network", n, "busybox", "sleep", "300", check=True)
    joined = f"container:{owner}"
    for opts in (["-p", "19700:80"], ["-P"], ["--hostname", "h"], ["--dns", "10.1.1.1"],
                 ["--add-host", "a:10.1.1.1"], ["--expose", "80"], ["--link", f"{owner}:x"],
                 ["--hostname", "h", "--dns", "10.1.1.1"]):
        b, _ = both.same("run", "--rm", "--network", joined, *opts, "busybox", "true")
        assert b.returncode == 125 and "conflicting options" in b.stderr
    both.same("run", "--rm", "--network", "container:", "busybox", "true")
    both.same("run", "--rm", "--network", "host", "--link", f"{owner}:x", "busybox", "true")
    b, _ = both.same("run", "--rm", "--network", "host", "-p", "19701:80", "busybox", "true")
    assert "WARNING: Published ports are discarded when using host network mode" in b.stderr


def test_ps_ports_of_containers_without_a_running_endpoint(both):
    """dockerd's ps shows no ports for a created or stopped container, nor for one in host or
    none mode, whatever it exposes."""
    n = both.name("psp")
    both.nets.append(n)
    both("network", "create", n, check=True)
    made = [both.name(x) for x in ("created", "stopped", "host", "none")]
    both.ctrs += made
    both("create", "--name", made[0], "--network", n, "-p", "127.0.0.1::80", "--expose", "81",
         "busybox", "sleep", "300", check=True)
    both("run", "-d", "--name", made[1], "--network", n, "--expose", "81", "busybox",
         "sleep", "300", check=True)
    both("stop", "-t", "0", made[1], check=True)
    for mode, name in (("host", made[2]), ("none", made[3])):
        both("run", "-d", "--name", name, "--network", mode, "--expose", "80", "busybox",
             "sleep", "300", check=True)
    for name in made:
        b, _ = both.same("ps", "-a", "--filter", f"name={name}", "--format", "{{.Ports}}")
        assert b.stdout == "\n"


def test_hosts_names_of_dotted_hostnames_side_by_side(both):
    n = both.name("fq")
    both.nets.append(n)
    both("network", "create", n, check=True)
    for opts in (["--hostname", "h.x.y"], ["--hostname", "h", "--domainname", "d.example"],
                 ["--hostname", "plain"]):
        b, _ = both.same("run", "--rm", "--network", n, *opts, "busybox", "sh", "-c",
                         "tail -1 /etc/hosts | cut -f2; hostname")
        assert b.returncode == 0


def test_ports_of_a_container_on_an_internal_network_side_by_side(both):
    """dockerd programs no port mapping for an internal network: nothing is published, the
    Ports map is empty; with a second, normal network the ports are that network's."""
    inn, out = both.name("inn"), both.name("outn")
    both.nets += [inn, out]
    both("network", "create", "--internal", inn, check=True)
    both("network", "create", out, check=True)
    ctr, two = both.name("inside"), both.name("twonets")
    both.ctrs += [ctr, two]
    ports = {}
    for eng in (both.bd, both.dd):
        ports[eng] = free_port()
        eng.docker("run", "-d", "--name", ctr, "--network", inn, "-p",
                   f"127.0.0.1:{ports[eng]}:80", "busybox", "httpd", "-f", "-p", "80", "-h",
                   "/var/www")
    b, _ = both.same("inspect", "-f", "{{json .NetworkSettings.Ports}}", ctr)
    assert b.stdout == "{}\n"
    both.same("port", ctr)
    for eng in (both.bd, both.dd):
        with pytest.raises(OSError):
            http_get(f"http://127.0.0.1:{ports[eng]}/", timeout=1)
    for eng in (both.bd, both.dd):
        ports[eng] = free_port()
        eng.docker("create", "--name", two, "--network", inn, "-p",
                   f"127.0.0.1:{ports[eng]}:80", "busybox", "httpd", "-f", "-p", "80", "-h",
                   "/var/www")
        eng.docker("network", "connect", out, two)
        eng.docker("start", two)
        assert http_get(f"http://127.0.0.1:{ports[eng]}/") == HELLO


def test_ambiguous_id_prefix_side_by_side(both):
    """An id prefix that several networks (predefined ones too) start with: dockerd 20.10's
    words and count, on each engine with its own ids."""
    for eng in (both.bd, both.dd):
        for i in range(40):
            out = eng.docker("network", "ls", "-q", "--no-trunc").stdout
            ids = (out if isinstance(out, str) else out.decode()).split()
            firsts = [x[0] for x in ids]
            dup = next((c for c in sorted(set(firsts)) if firsts.count(c) > 1), None)
            if dup:
                break
            name = both.name(f"amb{i}")
            both.nets.append(name)
            eng.docker("network", "create", "--subnet", f"10.247.{i}.0/24", name)
        assert dup, "no two networks share a first hex digit"
        r = eng.docker("network", "inspect", dup, check=False)
        err = r.stderr if isinstance(r.stderr, str) else r.stderr.decode()
        assert r.returncode == 1
        assert err == (f"Error response from daemon: {firsts.count(dup)} matches found based on "
                       f"ID prefix: network {dup} is ambiguous\n"), err


def test_container_list_network_view_side_by_side(both):
    """GET /containers/json: each endpoint as dockerd's list copies it (no aliases)."""
    n = both.name("lst")
    both.nets.append(n)
    both("network", "create", "--subnet", "10.248.0.0/24", n, check=True)
    ctr = both.name("listed")
    both.ctrs.append(ctr)
    both("run", "-d", "--name", ctr, "--network", n, "--ip", "10.248.0.9", "--network-alias",
         "zz", "busybox", "sleep", "300", check=True)
    views = []
    for eng in (both.bd, both.dd):
        c = docker.APIClient(base_url=eng.host)
        try:
            views.append(c.containers(filters={"name": ctr})[0]["NetworkSettings"]["Networks"])
        finally:
            c.close()
    for v in views:
        v[n].pop("NetworkID"), v[n].pop("EndpointID")
    assert views[0] == views[1]
    assert list(views[0][n]) == list(views[1][n])  # dockerd's key order too
    assert views[0][n]["Aliases"] is None and views[0][n]["IPAMConfig"] == {
        "IPv4Address": "10.248.0.9"}


def test_published_ports_side_by_side(both):
    # the private dockerd has no default bridge: both sides use a user network
    n = both.name("pnet")
    both.nets.append(n)
    both("network", "create", n, check=True)
    ctr = both.name("pub")
    both.ctrs.append(ctr)
    ports = {}
    for eng in (both.bd, both.dd):
        p = free_port()
        ports[eng] = p
        eng.docker("run", "-d", "--name", ctr, "--network", n, "-p", f"127.0.0.1:{p}:80",
                   "--expose", "81", "busybox", "httpd", "-f", "-p", "80", "-h", "/var/www")
        assert http_get(f"http://127.0.0.1:{p}/") == HELLO
    for eng in (both.bd, both.dd):
        out = eng.docker("port", ctr).stdout
        out = out if isinstance(out, str) else out.decode()
        assert out == f"80/tcp -> 127.0.0.1:{ports[eng]}\n"
        ps = eng.docker("ps", "-f", f"name={ctr}", "--format", "{{.Ports}}").stdout
        ps = ps if isinstance(ps, str) else ps.decode()
        assert ps == f"81/tcp, 127.0.0.1:{ports[eng]}->80/tcp\n"
    both.same("port", ctr, "81")
    both.same("port", ctr, "82/udp")
    bp = json.loads(both.bd.docker("inspect", "-f", "{{json .NetworkSettings.Ports}}",
                                   ctr).stdout)
    assert bp == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(ports[both.bd])}],
                  "81/tcp": None}
    # a port already taken: the same failure on both, the container left created
    late = both.name("late")
    both.ctrs.append(late)
    msgs = []
    for eng in (both.bd, both.dd):
        r = eng.docker("run", "-d", "--name", late, "--network", n, "-p",
                       f"127.0.0.1:{ports[eng]}:80", "busybox", "sleep", "300", check=False)
        err = r.stderr if isinstance(r.stderr, str) else r.stderr.decode()
        msgs.append((r.returncode, _norm(err.replace(str(ports[eng]), "<port>"))))
        st = eng.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", late).stdout
        assert (st if isinstance(st, str) else st.decode()) == "created 128\n"
    assert msgs[0] == msgs[1]
    assert "Bind for 127.0.0.1:<port> failed: port is already allocated" in msgs[0][1]


def test_docker_py_networks(nd):
    client = nd.client()
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet="10.240.0.0/24")])
    net = client.networks.create("pynet", labels={"a": "b"}, ipam=ipam)
    try:
        assert net.name == "pynet" and net.attrs["Labels"] == {"a": "b"}
        assert client.networks.get(net.id[:10]).id == net.id
        assert [n.name for n in client.networks.list(names=["pynet"])] == ["pynet"]
        p = free_port()
        web = client.containers.run("busybox", ["httpd", "-f", "-p", "80", "-h", "/var/www"],
                                    name="pyweb", detach=True, network="pynet",
                                    ports={"80/tcp": ("127.0.0.1", p)})
        web.reload()
        assert web.ports == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(p)}]}
        assert http_get(f"http://127.0.0.1:{p}/") == HELLO
        assert web.attrs["NetworkSettings"]["Networks"]["pynet"]["IPAddress"] == "10.240.0.2"
        net.reload()
        assert [c.id for c in net.containers] == [web.id]
        other = client.containers.create("busybox", "sleep 300", name="pyother")
        net.connect(other, aliases=["buddy"], ipv4_address="10.240.0.77")
        other.start()
        assert other.exec_run(["ip", "-o", "-4", "addr", "show", "eth1"]).output.decode() \
            .split()[3] == "10.240.0.77/24"
        res = web.exec_run(["ping", "-c1", "-W2", "buddy"])
        assert res.exit_code == 0, res.output
        net.disconnect(other)
        net.reload()
        assert [c.id for c in net.containers] == [web.id]
        with pytest.raises(docker.errors.APIError, match="active endpoints"):
            net.remove()
        for c in (web, other):
            c.remove(force=True)
        assert client.networks.prune()["NetworksDeleted"] == ["pynet"]
        with pytest.raises(docker.errors.NotFound):
            client.networks.get(net.id)
    finally:
        for c in client.containers.list(all=True):
            c.remove(force=True)
        try:
            client.networks.get("pynet").remove()
        except Exception:  # noqa: BLE001 - gone already
            pass


def test_berth_cli_prints_what_the_docker_cli_prints(nd):
    nd.berth("network", "create", "--label", "a=1", "clinet")
    nd.berth("network", "create", "clinet10")
    nd.berth("network", "create", "clinet9")
    p = free_port()
    nd.berth("run", "-d", "--name", "cliweb", "--network", "clinet", "-p", f"127.0.0.1:{p}:80",
             "-p", "127.0.0.1::81/udp", "busybox", "sleep", "300")
    cases = [
        ("network", "ls"), ("network", "ls", "--no-trunc"), ("network", "ls", "-q"),
        ("network", "ls", "--format", "json"), ("network", "ls", "--format", "raw"),
        ("network", "ls", "--format", "table {{.Name}}\t{{.Labels}}\t{{.Internal}}"),
        ("network", "ls", "-f", "name=clinet", "--format", "{{.Name}}"),
        ("network", "ls", "--format", "{{.Nope}}"),
        ("network", "inspect", "clinet"), ("network", "inspect", "-f", "{{.Name}}", "clinet",
                                           "nosuch-net"),
        ("network", "rm", "nosuch-net"), ("network", "rm", "clinet"),
        ("network", "create"), ("network", "create", "--ip-range", "10.1.0.0/24", "x"),
        ("network", "create", "--subnet", "10.241.0.0/24", "--gateway", "10.9.9.9", "x"),
        ("network", "create", "--subnet", "10.241.0.0/24", "--aux-address", "a=10.9.9.9", "x"),
        ("network", "create", "--subnet", "10.241.0.0/24", "--subnet", "10.241.0.0/25", "x"),
        ("network", "connect", "clinet", "cliweb"), ("network", "disconnect", "clinet9",
                                                     "cliweb"),
        ("network", "connect"), ("port", "cliweb"), ("port", "cliweb", "81/udp"),
        ("port", "cliweb", "82"), ("network", "prune", "-f", "--filter", "label=zzz"),
    ]
    for args in cases:
        b = nd.berth(*args, check=False)
        d = nd.docker(*args, check=False)
        assert (b.returncode, b.stdout) == (d.returncode, d.stdout), (args, "".join(
            difflib.unified_diff(d.stdout.splitlines(True), b.stdout.splitlines(True))))
        assert b.stderr.replace("berth", "docker") == d.stderr, args
    b = nd.berth("network", "prune", "-f")
    assert b.stdout == "Deleted Networks:\nclinet10\nclinet9\n\n"
