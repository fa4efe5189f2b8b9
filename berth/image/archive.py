"""Image archives in and out: the docker-archive format (``docker save``) and OCI image
layouts, read from one stream and written as one stream.

Reading (``read_archive``): the outer tar is streamed once. ``blobs/sha256/<hex>`` entries go
into the content store with their digest verified while they stream; any other regular file
larger than ``SMALL`` (a docker-archive ``layer.tar``) goes in with its digest computed; small
JSON files stay in memory; symlinks are aliases (docker-archive reuses layers that way). Then
``manifest.json`` (docker-archive) or ``index.json`` (OCI layout) says what the images are.
Every outer path is checked like a layer's (no ``..``, no absolute path) and a manifest that
names something the archive lacks is refused, naming it.

Writing (``write_archive``): one tar that is both formats at once, as docker 25+ writes it:
``oci-layout``, ``index.json`` and ``blobs/sha256/*`` (the OCI layout), plus ``manifest.json``
whose ``Config`` and ``Layers`` point into ``blobs/`` (the docker-archive). Layers shared by
several images are written once. Docker-archive layers must be uncompressed tars, so a layer
stored compressed is also written decompressed under its diffID.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Callable

from berth.errors import InvalidArgument

from . import tarstream
from .apply import clean_name
from .compression import decompressed
from .content import ContentStore, parse_digest

SMALL = 1 << 20  # files up to this size may be JSON metadata: kept in memory...
MEMORY = 64 << 20  # ...up to this much in all; the rest goes to the content store
MAX_JSON = 64 << 20

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MANIFEST_TYPES = (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST)
INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)


class BadImageArchive(InvalidArgument):
    pass


class ArchiveImage:
    """One image found in an archive: its blobs are in the content store already."""

    def __init__(self, config: str, config_size: int, layers: list[dict],
                 tags: list[str], manifest: dict | None, manifest_digest: str | None,
                 config_media_type: str = MT_OCI_CONFIG) -> None:
        self.config = config
        self.config_size = config_size
        self.config_media_type = config_media_type
        self.layers = layers  # descriptors: mediaType, digest, size
        self.tags = tags
        self.manifest = manifest
        self.manifest_digest = manifest_digest


class ArchiveReader:
    def __init__(self, content: ContentStore, lease, what: str = "archive",
                 on_blob: Callable[[str], None] | None = None) -> None:
        self.on_blob = on_blob  # called with each large blob's digest once it is stored
        self.content = content
        self.lease = lease
        self.what = what
        self.files: dict[str, bytes] = {}
        self.blobs: dict[str, str] = {}  # archive path → digest
        self.aliases: dict[str, str] = {}
        self._in_memory = 0

    def read(self, read: Callable[[int], bytes]) -> list[ArchiveImage]:
        read, _ = decompressed(read, self.what)  # `docker load` takes a gzipped archive too
        reader = tarstream.TarReader(read, self.what)
        for e in reader:
            name = clean_name(e.name, self.what)
            if e.type == tarstream.SYMTYPE:
                target = posixpath.normpath(posixpath.join(posixpath.dirname(name), e.linkname))
                self.aliases[name] = clean_name(target, self.what)
                continue
            if not e.is_file:
                continue
            parts = name.split("/")
            if len(parts) == 3 and parts[0] == "blobs" and parts[1] == "sha256":
                digest = "sha256:" + parts[2]
                try:
                    parse_digest(digest)
                except InvalidArgument:
                    raise BadImageArchive(f"{self.what}: bad blob name {name!r}") from None
                self._ingest(reader, e, name, digest)
            elif e.size <= SMALL and self._in_memory + e.size <= MEMORY:
                self._in_memory += e.size
                data = _read_all(reader, e)
                self.files[name] = data
                if parts[-1] == "layer.tar":
                    self._store_small(name, data)
            else:
                self._ingest(reader, e, name, None)
        reader.drain()
        for name in ("manifest.json", "index.json"):
            if name not in self.files and name in self.blobs:
                self.files[name] = self._json_file(name)[0]
        if "manifest.json" in self.files:
            return self._docker_archive()
        if "index.json" in self.files:
            return self._oci_layout()
        raise BadImageArchive(f"{self.what}: neither a docker archive nor an OCI layout "
                              "(no manifest.json or index.json)")

    def _ingest(self, reader, e, name: str, expected: str | None) -> None:
        w = self.content.writer(expected=expected, size=e.size if expected else None)
        try:
            while True:
                chunk = reader.read_content(e)
                if not chunk:
                    break
                w.write(chunk)
            digest = w.commit(expected, e.size, sync=False)  # synced by the loader
        except BaseException:
            w.abort()
            raise
        self.lease.blobs.add(digest)
        self.blobs[name] = digest
        if self.on_blob is not None and e.size > SMALL:
            self.on_blob(digest)

    def _store_small(self, name: str, data: bytes) -> None:
        digest = self.content.write_blob(data)
        self.lease.blobs.add(digest)
        self.blobs[name] = digest

    def _resolve(self, path: str) -> str:
        path = clean_name(path, self.what)
        seen = 0
        while path in self.aliases and seen < 16:
            path = self.aliases[path]
            seen += 1
        return path

    def _json_file(self, path: str) -> tuple[bytes, dict]:
        path = self._resolve(path)
        if path in self.files:
            data = self.files[path]
        elif path in self.blobs:
            if self.content.size(self.blobs[path]) > MAX_JSON:
                raise BadImageArchive(f"{self.what}: {path} is too large for JSON")
            data = self.content.read(self.blobs[path])
        else:
            raise BadImageArchive(f"{self.what}: manifest names {path}, which is not in the "
                                  "archive")
        try:
            return data, json.loads(data)
        except ValueError as e:
            raise BadImageArchive(f"{self.what}: {path} is not valid JSON: {e}") from None

    def _blob_of(self, path: str) -> str:
        path = self._resolve(path)
        if path in self.blobs:
            return self.blobs[path]
        if path in self.files:
            self._store_small(path, self.files[path])
            return self.blobs[path]
        raise BadImageArchive(f"{self.what}: manifest names layer {path}, which is not in the "
                              "archive")

    def _docker_archive(self) -> list[ArchiveImage]:
        try:
            entries = json.loads(self.files["manifest.json"])
        except ValueError as e:
            raise BadImageArchive(f"{self.what}: manifest.json is not valid JSON: {e}") from None
        if not isinstance(entries, list):
            raise BadImageArchive(f"{self.what}: manifest.json is not a list")
        out = []
        for ent in entries:
            if not isinstance(ent, dict) or "Config" not in ent:
                raise BadImageArchive(f"{self.what}: manifest.json entry without Config")
            raw, config = self._json_file(ent["Config"])
            digest = "sha256:" + hashlib.sha256(raw).hexdigest()
            self._ensure_blob(raw, digest)
            diff_ids = config.get("rootfs", {}).get("diff_ids") or []
            paths = ent.get("Layers") or []
            if len(paths) != len(diff_ids):
                raise BadImageArchive(f"{self.what}: {len(paths)} layers in manifest.json but "
                                      f"{len(diff_ids)} diff_ids in the config")
            layers = []
            for p in paths:
                d = self._blob_of(p)
                layers.append({"mediaType": MT_OCI_LAYER, "digest": d,
                               "size": self.content.size(d)})
            tags = [t for t in (ent.get("RepoTags") or []) if isinstance(t, str)]
            out.append(ArchiveImage(digest, len(raw), layers, tags, None, None))
        return out

    def _ensure_blob(self, raw: bytes, digest: str) -> None:
        if not self.content.exists(digest):
            self.content.write_blob(raw, digest)
        self.lease.blobs.add(digest)

    def _oci_layout(self) -> list[ArchiveImage]:
        try:
            index = json.loads(self.files["index.json"])
        except ValueError as e:
            raise BadImageArchive(f"{self.what}: index.json is not valid JSON: {e}") from None
        out: list[ArchiveImage] = []
        for desc in index.get("manifests") or []:
            self._from_descriptor(desc, desc.get("annotations") or {}, out, 0)
        return out

    def _blob_json(self, desc: dict) -> tuple[bytes, dict]:
        digest = desc.get("digest", "")
        parse_digest(digest)
        if not self.content.exists(digest):
            raise BadImageArchive(f"{self.what}: index names blob {digest}, which is not in "
                                  "the archive")
        self.lease.blobs.add(digest)
        data = self.content.read(digest)
        try:
            return data, json.loads(data)
        except ValueError as e:
            raise BadImageArchive(f"{self.what}: blob {digest} is not valid JSON: {e}") from None

    def _from_descriptor(self, desc: dict, ann: dict, out: list, depth: int) -> None:
        if depth > 4:
            raise BadImageArchive(f"{self.what}: indexes nested too deep")
        raw, doc = self._blob_json(desc)
        mt = desc.get("mediaType") or doc.get("mediaType") or ""
        if mt in INDEX_TYPES or "manifests" in doc:
            chosen = _pick_platform(doc.get("manifests") or [])
            if chosen is None:
                raise BadImageArchive(f"{self.what}: no linux/amd64 image in index "
                                      f"{desc['digest']}")
            self._from_descriptor(chosen, ann, out, depth + 1)
            return
        cfg = doc.get("config") or {}
        cfg_raw, _config = self._blob_json(cfg)
        layers = []
        for ld in doc.get("layers") or []:
            d = ld.get("digest", "")
            parse_digest(d)
            if not self.content.exists(d):
                raise BadImageArchive(f"{self.what}: manifest {desc['digest']} names layer "
                                      f"{d}, which is not in the archive")
            self.lease.blobs.add(d)
            layers.append({"mediaType": ld.get("mediaType", MT_OCI_LAYER), "digest": d,
                           "size": ld.get("size", self.content.size(d))})
        tags = []
        name = ann.get("io.containerd.image.name") or ann.get("org.opencontainers.image.ref.name")
        if name:
            tags.append(name)
        out.append(ArchiveImage(cfg["digest"], len(cfg_raw), layers, tags, doc,
                                desc["digest"], cfg.get("mediaType", MT_OCI_CONFIG)))


def _read_all(reader: tarstream.TarReader, e: tarstream.Entry) -> bytes:
    parts = []
    while True:
        b = reader.read_content(e)
        if not b:
            return b"".join(parts)
        parts.append(b)


def _pick_platform(manifests: list[dict]) -> dict | None:
    for m in manifests:
        p = m.get("platform") or {}
        if p.get("os", "linux") == "linux" and p.get("architecture", "amd64") == "amd64":
            return m
    return None


# ---------------------------------------------------------------------------- writing

class SaveItem:
    """One image to save: its record, the tags to write, and its config bytes."""

    def __init__(self, rec: dict, tags: list[str], names: list[str]) -> None:
        self.rec = rec
        self.tags = tags  # familiar "busybox:latest" for manifest.json
        self.names = names  # full "docker.io/library/busybox:latest" for index.json


def write_archive(content: ContentStore, items: list[SaveItem], write: Callable[[bytes], object],
                  diff_size: Callable[[str], int], open_layer: Callable[[str], object],
                  layer_size: Callable[[str], int]) -> None:
    """Write one tar that is both an OCI layout and a docker-archive. Layers are read through
    ``open_layer`` (a blob, or a tar rebuilt from its snapshot)."""
    tw = tarstream.TarWriter(write)
    written: set[str] = set()
    tw.add_dir("blobs")
    tw.add_dir("blobs/sha256")

    def blob(digest: str, layer: bool = False) -> None:
        if digest in written:
            return
        written.add(digest)
        name = f"blobs/sha256/{parse_digest(digest)}"
        if not layer:
            tw.add_file(name, content.path(digest))
            return
        size = layer_size(digest)
        write(tarstream.header(name, size))
        left = size
        with open_layer(digest) as f:
            while left:
                b = f.read(min(1 << 20, left))
                if not b:
                    raise BadImageArchive(f"layer {digest}: shorter than its size")
                write(b)
                left -= len(b)
        if size % 512:
            write(b"\0" * (-size % 512))

    docker_manifest = []
    index = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": []}
    for it in items:
        rec = it.rec
        blob(rec["config"]["digest"])
        layer_paths = []
        for layer, diff_id in zip(rec["layers"], rec["diff_ids"], strict=True):
            blob(layer["digest"], layer=True)
            if layer["digest"] == diff_id:
                layer_paths.append(f"blobs/sha256/{parse_digest(diff_id)}")
                continue
            # compressed in the store: docker-archive wants the tar itself, under its diffID
            if diff_id not in written:
                written.add(diff_id)
                size = diff_size(diff_id)
                tw.write(tarstream.header(f"blobs/sha256/{parse_digest(diff_id)}", size))
                with open_layer(layer["digest"]) as f:
                    read, _ = decompressed(f.read, f"layer {layer['digest']}")
                    left = size
                    while True:
                        b = read(1 << 20)
                        if not b:
                            break
                        left -= len(b)
                        write(b)
                if left != 0:
                    raise BadImageArchive(f"layer {layer['digest']}: size changed while saving")
                if size % 512:
                    write(b"\0" * (-size % 512))
            layer_paths.append(f"blobs/sha256/{parse_digest(diff_id)}")
        blob(rec["manifest"]["digest"])
        docker_manifest.append({"Config": f"blobs/sha256/{parse_digest(rec['config']['digest'])}",
                                "RepoTags": it.tags or None, "Layers": layer_paths})
        desc = {"mediaType": rec["manifest"]["mediaType"], "digest": rec["manifest"]["digest"],
                "size": rec["manifest"]["size"]}
        if it.names:
            for full, short in zip(it.names, it.tags, strict=True):
                index["manifests"].append({**desc, "annotations": {
                    "io.containerd.image.name": full,
                    "org.opencontainers.image.ref.name": short.rpartition(":")[2]}})
        else:
            index["manifests"].append(desc)
    tw.add_bytes("index.json", json.dumps(index, separators=(",", ":")).encode())
    tw.add_bytes("manifest.json", json.dumps(docker_manifest, separators=(",", ":")).encode())
    tw.add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    tw.close()
