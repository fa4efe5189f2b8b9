"""``berth run`` and the lifecycle through the berth CLI: output, exit codes, the image's
config applied, flags reaching the process, names, logs, stop/kill/wait/rm."""

import json
import time

import pytest

from .conftest import run

pytestmark = pytest.mark.root


def test_echo_and_exit_codes(bd):
    assert run(bd, "busybox", "echo", "hi").stdout == "hi\n"
    assert run(bd, "busybox", "sh", "-c", "exit 3", check=False).returncode == 3
    r = run(bd, "busybox", "nosuchcmd", check=False)
    assert r.returncode == 127
    assert "executable file not found" in r.stderr or "no such file" in r.stderr, r.stderr
    assert bd.berth("ps", "-aq").stdout == ""  # --rm removed even the one that failed


@pytest.mark.parametrize("runtime", ["runc", "berth-runtime"])
@pytest.mark.parametrize("cmd", ["/etc/passwd", "/tmp", "./passwd"])
def test_not_executable_is_126(bd, runtime, cmd):
    # runc (Go's exec.LookPath): a path without an x bit, or a directory, is EACCES
    r = run(bd, "--runtime", runtime, "-w", "/etc", "busybox", cmd, check=False)
    assert r.returncode == 126, r.stderr
    assert f'exec: "{cmd}": permission denied' in r.stderr
    assert "Error waiting" not in r.stderr  # the removal's wait has no error (dockerd's)


def test_not_executable_in_path_is_not_found(bd):
    # a bare name whose only match in PATH lacks the x bit: not found, as runc says
    r = run(bd, "-e", "PATH=/etc", "busybox", "passwd", check=False)
    assert r.returncode == 127, r.stderr
    assert 'exec: "passwd": executable file not found in $PATH' in r.stderr


def test_stdout_and_stderr_are_separate(bd):
    r = run(bd, "busybox", "sh", "-c", "echo out; echo err >&2")
    assert r.stdout == "out\n" and r.stderr == "err\n"


def test_stdin_with_interactive(bd):
    r = run(bd, "-i", "busybox", "sh", "-c", "tr a-z A-Z", input="hello\n")
    assert r.stdout == "HELLO\n"


def test_image_config_and_flags_reach_the_process(bd, tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=1\n")
    out = run(bd, "-e", "A=1", "--env-file", str(env_file), "-w", "/tmp/work", "-u", "1:2",
              "-h", "box", "busybox", "sh", "-c",
              "echo $A $FROM_FILE; pwd; id -u; id -g; hostname; echo $HOSTNAME; echo $PATH"
              ).stdout.split("\n")
    assert out[:7] == ["1 1", "/tmp/work", "1", "2", "box", "box",
                       "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    assert run(bd, "-u", "nobody", "busybox", "id", "-un").stdout == "nobody\n"
    r = run(bd, "-u", "nosuchuser", "busybox", "true", check=False)
    assert r.returncode == 125
    assert "unable to find user nosuchuser" in r.stderr


def test_entrypoint(bd):
    assert run(bd, "--entrypoint", "echo", "busybox", "a", "b").stdout == "a b\n"
    assert run(bd, "--entrypoint", "/bin/sh", "busybox", "-c", "echo via sh").stdout == \
        "via sh\n"


def test_tty_output_is_raw(bd):
    # bytes in: the helper decodes without translating newlines
    r = run(bd, "-t", "busybox", "sh", "-c", "test -t 1 && echo tty; printf 'a\\n'", input=b"")
    assert r.stdout == "tty\r\na\r\n"


def test_detached_logs_stop_rm(bd):
    cid = bd.berth("run", "-d", "--name", "ticker", "--network", "none", "busybox", "sh", "-c",
                   "echo start; echo warn >&2; trap 'echo bye; exit 0' TERM; "
                   "while true; do sleep 0.1; done").stdout.strip()
    assert len(cid) == 64
    deadline = time.monotonic() + 5
    while "start" not in bd.berth("logs", "ticker").stdout and time.monotonic() < deadline:
        time.sleep(0.05)
    logs = bd.berth("logs", "ticker")
    assert logs.stdout == "start\n" and logs.stderr == "warn\n"
    ts = bd.berth("logs", "-t", "--tail", "1", "ticker").stdout + \
        bd.berth("logs", "-t", "--tail", "1", "ticker").stderr
    assert "Z start" in ts or "Z warn" in ts
    ps = bd.berth("ps", "--format", "{{.Names}} {{.Status}} {{.Command}}").stdout
    assert ps.startswith("ticker Up ") and ps.endswith('"sh -c \'echo start; …"\n')  # docker
    assert bd.berth("stop", "ticker").stdout == "ticker\n"
    assert bd.berth("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "ticker").stdout \
        == "exited 0\n"
    assert bd.berth("logs", "--tail", "1", "ticker").stdout == "bye\n"
    assert bd.berth("rm", "ticker").stdout == "ticker\n"
    r = bd.berth("inspect", "ticker", check=False)
    assert r.returncode == 1 and "No such object: ticker" in r.stderr


def test_kill_signal_and_wait(bd):
    # PID 1 of a pid namespace gets only the signals it handles: the trap, here
    bd.berth("run", "-d", "--name", "k1", "--network", "none", "busybox", "sh", "-c",
             "trap 'exit 42' USR1; while true; do sleep 0.1; done")
    assert bd.berth("kill", "-s", "USR1", "k1").stdout == "k1\n"
    assert bd.berth("wait", "k1").stdout == "42\n"
    st = json.loads(bd.berth("inspect", "k1").stdout)[0]["State"]
    assert st["Status"] == "exited" and st["ExitCode"] == 42 and not st["Running"]
    bd.berth("start", "k1")
    bd.berth("kill", "k1")
    assert bd.berth("wait", "k1").stdout == "137\n"
    r = bd.berth("kill", "k1", check=False)
    assert r.returncode == 1 and "is not running" in r.stderr


def test_stop_timeout_kills_after_the_grace_period(bd):
    bd.berth("run", "-d", "--name", "stubborn", "--network", "none", "busybox", "sh", "-c",
             "trap '' TERM; while true; do sleep 0.1; done")
    t = time.monotonic()
    bd.berth("stop", "-t", "1", "stubborn")
    took = time.monotonic() - t
    assert 0.9 < took < 5
    assert bd.berth("inspect", "-f", "{{.State.ExitCode}}", "stubborn").stdout == "137\n"


def test_name_in_use_is_a_conflict_and_changes_nothing(bd):
    bd.berth("create", "--name", "taken", "busybox", "true")
    r = bd.berth("create", "--name", "taken", "busybox", "true", check=False)
    assert r.returncode == 125
    assert 'Conflict. The container name "/taken" is already in use by container' in r.stderr
    assert len(bd.berth("ps", "-aq").stdout.split()) == 1


def test_create_start_attach(bd):
    cid = bd.berth("create", "busybox", "echo", "created").stdout.strip()
    assert bd.berth("inspect", "-f", "{{.State.Status}}", cid).stdout == "created\n"
    assert bd.berth("start", "-a", cid).stdout == "created\n"
    assert bd.berth("start", "-a", cid).stdout == "created\n"  # a second run
    assert bd.berth("inspect", "-f", "{{.State.Status}}", cid).stdout == "exited\n"
    assert bd.berth("logs", cid).stdout == "created\ncreated\n"


def test_rename_pause_restart(bd):
    bd.berth("run", "-d", "--name", "a1", "--network", "none", "busybox", "sleep", "300")
    bd.berth("rename", "a1", "a2")
    assert bd.berth("ps", "--format", "{{.Names}}").stdout == "a2\n"
    bd.berth("pause", "a2")
    assert bd.berth("inspect", "-f", "{{.State.Status}}", "a2").stdout == "paused\n"
    r = bd.berth("rm", "a2", check=False)
    assert r.returncode == 1 and "paused" in r.stderr
    bd.berth("unpause", "a2")
    pid1 = bd.berth("inspect", "-f", "{{.State.Pid}}", "a2").stdout
    bd.berth("restart", "-t", "0", "a2")
    assert bd.berth("inspect", "-f", "{{.State.Status}}", "a2").stdout == "running\n"
    assert bd.berth("inspect", "-f", "{{.State.Pid}}", "a2").stdout != pid1


def test_ps_filters_and_quiet(bd):
    a = bd.berth("create", "--name", "fa", "-l", "tier=web", "busybox", "true").stdout.strip()
    bd.berth("create", "--name", "fb", "busybox", "true")
    assert bd.berth("ps", "-q").stdout == ""
    assert bd.berth("ps", "-aq", "--no-trunc", "--filter", "label=tier=web").stdout == a + "\n"
    assert bd.berth("ps", "-a", "--filter", "name=fb", "--format", "{{.Names}}").stdout == \
        "fb\n"
    assert bd.berth("ps", "-a", "--filter", "status=created", "-q").stdout.count("\n") == 2
    r = bd.berth("ps", "--filter", "bogus=1", check=False)
    assert r.returncode == 1 and "invalid filter 'bogus'" in r.stderr


def _ns(t: str) -> tuple[str, str]:
    """RFC 3339 in UTC as docker writes it (the fraction without trailing zeros), comparable."""
    sec, _, frac = t.rstrip("Z").partition(".")
    return sec, frac.ljust(9, "0")


def test_a_quick_exit_finishes_after_it_started(bd):
    for i in range(5):
        bd.berth("run", "--name", f"qx{i}", "--network", "none", "busybox", "true")
        st = json.loads(bd.berth("inspect", f"qx{i}").stdout)[0]["State"]
        assert _ns(st["StartedAt"]) <= _ns(st["FinishedAt"]), st
        bd.berth("rm", f"qx{i}")


def test_top_and_stats(bd):
    bd.berth("run", "-d", "--name", "tp", "--network", "none", "busybox", "sleep", "300")
    top = bd.berth("top", "tp").stdout.splitlines()
    assert top[0].split()[:2] == ["UID", "PID"] and top[1].endswith("sleep 300")
    st = bd.berth("stats", "--no-stream", "tp").stdout.splitlines()
    assert st[0].split() == ["CONTAINER", "ID", "NAME", "CPU", "%", "MEM", "USAGE", "/",
                             "LIMIT", "MEM", "%", "NET", "I/O", "BLOCK", "I/O", "PIDS"]
    assert st[1].split()[1] == "tp" and st[1].split()[-1] == "1"


def test_auto_name_and_prune(bd):
    bd.berth("create", "busybox", "true")
    name = bd.berth("ps", "-a", "--format", "{{.Names}}").stdout.strip()
    assert "_" in name
    out = bd.berth("container", "prune", "-f").stdout
    assert out.startswith("Deleted Containers:\n") and "Total reclaimed space:" in out
    assert bd.berth("ps", "-aq").stdout == ""


def test_restart_policy_on_failure(bd):
    bd.berth("run", "-d", "--name", "rp", "--network", "none", "--restart", "on-failure:2",
             "busybox", "sh", "-c", "echo run; exit 1")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        st = bd.berth("inspect", "-f", "{{.State.Status}} {{.RestartCount}}", "rp").stdout
        if st == "exited 2\n":
            break
        time.sleep(0.1)
    assert st == "exited 2\n"
    assert bd.berth("logs", "rp").stdout == "run\nrun\nrun\n"


def test_network_host_and_none(bd):
    import os
    import subprocess

    out = bd.berth("run", "--rm", "--network", "host", "busybox", "sh", "-c",
                   "hostname; ls /sys/class/net | sort").stdout.split()
    host_ifs = sorted(os.listdir("/sys/class/net"))
    assert out == [os.uname().nodename, *host_ifs]
    assert run(bd, "busybox", "ls", "/sys/class/net").stdout == "lo\n"
    assert subprocess.run(["true"]).returncode == 0


def test_stop_signal_and_stop_timeout(bd):
    bd.berth("run", "-d", "--name", "sig", "--stop-signal", "USR1", "--stop-timeout", "1",
             "--network", "none", "busybox", "sh", "-c",
             "trap 'exit 11' USR1; trap '' TERM; while true; do sleep 0.1; done")
    assert bd.berth("inspect", "-f", "{{.Config.StopSignal}} {{.Config.StopTimeout}}",
                    "sig").stdout == "USR1 1\n"
    bd.berth("stop", "sig")
    assert bd.berth("inspect", "-f", "{{.State.ExitCode}}", "sig").stdout == "11\n"


def test_logs_since_until_and_exec_detached(bd):
    bd.berth("run", "-d", "--name", "ls1", "--network", "none", "busybox", "sh", "-c",
             "echo early; sleep 1.2; echo late; sleep 300")
    deadline = time.monotonic() + 5
    while "late" not in bd.berth("logs", "ls1").stdout and time.monotonic() < deadline:
        time.sleep(0.1)
    assert bd.berth("logs", "--since", "1s", "ls1").stdout == "late\n"
    assert bd.berth("logs", "--tail", "1", "ls1").stdout == "late\n"
    ts = bd.berth("logs", "-t", "ls1").stdout.splitlines()[1].split()[0]
    assert bd.berth("logs", "--until", ts, "ls1").stdout == "early\nlate\n"
    assert bd.berth("exec", "-d", "ls1", "sh", "-c", "echo bg > /tmp/done").stdout == ""
    deadline = time.monotonic() + 5
    while bd.berth("exec", "ls1", "cat", "/tmp/done", check=False).stdout != "bg\n" and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    assert bd.berth("exec", "ls1", "cat", "/tmp/done").stdout == "bg\n"
    full = bd.berth("ps", "--no-trunc", "--format", "{{.ID}} {{.Command}}").stdout
    assert len(full.split()[0]) == 64 and '"sh -c \'echo early; sleep 1.2; echo late; ' \
        "sleep 300'\"" in full


def test_health_check(bd):
    bd.berth("run", "-d", "--name", "hc", "--network", "none", "--health-cmd",
             "test -f /tmp/ok", "--health-interval", "200ms", "--health-retries", "2",
             "busybox", "sleep", "300")

    def status():
        return bd.berth("inspect", "-f", "{{.State.Health.Status}}", "hc").stdout.strip()

    def wait_for(want):
        deadline = time.monotonic() + 10
        while status() != want and time.monotonic() < deadline:
            time.sleep(0.1)
        return status()

    assert wait_for("unhealthy") == "unhealthy"
    bd.berth("exec", "hc", "touch", "/tmp/ok")
    assert wait_for("healthy") == "healthy"
    assert bd.berth("ps", "--format", "{{.Status}}").stdout.endswith("(healthy)\n")
    assert bd.berth("ps", "-q", "--filter", "health=healthy").stdout.strip()
    h = json.loads(bd.berth("inspect", "-f", "{{json .State.Health}}", "hc").stdout)
    assert h["FailingStreak"] == 0 and h["Log"][-1]["ExitCode"] == 0
    assert bd.docker("inspect", "-f", "{{.State.Health.Status}}", "hc").stdout == "healthy\n"
