"""unshare(2) and setns(2) for namespaces, with the kernel's CLONE_* names.

A namespace change made here applies to the calling thread only (for the network namespace the
kernel keeps it per task), which is what lets a threaded daemon step into a container's network
namespace to open a socket there and step back out.
"""

import ctypes

from ._libc import fail, libc

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

libc.unshare.argtypes = [ctypes.c_int]
libc.unshare.restype = ctypes.c_int
libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
libc.setns.restype = ctypes.c_int


def unshare(flags: int) -> None:
    if libc.unshare(flags) != 0:
        raise fail("unshare")


def setns(fd: int, nstype: int = 0) -> None:
    if libc.setns(fd, nstype) != 0:
        raise fail("setns")
