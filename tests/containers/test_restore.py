"""Live restore and start-up repair: berthd killed -9 while containers run, a shim killed -9,
leftovers of a crash."""

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import Berthd

from .conftest import CGROUP_PARENT, leftovers

pytestmark = pytest.mark.root


@pytest.fixture
def base(busybox_tar):
    """A daemon directory that outlives one berthd (the test starts and kills them)."""
    b = Path(tempfile.mkdtemp(prefix="berth-r-"))
    daemons = []

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
        ids = d.berth("ps", "-aq", check=False).stdout.split()
        if ids:
            d.berth("rm", "-f", *ids, check=False)
        for x in daemons:
            if x is not d and x.proc.poll() is None:
                x.proc.kill()
                x.proc.wait()
        d.stop()
        shutil.rmtree(b, ignore_errors=True)


def _dies(pid: int, timeout: float = 10.0) -> bool:
    """True once ``pid`` is gone or a zombie (killed, waiting for whoever reaps orphans)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            return True
        if stat.rpartition(")")[2].split()[0] in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def kill9(d: Berthd) -> None:
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    d.log.close()


def test_containers_survive_berthd_kill9(base):
    start, d1 = base
    d1.berth("run", "-d", "--name", "survivor", "--network", "none", "busybox", "sh", "-c",
             "echo before; trap 'echo term; exit 0' TERM; while true; do sleep 0.1; done")
    d1.berth("run", "-d", "--name", "ender", "--network", "none", "busybox", "sh", "-c",
             "sleep 2; exit 5")
    d1.berth("run", "-d", "--rm", "--name", "rmender", "--network", "none", "busybox", "sh",
             "-c", "sleep 2")
    pid = int(d1.berth("inspect", "-f", "{{.State.Pid}}", "survivor").stdout)
    kill9(d1)
    os.kill(pid, 0)  # still running with berthd gone
    time.sleep(2.5)  # "ender" exits while no berthd runs
    d2 = start()
    assert d2.berth("inspect", "-f", "{{.State.Status}} {{.State.Pid}}", "survivor").stdout \
        == f"running {pid}\n"
    assert d2.berth("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "ender").stdout \
        == "exited 5\n"
    deadline = time.monotonic() + 5  # --rm: removed once the new berthd saw it had exited
    while "rmender" in d2.berth("ps", "-a", "--format", "{{.Names}}").stdout and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    assert "rmender" not in d2.berth("ps", "-a", "--format", "{{.Names}}").stdout
    assert d2.berth("logs", "survivor").stdout == "before\n"
    assert d2.berth("exec", "survivor", "echo", "exec works").stdout == "exec works\n"
    waiter = subprocess.Popen(["docker", "-H", d2.host, "wait", "survivor"],
                              stdout=subprocess.PIPE, text=True)
    d2.berth("stop", "survivor")
    assert waiter.communicate(timeout=20)[0] == "0\n"
    assert d2.berth("logs", "survivor").stdout == "before\nterm\n"


def test_attach_after_restore(base):
    start, d1 = base
    d1.berth("run", "-d", "-i", "--name", "cat1", "--network", "none", "busybox", "cat")
    kill9(d1)
    d2 = start()
    p = subprocess.Popen(["docker", "-H", d2.host, "attach", "cat1"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    p.stdin.write("echoed\n")
    p.stdin.flush()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "echoed" not in d2.berth("logs", "cat1").stdout:
        time.sleep(0.1)
    assert d2.berth("logs", "cat1").stdout == "echoed\n"
    p.kill()
    p.wait()


def test_shim_killed_is_reported_exited(base):
    _start, d = base
    d.berth("run", "-d", "--name", "orphan", "--network", "none", "busybox", "sleep", "300")
    cid = d.berth("inspect", "-f", "{{.Id}}", "orphan").stdout.strip()
    shim_pid = int((d.run / "c" / cid[:12] / "shim.pid").read_text())
    init_pid = int(d.berth("inspect", "-f", "{{.State.Pid}}", "orphan").stdout)
    os.kill(shim_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    st = ""
    while time.monotonic() < deadline:
        st = d.berth("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "orphan").stdout
        if st.startswith("exited"):
            break
        time.sleep(0.1)
    assert st == "exited 137\n"
    assert _dies(init_pid)  # what the shim left was killed
    d.berth("rm", "orphan")
    assert not leftovers(d)


def test_startup_repairs_a_crash(base):
    start, d1 = base
    cid = d1.berth("run", "-d", "--name", "victim", "--network", "none", "busybox", "sleep",
                   "300").stdout.strip()
    shim_pid = int((d1.run / "c" / cid[:12] / "shim.pid").read_text())
    init_pid = int(d1.berth("inspect", "-f", "{{.State.Pid}}", "victim").stdout)
    kill9(d1)
    # A crash of the whole host, as far as berth can tell: shim and container gone ...
    os.kill(shim_pid, signal.SIGKILL)
    os.kill(init_pid, signal.SIGKILL)
    time.sleep(0.3)
    # ... and a run dir and state dir of a container berthd never recorded.
    stray = d1.run / "c" / "0123456789ab"
    (stray / "rootfs").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "stray", str(stray / "rootfs")], check=True)
    (d1.root / "containers" / ("f" * 64)).mkdir()
    d2 = start()
    assert not stray.exists()
    assert not (d1.root / "containers" / ("f" * 64)).exists()
    assert d2.berth("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "victim").stdout \
        == "exited 137\n"
    assert not leftovers(d2)
    assert d2.berth("start", "victim").stdout == "victim\n"  # and it can run again
    d2.berth("rm", "-f", "victim")


def test_restart_policies_across_daemon_restarts(base):
    start, d1 = base
    d1.berth("run", "-d", "--name", "keep", "--restart", "always", "--network", "none",
             "busybox", "sleep", "300")
    d1.berth("run", "-d", "--name", "halted", "--restart", "unless-stopped", "--network",
             "none", "busybox", "sleep", "300")
    d1.berth("stop", "-t", "0", "halted")
    pids = {n: int((d1.run / "c" / d1.berth("inspect", "-f", "{{.Id}}", n).stdout[:12] /
                    "shim.pid").read_text()) for n in ("keep",)}
    init = int(d1.berth("inspect", "-f", "{{.State.Pid}}", "keep").stdout)
    kill9(d1)
    # as after a reboot: the shim and its container are gone
    os.kill(pids["keep"], signal.SIGKILL)
    os.kill(init, signal.SIGKILL)
    assert _dies(init)
    d2 = start()
    assert d2.berth("inspect", "-f", "{{.State.Status}}", "keep").stdout == "running\n"
    assert d2.berth("inspect", "-f", "{{.State.Status}}", "halted").stdout == "exited\n"
