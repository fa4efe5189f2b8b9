"""Foreground `run` / `exec` with process.terminal and no --console-socket: the runtime makes
the container's pty itself and proxies it to its own terminal, as runc does.

The test plays the user: it gives the runtime a pty of its own as controlling terminal (so
the kernel delivers SIGWINCH when the test resizes it), types into it and reads the screen.
The same session runs under berth-runtime and under runc and must look the same.
"""

import fcntl
import os
import select
import subprocess
import termios
import time

import pytest

pytestmark = [pytest.mark.root, pytest.mark.interop]


class Terminal:
    """A pty whose slave is the runtime's stdin/stdout/stderr and controlling terminal."""

    def __init__(self, cmd: list[str], rows: int = 24, cols: int = 80, cwd=None) -> None:
        self.master, slave = os.openpty()
        termios.tcsetwinsize(slave, (rows, cols))
        self.saved = termios.tcgetattr(slave)

        def ctty():
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
                                     start_new_session=True, preexec_fn=ctty)
        self.slave = slave
        self.screen = b""
        self.cooked_race = False

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def wait_for(self, marker: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while marker.encode() not in self.seen():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{marker!r} not seen; screen: {self.screen!r}")
            r, _, _ = select.select([self.master], [], [], left)
            if r:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"{marker!r} not seen before EOF: {self.screen!r}")
                self.screen += chunk
        return self.screen.decode(errors="replace")

    def seen(self) -> bytes:
        """The screen; with ``cooked_race`` set, output the terminal's own ONLCR doubled
        (\r\r\n: written before the runtime made our terminal raw) is read as once."""
        return self.screen.replace(b"\r\r\n", b"\r\n") if self.cooked_race else self.screen

    def resize(self, rows: int, cols: int) -> None:
        termios.tcsetwinsize(self.master, (rows, cols))  # the kernel sends SIGWINCH

    def finish(self, timeout: float = 20) -> int:
        code = self.proc.wait(timeout)
        # read what is left, then the terminal's state as the runtime left it
        while select.select([self.master], [], [], 0.05)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.screen += chunk
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


SESSION = [
    # (typed, marker to wait for: output, then the next prompt)
    ("tty; echo t-done\r", "t-done\r\n# "),
    ("stty size; echo s1-done\r", "s1-done\r\n# "),
    (None, None),  # resize here
    ("stty size; echo s2-done\r", "s2-done\r\n# "),
    ("read x; echo got=$x\r", None),
    ("hello\r", "got=hello\r\n# "),
    ("exit 7\r", None),
]


def normalise(screen: str) -> str:
    """busybox's line editor asks the terminal where the cursor is (ESC [ 6 n) when no input
    is pending as it prints a prompt, and redraws its prompt (CR, prompt, ESC [ J) on each
    SIGWINCH: whether either shows, and where, is timing (the moment the window size is set
    relative to the shell's start), under runc as under berth."""
    return screen.replace("\x1b[6n", "").replace("\r# \x1b[J", "")


def session(cmd: list[str], cwd=None, cooked_race: bool = False) -> tuple[int, str, bool]:
    """``cooked_race``: runc's `exec -t` may copy the shell's first output before it has made
    our terminal raw (seen under load); berth-runtime makes it raw before the process runs,
    so its session is read as it is."""
    t = Terminal(cmd, 30, 100, cwd=cwd)
    t.cooked_race = cooked_race
    try:
        t.wait_for("# ")  # busybox sh's root prompt: the shell is up on the container's pty
        for typed, marker in SESSION:
            if typed is None:
                t.resize(40, 132)
                time.sleep(0.2)
                continue
            t.type(typed)
            if marker:
                t.wait_for(marker)
        code = t.finish()
        restored = termios.tcgetattr(t.slave) == t.saved
        return code, normalise(t.seen().decode(errors="replace")), restored
    finally:
        t.close()


def _terminal_bundle(make_bundle, name):
    b = make_bundle(name, ["sh"])
    b.cfg["process"]["terminal"] = True
    b.cfg["process"]["env"].append("PS1=# ")
    return b.write()


def test_foreground_run_with_its_own_terminal_like_runc(runtimes, make_bundle):
    out = {}
    for name, rt in runtimes.items():
        b = _terminal_bundle(make_bundle, f"tty-{name}")
        cid = rt.new_id("tty")
        out[name] = session([*rt.cmd, "--root", str(rt.root), "run", cid], cwd=b.path)
    for name, (code, screen, restored) in out.items():
        assert code == 7, (name, screen)
        assert "/dev/pts/0" in screen, (name, screen)  # the container's own pty
        assert "30 100" in screen and "40 132" in screen, (name, screen)  # resized
        assert "got=hello" in screen, (name, screen)
        assert restored, f"{name} left the terminal in raw mode"
    # the same session on the screen, line for line
    assert out["berth"][1] == out["runc"][1], (out["berth"][1], out["runc"][1])


def test_foreground_exec_tty_without_console_socket(runtimes, make_bundle):
    out = {}
    for name, rt in runtimes.items():
        b = make_bundle(f"ex-{name}", ["sleep", "60"]).write()
        cid = rt.new_id("ex")
        rt("run", "-d", "--bundle", str(b.path), cid, check=True)
        out[name] = session([*rt.cmd, "--root", str(rt.root), "exec", "-t", "--env",
                             "PS1=# ", cid, "sh"], cooked_race=name == "runc")
    for name, (code, screen, restored) in out.items():
        assert code == 7, (name, screen)
        assert "/dev/pts/0" in screen and "got=hello" in screen, (name, screen)
        assert "40 132" in screen, (name, screen)
        assert restored
    assert out["berth"][1] == out["runc"][1], (out["berth"][1], out["runc"][1])


def test_ctrl_c_reaches_the_container_not_the_runtime(berth, make_bundle):
    b = _terminal_bundle(make_bundle, "cc")
    cid = berth.new_id("cc")
    t = Terminal([*berth.cmd, "--root", str(berth.root), "run", cid], cwd=b.path)
    try:
        t.wait_for("# ")
        t.type("sleep 30\r")
        time.sleep(0.5)
        t.type("\x03")  # ^C, in raw mode a byte for the container's line discipline
        t.wait_for("^C")
        t.type("echo after=$?\r")
        t.wait_for("after=130")  # the sleep died of SIGINT; the runtime is still here
        t.type("exit\r")
        assert t.finish() == 0  # the runtime was not interrupted: the shell's status
    finally:
        t.close()


def test_detached_terminal_without_console_socket_is_refused(berth, make_bundle):
    b = _terminal_bundle(make_bundle, "dt")
    cid = berth.new_id("dt")
    r = berth("run", "-d", "--bundle", str(b.path), cid)
    assert r.returncode == 1
    assert b"--console-socket is required" in r.stderr
    assert not (berth.root / cid).exists()
