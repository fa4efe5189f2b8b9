"""Routes: (method, pattern) → handler, with and without the ``/v1.xx`` version prefix.

Patterns are Docker's own (``/images/{name:.*}/json``): a ``{param}`` matches one path segment,
``{param:.*}`` matches any text including slashes (image names have them). Each resource's
router module exposes ``register(router, engine)``; handlers stay thin: decode the request,
call the engine, encode the answer.

The version prefix is checked here, once: a client newer than ``API_VERSION`` or older than
``MIN_API_VERSION`` gets dockerd's 400 message; ``request.api_version`` carries the version a
handler may need for behaviour that changed between API versions.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from berth.errors import InvalidArgument, NotFound

from .http import Handler, Request

API_VERSION = "1.41"
MIN_API_VERSION = "1.12"

_VERSION_PREFIX = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")
_PARAM = re.compile(r"\{(\w+)(?::([^}]*))?\}")


class PageNotFound(NotFound):
    pass


def _version_tuple(v: str) -> tuple[int, int]:
    a, _, b = v.partition(".")
    return int(a), int(b or 0)


def _compile(pattern: str) -> re.Pattern[str]:
    out, pos = ["^"], 0
    for m in _PARAM.finditer(pattern):
        out.append(re.escape(pattern[pos:m.start()]))
        expr = m.group(2) or "[^/]+"
        out.append(f"(?P<{m.group(1)}>{expr})")
        pos = m.end()
    out.append(re.escape(pattern[pos:]))
    out.append("$")
    return re.compile("".join(out))


class Router:
    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method.upper(), _compile(pattern), handler))

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        """Decorator form of ``add``."""

        def deco(fn: Handler) -> Handler:
            self.add(method, pattern, fn)
            return fn

        return deco

    def resolve(self, req: Request) -> Handler:
        """Pick the handler for ``req``; set ``req.params`` and ``req.api_version``."""
        path = req.path
        m = _VERSION_PREFIX.match(path)
        if m:
            version = f"{int(m.group(1))}.{int(m.group(2))}"
            if _version_tuple(version) > _version_tuple(API_VERSION):
                raise InvalidArgument(f"client version {version} is too new. Maximum supported "
                                      f"API version is {API_VERSION}")
            if _version_tuple(version) < _version_tuple(MIN_API_VERSION):
                raise InvalidArgument(f"client version {version} is too old. Minimum supported "
                                      f"API version is {MIN_API_VERSION}, please upgrade your "
                                      "client to a newer version")
            req.api_version = version
            path = m.group(3)
        else:
            req.api_version = API_VERSION
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/")
        # HEAD falls back to the GET route (the server sends no body for HEAD).
        methods = ("HEAD", "GET") if req.method == "HEAD" else (req.method,)
        for method in methods:
            for rmethod, rx, handler in self._routes:
                if rmethod != method:
                    continue
                mm = rx.match(path)
                if mm:
                    req.params = mm.groupdict()
                    return handler
        raise PageNotFound("page not found")
