"""Apply a layer (a tar stream) into an empty snapshot directory, in overlayfs's format.

The directory becomes an overlay *upperdir*-shaped layer, independent of its parents (as
dockerd's overlay2 and containerd's overlay snapshotter store layers):

- ``.wh.NAME``        → ``NAME`` as a character device 0/0 (overlay's whiteout);
- ``.wh..wh..opq``    → the directory gets ``trusted.overlay.opaque=y``;
- other ``.wh..wh.*`` (aufs metadata) are ignored, and so are ``trusted.overlay.*`` xattrs;
- regular files, directories, symlinks, hard links, fifos and (where allowed) device nodes
  with their ownership, mode (setuid/setgid/sticky kept: chmod after chown), mtime and xattrs.

Hostile archives are refused with ``UnsafeLayer`` naming the entry, before it is written:
absolute names, ``..`` components, an entry whose parent path is a symlink of this layer
(a symlink pointing out, then written through), a hard link whose target is outside the layer
or not yet in it, device nodes unless ``allow_devices``. Because the directory starts empty and
is private to berthd, the applier knows every path in it: it tracks what it created, so a
parent is checked without following any link on disk. The caller removes the directory on
failure (it is a snapshot being prepared), so a refusal leaves nothing behind.
"""

from __future__ import annotations

import os
import stat

from berth.errors import InvalidArgument

from . import tarstream as t

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"


class UnsafeLayer(InvalidArgument):
    pass


def clean_name(name: str, what: str) -> str:
    """A tar entry name → a relative path with no ``.``/``..``; refuses what could escape."""
    if name.startswith("/"):
        raise UnsafeLayer(f"{what}: refusing entry {name!r}: absolute path")
    parts = []
    for p in name.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            raise UnsafeLayer(f"{what}: refusing entry {name!r}: path escapes the layer (..)")
        parts.append(p)
    return "/".join(parts)


class Applier:
    def __init__(self, root: str, what: str = "layer", allow_devices: bool = True,
                 same_owner: bool = True, recorder=None) -> None:
        # recorder (a tarsplit.Recorder): note each entry so the tar can be rebuilt; it is
        # dropped (self.recorder = None) once an entry's content does not stay at its path.
        self.recorder = recorder
        self._content: set[str] = set()
        self.root = root
        self.what = what
        self.allow_devices = allow_devices
        self.same_owner = same_owner and os.geteuid() == 0
        # path (relative) → kind: "d" directory, "l" symlink, "f" other
        self.kinds: dict[str, str] = {"": "d"}
        self.dir_times: list[tuple[str, float]] = []
        self.size = 0  # docker's layer size: bytes of non-directories, hard links once

    def _abs(self, rel: str) -> str:
        return os.path.join(self.root, rel) if rel else self.root

    def _ensure_parent(self, rel: str, name: str) -> None:
        parent = rel.rpartition("/")[0]
        if self.kinds.get(parent) == "d":
            return
        # Walk down from the root: every component must be a directory this layer made (or
        # one made here implicitly, 0755 root, as dockerd does for a missing parent).
        cur = ""
        for comp in parent.split("/"):
            cur = f"{cur}/{comp}" if cur else comp
            kind = self.kinds.get(cur)
            if kind == "d":
                continue
            if kind == "l":
                raise UnsafeLayer(f"{self.what}: refusing entry {name!r}: its parent "
                                  f"{cur!r} is a symlink")
            if kind == "f":
                raise UnsafeLayer(f"{self.what}: refusing entry {name!r}: its parent "
                                  f"{cur!r} is not a directory")
            os.mkdir(self._abs(cur), 0o755)
            self.kinds[cur] = "d"

    def _remove_existing(self, rel: str, keep_dir: bool) -> None:
        kind = self.kinds.get(rel)
        if kind is None:
            return
        if self.recorder is not None and (rel in self._content or (kind == "d" and not keep_dir
                                          and any(c.startswith(rel + "/")
                                                  for c in self._content))):
            self.recorder = None  # a recorded content is gone: this layer cannot be rebuilt
        p = self._abs(rel)
        if kind == "d":
            if keep_dir:
                return
            import shutil

            shutil.rmtree(p)
            for k in [k for k in self.kinds if k.startswith(rel + "/")]:
                del self.kinds[k]
        else:
            os.unlink(p)
        del self.kinds[rel]

    def apply(self, reader: t.TarReader) -> None:
        for e in reader:
            self._entry(reader, e)
            if self.recorder is not None:
                if e.is_file and e.size and self.kinds.get(clean_name(e.name, self.what)) == "f" \
                        and not clean_name(e.name, self.what).rpartition("/")[2].startswith(
                            WHITEOUT_PREFIX):
                    rel = clean_name(e.name, self.what)
                    self.recorder.entry(e.raw, rel, e.size)
                    self._content.add(rel)
                elif e.size:
                    self.recorder = None  # content that is not kept at a path
                else:
                    self.recorder.entry(e.raw, None, 0)
        # Directory mtimes last: creating children changed them.
        for rel, mtime in reversed(self.dir_times):
            try:
                os.utime(self._abs(rel), (mtime, mtime), follow_symlinks=False)
            except FileNotFoundError:
                pass

    def _entry(self, reader: t.TarReader, e: t.Entry) -> None:
        rel = clean_name(e.name, self.what)
        if not rel:
            # "./" itself: the layer root's metadata
            if e.is_dir:
                self._meta(rel, e, is_link=False)
                self.dir_times.append((rel, e.mtime))
            return
        base = rel.rpartition("/")[2]
        if base.startswith(WHITEOUT_PREFIX):
            self._ensure_parent(rel, e.name)
            parent = rel.rpartition("/")[0]
            if base == OPAQUE:
                os.setxattr(self._abs(parent), OPAQUE_XATTR, b"y", follow_symlinks=False)
                return
            if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
                return  # aufs metadata (.wh..wh.plnk, ...)
            target = f"{parent}/{base[len(WHITEOUT_PREFIX):]}" if parent else \
                base[len(WHITEOUT_PREFIX):]
            if not target.rpartition("/")[2]:
                raise UnsafeLayer(f"{self.what}: refusing entry {e.name!r}: empty whiteout")
            self._remove_existing(target, keep_dir=False)
            os.mknod(self._abs(target), stat.S_IFCHR | 0o000, os.makedev(0, 0))
            self.kinds[target] = "f"
            return
        self._ensure_parent(rel, e.name)
        p = self._abs(rel)
        typ = e.type
        if typ == t.DIRTYPE:
            if self.kinds.get(rel) != "d":
                self._remove_existing(rel, keep_dir=False)
                os.mkdir(p, 0o700)
                self.kinds[rel] = "d"
            self._meta(rel, e, is_link=False)
            self.dir_times.append((rel, e.mtime))
            return
        self._remove_existing(rel, keep_dir=False)
        if e.is_file:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600)
            try:
                reader.copy_to(e, fd)
            finally:
                os.close(fd)
            self.kinds[rel] = "f"
            self.size += e.size
            self._meta(rel, e, is_link=False)
        elif typ == t.SYMTYPE:
            os.symlink(e.linkname, p)
            self.kinds[rel] = "l"
            self.size += len(e.linkname.encode("utf-8", "surrogateescape"))
            self._meta(rel, e, is_link=True)
        elif typ == t.LNKTYPE:
            target = clean_name(e.linkname, self.what)
            kind = self.kinds.get(target)
            if kind is None or kind == "d":
                raise UnsafeLayer(f"{self.what}: refusing hard link {e.name!r} → "
                                  f"{e.linkname!r}: target is not a file in this layer")
            # the target's own path must not run through a symlink either
            self._check_no_symlink_parent(target, e.name)
            os.link(self._abs(target), p, follow_symlinks=False)
            self.kinds[rel] = kind
        elif typ in (t.CHRTYPE, t.BLKTYPE, t.FIFOTYPE):
            if typ != t.FIFOTYPE and not self.allow_devices:
                raise UnsafeLayer(f"{self.what}: refusing device node {e.name!r} "
                                  "(device nodes are not allowed here)")
            fmt = {t.CHRTYPE: stat.S_IFCHR, t.BLKTYPE: stat.S_IFBLK, t.FIFOTYPE: stat.S_IFIFO}
            os.mknod(p, fmt[typ] | 0o600, os.makedev(e.devmajor, e.devminor))
            self.kinds[rel] = "f"
            self._meta(rel, e, is_link=False)
        else:
            raise UnsafeLayer(f"{self.what}: refusing entry {e.name!r}: unsupported tar type "
                              f"{typ!r}")

    def _check_no_symlink_parent(self, rel: str, name: str) -> None:
        cur = ""
        for comp in rel.split("/")[:-1]:
            cur = f"{cur}/{comp}" if cur else comp
            if self.kinds.get(cur) != "d":
                raise UnsafeLayer(f"{self.what}: refusing hard link {name!r}: its target runs "
                                  f"through {cur!r}, not a directory")

    def _meta(self, rel: str, e: t.Entry, is_link: bool) -> None:
        p = self._abs(rel)
        if self.same_owner:
            os.chown(p, e.uid, e.gid, follow_symlinks=False)
        for k, v in e.xattrs.items():
            if k.startswith("trusted.overlay."):
                # overlayfs's own markers (redirect, origin, metacopy...) are not data: taken
                # from an archive they would steer the union mount. Opaque dirs and whiteouts
                # come only from the .wh. entries.
                continue
            try:
                os.setxattr(p, k, v, follow_symlinks=False)
            except OSError as err:
                if not k.startswith("user.") and err.errno in (95, 1):  # ENOTSUP, EPERM
                    continue
                raise
        if not is_link:
            os.chmod(p, e.mode)
            if not e.is_dir:
                os.utime(p, (e.mtime, e.mtime))
        else:
            try:
                os.utime(p, (e.mtime, e.mtime), follow_symlinks=False)
            except OSError:
                pass
