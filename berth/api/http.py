"""HTTP/1.1 over asyncio streams with h11: requests, responses, chunked streams and hijacking.

One ``Connection`` per accepted socket drives an ``h11.Connection`` and answers requests one
after another (keep-alive). A handler receives a ``Request`` and returns a ``Response``:

- ``Response``        a whole body (JSON or text) with Content-Length;
- ``StreamResponse``  an async iterator of byte chunks, sent with chunked transfer-encoding
                      (JSON-lines progress, events, logs);
- ``HijackResponse``  after the status line the socket leaves HTTP: the handler's callback gets
                      the raw reader and writer (attach/exec). When the client asked for an
                      upgrade (``Connection: Upgrade``, ``Upgrade: tcp``) the answer is
                      ``101 UPGRADED`` as dockerd sends it, else ``200 OK``.

Invariants: a request body is read lazily (a 200 MB ``docker load`` streams through, never
buffered); whatever a handler leaves unread is drained before the next request; a peer that
half-closes its write side on a hijacked stream still receives everything written after that
(asyncio keeps a unix transport open on EOF, which is why this is not aiohttp's server).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import formatdate
from urllib.parse import parse_qsl, unquote, urlsplit

import h11

from berth import fastjson

log = logging.getLogger("berth.api")

READ_SIZE = 256 * 1024
SERVER_HEADER = "berth/0.1 (linux)"


class Request:
    """One request: method, path (unquoted, version prefix removed by the router), query, headers.

    ``body()`` returns the whole body; ``stream()`` yields it chunk by chunk. Either may be
    called once.
    """

    def __init__(self, conn: Connection, event: h11.Request) -> None:
        self._conn = conn
        self.method = event.method.decode()
        target = event.target.decode("latin-1")
        parts = urlsplit(target)
        self.raw_path = parts.path
        self.path = unquote(parts.path)
        self.query: dict[str, str] = {}
        self.query_multi: dict[str, list[str]] = {}
        for k, v in parse_qsl(parts.query, keep_blank_values=True):
            self.query[k] = v
            self.query_multi.setdefault(k, []).append(v)
        self.headers: dict[str, str] = {}
        for k, v in event.headers:
            self.headers[k.decode().lower()] = v.decode("latin-1")
        self.api_version: str | None = None
        self.params: dict[str, str] = {}
        self._consumed = False

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def arg(self, name: str, default: str = "") -> str:
        return self.query.get(name, default)

    def flag(self, name: str, default: bool = False) -> bool:
        """A boolean query parameter as the Docker API reads it: 1/true/True are true."""
        v = self.query.get(name)
        if v is None:
            return default
        return v.lower() not in ("", "0", "false", "no")

    def json_arg(self, name: str) -> object:
        v = self.query.get(name)
        if not v:
            return None
        from berth.errors import InvalidArgument

        try:
            return fastjson.loads(v)
        except ValueError as e:
            raise InvalidArgument(f"invalid {name} parameter: {e}") from None

    async def stream(self) -> AsyncIterator[bytes]:
        if self._consumed:
            return
        self._consumed = True
        async for chunk in self._conn.body_chunks():
            yield chunk

    async def body(self) -> bytes:
        parts = [c async for c in self.stream()]
        return b"".join(parts)

    async def json(self) -> object:
        data = await self.body()
        if not data.strip():
            return None
        from berth.errors import InvalidArgument

        try:
            return fastjson.loads(data)
        except ValueError as e:
            raise InvalidArgument(f"invalid JSON body: {e}") from None


class Response:
    def __init__(self, status: int = 200, body: bytes = b"",
                 content_type: str = "application/json",
                 headers: list[tuple[str, str]] | None = None) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or []


def json_response(obj: object, status: int = 200) -> Response:
    return Response(status, fastjson.dumps(obj).encode() + b"\n")


def no_content() -> Response:
    return Response(204, b"", content_type="")


class StreamResponse:
    """A chunked body produced by an async iterator of bytes."""

    def __init__(self, chunks: AsyncIterator[bytes], status: int = 200,
                 content_type: str = "application/json",
                 headers: list[tuple[str, str]] | None = None) -> None:
        self.status = status
        self.chunks = chunks
        self.content_type = content_type
        self.headers = headers or []


HijackCallback = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]


class HijackResponse:
    """Leave HTTP after the status line and hand the raw socket to ``callback``.

    ``callback(reader, writer, early)`` gets the bytes the client sent after its request that
    were already read (``early``); it owns the socket until it returns, and should end its
    output with ``writer.write_eof()`` so the client sees the end of the stream.
    """

    def __init__(self, callback: HijackCallback,
                 content_type: str = "application/vnd.docker.raw-stream",
                 head: bytes | None = None) -> None:
        self.callback = callback
        self.content_type = content_type
        self.head = head  # a whole response head of the handler's (a websocket's 101)


Handler = Callable[[Request], Awaitable[Response | StreamResponse | HijackResponse]]


def _reason(status: int) -> bytes:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def _base_headers(extra: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [("Server", SERVER_HEADER), ("Date", formatdate(usegmt=True)), *extra]


class Connection:
    """Serves the requests of one client socket in order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 dispatch: Callable[[Request], Awaitable[object]],
                 common_headers: list[tuple[str, str]],
                 on_error: Callable[[BaseException], Response]) -> None:
        self.on_error = on_error
        self.reader = reader
        self.writer = writer
        self.dispatch = dispatch
        self.common_headers = common_headers
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)

    async def _next_event(self):
        while True:
            ev = self.h11.next_event()
            if ev is h11.NEED_DATA:
                data = await self.reader.read(READ_SIZE)
                self.h11.receive_data(data)
                continue
            return ev

    async def body_chunks(self) -> AsyncIterator[bytes]:
        if self.h11.client_is_waiting_for_100_continue and self.h11.our_state is h11.SEND_RESPONSE:
            # curl and others hold a large body back until told to go on
            await self._send(h11.InformationalResponse(status_code=100, headers=[]))
        while True:
            ev = await self._next_event()
            if isinstance(ev, h11.Data):
                yield bytes(ev.data)
            elif isinstance(ev, h11.EndOfMessage | h11.ConnectionClosed):
                return
            else:
                raise h11.RemoteProtocolError(f"unexpected {type(ev).__name__} in body")

    async def _send(self, event) -> None:
        data = self.h11.send(event)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def serve(self) -> None:
        try:
            while True:
                try:
                    ev = await self._next_event()
                except h11.RemoteProtocolError as e:
                    await self._send_protocol_error(e)
                    return
                if isinstance(ev, h11.ConnectionClosed) or ev is h11.PAUSED:
                    return
                if not isinstance(ev, h11.Request):
                    return
                req = Request(self, ev)
                started = time.monotonic()
                resp = await self.dispatch(req)
                if isinstance(resp, HijackResponse):
                    log.info("%s %s hijacked", req.method, req.raw_path)
                    await self._hijack(req, resp)
                    return
                status = await self._respond(req, resp)
                log.info("%s %s %d %.1fms", req.method, req.raw_path, status,
                         (time.monotonic() - started) * 1000)
                # Drain what the handler left unread so the next request parses cleanly.
                if self.h11.their_state is h11.SEND_BODY:
                    async for _ in self.body_chunks():
                        pass
                if self.h11.our_state is h11.MUST_CLOSE or self.h11.their_state is h11.MUST_CLOSE:
                    return
                if self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
                    return
                self.h11.start_next_cycle()
        except (ConnectionError, asyncio.IncompleteReadError, h11.LocalProtocolError) as e:
            log.debug("connection dropped: %s", e)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a stream that failed after its headers went out
            log.exception("response stream failed; connection closed")
        finally:
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001 - the peer may be gone already
                pass

    async def _send_protocol_error(self, e: h11.RemoteProtocolError) -> None:
        if self.h11.our_state is not h11.IDLE and self.h11.our_state is not h11.SEND_RESPONSE:
            return
        body = fastjson.dumps({"message": f"bad request: {e}"}).encode()
        try:
            headers = _base_headers([("Content-Type", "application/json"),
                                     ("Content-Length", str(len(body))), ("Connection", "close")])
            await self._send(h11.Response(status_code=400, reason=b"Bad Request",
                                          headers=headers))
            await self._send(h11.Data(data=body))
            await self._send(h11.EndOfMessage())
        except (h11.LocalProtocolError, ConnectionError):
            pass

    async def _respond(self, req: Request, resp: Response | StreamResponse) -> int:
        headers = list(self.common_headers)
        if resp.content_type:
            headers.append(("Content-Type", resp.content_type))
        headers += resp.headers
        if isinstance(resp, Response):
            headers.append(("Content-Length", str(len(resp.body))))
            await self._send(h11.Response(status_code=resp.status, reason=_reason(resp.status),
                                          headers=_base_headers(headers)))
            if resp.body and req.method != "HEAD":
                await self._send(h11.Data(data=resp.body))
            await self._send(h11.EndOfMessage())
            return resp.status
        # A stream that fails before its first chunk answers with an error status, as dockerd
        # does while nothing was flushed; after that, errors travel in-band.
        it = resp.chunks.__aiter__()
        try:
            first = await it.__anext__()
        except StopAsyncIteration:
            first = b""
        except Exception as e:  # noqa: BLE001 - mapped to a status by on_error
            return await self._respond(req, self.on_error(e))
        # Streamed: h11 picks chunked encoding for an HTTP/1.1 peer with no Content-Length.
        await self._send(h11.Response(status_code=resp.status, reason=_reason(resp.status),
                                      headers=_base_headers(headers)))
        try:
            if first:
                await self._send(h11.Data(data=first))
            async for chunk in it:
                if chunk:
                    await self._send(h11.Data(data=chunk))
        finally:
            aclose = getattr(resp.chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        await self._send(h11.EndOfMessage())
        return resp.status

    async def _hijack(self, req: Request, resp: HijackResponse) -> None:
        upgrade = "upgrade" in req.header("connection").lower() and bool(req.header("upgrade"))
        if upgrade:
            head = ("HTTP/1.1 101 UPGRADED\r\n"
                    f"Content-Type: {resp.content_type}\r\n"
                    "Connection: Upgrade\r\n"
                    f"Upgrade: {req.header('upgrade') or 'tcp'}\r\n\r\n")
        else:
            head = (f"HTTP/1.1 200 OK\r\nContent-Type: {resp.content_type}\r\n"
                    f"Server: {SERVER_HEADER}\r\n\r\n")
        # Bytes the client sent after the request (stdin typed early) are already in h11.
        early, _closed = self.h11.trailing_data
        self.writer.write(resp.head or head.encode())
        await self.writer.drain()
        await resp.callback(self.reader, self.writer, bytes(early))
