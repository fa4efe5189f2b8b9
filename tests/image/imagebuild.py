"""Test helpers that make images without any engine: layer tars and docker-archives.

A layer is described as a list of entries (``("file", "etc/x", b"data")``, ``("dir", "d")``,
``("symlink", "l", "target")``, ``("hardlink", "h", "target")``, ``("whiteout", "etc/x")``,
``("opaque", "dir")``, ``("raw", TarInfo, data)``) and written with the stdlib tarfile, so that
the archives are made by an independent implementation.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import time


def layer_tar(entries: list[tuple], mtime: int = 1_700_000_000) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ent in entries:
            kind, name = ent[0], ent[1]
            ti = tarfile.TarInfo(name)
            ti.mtime = mtime
            data = None
            if kind == "file":
                data = ent[2]
                ti.size = len(data)
                ti.mode = ent[3] if len(ent) > 3 else 0o644
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
            elif kind == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = ent[2]
            elif kind == "hardlink":
                ti.type = tarfile.LNKTYPE
                ti.linkname = ent[2]
            elif kind == "whiteout":
                d, _, base = name.rpartition("/")
                ti = tarfile.TarInfo(f"{d}/.wh.{base}" if d else f".wh.{base}")
                ti.mtime = mtime
                data = b""
            elif kind == "opaque":
                ti = tarfile.TarInfo(f"{name}/.wh..wh..opq")
                ti.mtime = mtime
                data = b""
            elif kind == "chardev":
                ti.type = tarfile.CHRTYPE
                ti.devmajor, ti.devminor = ent[2], ent[3]
            elif kind == "raw":
                ti, data = ent[1], ent[2]
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def config_for(layers: list[bytes], cmd: list[str] | None = None, created: str | None = None,
               labels: dict | None = None) -> bytes:
    created = created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    cfg = {
        "architecture": "amd64", "os": "linux", "created": created,
        "config": {"Cmd": cmd or ["sh"], "Env": ["PATH=/bin"], "Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": [sha(x) for x in layers]},
        "history": [{"created": created, "created_by": f"layer {i}"} for i in range(len(layers))],
    }
    return json.dumps(cfg).encode()


def docker_archive(images: list[tuple[list[bytes], list[str]]], gzip_layers: bool = False,
                   extra: list[tuple[str, bytes]] = (), config: bytes | None = None,
                   drop: set[str] = frozenset()) -> bytes:
    """A docker-archive (docker 20.10's layout: <id>/layer.tar, <config>.json, manifest.json)
    holding each (layers, tags) image; layers shared by images are written once."""
    buf = io.BytesIO()
    manifest = []
    written = set()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        def add(name: str, data: bytes) -> None:
            if name in drop:
                return
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))

        for layers, tags in images:
            paths = []
            for layer in layers:
                lid = hashlib.sha256(layer).hexdigest()
                path = f"{lid}/layer.tar"
                if path not in written:
                    written.add(path)
                    add(path, gzip.compress(layer) if gzip_layers else layer)
                paths.append(path)
            cfg = config or config_for(layers)
            cname = hashlib.sha256(cfg).hexdigest() + ".json"
            add(cname, cfg)
            manifest.append({"Config": cname, "RepoTags": tags, "Layers": paths})
        for name, data in extra:
            add(name, data)
        add("manifest.json", json.dumps(manifest).encode())
    return buf.getvalue()


def oci_layout(layers: list[tuple[bytes, str]], ref: str, config: bytes | None = None) -> bytes:
    """An OCI image layout as a tar: ``layers`` are (uncompressed tar, "none"|"gzip"|"zstd")."""
    import zstandard

    blobs: dict[str, bytes] = {}
    descs = []
    plain = [x for x, _ in layers]
    for data, comp in layers:
        if comp == "gzip":
            blob, mt = gzip.compress(data), "application/vnd.oci.image.layer.v1.tar+gzip"
        elif comp == "zstd":
            blob = zstandard.ZstdCompressor().compress(data)
            mt = "application/vnd.oci.image.layer.v1.tar+zstd"
        else:
            blob, mt = data, "application/vnd.oci.image.layer.v1.tar"
        blobs[sha(blob)] = blob
        descs.append({"mediaType": mt, "digest": sha(blob), "size": len(blob)})
    cfg = config or config_for(plain)
    blobs[sha(cfg)] = cfg
    manifest = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": sha(cfg), "size": len(cfg)},
                           "layers": descs}).encode()
    blobs[sha(manifest)] = manifest
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(manifest),
        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": ref}}]}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        def add(name, data):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        for d, b in blobs.items():
            add(f"blobs/sha256/{d[7:]}", b)
        add("index.json", json.dumps(index).encode())
    return buf.getvalue()
