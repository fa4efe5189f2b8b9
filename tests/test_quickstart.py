"""README's first command: scripts/quickstart.sh sets berth up, starts berthd and runs the main job.

Run as a user would (twice: the second run finds berthd running and keeps it), with BERTH_ROOT,
BERTH_RUN and BERTHD_OPTS keeping its daemon off the system's paths, bridge and nft table.
"""

import os
import secrets
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.root


def _mounts_under(d: Path) -> list[str]:
    return [ln.split()[4] for ln in Path("/proc/self/mountinfo").read_text().splitlines()
            if ln.split()[4].startswith(str(d))]


def test_quickstart_runs_the_main_job_and_again_keeps_the_daemon():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    base = Path(tempfile.mkdtemp(prefix="berth-qs-"))
    sfx = secrets.token_hex(3)
    env = dict(os.environ, BERTH_ROOT=str(base / "root"), BERTH_RUN=str(base / "run"),
               BERTHD_OPTS=f"--bridge berthq{sfx} --nft-table berth_q{sfx} "
                           f"--cgroup-parent berth-qs-{sfx}")
    before = set(os.listdir("/tmp"))
    pid = None
    try:
        r = subprocess.run([str(REPO / "scripts/quickstart.sh")], env=env, capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        out = r.stdout
        # the runtime's part, berthd's image, then `berth run --rm busybox` through the daemon
        assert "hostname:  berth-quickstart" in out
        assert "busybox      latest" in out
        assert "berthd started in the background" in out
        job = out.split("berth run --rm")[-1]
        assert "hostname:     berth-quickstart" in job
        assert "memory limit: 67108864 bytes" in job
        assert "pids limit:   32" in job
        assert "/proc/sys:    read-only" in job
        assert "seccomp:      mode 2" in job
        pid = int((base / "run" / "berthd.pid").read_text())
        os.kill(pid, 0)

        r = subprocess.run([str(REPO / "scripts/quickstart.sh")], env=env, capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "berthd is already running" in r.stdout
        assert int((base / "run" / "berthd.pid").read_text()) == pid
        assert "hostname:     berth-quickstart" in r.stdout.split("berth run --rm")[-1]
        ps = subprocess.run([str(REPO / ".venv/bin/berth"), "-H", f"unix://{base}/run/berth.sock",
                             "ps", "-aq"], capture_output=True, text=True)
        assert ps.returncode == 0 and ps.stdout == ""  # --rm removed the job's container
        # the script's own temporary daemon and files are gone
        assert not {n for n in set(os.listdir("/tmp")) - before if n.startswith("berth-quick")}
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            for _ in range(200):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
        from berth.network.manager import NetworkManager

        if (base / "root" / "network").exists():
            NetworkManager(str(base / "root" / "network"), str(base / "run" / "network"),
                           table=f"berth_q{sfx}", default_bridge=f"berthq{sfx}").teardown()
        for parent in Path("/sys/fs/cgroup").glob(f"*/berth-qs-{sfx}"):
            subprocess.run(["find", str(parent), "-depth", "-type", "d", "-exec", "rmdir", "{}",
                            ";"], check=False)
        left = _mounts_under(base)
        for m in reversed(left):
            subprocess.run(["umount", "-l", m], check=False)
        subprocess.run(["rm", "-rf", str(base)], check=False)
    assert left == [], f"mounts left after berthd stopped: {left}"
