"""Image references and the distribution grammar: repository names, tags, digests.

A reference as the docker CLI takes it (``busybox``, ``127.0.0.1:5000/team/app:1.2``,
``app@sha256:...``) is normalised as docker does: no registry host means ``docker.io``, and a
one-component name on docker.io gets ``library/``; no tag and no digest means ``latest``. The
first component is a registry host when it contains ``.`` or ``:`` or is ``localhost``.

The grammar is the distribution spec's (``<name>``, ``<tag>``) and the image spec's digest
(``algorithm:encoded``; sha256 and sha512 are the registered algorithms berth accepts). The
same checks guard the registry server's paths: a name that passes cannot climb out of a
storage directory (no empty, ``.`` or ``..`` component can match).
"""

import hashlib
import re
from dataclasses import dataclass

from berth.errors import InvalidArgument

__all__ = [
    "DEFAULT_REGISTRY", "InvalidReference", "Reference", "check_digest", "check_name",
    "check_tag", "hasher", "is_digest", "parse",
]

DEFAULT_REGISTRY = "docker.io"
# docker keeps this alias for Docker Hub's API endpoint; a reference naming it means docker.io.
_HUB_ALIASES = {"index.docker.io", "registry-1.docker.io"}

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_ENCODED = {"sha256": re.compile(r"[a-f0-9]{64}"), "sha512": re.compile(r"[a-f0-9]{128}")}
_ALGORITHM_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*")
NAME_MAX = 255


class InvalidReference(InvalidArgument):
    pass


def check_name(name: str) -> str:
    """A repository name per the distribution spec, or InvalidReference."""
    if len(name) > NAME_MAX or not NAME_RE.fullmatch(name):
        raise InvalidReference(f"invalid repository name: {name!r}")
    return name


def check_tag(tag: str) -> str:
    if not TAG_RE.fullmatch(tag):
        raise InvalidReference(f"invalid tag: {tag!r}")
    return tag


def is_digest(s: str) -> bool:
    alg, sep, enc = s.partition(":")
    pat = _ENCODED.get(alg)
    return bool(sep and pat and pat.fullmatch(enc))


def check_digest(digest: str) -> str:
    """A digest of a supported algorithm in canonical form, or InvalidReference."""
    if not is_digest(digest):
        alg, sep, _ = digest.partition(":")
        if sep and _ALGORITHM_RE.fullmatch(alg) and alg not in _ENCODED:
            raise InvalidReference(f"unsupported digest algorithm: {alg!r}")
        raise InvalidReference(f"invalid digest: {digest!r}")
    return digest


def hasher(digest_or_algorithm: str):
    """A fresh hashlib object for a digest's (or an algorithm name's) algorithm."""
    alg = digest_or_algorithm.partition(":")[0]
    if alg not in _ENCODED:
        raise InvalidReference(f"unsupported digest algorithm: {alg!r}")
    return hashlib.new(alg)


@dataclass(frozen=True)
class Reference:
    """A normalised image reference: registry host, repository path, and tag and/or digest."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The familiar name docker shows (``busybox``, ``127.0.0.1:5000/app``)."""
        if self.registry == DEFAULT_REGISTRY:
            return self.repository.removeprefix("library/")
        return f"{self.registry}/{self.repository}"

    @property
    def full_name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def ref(self) -> str:
        """What to ask the registry for: the digest if there is one, else the tag."""
        return self.digest or self.tag or "latest"

    def with_tag(self, tag: str | None) -> "Reference":
        return Reference(self.registry, self.repository, tag, None)

    def with_digest(self, digest: str) -> "Reference":
        return Reference(self.registry, self.repository, None, digest)

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s


def _check_lowercase(text: str) -> None:
    """docker's capitals check, worded as docker's: the path after the host, up to the first
    ``:``, must be lower-case (``127.0.0.1:5000/Team/app:1`` → ``repository name (Team/app)
    must be lowercase``; ``Busybox`` → ``(library/Busybox)``)."""
    first, sep, rest = text.partition("/")
    if not sep or not (any(c in first for c in ".:") or first == "localhost"
                       or first.lower() != first):
        rest = text if sep else f"library/{text}"
    path = rest.partition(":")[0]
    if path.lower() != path:
        raise InvalidReference(f"invalid reference format: repository name ({path}) must be "
                               "lowercase")


def parse(text: str, *, default_tag: str | None = "latest") -> Reference:
    """Parse and normalise a reference as the docker CLI does; InvalidReference names the text.

    The grammar and normalisation are the image package's (``berth.image.reference``, which
    the image store names images by); this adds the split into registry host and repository
    path the protocol needs, and refuses digests of algorithms a registry cannot verify.
    """
    from berth.image import reference as image_reference

    _check_lowercase(text)
    try:
        r = image_reference.parse(text)
    except InvalidArgument as e:
        raise InvalidReference(e.message) from None
    registry, _, path = r.name.partition("/")
    if registry in _HUB_ALIASES:
        registry = DEFAULT_REGISTRY
    digest = r.digest
    if digest is not None:
        try:
            check_digest(digest)
        except InvalidReference as e:
            raise InvalidReference(f"invalid reference format: {text!r}: {e}") from None
    tag = r.tag
    if tag is None and digest is None:
        tag = default_tag
    return Reference(registry, path, tag, digest)
