"""The image store: images and references over the content store and the snapshotter, with
garbage collection by mark-and-sweep.

Words: an *image* is its config blob (the image ID is the config's digest, as Docker's), the
descriptors of its layer blobs, their *diffIDs* (digests of the uncompressed layer tars) and
*ChainIDs* (``chain(n) = sha256(chain(n-1) + " " + diffID(n))``, ``chain(0) = diffID(0)``),
and the manifest it came with or was given. A *reference* (``docker.io/library/busybox:latest``
or ``name@sha256:...``) points at one image.

State: ``meta/images/<hex>.json`` per image, ``meta/references.json`` (reference → image ID),
each written atomically; blobs in ``content/``; layers in ``snapshots/``.

GC: roots are every image record (an untagged image stays until removed, as in Docker),
every *lease* (an in-flight load/import/pull holds what it wrote until its image is
recorded), every active snapshot's parent chain (containers' rw layers), and whatever the
registered root providers return (the containers issue adds containers). Mark from the roots,
then sweep unmarked blobs and committed snapshots (leaves first). No reference counts: a
crash cannot make them drift; ``gc()`` after start-up removes what a crash left.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterable

from berth import atomic
from berth.errors import NotFound

from . import tarstream
from .apply import Applier
from .compression import decompressed
from .content import ContentStore, DigestMismatch
from .snapshot import Snapshotter


class NoSuchImage(NotFound):
    pass


def chain_ids(diff_ids: list[str]) -> list[str]:
    out: list[str] = []
    for d in diff_ids:
        if not out:
            out.append(d)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


class Lease:
    """What an in-flight operation has written; GC keeps it until the lease ends."""

    def __init__(self, store: ImageStore) -> None:
        self.store = store
        self.blobs: set[str] = set()
        self.snapshots: set[str] = set()

    def __enter__(self) -> Lease:
        with self.store.lock:
            self.store._leases.append(self)
        return self

    def __exit__(self, exc_type, *_) -> None:
        with self.store.lock:
            self.store._leases.remove(self)
        if exc_type is not None:
            self.store.gc()


class _HashingReader:
    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int) -> bytes:
        b = self._read(n)
        self.hash.update(b)
        self.size += len(b)
        return b


class ImageStore:
    def __init__(self, root: str) -> None:
        self.root = root
        self.content = ContentStore(os.path.join(root, "content"))
        self.snapshots = Snapshotter(os.path.join(root, "snapshots"))
        self.meta = os.path.join(root, "meta")
        os.makedirs(os.path.join(self.meta, "images"), exist_ok=True)
        self.lock = threading.RLock()
        self._leases: list[Lease] = []
        self._root_providers: list[Callable[[], dict[str, Iterable[str]]]] = []
        self._unpack_locks: dict[str, threading.Lock] = {}
        self._images: dict[str, dict] = {}
        for name in os.listdir(os.path.join(self.meta, "images")):
            if name.endswith(".json") and len(name) == 69:
                with open(os.path.join(self.meta, "images", name)) as f:
                    rec = json.load(f)
                self._images[rec["id"]] = rec
        try:
            with open(os.path.join(self.meta, "references.json")) as f:
                self._refs: dict[str, str] = json.load(f)
        except FileNotFoundError:
            self._refs = {}
        self._refs = {r: i for r, i in self._refs.items() if i in self._images}

    # ---------------------------------------------------------------- start-up repair
    def repair(self) -> None:
        """Remove what a crash left: stale ingests, unfinished unpacks, unreferenced data."""
        self.content.cleanup_ingests()
        self.snapshots.cleanup("extract-")
        self.gc()

    # ---------------------------------------------------------------- images
    def images(self) -> list[dict]:
        with self.lock:
            return list(self._images.values())

    def get(self, image_id: str) -> dict:
        with self.lock:
            rec = self._images.get(image_id)
        if rec is None:
            raise NoSuchImage(f"no such image: {image_id}")
        return rec

    def has(self, image_id: str) -> bool:
        with self.lock:
            return image_id in self._images

    def put(self, rec: dict) -> None:
        with self.lock:
            path = os.path.join(self.meta, "images", rec["id"].split(":", 1)[1] + ".json")
            atomic.write_text(path, json.dumps(rec))
            self._images[rec["id"]] = rec

    def delete(self, image_id: str) -> None:
        with self.lock:
            for r in [r for r, i in self._refs.items() if i == image_id]:
                del self._refs[r]
            self._save_refs()
            self._images.pop(image_id, None)
            try:
                os.unlink(os.path.join(self.meta, "images", image_id.split(":", 1)[1] + ".json"))
            except FileNotFoundError:
                pass

    def config(self, image_id: str) -> dict:
        return json.loads(self.content.read(self.get(image_id)["config"]["digest"]))

    # ---------------------------------------------------------------- references
    def refs(self) -> dict[str, str]:
        with self.lock:
            return dict(self._refs)

    def refs_of(self, image_id: str) -> list[str]:
        with self.lock:
            return sorted(r for r, i in self._refs.items() if i == image_id)

    def resolve_ref(self, ref: str) -> str | None:
        with self.lock:
            return self._refs.get(ref)

    def set_ref(self, ref: str, image_id: str) -> str | None:
        """Point ``ref`` at ``image_id``; → the image it pointed at before, if another."""
        with self.lock:
            old = self._refs.get(ref)
            self._refs[ref] = image_id
            self._save_refs()
            return old if old != image_id else None

    def remove_ref(self, ref: str) -> str | None:
        with self.lock:
            old = self._refs.pop(ref, None)
            self._save_refs()
            return old

    def _save_refs(self) -> None:
        atomic.write_text(os.path.join(self.meta, "references.json"),
                          json.dumps(self._refs, sort_keys=True))

    # ---------------------------------------------------------------- leases and GC
    def lease(self) -> Lease:
        return Lease(self)

    def add_root_provider(self, fn: Callable[[], dict[str, Iterable[str]]]) -> None:
        """``fn() → {"images": ids, "blobs": digests, "snapshots": names}`` to keep."""
        self._root_providers.append(fn)

    def image_in_use(self, image_id: str) -> bool:
        return any(image_id in set(fn().get("images", ())) for fn in self._root_providers)

    def gc(self) -> dict:
        """Mark from the roots, sweep the rest; → what was removed."""
        with self.lock:
            blobs: set[str] = set()
            snaps: set[str] = set()
            for rec in self._images.values():
                blobs.add(rec["config"]["digest"])
                if rec.get("manifest"):
                    blobs.add(rec["manifest"]["digest"])
                blobs.update(layer["digest"] for layer in rec["layers"])
                snaps.update(rec["chain_ids"])
            for lease in self._leases:
                blobs |= lease.blobs
                snaps |= lease.snapshots
            for fn in self._root_providers:
                got = fn()
                blobs.update(got.get("blobs", ()))
                snaps.update(got.get("snapshots", ()))
                for iid in got.get("images", ()):
                    rec = self._images.get(iid)
                    if rec:
                        snaps.update(rec["chain_ids"])
            infos = {i["name"]: i for i in self.snapshots.walk()}
            # every non-committed snapshot (a container's rw layer) keeps its parents
            for info in infos.values():
                if info["kind"] != "committed":
                    snaps.add(info["name"])
            # parents of kept snapshots are kept
            for name in list(snaps):
                p = infos.get(name, {}).get("parent")
                while p and p not in snaps:
                    snaps.add(p)
                    p = infos.get(p, {}).get("parent")
            removed_blobs = [d for d in self.content.walk() if d not in blobs]
            for d in removed_blobs:
                try:
                    self.content.delete(d)
                except NotFound:
                    pass
            removed_snaps = []
            doomed = {n for n, i in infos.items() if n not in snaps and i["kind"] == "committed"}
            while doomed:
                # leaves first: a snapshot with children cannot go before them
                leaves = [n for n in doomed
                          if not any(infos[c]["parent"] == n for c in doomed)]
                if not leaves:
                    break
                for n in leaves:
                    self.snapshots.remove(n)
                    removed_snaps.append(n)
                    doomed.discard(n)
            return {"blobs": removed_blobs, "snapshots": removed_snaps}

    # ---------------------------------------------------------------- layers
    def _unpack_lock(self, chain_id: str) -> threading.Lock:
        with self.lock:
            return self._unpack_locks.setdefault(chain_id, threading.Lock())

    def unpack(self, layer_digest: str, diff_id: str, chain_id: str, lease: Lease,
               allow_devices: bool = True) -> int:
        """Ensure the committed snapshot ``chain_id`` exists, applying the layer blob;
        → the layer's uncompressed size. The diffID is verified while applying."""
        with self._unpack_lock(chain_id):
            with self.lock:
                lease.snapshots.add(chain_id)
                if self.snapshots.exists(chain_id):
                    return self.snapshots.stat(chain_id).get("diff_size", -1)
            key = "extract-" + os.urandom(8).hex()
            self.snapshots.prepare(key, None)
            ok = False
            try:
                with self.content.open(layer_digest) as f:
                    read, _kind = decompressed(f.read, f"layer {layer_digest}")
                    h = _HashingReader(read)
                    applier = Applier(self.snapshots.dir_of(key), f"layer {diff_id}",
                                      allow_devices=allow_devices)
                    reader = tarstream.TarReader(h.read, f"layer {diff_id}")
                    applier.apply(reader)
                    reader.drain()
                got = "sha256:" + h.hash.hexdigest()
                if got != diff_id:
                    raise DigestMismatch(f"layer {layer_digest}: diffID mismatch: the config "
                                         f"says {diff_id}, the content is {got}")
                if self.snapshots.commit(chain_id, key, size=applier.size):
                    self._set_snapshot_extra(chain_id, {"diff_size": h.size})
                ok = True
                return h.size
            finally:
                if not ok and self.snapshots.exists(key):
                    self.snapshots.remove(key)

    def _set_snapshot_extra(self, name: str, extra: dict) -> None:
        snap = self.snapshots
        with snap._lock:
            info = snap._by_name[name]
            info.update(extra)
            snap._write_info(info)

    def link_chain(self, chain: list[str]) -> None:
        """Record each layer's parent once the whole chain is unpacked (layers of one image
        are applied in parallel, independent of each other)."""
        parent = None
        for c in chain:
            if self.snapshots.stat(c)["parent"] != parent:
                self._set_snapshot_extra(c, {"parent": parent})
            parent = c

    def image_size(self, rec: dict) -> int:
        total = 0
        for c in rec["chain_ids"]:
            try:
                total += self.snapshots.usage(c)
            except NotFound:
                pass
        return total
