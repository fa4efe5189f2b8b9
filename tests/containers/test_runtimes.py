"""berthd drives any OCI runtime with runc's command line: the same scenarios with Debian's
runc and with berth-runtime (the default), chosen per container with --runtime."""

import time

import pytest

from .conftest import run

pytestmark = [pytest.mark.root, pytest.mark.interop]

RUNTIMES = ["berth-runtime", "runc"]


@pytest.fixture(params=RUNTIMES)
def rt(request):
    return request.param


def test_output_exit_stdin_tty(bd, rt):
    assert run(bd, "--runtime", rt, "busybox", "echo", "hi").stdout == "hi\n"
    assert run(bd, "--runtime", rt, "busybox", "sh", "-c", "exit 9", check=False
               ).returncode == 9
    assert run(bd, "--runtime", rt, "-i", "busybox", "cat", input="in\n").stdout == "in\n"
    assert run(bd, "--runtime", rt, "-t", "busybox", "tty", input=b"").stdout.startswith(
        "/dev/pts/")
    r = run(bd, "--runtime", rt, "busybox", "nosuchcmd", check=False)
    assert r.returncode == 127


def test_exec_stop_pause_cp(bd, rt, tmp_path):
    bd.berth("run", "-d", "--name", "c-" + rt, "--runtime", rt, "--network", "none",
             "busybox", "sleep", "300")
    name = "c-" + rt
    assert bd.berth("exec", name, "sh", "-c", "echo $$ > /tmp/p; cat /proc/1/cmdline"
                    ).stdout == "sleep\x00300\x00"
    f = tmp_path / "f"
    f.write_text("copied")
    bd.berth("cp", str(f), f"{name}:/tmp/f")
    assert bd.berth("exec", name, "cat", "/tmp/f").stdout == "copied"
    bd.berth("pause", name)
    bd.berth("unpause", name)
    bd.berth("stop", "-t", "1", name)
    assert bd.berth("inspect", "-f", "{{.State.ExitCode}}", name).stdout == "137\n"


def test_limits_and_security(bd, rt):
    out = run(bd, "--runtime", rt, "-m", "32m", "--pids-limit", "20", "--read-only",
              "busybox", "sh", "-c",
              "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; "
              "grep -E '^(CapEff|Seccomp):' /proc/self/status | cut -f2; "
              "touch /x 2>/dev/null || echo ro").stdout.split()
    assert out == [str(32 << 20), "20", "00000000a80425fb", "2", "ro"]
    bd.berth("run", "--name", "oom-" + rt, "--runtime", rt, "-m", "16m", "--network", "none",
             "busybox", "sh", "-c", "x=$(head -c 40000000 /dev/zero | tr '\\0' a)",
             check=False)
    assert bd.berth("inspect", "-f", "{{.State.OOMKilled}}", "oom-" + rt).stdout == "true\n"


def test_restart_always(bd, rt):
    bd.berth("run", "-d", "--name", "ra-" + rt, "--runtime", rt, "--restart", "always",
             "--network", "none", "busybox", "sh", "-c", "sleep 0.2; exit 3")
    deadline = time.monotonic() + 15
    n = 0
    while time.monotonic() < deadline:
        n = int(bd.berth("inspect", "-f", "{{.RestartCount}}", "ra-" + rt).stdout)
        if n >= 2:
            break
        time.sleep(0.2)
    assert n >= 2
    bd.berth("stop", "-t", "1", "ra-" + rt)
    time.sleep(0.5)
    assert bd.berth("inspect", "-f", "{{.State.Status}}", "ra-" + rt).stdout == "exited\n"
