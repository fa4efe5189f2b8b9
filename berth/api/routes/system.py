"""System routes: /_ping, /version, /info, /events, /system/df."""

from __future__ import annotations

import asyncio
import time

from berth.errors import InvalidArgument

from ..http import Request, Response, StreamResponse, json_response
from ..router import API_VERSION, MIN_API_VERSION
from ..streams import json_line, run_sync

PING_HEADERS = [("Cache-Control", "no-cache, no-store, must-revalidate"), ("Pragma", "no-cache")]


def parse_timestamp(value: str, now: float | None = None) -> int | None:
    """Docker's ``since``/``until``: unix seconds (with fraction), RFC 3339, or a duration."""
    if not value:
        return None
    now = time.time() if now is None else now
    try:
        return int(float(value) * 1e9)
    except ValueError:
        pass
    units = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    for u in sorted(units, key=len, reverse=True):
        if value.endswith(u):
            try:
                return int((now - float(value[:-len(u)]) * units[u]) * 1e9)
            except ValueError:
                break
    from datetime import datetime

    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1e9)
    except ValueError:
        raise InvalidArgument(f"invalid timestamp: {value}") from None


def parse_filters(req: Request) -> dict[str, list[str]]:
    """The ``filters`` query: ``{"name": ["v"]}`` or the old ``{"name": {"v": true}}``."""
    raw = req.json_arg("filters")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidArgument("invalid filters: expected a JSON object")
    out: dict[str, list[str]] = {}
    for k, v in raw.items():
        if isinstance(v, dict):
            out[k] = [x for x, on in v.items() if on]
        elif isinstance(v, list):
            out[k] = [str(x) for x in v]
        elif isinstance(v, str):
            out[k] = [v]
        else:
            raise InvalidArgument(f"invalid filter {k!r}")
    return out


def register(router, engine) -> None:
    async def ping(req: Request) -> Response:
        # HEAD answers Content-Length: 0, as dockerd does
        return Response(200, b"" if req.method == "HEAD" else b"OK",
                        content_type="text/plain; charset=utf-8", headers=PING_HEADERS)

    async def version(req: Request) -> Response:
        return json_response(engine.version(API_VERSION, MIN_API_VERSION))

    async def info(req: Request) -> Response:
        return json_response(await run_sync(engine.info))

    async def events(req: Request) -> StreamResponse:
        filters = parse_filters(req)
        from berth.engine.events import matches

        since = parse_timestamp(req.arg("since"))
        until = parse_timestamp(req.arg("until"))
        past, sub = engine.events.subscribe(since, until)

        async def gen():
            try:
                # The header goes out at once: `docker events` waits for it before printing.
                yield b""
                for ev in past:
                    if matches(ev, filters):
                        yield json_line(ev)
                while True:
                    timeout = None
                    if until is not None:
                        timeout = (until - time.time_ns()) / 1e9
                        if timeout <= 0:
                            return
                    try:
                        ev = await asyncio.wait_for(sub.get(), timeout)
                    except TimeoutError:
                        return
                    if until is not None and ev["timeNano"] > until:
                        return
                    if matches(ev, filters):
                        yield json_line(ev)
            finally:
                sub.close()

        return StreamResponse(gen())

    async def system_df(req: Request) -> Response:
        return json_response(await run_sync(engine.system_df))

    router.add("GET", "/_ping", ping)
    router.add("HEAD", "/_ping", ping)
    router.add("GET", "/version", version)
    router.add("GET", "/info", info)
    router.add("GET", "/events", events)
    router.add("GET", "/system/df", system_df)
