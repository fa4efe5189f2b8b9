"""berthd as a process: one per root, socket permissions, SIGTERM, and real clients on it."""

import json
import os
import signal
import stat
import subprocess
import time

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.root, pytest.mark.interop]


def test_socket_is_0660_root_owned(berthd):
    st = os.stat(berthd.sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert st.st_uid == 0


def test_second_daemon_on_same_root_refuses_naming_holder(berthd):
    other = berthd.base / "other.sock"
    r = subprocess.run([str(REPO / ".venv/bin/berthd"), "--root", str(berthd.root), "--run",
                        str(berthd.base / "run2"), "-H", f"unix://{other}"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert f"held by pid {berthd.proc.pid}" in r.stderr
    assert str(berthd.root) in r.stderr
    assert not other.exists()
    # the first one is unaffected
    assert berthd.docker("version", "--format", "{{.Server.APIVersion}}").stdout.strip() == "1.41"


def test_unknown_group_is_refused(tmp_path):
    r = subprocess.run([str(REPO / ".venv/bin/berthd"), "--root", str(tmp_path / "r"), "--run",
                        str(tmp_path / "run"), "-H", f"unix://{tmp_path}/s.sock",
                        "--group", "no-such-group-xyz"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1 and "group no-such-group-xyz not found" in r.stderr


def test_sigterm_stops_cleanly(berthd):
    berthd.proc.send_signal(signal.SIGTERM)
    assert berthd.proc.wait(15) == 0
    assert not berthd.sock.exists()
    assert not (berthd.run / "berthd.pid").exists()
    log = berthd.log_path.read_text()
    assert "stopping on signal" in log and "berthd stopped" in log


def test_requests_are_logged(berthd):
    berthd.docker("version")
    time.sleep(0.1)
    log = berthd.log_path.read_text()
    assert "GET /_ping 200" in log or "HEAD /_ping 200" in log
    assert "GET /v1.41/version 200" in log


def test_docker_cli_version_and_info(berthd):
    v = json.loads(berthd.docker("version", "--format", "{{json .}}").stdout)
    assert v["Server"]["ApiVersion"] == "1.41"
    assert v["Client"]["ApiVersion"] == "1.41"  # negotiated down from 1.50
    info = json.loads(berthd.docker("info", "--format", "{{json .}}").stdout)
    assert info["DockerRootDir"] == str(berthd.root)
    assert info["OSType"] == "linux"


def test_docker_py_negotiates_and_pings(berthd):
    c = berthd.client()
    assert c.ping() is True
    assert c.api.api_version == "1.41"
    assert c.version()["ApiVersion"] == "1.41"
    assert c.info()["Images"] == 0


def test_berth_cli_host_from_env_and_default_error(berthd):
    env = dict(os.environ, BERTH_HOST=berthd.host)
    r = subprocess.run([str(REPO / ".venv/bin/berth"), "version"], capture_output=True,
                       text=True, env=env, timeout=30)
    assert r.returncode == 0 and "API version:      1.41" in r.stdout
    r = berthd.berth("-H", "unix:///nonexistent/berth.sock", "images", check=False)
    assert r.returncode == 1 and "Cannot connect to the berth daemon" in r.stderr


def test_cli_error_as_docker_prints_it(berthd):
    r = berthd.berth("images", "--bogus", check=False)
    assert r.returncode == 125 and r.stderr.startswith("unknown flag: --bogus")
    r = berthd.berth("nosuchcommand", check=False)
    assert r.returncode == 1 and "'nosuchcommand' is not a berth command" in r.stderr


def test_events_reach_docker_cli(berthd):
    since = time.time()
    c = berthd.client()
    # A daemon event published by the engine is visible to `docker events --since/--until`.
    p = subprocess.Popen(["docker", "-H", berthd.host, "events", "--since", f"{since:.3f}",
                          "--until", f"{since + 3:.3f}", "--format", "{{.Type}} {{.Action}}"],
                         stdout=subprocess.PIPE, text=True)
    out, _ = p.communicate(timeout=30)
    assert p.returncode == 0
    assert c.ping()
    assert out == ""  # nothing happened in that window
