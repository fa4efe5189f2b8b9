"""Image references, parsed and normalised as Docker does (distribution/reference).

    busybox                      → docker.io/library/busybox:latest
    localhost:5000/a/b:1         → localhost:5000/a/b:1
    busybox@sha256:<hex>         → docker.io/library/busybox@sha256:<hex>

``parse(s)`` → ``Reference`` (``name`` fully qualified, ``tag`` or ``digest`` or neither);
``Reference.familiar()`` is the short form the CLI prints (``busybox:latest``). Errors are
dockerd's messages (``invalid reference format``, ``... must be lowercase``).
"""

from __future__ import annotations

import re

from berth.errors import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(rf"^({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?$")
_TAG_ONLY = re.compile(rf"^{_TAG}$")
_HEX64 = re.compile(r"^[a-f0-9]{64}$")


class InvalidReference(InvalidArgument):
    pass


class Reference:
    __slots__ = ("name", "tag", "digest")

    def __init__(self, name: str, tag: str | None = None, digest: str | None = None) -> None:
        self.name = name
        self.tag = tag
        self.digest = digest

    @property
    def domain(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def path(self) -> str:
        return self.name.split("/", 1)[1]

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    def __repr__(self) -> str:
        return f"Reference({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reference) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def familiar_name(self) -> str:
        return familiar(self.name)

    def familiar(self) -> str:
        s = familiar(self.name)
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    def with_default_tag(self) -> Reference:
        if self.tag is None and self.digest is None:
            return Reference(self.name, "latest")
        return self


def familiar(name: str) -> str:
    if name.startswith(DEFAULT_DOMAIN + "/"):
        rest = name[len(DEFAULT_DOMAIN) + 1:]
        if rest.startswith(OFFICIAL_PREFIX) and rest.count("/") == 1:
            rest = rest[len(OFFICIAL_PREFIX):]
        return rest
    return name


def _split_domain(name: str) -> tuple[str, str]:
    i = name.find("/")
    if i == -1 or (not any(c in name[:i] for c in ".:") and name[:i] != "localhost"
                   and name[:i].lower() == name[:i]):
        domain, rest = DEFAULT_DOMAIN, name
    else:
        domain, rest = name[:i], name[i + 1:]
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in rest:
        rest = OFFICIAL_PREFIX + rest
    return domain, rest


def parse(s: str) -> Reference:
    """Parse and normalise a user's reference (``ParseNormalizedNamed``)."""
    if not s:
        raise InvalidReference("invalid reference format")
    if _HEX64.match(s):
        raise InvalidReference(f"invalid repository name ({s}), cannot specify 64-byte "
                               "hexadecimal strings")
    m = _REFERENCE.match(s)
    if not m:
        # the most common slip, as docker says it
        lowered = _REFERENCE.match(s.lower())
        if lowered:
            raise InvalidReference(f"invalid reference format: repository name ({s.split(':')[0]})"
                                   " must be lowercase")
        raise InvalidReference("invalid reference format")
    name, tag, digest = m.group(1), m.group(2), m.group(3)
    domain, rest = _split_domain(name)
    if rest.lower() != rest:
        raise InvalidReference(f"invalid reference format: repository name ({rest}) must be "
                               "lowercase")
    full = f"{domain}/{rest}"
    if len(full) > 255:
        raise InvalidReference("invalid reference format: repository name must not be more "
                               "than 255 characters")
    if digest is not None:
        algo, _, hexpart = digest.partition(":")
        if algo == "sha256" and len(hexpart) != 64:
            raise InvalidReference("invalid reference format: invalid checksum digest length")
    return Reference(full, tag, digest)


def valid_tag(tag: str) -> bool:
    return bool(_TAG_ONLY.match(tag))


def is_id_like(s: str) -> bool:
    """A (possibly ``sha256:``-prefixed) hex string that may be an image ID or its prefix."""
    h = s[7:] if s.startswith("sha256:") else s
    return 0 < len(h) <= 64 and all(c in "0123456789abcdef" for c in h)
