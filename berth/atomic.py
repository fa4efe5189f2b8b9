"""Atomic file writes: nothing berth keeps on disk is ever written in place.

A write goes to a temporary file in the same directory, is fsynced, and is renamed over the
target; the directory is fsynced so the rename survives a crash. A reader therefore sees the old
content or the new, never a torn file. Stdlib-only and light: the shim uses it.
"""

import os

__all__ = ["fsync_dir", "write_bytes", "write_text"]


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(path: str, data: bytes, mode: int = 0o644, *, sync: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically (temp file + fsync + rename)."""
    d = os.path.dirname(path) or "."
    tmp = os.path.join(d, f".{os.path.basename(path)}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.rename(tmp, path)
    if sync:
        fsync_dir(d)


def write_text(path: str, text: str, mode: int = 0o644, *, sync: bool = True) -> None:
    write_bytes(path, text.encode(), mode, sync=sync)
