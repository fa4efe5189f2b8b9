"""docker-py's own integration tests for containers (tests/integration/api_container_test.py and
models_containers_test.py of a fetched docker/docker-py) against a private berthd.

Offline, as tests/network/test_docker_py_suite.py: the suite's image (alpine:3.10, alpine) is
our busybox under those names, and a stand-in paramiko module serves the helpers' imports. The
client talks TCP on loopback: docker-py builds its websocket URL from a tcp:// base URL only.
The repository comes from DOCKER_PY_REPO (a git dir), by default the mirror fetched for this
project; without it the test is skipped.

What must fail, and for that reason only: a subpath volume mount (API 1.45; berth is 1.41)
and the pull of an image that does not exist (it asks Docker Hub, unreachable here).
"""

import os
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from .conftest import CGROUP_PARENT, leftovers

pytestmark = [pytest.mark.root, pytest.mark.interop]

REPO_GIT = Path(os.environ.get("DOCKER_PY_REPO", "/work/.mirror/docker+docker-py/repo"))
FILES = ["tests/integration/api_container_test.py",
         "tests/integration/models_containers_test.py"]
NOT_IN_BERTH = {
    "test_create_with_subpath_volume_mount",  # API 1.45
    "test_run_with_image_that_does_not_exist",  # pulls from Docker Hub
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_docker_py_container_suite(tmp_path, busybox_tar):
    if not (REPO_GIT / "HEAD").exists():
        pytest.skip(f"no docker-py repository at {REPO_GIT} (set DOCKER_PY_REPO)")
    from berth.network import ipam
    from berth.network.netlink import Netlink
    from tests.conftest import _start_berthd

    archive = subprocess.run(["git", "--git-dir", str(REPO_GIT), "archive", "HEAD", "tests",
                              "pytest.ini"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp_path)], input=archive, check=True)
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "paramiko.py").write_text("class Channel:  # only isinstance checks use it\n"
                                       "    pass\n")
    with Netlink() as nl:  # a default bridge on a subnet the host does not route
        taken = [ipam.IPv4Network(f"{a}/{p}", strict=False) for _, a, p in nl.addrs()]
    bip = ipam.pick_subnet(taken, pools=[("10.160.0.0/11", 24)])
    tcp = f"tcp://127.0.0.1:{_free_port()}"
    d = _start_berthd(("--cgroup-parent", CGROUP_PARENT, "--bip", str(bip), "-H", tcp))
    try:
        d.berth("import", str(busybox_tar), "busybox:latest")
        for tag in ("alpine:3.10", "alpine:latest"):
            d.berth("tag", "busybox:latest", tag)
        report = tmp_path / "report.xml"
        env = dict(os.environ, DOCKER_HOST=tcp, PYTHONPATH=str(stubs))
        env.pop("DOCKER_TLS_VERIFY", None)
        env.pop("DOCKER_CERT_PATH", None)
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "--timeout", "120", f"--junitxml={report}", *FILES], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=900)
        failed, passed = set(), 0
        for case in ET.parse(report).getroot().iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failed.add(case.get("name"))
            elif case.find("skipped") is None:
                passed += 1
        assert failed <= NOT_IN_BERTH, f"{sorted(failed - NOT_IN_BERTH)}\n{r.stdout[-6000:]}"
        assert passed >= 110, f"{passed} passed\n{r.stdout[-3000:]}"
        ids = d.berth("ps", "-aq", check=False).stdout.split()
        if ids:
            d.berth("rm", "-f", "-v", *ids, check=False)
        d.berth("volume", "prune", "-f", "-a", check=False)
        deadline = time.monotonic() + 10
        while leftovers(d) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert leftovers(d) == []
    finally:
        d.stop()
