"""Which system-call ABIs this kernel runs (the x86-64 kernel may run x32 and i386 too)."""

import ctypes

from ._libc import MACHINE, libc

X32_SYSCALL_BIT = 0x40000000
_NR_GETPID_X86_64 = 39


def x32_supported() -> bool:
    """Whether the kernel runs x32 system calls (CONFIG_X86_X32_ABI and syscall.x32 on).

    Probed with getpid through the x32 entry: ENOSYS means no x32 ABI.
    """
    if MACHINE != "x86_64":
        return False
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(X32_SYSCALL_BIT | _NR_GETPID_X86_64))
    return r > 0
