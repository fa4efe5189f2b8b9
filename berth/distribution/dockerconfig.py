"""Registry credentials in the docker CLI's config file, read and written as docker does.

The file is ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``. Credentials live in
``auths`` keyed by registry (``"127.0.0.1:5000"``; Docker Hub is
``"https://index.docker.io/v1/"``), each ``{"auth": base64("user:password")}`` or with an
``identitytoken``; a ``credHelpers`` entry for the host, or a ``credsStore``, names a
``docker-credential-NAME`` program that keeps the secret instead (``get``/``store``/``erase``
with the server URL on stdin, JSON out), as docker runs it. Other keys of the file are kept
untouched when berth writes it (atomically, mode 0600).

The CLI reads this file on every pull and push, so the module stays light: ``fastjson`` and
``binascii`` instead of ``json`` and ``base64`` (which bring in ``re``); ``json`` only to write.
"""

import binascii
import os

from berth import atomic, fastjson
from berth.errors import InvalidArgument, Unavailable

__all__ = ["Credentials", "HUB_KEY", "config_path", "decode_registry_auth",
           "encode_registry_auth", "erase", "get", "store"]

HUB_KEY = "https://index.docker.io/v1/"
_HUB_HOSTS = {"docker.io", "index.docker.io", "registry-1.docker.io"}


class Credentials:
    __slots__ = ("username", "password", "identity_token")

    def __init__(self, username: str = "", password: str = "",
                 identity_token: str | None = None) -> None:
        self.username, self.password, self.identity_token = username, password, identity_token

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r})"


def config_path() -> str:
    d = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(d, "config.json")


def key_for(registry: str) -> str:
    """The ``auths`` key docker uses for a registry host."""
    return HUB_KEY if registry in _HUB_HOSTS else registry


def _host_of(key: str) -> str:
    k = key.removeprefix("https://").removeprefix("http://")
    return k.split("/", 1)[0]


def _b64decode(s: str) -> bytes:
    return binascii.a2b_base64(s.translate(_URLSAFE) + "=" * (-len(s) % 4))


def _b64encode(b: bytes, urlsafe: bool = False) -> str:
    out = binascii.b2a_base64(b, newline=False).decode()
    return out.translate(_TO_URLSAFE) if urlsafe else out


_URLSAFE = str.maketrans("-_", "+/")
_TO_URLSAFE = str.maketrans("+/", "-_")


def _dumps(doc: dict) -> str:
    import json

    return json.dumps(doc, indent="\t") + "\n"


def _load(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            doc = fastjson.loads(f.read())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise InvalidArgument(f"cannot read docker config {path}: {e}") from None
    return doc if isinstance(doc, dict) else {}


def _helper(doc: dict, registry: str) -> str | None:
    helpers = doc.get("credHelpers") or {}
    return helpers.get(registry) or helpers.get(key_for(registry)) or doc.get("credsStore")


def _run_helper(name: str, verb: str, data: str) -> str:
    import subprocess

    prog = f"docker-credential-{name}"
    # the docker CLI's words (docker-credential-helpers' client)
    doing = {"get": "getting", "store": "storing", "erase": "erasing"}.get(verb, verb)
    try:
        r = subprocess.run([prog, verb], input=data, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise Unavailable(f'error {doing} credentials - err: exec: "{prog}": executable file '
                          "not found in $PATH, out: ``") from None
    if r.returncode != 0:
        msg = (r.stdout or r.stderr).strip()
        if verb == "get" and "credentials not found" in msg.lower():
            return ""
        raise Unavailable(f"error {doing} credentials - err: exit status {r.returncode}, "
                          f"out: `{msg}`")
    return r.stdout


def get(registry: str, path: str | None = None) -> Credentials | None:
    """The stored credentials for a registry host, or None."""
    doc = _load(path or config_path())
    helper = _helper(doc, registry)
    if helper:
        out = _run_helper(helper, "get", key_for(registry))
        if out.strip():
            obj = fastjson.loads(out)
            user, secret = obj.get("Username", ""), obj.get("Secret", "")
            if user == "<token>":
                return Credentials(identity_token=secret)
            return Credentials(user, secret)
    auths = doc.get("auths") or {}
    entry = auths.get(key_for(registry))
    if entry is None:
        for k, v in auths.items():
            if _host_of(k) == registry or (registry in _HUB_HOSTS and _host_of(k) in _HUB_HOSTS):
                entry = v
                break
    if not isinstance(entry, dict):
        return None
    user, password = entry.get("username", ""), entry.get("password", "")
    if entry.get("auth"):
        try:
            user, _, password = _b64decode(entry["auth"]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidArgument(f"bad auth entry for {registry} in {path or config_path()}"
                                  ) from None
    token = entry.get("identitytoken") or None
    if not (user or password or token):
        return None
    return Credentials(user, password, token)


def store(registry: str, creds: Credentials, path: str | None = None) -> str:
    """Save credentials for a registry as ``docker login`` does; returns the file written."""
    path = path or config_path()
    doc = _load(path)
    helper = _helper(doc, registry)
    key = key_for(registry)
    auths = doc.setdefault("auths", {})
    if helper:
        user = "<token>" if creds.identity_token else creds.username
        secret = creds.identity_token or creds.password
        _run_helper(helper, "store", fastjson.dumps({"ServerURL": key, "Username": user,
                                                     "Secret": secret}))
        auths[key] = {}
    else:
        entry = {"auth": _b64encode(f"{creds.username}:{creds.password}".encode())}
        if creds.identity_token:
            entry = {"auth": _b64encode(f"{creds.username}:".encode()),
                     "identitytoken": creds.identity_token}
        auths[key] = entry
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic.write_text(path, _dumps(doc), mode=0o600)
    return path


def erase(registry: str, path: str | None = None) -> bool:
    """Forget a registry's credentials; False if there were none."""
    path = path or config_path()
    doc = _load(path)
    key = key_for(registry)
    auths = doc.get("auths") or {}
    found = False
    for k in list(auths):
        if k == key or _host_of(k) == registry:
            del auths[k]
            found = True
    helper = _helper(doc, registry)
    if helper:
        try:
            _run_helper(helper, "erase", key)
            found = True
        except Unavailable:
            pass
    if found:
        atomic.write_text(path, _dumps(doc), mode=0o600)
    return found


def encode_registry_auth(creds: Credentials | None, server: str = "") -> str:
    """The ``X-Registry-Auth`` header value the docker CLI sends: base64url of a JSON
    AuthConfig."""
    doc = {}
    if creds is not None:
        doc = {"username": creds.username, "password": creds.password,
               "serveraddress": server}
        if creds.identity_token:
            doc["identitytoken"] = creds.identity_token
    return _b64encode(fastjson.dumps(doc).encode(), urlsafe=True)


def decode_registry_auth(value: str | None) -> Credentials | None:
    """Credentials from an ``X-Registry-Auth`` header (base64url JSON, padding optional, as
    the docker CLI and docker-py send it); None when absent, empty, or unreadable: dockerd
    takes a header it cannot decode for no credentials ("to increase compatibility")."""
    if not value:
        return None
    try:
        # url-safe or standard alphabet: docker sends the former, docker-py at times the latter
        doc = fastjson.loads(_b64decode(value.strip()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict):
        return None
    user, pw = doc.get("username") or "", doc.get("password") or ""
    token = doc.get("identitytoken") or doc.get("registrytoken") or None
    if not (user or pw or token):
        return None
    return Credentials(user, pw, token)
