"""The one libc handle, loaded once with errno captured, and the error convention."""

import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)

MACHINE = os.uname().machine


def fail(what: str, path: str | None = None) -> OSError:
    """An OSError for the errno of the libc call just made: ``what: strerror``."""
    e = ctypes.get_errno()
    return OSError(e, f"{what}: {os.strerror(e)}", path)


def fsencode(p: str | bytes | None) -> bytes | None:
    if p is None or isinstance(p, bytes):
        return p
    return os.fsencode(p)


# Syscall numbers for calls glibc 2.36 does not wrap. Keyed by os.uname().machine.
SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {
        "pivot_root": 155,
        "open_tree": 428,
        "move_mount": 429,
        "fsopen": 430,
        "fsconfig": 431,
        "fsmount": 432,
        "mount_setattr": 442,
        "openat2": 437,
        "pidfd_open": 434,
        "pidfd_send_signal": 424,
        "clone3": 435,
        "close_range": 436,
        "seccomp": 317,
    },
    "aarch64": {
        "pivot_root": 41,
        "open_tree": 428,
        "move_mount": 429,
        "fsopen": 430,
        "fsconfig": 431,
        "fsmount": 432,
        "mount_setattr": 442,
        "openat2": 437,
        "pidfd_open": 434,
        "pidfd_send_signal": 424,
        "clone3": 435,
        "close_range": 436,
        "seccomp": 277,
    },
}


def sysno(name: str) -> int:
    try:
        return SYSCALLS[MACHINE][name]
    except KeyError:
        raise OSError(38, f"{name}: no syscall number known for {MACHINE}") from None
