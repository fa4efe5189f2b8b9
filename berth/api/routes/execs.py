"""Exec routes: POST /containers/{id}/exec, POST /exec/{id}/start|resize, GET /exec/{id}/json.

``start`` hijacks the connection like attach (raw output with a tty, 8-byte-header frames
without) unless ``Detach`` is set, when it answers 200 at once.
"""

from __future__ import annotations

import asyncio

from berth.errors import BerthError

from ..http import HijackResponse, Request, Response, json_response
from .containers import RAW_STREAM, _end, frame, pump


def register(router, engine) -> None:
    execs = engine.execs

    async def create(req: Request) -> Response:
        body = await req.json() or {}
        return json_response(execs.create(req.params["id"], body), 201)

    async def inspect(req: Request) -> Response:
        return json_response(execs.inspect(req.params["id"]))

    async def resize(req: Request) -> Response:
        try:
            h, w = int(req.arg("h") or 0), int(req.arg("w") or 0)
        except ValueError:
            from berth.errors import InvalidArgument

            raise InvalidArgument("invalid resize height or width") from None
        await execs.resize(req.params["id"], h, w)
        return Response(201, b"", content_type="text/plain; charset=utf-8")

    async def start(req: Request):
        body = await req.json() or {}
        x = execs.get(req.params["id"])
        if body.get("ConsoleSize") and x.config["Tty"]:
            x.config["ConsoleSize"] = body["ConsoleSize"]
        if body.get("Detach"):
            await execs.start(x.id, detach=True)
            return Response(200, b"", content_type="application/json")
        execs.check_startable(x)  # 404/409 while HTTP can still say so
        tty = x.config["Tty"]
        stdin = x.config["AttachStdin"]

        async def callback(reader, writer, early):
            # As dockerd: the stream is up before the process runs, so a client that reads
            # the 101 answer through a buffered reader (docker-py) loses none of its output.
            try:
                att = await execs.start(x.id, detach=False)
            except BerthError as e:
                msg = f"{e}\r\n".encode()
                writer.write(msg if tty else frame(1, msg))  # on stdout, as dockerd
                await _end(writer)
                return
            try:
                await pump(att, reader, writer, early, tty, stdin)
            finally:
                execs.attach_ended(x, att.exit)
                await _end(writer)

        return HijackResponse(callback, RAW_STREAM)

    router.add("POST", "/containers/{id}/exec", create)
    router.add("POST", "/exec/{id}/start", start)
    router.add("POST", "/exec/{id}/resize", resize)
    router.add("GET", "/exec/{id}/json", inspect)
    _ = asyncio
