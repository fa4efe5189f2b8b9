"""Push: blobs the registry lacks, then the manifest, last.

For each blob of the manifest (config and layers; for an index, each child's blobs and then the
child manifest by digest), in parallel up to ``max_concurrent`` (5, as dockerd):

1. ``HEAD`` in the target repository: present → ``Layer already exists``, nothing sent;
2. a cross-repository mount (``POST ?mount=&from=``) from a repository of the same registry
   known to hold it (``mount_from`` hints from the caller, and what this pusher pushed or
   pulled before) → ``Mounted from other/repo``;
3. else an upload: ``POST`` for a session, then either one ``PUT ?digest=`` with the whole
   blob (monolithic, the default: two requests) or ``PATCH`` chunks of ``chunk_size`` with
   ``Content-Range`` and a closing ``PUT``. A failed attempt cancels its session and is retried
   from the start, up to ``retries`` times.

Only when every blob is there is the manifest ``PUT`` (by tag, or by digest), so a registry
never holds a manifest whose blobs are missing.
"""

import asyncio
from collections.abc import Callable, Iterable
from typing import BinaryIO, Protocol

import aiohttp

from berth.distribution import jsonmessage as jm
from berth.distribution import media
from berth.distribution.client import RegistryClient, RegistryProtocolError, RegistryUnavailable
from berth.distribution.reference import Reference, hasher
from berth.errors import PermissionDenied

__all__ = ["BlobSource", "Pusher"]

_CHUNK = 1 << 20


class BlobSource(Protocol):
    def open(self, digest: str) -> BinaryIO: ...
    def size(self, digest: str) -> int: ...
    def read(self, digest: str) -> bytes: ...


Emit = Callable[[dict], None]


class Pusher:
    def __init__(self, *, max_concurrent: int = 5, retries: int = 3,
                 chunk_size: int | None = None) -> None:
        self._sem = asyncio.Semaphore(max_concurrent)
        self.retries = retries
        self.chunk_size = chunk_size
        # (registry, digest) → repositories known to hold it, for mounts
        self.known: dict[tuple[str, str], list[str]] = {}

    def remember(self, registry: str, digest: str, repository: str) -> None:
        repos = self.known.setdefault((registry, digest), [])
        if repository not in repos:
            repos.append(repository)

    async def push(self, client: RegistryClient, ref: Reference, source: BlobSource,
                   raw: bytes, media_type: str, *, emit: Emit | None = None,
                   mount_from: Callable[[str], Iterable[str]] | None = None,
                   announce: bool = True, layer_ids: dict[str, str] | None = None) -> str:
        """Push one image (manifest or index) to ``ref``; returns the pushed manifest's digest.
        ``announce=False`` leaves ``The push refers to repository`` to the caller (said once
        for all the tags of a repository, as dockerd does). ``layer_ids`` maps a layer's
        digest to the id its progress lines show: docker shows a pushed layer by its diffID
        (a pulled one by its digest)."""
        emit = emit or (lambda m: None)
        ids = layer_ids or {}
        m = media.parse_manifest(raw, media_type)
        if announce:
            emit(jm.message(f"The push refers to repository [{ref.full_name}]"))
        await client.ping()  # an unreachable registry fails before any layer is listed
        if m.is_index:
            for child in m.manifests:
                craw = source.read(child.digest)
                cm = media.parse_manifest(craw, child.media_type)
                await self._blobs(client, ref, source, cm, emit, mount_from, ids)
                await client.put_manifest(ref.repository, child.digest, craw, cm.media_type)
        else:
            await self._blobs(client, ref, source, m, emit, mount_from, ids)
        h = hasher("sha256")
        h.update(raw)
        digest = f"sha256:{h.hexdigest()}"
        target = ref.tag or ref.digest or digest
        got = await client.put_manifest(ref.repository, target, raw, m.media_type)
        if got and got != digest:
            raise RegistryProtocolError(f"registry stored manifest {got}, pushed {digest}")
        tag = ref.tag or "latest"
        if ref.tag:
            emit(jm.message(f"{tag}: digest: {digest} size: {len(raw)}"))
        emit(jm.aux({"Tag": ref.tag or "", "Digest": digest, "Size": len(raw)}))
        return digest

    async def _blobs(self, client, ref, source, m: media.Manifest, emit, mount_from,
                     ids: dict[str, str]) -> None:
        # docker lists layers top-down; the config goes last, quietly
        layers = list(m.blobs())
        order = [d for d in reversed(layers) if d is not m.config]
        for d in order:
            emit(jm.status("Preparing", id=jm.short_id(ids.get(d.digest, d.digest))))
        tasks = [self._blob(client, ref, source, d, emit, mount_from, quiet=False,
                            sid=jm.short_id(ids.get(d.digest, d.digest))) for d in order]
        if m.config is not None:
            tasks.append(self._blob(client, ref, source, m.config, emit, mount_from, quiet=True,
                                    sid=""))
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for o in outcomes:
            if isinstance(o, BaseException):
                raise o

    async def _blob(self, client: RegistryClient, ref: Reference, source: BlobSource,
                    d: media.Descriptor, emit: Emit, mount_from, quiet: bool, sid: str) -> None:
        say = (lambda *a, **k: None) if quiet else (lambda t, **k: emit(jm.status(t, id=sid, **k)))
        repo = ref.repository
        if self._sem.locked():
            say("Waiting")
        async with self._sem:
            if await client.blob_exists(repo, d.digest, actions="pull,push") is not None:
                say("Layer already exists")
                self.remember(ref.registry, d.digest, repo)
                return
            location = None
            candidates = list(mount_from(d.digest)) if mount_from else []
            candidates += self.known.get((ref.registry, d.digest), [])
            for src in dict.fromkeys(c for c in candidates if c != repo):
                try:
                    location = await client.mount_blob(repo, d.digest, src)
                except (RegistryProtocolError, PermissionDenied):
                    continue  # a source we may not read: the next one, or an upload
                if location is None:
                    say(f"Mounted from {src}")
                    self.remember(ref.registry, d.digest, repo)
                    return
                break
            attempts = 0
            while True:
                try:
                    await self._upload(client, repo, source, d, location, say)
                    break
                except (TimeoutError, RegistryUnavailable, aiohttp.ClientError,
                        ConnectionError) as e:
                    location = None
                    attempts += 1
                    if attempts > self.retries:
                        raise RegistryUnavailable(f"upload of blob {d.digest} failed: {e}") from e
                    await asyncio.sleep(0.2 * attempts)
            say("Pushed")
            self.remember(ref.registry, d.digest, repo)

    async def _upload(self, client: RegistryClient, repo: str, source: BlobSource,
                      d: media.Descriptor, location: str | None, say) -> None:
        size = source.size(d.digest)
        if size != d.size:
            raise RegistryProtocolError(f"blob {d.digest} has {size} bytes, manifest says "
                                        f"{d.size}")
        location = location or await client.start_upload(repo)
        f = source.open(d.digest)
        fpos = 0  # where f stands: a rebuilt layer (tar-split) can be read forward only
        loop = asyncio.get_running_loop()
        sent = 0
        last = 0.0

        def seek(start: int) -> None:
            nonlocal f, fpos
            if start == fpos:
                return
            if hasattr(f, "seek"):
                f.seek(start)
            else:
                if start < fpos:
                    f.close()
                    f = source.open(d.digest)
                    fpos = 0
                while fpos < start:
                    skipped = f.read(min(_CHUNK, start - fpos))
                    if not skipped:
                        raise RegistryProtocolError(f"blob {d.digest} is shorter than {size}")
                    fpos += len(skipped)
            fpos = start

        def body(start: int, length: int):
            async def gen():
                nonlocal sent, last, fpos
                seek(start)
                left = length
                while left > 0:
                    chunk = f.read(min(_CHUNK, left))
                    if not chunk:
                        raise RegistryProtocolError(f"blob {d.digest} is shorter than {size}")
                    left -= len(chunk)
                    fpos += len(chunk)
                    sent = start + length - left
                    now = loop.time()
                    if now - last >= 0.1:
                        last = now
                        say("Pushing", current=sent, total=size)
                    yield chunk
            return gen

        try:
            if self.chunk_size and size > self.chunk_size:
                pos = 0
                while pos < size:
                    n = min(self.chunk_size, size - pos)
                    location = await client.upload_chunk(repo, location, body(pos, n), pos, n)
                    pos += n
                await client.finish_upload(repo, location, d.digest)
            else:
                await client.finish_upload(repo, location, d.digest, body(0, size), size)
        except BaseException:
            await client.cancel_upload(repo, location)
            raise
        finally:
            f.close()
