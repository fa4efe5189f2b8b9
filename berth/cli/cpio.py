"""``berth cp``'s local half: docker cp's rules for where files land, over the archive API.

Container → host (``GET /containers/{id}/archive``): the tar's entries start with the source's
base name (``/.`` gives the contents); they are extracted so that a directory source lands
*in* an existing destination directory, or *as* the destination when it does not exist; a file
source replaces a destination file or lands in a destination directory. ``-`` writes the tar
to stdout.

Host → container (``PUT``): the local source is packed with its base name (or the destination's
name when the destination does not exist, so it lands *as* it); the destination's parent must
exist in the container (``HEAD`` tells). ``-`` reads a tar from stdin and extracts it into the
destination directory.
"""

from __future__ import annotations

import base64
import os
import sys

from berth import fastjson

from .client import APIError

GO_DIR = 1 << 31
GO_SYMLINK = 1 << 27


def _stat_header(r) -> dict | None:
    v = r.headers.get("x-docker-container-path-stat")
    if not v:
        return None
    try:
        return fastjson.loads(base64.b64decode(v))
    except ValueError:
        return None


def _head(ctx, ctr: str, path: str) -> dict | None:
    r = ctx.client.request("HEAD", f"/containers/{ctr}/archive", {"path": path})
    try:
        if r.status == 404:
            return None
        if r.status >= 400:
            raise APIError(r.status, r.error_message())
        return _stat_header(r)
    finally:
        r.close()


class _Reader:
    """A file-like view of a response body, for tarfile's stream mode."""

    def __init__(self, r) -> None:
        self.r = r
        self.buf = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self.buf) < n:
            c = self.r.read_chunk()
            if not c:
                break
            self.buf += c
        if n < 0:
            out, self.buf = self.buf, b""
        else:
            out, self.buf = self.buf[:n], self.buf[n:]
        return out


def _tarfile():
    import tarfile

    return tarfile


def _inside(root: str, rel: str) -> bool:
    """Whether ``root/rel``, symlinks resolved, stays under ``root`` (an archive's symlink
    must not lead a later entry outside the destination)."""
    base = os.path.realpath(root)
    real = os.path.realpath(os.path.join(root, rel))
    return real == base or real.startswith(base.rstrip("/") + "/")


def from_container(ctx, ctr: str, src: str, dst: str, follow: bool) -> int:
    if follow and not src.endswith("/"):
        st = _head(ctx, ctr, src)
        if st and st.get("mode", 0) & GO_SYMLINK and st.get("linkTarget"):
            src = st["linkTarget"]
    r = ctx.client.request("GET", f"/containers/{ctr}/archive", {"path": src})
    if r.status >= 400:
        msg = r.error_message()
        r.close()
        raise APIError(r.status, msg)
    try:
        st = _stat_header(r) or {}
        if dst == "-":
            from .attachio import _write_all

            while True:
                c = r.read_chunk()
                if not c:
                    break
                _write_all(1, c)
            return 0
        src_is_dir = bool(st.get("mode", 0) & GO_DIR)
        dst_exists = os.path.lexists(dst)
        dst_is_dir = os.path.isdir(dst)
        if dst.endswith("/") and not dst_is_dir:
            if dst_exists:
                ctx.err.write(f"destination \"{dst}\" must be a directory\n")
                return 1
            ctx.err.write(f"no such directory: {dst}\n")
            return 1
        if src_is_dir and dst_exists and not dst_is_dir:
            ctx.err.write("cannot copy a directory to a file\n")
            return 1
        if not dst_exists:
            parent = os.path.dirname(os.path.abspath(dst))
            if not os.path.isdir(parent):
                ctx.err.write(f"no such directory: {parent}\n")
                return 1
        contents = src.endswith("/.")
        if dst_is_dir:
            out_root, rename = dst, None  # lands inside dst under its own name
        else:
            out_root, rename = os.path.dirname(os.path.abspath(dst)), os.path.basename(
                os.path.abspath(dst))  # lands as dst
        tarfile = _tarfile()
        root = os.geteuid() == 0
        uid, gid = os.getuid(), os.getgid()
        with tarfile.open(fileobj=_Reader(r), mode="r|") as tar:
            for m in tar:
                name = os.path.normpath(m.name)
                first, _, rest = name.partition("/")
                if rename is not None:
                    name = os.path.join(rename, rest) if rest else rename
                elif contents:
                    if name == ".":
                        continue
                    name = rest if first == "." else name
                if name.startswith("..") or os.path.isabs(name) or \
                        not _inside(out_root, os.path.dirname(name)):
                    ctx.err.write(f"skipping {m.name}: it would land outside {dst}\n")
                    continue
                if m.islnk() and not _inside(out_root, m.linkname):
                    continue
                m.name = name
                # docker cp: what lands on the host belongs to the user who ran it (even with
                # -a, which only governs the way into a container)
                m.uid, m.gid = uid, gid
                full = os.path.join(out_root, name)
                if os.path.lexists(full) and not m.isdir() and not \
                        (os.path.isdir(full) and not os.path.islink(full)):
                    os.unlink(full)
                kw = {}
                if hasattr(tarfile, "tar_filter"):
                    kw["filter"] = "fully_trusted" if root else "tar"
                tar.extract(m, out_root, numeric_owner=True, **kw)
    finally:
        r.close()
    return 0


def to_container(ctx, src: str, ctr: str, dst: str, archive: bool, follow: bool) -> int:
    q = {"path": dst, "noOverwriteDirNonDir": "true", "copyUIDGID": "true" if archive else None}
    if src == "-":
        r = ctx.client.request("PUT", f"/containers/{ctr}/archive", q,
                               body=sys.stdin.buffer, headers={"Content-Type":
                                                               "application/x-tar"})
        return _done(r)
    if not os.path.lexists(src):
        ctx.err.write(f"lstat {os.path.abspath(src)}: no such file or directory\n")
        return 1
    if follow:
        src = os.path.realpath(src)
    st = _head(ctx, ctr, dst)
    src_is_dir = os.path.isdir(src) and not os.path.islink(src)
    if st is not None and st.get("mode", 0) & GO_DIR and not src.endswith("/."):
        target, name = dst, os.path.basename(os.path.normpath(src))
    elif st is not None and st.get("mode", 0) & GO_DIR:
        target, name = dst, "."
    else:
        if dst.endswith("/"):
            ctx.err.write(f"Error response from daemon: Could not find the file {dst} in "
                          f"container {ctr}\n")
            return 1
        if st is not None and src_is_dir:
            ctx.err.write("cannot copy a directory to a file\n")
            return 1
        parent = os.path.dirname(dst.rstrip("/")) or "/"
        if _head(ctx, ctr, parent) is None:
            ctx.err.write(f"Error response from daemon: Could not find the file {parent} in "
                          f"container {ctr}\n")
            return 1
        target, name = parent, os.path.basename(dst.rstrip("/"))
    q["path"] = target
    r_fd, w_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r_fd)
        code = 0
        try:
            tarfile = _tarfile()
            with os.fdopen(w_fd, "wb") as w, \
                    tarfile.open(fileobj=w, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                if name == ".":
                    for entry in sorted(os.listdir(src)):
                        tar.add(os.path.join(src, entry), arcname=entry)
                else:
                    tar.add(src, arcname=name)
        except BaseException:  # noqa: BLE001 - the child reports by its exit code
            code = 1
        os._exit(code)
    os.close(w_fd)
    with os.fdopen(r_fd, "rb") as rf:
        r = ctx.client.request("PUT", f"/containers/{ctr}/archive", q, body=rf,
                               headers={"Content-Type": "application/x-tar"})
    os.waitpid(pid, 0)
    return _done(r)


def _done(r) -> int:
    try:
        if r.status >= 400:
            raise APIError(r.status, r.error_message())
        r.read()
    finally:
        r.close()
    return 0
