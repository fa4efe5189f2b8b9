"""The runtime's own terminal for a foreground `run` / `exec` with process.terminal and no
--console-socket, as runc does it: the container's init makes the pty inside the container and
sends its master over a socketpair (the same hand-off as a console socket); we put our own
terminal in raw mode, copy stdin → master and master → stdout, follow our window size on
SIGWINCH, and stop when the process has exited and the master is drained.

Import-light (os, _socket, select, termios): this is on `run`'s path.
"""

import os

RAW_OFF_IFLAG = ("IGNBRK", "BRKINT", "PARMRK", "ISTRIP", "INLCR", "IGNCR", "ICRNL", "IXON")
RAW_OFF_LFLAG = ("ECHO", "ECHONL", "ICANON", "ISIG", "IEXTEN")


def socketpair() -> tuple[int, int]:
    """(our end, the init's end), both close-on-exec (the init's end is made inheritable by
    berth.runtime.spawn)."""
    import _socket

    a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    return a.detach(), b.detach()


def recv_master(fd: int) -> int:
    """The pty master the init sent (berth.runtime.init.setup_console sends one fd)."""
    import _socket

    s = _socket.socket(fileno=os.dup(fd))
    try:
        while True:
            try:
                msg, anc, _flags, _addr = s.recvmsg(4096, _socket.CMSG_SPACE(4))
                break
            except InterruptedError:
                continue
    finally:
        s.close()
    for level, typ, data in anc:
        if level == _socket.SOL_SOCKET and typ == _socket.SCM_RIGHTS and len(data) >= 4:
            master = int.from_bytes(data[:4], "little")
            os.set_inheritable(master, False)
            return master
    raise OSError(71, "console: the container's init sent no terminal")


def host_console() -> int:
    """The first of stderr, stdout, stdin that is a terminal (runc's order), or -1."""
    for fd in (2, 1, 0):
        try:
            if os.isatty(fd):
                return fd
        except OSError:
            continue
    return -1


def make_raw(fd: int) -> list:
    """cfmakeraw(3) on ``fd``; returns the old attributes for ``restore``."""
    import termios as t

    old = t.tcgetattr(fd)
    new = [old[0], old[1], old[2], old[3], old[4], old[5], list(old[6])]
    for name in RAW_OFF_IFLAG:
        new[0] &= ~getattr(t, name)
    new[1] &= ~t.OPOST
    new[2] = (new[2] & ~(t.CSIZE | t.PARENB)) | t.CS8
    for name in RAW_OFF_LFLAG:
        new[3] &= ~getattr(t, name)
    new[6][t.VMIN] = 1
    new[6][t.VTIME] = 0
    t.tcsetattr(fd, t.TCSANOW, new)
    return old


def restore(fd: int, old: list) -> None:
    import termios as t

    try:
        t.tcsetattr(fd, t.TCSANOW, old)
    except (OSError, t.error):
        pass


def copy_size(src: int, master: int) -> None:
    import termios as t

    try:
        t.tcsetwinsize(master, t.tcgetwinsize(src))
    except (OSError, t.error):
        pass


def _write_all(fd: int, data: bytes) -> bool:
    while data:
        try:
            data = data[os.write(fd, data):]
        except BlockingIOError:
            import select

            select.select([], [fd], [])
        except OSError:
            return False
    return True


def proxy(master: int, pid: int) -> None:
    """Copy between our stdio and ``master`` until process ``pid`` (the init's stage 0, which
    exits with the container process) has exited and the master has nothing more to say."""
    import select

    pidfd = os.pidfd_open(pid)
    os.set_blocking(master, False)
    p = select.poll()
    p.register(master, select.POLLIN)
    p.register(pidfd, select.POLLIN)
    try:
        p.register(0, select.POLLIN)
    except (OSError, ValueError):
        pass
    out_ok = True
    exited = False
    try:
        while True:
            for fd, ev in p.poll(-1 if not exited else 0):
                if fd == pidfd:
                    exited = True
                    p.unregister(pidfd)
                elif fd == master:
                    try:
                        data = os.read(master, 65536)
                    except BlockingIOError:
                        continue
                    except OSError:  # EIO: every slave fd is closed
                        return
                    if not data:
                        return
                    if out_ok:
                        out_ok = _write_all(1, data)
                elif fd == 0:
                    try:
                        data = os.read(0, 65536) if ev & (select.POLLIN | select.POLLHUP) \
                            else b""
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        # a pty cannot be half-closed: the container keeps its terminal
                        p.unregister(0)
                        continue
                    _write_all(master, data)
            if exited:
                # drain what the process wrote before it exited, then stop
                try:
                    while True:
                        data = os.read(master, 65536)
                        if not data:
                            return
                        if out_ok:
                            out_ok = _write_all(1, data)
                except (BlockingIOError, OSError):
                    return
    finally:
        os.close(pidfd)
