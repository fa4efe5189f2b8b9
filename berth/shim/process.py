"""One supervised process of a container — its init (id "") or an exec — and its stdio.

A process has either pipes (stdin optional, stdout, stderr) or a pty master received from the
runtime over the console socket. Its output goes, chunk by chunk as read, to the json-file log
(the init only, as docker logs only the container's own output) and to every attached client as
STDOUT/STDERR frames. When an attacher falls more than HIGH_WATER behind, the process's output is
no longer read until all are below LOW_WATER: the container blocks on its pipe, as it does under
dockerd, but the shim's loop never does.

A process is *done* when it has been reaped and its output has reached EOF (or DRAIN_TIMEOUT has
passed since the reap: moby waits two seconds for the streams, too; a daemonized grandchild may
hold the pipe forever). Only then is its exit reported, so an exit event always follows the
last byte of output.
"""

import os
import time

from . import proto

__all__ = ["DRAIN_TIMEOUT", "HIGH_WATER", "LOW_WATER", "Proc"]

READ_SIZE = 65536
HIGH_WATER = 1 << 20
LOW_WATER = 256 << 10
STDIN_HIGH = 1 << 20
DRAIN_TIMEOUT = 2.0

EPOLLIN = 0x001
EPOLLOUT = 0x004
EPOLLERR = 0x008
EPOLLHUP = 0x010

_STREAM_NAMES = {proto.STDOUT: "stdout", proto.STDERR: "stderr"}


class Proc:
    __slots__ = ("_drain_timer", "attachers", "done", "exit_code", "exited_at",
                 "id", "log", "loop", "master", "outs", "paused", "pid", "reaped", "shim",
                 "signal", "started_at", "stdin_buf", "stdin_closing", "stdin_fd",
                 "stdin_once", "tty", "waiters")

    def __init__(self, shim, xid: str, tty: bool, stdin_once: bool, stdin: bool) -> None:
        self.shim = shim
        self.loop = shim.loop
        self.id = xid
        self.tty = tty
        self.stdin_once = stdin_once
        self.pid = 0
        self.stdin_fd = -2 if stdin and tty else -1  # -2: the pty master, once it is here
        self.stdin_buf = bytearray()
        self.stdin_closing = False
        self.master = -1
        self.outs: dict[int, int] = {}
        self.log = None
        self.attachers: list = []
        self.waiters: list = []
        self.paused = False
        self.reaped = False
        self.done = False
        self.exit_code: int | None = None
        self.signal = 0
        self.started_at = 0
        self.exited_at = 0
        self._drain_timer = None

    # -- set-up ---------------------------------------------------------------------------------

    def adopt(self, pid: int, roles: list[str], fds: list[int]) -> None:
        """The runtime created the process (in a worker, berth.shim.work) with these fds:
        start pumping its output."""
        self.pid = pid
        for role, fd in zip(roles, fds, strict=True):
            os.set_blocking(fd, False)
            if role == "master":
                self.master = fd
                self.outs[fd] = proto.STDOUT
                if self.stdin_fd == -2:
                    self.stdin_fd = fd
            elif role == "stdin":
                self.stdin_fd = fd
            else:
                self.outs[fd] = proto.STDOUT if role == "stdout" else proto.STDERR
        if self.stdin_fd == -2:
            self.stdin_fd = -1
        self._rearm()

    # -- epoll registration ---------------------------------------------------------------

    def _rearm(self) -> None:
        if self.done:
            return
        for fd in self.outs:
            mask = 0 if self.paused else EPOLLIN
            if fd == self.stdin_fd and self.stdin_buf:
                mask |= EPOLLOUT
            self._set(fd, mask, self._on_out)
        fd = self.stdin_fd
        if fd >= 0 and fd not in self.outs:
            self._set(fd, EPOLLOUT if self.stdin_buf else 0, self._on_stdin)

    def _set(self, fd: int, mask: int, cb) -> None:
        loop = self.loop
        if not mask:
            loop.unwatch(fd)
        elif loop.watching(fd):
            loop.modify(fd, mask)
        else:
            loop.watch(fd, mask, lambda ev, fd=fd: cb(fd, ev))

    # -- output -------------------------------------------------------------------------------

    def _on_out(self, fd: int, ev: int) -> None:
        if ev & EPOLLOUT:
            self._flush_stdin()
            if fd not in self.outs:
                return
        if not ev & (EPOLLIN | EPOLLHUP | EPOLLERR):
            return
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:  # EIO: a pty master after the last slave fd closed
            data = b""
        if data:
            self._output(self.outs[fd], data)
        else:
            self._eof(fd)

    def _output(self, kind: int, data: bytes) -> None:
        if self.log is not None:
            self.log.write(_STREAM_NAMES[kind], data)
        if self.attachers:
            fr = proto.header(kind, len(data)) + data
            high = False
            for c in self.attachers:
                if kind in c.want:
                    c.send(fr)
                    high = high or len(c.out) > HIGH_WATER
            if high and not self.paused:
                self.paused = True
                self._rearm()

    def drained(self) -> None:
        """An attacher's buffer fell: resume reading once every attacher is low enough."""
        if self.paused and all(len(c.out) <= LOW_WATER for c in self.attachers):
            self.paused = False
            self._rearm()

    def _eof(self, fd: int) -> None:
        self._close_out(fd)
        if not self.outs and self.reaped:
            self.finish()

    def _close_out(self, fd: int) -> None:
        kind = self.outs.pop(fd)
        self.loop.unwatch(fd)
        if fd == self.stdin_fd:
            self.stdin_fd = -1
            self.stdin_buf.clear()
        if fd == self.master:
            self.master = -1
        os.close(fd)
        if self.log is not None:
            self.log.end(_STREAM_NAMES[kind])

    # -- stdin --------------------------------------------------------------------------------

    def write_stdin(self, data: bytes) -> None:
        if self.stdin_fd < 0 or self.stdin_closing:
            return
        self.stdin_buf += data
        self._flush_stdin()

    def _on_stdin(self, fd: int, ev: int) -> None:
        self._flush_stdin()

    def _flush_stdin(self) -> None:
        buf = self.stdin_buf
        while buf and self.stdin_fd >= 0:
            try:
                n = os.write(self.stdin_fd, buf)
            except BlockingIOError:
                break
            except OSError:  # EPIPE: the process closed its end
                self._drop_stdin()
                break
            del buf[:n]
        if not buf and self.stdin_closing:
            self._drop_stdin()
        self._rearm()
        self.shim.stdin_pressure(self, len(self.stdin_buf) > STDIN_HIGH)

    def close_stdin(self) -> None:
        """No more input: the process reads EOF once what was sent is written.

        With a tty docker never closes stdin (there is no EOF on a terminal but ^D, which is the
        client's to type), so this only stops taking input there.
        """
        if self.tty:
            self.stdin_closing = True
            return
        if self.stdin_fd < 0:
            return
        self.stdin_closing = True
        if not self.stdin_buf:
            self._drop_stdin()

    def _drop_stdin(self) -> None:
        fd = self.stdin_fd
        self.stdin_fd = -1
        self.stdin_buf.clear()
        if fd >= 0 and fd not in self.outs:
            self.loop.unwatch(fd)
            os.close(fd)

    @property
    def stdin_open(self) -> bool:
        return self.stdin_fd >= 0 and not self.stdin_closing

    # -- exit -------------------------------------------------------------------------------

    def reaped_with(self, status: int) -> None:
        self.reaped = True
        self.exited_at = time.time_ns()
        code = os.waitstatus_to_exitcode(status)
        if code < 0:
            self.signal = -code
            self.exit_code = 128 - code
        else:
            self.exit_code = code
        if not self.outs:
            self.finish()
        else:
            self._drain_timer = self.loop.later(DRAIN_TIMEOUT, self.finish)

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        # Whatever is still in the pipes is the container's output too; a writer that lives on
        # (a daemonized grandchild holding the pipe) is not waited for.
        for fd in list(self.outs):
            kind = self.outs[fd]
            while True:
                try:
                    data = os.read(fd, READ_SIZE)
                except OSError:
                    data = b""
                if not data:
                    break
                self._output(kind, data)
            self._close_out(fd)
        self._drop_stdin()
        self.shim.proc_done(self)

    def exit_info(self) -> dict:
        return {"exit_code": self.exit_code, "signal": self.signal,
                "started_at": self.started_at, "exited_at": self.exited_at}
