"""The API server: listeners, the router built from every resource module, error mapping.

``App(engine)`` registers each module in ``ROUTE_MODULES`` (``berth.api.routes.<name>``, each
with ``register(router, engine)``); ``App.serve(hosts)`` listens on ``unix://`` (and
``tcp://``, loopback only by convention) sockets until ``App.stop()``. Every response carries
the headers dockerd sends (``Api-Version``, ``Docker-Experimental``, ``Ostype``).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os

from berth.errors import BerthError, InvalidArgument

from .errors import error_response
from .http import Connection, Request
from .router import API_VERSION, Router

log = logging.getLogger("berth.api")

# One module per resource; later issues append theirs ("containers", "networks", ...).
ROUTE_MODULES = ["system", "images", "distribution", "containers", "execs", "volumes",
                 "networks", "swarm"]

COMMON_HEADERS = [("Api-Version", API_VERSION), ("Docker-Experimental", "false"),
                  ("Ostype", "linux")]


class App:
    def __init__(self, engine, modules: list[str] | None = None) -> None:
        self.engine = engine
        self.router = Router()
        for name in modules if modules is not None else ROUTE_MODULES:
            mod = importlib.import_module(f"berth.api.routes.{name}")
            mod.register(self.router, engine)
        self._servers: list[asyncio.base_events.Server] = []
        self._conns: set[asyncio.Task] = set()
        self._unix_paths: list[tuple[str, int]] = []

    async def dispatch(self, req: Request):
        try:
            handler = self.router.resolve(req)
            return await handler(req)
        except BerthError as e:
            return error_response(e)
        except Exception as e:  # noqa: BLE001 - a bug: log it, answer 500
            return error_response(e)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._conns.add(task)
        try:
            await Connection(reader, writer, self.dispatch, COMMON_HEADERS,
                             error_response).serve()
        finally:
            self._conns.discard(task)

    async def listen(self, host: str, mode: int = 0o660, gid: int = 0) -> None:
        if host.startswith("unix://") or host.startswith("/"):
            path = host[len("unix://"):] if host.startswith("unix://") else host
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            if os.path.lexists(path):
                os.unlink(path)  # stale: the caller holds the root's lock
            # Created 0600 then opened up: no window where the socket is wider than asked.
            old = os.umask(0o177)
            try:
                server = await asyncio.start_unix_server(self._client, path=path, limit=2**20)
            finally:
                os.umask(old)
            os.chown(path, 0, gid)
            os.chmod(path, mode)
            self._unix_paths.append((path, os.stat(path).st_ino))
        elif host.startswith("tcp://"):
            hostport = host[len("tcp://"):]
            h, _, p = hostport.rpartition(":")
            server = await asyncio.start_server(self._client, h or "127.0.0.1", int(p or 2375))
        else:
            raise InvalidArgument(f"unsupported host: {host} (use unix:///path or tcp://addr:port)")
        self._servers.append(server)
        log.info("API listen on %s", host)

    async def stop(self) -> None:
        for s in self._servers:
            s.close()
        for t in list(self._conns):
            t.cancel()
        if self._conns:
            await asyncio.gather(*self._conns, return_exceptions=True)
        for s in self._servers:
            await s.wait_closed()
        for p, ino in self._unix_paths:
            # only our own socket: another daemon may have taken the path since
            try:
                if os.stat(p).st_ino == ino:
                    os.unlink(p)
            except FileNotFoundError:
                pass
