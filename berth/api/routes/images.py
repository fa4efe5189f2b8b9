"""Image routes: list, inspect, history, tag, remove, load, save, import (images/create),
prune."""

from __future__ import annotations

from berth.errors import InvalidArgument, Unavailable

from ..http import Request, Response, StreamResponse, json_response
from ..streams import body_progress_stream, run_sync, writer_stream
from .system import parse_filters


def register(router, engine) -> None:
    images = engine.images

    async def list_images(req: Request) -> Response:
        return json_response(await run_sync(images.list, req.flag("all"), parse_filters(req),
                                            req.flag("shared-size")))

    async def inspect(req: Request) -> Response:
        return json_response(await run_sync(images.inspect, req.params["name"]))

    async def history(req: Request) -> Response:
        return json_response(await run_sync(images.history, req.params["name"]))

    async def tag(req: Request) -> Response:
        await run_sync(images.tag, req.params["name"], req.arg("repo"), req.arg("tag"))
        return Response(201, b"", content_type="")

    async def remove(req: Request) -> Response:
        return json_response(await run_sync(images.remove, req.params["name"],
                                            req.flag("force"), req.flag("noprune")))

    async def load(req: Request) -> StreamResponse:
        return StreamResponse(body_progress_stream(req, images.load, in_band=True,
                                                   quiet=req.flag("quiet")))

    async def save(req: Request) -> StreamResponse:
        names = req.query_multi.get("names", [])
        if "name" in req.params:
            names = [req.params["name"]]
        return StreamResponse(writer_stream(images.save, names),
                              content_type="application/x-tar")

    async def create(req: Request) -> StreamResponse:
        src = req.arg("fromSrc")
        if src:
            if src != "-":
                raise InvalidArgument(f"import from {src}: only an uploaded archive (-) is "
                                      "supported")
            return StreamResponse(body_progress_stream(
                req, images.import_, req.arg("repo"), req.arg("tag"), req.arg("message"),
                req.query_multi.get("changes", []), None, req.arg("platform")))
        pull = getattr(engine, "pull", None)
        if pull is None or not req.arg("fromImage"):
            raise Unavailable("pulling images is not available in this berthd")
        return await pull(req)

    async def prune(req: Request) -> Response:
        return json_response(await run_sync(images.prune, parse_filters(req)))

    router.add("GET", "/images/json", list_images)
    router.add("POST", "/images/load", load)
    router.add("GET", "/images/get", save)
    router.add("POST", "/images/create", create)
    router.add("POST", "/images/prune", prune)
    router.add("GET", "/images/{name:.*}/json", inspect)
    router.add("GET", "/images/{name:.*}/history", history)
    router.add("GET", "/images/{name:.*}/get", save)
    router.add("POST", "/images/{name:.*}/tag", tag)
    router.add("DELETE", "/images/{name:.*}", remove)
