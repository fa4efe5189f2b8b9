"""berthd's default bridge left on the host by an earlier daemon (stopped, its root removed):
a new berthd adopts it on the address it had, as dockerd adopts docker0, instead of refusing
to start; a bridge something is attached to is still refused."""

import json
import secrets
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO, Berthd

pytestmark = pytest.mark.root


def _daemon(bridge: str, table: str) -> Berthd:
    return Berthd(Path(tempfile.mkdtemp(prefix="berth-d-")),
                  ("--bridge", bridge, "--nft-table", table))


def _gateway(d: Berthd) -> str:
    net = json.loads(d.berth("network", "inspect", "bridge").stdout)[0]
    return net["IPAM"]["Config"][0]["Gateway"]


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


def test_a_stale_default_bridge_is_adopted_on_its_address():
    sfx = secrets.token_hex(3)
    bridge, table, dummy = f"berthA{sfx}", f"berth_a{sfx}", f"bdA{sfx}"
    first = _daemon(bridge, table)
    second = None
    try:
        gw = _gateway(first)
        # stopped as a user stops it: the bridge stays (as docker0 does), the root goes
        first.proc.terminate()
        first.proc.wait(20)
        assert _ip("link", "show", bridge).returncode == 0
        second = _daemon(bridge, table)
        assert _gateway(second) == gw
        second.proc.terminate()
        second.proc.wait(20)
        # something attached to the bridge: it belongs to someone, a new daemon refuses
        assert _ip("link", "add", dummy, "type", "veth", "peer", "name", dummy + "p").returncode == 0
        assert _ip("link", "set", dummy, "master", bridge).returncode == 0
        base = Path(tempfile.mkdtemp(prefix="berth-d-"))
        p = subprocess.run([str(REPO / ".venv/bin/berthd"),
                            "--root", str(base / "root"), "--run", str(base / "run"),
                            "-H", f"unix://{base}/s.sock", "--bridge", bridge,
                            "--nft-table", table], capture_output=True, text=True, timeout=60)
        subprocess.run(["rm", "-rf", str(base)], check=False)
        assert p.returncode != 0
        assert f"bridge {bridge} already exists on the host" in p.stderr
    finally:
        _ip("link", "del", dummy)
        if second is not None:
            second.stop()
        first.stop()  # purges its network: the bridge and table go
        _ip("link", "del", bridge)
        subprocess.run(["nft", "delete", "table", "ip", table], capture_output=True)
