"""The registry's HTTP surface: the OCI Distribution spec 1.1 over aiohttp.

Routes (``<name>`` may contain slashes, so one catch-all route parses the path from the right,
and the rightmost of ``/manifests/``, ``/blobs/uploads/``, ``/blobs/``, ``/tags/list``,
``/referrers/`` decides)::

    GET       /v2/                                  200 (or 401 with a challenge)
    GET HEAD  /v2/<name>/blobs/<digest>             200, 206 with Range, 416 RANGE_INVALID
    DELETE    /v2/<name>/blobs/<digest>             202
    POST      /v2/<name>/blobs/uploads/             202 + Location; ?digest= 201 (monolithic);
                                                    ?mount=&from= 201 (or 202 if it cannot)
    PATCH     /v2/<name>/blobs/uploads/<uuid>       202 + Range; out of order 416
    PUT       /v2/<name>/blobs/uploads/<uuid>?digest=   201; mismatch 400 DIGEST_INVALID
    GET       /v2/<name>/blobs/uploads/<uuid>       204 + Range
    DELETE    /v2/<name>/blobs/uploads/<uuid>       204
    GET HEAD  /v2/<name>/manifests/<ref>            200, content negotiation on Accept
    PUT       /v2/<name>/manifests/<ref>[?tag=]     201 (+ OCI-Subject, OCI-Tag)
    DELETE    /v2/<name>/manifests/<ref>            202
    GET       /v2/<name>/tags/list[?n=&last=]       200 (+ Link: rel="next")
    GET       /v2/_catalog[?n=&last=]               200 (+ Link)
    GET       /v2/<name>/referrers/<digest>[?artifactType=]   200, an OCI index
    GET POST  /token                                (token auth) issues bearer tokens

Every error answers the spec's body ``{"errors": [{"code", "message", "detail"}]}``; storage
errors map to codes in one table (``_CODES``). Every response carries
``Docker-Distribution-API-Version: registry/2.0`` as docker expects.
"""

import json
import logging
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from berth.distribution import media
from berth.distribution.reference import InvalidReference, check_digest, check_name, check_tag
from berth.distribution.server import auth as authmod
from berth.distribution.server import storage as st
from berth.errors import BerthError

log = logging.getLogger("berth.registry")

_OCTET = "application/octet-stream"
_MAX_PAGE = 10000


async def _offload(fn, *args):
    """Run a blocking storage step (fsync, a rehash after a restart) off the event loop, so
    that one commit does not stall every other connection."""
    import asyncio

    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


class RegistryError(Exception):
    def __init__(self, status: int, code: str, message: str, detail: object = None,
                 headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.detail = status, code, message, detail
        self.headers = headers or {}


def _error_response(status: int, code: str, message: str, detail: object = None,
                    headers: dict | None = None) -> web.Response:
    body = {"errors": [{"code": code, "message": message, "detail": detail}]}
    return web.Response(status=status, text=json.dumps(body), content_type="application/json",
                        headers=headers)


# storage error class → (status, code); the first match in order wins
_CODES: list[tuple[type, int, str]] = [
    (st.BlobUnknown, 404, "BLOB_UNKNOWN"),
    (st.ManifestUnknown, 404, "MANIFEST_UNKNOWN"),
    (st.NameUnknown, 404, "NAME_UNKNOWN"),
    (st.UploadUnknown, 404, "BLOB_UPLOAD_UNKNOWN"),
    (st.RangeInvalid, 416, "RANGE_INVALID"),
    (st.DigestInvalid, 400, "DIGEST_INVALID"),
    (st.SizeInvalid, 400, "SIZE_INVALID"),
    (st.ManifestBlobUnknown, 400, "MANIFEST_BLOB_UNKNOWN"),
    (media.InvalidManifest, 400, "MANIFEST_INVALID"),
]


@dataclass
class Route:
    kind: str  # base, catalog, tags, blob, upload, manifest, referrers
    name: str = ""
    arg: str = ""


# (route kind, method) pairs the registry answers; the rest is 405 with an Allow header
_HANDLERS = (("blob", "GET"), ("blob", "HEAD"), ("blob", "DELETE"), ("upload", "POST"),
             ("upload", "PATCH"), ("upload", "PUT"), ("upload", "GET"), ("upload", "DELETE"),
             ("manifest", "GET"), ("manifest", "HEAD"), ("manifest", "PUT"),
             ("manifest", "DELETE"), ("tags", "GET"), ("referrers", "GET"))

_MARKERS = (("/manifests/", "manifest"), ("/blobs/uploads/", "upload"), ("/blobs/", "blob"),
            ("/referrers/", "referrers"))


def parse_path(tail: str) -> Route:
    """Split the part of the path after ``/v2/`` into a route; RegistryError if none fits."""
    if tail == "":
        return Route("base")
    if tail in ("_catalog", "_catalog/"):
        return Route("catalog")
    path = "/" + tail
    best: tuple[int, str, str] | None = None
    for marker, kind in _MARKERS:
        i = path.rfind(marker)
        if i > 0 and (best is None or i > best[0]):
            best = (i, marker, kind)
    if path.endswith("/blobs/uploads") and (best is None or best[0] < len(path) - 14):
        best = (len(path) - 14, "/blobs/uploads", "upload")
    if path.endswith("/tags/list"):
        i = len(path) - 10
        if best is None or i > best[0]:
            return Route("tags", _name(path[1:i]))
    if best is None:
        raise RegistryError(404, "NOT_FOUND", f"no such endpoint: /v2/{tail}")
    i, marker, kind = best
    name, arg = path[1:i], path[i + len(marker):]
    if "/" in arg:
        raise RegistryError(404, "NOT_FOUND", f"no such endpoint: /v2/{tail}")
    return Route(kind, _name(name), arg)


def _name(name: str) -> str:
    try:
        return check_name(name)
    except InvalidReference:
        raise RegistryError(400, "NAME_INVALID", f"invalid repository name: {name}") from None


def _digest(s: str) -> str:
    try:
        return check_digest(s)
    except InvalidReference as e:
        raise RegistryError(400, "DIGEST_INVALID", str(e)) from None


def _parse_content_range(value: str) -> tuple[int, int]:
    # the spec's form is "a-b"; docker and others also send "bytes a-b/*" or "bytes=a-b"
    v = value.strip()
    for prefix in ("bytes=", "bytes "):
        if v.startswith(prefix):
            v = v[len(prefix):]
    v = v.split("/")[0]
    a, sep, b = v.partition("-")
    if not (sep and a.isdigit() and b.isdigit()) or int(b) < int(a):
        raise RegistryError(416, "RANGE_INVALID", f"invalid Content-Range: {value}")
    return int(a), int(b)


def _parse_range(value: str, size: int) -> tuple[int, int] | None:
    """An RFC 9110 single byte range → (start, end inclusive), or None if not satisfiable."""
    v = value.strip()
    if not v.startswith("bytes=") or "," in v:
        return None
    a, sep, b = v[6:].strip().partition("-")
    if not sep:
        return None
    if a == "":
        if not b.isdigit() or int(b) == 0:
            return None
        return max(0, size - int(b)), size - 1
    if not a.isdigit() or (b and not b.isdigit()):
        return None
    start, end = int(a), (int(b) if b else size - 1)
    if start >= size or end < start:
        return None
    return start, min(end, size - 1)


def _accepts(request: web.Request, media_type: str) -> bool:
    values = request.headers.getall("Accept", [])
    if not values:
        return True
    types = {t.split(";")[0].strip() for v in values for t in v.split(",")}
    return bool(types & {media_type, "*/*", "application/*"}) or not (types - {""})


class _BlobFile(web.FileResponse):
    """A blob served with sendfile(2), its ETag the digest (as on HEAD, and as the reference
    registry sends it), not aiohttp's mtime-size tag."""

    def __init__(self, path: str, digest: str, **kw) -> None:
        super().__init__(path, **kw)
        self._digest_etag = digest

    @property
    def etag(self):
        return super().etag

    @etag.setter
    def etag(self, value) -> None:
        self.headers["ETag"] = f'"{self._digest_etag}"'


class AccessLogger(AbstractAccessLogger):
    """One line per request: time, method, path, status, content length, seconds."""

    def log(self, request, response, time_taken: float) -> None:
        length = response.content_length if response.content_length is not None else "-"
        self.logger.info("%s %s %s %s %.4f", request.method, request.path_qs, response.status,
                         length, time_taken)


class Registry:
    """The registry application over one storage; optional Basic or token auth."""

    def __init__(self, storage: st.Storage, *, htpasswd: str | None = None,
                 token_auth: bool = False, realm: str | None = None,
                 service: str = "berth-registry", anonymous: tuple[str, ...] = (),
                 delete: bool = True) -> None:
        self.storage = storage
        self.htpasswd = authmod.Htpasswd(htpasswd) if htpasswd else None
        self.tokens = authmod.TokenIssuer.for_root(storage.root, service) if token_auth else None
        self.realm = realm
        self.service = service
        self.anonymous = set(anonymous)
        self.delete = delete

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=media.MANIFEST_MAX)
        app.router.add_route("*", "/v2", self._v2)
        app.router.add_route("*", "/v2/{tail:.*}", self._v2)
        if self.tokens is not None:
            app.router.add_route("GET", "/token", self._token)
            app.router.add_route("POST", "/token", self._token)
        return app

    # -- plumbing ------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler) -> web.StreamResponse:
        try:
            resp = await handler(request)
        except RegistryError as e:
            resp = _error_response(e.status, e.code, e.message, e.detail, e.headers)
        except authmod.Unauthorized as e:
            resp = _error_response(401, "UNAUTHORIZED", e.message, e.detail,
                                   headers={"WWW-Authenticate": e.challenge})
        except authmod.Denied as e:
            resp = _error_response(403, "DENIED", e.message)
        except web.HTTPException as e:
            if e.status == 413:
                resp = _error_response(413, "SIZE_INVALID", "manifest too large")
            else:
                resp = _error_response(e.status, "UNSUPPORTED", e.reason)
        except BerthError as e:
            for cls, status, code in _CODES:
                if isinstance(e, cls):
                    detail = {"digest": e.digest} if isinstance(e, st.ManifestBlobUnknown) else None
                    resp = _error_response(status, code, e.message, detail)
                    break
            else:
                if isinstance(e, InvalidReference):
                    resp = _error_response(400, "NAME_INVALID" if "name" in e.message
                                           else "TAG_INVALID" if "tag" in e.message
                                           else "DIGEST_INVALID", e.message)
                else:
                    log.exception("registry error")
                    resp = _error_response(500, "UNKNOWN", e.message)
        resp.headers["Docker-Distribution-API-Version"] = "registry/2.0"
        return resp

    # -- auth ----------------------------------------------------------------------------------

    def _realm(self, request: web.Request) -> str:
        return self.realm or f"{request.scheme}://{request.host}/token"

    def _authorize(self, request: web.Request, typ: str, name: str, actions: tuple[str, ...],
                   also: tuple[tuple[str, str, tuple[str, ...]], ...] = ()) -> None:
        """Allow the request or raise Unauthorized with the challenge to answer. ``also``
        names more access the request needs (a mount's ``from`` repository): as the reference
        registry, the challenge asks for all of it, so a token client fetches one token that
        covers the mount instead of falling back to an upload."""
        needs = [(typ, name, actions), *also] if actions else []
        detail = [{"Type": t, "Class": "", "Name": n, "Action": a}
                  for t, n, acts in needs for a in acts] or None
        if self.tokens is not None:
            header = request.headers.get("Authorization", "")
            claims = None
            if header[:7].lower() == "bearer ":
                claims = self.tokens.verify(header[7:].strip())
            if claims is not None and all(
                    "*" in (have := authmod.granted(claims, t, n)) or set(acts) <= have
                    for t, n, acts in needs):
                return
            chal = f'Bearer realm="{self._realm(request)}",service="{self.service}"'
            if needs:
                scope = " ".join(f"{t}:{n}:{','.join(acts)}" for t, n, acts in needs)
                chal += f',scope="{scope}"'
                if claims is not None:
                    chal += ',error="insufficient_scope"'
            raise authmod.Unauthorized("authentication required", chal, detail)
        if self.htpasswd is not None:
            creds = authmod.basic_credentials(request.headers.get("Authorization"))
            if creds is None or not self.htpasswd.check(*creds):
                raise authmod.Unauthorized("authentication required",
                                           f'Basic realm="{self.service}"', detail)

    def _may(self, request: web.Request, name: str, action: str) -> bool:
        """Whether the request's credentials allow ``action`` on ``name`` (for mount's from=)."""
        try:
            self._authorize(request, "repository", name, (action,))
            return True
        except authmod.Unauthorized:
            return False

    async def _token(self, request: web.Request) -> web.Response:
        assert self.tokens is not None
        params = dict(request.query)
        scopes = request.query.getall("scope", [])
        if request.method == "POST":
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
            scopes = scopes + [v for v in form.getall("scope", []) if isinstance(v, str)]
        creds = authmod.basic_credentials(request.headers.get("Authorization"))
        if creds is None and params.get("grant_type") == "password":
            creds = (params.get("username", ""), params.get("password", ""))
        subject = ""
        if creds is not None:
            if self.htpasswd is None or not self.htpasswd.check(*creds):
                raise authmod.Unauthorized("invalid username or password",
                                           f'Basic realm="{self.service}"')
            subject = creds[0]
        if params.get("service", self.service) != self.service:
            raise RegistryError(400, "DENIED", f"unknown service: {params.get('service')}")
        grants = []
        for s in scopes:
            for a in authmod.parse_scope(s):
                allowed = set(a.actions) if subject else set(a.actions) & self.anonymous
                if a.type == "registry" and not subject:
                    allowed = set()
                if allowed:
                    grants.append(authmod.Access(a.type, a.name,
                                                 tuple(x for x in a.actions if x in allowed)))
        return web.json_response(self.tokens.issue(subject, grants))

    # -- dispatch ------------------------------------------------------------------------------

    async def _v2(self, request: web.Request) -> web.StreamResponse:
        route = parse_path(request.match_info.get("tail", ""))
        m = request.method
        kind = route.kind
        if kind == "base":
            self._authorize(request, "", "", ())
            return web.json_response({})
        if kind == "catalog":
            self._authorize(request, "registry", "catalog", ("*",))
            return self._paged(request, "repositories", self.storage.repositories(),
                               "/v2/_catalog")
        write = m in ("POST", "PUT", "PATCH")
        action = "push" if write else "delete" if m == "DELETE" else "pull"
        if kind == "upload" and m in ("GET", "DELETE"):
            action = "push"
        also = ()
        if kind == "upload" and m == "POST" and "mount" in request.query:
            source = request.query.get("from", "")
            try:
                if source and check_name(source) != route.name:
                    also = (("repository", source, ("pull",)),)
            except InvalidReference:
                pass
        # docker asks for pull,push when it pushes: a pushing client may also read
        self._authorize(request, "repository", route.name, (action,), also)
        handler = {
            ("blob", "GET"): self._get_blob, ("blob", "HEAD"): self._get_blob,
            ("blob", "DELETE"): self._delete_blob,
            ("upload", "POST"): self._start_upload, ("upload", "PATCH"): self._patch_upload,
            ("upload", "PUT"): self._put_upload, ("upload", "GET"): self._upload_status,
            ("upload", "DELETE"): self._cancel_upload,
            ("manifest", "GET"): self._get_manifest, ("manifest", "HEAD"): self._get_manifest,
            ("manifest", "PUT"): self._put_manifest,
            ("manifest", "DELETE"): self._delete_manifest,
            ("tags", "GET"): self._tags, ("referrers", "GET"): self._referrers,
        }.get((kind, m))
        if handler is None:
            allow = ", ".join(sorted(meth for k, meth in _HANDLERS if k == kind))
            raise RegistryError(405, "UNSUPPORTED", f"{m} not allowed on {request.path}",
                                headers={"Allow": allow})
        return await handler(request, route)

    # -- blobs ---------------------------------------------------------------------------------

    async def _get_blob(self, request: web.Request, route: Route) -> web.StreamResponse:
        digest = _digest(route.arg)
        size = self.storage.stat_blob(route.name, digest, manifests=True)
        headers = {"Docker-Content-Digest": digest, "Accept-Ranges": "bytes",
                   "ETag": f'"{digest}"', "Content-Type": _OCTET,
                   "Cache-Control": "max-age=31536000"}
        rng = request.headers.get("Range")
        if rng is not None and _parse_range(rng, size) is None:
            raise RegistryError(416, "RANGE_INVALID", f"range {rng} not satisfiable",
                                headers={"Content-Range": f"bytes */{size}"})
        if request.method == "HEAD":
            return web.Response(headers={**headers, "Content-Length": str(size)})
        return _BlobFile(self.storage.blob_path(digest), digest, chunk_size=1 << 20,
                         headers=headers)

    async def _delete_blob(self, request: web.Request, route: Route) -> web.Response:
        if not self.delete:
            raise RegistryError(405, "UNSUPPORTED", "deletion is disabled")
        self.storage.unlink_blob(route.name, _digest(route.arg))
        return web.Response(status=202, headers={"Content-Length": "0"})

    # -- uploads -------------------------------------------------------------------------------

    @staticmethod
    def _upload_headers(up: st.Upload, size: int) -> dict:
        return {"Location": f"/v2/{up.name}/blobs/uploads/{up.uuid}",
                "Range": f"0-{max(size - 1, 0)}", "Docker-Upload-UUID": up.uuid,
                "Content-Length": "0"}

    @staticmethod
    def _created(name: str, digest: str) -> web.Response:
        return web.Response(status=201, headers={
            "Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest,
            "Content-Length": "0"})

    @staticmethod
    async def _body(request: web.Request):
        # coalesce the socket's small chunks: fewer writes, and hashing in larger steps
        buf = bytearray()
        async for chunk in request.content.iter_any():
            buf += chunk
            if len(buf) >= 1 << 20:
                yield bytes(buf)
                buf.clear()
        if buf:
            yield bytes(buf)

    async def _start_upload(self, request: web.Request, route: Route) -> web.Response:
        q = request.query
        if "mount" in q:
            digest = _digest(q["mount"])
            source = q.get("from")
            try:
                source = check_name(source) if source else None
            except InvalidReference:
                source = None
            if source and self._may(request, source, "pull") and \
                    self.storage.mount_blob(route.name, digest, source):
                return self._created(route.name, digest)
            # no ``from`` (the spec's automatic content discovery): any blob the registry
            # holds, unless token grants are per repository (a mount would leak across them)
            if not q.get("from") and self.tokens is None and \
                    self.storage.mount_blob(route.name, digest, None):
                return self._created(route.name, digest)
        algorithm = q.get("digest-algorithm", "sha256")
        if "digest" in q:
            algorithm = _digest(q["digest"]).partition(":")[0]
        try:
            up = self.storage.new_upload(route.name, algorithm)
        except InvalidReference as e:
            raise RegistryError(400, "DIGEST_INVALID", str(e)) from None
        if "digest" in q:
            try:
                await up.append(self._body(request), length=request.content_length)
                digest = await _offload(up.commit, q["digest"])
            except BaseException:
                up.cancel()
                raise
            return self._created(route.name, digest)
        return web.Response(status=202, headers=self._upload_headers(up, 0))

    async def _patch_upload(self, request: web.Request, route: Route) -> web.Response:
        up = self.storage.get_upload(route.name, route.arg)
        start = None
        cr = request.headers.get("Content-Range")
        if cr:
            start, end = _parse_content_range(cr)
            if request.content_length is not None and request.content_length != end - start + 1:
                raise RegistryError(416, "RANGE_INVALID",
                                    f"Content-Range {cr} does not match Content-Length "
                                    f"{request.content_length}")
        async with up.lock:
            size = await up.append(self._body(request), start, request.content_length)
        return web.Response(status=202, headers=self._upload_headers(up, size))

    async def _put_upload(self, request: web.Request, route: Route) -> web.Response:
        up = self.storage.get_upload(route.name, route.arg)
        if "digest" not in request.query:
            raise RegistryError(400, "DIGEST_INVALID", "digest parameter missing")
        digest = _digest(request.query["digest"])
        start = None
        cr = request.headers.get("Content-Range")
        if cr:
            start, _ = _parse_content_range(cr)
        async with up.lock:
            if cr or request.content_length or request.headers.get("Transfer-Encoding"):
                await up.append(self._body(request), start, request.content_length)
            try:
                await _offload(up.commit, digest)
            except st.DigestInvalid:
                up.cancel()
                raise
        return self._created(route.name, digest)

    async def _upload_status(self, request: web.Request, route: Route) -> web.Response:
        up = self.storage.get_upload(route.name, route.arg)
        return web.Response(status=204, headers=self._upload_headers(up, up.size))

    async def _cancel_upload(self, request: web.Request, route: Route) -> web.Response:
        up = self.storage.get_upload(route.name, route.arg)
        async with up.lock:
            up.size  # noqa: B018 - raises BLOB_UPLOAD_UNKNOWN if another request ended it
            up.cancel()
        return web.Response(status=204)

    # -- manifests -----------------------------------------------------------------------------

    @staticmethod
    def _known_ref(route: Route) -> str:
        """The reference of a GET, HEAD or DELETE: a text that is no tag can name no manifest,
        so it is unknown (404, as the reference registry, whose routes do not match it, and
        the conformance suite want); a malformed digest is DIGEST_INVALID."""
        ref = route.arg
        if ":" in ref:
            return _digest(ref)
        try:
            return check_tag(ref)
        except InvalidReference:
            raise RegistryError(404, "MANIFEST_UNKNOWN", f"manifest unknown: {route.name}:{ref}",
                                {"Name": route.name, "Tag": ref}) from None

    async def _get_manifest(self, request: web.Request, route: Route) -> web.Response:
        ref = self._known_ref(route)
        raw, media_type, digest = self.storage.get_manifest(route.name, ref)
        if not _accepts(request, media_type):
            raise RegistryError(404, "MANIFEST_UNKNOWN",
                                f"manifest {route.name}:{ref} is {media_type}, "
                                "which the Accept header does not allow")
        headers = {"Docker-Content-Digest": digest, "ETag": f'"{digest}"',
                   "Content-Type": media_type}
        if request.method == "HEAD":
            return web.Response(headers={**headers, "Content-Length": str(len(raw))})
        return web.Response(body=raw, headers=headers)

    async def _put_manifest(self, request: web.Request, route: Route) -> web.Response:
        if request.content_length is not None and request.content_length > media.MANIFEST_MAX:
            raise RegistryError(413, "SIZE_INVALID", "manifest too large")
        raw = await request.read()
        tags = request.query.getall("tag", [])
        digest, m = self.storage.put_manifest(route.name, raw, request.content_type, route.arg,
                                              tags)
        headers = {"Location": f"/v2/{route.name}/manifests/{digest}",
                   "Docker-Content-Digest": digest, "Content-Length": "0"}
        resp = web.Response(status=201, headers=headers)
        if m.subject is not None:
            resp.headers["OCI-Subject"] = m.subject.digest
        for t in tags:
            resp.headers.add("OCI-Tag", t)
        return resp

    async def _delete_manifest(self, request: web.Request, route: Route) -> web.Response:
        if not self.delete:
            raise RegistryError(405, "UNSUPPORTED", "deletion is disabled")
        self.storage.delete_manifest(route.name, self._known_ref(route))
        return web.Response(status=202, headers={"Content-Length": "0"})

    # -- discovery -----------------------------------------------------------------------------

    def _paged(self, request: web.Request, key: str, items: list[str], path: str,
               extra: dict | None = None) -> web.Response:
        q = request.query
        n = None
        if "n" in q:
            if not q["n"].isdigit():
                raise RegistryError(400, "PAGINATION_NUMBER_INVALID", f"invalid n: {q['n']}")
            n = min(int(q["n"]), _MAX_PAGE)
        last = q.get("last")
        if last:
            items = [t for t in items if t > last]
        headers = {}
        if n is not None and len(items) > n:
            items = items[:n]
            if n:
                headers["Link"] = f'<{path}?last={quote(items[-1], safe="")}&n={n}>; rel="next"'
        elif n == 0:
            items = []
        return web.json_response({**(extra or {}), key: items}, headers=headers)

    async def _tags(self, request: web.Request, route: Route) -> web.Response:
        return self._paged(request, "tags", self.storage.tags(route.name),
                           f"/v2/{route.name}/tags/list", {"name": route.name})

    async def _referrers(self, request: web.Request, route: Route) -> web.Response:
        digest = _digest(route.arg)
        refs = self.storage.referrers(route.name, digest)
        headers = {}
        at = request.query.get("artifactType")
        if at:
            refs = [r for r in refs if r.get("artifactType") == at]
            headers["OCI-Filters-Applied"] = "artifactType"
        body = {"schemaVersion": 2, "mediaType": media.OCI_INDEX, "manifests": refs}
        headers["Content-Type"] = media.OCI_INDEX
        return web.Response(body=json.dumps(body).encode(), headers=headers)


async def serve(registry: Registry, host: str, port: int, *, ssl_context=None,
                access_log: str | None = None) -> web.AppRunner:
    """Start serving; returns the runner (the caller ends it with ``runner.cleanup()``)."""
    kw: dict = {"access_log": None}
    if access_log:
        logger = logging.getLogger("berth.registry.access")
        logger.setLevel(logging.INFO)
        h = logging.FileHandler(access_log) if access_log != "-" else logging.StreamHandler()
        h.setFormatter(logging.Formatter("%(created).3f %(message)s"))
        logger.addHandler(h)
        logger.propagate = False
        kw = {"access_log": logger, "access_log_class": AccessLogger}
    app = registry.app()
    app.cleanup_ctx.append(_purging(registry.storage))
    runner = web.AppRunner(app, **kw)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context, backlog=256)
    await site.start()
    return runner


def _purging(storage: st.Storage, every: float = 3600.0):
    """Abandoned upload sessions are purged at start and then hourly, off the event loop."""
    async def ctx(app):
        import asyncio

        async def loop():
            while True:
                try:
                    n = await _offload(storage.purge_uploads)
                    if n:
                        log.info("purged %d abandoned upload(s)", n)
                except OSError as e:
                    log.warning("upload purge: %s", e)
                await asyncio.sleep(every)

        task = asyncio.get_running_loop().create_task(loop())
        yield
        task.cancel()

    return ctx


def bound_port(runner: web.AppRunner) -> int:
    for s in runner.sites:
        server = getattr(s, "_server", None)
        if server is not None and server.sockets:
            return server.sockets[0].getsockname()[1]
    raise RuntimeError("registry is not listening")

