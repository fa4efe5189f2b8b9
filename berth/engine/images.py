"""Image operations: load, save, import, list, inspect, history, tag, remove, prune, df.

``ImageService`` turns the image store (``berth.image``) into the Docker API's operations and
shapes. Every operation that writes holds a lease while it writes (so GC never takes what is
being written), records the image and its references atomically, then publishes its events.
A failed operation ends its lease and runs GC: the store holds nothing new afterwards.

Lookup (``resolve``) follows dockerd: a full ``sha256:`` ID; else a reference (``busybox`` means
``docker.io/library/busybox:latest``); else a unique prefix of an image ID.
"""

from __future__ import annotations

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
    def __init__(self, message: str, used: bool = False) -> None:
        super().__init__(message)
        self.used = used  # the conflict is a container using the image


def _rfc3339(ts: float) -> str:
    ns = int(round(ts * 1e9)) % 1_000_000_000
    frac = f".{ns:09d}".rstrip("0").rstrip(".")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + frac + "Z"


# time.Time{}.Unix(): dockerd's Created (/images/json, history) for an image with no time
ZERO_UNIX = -62135596800


def unix_created(s: str | None) -> int:
    """A config's or history step's ``created`` as the API's Unix seconds."""
    return int(parse_time(s)) if s else ZERO_UNIX


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
    raise InvalidArgument(f'failed to parse value as time or duration: "{value}"')


# container.Config's fields in Go's order (``image inspect`` prints them so); the ``None``
# defaults are omitempty fields, left out when the image has none
CONTAINER_CONFIG_KEYS = [
    ("Hostname", ""), ("Domainname", ""), ("User", ""), ("AttachStdin", False),
    ("AttachStdout", False), ("AttachStderr", False), ("ExposedPorts", None), ("Tty", False),
    ("OpenStdin", False), ("StdinOnce", False), ("Env", ()), ("Cmd", ()),
    ("Healthcheck", None), ("ArgsEscaped", None), ("Image", ""), ("Volumes", ()),
    ("WorkingDir", ""), ("Entrypoint", ()), ("NetworkDisabled", None), ("MacAddress", None),
    ("OnBuild", ()), ("Labels", ()), ("StopSignal", None), ("StopTimeout", None),
    ("Shell", None),
]


def container_config(cfg: dict | None) -> dict:
    """An image config's ``config`` as dockerd shows it: every field present (``()``:
    null when absent), omitempty ones only when set."""
    cfg = cfg or {}
    out = {}
    for k, d in CONTAINER_CONFIG_KEYS:
        if k in cfg and not (d is None and cfg[k] in (None, "", False, [], {})):
            out[k] = cfg[k]
        elif d is not None:
            out[k] = None if d == () else d
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
        # set by the containers service: image ID → [(container ID, running)], for rmi's
        # conflicts in dockerd's words; without it only store.image_in_use is known
        self.image_users: Callable[[str], list[tuple[str, bool]]] | None = None

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
            raise NoSuchImage(f"No such image: {name}")
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
            raise NoSuchImage(f"No such image: {ref.familiar()}")
        ref = ref.with_default_tag()
        iid = self.store.resolve_ref(str(ref))
        if iid:
            return iid
        if refs.is_id_like(name):
            try:
                return self._by_prefix(name)
            except NoSuchImage:
                pass
        raise NoSuchImage(f"No such image: {ref.familiar()}")

    def _by_prefix(self, prefix: str) -> str:
        h = prefix[7:] if prefix.startswith("sha256:") else prefix
        found = [r["id"] for r in self.store.images() if r["id"][7:].startswith(h)]
        if not found:
            raise NoSuchImage(f"No such image: {prefix}")
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

    def summary(self, rec: dict, config: dict,
                shown: tuple[list[str], list[str]] | None = None) -> dict:
        """``/images/json``'s entry; ``shown``: the (tags, digests) to list, when a
        reference filter chose some."""
        tags, digests = shown if shown is not None else self._tags_digests(rec["id"])
        labels = (config.get("config") or {}).get("Labels")
        size = self._size(rec)
        none = not tags and not digests
        return {
            "Containers": -1,
            "Created": unix_created(config.get("created")),
            "Id": rec["id"],
            "Labels": labels,
            "ParentId": "",
            # null for what an image lacks, as dockerd answers API 1.41; <none> for neither
            "RepoDigests": ["<none>@<none>"] if none else (digests or None),
            "RepoTags": ["<none>:<none>"] if none else (tags or None),
            "SharedSize": -1,
            "Size": size,
            "VirtualSize": size,
        }

    def list(self, all: bool = False, filters: dict[str, list[str]] | None = None,
             shared_size: bool = False) -> list[dict]:
        filters = filters or {}
        for k in filters:
            if k not in ("dangling", "reference", "before", "since", "label", "until"):
                raise InvalidArgument(f"Invalid filter '{k}'")
        dangling = None
        if filters.get("dangling"):
            vals = [v.lower() for v in filters["dangling"]]
            if "true" in vals or "1" in vals:
                dangling = True
            elif "false" in vals or "0" in vals:
                dangling = False
            else:
                raise InvalidArgument(
                    f"Invalid filter 'dangling=[{' '.join(filters['dangling'])}]'")
        patterns = filters.get("reference") or []
        for pat in patterns:
            _glob_check(pat)
        before = since = None
        if filters.get("before"):
            before = self._created(self.resolve(filters["before"][0]))
        if filters.get("since"):
            since = self._created(self.resolve(filters["since"][0]))
        until = parse_until(filters["until"][-1]) if filters.get("until") else None
        out = []
        for rec in self.store.images():
            config = self.store.config(rec["id"])
            created = parse_time(config.get("created"))
            tags, digests = self._tags_digests(rec["id"])
            # dockerd: dangling=true keeps images without tags, =false those with any reference
            if dangling is True and tags:
                continue
            if dangling is False and not tags and not digests:
                continue
            if before is not None and created >= before:
                continue
            if since is not None and created <= since:
                continue
            if until is not None and created >= until:
                continue
            if filters.get("label") and not _labels_match(
                    (config.get("config") or {}).get("Labels") or {}, filters["label"]):
                continue
            if patterns:
                tags = [t for t in tags if any(_ref_match(t, p) for p in patterns)]
                digests = [d for d in digests if any(_ref_match(d, p) for p in patterns)]
                if not tags and not digests:
                    continue
            out.append(self.summary(rec, config, (tags, digests)))
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
        data = None
        if dirs:
            # a map in dockerd: its keys come sorted
            data = {"LowerDir": ":".join(dirs[1:]), "MergedDir": "", "UpperDir": dirs[0],
                    "WorkDir": ""}
            if len(dirs) == 1:
                del data["LowerDir"]
        graph = {"Data": data, "Name": "overlay2"}
        return {
            "Id": iid,
            "RepoTags": tags,
            "RepoDigests": digests,
            "Parent": "",
            "Comment": config.get("comment", ""),
            "Created": config.get("created") or "0001-01-01T00:00:00Z",
            "Container": config.get("container", ""),
            "ContainerConfig": container_config(config.get("container_config")),
            "DockerVersion": config.get("docker_version", ""),
            "Author": config.get("author", ""),
            "Config": container_config(config.get("config")),
            "Architecture": config.get("architecture", ""),
            **({"Variant": config["variant"]} if config.get("variant") else {}),
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
                        "Created": unix_created(h.get("created")),
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
        self.events.publish("image", "tag", iid, self._event_attrs(iid, ref.familiar()))
        return ref.familiar()

    def remove(self, name: str, force: bool = False, noprune: bool = False) -> list[dict]:
        # one decision on one state: a concurrent tag or load cannot slip in between
        with self.store.lock:
            return self._remove(name, force)

    def _event_attrs(self, iid: str, name: str | None = None) -> dict:
        """An image event's attributes as dockerd gives them: the image's labels (while it
        exists) and ``name``, the reference acted on or else the image ID."""
        attrs: dict = {}
        if self.store.has(iid):
            attrs.update((self.store.config(iid).get("config") or {}).get("Labels") or {})
        attrs["name"] = name or iid
        return attrs

    def _users(self, iid: str) -> list[tuple[str, bool]]:
        """The containers using the image: [(container ID, running)]."""
        if self.image_users is not None:
            return list(self.image_users(iid))
        # only "in use" is known: take it as a running container (the hard conflict)
        return [("", True)] if self.store.image_in_use(iid) else []

    def _remove(self, name: str, force: bool) -> list[dict]:
        """dockerd's ImageDelete: a reference is untagged first (and the digest references
        of its repository with its last tag); the image itself goes when no reference is
        left, quietly keeping it on a conflict; an ID removes the references only when they
        are one repository's with at most one tag, else it must be forced."""
        iid = self.resolve(name)
        out: list[dict] = []
        repo_refs = self.store.refs_of(iid)
        users = self._users(iid)
        quiet = False
        if not _is_id_prefix(iid, name):
            if not force and _single_reference(repo_refs) and users:
                cid = f"container {users[0][0][:12]} " if users[0][0] else "a container "
                raise ImageConflict(f"conflict: unable to remove repository reference "
                                    f"\"{name}\" (must force) - {cid}is using its "
                                    f"referenced image {iid[7:19]}")
            ref = refs.parse(name).with_default_tag()
            self.store.remove_ref(str(ref))
            out.append({"Untagged": ref.familiar()})
            self.events.publish("image", "untag", iid, self._event_attrs(iid))
            repo_refs = self.store.refs_of(iid)
            if ref.digest is None and not any(
                    refs.parse(r).name == ref.name and refs.parse(r).digest is None
                    for r in repo_refs):
                # the repository's last tag is gone: its digest references go with it
                for r in repo_refs:
                    p = refs.parse(r)
                    if p.name == ref.name and p.digest is not None:
                        self.store.remove_ref(r)
                        out.append({"Untagged": p.familiar()})
                repo_refs = self.store.refs_of(iid)
            if repo_refs:
                return out
            quiet = True
        elif _single_reference(repo_refs):
            self._check_conflict(iid, users, force, refs_count=0)
            for r in repo_refs:
                self.store.remove_ref(r)
                out.append({"Untagged": refs.parse(r).familiar()})
                self.events.publish("image", "untag", iid, self._event_attrs(iid))
        try:
            self._check_conflict(iid, users, force, len(self.store.refs_of(iid)))
        except ImageConflict as e:
            if quiet and (self.store.refs_of(iid) or e.used):
                return out  # untagged; the image stays for its users
            raise
        for r in self.store.refs_of(iid):
            self.store.remove_ref(r)
            out.append({"Untagged": refs.parse(r).familiar()})
            self.events.publish("image", "untag", iid, self._event_attrs(iid))
        out += self._delete(iid)
        return out

    @staticmethod
    def _check_conflict(iid: str, users: list[tuple[str, bool]], force: bool,
                        refs_count: int) -> None:
        """dockerd's conflicts: a running container is hard; references and stopped
        containers are soft (``force`` overrides them)."""
        short = iid[7:19]
        running = [c for c, up in users if up]
        if running:
            who = f"running container {running[0][:12]}" if running[0] else "a running container"
            raise ImageConflict(f"conflict: unable to delete {short} (cannot be forced) - "
                                f"image is being used by {who}", used=True)
        if force:
            return
        if refs_count:
            raise ImageConflict(f"conflict: unable to delete {short} (must be forced) - "
                                "image is referenced in multiple repositories")
        if users:
            raise ImageConflict(f"conflict: unable to delete {short} (must be forced) - "
                                f"image is being used by stopped container {users[0][0][:12]}",
                                used=True)

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
        for k in filters:
            if k not in ("dangling", "label", "label!", "until"):
                raise InvalidArgument(f"Invalid filter '{k}'")
        dangling_only = True
        if filters.get("dangling"):
            # as dockerd: false/0 anywhere wins, else true/1 must be there
            vals = filters["dangling"]
            if "false" in vals or "0" in vals:
                dangling_only = False
            elif "true" not in vals and "1" not in vals:
                raise InvalidArgument(f"Invalid filter 'dangling=[{' '.join(vals)}]'")
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
            labels = (config.get("config") or {}).get("Labels") or {}
            if filters.get("label") and not _labels_match(labels, filters["label"]):
                continue
            if filters.get("label!") and any(_labels_match(labels, [w])
                                             for w in filters["label!"]):
                continue
            if until is not None and parse_time(config.get("created")) >= until:
                continue
            for r in self.store.refs_of(iid):
                self.store.remove_ref(r)
                fam = refs.parse(r).familiar()
                deleted.append({"Untagged": fam})
                self.events.publish("image", "untag", iid, self._event_attrs(iid))
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
                    progress({"stream": f"Loaded image: {r.familiar()}\n"})
                    loaded.append(r.familiar())
                if not named:
                    progress({"stream": f"Loaded image ID: {iid}\n"})
                    loaded.append(iid)
                self.events.publish("image", "load", iid, self._event_attrs(iid))
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

    def add_image(self, config: dict, layers: list[dict], chain: list[str], lease,
                  ref: refs.Reference | None = None) -> str:
        """Record an image made on this host (import, commit): ``config`` (with its
        ``created`` and ``rootfs.diff_ids``) as a blob, an OCI manifest over ``layers``
        (blobs or snapshots already stored under ``lease``, ``chain`` their snapshots), the
        image's record and, given ``ref``, its tag (with the tag time dockerd shows as
        Metadata.LastTagTime); → the image ID. Events are the caller's: their order differs."""
        raw = json.dumps(config, separators=(",", ":")).encode()
        cdigest = self.store.content.write_blob(raw)
        lease.blobs.add(cdigest)
        manifest = self._write_manifest(cdigest, len(raw), layers, lease)
        rec = {"id": cdigest,
               "config": {"mediaType": MT_OCI_CONFIG, "digest": cdigest, "size": len(raw)},
               "manifest": manifest, "layers": layers, "diff_ids": config["rootfs"]["diff_ids"],
               "chain_ids": chain, "loaded": config["created"]}
        if ref is not None:
            rec["last_tag_time"] = config["created"]
        self.store.put(rec)
        if ref is not None:
            self.store.set_ref(str(ref), cdigest)
        return cdigest

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
            self.events.publish("image", "save", iid, self._event_attrs(iid))

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
            # dockerd's import writes the comment twice: the image's and its one history entry
            comment = message or "Imported from -"
            config = {"architecture": arch, "comment": comment, "config": cfg, "created": now,
                      "history": [{"created": now, "comment": comment}], "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
            layers = [{"mediaType": MT_OCI_LAYER, "digest": diff_id, "size": size}]
            cdigest = self.add_image(config, layers, [diff_id], lease, ref)
        # dockerd's order: the tag, then the import
        if ref is not None:
            self.events.publish("image", "tag", cdigest,
                                self._event_attrs(cdigest, ref.familiar()))
        self.events.publish("image", "import", cdigest, self._event_attrs(cdigest))
        progress({"status": cdigest})
        return cdigest


def _is_id_prefix(iid: str, name: str) -> bool:
    return iid.startswith(name) or iid[7:].startswith(name)


def _single_reference(repo_refs: list[str]) -> bool:
    """dockerd's isSingleReference: the references are one repository's, with at most one
    tag (any number of digests); false for none."""
    if len(repo_refs) <= 1:
        return len(repo_refs) == 1
    parsed = [refs.parse(r) for r in repo_refs]
    tagged = [p for p in parsed if p.digest is None]
    if len(tagged) > 1:
        return False
    digest_repos = {p.name for p in parsed if p.digest is not None}
    single = tagged[0] if tagged else parsed[0]
    return len(digest_repos) == 1 and single.name in digest_repos


def _labels_match(labels: dict, wanted: list[str]) -> bool:
    for w in wanted:
        k, eq, v = w.partition("=")
        if k not in labels or (eq and labels[k] != v):
            return False
    return True


def _ref_match(familiar: str, pattern: str) -> bool:
    """reference.FamiliarMatch: the pattern against the familiar reference, else against
    its name alone; a Go path.Match glob (``*`` and ``?`` stop at ``/``)."""
    if _glob(pattern, familiar):
        return True
    name = familiar.split("@", 1)[0]
    tail = name.rpartition("/")[2]
    if ":" in tail:
        name = name[:len(name) - len(tail)] + tail.split(":", 1)[0]
    return _glob(pattern, name)


def _glob_check(pattern: str) -> None:
    try:
        _glob_regex(pattern)
    except ValueError:
        raise InvalidArgument("syntax error in pattern") from None


def _glob(pattern: str, name: str) -> bool:
    return _glob_regex(pattern).fullmatch(name) is not None


def _glob_regex(pattern: str):
    """Go's path.Match as a regular expression: ``*``, ``?``, ``[...]`` (with ``^`` for
    negation) and ``\\`` escapes; a malformed class is an error."""
    import re

    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\":
            i += 1
            if i >= n:
                raise ValueError("bad escape")
            out.append(re.escape(pattern[i]))
        elif c == "[":
            j = i + 1
            neg = j < n and pattern[j] == "^"
            if neg:
                j += 1
            body = []
            first = True
            while j < n and (pattern[j] != "]" or first):
                if pattern[j] == "\\":
                    j += 1
                    if j >= n:
                        raise ValueError("bad escape")
                body.append(re.escape(pattern[j]) if pattern[j] != "-" else "-")
                first = False
                j += 1
            if j >= n or not body:
                raise ValueError("bad class")
            out.append("[" + ("^/" if neg else "") + "".join(body) + "]")
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out), re.S)
