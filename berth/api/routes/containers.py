"""Container routes: the Docker Engine API's /containers/* and /commit, thin over the engine.

Streams, as dockerd 20.10 (API 1.41) sends them: attach and exec hijack the connection
(``101 UPGRADED``, ``application/vnd.docker.raw-stream``) and carry the process's output raw
with a tty, else in 8-byte-header frames (stream type 1 stdout / 2 stderr, 3 zero bytes,
big-endian length); logs use the same framing over a chunked body; stats are JSON lines.
"""

from __future__ import annotations

import asyncio
import logging

from berth.engine import archive, logs
from berth.engine import container_state as cs
from berth.engine import container_views as views
from berth.engine import stats as stats_mod
from berth.engine.containers import NotModified, PendingAttach
from berth.errors import Conflict, InvalidArgument

from .. import websocket
from ..http import HijackResponse, Request, Response, StreamResponse, json_response, no_content
from ..streams import json_line, run_sync
from .system import parse_filters

log = logging.getLogger("berth.api")

RAW_STREAM = "application/vnd.docker.raw-stream"


def frame(kind: int, data: bytes) -> bytes:
    return bytes((kind, 0, 0, 0)) + len(data).to_bytes(4, "big") + data


def _int_arg(req: Request, name: str, default: int | None = None) -> int | None:
    v = req.arg(name)
    if v == "":
        return default
    try:
        return int(v)
    except ValueError:
        raise InvalidArgument(f"invalid value for {name}: {v}") from None


def _since_ns(v: str) -> int:
    """Docker's since/until for logs: unix seconds (fractions too) or RFC 3339, to the ns."""
    if not v:
        return 0
    secs, dot, frac = v.partition(".")
    if secs.lstrip("-").isdigit() and (not dot or frac.isdigit()):
        return int(secs) * 1_000_000_000 + int((frac + "000000000")[:9] if dot else 0)
    if v.endswith("Z") and "T" in v:
        try:
            return logs.parse_time_ns(v)
        except ValueError:
            pass
    from .system import parse_timestamp

    return parse_timestamp(v) or 0


async def pump(att, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, early: bytes,
               tty: bool, stdin: bool, prefix: list[bytes] | None = None) -> None:
    """Carry one attach: client → process stdin, process output → client (framed)."""

    async def feed() -> None:
        try:
            if early:
                await att.write(early)
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await att.write(data)
            await att.close_stdin()
        except (ConnectionError, OSError):
            pass
        except Exception as e:  # noqa: BLE001 - the shim went away: output ends too
            log.debug("attach stdin: %s", e)

    task = asyncio.ensure_future(feed()) if stdin else None
    try:
        for chunk in prefix or []:
            writer.write(chunk)
        while True:
            item = await att.read()
            if item is None:
                break
            kind, data = item
            writer.write(data if tty else frame(kind, data))
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        if task is not None:
            task.cancel()
        await att.close()
        await _end(writer)


def register(router, engine) -> None:
    svc = engine.containers

    async def list_(req: Request) -> Response:
        filters = parse_filters(req)
        limit = _int_arg(req, "limit", -1)
        out = await run_sync(views.list_containers, svc, req.flag("all"), limit,
                             req.flag("size"), filters)
        return json_response(out)

    async def create(req: Request) -> Response:
        body = await req.json()
        if body is None:
            raise InvalidArgument("config cannot be empty in order to create a container")
        name = req.arg("name")
        return json_response(await run_sync(svc.create, body, name), 201)

    async def inspect(req: Request) -> Response:
        c = svc.get(req.params["id"])
        size = req.flag("size")
        if size:
            return json_response(await run_sync(views.inspect, svc, c, True))
        return json_response(views.inspect(svc, c))

    async def start(req: Request) -> Response:
        try:
            await svc.start(req.params["id"])
        except NotModified:
            return Response(304, b"", content_type="")
        return no_content()

    async def stop(req: Request) -> Response:
        try:
            await svc.stop(req.params["id"], _int_arg(req, "t"), req.arg("signal") or None)
        except NotModified:
            return Response(304, b"", content_type="")
        return no_content()

    async def restart(req: Request) -> Response:
        await svc.restart(req.params["id"], _int_arg(req, "t"), req.arg("signal") or None)
        return no_content()

    async def kill(req: Request) -> Response:
        await svc.kill(req.params["id"], req.arg("signal") or None)
        return no_content()

    async def wait(req: Request) -> StreamResponse:
        cond = req.arg("condition") or "not-running"
        c = svc.get(req.params["id"])
        if cond not in ("not-running", "next-exit", "removed"):
            raise InvalidArgument(f'invalid condition: "{cond}"')
        fut = asyncio.ensure_future(svc.wait(c.id, cond))

        async def gen():
            # Headers first, as dockerd: the CLI waits for them before it starts the container.
            yield b""
            try:
                res = await fut
            finally:
                if not fut.done():
                    fut.cancel()
            yield json_line(res)

        return StreamResponse(gen())

    async def remove(req: Request) -> Response:
        await svc.remove(req.params["id"], req.flag("force"), req.flag("v"), req.flag("link"))
        return no_content()

    async def pause(req: Request) -> Response:
        await svc.pause(req.params["id"])
        return no_content()

    async def unpause(req: Request) -> Response:
        await svc.unpause(req.params["id"])
        return no_content()

    async def rename(req: Request) -> Response:
        svc.rename(req.params["id"], req.arg("name"))
        return no_content()

    async def resize(req: Request) -> Response:
        h, w = _int_arg(req, "h", 0), _int_arg(req, "w", 0)
        await svc.resize(req.params["id"], h, w)
        return Response(200, b"", content_type="text/plain; charset=utf-8")

    async def update(req: Request) -> Response:
        body = await req.json() or {}
        return json_response(await svc.update(req.params["id"], body))

    async def prune(req: Request) -> Response:
        return json_response(await svc.prune(parse_filters(req)))

    def _attach(req: Request, stdin: bool, stdout: bool, stderr: bool):
        """What attach and attach/ws share: the checks, and the session to run once the
        socket is the client's: ``carry(reader, writer, early, mux)``."""
        c = svc.get(req.params["id"])
        stream = req.flag("stream")
        want_logs = req.flag("logs")
        if not (stream or want_logs):
            raise InvalidArgument("Bad parameters: you must choose at least one stream")
        if c.state["Status"] == cs.PAUSED and stream:
            raise Conflict(f"container {c.id} is paused, unpause the container before attach")
        from berth.engine.detachkeys import parse_detach_keys

        dk = parse_detach_keys(req.arg("detachKeys")) if stdin else b""
        tty = bool(c.rec["Config"].get("Tty"))
        svc.attached(c)
        pending = None
        if stream and not (cs.is_running(c.state) and c.client is not None):
            pending = PendingAttach()
            c.attach_waiters.append(pending)

        async def carry(reader, writer, early: bytes, mux: bool) -> None:
            raw = tty or not mux
            prefix: list[bytes] = []
            if want_logs and c.rec.get("LogPath"):
                recs, _ino, _off = await asyncio.to_thread(logs.read_records, c.rec["LogPath"])
                for s, data, _t in recs:
                    if (s == "stdout" and stdout) or (s == "stderr" and stderr):
                        prefix.append(data if raw else frame(1 if s == "stdout" else 2, data))
                if prefix:
                    await head_read(writer)
            if not stream:
                for p in prefix:
                    writer.write(p)
                await _end(writer)
                return
            client = c.client
            try:
                if pending is not None:
                    client = await pending.client_future
                if client is None:
                    for p in prefix:
                        writer.write(p)
                    await _end(writer)
                    return
                att = await client.attach(stdin=stdin, stdout=stdout, stderr=stderr,
                                          detach_keys=dk)
            except Exception as e:  # noqa: BLE001 - the container went away meanwhile
                log.debug("attach %s: %s", c.id[:12], e)
                for p in prefix:
                    writer.write(p)
                await _end(writer)
                return
            finally:
                if pending is not None:
                    pending.attached.set()
            await pump(att, reader, writer, early, raw, stdin, prefix)

        return carry

    async def attach(req: Request):
        carry = _attach(req, req.flag("stdin"), req.flag("stdout"), req.flag("stderr"))
        return HijackResponse(lambda r, w, early: carry(r, w, early, True), RAW_STREAM)

    async def attach_ws(req: Request):
        # API 1.41: stdin, stdout and stderr always (dockerd reads the flags from 1.42 on);
        # the output raw, one frame per write, binary from 1.28 on
        head = websocket.handshake_head(req)
        carry = _attach(req, True, True, True)
        major, _, minor = (req.api_version or "1.41").partition(".")
        opcode = websocket.BINARY if (int(major), int(minor)) >= (1, 28) else websocket.TEXT

        async def callback(reader, writer, early):
            ws_writer = websocket.Writer(writer, opcode)
            await carry(websocket.Reader(reader, ws_writer, early), ws_writer, b"", False)

        return HijackResponse(callback, head=head)

    async def logs_(req: Request) -> StreamResponse | Response:
        c = svc.get(req.params["id"])
        if c.rec["HostConfig"]["LogConfig"].get("Type") == "none" or not c.rec.get("LogPath"):
            # dockerd answers 501 here; no error kind means "not implemented", so say it here
            return json_response({"message": "configured logging driver does not support "
                                             "reading"}, 501)
        stdout, stderr = req.flag("stdout"), req.flag("stderr")
        if not (stdout or stderr):
            raise InvalidArgument("Bad parameters: you must choose at least one stream")
        follow = req.flag("follow")
        ts = req.flag("timestamps")
        try:  # dockerd: what does not parse as a number (also "all") means every line
            tail = int(req.arg("tail"))
        except ValueError:
            tail = -1
        since = _since_ns(req.arg("since"))
        until = _since_ns(req.arg("until"))
        tty = bool(c.rec["Config"].get("Tty"))
        path = c.rec["LogPath"]

        def render(rec) -> bytes:
            s, data, t = rec
            if (s == "stdout" and not stdout) or (s == "stderr" and not stderr):
                return b""
            if ts:
                data = logs.format_time(t).encode() + b" " + data
            return data if tty else frame(1 if s == "stdout" else 2, data)

        async def gen():
            yield b""
            recs, ino, off = await asyncio.to_thread(logs.read_records, path, tail, since,
                                                     until)
            buf = b"".join(render(r) for r in recs)
            if buf:
                yield buf
            if not follow or (until and until < _now_ns()):
                return

            def done() -> bool:
                return c.removed or (not cs.is_running(c.state) and
                                     (c.monitor is None or c.monitor.done()))

            async for r in logs.follow(path, ino, off, done, until):
                b = render(r)
                if b:
                    yield b

        return StreamResponse(gen(), content_type=RAW_STREAM)

    async def top(req: Request) -> Response:
        c = svc.get(req.params["id"])
        if not cs.is_running(c.state) or not c.state.get("Pid"):
            raise Conflict(f"Container {c.id} is not running")
        pids = await run_sync(stats_mod.pids_of, c.state["Pid"])
        return json_response(await run_sync(stats_mod.top, pids, req.arg("ps_args")))

    async def stats(req: Request) -> Response | StreamResponse:
        c = svc.get(req.params["id"])
        stream = req.flag("stream", True)
        one_shot = req.flag("one-shot")

        def sample() -> dict:
            if not cs.is_running(c.state) or not c.state.get("Pid"):
                s = stats_mod.stopped_sample()
            else:
                s = stats_mod.sample(c.state["Pid"])
            s["name"] = c.name
            s["id"] = c.id
            return s

        def paired(s: dict, prev: dict | None) -> dict:
            s["precpu_stats"] = prev["cpu_stats"] if prev else stats_mod.empty_cpu()
            s["preread"] = prev["read"] if prev else stats_mod.ZERO
            return s

        if not stream:
            # one document, as dockerd answers stream=0: Content-Type and Content-Length set;
            # without one-shot, a second sample a second later gives precpu_stats
            prev = None
            s = await asyncio.to_thread(sample)
            if not one_shot and s["read"] != stats_mod.ZERO:
                prev = s
                await asyncio.sleep(1.0)
                s = await asyncio.to_thread(sample)
            return json_response(paired(s, prev))

        async def gen():
            prev = None
            while True:
                s = paired(await asyncio.to_thread(sample), prev)
                yield json_line(s)
                if not cs.is_running(c.state):
                    return
                prev = s
                await asyncio.sleep(1.0)

        # dockerd sets no Content-Type on a streamed stats answer
        return StreamResponse(gen(), content_type="")

    async def changes(req: Request) -> Response:
        c = svc.get(req.params["id"])
        return json_response(await run_sync(svc.changes, c) or None)

    async def export(req: Request) -> StreamResponse:
        c = svc.get(req.params["id"])
        chunks = await archive.export(svc, c)
        return StreamResponse(chunks, content_type="application/x-tar")

    async def archive_head(req: Request) -> Response:
        c = svc.get(req.params["id"])
        st = await archive.stat(svc, c, req.arg("path"), req.params["id"])
        return Response(200, b"", content_type="",
                        headers=[("X-Docker-Container-Path-Stat", archive.encode_stat(st))])

    async def archive_get(req: Request):
        if req.method == "HEAD":
            return await archive_head(req)
        c = svc.get(req.params["id"])
        st, chunks = await archive.get(svc, c, req.arg("path"), req.params["id"])
        return StreamResponse(chunks, content_type="application/x-tar",
                              headers=[("X-Docker-Container-Path-Stat", archive.encode_stat(st))])

    async def archive_put(req: Request) -> Response:
        c = svc.get(req.params["id"])
        await archive.put(svc, c, req.arg("path"), req.stream(),
                          req.flag("noOverwriteDirNonDir"), req.flag("copyUIDGID"),
                          req.params["id"])
        return Response(200, b"", content_type="")

    async def commit(req: Request) -> Response:
        body = await req.json()
        changes_ = [line for v in req.query_multi.get("changes", [])
                    for line in v.split("\n") if line.strip()]
        out = await svc.commit(req.arg("container"), req.arg("repo"), req.arg("tag"),
                               req.arg("comment"), req.arg("author"),
                               req.flag("pause", True), changes_, body or {})
        return json_response(out, 201)

    for method, path, fn in (
        ("GET", "/containers/json", list_),
        ("POST", "/containers/create", create),
        ("POST", "/containers/prune", prune),
        ("GET", "/containers/{id}/json", inspect),
        ("GET", "/containers/{id}/top", top),
        ("GET", "/containers/{id}/logs", logs_),
        ("GET", "/containers/{id}/changes", changes),
        ("GET", "/containers/{id}/export", export),
        ("GET", "/containers/{id}/stats", stats),
        ("POST", "/containers/{id}/resize", resize),
        ("POST", "/containers/{id}/start", start),
        ("POST", "/containers/{id}/stop", stop),
        ("POST", "/containers/{id}/restart", restart),
        ("POST", "/containers/{id}/kill", kill),
        ("POST", "/containers/{id}/update", update),
        ("POST", "/containers/{id}/rename", rename),
        ("POST", "/containers/{id}/pause", pause),
        ("POST", "/containers/{id}/unpause", unpause),
        ("POST", "/containers/{id}/attach", attach),
        ("GET", "/containers/{id}/attach/ws", attach_ws),
        ("POST", "/containers/{id}/wait", wait),
        # {id:.*}: a legacy link is removed by its name, /parent/alias
        ("DELETE", "/containers/{id:.*}", remove),
        ("HEAD", "/containers/{id}/archive", archive_head),
        ("GET", "/containers/{id}/archive", archive_get),
        ("PUT", "/containers/{id}/archive", archive_put),
        ("POST", "/commit", commit),
    ):
        router.add(method, path, fn)


async def head_read(writer, limit: float = 0.5) -> None:
    """Wait (``limit`` s at most) until the client has read the response head.

    docker-py reads the head through a buffered reader, then reads the raw socket: output
    that came in one read with the head is lost (``attach(stream=False, logs=True)`` gave
    b""). dockerd's output comes late enough; berth's logs come at once, so they wait for
    the head to be taken. Only a unix socket says what its peer has read."""
    import socket

    from berth.linux.sockq import unread

    sock = writer.get_extra_info("socket")
    if sock is None or sock.family != socket.AF_UNIX:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while unread(sock.fileno()) and loop.time() < deadline:
        await asyncio.sleep(0.001)


async def _end(writer) -> None:
    try:
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError, RuntimeError):
        pass


def _now_ns() -> int:
    import time

    return time.time_ns()

