"""mount(2), umount2(2) and pivot_root(2), with the kernel's flag names."""

import ctypes

from ._libc import fail, fsencode, libc, sysno

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_POSIXACL = 0x10000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MS_LAZYTIME = 0x2000000

MNT_FORCE = 0x1
MNT_DETACH = 0x2
MNT_EXPIRE = 0x4
UMOUNT_NOFOLLOW = 0x8

libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                       ctypes.c_char_p]
libc.mount.restype = ctypes.c_int
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
libc.umount2.restype = ctypes.c_int


def mount(source: str | None, target: str, fstype: str | None = None, flags: int = 0,
          data: str | None = None) -> None:
    if libc.mount(fsencode(source), fsencode(target), fsencode(fstype), flags,
                  fsencode(data)) != 0:
        raise fail("mount", target)


def umount2(target: str, flags: int = 0) -> None:
    if libc.umount2(fsencode(target), flags) != 0:
        raise fail("umount", target)


def pivot_root(new_root: str, put_old: str) -> None:
    if libc.syscall(sysno("pivot_root"), fsencode(new_root), fsencode(put_old)) != 0:
        raise fail("pivot_root", new_root)
