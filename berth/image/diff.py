"""A snapshot's own directory (a container's upperdir) → a layer tar, with overlay's markers
turned back into the OCI whiteouts (image-spec layer.md):

- a character device 0/0 ``NAME``            → an empty ``.wh.NAME``;
- a directory with ``trusted.overlay.opaque=y`` → the directory, then ``DIR/.wh..wh..opq``;
- regular files, directories, symlinks, hard links (the first path of an inode carries the
  data, later ones are links to it), fifos and device nodes, with mode, ownership, mtime and
  xattrs (``trusted.overlay.*`` is overlay's bookkeeping and is left out).

Entries are written in sorted order, parents before children, so equal trees give equal tars
(and equal diffIDs). This is what ``commit`` and ``diff`` of a container read; ``apply`` reads
the result back.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

from . import tarstream as t
from .apply import OPAQUE, OPAQUE_XATTR, WHITEOUT_PREFIX


def _xattrs(path: str) -> dict[str, bytes]:
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for n in sorted(names):
        if n.startswith("trusted.overlay."):
            continue
        try:
            out[n] = os.getxattr(path, n, follow_symlinks=False)
        except OSError:
            pass
    return out


def write_diff(upper: str, write: Callable[[bytes], object], chunk: int = 1 << 20) -> None:
    """Write ``upper`` as a layer tar through ``write``."""
    links: dict[tuple[int, int], str] = {}

    def walk(rel: str) -> None:
        d = os.path.join(upper, rel) if rel else upper
        for name in sorted(os.listdir(d)):
            r = f"{rel}/{name}" if rel else name
            p = os.path.join(upper, r)
            st = os.lstat(p)
            mode = stat.S_IMODE(st.st_mode)
            common = {"mode": mode, "mtime": int(st.st_mtime), "uid": st.st_uid,
                      "gid": st.st_gid}
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0):
                parent, _, base = r.rpartition("/")
                wh = f"{parent}/{WHITEOUT_PREFIX}{base}" if parent else WHITEOUT_PREFIX + base
                write(t.header(wh, 0, t.REGTYPE, 0o644, st.st_mtime))
                continue
            if stat.S_ISDIR(st.st_mode):
                write(t.header(r + "/", 0, t.DIRTYPE, xattrs=_xattrs(p), **common))
                try:
                    opaque = os.getxattr(p, OPAQUE_XATTR, follow_symlinks=False) == b"y"
                except OSError:
                    opaque = False
                if opaque:
                    write(t.header(f"{r}/{OPAQUE}", 0, t.REGTYPE, 0o644, st.st_mtime))
                walk(r)
                continue
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                write(t.header(r, 0, t.LNKTYPE, linkname=links[key], **common))
                continue
            if st.st_nlink > 1:
                links[key] = r
            xa = _xattrs(p)
            if stat.S_ISLNK(st.st_mode):
                write(t.header(r, 0, t.SYMTYPE, linkname=os.readlink(p), xattrs=xa, **common))
            elif stat.S_ISREG(st.st_mode):
                write(t.header(r, st.st_size, t.REGTYPE, xattrs=xa, **common))
                left = st.st_size
                with open(p, "rb") as f:
                    while left:
                        b = f.read(min(chunk, left))
                        if not b:
                            raise t.BadArchive(f"{p}: file shrank while archiving")
                        write(b)
                        left -= len(b)
                if st.st_size % t.BLOCK:
                    write(b"\0" * (-st.st_size % t.BLOCK))
            elif stat.S_ISFIFO(st.st_mode):
                write(t.header(r, 0, t.FIFOTYPE, xattrs=xa, **common))
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                typ = t.CHRTYPE if stat.S_ISCHR(st.st_mode) else t.BLKTYPE
                write(t.header(r, 0, typ, xattrs=xa, devmajor=os.major(st.st_rdev),
                               devminor=os.minor(st.st_rdev), **common))
            # sockets are not archived (as tar and dockerd skip them)

    walk("")
    write(b"\0" * (2 * t.BLOCK))
