"""Registry routes: pull (``POST /images/create?fromImage=``, reached through the images
module's ``create``), push (``POST /images/{name}/push``) and login (``POST /auth``).

Credentials come as dockerd takes them: ``X-Registry-Auth`` (base64url JSON AuthConfig) on
pull and push, a JSON AuthConfig body on ``/auth``. Pull and push answer docker's JSON
progress stream; an error before the first message answers with its status code (a missing
image is 404, a refused login 401/403), after it in-band as ``{"errorDetail": ...}``.
"""

from __future__ import annotations

from berth.errors import Internal, InvalidArgument, PermissionDenied, Unavailable

from ..http import Request, StreamResponse, json_response
from ..streams import progress_stream, run_sync


def _credentials(req: Request):
    from berth.distribution.dockerconfig import decode_registry_auth

    return decode_registry_auth(req.header("x-registry-auth"))


def _pull_as_dockerd(pull):
    """dockerd answers a pull that cannot reach the registry, or lacks the credentials a Basic
    registry asks for, with 500 (its words are kept): clients branch on that status."""

    def call(*args, **kw):
        try:
            return pull(*args, **kw)
        except (Unavailable, PermissionDenied) as e:
            raise Internal(e.message) from e

    return call


def register(router, engine) -> None:
    async def pull(req: Request) -> StreamResponse:
        image = req.arg("fromImage")
        if not image:
            raise InvalidArgument("fromImage is required")
        return StreamResponse(progress_stream(
            _pull_as_dockerd(engine.registry.pull), image, req.arg("tag"), req.arg("platform"),
            _credentials(req)))

    async def push(req: Request) -> StreamResponse:
        return StreamResponse(progress_stream(
            engine.registry.push, req.params["name"], req.arg("tag"), _credentials(req)))

    async def auth(req: Request):
        return json_response(await run_sync(engine.registry.login, await req.json()))

    # the images module's POST /images/create hands fromImage requests to engine.pull
    engine.pull = pull
    router.add("POST", "/images/{name:.*}/push", push)
    router.add("POST", "/auth", auth)
