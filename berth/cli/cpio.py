"""``berth cp``'s local half: the docker CLI's rules for where files land, over the archive API.

Both directions follow the docker CLI step by step, so that the same command lands the same
files (and fails with the same words) against either engine:

- container → host (``GET /containers/{id}/archive``): the local destination is checked first
  (its parent must exist); with ``-L`` a symlink source is replaced by its target, the entries
  keeping the link's name. The destination decides: an existing directory (a symlink to one
  counts) receives the entries as they are; otherwise the entries' first name (the source's
  base name, ``.`` for ``DIR/.``) becomes the destination's, extracted in its parent. Files
  belong to the user who ran cp (``-a`` only matters the other way).
- host → container (``PUT``): the container's destination is stat-ed (``HEAD``; a symlink is
  followed once); the local source is packed under its base name (``-L`` follows it; a source
  with a trailing ``/`` through a symlink keeps the name given) and renamed by the same rule,
  then extracted by berthd into the destination or its parent. ``-`` reads a tar from stdin for
  a destination directory, or writes the archive to stdout.

Path words are Go's (``filepath.Clean/Dir/Base``): a trailing ``/`` asserts a directory, a
final ``.`` names a directory's contents. An archive entry that would land outside the
destination, directly or through a symlink it made, is skipped.
"""

from __future__ import annotations

import base64
import os
import stat
import sys

from berth import fastjson

from .client import APIError

GO_DIR = 1 << 31
GO_SYMLINK = 1 << 27
GO_DEVICE = 1 << 26
GO_IRREGULAR = 1 << 19


class CopyError(Exception):
    """A refusal, printed as the docker CLI prints it (one line, exit 1)."""


# ------------------------------------------------------------------ Go's path words

def _clean(p: str) -> str:
    return os.path.normpath(p) if p else "."


def _go_base(p: str) -> str:
    if p == "":
        return "."
    s = p.rstrip("/")
    return s.rsplit("/", 1)[-1] if s else "/"


def _go_dir(p: str) -> str:
    """Go's filepath.Dir: everything up to the last "/", cleaned ("." when there is none)."""
    return _clean(p[:p.rfind("/") + 1])


def _trailing_sep(p: str) -> bool:
    return p.endswith("/")


def _current_dir(p: str) -> bool:
    return _go_base(p) == "."


def _asserts_directory(p: str) -> bool:
    return _trailing_sep(p) or _current_dir(p)


def _preserve(cleaned: str, original: str) -> str:
    """Go's PreserveTrailingDotOrSeparator."""
    if not _current_dir(cleaned) and _current_dir(original):
        if not _trailing_sep(cleaned):
            cleaned += "/"
        cleaned += "."
    if not _trailing_sep(cleaned) and _trailing_sep(original):
        cleaned += "/"
    return cleaned


def _split_entry(p: str) -> tuple[str, str]:
    """Go's SplitPathDirEntry: (directory, entry), ``.`` kept as the entry of ``DIR/.``."""
    c = _clean(p)
    if _current_dir(p):
        c = c.rstrip("/") + "/."
    return _go_dir(c), _go_base(c)


def _local(p: str) -> str:
    return _preserve(os.path.abspath(p), p)


def _rebase_name(path: str, resolved: str) -> tuple[str, str]:
    """Go's GetRebaseName: the resolved path with the original's trailing words, and the name
    the entries must keep when following a link changed the last one."""
    if _current_dir(path) and not _current_dir(resolved):
        resolved += "/."
    if _trailing_sep(path) and not _trailing_sep(resolved):
        resolved += "/"
    return resolved, (_go_base(path) if _go_base(path) != _go_base(resolved) else "")


# ------------------------------------------------------------------ API helpers

def _stat_header(r) -> dict | None:
    v = r.headers.get("x-docker-container-path-stat")
    if not v:
        return None
    try:
        return fastjson.loads(base64.b64decode(v))
    except ValueError:
        return None


def _head(ctx, ctr: str, path: str) -> dict | None:
    """The container path's stat, or None when the daemon says it cannot (as the docker CLI
    treats every stat error: "assume the parent exists")."""
    r = ctx.client.request("HEAD", f"/containers/{ctr}/archive", {"path": path})
    try:  # a HEAD answer has no body to read: its status is all
        return None if r.status >= 400 else _stat_header(r)
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


def _rename(name: str, old: str, new: str) -> str:
    """Go's RebaseArchiveEntries: the first ``old`` in the name becomes ``new`` (the root's
    "/" stands for the empty prefix)."""
    if old == "/":
        old = ""
    return name.replace(old, new, 1)


# ------------------------------------------------------------------ container → host

def _validate_output(path: str) -> None:
    """The docker CLI's ValidateOutputPath."""
    d = _go_dir(_clean(path))
    if d not in ("", ".") and not os.path.exists(d):
        raise CopyError(f'invalid output path: directory "{d}" does not exist')
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise CopyError(f"stat {path}: {e.strerror.lower()}") from None
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        raise CopyError(f'invalid output path: "{path}" must be a directory or a regular '
                        "file: got a device")


def _destination(path: str) -> tuple[str, bool, bool]:
    """Go's CopyInfoDestinationPath → (path, exists, is_dir): a symlink is followed (a dangling
    one is where the copy goes); a missing path needs its parent."""
    original = path
    for _n in range(12):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            break
        except OSError as e:
            raise CopyError(f"lstat {path}: {e.strerror.lower()}") from None
        if not stat.S_ISLNK(st.st_mode):
            return path, True, stat.S_ISDIR(st.st_mode)
        target = os.readlink(path)
        if not target.startswith("/"):
            target = os.path.join(_split_entry(path)[0], target)
        path = target
    else:
        raise CopyError(f"too many symlinks in {original}")
    parent = _split_entry(path)[0]
    try:
        pst = os.stat(parent)
    except OSError as e:
        raise CopyError(f"stat {parent}: {e.strerror.lower()}") from None
    if not stat.S_ISDIR(pst.st_mode):
        raise CopyError("not a directory")
    return path, False, False


def _prepare(src_path: str, src_is_dir: bool, rebase: str, dst: tuple[str, bool, bool]
             ) -> tuple[str, str | None, str | None]:
    """Go's PrepareArchiveCopy → (directory to extract into, old first name, new one)."""
    path, exists, is_dir = dst
    dst_dir, dst_base = _split_entry(path)
    src_base = rebase or _split_entry(src_path)[1]
    if exists and is_dir:
        return path, None, None
    if exists and src_is_dir:
        raise CopyError("cannot copy directory")
    if not exists and not src_is_dir and _asserts_directory(path):
        raise CopyError("no such directory")
    return dst_dir, src_base, dst_base


def from_container(ctx, ctr: str, src: str, dst: str, follow: bool) -> int:
    try:
        return _from_container(ctx, ctr, src, dst, follow)
    except CopyError as e:
        ctx.err.write(f"{e}\n")
        return 1


def _from_container(ctx, ctr: str, src: str, dst: str, follow: bool) -> int:
    if dst != "-":
        dst = _local(dst)
        _validate_output(dst)
    rebase = ""
    if follow:
        st = _head(ctx, ctr, src)
        if st and st.get("mode", 0) & GO_SYMLINK:
            target = st.get("linkTarget") or ""
            if not target.startswith("/"):
                target = os.path.join(_split_entry(src)[0], target)
            src, rebase = _rebase_name(src, target)
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
        first = _split_entry(src)[1]  # the entries' first name, renamed by -L's rebase
        out_root, old, new = _prepare(src, bool(st.get("mode", 0) & GO_DIR), rebase,
                                      _destination(dst))
        _extract(ctx, r, out_root, dst, (first, rebase) if rebase else None, old, new)
    finally:
        r.close()
    return 0


def _extract(ctx, r, out_root: str, dst: str, pre: tuple[str, str] | None, old: str | None,
             new: str | None) -> None:
    """Untar the response into ``out_root`` as docker's CopyTo does (NoLchown,
    NoOverwriteDirNonDir), every entry kept inside the destination."""
    tarfile = _tarfile()
    root = os.geteuid() == 0
    uid, gid = os.getuid(), os.getgid()
    kw = {}
    if hasattr(tarfile, "tar_filter"):
        kw["filter"] = "fully_trusted" if root else "tar"
    with tarfile.open(fileobj=_Reader(r), mode="r|") as tar:
        for m in tar:
            name = m.name + ("/" if m.isdir() and not m.name.endswith("/") else "")
            if pre is not None:
                name = _rename(name, *pre)
            if old is not None:
                name = _rename(name, old, new)
            name = os.path.normpath(name.lstrip("/")) if name.strip("/") else "."
            if name == ".." or name.startswith("../") or \
                    not _inside(out_root, os.path.dirname(name)):
                ctx.err.write(f"skipping {m.name}: it would land outside {dst}\n")
                continue
            if m.islnk():
                link = os.path.normpath(_rename(m.linkname, old, new) if old is not None
                                        else m.linkname).lstrip("/")
                if not _inside(out_root, link):
                    continue
                m.linkname = link
            full = os.path.join(out_root, name)
            if os.path.lexists(full):
                is_dir = os.path.isdir(full) and not os.path.islink(full)
                if is_dir and not m.isdir():
                    raise CopyError(f'cannot overwrite directory "{full}" with non-directory '
                                    f'"{name}"')
                if not is_dir and m.isdir():
                    raise CopyError(f'cannot overwrite non-directory "{full}" with directory '
                                    f'"{name}"')
                if not is_dir:
                    os.unlink(full)
                elif name == ".":
                    continue
            if name == ".":
                os.makedirs(out_root, exist_ok=True)
                continue
            m.name = name
            # docker cp: what lands on the host belongs to the user who ran it
            m.uid, m.gid = uid, gid
            parent = os.path.dirname(full)
            if not os.path.lexists(parent):
                os.makedirs(parent, 0o755, exist_ok=True)
            tar.extract(m, out_root, numeric_owner=True, **kw)


# ------------------------------------------------------------------ host → container

def _source(path: str, follow: bool) -> tuple[str, bool, str]:
    """Go's CopyInfoSourcePath → (resolved path, is_dir, rebase name)."""
    try:
        if follow:
            resolved, rebase = _rebase_name(path, _eval_symlinks(path))
        else:
            d, b = path[:path.rfind("/") + 1], path[path.rfind("/") + 1:]
            resolved = _eval_symlinks(d or ".").rstrip("/") + "/" + b
            rebase = _go_base(path) if _trailing_sep(path) and \
                _go_base(path) != _go_base(resolved) else ""
        st = os.lstat(resolved)
    except CopyError:
        raise
    except OSError as e:
        raise CopyError(f"lstat {e.filename or path}: {e.strerror.lower()}") from None
    return resolved, stat.S_ISDIR(st.st_mode), rebase


def _eval_symlinks(path: str) -> str:
    """Go's filepath.EvalSymlinks: every link resolved, the path must exist; a non-directory
    followed by more path is a bare "not a directory"."""
    parts = [p for p in path.split("/") if p]
    cur = "/" if path.startswith("/") else "."
    for i, p in enumerate(parts):
        nxt = os.path.join(cur, p)
        try:
            st = os.lstat(nxt)
        except FileNotFoundError:
            raise FileNotFoundError(2, "No such file or directory", nxt) from None
        if stat.S_ISLNK(st.st_mode):
            nxt = os.path.realpath(nxt)
            try:
                st = os.stat(nxt)
            except FileNotFoundError:
                raise FileNotFoundError(2, "No such file or directory", nxt) from None
        if i < len(parts) - 1 and not stat.S_ISDIR(st.st_mode):
            raise CopyError("not a directory")
        cur = nxt
    if path.endswith("/") and parts and not os.path.isdir(cur):
        raise CopyError("not a directory")
    return os.path.normpath(cur)


def to_container(ctx, src: str, ctr: str, dst: str, archive: bool, follow: bool) -> int:
    try:
        return _to_container(ctx, src, ctr, dst, archive, follow)
    except CopyError as e:
        ctx.err.write(f"{e}\n")
        return 1


def _to_container(ctx, src: str, ctr: str, dst: str, archive: bool, follow: bool) -> int:
    if src != "-":
        src = _local(src)
    dst_path = dst
    st = _head(ctx, ctr, dst)
    if st and st.get("mode", 0) & GO_SYMLINK:
        target = st.get("linkTarget") or ""
        if not target.startswith("/"):
            target = os.path.join(_split_entry(dst)[0], target)
        dst_path = target
        st = _head(ctx, ctr, target)
    if st and st.get("mode", 0) & (GO_DEVICE | GO_IRREGULAR):
        what = "a device" if st["mode"] & GO_DEVICE else "an irregular file"
        raise CopyError(f'destination "{ctr}:{dst}" must be a directory or a regular file: '
                        f"got {what}")
    exists, is_dir = st is not None, bool(st and st.get("mode", 0) & GO_DIR)
    q = {"path": dst_path, "noOverwriteDirNonDir": "true",
         "copyUIDGID": "true" if archive else None}
    if src == "-":
        if not is_dir:
            raise CopyError(f'destination "{ctr}:{dst}" must be a directory')
        r = ctx.client.request("PUT", f"/containers/{ctr}/archive", q,
                               body=sys.stdin.buffer, headers={"Content-Type":
                                                               "application/x-tar"})
        return _done(r)
    path, src_is_dir, rebase = _source(src, follow)
    out_dir, old, new = _prepare(path, src_is_dir, rebase, (dst_path, exists, is_dir))
    q["path"] = out_dir
    src_dir, src_base = _split_entry(path)
    r_fd, w_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r_fd)
        code = 0
        try:
            with os.fdopen(w_fd, "wb") as w:
                _pack(w, src_dir, src_base, rebase, old, new)
        except BaseException:  # noqa: BLE001 - the child reports by its exit code
            code = 1
        os._exit(code)
    os.close(w_fd)
    with os.fdopen(r_fd, "rb") as rf:
        r = ctx.client.request("PUT", f"/containers/{ctr}/archive", q, body=rf,
                               headers={"Content-Type": "application/x-tar"})
    os.waitpid(pid, 0)
    return _done(r)


def _pack(w, src_dir: str, src_base: str, rebase: str, old: str | None, new: str | None
          ) -> None:
    """Go's TarResourceRebase + RebaseArchiveEntries: ``src_base`` under ``src_dir``, depth
    first in name order, entries named from the base (``./x`` for ``.``), symlinks as links."""
    tarfile = _tarfile()

    def name_of(rel: str) -> str:
        n = _rename(rel, src_base, rebase) if rebase else rel
        return _rename(n, old, new) if old is not None else n

    def add(full: str, rel: str) -> None:
        # the arcname given here is what later hard links to this inode name
        ti = tar.gettarinfo(full, arcname=name_of(rel))
        ti.uname = ti.gname = ""
        if ti.isreg():
            with open(full, "rb") as f:
                tar.addfile(ti, f)
        else:
            tar.addfile(ti)
        if ti.isdir():
            for e in sorted(os.listdir(full)):
                add(os.path.join(full, e), f"{rel}/{e}" if rel != "." else f"./{e}")

    with tarfile.open(fileobj=w, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        add(os.path.join(src_dir, src_base), src_base)


def _done(r) -> int:
    try:
        if r.status >= 400:
            raise APIError(r.status, r.error_message())
        r.read()
    finally:
        r.close()
    return 0
