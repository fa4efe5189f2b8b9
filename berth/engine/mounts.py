"""A container's mounts: ``-v``, ``--mount``, ``--tmpfs``, image and anonymous volumes.

``plan(config, host, image_volumes)`` parses everything the create request says about mounts
into *mount points* — Docker's ``Mounts`` entries of ``inspect`` (Type, Name, Source,
Destination, Driver, Mode, RW, Propagation) plus what berth needs to mount them — and checks
them with dockerd's words (``invalid mount config for type "bind": bind source path does not
exist: /nonexist``), before anything is created. ``oci_mounts(points, volume_path)`` turns
them into OCI mounts at start.

Docker's rules kept here: ``-v /host:/ctr`` creates a missing host directory, ``--mount
type=bind`` refuses one; ``-v name:/ctr`` and ``--mount type=volume`` name a volume (created if
missing); ``-v /ctr`` and an image's ``VOLUME`` get an anonymous volume; two mounts on one
destination are an error; a bind is ``rprivate`` unless told otherwise (``-v`` binds show
``rprivate`` in inspect — Docker shows its daemon's rslave default; berth has no propagation
default of its own to show).
"""

from __future__ import annotations

import os

from berth.errors import InvalidArgument

_PROPAGATION = ("shared", "rshared", "slave", "rslave", "private", "rprivate")
_MODES = ("ro", "rw", "z", "Z", "nocopy", "consistent", "cached", "delegated", *_PROPAGATION)


class InvalidMount(InvalidArgument):
    pass


def _volume_name_ok(name: str) -> bool:
    if len(name) < 2 or not (name[0].isascii() and name[0].isalnum()):
        return False
    return all(c.isascii() and (c.isalnum() or c in "_.-") for c in name)


def _clean(path: str) -> str:
    p = os.path.normpath(path)
    return "/" if p == "//" else p


def parse_bind(spec: str) -> dict:
    """One ``HostConfig.Binds`` entry (``src:dst[:mode]``) as the Linux parser reads it."""
    parts = spec.split(":")
    if len(parts) == 1 or len(parts) > 3 or any(p == "" for p in parts):
        if any(p == "" for p in parts) and len(parts) > 1:
            raise InvalidMount(f"invalid spec: {spec}: empty section between colons")
        raise InvalidMount(f"invalid volume specification: '{spec}'")
    src, dst = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else ""
    kind = "bind" if src.startswith("/") else "volume"
    if not dst.startswith("/"):
        raise InvalidMount(f"invalid volume specification: '{spec}': invalid mount config for "
                           f"type \"{kind}\": invalid mount path: '{dst}' mount path must be "
                           "absolute")
    rw = True
    propagation = ""
    nocopy = False
    if mode:
        for m in mode.split(","):
            if m not in _MODES:
                raise InvalidMount(f"invalid mode: {mode}")
            if m == "ro":
                rw = False
            elif m in _PROPAGATION:
                if kind != "bind":
                    raise InvalidMount(f"invalid mode: {mode}")
                propagation = m
            elif m == "nocopy":
                if kind == "bind":
                    raise InvalidMount(f"invalid mode: {mode}")
                nocopy = True
    if kind == "volume" and not _volume_name_ok(src):
        raise InvalidMount(f'create {src}: "{src}" includes invalid characters for a local '
                           'volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you '
                           "intended to pass a host directory, use absolute path")
    point = {"Type": kind, "Source": _clean(src) if kind == "bind" else "",
             "Destination": _clean(dst), "Mode": mode, "RW": rw,
             "Propagation": propagation or ("rprivate" if kind == "bind" else ""),
             "_create_src": True, "_nocopy": nocopy}
    if kind == "volume":
        point["Name"] = src
        point["Driver"] = "local"
    return point


def parse_api_mount(m: dict) -> dict:
    """One ``HostConfig.Mounts`` entry (the API's Mount object), checked as dockerd does."""
    kind = (m.get("Type") or "").lower()
    src = m.get("Source") or ""
    dst = m.get("Target") or ""

    def bad(why: str) -> InvalidMount:
        return InvalidMount(f'invalid mount config for type "{kind}": {why}')

    if kind not in ("bind", "volume", "tmpfs"):
        if kind in ("npipe", "cluster", "image"):
            raise bad("mount type not supported")
        raise bad("mount type unknown")
    if not dst:
        raise bad("field Target must not be empty")
    if not dst.startswith("/"):
        raise bad(f"invalid mount path: '{dst}' mount path must be absolute")
    ro = bool(m.get("ReadOnly"))
    point = {"Type": kind, "Destination": _clean(dst), "RW": not ro, "Mode": "",
             "Propagation": "", "Source": ""}
    if kind == "bind":
        if m.get("VolumeOptions"):
            raise bad("field VolumeOptions must not be specified")
        if m.get("TmpfsOptions"):
            raise bad("field TmpfsOptions must not be specified")
        if not src:
            raise bad("field Source must not be empty")
        if not src.startswith("/"):
            raise bad(f"invalid mount path: '{src}' mount path must be absolute")
        bo = m.get("BindOptions") or {}
        prop = bo.get("Propagation") or "rprivate"
        if prop not in _PROPAGATION:
            raise bad(f"invalid propagation mode: {prop}")
        point.update(Source=_clean(src), Propagation=prop,
                     _create_src=bool(bo.get("CreateMountpoint")),
                     _nonrecursive=bool(bo.get("NonRecursive")))
    elif kind == "volume":
        if m.get("BindOptions"):
            raise bad("field BindOptions must not be specified")
        if m.get("TmpfsOptions"):
            raise bad("field TmpfsOptions must not be specified")
        if src and not _volume_name_ok(src):
            raise InvalidMount(f'create {src}: "{src}" includes invalid characters for a local '
                               'volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If '
                               "you intended to pass a host directory, use absolute path")
        vo = m.get("VolumeOptions") or {}
        point.update(Name=src, Driver=(vo.get("DriverConfig") or {}).get("Name") or "local",
                     Mode="z", _nocopy=bool(vo.get("NoCopy")),
                     _labels=vo.get("Labels") or {},
                     _driver_opts=(vo.get("DriverConfig") or {}).get("Options") or {},
                     _subpath=vo.get("Subpath") or "")
    else:
        if src:
            raise bad("field Source must not be specified")
        if m.get("BindOptions"):
            raise bad("field BindOptions must not be specified")
        if m.get("VolumeOptions"):
            raise bad("field VolumeOptions must not be specified")
        to = m.get("TmpfsOptions") or {}
        opts = []
        size = to.get("SizeBytes") or 0
        if size < 0:
            raise bad("invalid tmpfs size")
        if size:
            opts.append(f"size={size // 1024}k" if size % 1024 == 0 else f"size={size}")
        if to.get("Mode"):
            opts.append(f"mode={to['Mode']:o}")
        point["_tmpfs_options"] = ",".join(opts)
    return point


def parse_tmpfs(dest: str, options: str) -> dict:
    if not dest.startswith("/"):
        raise InvalidMount(f"invalid mount path: '{dest}' mount path must be absolute")
    return {"Type": "tmpfs", "Source": "", "Destination": _clean(dest), "Mode": options,
            "RW": "ro" not in options.split(","), "Propagation": "",
            "_tmpfs_options": options}


def plan(config: dict, host: dict, image_volumes: dict | None) -> list[dict]:
    """Every mount point of a new container, checked; nothing is created here."""
    points: list[dict] = []
    seen: dict[str, str] = {}

    def add(p: dict, origin: str) -> None:
        d = p["Destination"]
        if d in seen:
            raise InvalidMount(f"Duplicate mount point: {d}")
        seen[d] = origin
        points.append(p)

    for spec in host.get("Binds") or []:
        add(parse_bind(spec), "bind")
    for m in host.get("Mounts") or []:
        add(parse_api_mount(m), "mount")
    for dest, opts in (host.get("Tmpfs") or {}).items():
        add(parse_tmpfs(dest, opts or ""), "tmpfs")
    for p in points:
        # -v creates a missing host directory (at start); --mount refuses it, as Docker
        if p["Type"] == "bind" and not p.get("_create_src") and not os.path.exists(p["Source"]):
            raise InvalidMount(f'invalid mount config for type "bind": bind source path does '
                               f"not exist: {p['Source']}")
    # anonymous volumes: -v /ctr and the image's VOLUMEs not already covered
    for dest in list(config.get("Volumes") or {}) + list(image_volumes or {}):
        if not dest.startswith("/"):
            raise InvalidMount(f"invalid mount path: '{dest}' mount path must be absolute")
        d = _clean(dest)
        if d in seen:
            continue
        seen[d] = "anonymous"
        points.append({"Type": "volume", "Name": "", "Source": "", "Destination": d,
                       "Driver": "local", "Mode": "", "RW": True, "Propagation": "",
                       "_anonymous": True})
    return points


def public(point: dict) -> dict:
    """The ``Mounts`` entry of ``docker inspect``."""
    out = {"Type": point["Type"]}
    if point["Type"] == "volume":
        out["Name"] = point.get("Name", "")
    out["Source"] = point.get("Source", "")
    out["Destination"] = point["Destination"]
    if point["Type"] == "volume":
        out["Driver"] = point.get("Driver", "local")
    out["Mode"] = point.get("Mode", "")
    out["RW"] = point["RW"]
    out["Propagation"] = point.get("Propagation", "")
    return out


def oci_mounts(points: list[dict]) -> list[dict]:
    """OCI mounts for the runtime (volume sources already resolved into ``Source``)."""
    out = []
    for p in points:
        if p["Type"] == "tmpfs":
            opts = ["nosuid", "nodev", "noexec"]
            for o in (p.get("_tmpfs_options") or "").split(","):
                if o and o not in opts:
                    opts.append(o)
            out.append({"destination": p["Destination"], "type": "tmpfs", "source": "tmpfs",
                        "options": opts})
            continue
        opts = ["bind" if p.get("_nonrecursive") else "rbind"]
        opts.append(p.get("Propagation") or "rprivate")
        if not p["RW"]:
            opts.append("ro")
        out.append({"destination": p["Destination"], "type": "bind", "source": p["Source"],
                    "options": opts})
    return out
