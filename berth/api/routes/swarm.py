"""Swarm routes, answered as a dockerd that is not in a swarm: berth has no swarm mode.

Clients ask anyway: ``docker info`` reads the swarm state from /info, and docker-py's
``leave_swarm(force=True)`` (its integration suites call it in every tearDown) treats dockerd's
503 "not part of a swarm" as success.
"""

from __future__ import annotations

from ..http import Request, Response, json_response

NOT_IN_SWARM = ("This node is not part of a swarm", 503)
NOT_MANAGER = ("This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm "
               "join\" to connect this node to swarm and try again.", 503)


def register(router, engine) -> None:
    async def leave(req: Request) -> Response:
        return json_response({"message": NOT_IN_SWARM[0]}, NOT_IN_SWARM[1])

    async def not_manager(req: Request) -> Response:
        return json_response({"message": NOT_MANAGER[0]}, NOT_MANAGER[1])

    router.add("POST", "/swarm/leave", leave)
    for method, path in (("GET", "/swarm"), ("POST", "/swarm/init"), ("POST", "/swarm/join"),
                         ("POST", "/swarm/update"), ("GET", "/swarm/unlockkey"),
                         ("GET", "/services"), ("GET", "/nodes"), ("GET", "/tasks"),
                         ("GET", "/secrets"), ("GET", "/configs")):
        router.add(method, path, not_manager)
