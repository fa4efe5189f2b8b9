"""Volume routes: /volumes (list), /volumes/create, /volumes/{name}, /volumes/prune."""

from __future__ import annotations

from ..http import Request, Response, json_response, no_content
from ..streams import run_sync
from .system import parse_filters


def _version(v: str | None) -> tuple[int, int]:
    a, _, b = (v or "1.41").partition(".")
    return int(a), int(b or 0)


def register(router, engine) -> None:
    vols = engine.volumes

    async def list_(req: Request) -> Response:
        return json_response(await run_sync(vols.list, parse_filters(req)))

    async def create(req: Request) -> Response:
        body = await req.json() or {}
        out = await run_sync(vols.create, body.get("Name") or "", body.get("Driver") or "",
                             body.get("DriverOpts") or {}, body.get("Labels") or {})
        return json_response(out, 201)

    async def inspect(req: Request) -> Response:
        return json_response(vols.inspect(req.params["name"]))

    async def remove(req: Request) -> Response:
        await run_sync(vols.remove, req.params["name"], req.flag("force"))
        return no_content()

    async def prune(req: Request) -> Response:
        # dockerd 23+ (API 1.42) prunes only anonymous volumes unless all=true
        all_ = _version(req.api_version) < (1, 42)
        return json_response(await run_sync(vols.prune, parse_filters(req), all_))

    router.add("GET", "/volumes", list_)
    router.add("POST", "/volumes/create", create)
    router.add("POST", "/volumes/prune", prune)
    router.add("GET", "/volumes/{name}", inspect)
    router.add("DELETE", "/volumes/{name}", remove)
