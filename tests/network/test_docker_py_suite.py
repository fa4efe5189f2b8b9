"""docker-py's own integration tests for networks (tests/integration/api_network_test.py and
models_networks_test.py of a fetched docker/docker-py) against a private berthd.

Offline: the suite's image (alpine:3.10, and alpine) is our busybox under those names, and
docker-py's test helpers import paramiko only for their ssh tests, so a stand-in module
takes its place. The repository comes from DOCKER_PY_REPO (a git dir), by default the
mirror fetched for this project; without it the test is skipped.

What berth does not do is named below and must fail for that reason only: IPv6 networks and
addresses, and swarm mode (attachable/ingress overlay networks, swarm scope).
"""

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from .daemonkit import CGROUP_PARENT, State, clean

pytestmark = [pytest.mark.root, pytest.mark.interop]

REPO_GIT = Path(os.environ.get("DOCKER_PY_REPO", "/work/.mirror/docker+docker-py/repo"))
FILES = ["tests/integration/api_network_test.py", "tests/integration/models_networks_test.py"]
NOT_IN_BERTH = {
    # IPv6: berth's networks are IPv4 only
    "test_create_network_ipv6_enabled", "test_create_with_ipv6_address",
    "test_connect_with_ipv6_address",
    # swarm mode
    "test_create_network_attachable", "test_create_network_ingress",
    "test_create_inspect_network_with_scope",
}


def test_docker_py_network_suite(tmp_path, busybox_tar):
    if not (REPO_GIT / "HEAD").exists():
        pytest.skip(f"no docker-py repository at {REPO_GIT} (set DOCKER_PY_REPO)")
    from tests.conftest import _start_berthd

    archive = subprocess.run(["git", "--git-dir", str(REPO_GIT), "archive", "HEAD", "tests",
                              "pytest.ini"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp_path)], input=archive, check=True)
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "paramiko.py").write_text("class Channel:  # only isinstance checks use it\n"
                                       "    pass\n")
    # The suite takes 172.28.0.0/16 for itself: the default bridge must not land there (it
    # takes the first pool subnet the host does not route, and hosts here route many).
    from berth.network import ipam
    from berth.network.netlink import Netlink

    with Netlink() as nl:
        taken = [ipam.IPv4Network(f"{a}/{p}", strict=False) for _, a, p in nl.addrs()]
    bip = ipam.pick_subnet(taken, pools=[("10.160.0.0/11", 24)])
    d = _start_berthd(("--cgroup-parent", CGROUP_PARENT, "--bip", str(bip)))
    try:
        d.berth("import", str(busybox_tar), "busybox:latest")
        for tag in ("alpine:3.10", "alpine:latest"):
            d.berth("tag", "busybox:latest", tag)
        report = tmp_path / "report.xml"
        env = dict(os.environ, DOCKER_HOST=d.host, PYTHONPATH=str(stubs))
        env.pop("DOCKER_TLS_VERIFY", None)
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            f"--junitxml={report}", *FILES], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=600)
        cases = ET.parse(report).getroot().iter("testcase")
        failed, passed = set(), set()
        for case in cases:
            bad = case.find("failure") is not None or case.find("error") is not None
            (failed if bad else passed).add(case.get("name"))
        assert failed <= NOT_IN_BERTH, f"{sorted(failed - NOT_IN_BERTH)}\n{r.stdout[-6000:]}"
        assert len(passed) >= 27, r.stdout[-6000:]
        clean(d)
        assert State(d).wait_no_leaks() == []
    finally:
        d.stop()
