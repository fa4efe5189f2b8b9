"""Pull: reference → manifest (through an index, for the wanted platform) → config and layers,
streamed through digest checks into a content sink.

Words: a *sink* is where blobs go (the image store's ingest API, or an OCI layout); a *writer*
is one blob in progress there. The protocol the sink implements (``BlobSink``) is small: ``has``
(a layer the store has is never requested), ``writer`` (bytes in order, resumable from
``offset``), ``commit`` after the digest and size checked, ``abort`` for a bad blob, ``close``
to keep a partial one for a later resume. Nothing the sink shows as a blob is ever partial or
unverified.

Guarantees:
- a blob whose bytes do not hash to its digest, or whose size differs, fails the pull in
  dockerd's words (``filesystem layer verification failed for digest sha256:...``, ``image
  config verification failed ...``) and is aborted: nothing of it stays;
- a connection cut mid-blob is resumed with ``Range: bytes=N-`` (the hash state is kept), up
  to ``settings.retries`` times; a registry that ignores Range restarts the blob from 0;
- at most ``max_concurrent_downloads`` blobs download at once (3, as dockerd); the others
  say ``Waiting`` until their turn, as in dockerd's stream;
- two pulls in one ``Puller`` that share a layer download it once: the second waits for the
  first's download (``_inflight``).
"""

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from berth.distribution import jsonmessage as jm
from berth.distribution import media
from berth.distribution.client import (
    DigestMismatch,
    RegistryClient,
    RegistryUnavailable,
    read_at_most,
)
from berth.distribution.reference import Reference, hasher
from berth.errors import BerthError, InvalidArgument

log = logging.getLogger("berth.distribution.pull")

__all__ = ["BlobSink", "BlobWriter", "PullResult", "Puller"]

_CHUNK = 1 << 20
_PROGRESS_EVERY = 0.1


class BlobWriter(Protocol):
    offset: int

    def existing(self) -> Iterable[bytes]: ...
    def write(self, data: bytes) -> None: ...
    def truncate(self, size: int) -> None: ...
    def commit(self, digest: str, size: int) -> None: ...
    def abort(self) -> None: ...
    def close(self) -> None: ...


class BlobSink(Protocol):
    # a sink whose writers hash what they are given and refuse a mismatch in ``commit``
    # sets ``verifies = True``; the puller then does not hash the bytes a second time
    verifies: bool

    def has(self, digest: str) -> bool: ...
    def writer(self, digest: str, size: int) -> BlobWriter: ...
    def put(self, digest: str, data: bytes) -> None: ...


Emit = Callable[[dict], None]
# called on the loop thread once a layer is in the sink, with its index in the manifest, the
# config, and whether this pull fetched it (False: it was there); it must not block (it may
# hand work to a thread)
OnLayer = Callable[[int, "media.Descriptor", bytes, bool], None]


@dataclass
class PullResult:
    reference: Reference
    digest: str                  # what name@digest resolves to: the index's if there was one
    manifest_digest: str         # the platform manifest's
    manifest: media.Manifest
    config: bytes
    index: media.Manifest | None = None
    downloaded: list[str] = field(default_factory=list)  # layer digests fetched by this pull


class Puller:
    """Pulls into one sink; shared by concurrent pulls so that they share downloads."""

    def __init__(self, sink: BlobSink, *, max_concurrent: int = 3, retries: int = 3) -> None:
        self.sink = sink
        self.retries = retries
        self._sem = asyncio.Semaphore(max_concurrent)
        self._inflight: dict[str, asyncio.Future] = {}

    async def pull(self, client: RegistryClient, ref: Reference, *,
                   platform: media.Platform | None = None, emit: Emit | None = None,
                   on_layer: OnLayer | None = None,
                   known_image: Callable[[str], bool] | None = None) -> PullResult:
        """Pull ``ref`` into the sink. Without ``on_layer`` each layer ends with ``Pull
        complete``; with it, the caller says when a layer is complete (after unpacking).
        ``known_image(config digest)`` says the caller has that image whole: then, as
        dockerd, no layer is fetched or listed (``on_layer`` is still called for each).
        A pull that fails on a registry mirror is tried again on the registry itself."""
        emit = emit or (lambda m: None)
        try:
            return await self._pull(client, ref, platform, emit, on_layer, known_image)
        except media.PlatformNotFound:
            raise
        except BerthError as e:
            alt = client.past_mirror()
            if alt is None:
                raise
            log.info("pull of %s from a mirror failed (%s); trying %s", ref, e, ref.registry)
            return await self._pull(alt, ref, platform, emit, on_layer, known_image)

    async def _pull(self, client: RegistryClient, ref: Reference, platform, emit: Emit,
                    on_layer, known_image) -> PullResult:
        repo = ref.repository
        raw, ct, digest = await client.get_manifest(repo, ref.ref)
        m = media.parse_manifest(raw, ct)
        # dockerd says this once the first manifest is in, before it picks a platform, so a
        # platform error comes after it, in the stream; a digest pull is named in full
        emit(jm.message(f"Pulling from {repo}",
                        id=f"{ref.full_name}@{ref.digest}" if ref.digest else ref.tag))
        index = None
        top = digest
        if m.is_index:
            index = m
            self.sink.put(digest, raw)
            want = platform or media.host_platform()
            child = media.choose(m, want)
            raw, ct, digest = await client.get_manifest(repo, child.digest)
            m = media.parse_manifest(raw, ct or child.media_type)
            if m.is_index:
                raise media.InvalidManifest(f"index {child.digest} names another index")
        if m.config is None:
            raise media.InvalidManifest(f"manifest {digest} has no config")
        media.check_image_types(m)
        config = await self._small_blob(client, repo, m.config)
        if platform is not None and index is None:
            self._check_platform(config, platform, ref)
        layers = [d for d in m.layers if not d.urls]
        result = PullResult(ref, top, digest, m, config, index)
        whole = known_image is not None and known_image(m.config.digest)
        tasks = []
        for i, d in enumerate(layers):
            sid = jm.short_id(d.digest)
            if whole or self.sink.has(d.digest):
                if not whole:
                    emit(jm.status("Already exists", id=sid))
                if on_layer is not None:
                    on_layer(i, d, config, False)
                continue
            emit(jm.status("Pulling fs layer", id=sid))
            done = (lambda i=i, d=d: on_layer(i, d, config, True)) if on_layer else None
            tasks.append(self._layer(client, repo, d, emit, result, done))
        if tasks:
            # siblings go on after one fails (their downloads are reusable); the first error
            # is raised once all settle
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            for o in outcomes:
                if isinstance(o, BaseException):
                    raise o
        self.sink.put(digest, raw)
        if on_layer is None:
            # with a hook the caller reports the digest once its layers are complete
            emit(jm.message(f"Digest: {top}"))
        return result

    @staticmethod
    def _check_platform(config: bytes, want: media.Platform, ref: Reference) -> None:
        # dockerd 20.10 pulls such an image anyway; later ones refuse it, as here
        import json

        try:
            doc = json.loads(config)
        except ValueError:
            raise media.InvalidManifest("image config is not JSON") from None
        have = media.Platform(doc.get("os", ""), doc.get("architecture", ""), doc.get("variant"))
        if (have.os, have.architecture) != (want.os, want.architecture):
            raise media.PlatformNotFound(
                f"image with reference {ref} was found but does not match the specified "
                f"platform: wanted {want}, actual: {have}")

    async def _small_blob(self, client: RegistryClient, repo: str, d: media.Descriptor) -> bytes:
        if self.sink.has(d.digest):
            r = getattr(self.sink, "read", None)
            if r is not None:
                return r(d.digest)
        if d.size > media.MANIFEST_MAX * 4:
            raise media.InvalidManifest(f"config {d.digest} is too large ({d.size} bytes)")
        resp, _ = await client.open_blob(repo, d.digest)
        try:
            data = await read_at_most(resp, d.size)
        finally:
            resp.release()
        h = hasher(d.digest)
        h.update(data or b"")
        got = f"{d.digest.partition(':')[0]}:{h.hexdigest()}"
        if data is None or got != d.digest or len(data) != d.size:
            raise DigestMismatch(f"image config verification failed for digest {d.digest}")
        self.sink.put(d.digest, data)
        return data

    async def _layer(self, client: RegistryClient, repo: str, d: media.Descriptor, emit: Emit,
                     result: PullResult, done: Callable[[], None] | None) -> None:
        sid = jm.short_id(d.digest)
        fut = self._inflight.get(d.digest)
        if fut is not None:
            emit(jm.status("Waiting", id=sid))
            await asyncio.shield(fut)
            emit(jm.status("Download complete", id=sid))
            if done is not None:
                done()
            else:
                emit(jm.status("Pull complete", id=sid))
            return
        fut = asyncio.get_running_loop().create_future()
        self._inflight[d.digest] = fut
        try:
            if self._sem.locked():
                emit(jm.status("Waiting", id=sid))
            async with self._sem:
                await self._download(client, repo, d, emit)
            result.downloaded.append(d.digest)
            fut.set_result(None)
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: a failure nobody else waits for is not "never retrieved"
            raise
        finally:
            del self._inflight[d.digest]
        if done is not None:
            done()
        else:
            emit(jm.status("Pull complete", id=sid))

    async def _download(self, client: RegistryClient, repo: str, d: media.Descriptor,
                        emit: Emit) -> None:
        sid = jm.short_id(d.digest)
        w = self.sink.writer(d.digest, d.size)
        verifies = getattr(self.sink, "verifies", False)
        ok = False
        try:
            h = hasher(d.digest)
            if not verifies:
                for chunk in w.existing():
                    h.update(chunk)
            offset = w.offset
            attempts = 0
            loop = asyncio.get_running_loop()
            last = 0.0
            while True:
                try:
                    resp, start = await client.open_blob(repo, d.digest, offset)
                    try:
                        if start != offset:
                            w.truncate(0)
                            h, offset = hasher(d.digest), 0
                        async for chunk in resp.content.iter_chunked(_CHUNK):
                            offset += len(chunk)
                            if offset > d.size:  # more bytes than the manifest says
                                raise DigestMismatch(_unverified(d.digest))
                            if not verifies:
                                h.update(chunk)
                            w.write(chunk)
                            now = loop.time()
                            if now - last >= _PROGRESS_EVERY:
                                last = now
                                emit(jm.status("Downloading", id=sid, current=offset,
                                               total=d.size))
                    finally:
                        resp.release()
                    if offset < d.size:
                        raise aiohttp.ClientPayloadError(f"blob {d.digest} ended at {offset}")
                    break
                except (TimeoutError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError,
                        RegistryUnavailable, ConnectionError) as e:
                    attempts += 1
                    if attempts > self.retries:
                        # dockerd says "unexpected EOF" alone; this says where
                        why = str(e) if isinstance(e, RegistryUnavailable) else \
                            f"unexpected EOF: blob {d.digest} ended at byte {offset} of {d.size}"
                        raise RegistryUnavailable(why) from e
                    await asyncio.sleep(0.2 * attempts)
            emit(jm.status("Verifying Checksum", id=sid))
            if not verifies:
                got = f"{d.digest.partition(':')[0]}:{h.hexdigest()}"
                if got != d.digest or offset != d.size:
                    raise DigestMismatch(_unverified(d.digest))
            try:
                # commit fsyncs (~0.1 s for 40 MB here): off the loop, or every other
                # download stalls behind it
                await loop.run_in_executor(None, w.commit, d.digest, d.size)
            except InvalidArgument:
                raise DigestMismatch(_unverified(d.digest)) from None
            ok = True
            emit(jm.status("Download complete", id=sid))
        except DigestMismatch:
            w.abort()
            raise
        finally:
            if not ok:
                w.close()


def _unverified(digest: str) -> str:
    return f"filesystem layer verification failed for digest {digest}"
