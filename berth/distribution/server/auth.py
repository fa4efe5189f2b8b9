"""Access control for berth's registry: htpasswd Basic auth, and token auth it can issue itself.

Three modes:
- none: every request is allowed.
- basic: ``Authorization: Basic`` checked against an htpasswd file (bcrypt ``$2y$``/``$2b$``
  entries as ``htpasswd -B`` writes them, and ``{SHA}``); a valid user may do anything.
- token: Docker's token protocol. A request without a valid Bearer token gets 401 with
  ``WWW-Authenticate: Bearer realm=...,service=...,scope=repository:NAME:ACTIONS``; the client
  asks the realm (this server's ``/token``, Basic-authenticated against the htpasswd file) for a
  token with that scope, and retries. Tokens are JWTs signed HS256 with a key kept under the
  registry root: the issuer and the verifier are the same process, so no key pair or
  certificate chain is needed. Anonymous callers get only what ``anonymous`` grants.

A grant is a set of actions (``pull``, ``push``, ``delete``, ``*``) on a scope
(``repository:NAME`` or ``registry:catalog``). Successful bcrypt checks are remembered for the
life of the process: bcrypt costs tens of milliseconds by design, and Basic clients send the
password on every request.
"""

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass

from berth.errors import InvalidArgument, PermissionDenied

__all__ = ["Access", "Htpasswd", "Unauthorized", "Denied", "TokenIssuer", "parse_scope"]

TOKEN_TTL = 300


class Unauthorized(PermissionDenied):
    """No or bad credentials: a 401 with a challenge."""

    def __init__(self, message: str, challenge: str, detail: object = None) -> None:
        super().__init__(message)
        self.challenge = challenge
        # the access asked for, as the reference registry lists it: docker's client drops a
        # message equal to the code's own when there is no detail ("unauthorized" alone)
        self.detail = detail


class Denied(PermissionDenied):
    """Authenticated, but not allowed: 403 DENIED (the token protocol uses 401 instead)."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class Htpasswd:
    """An htpasswd file, re-read when it changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._mtime: float | None = None
        self._users: dict[str, str] = {}
        self._ok: set[tuple[str, bytes]] = set()
        self._load()

    def _load(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError as e:
            raise InvalidArgument(f"htpasswd file {self.path}: {e.strerror}") from None
        if st.st_mtime == self._mtime:
            return
        users = {}
        with open(self.path) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#") and ":" in line:
                    u, _, h = line.partition(":")
                    users[u] = h
        self._users, self._mtime, self._ok = users, st.st_mtime, set()

    def check(self, user: str, password: str) -> bool:
        self._load()
        h = self._users.get(user)
        if h is None:
            return False
        key = (user, hashlib.sha256(f"{h}\0{password}".encode()).digest())
        if key in self._ok:
            return True
        if h.startswith(("$2y$", "$2a$", "$2b$")):
            import bcrypt

            # bcrypt understands $2b$; $2y$ (htpasswd's) is the same algorithm
            try:
                ok = bcrypt.checkpw(password.encode(), ("$2b$" + h[4:]).encode())
            except ValueError:
                ok = False
        elif h.startswith("{SHA}"):
            ok = hmac.compare_digest(
                h[5:], base64.b64encode(hashlib.sha1(password.encode()).digest()).decode())
        else:
            ok = False
        if ok:
            self._ok.add(key)
        return ok


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        user, sep, password = base64.b64decode(header[6:].strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


@dataclass(frozen=True)
class Access:
    """One requested or granted access: ``repository:team/app:pull,push``."""

    type: str
    name: str
    actions: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"

    def to_json(self) -> dict:
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


def parse_scope(scope: str) -> list[Access]:
    """Docker's scope syntax, several space-separated: ``repository:NAME:pull,push``."""
    out = []
    for item in scope.split():
        typ, _, rest = item.partition(":")
        name, _, actions = rest.rpartition(":")
        if typ and name:
            out.append(Access(typ, name, tuple(a for a in actions.split(",") if a)))
    return out


class TokenIssuer:
    """Signs and verifies this registry's bearer tokens (HS256 JWTs)."""

    def __init__(self, key: bytes, service: str, issuer: str = "berth-registry") -> None:
        self.key = key
        self.service = service
        self.issuer = issuer

    @classmethod
    def for_root(cls, root: str, service: str) -> "TokenIssuer":
        path = os.path.join(root, "token.key")
        try:
            with open(path, "rb") as f:
                key = f.read()
        except FileNotFoundError:
            key = secrets.token_bytes(32)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key)
        return cls(key, service)

    def issue(self, subject: str, access: list[Access], ttl: int = TOKEN_TTL) -> dict:
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "iat": now,
                  "nbf": now - 10, "exp": now + ttl, "jti": secrets.token_hex(8),
                  "access": [a.to_json() for a in access]}
        head = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = _b64url(json.dumps(claims, separators=(",", ":")).encode())
        sig = _b64url(hmac.new(self.key, f"{head}.{body}".encode(), hashlib.sha256).digest())
        token = f"{head}.{body}.{sig}"
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        return {"token": token, "access_token": token, "expires_in": ttl, "issued_at": issued}

    def verify(self, token: str) -> dict | None:
        """The token's claims if it is ours, unexpired and for this service; else None."""
        try:
            head, body, sig = token.split(".")
            want = hmac.new(self.key, f"{head}.{body}".encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(_unb64url(sig), want):
                return None
            claims = json.loads(_unb64url(body))
        except (ValueError, binascii.Error):
            return None
        now = time.time()
        if claims.get("aud") != self.service or not claims.get("nbf", 0) <= now < claims.get(
                "exp", 0):
            return None
        return claims


def granted(claims: dict, typ: str, name: str) -> set[str]:
    acts: set[str] = set()
    for a in claims.get("access") or ():
        if isinstance(a, dict) and a.get("type") == typ and a.get("name") == name:
            acts.update(a.get("actions") or ())
    return acts
