"""Bridges between the asyncio server and the synchronous engine.

Engine operations are plain blocking functions; handlers run them in worker threads:

- ``run_sync(fn, *args)``           await a blocking call;
- ``BodyReader``                    a request body as a blocking file-like ``read(n)``, fed from
                                    the event loop (a 200 MB ``load`` is never buffered whole);
- ``progress_stream(fn, ...)``      run ``fn(..., progress=emit)`` in a thread and stream each
                                    emitted dict as one JSON message; an error after the headers
                                    went out is sent as Docker does, ``{"errorDetail": ...}``.

Every JSON stream berthd sends is framed here, as dockerd frames it on the wire (captured from
dockerd over its socket; tests/api/test_stream_framing.py compares the raw bytes): each message is
one HTTP chunk, and

- progress streams (pull, push, load, import) end each message with ``"\r\n"``, as moby's
  streamformatter writes them (``progress_line``, ``error_line``);
- event-like streams (``/events``, ``/containers/{id}/stats``, ``/containers/{id}/wait``) end
  each with ``"\n"``, as Go's ``json.Encoder`` writes them (``json_line``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable

from berth import fastjson
from berth.errors import BerthError

from .http import Request


async def run_sync(fn: Callable, *args, **kwargs):
    return await asyncio.to_thread(fn, *args, **kwargs)


class BodyReader:
    """A blocking reader over a request body that the event loop pumps in chunks.

    At most ``depth`` chunks wait in memory; the pump awaits while the consumer is behind.
    """

    def __init__(self, req: Request, loop: asyncio.AbstractEventLoop, depth: int = 16) -> None:
        self._req = req
        self._loop = loop
        self._chunks: list[bytes] = []
        self._cond = threading.Condition()
        self._space = asyncio.Semaphore(depth)
        self._eof = False
        self._closed = False
        self._buf = memoryview(b"")

    async def pump(self) -> None:
        try:
            async for chunk in self._req.stream():
                if self._closed:
                    continue  # the consumer is gone: drain the body, keep nothing
                await self._space.acquire()
                with self._cond:
                    if self._closed:
                        continue
                    self._chunks.append(chunk)
                    self._cond.notify()
        finally:
            with self._cond:
                self._eof = True
                self._cond.notify()

    def _release(self) -> None:
        self._loop.call_soon_threadsafe(self._space.release)

    def _next(self) -> bool:
        with self._cond:
            while not self._chunks and not self._eof:
                self._cond.wait()
            if not self._chunks:
                return False
            self._buf = memoryview(self._chunks.pop(0))
        self._release()
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = [bytes(self._buf)]
            self._buf = memoryview(b"")
            while self._next():
                parts.append(bytes(self._buf))
            self._buf = memoryview(b"")
            return b"".join(parts)
        if not self._buf and not self._next():
            return b""
        out = self._buf[:n]
        self._buf = self._buf[n:]
        return bytes(out)

    def readinto(self, b) -> int:
        if not self._buf and not self._next():
            return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        """Stop accepting chunks: the rest of the body is read and dropped by the pump."""
        with self._cond:
            self._closed = True
            self._chunks.clear()
        self._release()  # wake a pump waiting for space


async def with_body(req: Request, fn: Callable[[BodyReader], object]):
    """Run ``fn(reader)`` in a thread while the loop feeds it the request body."""
    reader = BodyReader(req, asyncio.get_running_loop())
    pump = asyncio.ensure_future(reader.pump())
    try:
        return await run_sync(fn, reader)
    finally:
        reader.close()
        await pump


def json_line(obj: dict) -> bytes:
    """One message of an event-like stream (events, stats, wait): JSON and ``"\n"``."""
    return fastjson.dumps(obj).encode() + b"\n"


def progress_line(obj: dict) -> bytes:
    """One message of a progress stream (pull, push, load, import): JSON and ``"\r\n"``."""
    return fastjson.dumps(obj).encode() + b"\r\n"


def error_line(exc: BaseException) -> bytes:
    """A failure after a progress stream's headers went out, as docker clients read it."""
    msg = exc.message if isinstance(exc, BerthError) else f"internal error: {exc}"
    return progress_line({"errorDetail": {"message": msg}, "error": msg})


async def progress_stream(fn: Callable, *args, in_band: bool = False,
                          **kwargs) -> AsyncIterator[bytes]:
    """Run ``fn(*args, progress=emit, **kwargs)`` in a thread; yield each emitted dict.

    An error before anything was sent is answered with its status code, unless ``in_band``:
    dockerd's load answers 200 and reports every failure in the stream (docker-py's
    ``ImageLoadError`` comes from there)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    done = object()

    def emit(msg: dict) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, msg)

    async def runner():
        try:
            await run_sync(fn, *args, progress=emit, **kwargs)
        except BaseException as e:  # noqa: BLE001 - reported in-band after the 200
            queue.put_nowait(e)
        finally:
            queue.put_nowait(done)

    task = asyncio.ensure_future(runner())
    sent = False
    try:
        while True:
            item = await queue.get()
            if item is done:
                break
            if isinstance(item, BaseException):
                if not sent and not in_band:
                    raise item  # nothing sent yet: the server answers with a status code
                yield error_line(item)
            else:
                sent = True
                yield progress_line(item)
    finally:
        await task


async def body_progress_stream(req: Request, fn: Callable, *args, in_band: bool = False,
                               **kwargs) -> AsyncIterator[bytes]:
    """``progress_stream`` of ``fn(read, *args, progress=..., **kwargs)`` where ``read``
    reads the request body as it arrives."""
    reader = BodyReader(req, asyncio.get_running_loop())
    pump = asyncio.ensure_future(reader.pump())
    try:
        async for chunk in progress_stream(fn, reader.read, *args, in_band=in_band, **kwargs):
            yield chunk
    finally:
        reader.close()
        await pump


async def writer_stream(fn: Callable, *args, flush: int = 1 << 20,
                        **kwargs) -> AsyncIterator[bytes]:
    """Run ``fn(*args, write=..., **kwargs)`` in a thread; yield what it writes, in pieces of
    about ``flush`` bytes, with backpressure (the thread waits while the client is slow)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue(maxsize=8)
    done = object()
    buf: list[bytes] = []
    held = [0]

    def put(item) -> None:
        asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

    cancelled = threading.Event()

    def write(b: bytes) -> None:
        if cancelled.is_set():
            raise ConnectionAbortedError("the client went away")
        buf.append(bytes(b))
        held[0] += len(b)
        if held[0] >= flush:
            put(b"".join(buf))
            buf.clear()
            held[0] = 0

    def run() -> None:
        try:
            fn(*args, write=write, **kwargs)
            if buf:
                put(b"".join(buf))
        except BaseException as e:  # noqa: BLE001 - re-raised on the loop side
            put(e)
        finally:
            put(done)

    task = asyncio.ensure_future(asyncio.to_thread(run))
    try:
        while True:
            item = await queue.get()
            if item is done:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        # the client went away (or the stream ended): stop the writer, unblock its queue
        cancelled.set()
        while not task.done():
            try:
                queue.get_nowait()
            except asyncio.QueueEmpty:
                await asyncio.sleep(0.01)
        await task
