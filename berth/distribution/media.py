"""Manifest media types, manifest parsing/validation, and platform choice from an index.

Four manifest kinds travel over the distribution protocol: the OCI image manifest and image
index (image-spec 1.1) and Docker's schema2 manifest and manifest list. Both pairs have the same
shape (a manifest names a config and layers; an index names manifests with platforms), so one
parser serves them; what differs is only the media type strings. Docker schema1 is refused.

``parse_manifest`` checks structure only (types, digests, sizes), never existence of the blobs:
the registry server checks that against its storage, the client against what it fetches.
"""

import json
from dataclasses import dataclass, field

from berth.distribution.reference import check_digest
from berth.errors import InvalidArgument, NotFound

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

IMAGE_MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEXES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (*IMAGE_MANIFESTS, *INDEXES)
# What a client asks for, best first (docker's order: its own types, then OCI's).
ACCEPT = ", ".join((DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX))
MANIFEST_MAX = 4 * 1024 * 1024


class InvalidManifest(InvalidArgument):
    pass


# dockerd's test for what it will pull as an image (distribution/pull_v2.go): a config or
# layer type of the image families (or one old images carry); an artifact (a Helm chart, an
# SBOM with the empty config) is refused before any byte of it is fetched
_IMAGE_TYPE_PREFIXES = ("application/vnd.oci.image.", "application/vnd.docker.")
_OLD_IMAGE_TYPES = frozenset(("application/octet-stream", "application/json", "text/html", ""))


def check_image_types(m: "Manifest") -> None:
    """Refuse a manifest that is not an image's, in dockerd's words."""
    for d in (m.config, *m.layers):
        if d is None:
            continue
        mt = d.media_type.lower()
        if mt in _OLD_IMAGE_TYPES or (mt.startswith(_IMAGE_TYPE_PREFIXES)
                                      and not mt.startswith("application/vnd.docker.ai.")):
            continue
        raise InvalidManifest(f"unsupported media type {d.media_type}")


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: dict | None = None
    urls: tuple[str, ...] = ()
    annotations: dict | None = None
    artifact_type: str | None = None

    def to_json(self) -> dict:
        d: dict = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform:
            d["platform"] = self.platform
        if self.urls:
            d["urls"] = list(self.urls)
        if self.annotations:
            d["annotations"] = self.annotations
        if self.artifact_type:
            d["artifactType"] = self.artifact_type
        return d


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest or index; ``raw`` is kept byte for byte (its digest is the identity)."""

    media_type: str
    raw: bytes
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    manifests: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: dict = field(default_factory=dict)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEXES

    def blobs(self) -> tuple[Descriptor, ...]:
        """Config and layers that must be present for this manifest (foreign layers excluded)."""
        out = [self.config] if self.config else []
        out += [d for d in self.layers if not d.urls and d.media_type != DOCKER_FOREIGN_LAYER]
        return tuple(out)


def _descriptor(obj: object, where: str) -> Descriptor:
    if not isinstance(obj, dict):
        raise InvalidManifest(f"{where}: descriptor is not an object")
    mt, dg, size = obj.get("mediaType"), obj.get("digest"), obj.get("size")
    if not isinstance(mt, str) or not mt:
        raise InvalidManifest(f"{where}: descriptor has no mediaType")
    if not isinstance(dg, str):
        raise InvalidManifest(f"{where}: descriptor has no digest")
    try:
        check_digest(dg)
    except InvalidArgument as e:
        raise InvalidManifest(f"{where}: {e}") from None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidManifest(f"{where}: descriptor {dg} has no valid size")
    platform = obj.get("platform")
    if platform is not None and not isinstance(platform, dict):
        raise InvalidManifest(f"{where}: descriptor {dg} has a bad platform")
    urls = obj.get("urls") or ()
    if not isinstance(urls, list | tuple) or not all(isinstance(u, str) for u in urls):
        raise InvalidManifest(f"{where}: descriptor {dg} has bad urls")
    ann = obj.get("annotations")
    at = obj.get("artifactType")
    return Descriptor(mt, dg, size, platform, tuple(urls), ann if isinstance(ann, dict) else None,
                      at if isinstance(at, str) else None)


def parse_manifest(raw: bytes, content_type: str | None = None) -> Manifest:
    """Parse manifest bytes whose type comes from its ``mediaType`` or the Content-Type."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidManifest(f"manifest is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise InvalidManifest("manifest is not a JSON object")
    ct = (content_type or "").split(";")[0].strip() or None
    mt = doc.get("mediaType")
    if mt is not None and not isinstance(mt, str):
        raise InvalidManifest("manifest mediaType is not a string")
    if doc.get("schemaVersion") == 1 or ct in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED):
        raise InvalidManifest("docker schema1 manifests are not supported")
    if mt and ct and ct in MANIFEST_TYPES and mt != ct:
        raise InvalidManifest(f"manifest mediaType {mt} does not match Content-Type {ct}")
    kind = mt or ct
    if kind not in MANIFEST_TYPES:
        # An OCI document may omit mediaType: tell the two shapes apart by their fields.
        if "manifests" in doc:
            kind = OCI_INDEX
        elif "config" in doc:
            kind = OCI_MANIFEST
        else:
            raise InvalidManifest(f"unsupported manifest type: {kind or 'none'}")
    if doc.get("schemaVersion") != 2:
        raise InvalidManifest("manifest schemaVersion is not 2")
    subject = _descriptor(doc["subject"], "subject") if doc.get("subject") is not None else None
    ann = doc.get("annotations") if isinstance(doc.get("annotations"), dict) else {}
    at = doc.get("artifactType") if isinstance(doc.get("artifactType"), str) else None
    if kind in INDEXES:
        ms = doc.get("manifests")
        if not isinstance(ms, list):
            raise InvalidManifest("index has no manifests list")
        return Manifest(kind, raw, manifests=tuple(_descriptor(m, "manifests") for m in ms),
                        subject=subject, artifact_type=at, annotations=ann)
    layers = doc.get("layers")
    if layers is None and kind == OCI_MANIFEST:
        layers = []
    if not isinstance(layers, list):
        raise InvalidManifest("manifest has no layers list")
    return Manifest(kind, raw, config=_descriptor(doc.get("config"), "config"),
                    layers=tuple(_descriptor(x, "layers") for x in layers),
                    subject=subject, artifact_type=at, annotations=ann)


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm",
                 "armel": "arm", "i386": "386", "i686": "386"}
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7"}
# containerd's lists, which docker's --platform parser checks a single word against
_KNOWN_OS = frozenset((
    "aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js", "linux",
    "nacl", "netbsd", "openbsd", "plan9", "solaris", "windows", "zos"))
_KNOWN_ARCH = frozenset((
    "386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "ppc64", "ppc64le",
    "loong64", "mips", "mipsle", "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc",
    "riscv", "riscv64", "s390", "s390x", "sparc", "sparc64", "wasm", *_ARCH_ALIASES))
_COMPONENT_OK = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")


def parse_platform(text: str) -> Platform:
    """``[os/]arch[/variant]`` as docker's ``--platform`` takes it (containerd's parser):
    lower-cased; one word is an OS (with this host's architecture) or an architecture (on
    linux); errors in its words (``"foo": unknown operating system or architecture``)."""
    parts = text.lower().split("/")
    for part in parts:
        if not part or not set(part) <= _COMPONENT_OK:
            raise InvalidArgument(f'"{part}" is an invalid component of "{text}": platform '
                                  'specifier component must match "^[A-Za-z0-9_-]+$": invalid '
                                  "argument")
    if len(parts) > 3:
        raise InvalidArgument(f'"{text}": cannot parse platform specifier: invalid argument')
    if len(parts) == 1:
        if parts[0] in _KNOWN_OS:
            return Platform(parts[0], host_platform().architecture)
        if parts[0] in _KNOWN_ARCH:
            return Platform("linux", _ARCH_ALIASES.get(parts[0], parts[0]))
        raise InvalidArgument(f'"{text}": unknown operating system or architecture: invalid '
                              "argument")
    arch = _ARCH_ALIASES.get(parts[1], parts[1])
    return Platform(parts[0], arch, parts[2] if len(parts) == 3 else None)


def host_platform() -> Platform:
    import os

    arch = os.uname().machine
    return Platform("linux", _ARCH_ALIASES.get(arch, arch))


def choose(index: Manifest, want: Platform) -> Descriptor:
    """The index entry that runs on ``want``, as containerd's platform matcher picks it.

    Exact os/arch match is required; a wanted variant must match (arm64 without a variant
    means v8); without a wanted variant, the highest-ranked entry wins in index order.
    Attestation manifests (``unknown/unknown``) never match.
    """
    best = None
    for d in index.manifests:
        p = d.platform or {}
        if p.get("os") != want.os:
            continue
        if _ARCH_ALIASES.get(p.get("architecture", ""), p.get("architecture")) != want.architecture:
            continue
        v = p.get("variant") or _DEFAULT_VARIANT.get(want.architecture)
        wv = want.variant or None
        if wv and v != wv and not (wv == _DEFAULT_VARIANT.get(want.architecture) and not v):
            continue
        if best is None:
            best = d
    if best is None:
        have = ", ".join(
            "/".join(x for x in ((d.platform or {}).get("os"), (d.platform or {}).get(
                "architecture"), (d.platform or {}).get("variant")) if x) or "unknown"
            for d in index.manifests)
        raise PlatformNotFound(f"no matching manifest for {want} in the manifest list entries"
                               f" (have: {have or 'none'})")
    return best


class PlatformNotFound(NotFound):
    """No entry of an index runs on the wanted platform (dockerd: 404, ImageNotFound)."""
