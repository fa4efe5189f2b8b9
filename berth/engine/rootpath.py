"""Paths inside a container's root filesystem, resolved as the container would resolve them.

``secure_join(root, path)`` follows every symlink of ``path`` *inside* ``root``: an absolute
link target restarts at ``root``, ``..`` stops at ``root``, so an image whose ``/etc/passwd``
is a link to ``/../../etc/shadow`` makes berth read the container's file, never the host's.
The engine uses it only while the container runs nothing (user lookup, creating mount points
and the working directory before start); operations on a running container's files (cp)
run in a helper that is chrooted or has entered the container's mount namespace, where the
kernel does this resolution (berth.engine.archive).
"""

from __future__ import annotations

import os
import stat

from berth.errors import InvalidArgument

MAX_LINKS = 255


class PathEscapes(InvalidArgument):
    pass


def secure_join(root: str, path: str) -> str:
    """``root`` + ``path`` with symlinks resolved within ``root``; missing tails are kept."""
    root = os.path.abspath(root)
    parts = [p for p in path.split("/") if p and p != "."]
    resolved: list[str] = []
    links = 0
    while parts:
        p = parts.pop(0)
        if p == "..":
            if resolved:
                resolved.pop()
            continue
        cand = os.path.join(root, *resolved, p)
        try:
            st = os.lstat(cand)
        except (FileNotFoundError, NotADirectoryError):
            resolved.append(p)
            resolved.extend(q for q in parts)
            parts = []
            break
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_LINKS:
                raise PathEscapes(f"too many levels of symbolic links in {path}")
            target = os.readlink(cand)
            if target.startswith("/"):
                resolved = []
            parts = [q for q in target.split("/") if q and q != "."] + parts
            continue
        resolved.append(p)
    # normalise ".." that came after a missing component
    out: list[str] = []
    for p in resolved:
        if p == "..":
            if out:
                out.pop()
        else:
            out.append(p)
    return os.path.join(root, *out)


def read_file(root: str, path: str, limit: int = 4 << 20) -> bytes | None:
    """The content of ``path`` in ``root`` (None if missing or not a regular file)."""
    p = secure_join(root, path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, limit)
    finally:
        os.close(fd)


def mkdir_all(root: str, path: str, mode: int = 0o755, uid: int = -1, gid: int = -1) -> str:
    """Create ``path`` in ``root`` (and its missing parents, owned by uid:gid if given) as the
    container sees it; → its host path. An existing non-directory is an error."""
    target = secure_join(root, path)
    rel = os.path.relpath(target, root)
    cur = root
    if rel != ".":
        for part in rel.split("/"):
            cur = os.path.join(cur, part)
            try:
                st = os.lstat(cur)
            except FileNotFoundError:
                os.mkdir(cur, mode)
                if uid >= 0 or gid >= 0:
                    os.lchown(cur, uid, gid)
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise InvalidArgument(f"{path}: not a directory in the container: "
                                      f"{os.path.join('/', os.path.relpath(cur, root))}")
    return target


def make_mountpoint(root: str, dest: str, is_dir: bool) -> str:
    """Ensure something to mount on at ``dest``: a directory, or an empty file for a file
    bind; → its host path (the runtime mounts on what this made)."""
    target = secure_join(root, dest)
    if os.path.lexists(target):
        return target
    parent = os.path.dirname(os.path.relpath(target, root))
    if parent and parent != ".":
        mkdir_all(root, "/" + parent)
    if is_dir:
        os.mkdir(target, 0o755)
    else:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644)
        os.close(fd)
    return target
