"""The distribution service berthd uses: blocking pull/push/login over the async client.

berthd's engine operations are blocking functions run in worker threads; the registry client
is asyncio (aiohttp). This service owns one event loop in one thread for the daemon's life, and
on it one HTTP session, one ``Puller`` (so that concurrent pulls share downloads of a layer)
and one ``Pusher`` (so that it remembers where blobs are, for mounts), plus registry clients
cached per (registry, credentials) so that tokens are reused. The blocking methods submit a
coroutine to that loop and wait; progress messages are handed to the caller's ``progress``
callback from the loop thread (the API's ``progress_stream`` is thread-safe).
"""

import asyncio
import hashlib
import threading
import time
from collections.abc import Callable, Iterable

from berth.distribution import media
from berth.distribution.client import RegistryClient, new_session
from berth.distribution.dockerconfig import Credentials
from berth.distribution.pull import BlobSink, Puller, PullResult
from berth.distribution.push import BlobSource, Pusher
from berth.distribution.reference import Reference
from berth.distribution.settings import RegistrySettings

__all__ = ["DistributionService"]

_CLIENT_TTL = 300


class DistributionService:
    def __init__(self, sink: BlobSink, settings: RegistrySettings | None = None) -> None:
        self.settings = settings or RegistrySettings()
        self.sink = sink
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._clients: dict[tuple, tuple[RegistryClient, float]] = {}
        self._session = None
        self.puller: Puller | None = None
        self.pusher: Pusher | None = None

    # -- the loop thread -----------------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=run, name="berth-distribution",
                                                daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
                self.puller = Puller(self.sink,
                                     max_concurrent=self.settings.max_concurrent_downloads,
                                     retries=self.settings.retries)
                self.pusher = Pusher(max_concurrent=self.settings.max_concurrent_uploads,
                                     retries=self.settings.retries)
            return self._loop

    def _run(self, coro):
        loop = self._ensure_loop()
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def close(self) -> None:
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is None:
            return

        async def shutdown():
            for c, _ in self._clients.values():
                await c.close()
            if self._session is not None:
                await self._session.close()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()

    def _client(self, registry: str, creds: Credentials | None, push: bool) -> RegistryClient:
        # runs on the loop thread
        if self._session is None:
            self._session = new_session()
        key = (registry, push, creds.username if creds else None,
               hashlib.sha256(f"{creds.password}\0{creds.identity_token}".encode()).digest()
               if creds else None)
        now = time.monotonic()
        hit = self._clients.get(key)
        if hit and hit[1] > now:
            return hit[0]
        c = RegistryClient(registry, self.settings, creds, push=push, session=self._session)
        self._clients[key] = (c, now + _CLIENT_TTL)
        return c

    # -- operations ----------------------------------------------------------------------------

    def pull(self, ref: Reference, *, credentials: Credentials | None = None,
             platform: media.Platform | None = None,
             progress: Callable[[dict], None] | None = None, on_layer=None,
             known_image: Callable[[str], bool] | None = None) -> PullResult:
        async def go():
            c = self._client(ref.registry, credentials, False)
            res = await self.puller.pull(c, ref, platform=platform, emit=progress,
                                         on_layer=on_layer, known_image=known_image)
            for d in res.manifest.layers:
                self.pusher.remember(ref.registry, d.digest, ref.repository)
            return res

        return self._run(go())

    def push(self, ref: Reference, source: BlobSource, raw: bytes, media_type: str, *,
             credentials: Credentials | None = None,
             progress: Callable[[dict], None] | None = None,
             mount_from: Callable[[str], Iterable[str]] | None = None,
             announce: bool = True, layer_ids: dict[str, str] | None = None) -> str:
        async def go():
            c = self._client(ref.registry, credentials, True)
            return await self.pusher.push(c, ref, source, raw, media_type, emit=progress,
                                          mount_from=mount_from, announce=announce,
                                          layer_ids=layer_ids)

        return self._run(go())

    def tags(self, ref: Reference, *, credentials: Credentials | None = None) -> list[str]:
        async def go():
            return await self._client(ref.registry, credentials, False).tags(ref.repository)

        return self._run(go())

    def login(self, registry: str, credentials: Credentials) -> None:
        """Check credentials against a registry (``docker login``); raises if refused."""
        async def go():
            if self._session is None:
                self._session = new_session()
            async with RegistryClient(registry, self.settings, credentials,
                                      session=self._session) as c:
                await c.login()

        self._run(go())
