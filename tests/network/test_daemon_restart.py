"""berthd killed -9 (and restarted) with containers on its networks: published ports keep being
served by the kernel while berthd is down; after the restart names resolve, ports are held,
addresses are kept and never handed out twice, containers that died meanwhile lose their
network, and what a crash left in the kernel without a record is removed. In the end nothing
is left."""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import Berthd

from .daemonkit import CGROUP_PARENT, State, clean, free_port, http_get

pytestmark = pytest.mark.root

HELLO = "<h1>hello from berth</h1>\n"


@pytest.fixture
def base(busybox_tar):
    """A daemon directory that outlives one berthd (the test starts and kills them)."""
    b = Path(tempfile.mkdtemp(prefix="berth-n-"))
    daemons: list[Berthd] = []

    def start() -> Berthd:
        d = Berthd(b, ("--cgroup-parent", CGROUP_PARENT))
        daemons.append(d)
        return d

    first = start()
    first.berth("import", str(busybox_tar), "busybox:latest")
    try:
        yield start, first
    finally:
        live = [d for d in daemons if d.proc.poll() is None]
        d = live[-1] if live else start()
        clean(d)
        left = State(d).wait_no_leaks()
        for x in daemons:
            if x is not d and x.proc.poll() is None:
                x.proc.kill()
                x.proc.wait()
        d.stop()
        shutil.rmtree(b, ignore_errors=True)
        assert not left, f"left behind: {left}"


def kill9(d: Berthd) -> None:
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    d.log.close()


def ips(d: Berthd, *names: str) -> dict[str, dict[str, str]]:
    out = {}
    for n in names:
        nets = json.loads(d.berth("inspect", "-f", "{{json .NetworkSettings.Networks}}",
                                  n).stdout)
        out[n] = {k: v["IPAddress"] for k, v in nets.items()}
    return out


def test_berthd_killed_with_containers_running(base):
    start, d1 = base
    port = free_port()
    d1.berth("network", "create", "keep")
    d1.berth("run", "-d", "--name", "web", "--network", "keep", "--network-alias", "www",
             "busybox", "httpd", "-f", "-p", "8080", "-h", "/var/www")
    d1.berth("run", "-d", "--name", "pub", "-p", f"127.0.0.1:{port}:80", "busybox", "httpd",
             "-f", "-p", "80", "-h", "/var/www")
    d1.berth("run", "-d", "--name", "ender", "--network", "keep", "busybox", "sleep", "300")
    assert http_get(f"http://127.0.0.1:{port}/") == HELLO
    before = ips(d1, "web", "pub", "ender")
    ender_pid = int(d1.berth("inspect", "-f", "{{.State.Pid}}", "ender").stdout)
    kill9(d1)
    # the data path is the kernel's: served with berthd gone
    assert http_get(f"http://127.0.0.1:{port}/") == HELLO
    os.kill(ender_pid, signal.SIGKILL)  # a container that dies while berthd is down
    d2 = start()
    st = State(d2)
    assert ips(d2, "web", "pub") == {k: before[k] for k in ("web", "pub")}
    assert http_get(f"http://127.0.0.1:{port}/") == HELLO
    assert d2.berth("port", "pub").stdout == f"80/tcp -> 127.0.0.1:{port}\n"
    # the resolver is back: by name and alias
    out = d2.berth("run", "--rm", "--network", "keep", "busybox", "sh", "-c",
                   "wget -qO- http://web:8080/ && wget -qO- http://www:8080/").stdout
    assert out == HELLO * 2
    # the dead one lost its network; its address is not the live ones'
    deadline = time.monotonic() + 10
    while d2.berth("inspect", "-f", "{{.State.Status}}", "ender").stdout.strip() != "exited":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    ender_cid = d2.berth("inspect", "-f", "{{.Id}}", "ender").stdout.strip()
    assert ender_cid not in st.sandboxes()
    assert before["ender"]["keep"] not in st.leases()["keep"]
    # the published port is held: nobody else gets it
    r = d2.berth("run", "-d", "--name", "thief", "-p", f"127.0.0.1:{port}:80", "busybox",
                 "sleep", "300", check=False)
    assert r.returncode == 125 and "port is already allocated" in r.stderr
    # new containers get addresses nobody holds
    d2.berth("run", "-d", "--name", "newer", "--network", "keep", "busybox", "sleep", "300")
    now = ips(d2, "web", "newer")
    assert now["newer"]["keep"] != now["web"]["keep"]
    # ender starts again with a network of its own
    d2.berth("start", "ender")
    assert ips(d2, "ender")["ender"]["keep"] not in (now["web"]["keep"], now["newer"]["keep"])


def test_graceful_restart_keeps_addresses_and_names(base):
    start, d1 = base
    d1.berth("network", "create", "--subnet", "10.235.0.0/24", "stay")
    d1.berth("run", "-d", "--name", "s1", "--network", "stay", "busybox", "httpd", "-f", "-p",
             "8080", "-h", "/var/www")
    ip1 = ips(d1, "s1")["s1"]["stay"]
    d1.proc.terminate()
    d1.proc.wait()
    d1.log.close()
    d2 = start()
    assert ips(d2, "s1")["s1"]["stay"] == ip1
    d2.berth("run", "-d", "--name", "s2", "--network", "stay", "busybox", "sleep", "300")
    assert ips(d2, "s2")["s2"]["stay"] not in (ip1, "10.235.0.1")
    out = d2.berth("exec", "s2", "wget", "-qO-", "http://s1:8080/").stdout
    assert out == HELLO
    # the subnet, gateway and bridge are the same network's
    net = json.loads(d2.berth("network", "inspect", "stay").stdout)[0]
    assert net["IPAM"]["Config"] == [{"Subnet": "10.235.0.0/24"}]


def test_start_up_removes_what_a_crash_left_without_a_record(base):
    start, d1 = base
    d1.berth("network", "create", "junk")
    st = State(d1)
    bridge = st.network("junk")["bridge"]
    d1.berth("run", "-d", "--name", "real", "--network", "junk", "busybox", "sleep", "300")
    kill9(d1)
    # what a berthd killed half-way through a start or a removal could leave behind:
    # a namespace of no container, a veth on its bridge, a lease and published ports of
    # no endpoint
    stray_ns = st.nsdir / ("f" * 64)
    stray_ns.touch()
    subprocess.run(["unshare", "--net", "mount", "--bind", "/proc/self/ns/net",
                    str(stray_ns)], check=True)
    veth = "vbjunk" + os.urandom(3).hex()
    subprocess.run(["ip", "link", "add", veth, "type", "veth", "peer", "name", veth + "p"],
                   check=True)
    subprocess.run(["ip", "link", "set", veth, "master", bridge], check=True)
    netfile = next(p for p in st.netdir.glob("*.json")
                   if json.loads(p.read_text())["name"] == "junk")
    doc = json.loads(netfile.read_text())
    doc["ipam"]["leases"]["10.254.254.254"] = "e" * 64
    netfile.write_text(json.dumps(doc))
    (st.pubdir / ("d" * 64 + ".json")).write_text(json.dumps({"ports": [
        {"proto": "tcp", "host_ip": "127.0.0.1", "host_port": free_port(),
         "container_ip": "10.254.254.253", "container_port": 80}]}))
    d2 = start()
    st2 = State(d2)
    assert st2.sandboxes() == [d2.berth("inspect", "-f", "{{.Id}}", "real").stdout.strip()]
    assert veth not in st2.veths()
    assert list(st2.leases()["junk"]) == [ips(d2, "real")["real"]["junk"]]
    assert st2.published() == []
    assert "10.254.254.253" not in st2.nft()
