"""Network routes: /networks (list), /networks/create, /networks/{id} (inspect, remove),
/networks/{id}/connect, /networks/{id}/disconnect, /networks/prune."""

from __future__ import annotations

from berth.errors import InvalidArgument

from ..http import Request, Response, json_response, no_content
from ..streams import run_sync
from .system import parse_filters


def register(router, engine) -> None:
    nets = engine.networks

    async def list_(req: Request) -> Response:
        return json_response(await run_sync(nets.list, parse_filters(req)))

    async def create(req: Request) -> Response:
        body = await req.json()
        if body is None:
            raise InvalidArgument("invalid network config: the request has no body")
        return json_response(await run_sync(nets.create, body), 201)

    async def inspect(req: Request) -> Response:
        return json_response(await run_sync(nets.inspect, req.params["id"], req.flag("verbose"),
                                            req.query.get("scope", "")))

    async def remove(req: Request) -> Response:
        await run_sync(nets.remove, req.params["id"])
        return no_content()

    async def connect(req: Request) -> Response:
        body = await req.json() or {}
        if not isinstance(body, dict):
            raise InvalidArgument("invalid connect request: expected a JSON object")
        await nets.connect(req.params["id"], body.get("Container") or "",
                           body.get("EndpointConfig"))
        return Response(200, b"", content_type="text/plain; charset=utf-8")

    async def disconnect(req: Request) -> Response:
        body = await req.json() or {}
        if not isinstance(body, dict):
            raise InvalidArgument("invalid disconnect request: expected a JSON object")
        await nets.disconnect(req.params["id"], body.get("Container") or "",
                              bool(body.get("Force")))
        return Response(200, b"", content_type="text/plain; charset=utf-8")

    async def prune(req: Request) -> Response:
        return json_response(await run_sync(nets.prune, parse_filters(req)))

    router.add("GET", "/networks", list_)
    router.add("POST", "/networks/create", create)
    router.add("POST", "/networks/prune", prune)
    router.add("POST", "/networks/{id}/connect", connect)
    router.add("POST", "/networks/{id}/disconnect", disconnect)
    # names may hold slashes (dockerd takes "a/b")
    router.add("GET", "/networks/{id:.*}", inspect)
    router.add("DELETE", "/networks/{id:.*}", remove)
