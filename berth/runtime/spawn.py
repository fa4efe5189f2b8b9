"""Starting the container's init: a fresh exec of the interpreter, and the parent's end of the
two sync pipes (the protocol is drawn in berth.runtime.init).

Kept apart and import-light (os, sys) so that the command can start the init first thing,
letting its interpreter boot on the other core while the command reads and checks the config
and makes the state and cgroups.
"""

import os
import sys

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_INIT_CODE = (f"import sys;sys.path.insert(0,{_REPO!r});"
              "from berth.runtime.init import main;main()")


class Init:
    """A freshly exec'd init (stage 0) and our end of its sync pipes."""

    def __init__(self, console_fd: int = -1) -> None:
        p2c_r, self.p2c_w = os.pipe()
        self.c2p_r, c2p_w = os.pipe()
        os.set_inheritable(p2c_r, True)
        os.set_inheritable(c2p_w, True)
        if console_fd >= 0:
            os.set_inheritable(console_fd, True)
        try:
            # -I -S: no site, no user environment; the init needs the stdlib and berth only.
            self.pid = os.posix_spawn(sys.executable, [
                sys.executable, "-I", "-S", "-c", _INIT_CODE, str(p2c_r), str(c2p_w),
                str(console_fd)], {})
        finally:
            os.close(p2c_r)
            os.close(c2p_w)
            if console_fd >= 0:
                os.close(console_fd)
        self.buf = b""
        self.reaped = False
        self.closed = False
        self.tty_peer = -1  # our end of the init's console socketpair (berth.runtime.tty)

    def send(self, tag: str, payload: str = "") -> None:
        data = (tag + (" " + payload if payload else "") + "\n").encode()
        try:
            while data:
                data = data[os.write(self.p2c_w, data):]
        except BrokenPipeError:
            pass  # the init died: its ERROR (or EOF) is read next

    def recv(self) -> tuple[str, str]:
        while b"\n" not in self.buf:
            chunk = os.read(self.c2p_r, 65536)
            if not chunk:
                return "EOF", ""
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        tag, _, payload = line.decode().partition(" ")
        return tag, payload

    def reap(self) -> int:
        if self.reaped:
            return 0
        while True:
            try:
                _, status = os.waitpid(self.pid, 0)
                break
            except InterruptedError:
                continue
        self.reaped = True
        return os.waitstatus_to_exitcode(status)

    def abort(self) -> None:
        """End an init that has not been told to go on (it exits on EOF; we make sure)."""
        self.close()
        if not self.reaped:
            try:
                os.kill(self.pid, 9)
            except ProcessLookupError:
                pass
            self.reap()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for fd in (self.p2c_w, self.c2p_r, self.tty_peer):
            if fd < 0:
                continue
            try:
                os.close(fd)
            except OSError:
                pass
