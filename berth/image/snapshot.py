"""Overlay snapshots, on containerd's model: directories that are layers, and Mount records.

Words:
- a *snapshot* is a directory tree ``snapshots/<id>/fs`` with an ``info.json`` beside it;
- *committed* snapshots are immutable layers, named by their *ChainID* (the layer's identity
  together with every layer under it); *active* snapshots are writable, named by a caller's
  *key* (a container's rw layer, an unpack in progress), with ``work/`` beside ``fs/``;
- a snapshot's *parent* is the committed snapshot it sits on (``None`` for a base layer).

The snapshotter never mounts: ``prepare``/``view``/``mounts`` return ``Mount`` records (the
type, source and options that mount(2) takes), and the caller mounts them where it wants —
the runtime into a container's rootfs, a test into a temp dir, ``diff``/``commit`` into a view.

    import a layer:   key = "extract-<rand>"; prepare(key, None) → apply the tar into
                      dir_of(key) (overlay format, parent-independent); commit(chain_id, key)
    run a container:  mounts = prepare("container-<id>", image_chain_id) → overlay with the
                      image's layers as lowerdir and the container's upper/work; remove(key)
                      when the container is deleted.

Invariants: a committed snapshot is never written; ``commit`` is a rename, so a crash leaves
the active snapshot (removed at start-up by ``cleanup`` for ``extract-*`` keys) or the committed
one, never half of each; ``remove`` of a snapshot with children is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time

from berth import atomic
from berth.errors import Conflict, NotFound


class NoSuchSnapshot(NotFound):
    pass


class SnapshotExists(Conflict):
    pass


class SnapshotInUse(Conflict):
    pass


class Mount:
    """What mount(2) takes: ``mount -t TYPE -o OPTIONS SOURCE TARGET``."""

    __slots__ = ("type", "source", "options")

    def __init__(self, type: str, source: str, options: list[str]) -> None:
        self.type = type
        self.source = source
        self.options = options

    def __repr__(self) -> str:
        return f"Mount({self.type!r}, {self.source!r}, {self.options!r})"

    def to_dict(self) -> dict:
        return {"Type": self.type, "Source": self.source, "Options": list(self.options)}


def mount_all(mounts: list[Mount], target: str) -> None:
    """Mount ``mounts`` on ``target`` (a helper for callers: the snapshotter never mounts)."""
    from berth.linux import mount as m

    for mt in mounts:
        flags = 0
        data = []
        for o in mt.options:
            if o == "ro":
                flags |= m.MS_RDONLY
            elif o == "rbind":
                flags |= m.MS_BIND | m.MS_REC
            elif o == "bind":
                flags |= m.MS_BIND
            else:
                data.append(o)
        m.mount(mt.source, target, mt.type if mt.type != "bind" else None,
                flags & ~m.MS_RDONLY if flags & m.MS_BIND else flags, ",".join(data) or None)
        if flags & m.MS_BIND and flags & m.MS_RDONLY:
            m.mount(None, target, None, m.MS_BIND | m.MS_REMOUNT | m.MS_RDONLY, None)


class Snapshotter:
    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, mode=0o700, exist_ok=True)
        self._lock = threading.RLock()
        self._by_name: dict[str, dict] = {}
        for sid in os.listdir(root):
            info = self._read_info(sid)
            if info is None:
                shutil.rmtree(os.path.join(root, sid), ignore_errors=True)
                continue
            self._by_name[info["name"]] = info

    def _read_info(self, sid: str) -> dict | None:
        try:
            with open(os.path.join(self.root, sid, "info.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def _write_info(self, info: dict) -> None:
        atomic.write_text(os.path.join(self.root, info["id"], "info.json"), json.dumps(info))

    # ------------------------------------------------------------------ queries
    def stat(self, name: str) -> dict:
        with self._lock:
            info = self._by_name.get(name)
        if info is None:
            raise NoSuchSnapshot(f"no such snapshot: {name}")
        return dict(info)

    def exists(self, name: str) -> bool:
        with self._lock:
            return name in self._by_name

    def walk(self) -> list[dict]:
        with self._lock:
            return [dict(i) for i in self._by_name.values()]

    def dir_of(self, name: str) -> str:
        """The ``fs`` directory (upperdir for an active snapshot, the layer for a committed)."""
        return os.path.join(self.root, self.stat(name)["id"], "fs")

    def path_of(self, name: str, filename: str) -> str:
        """A file kept beside the snapshot's ``fs`` (metadata such as a tar-split)."""
        return os.path.join(self.root, self.stat(name)["id"], filename)

    def chain(self, name: str | None) -> list[str]:
        """``fs`` dirs from ``name`` down to the base layer (lowerdir order: top first)."""
        dirs = []
        with self._lock:
            while name:
                info = self._by_name.get(name)
                if info is None:
                    raise NoSuchSnapshot(f"no such snapshot: {name}")
                dirs.append(os.path.join(self.root, info["id"], "fs"))
                name = info["parent"]
        return dirs

    def children(self, name: str) -> list[str]:
        with self._lock:
            return [n for n, i in self._by_name.items() if i["parent"] == name]

    # ------------------------------------------------------------------ changes
    def prepare(self, key: str, parent: str | None, labels: dict | None = None) -> list[Mount]:
        """A new active snapshot on ``parent``; → the mounts for a writable rootfs."""
        self._new(key, parent, "active", labels)
        return self.mounts(key)

    def view(self, key: str, parent: str) -> list[Mount]:
        """A read-only view of ``parent`` (for diff/export); remove(key) when done."""
        self._new(key, parent, "view", None)
        return self.mounts(key)

    def _new(self, key: str, parent: str | None, kind: str, labels: dict | None) -> dict:
        with self._lock:
            if key in self._by_name:
                raise SnapshotExists(f"snapshot {key} already exists")
            if parent is not None:
                p = self._by_name.get(parent)
                if p is None:
                    raise NoSuchSnapshot(f"no such snapshot: {parent} (parent of {key})")
                if p["kind"] != "committed":
                    raise Conflict(f"snapshot {parent} is not committed: cannot be a parent")
            sid = os.urandom(8).hex()
            d = os.path.join(self.root, sid)
            os.mkdir(d, 0o700)
            if kind != "view":
                os.mkdir(os.path.join(d, "fs"), 0o755)
            if kind == "active":
                os.mkdir(os.path.join(d, "work"), 0o700)
            info = {"id": sid, "name": key, "kind": kind, "parent": parent,
                    "created": time.time(), "labels": labels or {}, "size": -1}
            self._write_info(info)
            self._by_name[key] = info
            return info

    def mounts(self, key: str) -> list[Mount]:
        info = self.stat(key)
        d = os.path.join(self.root, info["id"])
        lowers = self.chain(info["parent"])
        if info["kind"] == "view" or info["kind"] == "committed":
            if info["kind"] == "committed":
                lowers = [os.path.join(d, "fs"), *lowers]
            if len(lowers) == 1:
                return [Mount("bind", lowers[0], ["ro", "rbind"])]
            return [Mount("overlay", "overlay", ["lowerdir=" + ":".join(lowers)])]
        if not lowers:
            return [Mount("bind", os.path.join(d, "fs"), ["rw", "rbind"])]
        return [Mount("overlay", "overlay", [
            f"workdir={os.path.join(d, 'work')}", f"upperdir={os.path.join(d, 'fs')}",
            "lowerdir=" + ":".join(lowers), "index=off"])]

    def commit(self, name: str, key: str, size: int = -1) -> bool:
        """Make active ``key`` the committed snapshot ``name``. → False if ``name`` existed
        already (a concurrent unpack of the same layer won: ``key`` is removed)."""
        with self._lock:
            info = self._by_name.get(key)
            if info is None or info["kind"] != "active":
                raise NoSuchSnapshot(f"no such active snapshot: {key}")
            if name in self._by_name:
                self._remove_locked(key)
                return False
            d = os.path.join(self.root, info["id"])
            shutil.rmtree(os.path.join(d, "work"), ignore_errors=True)
            new = dict(info, name=name, kind="committed", size=size, created=time.time())
            self._write_info(new)
            del self._by_name[key]
            self._by_name[name] = new
            return True

    def remove(self, name: str) -> None:
        with self._lock:
            self._remove_locked(name)

    def _remove_locked(self, name: str) -> None:
        info = self._by_name.get(name)
        if info is None:
            raise NoSuchSnapshot(f"no such snapshot: {name}")
        kids = [n for n, i in self._by_name.items() if i["parent"] == name]
        if kids:
            raise SnapshotInUse(f"snapshot {name} has children: {', '.join(kids[:3])}")
        d = os.path.join(self.root, info["id"])
        # Rename first: a crash mid-delete leaves a directory without info.json, swept at start.
        trash = os.path.join(self.root, "rm-" + info["id"])
        os.rename(os.path.join(d, "info.json"), os.path.join(d, "info.json.rm"))
        del self._by_name[name]
        os.rename(d, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def usage(self, name: str) -> int:
        """Bytes in the snapshot's own directory (docker's rule: non-directories, hard links
        counted once); cached for committed snapshots."""
        info = self.stat(name)
        if info["kind"] == "committed" and info.get("size", -1) >= 0:
            return info["size"]
        return dir_size(os.path.join(self.root, info["id"], "fs"))

    def cleanup(self, prefix: str = "extract-") -> int:
        """Remove active snapshots whose key starts with ``prefix`` (a crash left them)."""
        with self._lock:
            names = [n for n, i in self._by_name.items()
                     if i["kind"] != "committed" and n.startswith(prefix)]
            for n in names:
                self._remove_locked(n)
            return len(names)


def dir_size(path: str) -> int:
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [path]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except FileNotFoundError:
            continue
        with it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                    continue
                st = e.stat(follow_symlinks=False)
                if st.st_nlink > 1:
                    k = (st.st_dev, st.st_ino)
                    if k in seen:
                        continue
                    seen.add(k)
                total += st.st_size
    return total
