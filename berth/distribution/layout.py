"""An OCI image layout as a pull sink and a push source (image-spec image-layout.md).

The layout is ``oci-layout``, ``index.json`` (one entry per tag, named by the
``org.opencontainers.image.ref.name`` annotation) and ``blobs/<alg>/<hex>``. Downloads in
progress live in ``.ingest/<alg>-<hex>`` (outside ``blobs/``, so no reader ever sees a partial
blob) and reach ``blobs/`` by rename once verified; a partial left by a cut connection is
resumed by the next pull. Used by tests, by tools, and as the model of the sink the image
store implements.
"""

import json
import os
from collections.abc import Iterator

from berth import atomic
from berth.distribution.reference import check_digest, hasher
from berth.errors import NotFound

__all__ = ["Layout"]

REF_NAME = "org.opencontainers.image.ref.name"


class _Writer:
    def __init__(self, layout: "Layout", digest: str, size: int) -> None:
        self.layout, self.digest, self.size = layout, digest, size
        self.path = os.path.join(layout.root, ".ingest", digest.replace(":", "-"))
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self.offset = os.fstat(self.fd).st_size
        if self.offset > size:
            os.ftruncate(self.fd, 0)
            self.offset = 0
        os.lseek(self.fd, self.offset, os.SEEK_SET)

    def existing(self) -> Iterator[bytes]:
        with open(self.path, "rb") as f:
            left = self.offset
            while left > 0:
                chunk = f.read(min(left, 1 << 20))
                if not chunk:
                    break
                left -= len(chunk)
                yield chunk

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]
        self.offset += len(data)

    def truncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)
        os.lseek(self.fd, size, os.SEEK_SET)
        self.offset = size

    def commit(self, digest: str, size: int) -> None:
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        target = self.layout.blob_path(digest)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.rename(self.path, target)

    def abort(self) -> None:
        self.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Layout:
    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(os.path.join(root, "blobs"), exist_ok=True)
        p = os.path.join(root, "oci-layout")
        if not os.path.exists(p):
            atomic.write_text(p, json.dumps({"imageLayoutVersion": "1.0.0"}))

    def blob_path(self, digest: str) -> str:
        alg, _, enc = check_digest(digest).partition(":")
        return os.path.join(self.root, "blobs", alg, enc)

    # -- sink ----------------------------------------------------------------------------------

    def has(self, digest: str) -> bool:
        return os.path.exists(self.blob_path(digest))

    def writer(self, digest: str, size: int) -> _Writer:
        return _Writer(self, digest, size)

    def put(self, digest: str, data: bytes) -> None:
        h = hasher(digest)
        h.update(data)
        if h.hexdigest() != digest.partition(":")[2]:
            raise ValueError(f"data does not match {digest}")
        p = self.blob_path(digest)
        if not os.path.exists(p):
            os.makedirs(os.path.dirname(p), exist_ok=True)
            atomic.write_bytes(p, data)

    def read(self, digest: str) -> bytes:
        try:
            with open(self.blob_path(digest), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise NotFound(f"blob not in layout {self.root}: {digest}") from None

    # -- source --------------------------------------------------------------------------------

    def open(self, digest: str):
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob not in layout {self.root}: {digest}") from None

    def size(self, digest: str) -> int:
        return os.stat(self.blob_path(digest)).st_size

    # -- index ---------------------------------------------------------------------------------

    def _index(self) -> dict:
        try:
            with open(os.path.join(self.root, "index.json")) as f:
                return json.load(f)
        except FileNotFoundError:
            return {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                    "manifests": []}

    def tag(self, name: str, digest: str, media_type: str, size: int) -> None:
        idx = self._index()
        idx["manifests"] = [m for m in idx["manifests"]
                            if (m.get("annotations") or {}).get(REF_NAME) != name]
        idx["manifests"].append({"mediaType": media_type, "digest": digest, "size": size,
                                 "annotations": {REF_NAME: name}})
        atomic.write_text(os.path.join(self.root, "index.json"), json.dumps(idx))

    def resolve(self, name: str) -> dict:
        for m in self._index()["manifests"]:
            if (m.get("annotations") or {}).get(REF_NAME) == name:
                return m
        raise NotFound(f"no image {name!r} in layout {self.root}")
