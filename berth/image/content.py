"""The content store: blobs by sha256 digest, written through ingests, on containerd's model.

Words: a *digest* is ``sha256:<64 hex>``; a *blob* is the immutable bytes with that digest at
``blobs/sha256/<hex>``; an *ingest* is a blob being written, under ``ingest/<ref>/`` (``data``
plus a ``lock`` held with flock by its one writer), keyed by a caller-chosen *ref* (by default
the expected digest, so that concurrent writers of one blob meet at one ingest).

Writing a blob: ``w = store.writer(ref, expected=digest, size=n)``; ``w.write(chunk)`` hashes
while it writes; ``w.commit()`` checks size and digest, fsyncs, and renames ``data`` into
``blobs/`` (an existing blob is success: the ingest is dropped); ``w.abort()`` removes the
ingest. ``w.offset`` is where a resumed write continues (a Range request picks up there):
reopening an ingest whose writer died rehashes what it holds. If the expected blob already
exists, ``writer`` returns a writer with ``exists=True`` that discards writes and commits as a
no-op, so a puller may skip the download.

Invariants: nothing appears under ``blobs/`` unless its digest and size were verified; a
partial blob is never visible there; concurrent writers of one ref serialise on the ingest lock
and end with one blob; ``cleanup_ingests()`` at start-up removes ingests nobody holds.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from collections.abc import Iterator

from berth.errors import Conflict, InvalidArgument, NotFound

_HEX = frozenset("0123456789abcdef")
CHUNK = 1 << 20


class DigestMismatch(InvalidArgument):
    pass


class SizeMismatch(InvalidArgument):
    pass


class NoSuchBlob(NotFound):
    pass


class IngestLocked(Conflict):
    pass


def parse_digest(digest: str) -> str:
    """→ the hex of a ``sha256:<hex>`` digest; anything else is an InvalidArgument."""
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or not _HEX.issuperset(hexpart):
        raise InvalidArgument(f"invalid digest: {digest!r}")
    return hexpart


class Writer:
    """One ingest: write, then commit or abort. Not thread-safe (one writer per ingest)."""

    def __init__(self, store: ContentStore, ref: str, expected: str | None,
                 size: int | None, wait: bool) -> None:
        self.store = store
        self.ref = ref
        self.expected = expected
        self.size = size
        self.exists = False
        self._done = False
        self.hash = hashlib.sha256()
        self.offset = 0
        self.dir = os.path.join(store.root, "ingest", _ref_dir(ref))
        os.makedirs(self.dir, exist_ok=True)
        self._lock = os.open(os.path.join(self.dir, "lock"),
                             os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(self._lock)
            raise IngestLocked(f"ingest {ref} is being written by another writer") from None
        if expected is not None and store.exists(expected):
            # Another writer finished it while we waited, or it was there already.
            self.exists = True
            self.offset = self.size or store.size(expected)
            self._fd = -1
            return
        self.data = os.path.join(self.dir, "data")
        self._fd = os.open(self.data, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        # Resume: rehash what a previous writer of this ref left.
        while True:
            buf = os.read(self._fd, CHUNK)
            if not buf:
                break
            self.hash.update(buf)
            self.offset += len(buf)

    def truncate(self, offset: int = 0) -> None:
        """Restart at ``offset`` (0 only, or the current offset): the server ignored a Range."""
        if self.exists:
            return
        if offset not in (0, self.offset):
            raise InvalidArgument(f"ingest {self.ref}: cannot truncate to {offset}")
        if offset == 0:
            os.ftruncate(self._fd, 0)
            os.lseek(self._fd, 0, os.SEEK_SET)
            self.hash = hashlib.sha256()
            self.offset = 0

    def write(self, data: bytes | memoryview) -> int:
        if self.exists:
            return len(data)
        n = len(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self.hash.update(data)
        self.offset += n
        if self.size is not None and self.offset > self.size:
            raise SizeMismatch(f"blob {self.expected or self.ref}: more than the expected "
                               f"{self.size} bytes")
        return n

    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()

    def commit(self, expected: str | None = None, size: int | None = None,
               sync: bool = True) -> str:
        """Verify and publish the blob; → its digest. On a mismatch the ingest is removed.
        ``sync=False`` leaves the fsync to the caller (``ContentStore.sync``): a load does not
        pay for blobs it drops right after unpacking them."""
        expected = expected or self.expected
        size = self.size if size is None else size
        if self.exists:
            self._finish(remove=False)
            return expected or ""
        try:
            got = self.digest()
            if size is not None and self.offset != size:
                raise SizeMismatch(f"blob {expected or got}: size {self.offset} does not match "
                                   f"the expected {size}")
            if expected is not None and got != expected:
                raise DigestMismatch(f"digest mismatch: expected {expected}, got {got}")
            if sync:
                os.fsync(self._fd)
            target = self.store.path(got)
            if not os.path.exists(target):
                os.rename(self.data, target)
                if sync:
                    self.store._fsync_blobs()
        except BaseException:
            self._finish(remove=True)
            raise
        self._finish(remove=True)
        return got

    def abort(self) -> None:
        if not self._done:
            self._finish(remove=True)

    def close(self) -> None:
        """Release the ingest but keep its data, so a later writer of this ref resumes."""
        if not self._done:
            self._finish(remove=False)

    def _finish(self, remove: bool) -> None:
        if self._done:
            return
        self._done = True
        if self._fd >= 0:
            os.close(self._fd)
        if remove or self.exists:
            shutil.rmtree(self.dir, ignore_errors=True)
        os.close(self._lock)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.abort()


def _ref_dir(ref: str) -> str:
    # refs may hold ':' and '/': name the directory by a hash of the ref.
    return hashlib.sha256(ref.encode()).hexdigest()[:32]


class ContentStore:
    """Blobs on disk, plus *rebuilt* blobs: an uncompressed layer that the image store keeps
    only as its unpacked snapshot (and a tar-split) is still readable here by its digest,
    through the ``rebuilder`` the image store registers, so that readers (save, push,
    ``docker save``) need not know. ``path``, ``walk`` and ``delete`` see only real blobs."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.blobs = os.path.join(root, "blobs", "sha256")
        os.makedirs(self.blobs, exist_ok=True)
        os.makedirs(os.path.join(root, "ingest"), exist_ok=True)
        self.rebuilder = None  # .has(digest), .size(digest), .open(digest)

    def path(self, digest: str) -> str:
        return os.path.join(self.blobs, parse_digest(digest))

    def exists(self, digest: str) -> bool:
        if os.path.exists(self.path(digest)):
            return True
        return self.rebuilder is not None and self.rebuilder.has(digest)

    def size(self, digest: str) -> int:
        try:
            return os.stat(self.path(digest)).st_size
        except FileNotFoundError:
            if self.rebuilder is not None and self.rebuilder.has(digest):
                return self.rebuilder.size(digest)
            raise NoSuchBlob(f"no such blob: {digest}") from None

    def open(self, digest: str):
        """A binary file of the blob (the caller closes it): ``read(n)``, context manager."""
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            if self.rebuilder is not None and self.rebuilder.has(digest):
                return self.rebuilder.open(digest)
            raise NoSuchBlob(f"no such blob: {digest}") from None

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def reader(self, digest: str, offset: int = 0, chunk: int = CHUNK) -> Iterator[bytes]:
        with self.open(digest) as f:
            if hasattr(f, "seek"):
                f.seek(offset)
            else:
                while offset:
                    b = f.read(min(chunk, offset))
                    if not b:
                        return
                    offset -= len(b)
            while True:
                b = f.read(chunk)
                if not b:
                    return
                yield b

    def writer(self, ref: str | None = None, expected: str | None = None,
               size: int | None = None, wait: bool = True) -> Writer:
        if expected is not None:
            parse_digest(expected)
        if ref is None:
            if expected is None:
                ref = "anon-" + os.urandom(8).hex()
            else:
                ref = expected
        return Writer(self, ref, expected, size, wait)

    def write_blob(self, data: bytes, expected: str | None = None) -> str:
        with self.writer(expected=expected or "sha256:" + hashlib.sha256(data).hexdigest(),
                         size=len(data)) as w:
            w.write(data)
            return w.commit()

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            raise NoSuchBlob(f"no such blob: {digest}") from None

    def walk(self) -> Iterator[str]:
        for name in os.listdir(self.blobs):
            if len(name) == 64:
                yield "sha256:" + name

    def ingests(self) -> list[str]:
        return os.listdir(os.path.join(self.root, "ingest"))

    def cleanup_ingests(self) -> int:
        """Remove ingests no live writer holds (a crash left them); → how many."""
        n = 0
        base = os.path.join(self.root, "ingest")
        for name in os.listdir(base):
            d = os.path.join(base, name)
            try:
                fd = os.open(os.path.join(d, "lock"), os.O_RDWR | os.O_CLOEXEC)
            except OSError:
                shutil.rmtree(d, ignore_errors=True)
                n += 1
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            shutil.rmtree(d, ignore_errors=True)
            os.close(fd)
            n += 1
        return n

    def sync(self, digests) -> None:
        """fsync blobs committed with ``sync=False`` (those that exist), then the directory."""
        for d in digests:
            try:
                fd = os.open(self.path(d), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._fsync_blobs()

    def _fsync_blobs(self) -> None:
        fd = os.open(self.blobs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
