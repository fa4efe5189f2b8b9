"""Process-level calls the os module lacks: mknod with dev numbers is in os; here close_range,
pidfd_send_signal and the ioctls for a controlling terminal."""

import ctypes

from ._libc import fail, libc, sysno

TIOCSCTTY = 0x540E
TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431
CLOSE_RANGE_CLOEXEC = 4

libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
libc.ioctl.restype = ctypes.c_int


def close_range(first: int, last: int = 0xFFFFFFFF, flags: int = 0) -> None:
    if libc.syscall(sysno("close_range"), ctypes.c_uint(first), ctypes.c_uint(last),
                    ctypes.c_uint(flags)) != 0:
        raise fail("close_range")


def set_controlling_tty(fd: int) -> None:
    if libc.ioctl(fd, TIOCSCTTY, None) != 0:
        raise fail("ioctl TIOCSCTTY")


def unlockpt(fd: int) -> None:
    v = ctypes.c_int(0)
    if libc.ioctl(fd, TIOCSPTLCK, ctypes.byref(v)) != 0:
        raise fail("ioctl TIOCSPTLCK")


def ptsname(fd: int) -> int:
    n = ctypes.c_uint(0)
    if libc.ioctl(fd, TIOCGPTN, ctypes.byref(n)) != 0:
        raise fail("ioctl TIOCGPTN")
    return n.value

TIOCSWINSZ = 0x5414


def set_winsize(fd: int, rows: int, cols: int) -> None:
    ws = (ctypes.c_ushort * 4)(rows, cols, 0, 0)
    if libc.ioctl(fd, TIOCSWINSZ, ws) != 0:
        raise fail("ioctl TIOCSWINSZ")
