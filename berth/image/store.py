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
import logging
import os
import threading
from collections.abc import Callable, Iterable

from berth import atomic
from berth.errors import NotFound

from . import tarsplit, tarstream
from .apply import Applier
from .compression import decompressed
from .content import ContentStore, DigestMismatch
from .snapshot import Snapshotter

log = logging.getLogger("berth.image")


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


class _CountingReader:
    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self.size = 0

    def read(self, n: int) -> bytes:
        b = self._read(n)
        self.size += len(b)
        return b


class Extracted:
    """A layer applied into the active snapshot ``key``, with its diffID and sizes."""

    __slots__ = ("key", "diff_id", "diff_size", "size", "split")

    def __init__(self, key: str, diff_id: str, diff_size: int, size: int,
                 split: bool = False) -> None:
        self.split = split
        self.key = key
        self.diff_id = diff_id
        self.diff_size = diff_size
        self.size = size


class _Rebuilder:
    """What the content store asks for a digest it has no blob for: an uncompressed layer
    kept as a snapshot with a verified tar-split."""

    def __init__(self, store: ImageStore) -> None:
        self.store = store

    def has(self, digest: str) -> bool:
        return self.store._split_snapshot(digest) is not None

    def size(self, digest: str) -> int:
        name = self.store._split_snapshot(digest)
        if name is None:
            raise NotFound(f"no such blob: {digest}")
        return self.store.snapshots.stat(name)["diff_size"]

    def open(self, digest: str) -> tarsplit.Reader:
        name = self.store._split_snapshot(digest)
        if name is None:
            raise NotFound(f"no such blob: {digest}")
        snaps = self.store.snapshots
        return tarsplit.Reader(snaps.dir_of(name), snaps.path_of(name, tarsplit.NAME))


class ImageStore:
    def __init__(self, root: str) -> None:
        self.root = root
        self.content = ContentStore(os.path.join(root, "content"))
        self.snapshots = Snapshotter(os.path.join(root, "snapshots"))
        self.content.rebuilder = _Rebuilder(self)
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
            raise NoSuchImage(f"No such image: {image_id}")
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

    def extract(self, layer_digest: str, allow_devices: bool = True) -> Extracted:
        """Apply a layer into a new active snapshot (not yet named by its ChainID).

        The diffID is computed while applying; for an uncompressed blob it is the blob's own
        digest, which the content store verified when the blob came in, so it is not hashed
        again, and a tar-split is recorded so the blob need not be kept. On failure nothing
        is left."""
        key = "extract-" + os.urandom(8).hex()
        self.snapshots.prepare(key, None)
        try:
            with self.open_layer(layer_digest) as f:
                read, kind = decompressed(f.read, f"layer {layer_digest}")
                plain = kind == "none"
                h = _HashingReader(read) if not plain else _CountingReader(read)
                recorder = tarsplit.Recorder() if plain else None
                applier = Applier(self.snapshots.dir_of(key), f"layer {layer_digest}",
                                  allow_devices=allow_devices, recorder=recorder)
                reader = tarstream.TarReader(h.read, f"layer {layer_digest}", capture=plain)
                applier.apply(reader)
                reader.drain()
            split = bool(plain and applier.recorder is not None and reader.exact
                         and reader.trailer is not None)
            if split:
                recorder.save(self.snapshots.path_of(key, tarsplit.NAME), reader.trailer)
            diff_id = layer_digest if plain else "sha256:" + h.hash.hexdigest()
            return Extracted(key, diff_id, h.size, applier.size, split)
        except BaseException:
            self.snapshots.remove(key)
            raise

    # ---------------------------------------------------------------- layer bytes
    def _split_snapshot(self, diff_id: str) -> str | None:
        for info in self.snapshots.walk():
            if info.get("diff_id") == diff_id and info.get("tarsplit"):
                return info["name"]
        return None

    def open_layer(self, digest: str):
        """The layer's bytes (a file-like ``read``): its blob, or, for an uncompressed layer
        kept only as files, the tar rebuilt from its snapshot and tar-split. The content
        store answers the same for such digests (``content.open``)."""
        return self.content.open(digest)

    def layer_size(self, digest: str) -> int:
        return self.content.size(digest)

    def drop_layer_blob(self, digest: str) -> bool:
        """Delete an uncompressed layer's blob once a verified tar-split can rebuild it."""
        with self.lock:
            if self._split_snapshot(digest) is None or \
                    not os.path.exists(self.content.path(digest)):
                return False
            self.content.delete(digest)
            return True

    def _verify_split(self, name: str, diff_size: int) -> bool:
        """Check a tar-split against its snapshot without reading the content: the rebuilt
        length must be the layer's and every content file must have its recorded size. (The
        bytes themselves are the ones the applier wrote from the verified blob, at paths no
        later entry touched; ``Applier`` drops the record otherwise.)"""
        split = self.snapshots.path_of(name, tarsplit.NAME)
        try:
            return tarsplit.check(self.snapshots.dir_of(name), split, diff_size)
        except (OSError, tarsplit.TarSplitError):
            return False

    def discard(self, ex: Extracted) -> None:
        if self.snapshots.exists(ex.key):
            self.snapshots.remove(ex.key)

    def unpack(self, layer_digest: str, diff_id: str, chain_id: str, lease: Lease,
               allow_devices: bool = True, pre: Extracted | None = None) -> int:
        """Ensure the committed snapshot ``chain_id`` exists, from ``pre`` (an extraction made
        while the archive streamed in) or by applying the layer blob now; → the layer's
        uncompressed size. The diffID is verified before the snapshot is named."""
        with self._unpack_lock(chain_id):
            with self.lock:
                lease.snapshots.add(chain_id)
                exists = self.snapshots.exists(chain_id)
            if exists:
                if pre is not None:
                    self.discard(pre)
                return self.snapshots.stat(chain_id).get("diff_size", -1)
            ex = pre if pre is not None and self.snapshots.exists(pre.key) else \
                self.extract(layer_digest, allow_devices)
            try:
                if ex.diff_id != diff_id:
                    raise DigestMismatch(f"layer {layer_digest}: diffID mismatch: the config "
                                         f"says {diff_id}, the content is {ex.diff_id}")
                if self.snapshots.commit(chain_id, ex.key, size=ex.size):
                    extra = {"diff_size": ex.diff_size, "diff_id": diff_id}
                    if ex.split:
                        # trusted only once it rebuilds the very bytes of the diffID
                        if self._verify_split(chain_id, ex.diff_size):
                            extra["tarsplit"] = True
                        else:
                            log.warning("layer %s: tar-split does not rebuild it; keeping "
                                        "the blob", diff_id)
                            os.unlink(self.snapshots.path_of(chain_id, tarsplit.NAME))
                    self._set_snapshot_extra(chain_id, extra)
            finally:
                self.discard(ex)
            return ex.diff_size

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

    def commit_layer(self, key: str, lease: Lease) -> tuple[str, str, int]:
        """Turn active snapshot ``key``'s own changes (a container's upperdir) into a layer:
        the tar with OCI whiteouts goes into the content store and is applied as a new
        committed snapshot on ``key``'s parent. → (diffID, ChainID, size). ``key`` stays."""
        from .diff import write_diff

        info = self.snapshots.stat(key)
        parent = info["parent"]
        w = self.content.writer()
        try:
            write_diff(self.snapshots.dir_of(key), w.write)
            diff_id = w.commit()
        except BaseException:
            w.abort()
            raise
        lease.blobs.add(diff_id)
        chain = diff_id if parent is None else chain_ids([parent, diff_id])[1]
        size = self.unpack(diff_id, diff_id, chain, lease)
        self.link_chain_to(chain, parent)
        return diff_id, chain, size

    def link_chain_to(self, name: str, parent: str | None) -> None:
        if self.snapshots.stat(name)["parent"] != parent:
            self._set_snapshot_extra(name, {"parent": parent})

    def image_size(self, rec: dict) -> int:
        total = 0
        for c in rec["chain_ids"]:
            try:
                total += self.snapshots.usage(c)
            except NotFound:
                pass
        return total
