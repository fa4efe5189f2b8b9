"""Registry operations of the engine: pull into the image store, push from it, login.

``RegistryService`` joins the registry client (``berth.distribution``) to the image store
(``engine.images``). The words are the image store's (image ID = config digest, diffID,
ChainID, lease) and the distribution spec's (manifest, index, descriptor).

Pull ``ref``:
1. the distribution service resolves ``ref`` (through an index, for the wanted platform) and
   streams every blob the content store lacks into it through a verifying ingest; a layer the
   store already has is never requested, and concurrent pulls share downloads;
2. as each layer lands, its unpack into a committed snapshot (ChainID) starts on the image
   service's pool, so unpacking overlaps the downloads; the diffID is verified while applying;
3. when every layer is unpacked, the image is recorded (config, the platform manifest, layers,
   diffIDs, ChainIDs) and ``ref`` and ``name@digest`` point at it; for an index, the digest is
   the index's, so ``name@sha256:<index>`` resolves, and the index blob is kept as a GC root.
Everything written is held by a lease until the record exists; a failed pull ends the lease
and runs GC, so the store holds nothing of it afterwards (a digest mismatch stores nothing).

Push ``name:tag``: the image's manifest and blobs are pushed as they are in the content store
(the compressed layers a pull brought); a layer that exists only unpacked (an imported or
loaded uncompressed image) is pushed as the uncompressed tar the store holds. Mount hints come
from where each blob was pulled from or pushed to before (``sources.json``).

State: ``ROOT/distribution/sources.json`` (blob digest → ``registry/repository`` list) and
``ROOT/distribution/indexes.json`` (image ID → index digests kept for it), written atomically.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time

from berth import atomic
from berth.distribution import jsonmessage as jm
from berth.distribution import media, reference
from berth.distribution.client import (
    ManifestUnknown,
    NameUnknown,
    RegistryDenied,
    RegistryUnauthorized,
)
from berth.distribution.dockerconfig import Credentials
from berth.distribution.service import DistributionService
from berth.distribution.settings import RegistrySettings
from berth.errors import InvalidArgument, NotFound, PermissionDenied, Unavailable

from .images import _rfc3339

log = logging.getLogger("berth.engine.distribution")


class PullAccessDenied(NotFound):
    """dockerd answers 404 (docker-py raises ImageNotFound): Docker Hub says a repository
    that does not exist is one the caller may not pull."""


class ImageNotFound(NotFound):
    pass


class _StoreSink:
    """The content store as the puller's sink; pins what it wrote while any pull runs."""

    verifies = True  # the content store's writers hash and refuse a mismatch at commit

    def __init__(self, images) -> None:
        self.content = images.store.content
        self.lock = threading.Lock()
        self.active = 0
        self.written: set[str] = set()
        images.store.add_root_provider(self._roots)

    def _roots(self) -> dict:
        with self.lock:
            return {"blobs": set(self.written)}

    def begin(self) -> None:
        with self.lock:
            self.active += 1

    def end(self) -> None:
        with self.lock:
            self.active -= 1
            if self.active == 0:
                self.written.clear()

    def idle(self) -> bool:
        with self.lock:
            return self.active == 0

    def has(self, digest: str) -> bool:
        return self.content.exists(digest)

    def writer(self, digest: str, size: int):
        from berth.image.content import IngestLocked

        with self.lock:
            self.written.add(digest)
        try:
            return self.content.writer(expected=digest, size=size, wait=False)
        except IngestLocked:
            raise Unavailable(f"blob {digest} is being written by another operation; "
                              "try again") from None

    def put(self, digest: str, data: bytes) -> None:
        with self.lock:
            self.written.add(digest)
        self.content.write_blob(data, expected=digest)

    def read(self, digest: str) -> bytes:
        return self.content.read(digest)


class _StoreSource:
    """The content store as the pusher's source."""

    def __init__(self, content) -> None:
        self.content = content

    def open(self, digest: str):
        return self.content.open(digest)

    def size(self, digest: str) -> int:
        return self.content.size(digest)

    def read(self, digest: str) -> bytes:
        return self.content.read(digest)


def _check_host(ref: reference.Reference) -> None:
    # docker takes a first component with capitals for a host (``Pj/app``); dockerd then
    # refuses the name, and so must berthd, before it tries to resolve such a host
    if ref.registry != ref.registry.lower():
        raise InvalidArgument("invalid reference format: repository name must be lowercase")


class RegistryService:
    def __init__(self, images, root: str, settings: RegistrySettings | None = None) -> None:
        self.images = images
        self.store = images.store
        self.settings = settings or RegistrySettings()
        self.dir = os.path.join(root, "distribution")
        os.makedirs(self.dir, exist_ok=True)
        self.sink = _StoreSink(images)
        self.dist = DistributionService(self.sink, self.settings)
        self._state_lock = threading.Lock()
        self._sources = self._load("sources.json")
        self._indexes = self._load("indexes.json")
        self.store.add_root_provider(self._roots)

    def close(self) -> None:
        self.dist.close()

    # -- state ---------------------------------------------------------------------------------

    def _load(self, name: str) -> dict:
        try:
            with open(os.path.join(self.dir, name)) as f:
                doc = json.load(f)
            return doc if isinstance(doc, dict) else {}
        except (FileNotFoundError, ValueError):
            return {}

    def _save(self, name: str, doc: dict) -> None:
        atomic.write_text(os.path.join(self.dir, name), json.dumps(doc, sort_keys=True))

    def _roots(self) -> dict:
        with self._state_lock:
            blobs = set()
            for iid, digests in self._indexes.items():
                if self.store.has(iid):
                    blobs.update(digests)
            return {"blobs": blobs}

    def _remember_sources(self, registry: str, repository: str, digests) -> None:
        where = f"{registry}/{repository}"
        with self._state_lock:
            changed = False
            for d in digests:
                lst = self._sources.setdefault(d, [])
                if where not in lst:
                    lst.append(where)
                    del lst[:-5]  # a few sources are enough for mounts
                    changed = True
            if changed:
                self._save("sources.json", self._sources)

    def _mount_from(self, registry: str):
        def hints(digest: str) -> list[str]:
            with self._state_lock:
                return [s.split("/", 1)[1] for s in self._sources.get(digest, [])
                        if s.split("/", 1)[0] == registry]
        return hints

    # -- pull ----------------------------------------------------------------------------------

    def pull(self, from_image: str, tag: str = "", platform: str = "",
             credentials: Credentials | None = None, progress=None) -> None:
        """``POST /images/create?fromImage=&tag=``; with no tag and no digest, every tag."""
        progress = progress or (lambda m: None)
        text = from_image
        if tag:
            text = f"{from_image}@{tag}" if ":" in tag else f"{from_image}:{tag}"
        try:
            ref = reference.parse(text, default_tag=None)
        except reference.InvalidReference as e:
            raise InvalidArgument(str(e)) from None
        _check_host(ref)
        plat = media.parse_platform(platform) if platform else None
        if ref.tag is None and ref.digest is None:
            tags = self._denied(ref, lambda: self.dist.tags(ref, credentials=credentials))
            for t in sorted(tags):
                self.pull_one(ref.with_tag(t), plat, credentials, progress, announce=False)
            progress(jm.message(f"Status: Downloaded newer image for {ref.name}"))
            return
        self.pull_one(ref, plat, credentials, progress)

    def _denied(self, ref: reference.Reference, fn):
        """Registry errors of a pull in dockerd's words (its distribution/errors.go)."""
        try:
            return fn()
        except RegistryDenied as e:
            raise PullAccessDenied(
                f"pull access denied for {ref.name}, repository does not exist or may require "
                f"'docker login': {e}") from None
        except RegistryUnauthorized as e:
            raise PermissionDenied(str(e)) from None
        except NameUnknown as e:
            raise ImageNotFound(f"repository {ref.name} not found: {e}") from None
        except ManifestUnknown as e:
            raise ImageNotFound(f"manifest for {ref} not found: {e}") from None

    def pull_one(self, ref: reference.Reference, platform: media.Platform | None,
                 credentials: Credentials | None, progress, announce: bool = True) -> str:
        from berth.image.store import chain_ids

        store = self.store
        self.sink.begin()
        try:
            with store.lease() as lease:
                futures: dict[int, object] = {}
                diff_ids: list[str] = []

                def on_layer(i: int, d: media.Descriptor, config: bytes, fetched: bool) -> None:
                    # on the distribution loop thread: only hand the unpack to the pool
                    if not diff_ids:
                        cfg = json.loads(config)
                        diff_ids.extend((cfg.get("rootfs") or {}).get("diff_ids") or [])
                    if i >= len(diff_ids):
                        return  # reported once the pull returns
                    lease.blobs.add(d.digest)
                    chains = chain_ids(diff_ids)
                    sid = jm.short_id(d.digest)

                    def unpack():
                        if store.snapshots.exists(chains[i]):
                            # keep the snapshot for this image; a layer that was there says
                            # nothing more ("Already exists", or nothing for a known image)
                            store.unpack(d.digest, diff_ids[i], chains[i], lease)
                        else:
                            # byte counts of the compressed blob, as dockerd's: the docker CLI
                            # draws a bar on a terminal and leaves the line out of a log
                            progress(jm.status("Extracting", id=sid, current=0, total=d.size))
                            store.unpack(d.digest, diff_ids[i], chains[i], lease)
                            progress(jm.status("Extracting", id=sid, current=d.size,
                                               total=d.size))
                        if fetched:
                            progress(jm.status("Pull complete", id=sid))

                    futures[i] = self.images._pool.submit(unpack)

                res = self._denied(ref, lambda: self.dist.pull(
                    ref, credentials=credentials, platform=platform, progress=progress,
                    on_layer=on_layer, known_image=store.has))
                m = res.manifest
                layers = [d for d in m.layers if not d.urls]
                if len(diff_ids) != len(layers):
                    raise InvalidArgument(
                        f"image {ref}: {len(layers)} layers but {len(diff_ids)} diff_ids in "
                        "its config")
                errors = []
                for i in range(len(layers)):
                    try:
                        futures[i].result()
                    except Exception as e:  # noqa: BLE001 - the first error is raised below
                        errors.append(e)
                if errors:
                    raise errors[0]
                chains = chain_ids(diff_ids)
                store.link_chain(chains)
                config_digest = m.config.digest
                lease.blobs.update([config_digest, res.manifest_digest, res.digest])
                rec = {"id": config_digest,
                       "config": {"mediaType": m.config.media_type, "digest": config_digest,
                                  "size": m.config.size},
                       "manifest": {"mediaType": m.media_type, "digest": res.manifest_digest,
                                    "size": len(m.raw)},
                       "layers": [d.to_json() for d in layers], "diff_ids": diff_ids,
                       "chain_ids": chains, "loaded": _rfc3339(time.time())}
                fresh = not store.has(config_digest)
                if fresh:
                    store.put(rec)
                if res.index is not None:
                    with self._state_lock:
                        lst = self._indexes.setdefault(config_digest, [])
                        if res.digest not in lst:
                            lst.append(res.digest)
                            self._save("indexes.json", self._indexes)
                full = f"{ref.registry}/{ref.repository}"
                old = None
                if ref.tag:
                    old = store.resolve_ref(f"{full}:{ref.tag}")
                    store.set_ref(f"{full}:{ref.tag}", config_digest)
                store.set_ref(f"{full}@{res.digest}", config_digest)
                progress(jm.message(f"Digest: {res.digest}"))
        except BaseException:
            self.sink.end()
            # the lease's own GC ran while this pull still pinned its blobs: sweep again now
            # that nothing pins them, unless another pull is under way (it will, when done)
            if self.sink.idle():
                store.gc()
            raise
        self.sink.end()
        self._remember_sources(ref.registry, ref.repository,
                               [d.digest for d in layers] + [config_digest])
        shown = str(ref)
        if announce:
            if old == config_digest and not fresh:
                progress(jm.message(f"Status: Image is up to date for {shown}"))
            else:
                progress(jm.message(f"Status: Downloaded newer image for {shown}"))
        self.images.events.publish("image", "pull", shown, {"name": shown})
        return config_digest

    # -- push ----------------------------------------------------------------------------------

    def push(self, name: str, tag: str = "", credentials: Credentials | None = None,
             progress=None) -> None:
        """``POST /images/{name}/push?tag=``; no tag pushes every tag of the repository."""
        progress = progress or (lambda m: None)
        try:
            ref = reference.parse(name, default_tag=None)
        except reference.InvalidReference as e:
            raise InvalidArgument(str(e)) from None
        if ref.digest:
            raise InvalidArgument(f"cannot push a digest reference: {name}")
        if ref.tag and tag and ref.tag != tag:
            raise InvalidArgument(f"tag {tag} does not match the reference {name}")
        _check_host(ref)
        tag = tag or ref.tag or ""
        full = f"{ref.registry}/{ref.repository}"
        # as dockerd: this line first, so that a missing image is an error in the stream
        progress(jm.message(f"The push refers to repository [{full}]"))
        tags = sorted(r[len(full) + 1:] for r in self.store.refs() if r.startswith(full + ":"))
        if not tags:
            raise ImageNotFound(f"An image does not exist locally with the tag: {ref.name}")
        if tag:
            if tag not in tags:
                raise ImageNotFound(f"tag does not exist: {ref.name}:{tag}")
            tags = [tag]
        source = _StoreSource(self.store.content)
        for t in tags:
            iid = self.store.resolve_ref(f"{full}:{t}")
            rec = self.store.get(iid)
            with self.store.lease() as lease:
                md = rec["manifest"]
                lease.blobs.update([md["digest"], rec["config"]["digest"],
                                    *(la["digest"] for la in rec["layers"])])
                raw = self.store.content.read(md["digest"])
                # docker shows a pushed layer by its diffID
                ids = {la["digest"]: diff for la, diff in
                       zip(rec["layers"], rec.get("diff_ids") or (), strict=False)}

                def push_one(raw=raw, md=md, t=t, ids=ids):
                    return self.dist.push(
                        ref.with_tag(t), source, raw, md["mediaType"], credentials=credentials,
                        progress=progress, mount_from=self._mount_from(ref.registry),
                        announce=False, layer_ids=ids)

                digest = self._denied_push(ref, push_one)
            self.store.set_ref(f"{full}@{digest}", iid)
            self._remember_sources(ref.registry, ref.repository,
                                   [la["digest"] for la in rec["layers"]] +
                                   [rec["config"]["digest"]])
            self.images.events.publish("image", "push", f"{ref.name}:{t}",
                                       {"name": f"{ref.name}:{t}"})

    @staticmethod
    def _denied_push(ref: reference.Reference, fn):
        try:
            return fn()
        except RegistryUnauthorized as e:
            raise PermissionDenied(e.bare) from None  # dockerd names no request here
        except RegistryDenied as e:
            raise PermissionDenied(str(e)) from None

    # -- login ---------------------------------------------------------------------------------

    def login(self, body: dict) -> dict:
        """``POST /auth``: check credentials against the registry."""
        if not isinstance(body, dict):
            raise InvalidArgument("auth: body must be a JSON object")
        server = (body.get("serveraddress") or "docker.io").strip()
        server = server.removeprefix("https://").removeprefix("http://").split("/", 1)[0]
        if server in ("index.docker.io", "registry-1.docker.io"):
            server = "docker.io"
        creds = Credentials(body.get("username") or "", body.get("password") or "",
                            body.get("identitytoken") or None)
        try:
            self.dist.login(server, creds)
        except RegistryUnauthorized as e:
            raise PermissionDenied(str(e)) from None
        return {"Status": "Login Succeeded", "IdentityToken": ""}

