"""Image operations: load, save, import, list, inspect, history, tag, remove, prune, df.

``ImageService`` turns the image store (``berth.image``) into the Docker API's operations and
shapes. Every operation that writes holds a lease while it writes (so GC never takes what is
being written), records the image and its references atomically, then publishes its events.
A failed operation ends its lease and runs GC: the store holds nothing new afterwards.

Lookup (``resolve``) follows dockerd: a full ``sha256:`` ID; else a reference (``busybox`` means
``docker.io/library/busybox:latest``); else a unique prefix of an image ID.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from berth.errors import Conflict, InvalidArgument, NotFound
from berth.image import reference as refs
from berth.image.archive import (
    MT_OCI_CONFIG,
    MT_OCI_LAYER,
    MT_OCI_MANIFEST,
    ArchiveReader,
    SaveItem,
    write_archive,
)
from berth.image.compression import decompressed
from berth.image.store import ImageStore, NoSuchImage, chain_ids

log = logging.getLogger("berth.engine.images")

Progress = Callable[[dict], None]


class AmbiguousImage(InvalidArgument):
    pass


class ImageConflict(Conflict):
    pass


def _rfc3339(ts: float) -> str:
    ns = int(round(ts * 1e9)) % 1_000_000_000
    frac = f".{ns:09d}".rstrip("0").rstrip(".")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + frac + "Z"


def parse_time(s: str | None) -> float:
    if not s:
        return 0.0
    from datetime import datetime

    s2 = s.replace("Z", "+00:00")
    # Python < 3.11 cannot take nanoseconds: cut the fraction to microseconds.
    if "." in s2:
        head, _, rest = s2.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        tz = rest[len(digits):]
        s2 = f"{head}.{digits[:6]}{tz}"
    try:
        return datetime.fromisoformat(s2).timestamp()
    except ValueError:
        return 0.0


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                   "h": 3600.0}


def parse_until(value: str, now: float | None = None) -> float:
    """A filter time as Docker takes it: unix seconds, RFC 3339, or a Go duration before now
    (``24h``, ``1h30m``, ``90s``)."""
    now = time.time() if now is None else now
    try:
        return float(value)
    except ValueError:
        pass
    total, num, i, ok = 0.0, "", 0, False
    while i < len(value):
        c = value[i]
        if c.isdigit() or c == ".":
            num += c
            i += 1
            continue
        unit = next((u for u in ("ns", "us", "µs", "ms", "h", "m", "s")
                     if value.startswith(u, i)), None)
        if unit is None or not num:
            break
        total += float(num) * _DURATION_UNITS[unit]
        num, i, ok = "", i + len(unit), True
    else:
        if ok and not num:
            return now - total
    t = parse_time(value)
    if t:
        return t
    raise InvalidArgument(f"invalid filter 'until={value}'")


CONTAINER_CONFIG_KEYS = [
    ("Hostname", ""), ("Domainname", ""), ("User", ""), ("AttachStdin", False),
    ("AttachStdout", False), ("AttachStderr", False), ("Tty", False), ("OpenStdin", False),
    ("StdinOnce", False), ("Env", None), ("Cmd", None), ("Image", ""), ("Volumes", None),
    ("WorkingDir", ""), ("Entrypoint", None), ("OnBuild", None), ("Labels", None),
]


def container_config(cfg: dict | None) -> dict:
    """An image config's ``config`` as dockerd shows it: every field present."""
    cfg = cfg or {}
    out = {k: cfg.get(k, d) for k, d in CONTAINER_CONFIG_KEYS}
    for k in ("ExposedPorts", "StopSignal", "Healthcheck", "ArgsEscaped", "Shell",
              "StopTimeout"):
        if k in cfg:
            out[k] = cfg[k]
    return out


# ------------------------------------------------------------------------ import --change

def parse_changes(changes: list[str]) -> dict:
    """Dockerfile instructions for ``import --change``: → an image config's ``config`` part."""
    cfg: dict = {}
    for raw in changes:
        line = raw.strip()
        if not line:
            continue
        instr, _, rest = line.partition(" ")
        instr = instr.upper()
        rest = rest.strip()

        def json_or_shell(arg: str) -> list[str]:
            if arg.startswith("["):
                try:
                    v = json.loads(arg)
                    if isinstance(v, list) and all(isinstance(x, str) for x in v):
                        return v
                except ValueError:
                    pass
            return ["/bin/sh", "-c", arg]

        if instr == "CMD":
            cfg["Cmd"] = json_or_shell(rest)
        elif instr == "ENTRYPOINT":
            cfg["Entrypoint"] = json_or_shell(rest)
        elif instr == "ENV":
            env = cfg.setdefault("Env", [])
            pairs = []
            if "=" in rest.split(" ", 1)[0]:
                import shlex

                for tok in shlex.split(rest):
                    k, eq, v = tok.partition("=")
                    if not eq:
                        raise InvalidArgument(f"invalid --change: ENV {rest}: expected KEY=VALUE")
                    pairs.append((k, v))
            else:
                k, _, v = rest.partition(" ")
                if not k:
                    raise InvalidArgument("invalid --change: ENV needs a name")
                pairs.append((k, v.strip()))
            for k, v in pairs:
                env[:] = [e for e in env if e.split("=", 1)[0] != k] + [f"{k}={v}"]
        elif instr == "WORKDIR":
            if not rest:
                raise InvalidArgument("invalid --change: WORKDIR needs a path")
            cfg["WorkingDir"] = rest
        elif instr == "USER":
            if not rest:
                raise InvalidArgument("invalid --change: USER needs a user")
            cfg["User"] = rest
        elif instr == "EXPOSE":
            ports = cfg.setdefault("ExposedPorts", {})
            for p in rest.split():
                port, _, proto = p.partition("/")
                if not port.replace("-", "").isdigit():
                    raise InvalidArgument(f"invalid --change: EXPOSE {p}: invalid port")
                ports[f"{port}/{proto or 'tcp'}"] = {}
        elif instr == "LABEL":
            import shlex

            labels = cfg.setdefault("Labels", {})
            for tok in shlex.split(rest):
                k, _, v = tok.partition("=")
                labels[k] = v
        elif instr == "VOLUME":
            vols = cfg.setdefault("Volumes", {})
            for v in (json.loads(rest) if rest.startswith("[") else rest.split()):
                vols[v] = {}
        elif instr == "STOPSIGNAL":
            cfg["StopSignal"] = rest
        elif instr == "ONBUILD":
            cfg.setdefault("OnBuild", []).append(rest)
        else:
            raise InvalidArgument(f"{instr} is not a valid change command")
    return cfg


class ImageService:
    def __init__(self, root: str, events, allow_import_devices: bool = False) -> None:
        # device nodes in an imported tarball are refused unless the daemon allows them
        # (berthd --allow-import-devices): `import` takes arbitrary rootfs tarballs.
        self.allow_import_devices = allow_import_devices
        self.root = root
        self.events = events
        self.store = ImageStore(root)
        self.store.repair()
        self._pool = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2),
                                        thread_name_prefix="unpack")
        self._sizes: dict[str, int] = {}
        self._size_lock = threading.Lock()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def count(self) -> int:
        return len(self.store.images())

    # --------------------------------------------------------------------- lookup
    def resolve(self, name: str) -> str:
        """→ the image ID that ``name`` (reference, ID or ID prefix) means."""
        if not name:
            raise InvalidArgument("image name must not be empty")
        if name.startswith("sha256:") and len(name) == 71:
            if self.store.has(name):
                return name
            raise NoSuchImage(f"no such image: {name}")
        try:
            ref = refs.parse(name)
        except refs.InvalidReference:
            if refs.is_id_like(name):
                return self._by_prefix(name)
            raise
        if ref.digest is not None and ref.tag is None:
            iid = self.store.resolve_ref(str(ref))
            if iid:
                return iid
            # a digest reference may name the image's manifest
            for rec in self.store.images():
                if (rec.get("manifest") or {}).get("digest") == ref.digest and \
                        any(r.startswith(ref.name + ":") or r.startswith(ref.name + "@")
                            for r in self.store.refs_of(rec["id"])):
                    return rec["id"]
            raise NoSuchImage(f"no such image: {ref.familiar()}")
        ref = ref.with_default_tag()
        iid = self.store.resolve_ref(str(ref))
        if iid:
            return iid
        if refs.is_id_like(name):
            try:
                return self._by_prefix(name)
            except NoSuchImage:
                pass
        raise NoSuchImage(f"no such image: {ref.familiar()}")

    def _by_prefix(self, prefix: str) -> str:
        h = prefix[7:] if prefix.startswith("sha256:") else prefix
        found = [r["id"] for r in self.store.images() if r["id"][7:].startswith(h)]
        if not found:
            raise NoSuchImage(f"no such image: {prefix}")
        if len(found) > 1:
            raise AmbiguousImage(f"multiple IDs found with provided prefix: {prefix}")
        return found[0]

    # --------------------------------------------------------------------- shapes
    def _size(self, rec: dict) -> int:
        with self._size_lock:
            if rec["id"] in self._sizes:
                return self._sizes[rec["id"]]
        s = self.store.image_size(rec)
        with self._size_lock:
            self._sizes[rec["id"]] = s
        return s

    def _tags_digests(self, iid: str) -> tuple[list[str], list[str]]:
        tags, digests = [], []
        for r in self.store.refs_of(iid):
            ref = refs.parse(r)
            (digests if ref.digest and not ref.tag else tags).append(ref.familiar())
        return tags, digests

    def summary(self, rec: dict, config: dict) -> dict:
        tags, digests = self._tags_digests(rec["id"])
        labels = (config.get("config") or {}).get("Labels")
        size = self._size(rec)
        return {
            "Containers": -1,
            "Created": int(parse_time(config.get("created"))),
            "Id": rec["id"],
            "Labels": labels,
            "ParentId": "",
            "RepoDigests": digests or (["<none>@<none>"] if not tags else []),
            "RepoTags": tags or ["<none>:<none>"],
            "SharedSize": -1,
            "Size": size,
            "VirtualSize": size,
        }

    def list(self, all: bool = False, filters: dict[str, list[str]] | None = None,
             shared_size: bool = False) -> list[dict]:
        filters = filters or {}
        for k in filters:
            if k not in ("dangling", "reference", "before", "since", "label", "until"):
                raise InvalidArgument(f"invalid filter '{k}'")
        dangling = None
        if filters.get("dangling"):
            v = filters["dangling"][-1].lower()
            if v not in ("true", "false", "1", "0"):
                raise InvalidArgument(f"invalid filter 'dangling={filters['dangling'][-1]}'")
            dangling = v in ("true", "1")
        before = since = None
        if filters.get("before"):
            before = self._created(self.resolve(filters["before"][0]))
        if filters.get("since"):
            since = self._created(self.resolve(filters["since"][0]))
        out = []
        for rec in self.store.images():
            config = self.store.config(rec["id"])
            created = parse_time(config.get("created"))
            tags = [r for r in self.store.refs_of(rec["id"]) if refs.parse(r).tag]
            if dangling is not None and dangling != (not tags):
                continue
            if before is not None and created >= before:
                continue
            if since is not None and created <= since:
                continue
            if filters.get("label") and not _labels_match(
                    (config.get("config") or {}).get("Labels") or {}, filters["label"]):
                continue
            s = self.summary(rec, config)
            if filters.get("reference"):
                matched = [t for t in s["RepoTags"] if t != "<none>:<none>"
                           and any(_ref_match(t, pat) for pat in filters["reference"])]
                if not matched:
                    continue
                s["RepoTags"] = matched
            out.append(s)
        if shared_size:
            self._fill_shared(out)
        # newest first, as dockerd answers (the CLIs print in this order)
        out.sort(key=lambda s: (s["Created"], s["Id"]), reverse=True)
        return out

    def _fill_shared(self, summaries: list[dict]) -> None:
        users: dict[str, int] = {}
        recs = {s["Id"]: self.store.get(s["Id"]) for s in summaries}
        for rec in self.store.images():
            for c in set(rec["chain_ids"]):
                users[c] = users.get(c, 0) + 1
        for s in summaries:
            rec = recs[s["Id"]]
            s["SharedSize"] = sum(self.store.snapshots.usage(c) for c in set(rec["chain_ids"])
                                  if users.get(c, 0) > 1 and self.store.snapshots.exists(c))

    def _created(self, iid: str) -> float:
        return parse_time(self.store.config(iid).get("created"))

    def inspect(self, name: str) -> dict:
        iid = self.resolve(name)
        rec = self.store.get(iid)
        config = self.store.config(iid)
        tags, digests = self._tags_digests(iid)
        size = self._size(rec)
        dirs = [self.store.snapshots.dir_of(c) for c in reversed(rec["chain_ids"])
                if self.store.snapshots.exists(c)]
        graph = {"Name": "overlay2", "Data": None}
        if dirs:
            graph["Data"] = {"UpperDir": dirs[0], "MergedDir": "", "WorkDir": ""}
            if len(dirs) > 1:
                graph["Data"]["LowerDir"] = ":".join(dirs[1:])
        return {
            "Id": iid,
            "RepoTags": tags,
            "RepoDigests": digests,
            "Parent": "",
            "Comment": next((h.get("comment", "") for h in reversed(config.get("history") or [])
                             if h.get("comment")), config.get("comment", "")),
            "Created": config.get("created") or "0001-01-01T00:00:00Z",
            "Container": config.get("container", ""),
            "ContainerConfig": container_config(config.get("container_config")),
            "DockerVersion": config.get("docker_version", ""),
            "Author": config.get("author", ""),
            "Config": container_config(config.get("config")),
            "Architecture": config.get("architecture", ""),
            "Variant": config.get("variant"),
            "Os": config.get("os", ""),
            "Size": size,
            "VirtualSize": size,
            "GraphDriver": graph,
            "RootFS": {"Type": "layers", "Layers": list(rec["diff_ids"])},
            "Metadata": {"LastTagTime": rec.get("last_tag_time") or "0001-01-01T00:00:00Z"},
        }

    def history(self, name: str) -> list[dict]:
        iid = self.resolve(name)
        rec = self.store.get(iid)
        config = self.store.config(iid)
        hist = config.get("history") or []
        sizes = [self.store.snapshots.usage(c) if self.store.snapshots.exists(c) else 0
                 for c in rec["chain_ids"]]
        if not hist:
            hist = [{"created": config.get("created", "")} for _ in rec["diff_ids"]]
        out = []
        li = 0
        for h in hist:
            size = 0
            if not h.get("empty_layer"):
                size = sizes[li] if li < len(sizes) else 0
                li += 1
            out.append({"Comment": h.get("comment", ""),
                        "Created": int(parse_time(h.get("created"))),
                        "CreatedBy": h.get("created_by", ""), "Id": "<missing>",
                        "Size": size, "Tags": None})
        out.reverse()
        if out:
            out[0]["Id"] = iid
            tags, _ = self._tags_digests(iid)
            out[0]["Tags"] = tags or None
        return out

    # --------------------------------------------------------------------- tag / remove
    def tag(self, name: str, repo: str, tag: str = "") -> str:
        iid = self.resolve(name)
        if not repo:
            raise InvalidArgument("repository name must not be empty")
        target = f"{repo}:{tag}" if tag else repo
        ref = refs.parse(target)
        if ref.digest:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        if tag and not refs.valid_tag(tag):
            raise InvalidArgument(f"invalid tag format: {tag}")
        ref = ref.with_default_tag()
        self.store.set_ref(str(ref), iid)
        rec = self.store.get(iid)
        rec["last_tag_time"] = _rfc3339(time.time())
        self.store.put(rec)
        self.events.publish("image", "tag", iid, {"name": ref.familiar()})
        return ref.familiar()

    def remove(self, name: str, force: bool = False, noprune: bool = False) -> list[dict]:
        # one decision on one state: a concurrent tag or load cannot slip in between
        with self.store.lock:
            return self._remove(name, force)

    def _remove(self, name: str, force: bool) -> list[dict]:
        iid = self.resolve(name)
        out: list[dict] = []
        all_refs = self.store.refs_of(iid)
        by_ref = None
        try:
            r = refs.parse(name)
            cand = str(r.with_default_tag()) if not r.digest else str(r)
            if cand in all_refs:
                by_ref = cand
        except refs.InvalidReference:
            pass
        in_use = self.store.image_in_use(iid)
        if by_ref is not None:
            # untag only, unless it is the image's last reference
            if len(all_refs) > 1 or (in_use and not force):
                if in_use and len(all_refs) == 1:
                    raise ImageConflict(f"conflict: unable to remove repository reference "
                                        f"\"{name}\" (must force) - image {iid[7:19]} is in "
                                        "use by a container")
                self.store.remove_ref(by_ref)
                fam = refs.parse(by_ref).familiar()
                out.append({"Untagged": fam})
                self.events.publish("image", "untag", iid, {"name": fam})
                return out
        else:
            if len([x for x in all_refs if refs.parse(x).tag]) > 1 and not force:
                raise ImageConflict(f"conflict: unable to delete {iid[7:19]} (must be forced) "
                                    "- image is referenced in multiple repositories")
        if in_use and not force:
            raise ImageConflict(f"conflict: unable to delete {iid[7:19]} (cannot be forced) - "
                                "image is being used by a container")
        for r in all_refs:
            self.store.remove_ref(r)
            fam = refs.parse(r).familiar()
            out.append({"Untagged": fam})
            self.events.publish("image", "untag", iid, {"name": fam})
        if in_use:
            return out  # forced: untagged, the container keeps the image
        out += self._delete(iid)
        return out

    def _delete(self, iid: str) -> list[dict]:
        self.store.delete(iid)
        with self._size_lock:
            self._sizes.pop(iid, None)
        removed = self.store.gc()
        self.events.publish("image", "delete", iid, {"name": iid})
        return [{"Deleted": iid}] + [{"Deleted": s} for s in removed["snapshots"]]

    def prune(self, filters: dict[str, list[str]] | None = None) -> dict:
        with self.store.lock:
            return self._prune(filters or {})

    def _prune(self, filters: dict[str, list[str]]) -> dict:
        dangling_only = True
        if filters.get("dangling"):
            dangling_only = filters["dangling"][-1].lower() in ("true", "1")
        until = None
        if filters.get("until"):
            until = parse_until(filters["until"][-1])
        deleted: list[dict] = []
        reclaimed = 0
        before = self._total_layers()
        for rec in self.store.images():
            iid = rec["id"]
            tags = [r for r in self.store.refs_of(iid) if refs.parse(r).tag]
            if dangling_only and tags:
                continue
            if self.store.image_in_use(iid):
                continue
            config = self.store.config(iid)
            if filters.get("label") and not _labels_match(
                    (config.get("config") or {}).get("Labels") or {}, filters["label"]):
                continue
            if until is not None and parse_time(config.get("created")) >= until:
                continue
            for r in self.store.refs_of(iid):
                self.store.remove_ref(r)
                fam = refs.parse(r).familiar()
                deleted.append({"Untagged": fam})
                self.events.publish("image", "untag", iid, {"name": fam})
            deleted += self._delete(iid)
        reclaimed = max(before - self._total_layers(), 0)
        self.events.publish("image", "prune", "", {"reclaimed": str(reclaimed)})
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    def _total_layers(self) -> int:
        return sum(self.store.snapshots.usage(i["name"]) for i in self.store.snapshots.walk()
                   if i["kind"] == "committed")

    def df(self) -> dict:
        """``/system/df``'s image part: every image with its shared size, and the bytes of all
        layers (each counted once)."""
        images = self.list(shared_size=True)
        for s in images:
            s["Containers"] = 0
        return {"LayersSize": self._total_layers(), "Images": images}

    # --------------------------------------------------------------------- load
    def load(self, read: Callable[[int], bytes], quiet: bool = False,
             progress: Progress | None = None) -> list[str]:
        """Load a docker-archive or OCI layout from ``read``; → the tags/IDs loaded."""
        progress = progress or (lambda m: None)
        loaded: list[str] = []
        # Layers are applied while the rest of the archive still streams in: each large blob
        # is extracted as soon as it is stored, and named by its ChainID once the manifest
        # (which may come last) says what it is.
        known = {d for rec in self.store.images() for d in rec["diff_ids"]}
        early: dict[str, object] = {}

        def on_blob(digest: str) -> None:
            if digest not in known and digest not in early:
                early[digest] = self._pool.submit(self.store.extract, digest)

        with self.store.lease() as lease:
            try:
                found = ArchiveReader(self.store.content, lease, "archive", on_blob).read(read)
                if not found:
                    raise InvalidArgument("archive: no images in the archive")
                pre = {}
                for d, fut in early.items():
                    try:
                        pre[d] = fut.result()
                    except Exception:  # noqa: BLE001 - redone (and reported) by unpack
                        pre[d] = None
                records = [self._register_blobs(img, lease, pre) for img in found]
            finally:
                for fut in early.values():
                    try:
                        self.store.discard(fut.result())
                    except Exception:  # noqa: BLE001 - failed extractions left nothing
                        pass
            for img, rec in zip(found, records, strict=True):
                iid = rec["id"]
                named = []
                for t in img.tags:
                    try:
                        r = refs.parse(t)
                    except refs.InvalidReference:
                        continue  # an OCI ref.name that is only a tag ("latest")
                    if r.tag is None and r.digest is None and "/" not in t and ":" not in t:
                        continue
                    named.append(r.with_default_tag())
                for r in named:
                    old = self.store.set_ref(str(r), iid)
                    if old is not None:
                        msg = (f"The image {r.familiar()} already exists, renaming the old one "
                               f"with ID {old} to empty string")
                        if not quiet:
                            progress({"stream": msg + "\n"})
                    self.events.publish("image", "tag", iid, {"name": r.familiar()})
                    progress({"stream": f"Loaded image: {r.familiar()}\n"})
                    loaded.append(r.familiar())
                if not named:
                    progress({"stream": f"Loaded image ID: {iid}\n"})
                    loaded.append(iid)
                self.events.publish("image", "load", iid, {"name": iid})
        return loaded

    def _register_blobs(self, img, lease, pre: dict | None = None) -> dict:
        """Unpack an archive image's layers (in parallel), then record it."""
        content = self.store.content
        config = json.loads(content.read(img.config))
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        if len(diff_ids) != len(img.layers):
            raise InvalidArgument(f"image {img.config}: {len(img.layers)} layers but "
                                  f"{len(diff_ids)} diff_ids in its config")
        chains = chain_ids(diff_ids)
        pre = pre or {}
        futures = [self._pool.submit(self.store.unpack, layer["digest"], d, c, lease, True,
                                     pre.pop(layer["digest"], None))
                   for layer, d, c in zip(img.layers, diff_ids, chains, strict=True)]
        errors = []
        for f in futures:
            try:
                f.result()
            except Exception as e:  # noqa: BLE001 - the first error is raised below
                errors.append(e)
        if errors:
            raise errors[0]
        self.store.link_chain(chains)
        self._drop_plain_blobs(img.layers, diff_ids)
        manifest_desc = None
        if img.manifest_digest:
            manifest_desc = {"mediaType": img.manifest.get("mediaType", MT_OCI_MANIFEST),
                             "digest": img.manifest_digest,
                             "size": content.size(img.manifest_digest)}
        else:
            manifest_desc = self._write_manifest(img.config, img.config_size, img.layers, lease)
        # the blobs kept (configs, manifests, compressed layers) are made durable before the
        # record that names them
        self.store.content.sync([img.config, manifest_desc["digest"],
                                 *(la["digest"] for la in img.layers)])
        rec = {"id": img.config,
               "config": {"mediaType": img.config_media_type, "digest": img.config,
                          "size": img.config_size},
               "manifest": manifest_desc, "layers": img.layers, "diff_ids": diff_ids,
               "chain_ids": chains, "loaded": _rfc3339(time.time())}
        self.store.put(rec)
        return rec

    def _drop_plain_blobs(self, layers: list[dict], diff_ids: list[str]) -> None:
        """An uncompressed layer whose snapshot can rebuild it lives on disk once: as files."""
        for layer, d in zip(layers, diff_ids, strict=True):
            if layer["digest"] == d:
                self.store.drop_layer_blob(d)

    def _write_manifest(self, config: str, config_size: int, layers: list[dict],
                        lease) -> dict:
        manifest = {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                    "config": {"mediaType": MT_OCI_CONFIG, "digest": config,
                               "size": config_size},
                    "layers": [{"mediaType": la["mediaType"], "digest": la["digest"],
                                "size": la["size"]} for la in layers]}
        raw = json.dumps(manifest, separators=(",", ":")).encode()
        d = self.store.content.write_blob(raw)
        lease.blobs.add(d)
        return {"mediaType": MT_OCI_MANIFEST, "digest": d, "size": len(raw)}

    # --------------------------------------------------------------------- save
    def save(self, names: list[str], write: Callable[[bytes], object]) -> None:
        if not names:
            raise InvalidArgument("no images to save")
        items: dict[str, SaveItem] = {}
        order = []
        pairs: list[tuple[str, list[str]]] = []
        for n in names:
            repo_tags = self._repository_tags(n)
            if repo_tags:
                # `save busybox`: every tagged image of the repository, as docker saves it
                for full, iid in repo_tags:
                    pairs.append((iid, [full]))
                continue
            iid = self.resolve(n)
            pairs.append((iid, self._save_tags(n, iid)))
        for iid, tagged in pairs:
            if iid not in items:
                items[iid] = SaveItem(self.store.get(iid), [], [])
                order.append(iid)
            for full in tagged:
                fam = refs.parse(full).familiar()
                if fam not in items[iid].tags:
                    items[iid].tags.append(fam)
                    items[iid].names.append(full)
        with self.store.lease() as lease:
            for iid in order:
                rec = items[iid].rec
                lease.blobs.update([rec["config"]["digest"], rec["manifest"]["digest"]])
                lease.blobs.update(la["digest"] for la in rec["layers"])
            write_archive(self.store.content, [items[i] for i in order], write,
                          self._diff_size, self.store.open_layer, self.store.layer_size)
        for iid in order:
            self.events.publish("image", "save", iid, {"name": iid})

    def _repository_tags(self, name: str) -> list[tuple[str, str]]:
        """For a bare repository name: [(reference, image ID)] of each of its tags."""
        try:
            r = refs.parse(name)
        except refs.InvalidReference:
            return []
        if r.tag or r.digest:
            return []
        out = []
        for full, iid in sorted(self.store.refs().items()):
            p = refs.parse(full)
            if p.name == r.name and p.tag:
                out.append((full, iid))
        return out

    def _save_tags(self, name: str, iid: str) -> list[str]:
        """The references ``save NAME`` writes: ``repo:tag`` itself, every tag of ``repo`` on
        that image, none for an ID."""
        try:
            r = refs.parse(name)
        except refs.InvalidReference:
            return []
        mine = self.store.refs_of(iid)
        if r.digest:
            return []
        if r.tag:
            return [str(r)] if str(r) in mine else []
        return [x for x in mine if refs.parse(x).name == r.name and refs.parse(x).tag]

    def _diff_size(self, diff_id: str) -> int:
        for rec in self.store.images():
            if diff_id in rec["diff_ids"]:
                chain = rec["chain_ids"][rec["diff_ids"].index(diff_id)]
                size = self.store.snapshots.stat(chain).get("diff_size", -1)
                if size >= 0:
                    return size
        raise NotFound(f"no size known for layer {diff_id}")

    # --------------------------------------------------------------------- import
    def import_(self, read: Callable[[int], bytes], repo: str = "", tag: str = "",
                message: str = "", changes: list[str] | None = None,
                allow_devices: bool | None = None, platform: str = "",
                progress: Progress | None = None) -> str:
        progress = progress or (lambda m: None)
        if allow_devices is None:
            allow_devices = self.allow_import_devices
        cfg = parse_changes(changes or [])
        ref = None
        if repo:
            ref = refs.parse(f"{repo}:{tag}" if tag else repo)
            if ref.digest:
                raise InvalidArgument("cannot import with a digest reference")
            ref = ref.with_default_tag()
        if platform and platform not in ("linux", "linux/amd64", "linux/x86_64"):
            raise InvalidArgument(f"platform {platform} is not supported here")
        with self.store.lease() as lease:
            udata, _kind = decompressed(read, "import")
            w = self.store.content.writer()
            try:
                while True:
                    b = udata(1 << 20)
                    if not b:
                        break
                    w.write(b)
                if w.offset == 0:
                    raise InvalidArgument("import: the archive is empty")
                diff_id = w.commit()
            except BaseException:
                w.abort()
                raise
            lease.blobs.add(diff_id)
            size = self.store.content.size(diff_id)
            self.store.unpack(diff_id, diff_id, diff_id, lease, allow_devices=allow_devices)
            self.store.drop_layer_blob(diff_id)
            now = _rfc3339(time.time())
            u = os.uname()
            arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(u.machine, u.machine)
            config = {"architecture": arch, "os": "linux", "created": now,
                      "config": cfg, "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                      "history": [{"created": now, "created_by": "",
                                   "comment": message or "Imported from -"}]}
            if message:
                config["comment"] = message
            raw = json.dumps(config, separators=(",", ":")).encode()
            cdigest = self.store.content.write_blob(raw)
            lease.blobs.add(cdigest)
            layers = [{"mediaType": MT_OCI_LAYER, "digest": diff_id, "size": size}]
            manifest = self._write_manifest(cdigest, len(raw), layers, lease)
            rec = {"id": cdigest,
                   "config": {"mediaType": MT_OCI_CONFIG, "digest": cdigest, "size": len(raw)},
                   "manifest": manifest, "layers": layers, "diff_ids": [diff_id],
                   "chain_ids": [diff_id], "loaded": now}
            self.store.put(rec)
            if ref is not None:
                self.store.set_ref(str(ref), cdigest)
        self.events.publish("image", "import", cdigest, {"name": cdigest})
        if ref is not None:
            self.events.publish("image", "tag", cdigest, {"name": ref.familiar()})
        progress({"status": cdigest})
        return cdigest


def _labels_match(labels: dict, wanted: list[str]) -> bool:
    for w in wanted:
        k, eq, v = w.partition("=")
        if k not in labels or (eq and labels[k] != v):
            return False
    return True


def _ref_match(familiar_tag: str, pattern: str) -> bool:
    """docker's reference filter: a glob on the familiar name, with or without the tag."""
    name, _, tag = familiar_tag.rpartition(":")
    if ":" in pattern.rpartition("/")[2]:
        return fnmatch.fnmatchcase(familiar_tag, pattern)
    return fnmatch.fnmatchcase(name, pattern)

