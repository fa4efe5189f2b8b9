"""Image routes (filled in with the image store)."""

from __future__ import annotations

from ..http import Request, json_response
from ..streams import run_sync


def register(router, engine) -> None:
    async def list_images(req: Request):
        return json_response(await run_sync(engine.images.list))

    router.add("GET", "/images/json", list_images)
