"""Namespaces: unshare(2), setns(2), a namespace file's type (ioctl NS_GET_NSTYPE) and the
CLONE_NEW* flags, plus the UTS names."""

import ctypes

from ._libc import fail, fsencode, libc

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3)

# (the same prototype as berth.linux.proc gives it: one ctypes function object is shared)
libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
libc.ioctl.restype = ctypes.c_int
libc.unshare.argtypes = [ctypes.c_int]
libc.unshare.restype = ctypes.c_int
libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
libc.setns.restype = ctypes.c_int
libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
libc.sethostname.restype = ctypes.c_int
libc.setdomainname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
libc.setdomainname.restype = ctypes.c_int


def unshare(flags: int) -> None:
    if libc.unshare(flags) != 0:
        raise fail("unshare")


def setns(fd: int, nstype: int = 0) -> None:
    if libc.setns(fd, nstype) != 0:
        raise fail("setns")


def ns_type(fd: int) -> int:
    """The CLONE_NEW* flag of the namespace ``fd`` refers to (ENOTTY: not a namespace)."""
    t = libc.ioctl(fd, NS_GET_NSTYPE, None)
    if t < 0:
        raise fail("ioctl NS_GET_NSTYPE")
    return t


def sethostname(name: str) -> None:
    b = fsencode(name)
    if libc.sethostname(b, len(b)) != 0:
        raise fail("sethostname")


def setdomainname(name: str) -> None:
    b = fsencode(name)
    if libc.setdomainname(b, len(b)) != 0:
        raise fail("setdomainname")
