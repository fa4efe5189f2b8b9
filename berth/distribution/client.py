"""The registry client's transport: endpoints, auth, and the protocol's requests for one host.

A ``RegistryClient`` talks to one registry host (through its mirrors, for docker.io pulls) on a
shared aiohttp session. It

- picks the endpoint: mirrors first (pull of docker.io only), then the registry; for an
  insecure registry (127.0.0.0/8 always) HTTPS without verification first, then plain HTTP;
  the first endpoint that answers ``GET /v2/`` is kept for the client's life;
- authenticates as docker does. The ping's 401 names the scheme: ``Basic`` → credentials on
  every request; ``Bearer realm=,service=`` → a token per scope
  (``repository:NAME:pull[,push]``) from the realm, Basic-authenticated with the user's
  credentials, or a ``refresh_token`` grant for an identity token; a 401 with a wider scope
  (``insufficient_scope``) fetches a new token once and retries. Tokens are cached until they
  expire. Credentials never go to another host than the realm's or the registry's;
- maps the registry's error bodies to berth errors with docker's wording
  (``manifest unknown: manifest unknown``, ``unauthorized: authentication required``).

Blob and manifest bodies are streamed (``iter_chunked``), never buffered whole, except manifests
(bounded at 4 MiB).
"""

import asyncio
import base64
import ssl
import time
import urllib.parse
from dataclasses import dataclass

import aiohttp

from berth.distribution import media
from berth.distribution.dockerconfig import Credentials
from berth.distribution.settings import Endpoint, RegistrySettings
from berth.errors import InvalidArgument, NotFound, PermissionDenied, Unavailable

__all__ = [
    "BlobUnknown", "DigestMismatch", "ManifestUnknown", "NameUnknown", "RegistryClient",
    "RegistryDenied", "RegistryUnauthorized", "RegistryUnavailable", "parse_challenges",
]

_CHUNK = 1 << 18
_TOKEN_MARGIN = 10


class RegistryUnauthorized(PermissionDenied):
    """No or bad credentials. ``bare`` is the message without the request it failed on: dockerd
    names the request when a pull fails this way (``Head "URL": no basic auth credentials``)
    and not when a push does."""

    def __init__(self, message: str, bare: str | None = None) -> None:
        super().__init__(message)
        self.bare = bare or message


class RegistryDenied(PermissionDenied):
    pass


class ManifestUnknown(NotFound):
    pass


class NameUnknown(ManifestUnknown):
    """The registry does not know the repository (``NAME_UNKNOWN``)."""


class BlobUnknown(NotFound):
    pass


class RegistryUnavailable(Unavailable):
    pass


class DigestMismatch(InvalidArgument):
    pass


class RegistryProtocolError(InvalidArgument):
    pass


@dataclass(frozen=True)
class Challenge:
    scheme: str
    params: dict


def parse_challenges(header: str) -> list[Challenge]:
    """RFC 7235 challenges: ``Bearer realm="...",service="...",scope="a b"``."""
    out: list[Challenge] = []
    i, n = 0, len(header)
    cur: Challenge | None = None
    while i < n:
        while i < n and header[i] in " ,":
            i += 1
        j = i
        while j < n and header[j] not in " =,":
            j += 1
        token = header[i:j]
        k = j
        while k < n and header[k] == " ":
            k += 1
        if k < n and header[k] == "=" and cur is not None:
            k += 1
            while k < n and header[k] == " ":
                k += 1
            if k < n and header[k] == '"':
                k += 1
                val = []
                while k < n and header[k] != '"':
                    if header[k] == "\\" and k + 1 < n:
                        k += 1
                    val.append(header[k])
                    k += 1
                k += 1
                value = "".join(val)
            else:
                m = k
                while m < n and header[m] not in ", ":
                    m += 1
                value, k = header[k:m], m
            cur.params[token.lower()] = value
            i = k
        else:
            if token:
                cur = Challenge(token.lower(), {})
                out.append(cur)
            i = j
    return out


def _error_text(status: int, body: bytes) -> tuple[str | None, str]:
    """(first OCI error code, docker-style message) of an error response."""
    import json

    try:
        errs = json.loads(body).get("errors") or []
    except (ValueError, AttributeError, UnicodeDecodeError):
        errs = []
    if errs and isinstance(errs[0], dict):
        code = str(errs[0].get("code", "UNKNOWN"))
        msg = errs[0].get("message") or code.lower().replace("_", " ")
        return code, f"{code.lower().replace('_', ' ')}: {msg}"
    text = body.decode(errors="replace").strip()[:200]
    return None, f"unexpected status {status}" + (f": {text}" if text else "")


class RegistryClient:
    """Requests to one registry host on behalf of one set of credentials."""

    def __init__(self, registry: str, settings: RegistrySettings | None = None,
                 credentials: Credentials | None = None, *, push: bool = False,
                 session: aiohttp.ClientSession | None = None) -> None:
        self.registry = registry
        self.settings = settings or RegistrySettings()
        self.credentials = credentials
        self.endpoints = self.settings.endpoints(registry, push=push)
        self._session = session
        self._own_session = session is None
        self._endpoint: Endpoint | None = None
        self._challenge: Challenge | None = None
        self._tokens: dict[str, tuple[str, float]] = {}
        self._ping_lock = asyncio.Lock()
        self._ssl: dict[str, object] = {}

    def past_mirror(self) -> "RegistryClient | None":
        """After a failure on a mirror, a client for the registry itself (dockerd falls back
        from a mirror on any error of a pull: a pull-through cache may lack the image); None
        when this client is not on a mirror."""
        if self._endpoint is None or not self._endpoint.mirror:
            return None
        c = RegistryClient(self.registry, self.settings, self.credentials, session=self.session)
        c.endpoints = [e for e in self.endpoints if not e.mirror]
        return c

    async def __aenter__(self) -> "RegistryClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = new_session()
        return self._session

    # -- endpoints and auth --------------------------------------------------------------------

    def _ssl_for(self, ep: Endpoint):
        if not ep.url.startswith("https://"):
            return None
        if ep.insecure:
            return False
        host = urllib.parse.urlsplit(ep.url).netloc
        if host not in self._ssl:
            cas, client = self.settings.certs_for(host)
            ctx = ssl.create_default_context()
            for ca in cas:
                ctx.load_verify_locations(ca)
            if client:
                ctx.load_cert_chain(*client)
            self._ssl[host] = ctx
        return self._ssl[host]

    async def ping(self) -> Endpoint:
        """Find the endpoint that answers ``GET /v2/``; learn its auth challenge."""
        if self._endpoint is not None:
            return self._endpoint
        async with self._ping_lock:
            if self._endpoint is not None:
                return self._endpoint
            errors = []
            for ep in self.endpoints:
                try:
                    async with self.session.get(f"{ep.url}/v2/", ssl=self._ssl_for(ep),
                                                allow_redirects=True) as r:
                        await r.read()
                        if r.status == 401:
                            chals = parse_challenges(r.headers.get("WWW-Authenticate", ""))
                            bearer = [c for c in chals if c.scheme == "bearer"]
                            self._challenge = (bearer or chals or [None])[0]
                        elif r.status != 200:
                            errors.append(f"{ep.url}: status {r.status}")
                            continue
                        self._endpoint = ep
                        return ep
                except (TimeoutError, aiohttp.ClientError, OSError) as e:
                    errors.append(f'Get "{ep.url}/v2/": {dial_error(e, ep.url)}')
            # as dockerd: the last endpoint's error (plain HTTP, for an insecure registry)
            raise RegistryUnavailable(errors[-1] if errors else
                                      f"registry {self.registry} has no endpoint")

    def _basic(self) -> str | None:
        c = self.credentials
        if c is None or not (c.username or c.password):
            return None
        return "Basic " + base64.b64encode(f"{c.username}:{c.password}".encode()).decode()

    async def _token(self, scope: str, force: bool = False) -> str:
        assert self._challenge is not None
        cached = self._tokens.get(scope)
        if cached and not force and cached[1] > time.monotonic():
            return cached[0]
        realm = self._challenge.params.get("realm")
        if not realm:
            raise RegistryProtocolError(f"registry {self.registry}: bearer challenge has no realm")
        service = self._challenge.params.get("service")
        params = [("scope", s) for s in scope.split(" ") if s]
        if service:
            params.append(("service", service))
        c = self.credentials
        rhost = urllib.parse.urlsplit(realm).netloc
        ssl_arg = False if self.settings.is_insecure(rhost) else None
        if c is not None and c.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": c.identity_token,
                    "client_id": "berth", **dict(params)}
            if params:
                form["scope"] = " ".join(s for k, s in params if k == "scope")
            req = self.session.post(realm, data=form, ssl=ssl_arg)
        else:
            headers = {}
            if self._basic():
                headers["Authorization"] = self._basic()
                params.append(("account", c.username))
            req = self.session.get(realm, params=params, headers=headers, ssl=ssl_arg)
        try:
            async with req as r:
                body = await r.read()
                if r.status in (401, 403):
                    _, msg = _error_text(r.status, body)
                    raise RegistryUnauthorized(
                        msg if msg.startswith(("unauthorized:", "denied:")) else
                        "unauthorized: incorrect username or password" if self._basic()
                        else "unauthorized: authentication required")
                if r.status != 200:
                    raise RegistryUnavailable(f"token server {realm}: status {r.status}")
                import json

                doc = json.loads(body)
        except (aiohttp.ClientError, OSError, ValueError) as e:
            raise RegistryUnavailable(f"token server {realm}: {e}") from None
        token = doc.get("token") or doc.get("access_token")
        if not token:
            raise RegistryProtocolError(f"token server {realm} sent no token")
        ttl = int(doc.get("expires_in") or 60)
        self._tokens[scope] = (token, time.monotonic() + max(ttl - _TOKEN_MARGIN, 1))
        return token

    async def _auth_header(self, scope: str, force: bool = False) -> str | None:
        ch = self._challenge
        if ch is None:
            return None
        if ch.scheme == "basic":
            basic = self._basic()
            if basic is None:
                # as docker's client: a Basic registry is not asked without credentials
                raise RegistryUnauthorized("no basic auth credentials")
            return basic
        if ch.scheme == "bearer":
            return f"Bearer {await self._token(scope, force)}"
        return None

    async def login(self) -> None:
        """Check the credentials as ``docker login`` does: ping, then a token with no scope;
        errors read as dockerd words them (``Get "URL/v2/": unauthorized: ...``)."""
        ep = await self.ping()
        ch = self._challenge
        if ch is None:
            return
        if ch.scheme == "bearer":
            try:
                await self._token("", force=True)
            except RegistryUnauthorized as e:
                raise RegistryUnauthorized(f'Get "{ep.url}/v2/": {e}') from None
            return
        async with self.session.get(f"{ep.url}/v2/", ssl=self._ssl_for(ep),
                                    headers={"Authorization": self._basic() or ""}) as r:
            if r.status == 401:
                raise RegistryUnauthorized(f"login attempt to {ep.url}/v2/ failed with status: "
                                           "401 Unauthorized")

    # -- requests ------------------------------------------------------------------------------

    async def request(self, method: str, repository: str, path: str, *, actions: str = "pull",
                      headers: dict | None = None, data=None, params=None,
                      ok: tuple[int, ...] = (200,), url: str | None = None,
                      scope: str | None = None) -> aiohttp.ClientResponse:
        """One request with auth; returns the response (caller releases it) if its status is
        in ``ok``, else raises the mapped error. ``data`` must be re-iterable (bytes or a
        callable returning a fresh body) to allow the auth retry."""
        ep = await self.ping()
        scope = scope or f"repository:{repository}:{actions}"
        target = url or f"{ep.url}/v2/{repository}/{path}"
        if url and url.startswith("/"):
            target = ep.url + url
        for attempt in (0, 1):
            h = dict(headers or {})
            try:
                auth = await self._auth_header(scope, force=attempt == 1)
            except RegistryUnauthorized as e:
                raise RegistryUnauthorized(f'{method.title()} "{target}": {e.bare}',
                                           e.bare) from None
            if auth and _same_origin(target, ep.url):
                h["Authorization"] = auth
            body = data() if callable(data) else data
            try:
                r = await self.session.request(method, target, headers=h, data=body,
                                               params=params, ssl=self._ssl_for(ep),
                                               allow_redirects=method in ("GET", "HEAD"))
            except (TimeoutError, aiohttp.ClientError, OSError) as e:
                raise RegistryUnavailable(f'{method.title()} "{target}": '
                                          f'{dial_error(e, target)}') from e
            if r.status in ok:
                return r
            err = await r.read()
            r.release()
            if r.status == 401 and attempt == 0:
                chals = parse_challenges(r.headers.get("WWW-Authenticate", ""))
                bearer = [c for c in chals if c.scheme == "bearer"]
                if bearer:
                    self._challenge = bearer[0]
                    want = bearer[0].params.get("scope")
                    if want and want not in scope.split(" "):
                        scope = f"{scope} {want}"
                    continue
                if chals and self._challenge is None:
                    self._challenge = chals[0]
                    continue
            code, msg = _error_text(r.status, err)
            if r.status == 401:
                denied = _scope_error(r.headers.get("WWW-Authenticate", ""))
                if denied is not None:
                    raise RegistryDenied(denied)
                raise RegistryUnauthorized(msg if code else "unauthorized: authentication required")
            if r.status == 403:
                raise RegistryDenied(msg if code else "denied: requested access to the resource "
                                     "is denied")
            if code == "NAME_UNKNOWN":
                raise NameUnknown(msg)
            if code == "MANIFEST_UNKNOWN" or (r.status == 404 and "/manifests/" in target):
                raise ManifestUnknown(msg if code else "manifest unknown: manifest unknown")
            if code == "BLOB_UNKNOWN" or (r.status == 404 and "/blobs/" in target):
                raise BlobUnknown(msg if code else "blob unknown: blob unknown to registry")
            if r.status >= 500 or r.status == 429:
                raise RegistryUnavailable(f"{method} {target}: {msg}")
            raise RegistryProtocolError(f"{method} {target}: {msg}")
        raise AssertionError("unreachable")

    # -- manifests -----------------------------------------------------------------------------

    async def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of a manifest; the digest is checked when asked by one."""
        from berth.distribution.reference import hasher

        r = await self.request("GET", repository, f"manifests/{reference}",
                               headers={"Accept": media.ACCEPT})
        try:
            if (r.content_length or 0) > media.MANIFEST_MAX:
                raise RegistryProtocolError(f"manifest {repository}:{reference} is too large")
            raw = await read_at_most(r, media.MANIFEST_MAX)
            if raw is None:
                raise RegistryProtocolError(f"manifest {repository}:{reference} is too large")
        finally:
            r.release()
        ct = (r.headers.get("Content-Type") or "").split(";")[0].strip()
        alg = reference.partition(":")[0] if ":" in reference else "sha256"
        h = hasher(alg)
        h.update(raw)
        digest = f"{alg}:{h.hexdigest()}"
        if ":" in reference and digest != reference:
            raise DigestMismatch(f"manifest digest mismatch for {repository}@{reference}: "
                                 f"got {digest}")
        return raw, ct, digest

    async def head_manifest(self, repository: str, reference: str) -> str | None:
        try:
            r = await self.request("HEAD", repository, f"manifests/{reference}",
                                   headers={"Accept": media.ACCEPT})
        except ManifestUnknown:
            return None
        r.release()
        return r.headers.get("Docker-Content-Digest")

    async def put_manifest(self, repository: str, reference: str, raw: bytes,
                           media_type: str) -> str:
        r = await self.request("PUT", repository, f"manifests/{reference}", actions="pull,push",
                               headers={"Content-Type": media_type}, data=raw, ok=(201, 200, 202))
        r.release()
        return r.headers.get("Docker-Content-Digest", "")

    async def tags(self, repository: str) -> list[str]:
        out: list[str] = []
        url = None
        while True:
            r = await self.request("GET", repository, "tags/list", url=url)
            try:
                import json

                doc = json.loads(await r.read())
            finally:
                r.release()
            out += doc.get("tags") or []
            link = r.headers.get("Link")
            if not link or 'rel="next"' not in link:
                return out
            url = link.split(";")[0].strip().strip("<>")

    # -- blobs ---------------------------------------------------------------------------------

    async def blob_exists(self, repository: str, digest: str, actions: str = "pull") -> int | None:
        """The blob's size if the repository has it, else None (HEAD)."""
        try:
            r = await self.request("HEAD", repository, f"blobs/{digest}", actions=actions)
        except BlobUnknown:
            return None
        r.release()
        return r.content_length if r.content_length is not None else -1

    async def open_blob(self, repository: str, digest: str, offset: int = 0
                        ) -> tuple[aiohttp.ClientResponse, int]:
        """A streaming response for a blob from ``offset``, and the offset it really starts at
        (0 when the registry ignores Range)."""
        headers = {"Range": f"bytes={offset}-"} if offset else None
        r = await self.request("GET", repository, f"blobs/{digest}", headers=headers,
                               ok=(200, 206))
        start = 0
        if r.status == 206:
            cr = r.headers.get("Content-Range", "")
            try:
                start = int(cr.split(" ", 1)[1].split("-", 1)[0])
            except (IndexError, ValueError):
                r.release()
                raise RegistryProtocolError(f"blob {digest}: bad Content-Range {cr!r}") from None
        return r, start

    async def mount_blob(self, repository: str, digest: str, source: str) -> str | None:
        """Try a cross-repository mount; returns an upload URL if the registry started an
        upload instead (202), None when mounted (201)."""
        scope = f"repository:{repository}:pull,push repository:{source}:pull"
        r = await self.request("POST", repository, "blobs/uploads/", actions="pull,push",
                               params={"mount": digest, "from": source}, ok=(201, 202),
                               scope=scope)
        r.release()
        if r.status == 201:
            return None
        return r.headers.get("Location")

    async def start_upload(self, repository: str) -> str:
        r = await self.request("POST", repository, "blobs/uploads/", actions="pull,push",
                               headers={"Content-Length": "0"}, ok=(202,))
        r.release()
        loc = r.headers.get("Location")
        if not loc:
            raise RegistryProtocolError(f"registry {self.registry} sent no upload Location")
        return self._absolute(loc)

    def _absolute(self, loc: str) -> str:
        assert self._endpoint is not None
        return urllib.parse.urljoin(self._endpoint.url + "/", loc)

    async def upload_chunk(self, repository: str, location: str, body, start: int, length: int
                           ) -> str:
        r = await self.request("PATCH", repository, "", url=self._absolute(location),
                               actions="pull,push", data=body, ok=(202, 204),
                               headers={"Content-Type": "application/octet-stream",
                                        "Content-Range": f"{start}-{start + length - 1}",
                                        "Content-Length": str(length)})
        r.release()
        return r.headers.get("Location") or location

    async def finish_upload(self, repository: str, location: str, digest: str, body=None,
                            length: int = 0) -> None:
        u = urllib.parse.urlsplit(self._absolute(location))
        q = urllib.parse.parse_qsl(u.query, keep_blank_values=True)
        q.append(("digest", digest))
        url = urllib.parse.urlunsplit((u.scheme, u.netloc, u.path, urllib.parse.urlencode(q), ""))
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
        r = await self.request("PUT", repository, "", url=url, actions="pull,push",
                               data=body if length else None, headers=headers, ok=(201, 204))
        r.release()

    async def cancel_upload(self, repository: str, location: str) -> None:
        try:
            r = await self.request("DELETE", repository, "", url=self._absolute(location),
                                   actions="pull,push", ok=(204, 200, 202, 404))
            r.release()
        except (RegistryUnavailable, RegistryProtocolError, PermissionDenied):
            pass  # the spec: clients ignore failures of a cancel


_ERRNO_WORDS = {"ECONNREFUSED": "connection refused", "EHOSTUNREACH": "no route to host",
                "ENETUNREACH": "network is unreachable", "ECONNRESET": "connection reset by peer",
                "ETIMEDOUT": "i/o timeout"}


def dial_error(e: BaseException, url: str) -> str:
    """A connection failure in Go's words, as dockerd prints it after the request
    (``dial tcp 127.0.0.1:1: connect: connection refused``)."""
    import errno

    u = urllib.parse.urlsplit(url)
    host = u.netloc if u.port else f"{u.netloc}:{443 if u.scheme == 'https' else 80}"
    if isinstance(e, aiohttp.ClientConnectorDNSError):
        return f"dial tcp: lookup {u.hostname}: no such host"
    if isinstance(e, aiohttp.ClientConnectorCertificateError):
        cert = e.certificate_error
        if getattr(cert, "verify_code", None) in (18, 19, 20, 21):  # self-signed, unknown CA
            return "x509: certificate signed by unknown authority"
        return f"x509: {getattr(cert, 'verify_message', None) or cert}"
    if isinstance(e, aiohttp.ClientSSLError):
        return f"tls: {e}"
    if isinstance(e, TimeoutError | aiohttp.ServerTimeoutError):
        return f"dial tcp {host}: i/o timeout"
    os_error = getattr(e, "os_error", None) or (e if isinstance(e, OSError) else None)
    name = errno.errorcode.get(getattr(os_error, "errno", None) or 0, "")
    if name in _ERRNO_WORDS:
        return f"dial tcp {host}: connect: {_ERRNO_WORDS[name]}"
    return str(e) or type(e).__name__


async def read_at_most(r: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The whole body, or None past ``limit`` bytes. (``content.read(n)`` is no such thing:
    it gives what has arrived so far, so a manifest in two TCP reads came back cut.)"""
    buf = bytearray()
    async for chunk in r.content.iter_chunked(_CHUNK):
        buf += chunk
        if len(buf) > limit:
            return None
    return bytes(buf)


def _scope_error(header: str) -> str | None:
    """A bearer challenge's ``error="insufficient_scope"`` (RFC 6750): a token was given but
    does not allow the request. docker reads it as DENIED, whatever the body says."""
    for c in parse_challenges(header):
        if c.scheme == "bearer" and c.params.get("error") == "insufficient_scope":
            why = c.params.get("error_description") or "requested access to the resource is denied"
            return f"denied: {why}"
    return None


def _same_origin(a: str, b: str) -> bool:
    ua, ub = urllib.parse.urlsplit(a), urllib.parse.urlsplit(b)
    return (ua.scheme, ua.netloc) == (ub.scheme, ub.netloc)


def new_session(limit: int = 32) -> aiohttp.ClientSession:
    """An aiohttp session tuned for registry traffic (no total timeout: layers are big)."""
    timeout = aiohttp.ClientTimeout(total=None, connect=30, sock_read=300)
    # identity: nothing between us and a registry may gzip a manifest (bytes digests are
    # checked on) or a blob (already compressed, and fetched by byte Range when resumed)
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit, ttl_dns_cache=60),
                                 timeout=timeout, auto_decompress=False,
                                 headers={"User-Agent": "berth/0.1",
                                          "Accept-Encoding": "identity"})
