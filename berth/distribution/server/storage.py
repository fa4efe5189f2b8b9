"""The registry server's storage: content-addressed blobs shared by all repositories.

Layout under the registry root::

    blobs/<alg>/<hex>                           every blob and manifest, once, by digest
    repositories/<name>/_layers/<alg>/<hex>     a blob linked into the repository (empty file)
    repositories/<name>/_manifests/<alg>/<hex>  a manifest revision; content: its media type
    repositories/<name>/_tags/<tag>             a tag; content: the manifest digest
    repositories/<name>/_referrers/<alg>/<subject-hex>/<alg>-<hex>
                                                a manifest whose subject is that digest;
                                                content: its referrers descriptor (JSON)
    uploads/<uuid>/info, uploads/<uuid>/data    an upload session in progress
    .lock                                       held shared by servers, exclusively by gc

Invariants:
- A file under blobs/ always holds exactly the bytes its name is the digest of: blobs are
  hashed while they are received and reach blobs/ only by rename after the digest checked, so
  a client that disconnects mid-upload leaves nothing visible, and two uploads of one blob end
  with one copy (the second rename replaces identical bytes, or is skipped).
- Repository views are links: a blob is visible in a repository only when linked there (as the
  reference registry does), so pushing to a second repository needs an upload or a mount.
- Tags and links are written atomically (temp + rename); a reader sees the old or the new.
- Names, tags and digests are checked against the distribution grammar before any path is
  built from them, so no request can name a file outside the root.
"""

import errno
import fcntl
import json
import os
import time
import uuid as uuidlib

from berth import atomic
from berth.distribution import media
from berth.distribution.reference import check_digest, check_name, check_tag, hasher
from berth.errors import Conflict, InvalidArgument, NotFound

__all__ = ["BlobUnknown", "ManifestUnknown", "NameUnknown", "Storage", "Upload", "UploadUnknown"]

# An upload's in-memory hash state is kept between requests; after a restart it is recomputed.
# A session untouched this long is abandoned (its client died mid-push) and is purged.
UPLOAD_STALE = 24 * 3600


class BlobUnknown(NotFound):
    pass


class ManifestUnknown(NotFound):
    pass


class NameUnknown(NotFound):
    pass


class UploadUnknown(NotFound):
    pass


class RangeInvalid(InvalidArgument):
    pass


class DigestInvalid(InvalidArgument):
    pass


class SizeInvalid(InvalidArgument):
    pass


class ManifestBlobUnknown(InvalidArgument):
    def __init__(self, message: str, digest: str) -> None:
        super().__init__(message)
        self.digest = digest


class RootInUse(Conflict):
    pass


class NotARegistry(InvalidArgument):
    pass


def _split(digest: str) -> tuple[str, str]:
    alg, _, enc = check_digest(digest).partition(":")
    return alg, enc


class Upload:
    """One upload session: bytes appended in order to ``data``, hashed as they arrive."""

    def __init__(self, storage: "Storage", name: str, uuid: str, algorithm: str) -> None:
        self.storage = storage
        self.name = name
        self.uuid = uuid
        self.algorithm = algorithm
        self.dir = os.path.join(storage.root, "uploads", uuid)
        self.data = os.path.join(self.dir, "data")
        self._hash = None
        self._hashed = 0
        self._lock = None

    @property
    def lock(self):
        """Serialises the requests on one session (PATCH, PUT, DELETE) in the server's loop."""
        if self._lock is None:
            import asyncio

            self._lock = asyncio.Lock()
        return self._lock

    @property
    def size(self) -> int:
        try:
            return os.stat(self.data).st_size
        except FileNotFoundError:
            raise UploadUnknown(f"blob upload unknown: {self.uuid}") from None

    def _state(self):
        """The running hash covering the whole of ``data`` (recomputed after a restart)."""
        size = self.size
        if self._hash is None or self._hashed != size:
            h = hasher(self.algorithm)
            with open(self.data, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            self._hash, self._hashed = h, size
        return self._hash

    async def append(self, chunks, start: int | None = None, length: int | None = None) -> int:
        """Append an async stream of byte chunks; on any failure the upload is as before.

        ``start`` (from Content-Range) must equal the current size, else RangeInvalid (416).
        Returns the new size.
        """
        size = self.size
        if start is not None and start != size:
            raise RangeInvalid(f"range start {start} does not follow upload offset {size}")
        h = self._state()
        saved = h.copy()
        fd = os.open(self.data, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        n = 0
        try:
            async for chunk in chunks:
                h.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
                n += len(chunk)
            if length is not None and n != length:
                raise SizeInvalid(f"chunk has {n} bytes, Content-Length said {length}")
        except BaseException:
            # a cut connection or a bad chunk: roll back to the last good offset
            os.ftruncate(fd, size)
            self._hash, self._hashed = saved, size
            raise
        finally:
            os.close(fd)
        self._hashed = size + n
        return size + n

    def commit(self, digest: str) -> str:
        """Verify ``digest`` over the whole upload, move it into blobs/, link it, end it."""
        alg, enc = _split(digest)
        h = self._state() if alg == self.algorithm else None
        if h is None:
            h = hasher(alg)
            with open(self.data, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
        if h.hexdigest() != enc:
            raise DigestInvalid(f"digest {digest} does not match the uploaded content "
                                f"({alg}:{h.hexdigest()})")
        self.storage._adopt_file(self.data, digest)
        self.storage.link_blob(self.name, digest)
        self.cancel()
        return digest

    def cancel(self) -> None:
        for f in ("data", "info"):
            try:
                os.unlink(os.path.join(self.dir, f))
            except FileNotFoundError:
                pass
        try:
            os.rmdir(self.dir)
        except OSError:
            pass
        self.storage._uploads.pop(self.uuid, None)


class Storage:
    """Filesystem storage of one registry root; safe for concurrent requests in one process."""

    def __init__(self, root: str, *, sync: bool = True, create: bool = True) -> None:
        """``create=False`` (gc) refuses a root that is not a registry's, changing nothing."""
        self.root = os.path.abspath(root)
        self.sync = sync
        if not create and not all(os.path.isdir(os.path.join(self.root, d))
                                  for d in ("blobs", "repositories", "uploads")):
            raise NotARegistry(f"no registry root at {self.root}")
        for d in ("blobs", "repositories", "uploads"):
            try:
                os.makedirs(os.path.join(self.root, d), exist_ok=True)
            except (NotADirectoryError, FileExistsError):
                raise NotARegistry(f"registry root {self.root} is not a directory") from None
        self._uploads: dict[str, Upload] = {}
        self._lock_fd: int | None = None

    # -- locking against gc --------------------------------------------------------------------

    def lock(self, exclusive: bool = False) -> None:
        """Hold the root's lock: shared for serving, exclusive for gc (which then refuses)."""
        fd = os.open(os.path.join(self.root, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                what = "being served" if exclusive else "being garbage-collected"
                raise RootInUse(f"registry root {self.root} is {what}") from None
            raise
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- paths ---------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> str:
        alg, enc = _split(digest)
        return os.path.join(self.root, "blobs", alg, enc)

    def _repo(self, name: str) -> str:
        return os.path.join(self.root, "repositories", check_name(name))

    def _link(self, name: str, kind: str, digest: str) -> str:
        alg, enc = _split(digest)
        return os.path.join(self._repo(name), kind, alg, enc)

    def repo_exists(self, name: str) -> bool:
        r = self._repo(name)
        return any(os.path.isdir(os.path.join(r, k)) for k in ("_layers", "_manifests", "_tags"))

    # -- blobs ---------------------------------------------------------------------------------

    def has_blob(self, digest: str) -> bool:
        return os.path.exists(self.blob_path(digest))

    def stat_blob(self, name: str, digest: str, *, manifests: bool = False) -> int:
        """Size of a blob linked in ``name`` (or, with ``manifests``, a manifest revision
        of it, which clients may fetch as a blob); BlobUnknown if it is not there."""
        if not os.path.exists(self._link(name, "_layers", digest)) and not (
                manifests and os.path.exists(self._link(name, "_manifests", digest))):
            raise BlobUnknown(f"blob unknown to registry: {digest}")
        try:
            return os.stat(self.blob_path(digest)).st_size
        except FileNotFoundError:
            raise BlobUnknown(f"blob unknown to registry: {digest}") from None

    def link_blob(self, name: str, digest: str) -> None:
        self._touch(self._link(name, "_layers", digest), b"")

    def unlink_blob(self, name: str, digest: str) -> None:
        try:
            os.unlink(self._link(name, "_layers", digest))
        except FileNotFoundError:
            raise BlobUnknown(f"blob unknown to registry: {digest}") from None

    def mount_blob(self, name: str, digest: str, source: str | None) -> bool:
        """Link a blob of ``source`` into ``name``; False if ``source`` does not have it.
        With no ``source``, any blob the registry holds (the caller decides who may)."""
        if source is None:
            if not self.has_blob(digest):
                return False
        elif not self.repo_exists(source):
            return False
        else:
            try:
                self.stat_blob(source, digest)
            except NotFound:
                return False
        self.link_blob(name, digest)
        return True

    def _touch(self, path: str, content: bytes) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic.write_bytes(path, content, sync=False)

    def _adopt_file(self, path: str, digest: str) -> None:
        """Move a verified file into blobs/ (or drop it when that blob is already there)."""
        target = self.blob_path(digest)
        if os.path.exists(target):
            os.unlink(path)
            return
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if self.sync:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.rename(path, target)
        if self.sync:
            atomic.fsync_dir(os.path.dirname(target))

    def _put_bytes(self, data: bytes, digest: str) -> None:
        target = self.blob_path(digest)
        if os.path.exists(target):
            return
        os.makedirs(os.path.dirname(target), exist_ok=True)
        atomic.write_bytes(target, data, sync=self.sync)

    # -- uploads -------------------------------------------------------------------------------

    def new_upload(self, name: str, algorithm: str = "sha256") -> Upload:
        check_name(name)
        hasher(algorithm)  # refuses an unsupported algorithm before anything is made
        uid = str(uuidlib.uuid4())
        d = os.path.join(self.root, "uploads", uid)
        os.makedirs(d)
        with open(os.path.join(d, "data"), "wb"):
            pass
        info = {"name": name, "algorithm": algorithm, "started": time.time()}
        atomic.write_text(os.path.join(d, "info"), json.dumps(info), sync=False)
        up = Upload(self, name, uid, algorithm)
        self._uploads[uid] = up
        return up

    def purge_uploads(self, max_age: float = UPLOAD_STALE) -> int:
        """Delete upload sessions with no bytes received for ``max_age`` seconds (as the
        reference registry's upload purging); returns how many."""
        base = os.path.join(self.root, "uploads")
        now, n = time.time(), 0
        for uid in os.listdir(base):
            d = os.path.join(base, uid)
            try:
                last = max(os.stat(os.path.join(d, f)).st_mtime for f in ("info", "data"))
            except (FileNotFoundError, NotADirectoryError):
                last = 0.0  # half made or half removed
            if now - last < max_age:
                continue
            up = self._uploads.get(uid)
            if up is not None and up.lock.locked():
                continue  # a request is writing to it right now
            Upload(self, "", uid, "sha256").cancel()
            n += 1
        return n

    def get_upload(self, name: str, uid: str) -> Upload:
        up = self._uploads.get(uid)
        if up is not None and up.name == name:
            return up
        try:
            uuidlib.UUID(uid)
            with open(os.path.join(self.root, "uploads", uid, "info")) as f:
                info = json.load(f)
        except (ValueError, OSError):
            raise UploadUnknown(f"blob upload unknown: {uid}") from None
        if info.get("name") != name:
            raise UploadUnknown(f"blob upload unknown: {uid}")
        up = Upload(self, name, uid, info.get("algorithm", "sha256"))
        self._uploads[uid] = up
        return up

    # -- manifests -----------------------------------------------------------------------------

    def put_manifest(self, name: str, raw: bytes, content_type: str | None,
                     reference: str | None, tags: list[str] = ()) -> tuple[str, media.Manifest]:
        """Validate and store a manifest; tag it. Returns its digest and the parsed manifest.

        Refuses (MANIFEST_BLOB_UNKNOWN) a manifest naming a blob, or an index naming a
        manifest, that the repository lacks; a ``subject`` may name a manifest not yet pushed.
        """
        check_name(name)
        if reference is not None and ":" in reference:
            algorithm = check_digest(reference).partition(":")[0]
        else:
            algorithm = "sha256"
            tags = [check_tag(reference), *tags] if reference is not None else list(tags)
        for t in tags:
            check_tag(t)
        h = hasher(algorithm)
        h.update(raw)
        digest = f"{algorithm}:{h.hexdigest()}"
        if reference is not None and ":" in reference and reference != digest:
            raise DigestInvalid(f"manifest digest {digest} does not match {reference}")
        m = media.parse_manifest(raw, content_type)
        for d in m.manifests:
            if not os.path.exists(self._link(name, "_manifests", d.digest)):
                raise ManifestBlobUnknown(f"manifest unknown to repository {name}: {d.digest}",
                                          d.digest)
        for d in m.blobs():
            try:
                size = self.stat_blob(name, d.digest)
            except NotFound:
                raise ManifestBlobUnknown(f"blob unknown to repository {name}: {d.digest}",
                                          d.digest) from None
            if size != d.size:
                raise media.InvalidManifest(
                    f"blob {d.digest} has size {size}, the manifest says {d.size}")
        self._put_bytes(raw, digest)
        self._touch(self._link(name, "_manifests", digest), m.media_type.encode())
        if m.subject is not None:
            desc = {"mediaType": m.media_type, "digest": digest, "size": len(raw)}
            at = m.artifact_type or (m.config.media_type if m.config else None)
            if at:
                desc["artifactType"] = at
            if m.annotations:
                desc["annotations"] = m.annotations
            alg, enc = _split(m.subject.digest)
            path = os.path.join(self._repo(name), "_referrers", alg, enc,
                                digest.replace(":", "-"))
            self._touch(path, json.dumps(desc).encode())
        for t in tags:
            self._touch(os.path.join(self._repo(name), "_tags", t), digest.encode())
        return digest, m

    def resolve(self, name: str, reference: str) -> str:
        """The digest a tag names (or the digest itself), if the repository has it."""
        if not self.repo_exists(name):
            raise NameUnknown(f"repository name not known to registry: {name}")
        if ":" in reference:
            digest = check_digest(reference)
        else:
            try:
                with open(os.path.join(self._repo(name), "_tags", check_tag(reference))) as f:
                    digest = f.read().strip()
            except FileNotFoundError:
                raise ManifestUnknown(f"manifest unknown: {name}:{reference}") from None
        if not os.path.exists(self._link(name, "_manifests", digest)):
            raise ManifestUnknown(f"manifest unknown: {name}@{digest}")
        return digest

    def get_manifest(self, name: str, reference: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of a manifest by tag or digest."""
        digest = self.resolve(name, reference)
        with open(self._link(name, "_manifests", digest)) as f:
            media_type = f.read().strip()
        try:
            with open(self.blob_path(digest), "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            raise ManifestUnknown(f"manifest unknown: {name}@{digest}") from None
        return raw, media_type, digest

    def delete_manifest(self, name: str, reference: str) -> None:
        """Delete a tag, or a manifest revision and every tag naming it."""
        if ":" not in reference:
            self.resolve(name, reference)
            os.unlink(os.path.join(self._repo(name), "_tags", reference))
            return
        digest = self.resolve(name, reference)
        raw, _, _ = self.get_manifest(name, digest)
        for t in self.tags(name):
            p = os.path.join(self._repo(name), "_tags", t)
            try:
                with open(p) as f:
                    if f.read().strip() == digest:
                        os.unlink(p)
            except FileNotFoundError:
                pass
        os.unlink(self._link(name, "_manifests", digest))
        try:
            m = media.parse_manifest(raw)
        except InvalidArgument:
            return
        if m.subject is not None:
            alg, enc = _split(m.subject.digest)
            try:
                os.unlink(os.path.join(self._repo(name), "_referrers", alg, enc,
                                       digest.replace(":", "-")))
            except FileNotFoundError:
                pass

    def tags(self, name: str) -> list[str]:
        if not self.repo_exists(name):
            raise NameUnknown(f"repository name not known to registry: {name}")
        try:
            names = os.listdir(os.path.join(self._repo(name), "_tags"))
        except FileNotFoundError:
            return []
        # temp files of atomic writes start with "." and are never valid tags
        return sorted(t for t in names if not t.startswith("."))

    def referrers(self, name: str, digest: str) -> list[dict]:
        alg, enc = _split(digest)
        d = os.path.join(self._repo(name), "_referrers", alg, enc)
        out = []
        try:
            entries = sorted(e for e in os.listdir(d) if not e.startswith("."))
        except FileNotFoundError:
            return []
        for e in entries:
            try:
                with open(os.path.join(d, e)) as f:
                    out.append(json.load(f))
            except (OSError, ValueError):
                continue
        return out

    def repositories(self) -> list[str]:
        base = os.path.join(self.root, "repositories")
        out = []
        for dirpath, dirnames, _ in os.walk(base):
            if any(d in ("_layers", "_manifests", "_tags") for d in dirnames):
                out.append(os.path.relpath(dirpath, base))
            # never descend into a repository's own bookkeeping
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("_"))
        return sorted(out)
