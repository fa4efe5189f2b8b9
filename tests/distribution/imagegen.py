"""Test images made here: OCI layouts with layers of chosen sizes (no network, no daemon).

``make_layout(dir, layers=[...])`` writes an OCI image layout (index.json, oci-layout,
blobs/sha256/...) that skopeo, umoci and berth read. Layer content is deterministic from a
seed, and incompressible where asked, so sizes on the wire are what the test says.
"""

import gzip
import hashlib
import io
import json
import os
import random
import tarfile
from dataclasses import dataclass, field


@dataclass
class Built:
    layout: str
    manifest: bytes
    manifest_digest: str
    config_digest: str
    layers: list[tuple[str, int]] = field(default_factory=list)  # (digest, size) compressed
    diff_ids: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(s for _, s in self.layers)


def _sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def layer_tar(seed: str, size: int, name: str = "data.bin") -> bytes:
    """A tar with one file of ``size`` pseudo-random (incompressible) bytes."""
    rnd = random.Random(seed)
    data = rnd.randbytes(size)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        ti = tarfile.TarInfo(f"{seed}/{name}")
        ti.size = len(data)
        ti.mtime = 0
        t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _put(layout: str, data: bytes) -> str:
    d = _sha(data)
    p = os.path.join(layout, "blobs", "sha256", d[7:])
    if not os.path.exists(p):
        with open(p, "wb") as f:
            f.write(data)
    return d


def make_layout(layout: str, layers: list[tuple[str, int]], tag: str = "latest",
                docker_types: bool = False, extra_tars: list[bytes] = (),
                arch: str = "amd64") -> Built:
    """An image whose layers are ``(seed, size)`` random files, gzip level 1; ``tag`` names it."""
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    built = Built(layout, b"", "", "")
    descs = []
    tars = [layer_tar(seed, size) for seed, size in layers] + list(extra_tars)
    for tar in tars:
        gz = gzip.compress(tar, compresslevel=1, mtime=0)
        d = _put(layout, gz)
        built.layers.append((d, len(gz)))
        built.diff_ids.append(_sha(tar))
        descs.append({"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip"
                      if docker_types else "application/vnd.oci.image.layer.v1.tar+gzip",
                      "digest": d, "size": len(gz)})
    config = json.dumps({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": built.diff_ids},
        "history": [{"created_by": f"layer {i}"} for i in range(len(tars))],
    }).encode()
    built.config_digest = _put(layout, config)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json" if docker_types
        else "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json" if docker_types
                   else "application/vnd.oci.image.config.v1+json",
                   "digest": built.config_digest, "size": len(config)},
        "layers": descs,
    }).encode()
    built.manifest = manifest
    built.manifest_digest = _put(layout, manifest)
    index_path = os.path.join(layout, "index.json")
    index = {"schemaVersion": 2, "manifests": []}
    if os.path.exists(index_path):
        with open(index_path) as f:
            index = json.load(f)
    index["manifests"] = [m for m in index["manifests"]
                          if m.get("annotations", {}).get("org.opencontainers.image.ref.name")
                          != tag]
    index["manifests"].append({
        "mediaType": json.loads(manifest)["mediaType"], "digest": built.manifest_digest,
        "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": tag}})
    with open(index_path, "w") as f:
        json.dump(index, f)
    return built
