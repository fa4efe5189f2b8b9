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


# mount_setattr(2) (uapi/linux/mount.h)
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_IDMAP = 0x100000
MOUNT_ATTR_NOSYMFOLLOW = 0x200000
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
AT_SYMLINK_NOFOLLOW = 0x100


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def mount_setattr(dfd: int, path: str, flags: int, attr_set: int = 0, attr_clr: int = 0,
                  propagation: int = 0, userns_fd: int = 0) -> None:
    attr = _MountAttr(attr_set, attr_clr, propagation, userns_fd)
    if libc.syscall(sysno("mount_setattr"), ctypes.c_int(dfd), fsencode(path),
                    ctypes.c_uint(flags), ctypes.byref(attr),
                    ctypes.c_size_t(ctypes.sizeof(attr))) != 0:
        raise fail("mount_setattr", path or None)


# open_tree(2) / move_mount(2)
OPEN_TREE_CLONE = 0x1
OPEN_TREE_CLOEXEC = 0o2000000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40
AT_FDCWD = -100


def open_tree(path: str, flags: int, dfd: int = AT_FDCWD) -> int:
    """A detached copy of the mount tree at ``path`` (OPEN_TREE_CLONE), as an fd."""
    fd = libc.syscall(sysno("open_tree"), ctypes.c_int(dfd), fsencode(path),
                      ctypes.c_uint(flags))
    if fd < 0:
        raise fail("open_tree", path)
    return fd


def move_mount_fd(from_fd: int, to_fd: int) -> None:
    """Attach the detached tree ``from_fd`` onto the file or directory ``to_fd`` refers to."""
    if libc.syscall(sysno("move_mount"), ctypes.c_int(from_fd), b"", ctypes.c_int(to_fd), b"",
                    ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)) != 0:
        raise fail("move_mount")
