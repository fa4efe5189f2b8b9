"""The real docker CLI 28 against berthd, side by side with the real dockerd: the same
commands give the same output and the same exit codes."""

import os
import pty
import select
import time

import pytest

pytestmark = [pytest.mark.root, pytest.mark.interop]


def both(bd, dockerd, *args, **kw):
    """(berthd's result, dockerd's result) of ``docker ARGS``."""
    return bd.docker(*args, check=False, **kw), dockerd.docker(*args, check=False, text=True,
                                                                **kw)


def test_run_rm_echo_same_as_dockerd(bd, dockerd):
    b, d = both(bd, dockerd, "run", "--rm", "--network", "none", "busybox", "echo", "hi")
    assert (b.returncode, b.stdout, b.stderr) == (d.returncode, d.stdout, d.stderr) == \
        (0, "hi\n", "")


@pytest.mark.parametrize("cmd,code", [
    (["sh", "-c", "exit 7"], 7),
    (["nosuchcmd"], 127),
    (["sh", "-c", "echo out; echo err >&2"], 0),
])
def test_exit_codes_and_streams_same_as_dockerd(bd, dockerd, cmd, code):
    b, d = both(bd, dockerd, "run", "--rm", "--network", "none", "busybox", *cmd)
    assert b.returncode == d.returncode == code
    assert b.stdout == d.stdout
    if code != 127:
        assert b.stderr == d.stderr


def test_bad_flags_same_as_dockerd(bd, dockerd):
    for args in (["-m", "1x"], ["--cpus", "abc"], ["--ulimit", "nofile=10:5"]):
        b, d = both(bd, dockerd, "run", "--rm", *args, "busybox", "true")
        assert b.returncode == d.returncode == 125
        assert b.stderr == d.stderr
    b, d = both(bd, dockerd, "run", "--rm", "-m", "1k", "busybox", "true")
    assert b.returncode == d.returncode == 125
    assert "Minimum memory limit allowed is 6MB" in b.stderr
    b, d = both(bd, dockerd, "run", "--rm", "--cpus", "-1", "busybox", "true")
    assert b.returncode == d.returncode == 125
    assert b.stderr == d.stderr  # "Range of CPUs is from 0.01 to 2.00, ..."


def test_detached_exec_logs_cp_stats_wait_rm(bd, tmp_path):
    cid = bd.docker("run", "-d", "--name", "web", "--network", "none", "busybox", "sh", "-c",
                    "echo ready; while true; do sleep 0.1; done").stdout.strip()
    assert len(cid) == 64
    assert bd.docker("exec", "web", "sh", "-c", "echo in $(hostname)").stdout == \
        f"in {cid[:12]}\n"
    assert bd.docker("exec", "-e", "X=1", "-w", "/tmp", "-u", "nobody", "web", "sh", "-c",
                     "echo $X $(pwd) $(id -un)").stdout == "1 /tmp nobody\n"
    r = bd.docker("exec", "web", "sh", "-c", "exit 5", check=False)
    assert r.returncode == 5
    # cp both ways
    src = tmp_path / "in.txt"
    src.write_text("from the host\n")
    bd.docker("cp", str(src), "web:/tmp/")
    assert bd.docker("exec", "web", "cat", "/tmp/in.txt").stdout == "from the host\n"
    d = tmp_path / "dir"
    d.mkdir()
    (d / "a").write_text("A")
    bd.docker("cp", str(d), "web:/tmp/copied")
    assert bd.docker("exec", "web", "cat", "/tmp/copied/a").stdout == "A"
    bd.docker("exec", "web", "sh", "-c", "mkdir -p /data/sub && echo deep > /data/sub/f")
    out = tmp_path / "out"
    bd.docker("cp", "web:/data", str(out))
    assert (out / "sub" / "f").read_text() == "deep\n"
    bd.docker("cp", "web:/etc/hostname", str(tmp_path / "hn"))
    assert (tmp_path / "hn").read_text() == cid[:12] + "\n"
    r = bd.docker("cp", "web:/nonexistent", str(tmp_path), check=False)
    assert r.returncode == 1 and "Could not find the file /nonexistent" in r.stderr
    # logs, stats
    assert bd.docker("logs", "web").stdout.startswith("ready\n")
    stats = bd.docker("stats", "--no-stream", "web").stdout.splitlines()
    assert stats[0].split()[:3] == ["CONTAINER", "ID", "NAME"]
    row = stats[1].split()
    assert row[0] == cid[:12] and row[1] == "web" and row[2].endswith("%")
    assert row[3].endswith("iB") and row[-1].isdigit()
    # rm -f of a running container; wait on another
    bd.docker("run", "-d", "--name", "short", "--network", "none", "busybox", "sh", "-c",
              "sleep 0.3; exit 9")
    assert bd.docker("wait", "short").stdout == "9\n"
    assert bd.docker("rm", "-f", "web", "short").stdout == "web\nshort\n"
    assert bd.docker("ps", "-aq").stdout == ""


def test_logs_follow_sees_new_lines_and_ends_with_the_container(bd):
    bd.docker("run", "-d", "--name", "lf", "--network", "none", "busybox", "sh", "-c",
              "for i in 1 2 3 4 5; do echo line $i; sleep 0.2; done")
    t = time.monotonic()
    r = bd.docker("logs", "-f", "lf")
    assert r.stdout == "".join(f"line {i}\n" for i in range(1, 6))
    assert time.monotonic() - t < 10


def _pty_run(argv, script: bytes, timeout: float = 15.0) -> tuple[bytes, int]:
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(argv[0], argv)
    out = b""
    sent = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if fd in r:
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            out += data
        if not sent and (b"# " in out or time.monotonic() > deadline - timeout + 3):
            os.write(fd, script)
            sent = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return out, os.waitstatus_to_exitcode(status)


def test_exec_it_through_a_pty(bd):
    bd.docker("run", "-d", "--name", "sh1", "--network", "none", "busybox", "sleep", "300")
    out, code = _pty_run(["docker", "-H", bd.host, "exec", "-it", "sh1", "sh"],
                         b"stty size; tty; echo $((6*7)); exit 4\r")
    assert code == 4, out
    assert b"42\r\n" in out and b"/dev/pts/" in out
    # the size the terminal has (pty.fork gives the child the default 24x80 of the test's)
    assert b"stty size" in out


def test_run_it_through_a_pty(bd):
    out, code = _pty_run(["docker", "-H", bd.host, "run", "-it", "--rm", "--network", "none",
                          "busybox", "sh"], b"echo $((2+3)); exit 0\r")
    assert code == 0, out
    assert b"5\r\n" in out
    assert bd.docker("ps", "-aq").stdout == ""


def test_inspect_shape_like_dockerd(bd, dockerd):
    bd.docker("create", "--name", "shape", "-e", "A=1", "-l", "x=y", "busybox", "sleep", "1")
    dockerd.docker("create", "--name", "shape", "-e", "A=1", "-l", "x=y", "busybox", "sleep",
                   "1")
    try:
        fmt = ("{{.Name}} {{.Path}} {{json .Args}} {{.State.Status}} {{json .Config.Env}} "
               "{{json .Config.Labels}} {{json .Config.Cmd}} {{.HostConfig.NetworkMode}} "
               "{{json .HostConfig.RestartPolicy}} {{.RestartCount}} {{.Driver}} "
               "{{json .HostConfig.LogConfig}}")
        b = bd.docker("inspect", "-f", fmt, "shape").stdout
        d = dockerd.docker("inspect", "-f", fmt, "shape", text=True).stdout
        assert b == d
        keys = "{{range $k, $v := .}}{{$k}} {{end}}"
        assert set(bd.docker("inspect", "-f", keys, "shape").stdout.split()) >= \
            set(dockerd.docker("inspect", "-f", keys, "shape", text=True).stdout.split()) - \
            {"ImageManifestDescriptor"}
    finally:
        dockerd.docker("rm", "-f", "shape", check=False)
