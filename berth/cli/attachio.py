"""The terminal side of a hijacked attach/exec stream: stdin in, output out, resize, signals.

``stream(sock, early, tty, stdin)`` runs a select loop over the user's stdin and the daemon's
socket until the daemon ends the stream: with a tty the output is raw bytes to stdout, without
one it is Docker's multiplexed frames (8-byte header: stream 1 stdout / 2 stderr, big-endian
length) split to stdout and stderr. When stdin ends the socket's write side is shut, so the
daemon sees EOF while output keeps coming. ``raw_terminal()`` puts an interactive stdin in raw
mode (docker -it) and gives back a restore function.

Hot path of ``berth run``: ``select`` and ``os`` only; termios is imported for -t.
"""

from __future__ import annotations

import os
import select

_CHUNK = 65536


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            select.select([], [fd], [])


class Demux:
    """Docker's stream framing → (fd 1 | fd 2, bytes), fed whatever recv returned."""

    __slots__ = ("buf", "out", "err")

    def __init__(self, out: int = 1, err: int = 2) -> None:
        self.buf = b""
        self.out = out
        self.err = err

    def feed(self, data: bytes) -> None:
        buf = self.buf + data
        pos = 0
        n = len(buf)
        while n - pos >= 8:
            kind = buf[pos]
            length = int.from_bytes(buf[pos + 4:pos + 8], "big")
            if n - pos - 8 < length:
                break
            payload = buf[pos + 8:pos + 8 + length]
            pos += 8 + length
            if kind == 2:
                _write_all(self.err, payload)
            elif kind in (0, 1):
                _write_all(self.out, payload)
            elif kind == 3:  # systemerr: the daemon's error after the stream began
                _write_all(self.err, payload)
        self.buf = buf[pos:]


def stream(sock, early: bytes, tty: bool, stdin: bool, out_fd: int = 1, err_fd: int = 2,
           stdin_fd: int = 0, on_stdin_eof=None) -> None:
    """Carry the attach until the daemon closes its side."""
    demux = None if tty else Demux(out_fd, err_fd)
    sfd = sock.fileno()
    if early:
        if demux is None:
            _write_all(out_fd, early)
        else:
            demux.feed(early)
    reading_stdin = stdin
    while True:
        rlist = [sfd] + ([stdin_fd] if reading_stdin else [])
        try:
            ready, _, _ = select.select(rlist, [], [])
        except InterruptedError:
            continue
        if sfd in ready:
            try:
                data = sock.recv(_CHUNK)
            except (ConnectionResetError, InterruptedError):
                data = b""
            if not data:
                return
            if demux is None:
                _write_all(out_fd, data)
            else:
                demux.feed(data)
        if reading_stdin and stdin_fd in ready:
            try:
                data = os.read(stdin_fd, _CHUNK)
            except OSError:
                data = b""
            if data:
                try:
                    sock.sendall(data)
                except OSError:
                    reading_stdin = False
            else:
                reading_stdin = False
                try:
                    sock.shutdown(1)  # SHUT_WR: stdin ended, output may still come
                except OSError:
                    pass
                if on_stdin_eof is not None:
                    on_stdin_eof()


def raw_terminal(fd: int = 0):
    """Put ``fd`` in raw mode if it is a terminal; → a function that restores it."""
    if not os.isatty(fd):
        return lambda: None
    import termios
    import tty

    old = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)

    def restore() -> None:
        try:
            termios.tcsetattr(fd, termios.TCSADRAIN, old)
        except termios.error:
            pass

    return restore


def terminal_size(fd: int = 1) -> tuple[int, int] | None:
    try:
        sz = os.get_terminal_size(fd)
    except OSError:
        return None
    return sz.lines, sz.columns
