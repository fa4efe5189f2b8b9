"""Named and anonymous volumes with Docker's ``local`` driver.

A volume is ``ROOT/volumes/<name>/_data`` (what a container mounts) and
``ROOT/volumes/<name>/volume.json`` (name, labels, options, creation time). With driver options
``type``/``device``/``o`` (``--opt type=tmpfs --opt device=tmpfs --opt o=size=64m``, or
``type=none,o=bind,device=/host/dir``) the data directory is a mount made when the first
container using the volume starts and removed when the last one stops, as Docker's local
driver does.

Users of a volume are counted by the container service (``in_use`` asks it), never stored: a
count on disk could drift after a crash. A volume made for a container (``-v /data``, an
image's ``VOLUME``) is *anonymous*: a random 64-hex name and the label
``com.docker.volume.anonymous``; ``rm -v`` and ``--rm`` remove those with their container.

Invariants: a volume appears only whole (built under ``.new-<name>`` and renamed); removing
renames to ``.rm-<name>`` before deleting, and start-up sweeps both kinds of leftovers.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable

from berth import atomic
from berth.errors import Conflict, InvalidArgument, NotFound

ANONYMOUS_LABEL = "com.docker.volume.anonymous"


class NoSuchVolume(NotFound):
    pass


class VolumeInUse(Conflict):
    pass


class InvalidVolumeName(InvalidArgument):
    pass


def _name_ok(name: str) -> bool:
    if not name or not name[0].isascii() or not name[0].isalnum():
        return False
    return all(c.isascii() and (c.isalnum() or c in "_.-") for c in name)


def _rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class VolumeService:
    def __init__(self, root: str, events, in_use: Callable[[str], list[str]] | None = None
                 ) -> None:
        self.root = root
        self.events = events
        os.makedirs(root, mode=0o701, exist_ok=True)
        self._lock = threading.RLock()
        self._vols: dict[str, dict] = {}
        # who counts the users of a volume: the container service sets this
        self.in_use: Callable[[str], list[str]] = in_use or (lambda name: [])
        self._mounted: dict[str, int] = {}
        self._repair()

    # ---------------------------------------------------------------- state on disk
    def _repair(self) -> None:
        for entry in os.listdir(self.root):
            p = os.path.join(self.root, entry)
            if entry.startswith(".new-") or entry.startswith(".rm-"):
                self._unmount_quiet(os.path.join(p, "_data"))
                shutil.rmtree(p, ignore_errors=True)
                continue
            try:
                with open(os.path.join(p, "volume.json")) as f:
                    v = json.load(f)
            except (OSError, ValueError):
                continue  # not ours (or damaged): left alone, listed by nobody
            # A crash may have left a driver mount behind; no container runs yet at start-up.
            self._unmount_quiet(os.path.join(p, "_data"))
            self._vols[v["Name"]] = v

    @staticmethod
    def _unmount_quiet(path: str) -> None:
        from berth.linux import mount as m

        try:
            if os.path.ismount(path):
                m.umount2(path, m.MNT_DETACH)
        except OSError:
            pass

    def _public(self, v: dict, usage: dict | None = None) -> dict:
        out = {"CreatedAt": v["CreatedAt"], "Driver": v["Driver"], "Labels": v["Labels"] or None,
               "Mountpoint": os.path.join(self.root, v["Name"], "_data"), "Name": v["Name"],
               "Options": v["Options"] or None, "Scope": "local"}
        if usage is not None:
            out["UsageData"] = usage
        return out

    # ---------------------------------------------------------------- operations
    def create(self, name: str = "", driver: str = "", driver_opts: dict | None = None,
               labels: dict | None = None, anonymous: bool = False) -> dict:
        """``POST /volumes/create``; an existing volume of that name is returned as it is."""
        driver = driver or "local"
        if driver != "local":
            raise NotFound(f'error looking up volume plugin {driver}: plugin "{driver}" not '
                           "found")
        if not name:
            name = os.urandom(32).hex()
            anonymous = True
        if len(name) < 2:
            raise InvalidVolumeName(f"create {name}: volume name is too short, names should be "
                                    "at least two alphanumeric characters")
        if not _name_ok(name):
            raise InvalidVolumeName(
                f'create {name}: "{name}" includes invalid characters for a local volume name, '
                'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
                "directory, use absolute path")
        opts = dict(driver_opts or {})
        for k in opts:
            if k not in ("type", "device", "o", "size"):
                raise InvalidArgument(f"create {name}: invalid option key: {k!r}")
        if opts and ("device" not in opts and opts.get("type") != "tmpfs"):
            raise InvalidArgument(f"create {name}: missing required option: \"device\"")
        labels = dict(labels or {})
        if anonymous:
            labels.setdefault(ANONYMOUS_LABEL, "")
        with self._lock:
            if name in self._vols:
                return self._public(self._vols[name])
            v = {"Name": name, "Driver": driver, "Labels": labels, "Options": opts,
                 "CreatedAt": _rfc3339(time.time())}
            tmp = os.path.join(self.root, ".new-" + name)
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(os.path.join(tmp, "_data"), 0o755)
            os.chmod(tmp, 0o701)
            atomic.write_text(os.path.join(tmp, "volume.json"), json.dumps(v))
            os.rename(tmp, os.path.join(self.root, name))
            self._vols[name] = v
        self.events.publish("volume", "create", name, {"driver": driver})
        return self._public(v)

    def get(self, name: str) -> dict:
        with self._lock:
            v = self._vols.get(name)
        if v is None:
            raise NoSuchVolume(f"get {name}: no such volume")
        return v

    def exists(self, name: str) -> bool:
        with self._lock:
            return name in self._vols

    def inspect(self, name: str) -> dict:
        return self._public(self.get(name))

    def is_anonymous(self, name: str) -> bool:
        with self._lock:
            v = self._vols.get(name)
        return v is not None and ANONYMOUS_LABEL in (v["Labels"] or {})

    def list(self, filters: dict[str, list[str]] | None = None) -> dict:
        filters = filters or {}
        for k in filters:
            if k not in ("dangling", "driver", "label", "name"):
                raise InvalidArgument(f"invalid filter '{k}'")
        out = []
        with self._lock:
            vols = list(self._vols.values())
        for v in sorted(vols, key=lambda x: x["Name"]):
            if not self._match(v, filters):
                continue
            out.append(self._public(v))
        return {"Volumes": out, "Warnings": None}

    def _match(self, v: dict, filters: dict[str, list[str]]) -> bool:
        for k, wanted in filters.items():
            if not wanted:
                continue
            if k == "name" and not any(w in v["Name"] for w in wanted):
                return False
            if k == "driver" and v["Driver"] not in wanted:
                return False
            if k == "dangling":
                dangling = not self.in_use(v["Name"])
                want = {w.lower() in ("true", "1") for w in wanted}
                if dangling not in want:
                    return False
            if k == "label":
                labels = v["Labels"] or {}
                for w in wanted:
                    lk, eq, lv = w.partition("=")
                    if lk not in labels or (eq and labels[lk] != lv):
                        return False
            if k == "label!":
                labels = v["Labels"] or {}
                for w in wanted:
                    lk, eq, lv = w.partition("=")
                    if lk in labels and (not eq or labels[lk] == lv):
                        return False
        return True

    def remove(self, name: str, force: bool = False) -> None:
        with self._lock:
            v = self._vols.get(name)
            if v is None:
                if force:
                    return
                raise NoSuchVolume(f"get {name}: no such volume")
            users = self.in_use(name)
            if users:
                raise VolumeInUse(f"remove {name}: volume is in use - [{', '.join(users)}]")
            self._delete_locked(name)
        self.events.publish("volume", "destroy", name, {"driver": v["Driver"]})

    def _delete_locked(self, name: str) -> None:
        p = os.path.join(self.root, name)
        self._unmount_quiet(os.path.join(p, "_data"))
        trash = os.path.join(self.root, ".rm-" + name)
        os.rename(p, trash)
        del self._vols[name]
        self._mounted.pop(name, None)
        shutil.rmtree(trash, ignore_errors=True)

    def prune(self, filters: dict[str, list[str]] | None = None, all_: bool = True) -> dict:
        """Unused volumes go; with ``all_`` False (API ≥ 1.42 without ``all=true``) only
        anonymous ones, as dockerd 23+."""
        filters = dict(filters or {})
        if "all" in filters:
            all_ = any(w.lower() in ("true", "1") for w in filters.pop("all"))
        for k in filters:
            if k not in ("label", "label!"):
                raise InvalidArgument(f"invalid filter '{k}'")
        deleted, space = [], 0
        with self._lock:
            for name in sorted(self._vols):
                v = self._vols[name]
                if self.in_use(name):
                    continue
                if not all_ and ANONYMOUS_LABEL not in (v["Labels"] or {}):
                    continue
                if not self._match(v, filters):
                    continue
                space += _du(os.path.join(self.root, name, "_data"))
                self._delete_locked(name)
                deleted.append(name)
        for name in deleted:
            self.events.publish("volume", "destroy", name, {"driver": "local"})
        return {"VolumesDeleted": deleted or None, "SpaceReclaimed": space}

    def usage(self) -> list[dict]:
        """``system df``: every volume with its size and how many containers use it."""
        out = []
        with self._lock:
            vols = list(self._vols.values())
        for v in vols:
            size = _du(os.path.join(self.root, v["Name"], "_data"))
            out.append(self._public(v, {"Size": size, "RefCount": len(self.in_use(v["Name"]))}))
        return out

    # ---------------------------------------------------------------- used by containers
    def mountpoint(self, name: str) -> str:
        """The directory a container binds, made ready (the driver's mount done) once."""
        with self._lock:
            v = self.get(name)
            data = os.path.join(self.root, name, "_data")
            opts = v["Options"] or {}
            if opts.get("type") or opts.get("o"):
                n = self._mounted.get(name, 0)
                if n == 0 and not os.path.ismount(data):
                    self._driver_mount(v, data)
                self._mounted[name] = n + 1
            return data

    def release(self, name: str) -> None:
        """A container that used the volume stopped: the last one out unmounts it."""
        with self._lock:
            n = self._mounted.get(name, 0)
            if n <= 1:
                self._mounted.pop(name, None)
                if n == 1:
                    self._unmount_quiet(os.path.join(self.root, name, "_data"))
            else:
                self._mounted[name] = n - 1

    def _driver_mount(self, v: dict, target: str) -> None:
        from berth.linux import mount as m

        opts = v["Options"]
        kind = opts.get("type") or ""
        o = opts.get("o", "")
        device = opts.get("device", kind)
        flags = 0
        data = []
        for part in [p for p in o.split(",") if p]:
            if part == "bind":
                flags |= m.MS_BIND
            elif part == "ro":
                flags |= m.MS_RDONLY
            else:
                data.append(part)
        if opts.get("size"):
            data.append(f"size={opts['size']}")
        try:
            if flags & m.MS_BIND:
                m.mount(device, target, None, m.MS_BIND | m.MS_REC, None)
                if flags & m.MS_RDONLY:
                    m.mount(None, target, None, m.MS_BIND | m.MS_REMOUNT | m.MS_RDONLY, None)
            else:
                m.mount(device, target, kind or None, flags, ",".join(data) or None)
        except OSError as e:
            raise InvalidArgument(f"error while mounting volume '{target}': failed to mount "
                                  f"local volume: mount {device}:{target}, data: "
                                  f"{','.join(data)}: {e.strerror.lower()}") from None


def _du(path: str) -> int:
    total = 0
    seen: set[tuple[int, int]] = set()
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(dirpath, f))
            except OSError:
                continue
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
            total += st.st_blocks * 512 if st.st_blocks else st.st_size
    return total
