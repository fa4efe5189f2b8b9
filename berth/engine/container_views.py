"""What clients see of a container: ``inspect`` and ``ps`` shapes, and Docker's filters.

Shapes follow dockerd 20.10 (API 1.41) field for field, so the docker CLI's templates
(``{{.State.Status}}``, ``{{json .Mounts}}``) and docker-py's attributes read the same values.
Filters are dockerd's for ``GET /containers/json`` and ``POST /containers/prune``: id, name,
label, label!, status, exited, ancestor, before, since, volume, network, is-task, health,
publish, expose, until (prune).
"""

from __future__ import annotations

import time

from berth.errors import InvalidArgument, NotFound

from . import container_state as cs
from . import mounts

LIST_FILTERS = ("id", "name", "label", "label!", "status", "exited", "ancestor", "before",
                "since", "volume", "network", "is-task", "health", "publish", "expose",
                "isolation")
PRUNE_FILTERS = ("label", "label!", "until")


def _network_name(mode: str) -> str:
    return "bridge" if mode in ("default", "") else mode


def network_settings(c) -> dict:
    ns = c.rec.get("NetworkSettings") or {}
    mode = c.rec["HostConfig"].get("NetworkMode") or "default"
    networks = ns.get("Networks")
    if networks is None:
        net = _network_name(mode)
        networks = {} if mode.startswith("container:") else {net: _endpoint()}
    out = {"Bridge": "", "SandboxID": ns.get("SandboxID", ""), "HairpinMode": False,
           "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
           "Ports": ns.get("Ports") or {}, "SandboxKey": ns.get("SandboxKey", ""),
           "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
           "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
           "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
           "Networks": networks}
    first = networks.get("bridge")
    if first:
        for k in ("EndpointID", "Gateway", "IPAddress", "IPPrefixLen", "IPv6Gateway",
                  "GlobalIPv6Address", "GlobalIPv6PrefixLen", "MacAddress"):
            out[k] = first.get(k, out[k])
    return out


def _endpoint() -> dict:
    return {"IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": "",
            "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "MacAddress": "", "DriverOpts": None}


def _link_targets(service, c) -> list[tuple[str, str]]:
    """``c``'s legacy links as (the linked container's name, alias); the name as given when
    that container is gone."""
    out = []
    for lk in c.rec["HostConfig"].get("Links") or []:
        target, _, alias = str(lk).partition(":")
        try:
            name = service.get(target.lstrip("/")).name
        except (NotFound, InvalidArgument):
            name = "/" + target.lstrip("/")
        out.append((name, (alias or target).rsplit("/", 1)[-1]))
    return out


def _links(service, c) -> list[str] | None:
    """HostConfig.Links as dockerd shows them (from its link index): /target:/parent/alias."""
    return [f"{t}:{c.name}/{a}" for t, a in _link_targets(service, c)] or None


def inspect(service, c, size: bool = False) -> dict:
    rec = c.rec
    st = dict(rec["State"])
    started = rec.get("HasBeenStartedBefore")
    out = {
        "Id": c.id, "Created": rec["Created"], "Path": rec["Path"], "Args": rec["Args"],
        "State": st, "Image": rec["Image"],
        "ResolvConfPath": rec["ResolvConfPath"] if started else "",
        "HostnamePath": rec["HostnamePath"] if started else "",
        "HostsPath": rec["HostsPath"] if started else "",
        "LogPath": rec["LogPath"] if started else "",
        "Name": rec["Name"], "RestartCount": rec.get("RestartCount", 0),
        "Driver": rec["Driver"], "Platform": rec["Platform"], "MountLabel": "",
        "ProcessLabel": "", "AppArmorProfile": "",
        "ExecIDs": service.execs.ids_of(c) if service.execs is not None else None,
        "HostConfig": dict(rec["HostConfig"], Links=_links(service, c)),
        "GraphDriver": _graph_driver(service, c),
        "Mounts": [mounts.public(p) for p in rec.get("MountPoints", [])],
        "Config": rec["Config"],
        "NetworkSettings": network_settings(c),
    }
    if size:
        out["SizeRw"] = service.size_rw(c)
        out["SizeRootFs"] = service.size_root_fs(c)
    return out


def _graph_driver(service, c) -> dict:
    data = {}
    try:
        snaps = service.engine.images.store.snapshots
        upper = snaps.dir_of(c.rec["SnapshotKey"])
        info = snaps.stat(c.rec["SnapshotKey"])
        lowers = snaps.chain(info.get("parent"))
        import os

        data = {"LowerDir": ":".join(lowers), "MergedDir": os.path.join(
            service._run_dir(c.id), "rootfs"), "UpperDir": upper,
            "WorkDir": os.path.join(os.path.dirname(upper), "work")}
    except Exception:  # noqa: BLE001 - a missing snapshot shows as no data, as dockerd
        pass
    return {"Data": data or None, "Name": "overlay2"}


def command_line(rec: dict) -> str:
    """``ps``'s COMMAND as dockerd builds it: the path, then the args, an arg that holds a
    space in single quotes."""
    args = [f"'{a}'" if " " in a else a for a in rec["Args"]]
    return f"{rec['Path']} {' '.join(args)}" if args else rec["Path"]


_SUMMARY_FIELDS = ("NetworkID", "EndpointID", "Gateway", "IPAddress", "IPPrefixLen",
                   "IPv6Gateway", "GlobalIPv6Address", "GlobalIPv6PrefixLen", "MacAddress")


def _summary_endpoint(ep: dict) -> dict:
    """An endpoint as dockerd's list shows it (its container view's copy): addresses and ids,
    no aliases, links or driver options."""
    out = {"IPAMConfig": ep.get("IPAMConfig"), "Links": None, "Aliases": None}
    out.update({k: ep.get(k, 0 if k.endswith("PrefixLen") else "") for k in _SUMMARY_FIELDS})
    out["DriverOpts"] = None
    return out


def summary(service, c, size: bool = False, link_names: dict | None = None) -> dict:
    rec = c.rec
    st = rec["State"]
    # a linked container is also known as /parent/alias (dockerd's names index)
    names = [c.name, *(link_names or {}).get(c.name, ())]
    ports = []
    for key, binds in (rec.get("NetworkSettings") or {}).get("Ports", {}).items() or []:
        port, _, proto = key.partition("/")
        if not binds:
            ports.append({"PrivatePort": int(port), "Type": proto})
            continue
        for b in binds:
            p = {"PrivatePort": int(port), "Type": proto}
            if b.get("HostPort"):
                p["PublicPort"] = int(b["HostPort"])
                p["IP"] = b.get("HostIp") or "0.0.0.0"
            ports.append(p)
    out = {
        "Id": c.id, "Names": names, "Image": rec["Config"].get("Image", ""),
        "ImageID": rec["Image"], "Command": command_line(rec),
        "Created": int(cs.parse_rfc3339(rec["Created"])), "Ports": ports,
        "Labels": rec["Config"].get("Labels") or {}, "State": st["Status"],
        "Status": cs.status_text(st, rec.get("RestartCount", 0)),
        "HostConfig": {"NetworkMode": rec["HostConfig"].get("NetworkMode", "default")},
        "NetworkSettings": {"Networks": {k: _summary_endpoint(v) for k, v in
                                         network_settings(c)["Networks"].items()}},
        "Mounts": [mounts.public(p) for p in rec.get("MountPoints", [])],
    }
    if size:
        out["SizeRw"] = service.size_rw(c)
        out["SizeRootFs"] = service.size_root_fs(c)
    return out


def _label_match(labels: dict, wanted: list[str]) -> bool:
    for w in wanted:
        k, eq, v = w.partition("=")
        if k not in labels or (eq and labels[k] != v):
            return False
    return True


def _created(c) -> float:
    return cs.parse_rfc3339(c.rec["Created"])


def list_containers(service, all_: bool = False, limit: int = -1, size: bool = False,
                    filters: dict[str, list[str]] | None = None) -> list[dict]:
    filters = filters or {}
    for k in filters:
        if k not in LIST_FILTERS:
            raise InvalidArgument(f"invalid filter '{k}'")
    for s in filters.get("status", []):
        if s not in cs.STATUSES:
            raise InvalidArgument(f"invalid filter 'status={s}'")
    conts = sorted(service.by_id.values(), key=_created, reverse=True)
    before = since = None
    if filters.get("before"):
        before = _created(service.get(filters["before"][0]))
    if filters.get("since"):
        since = _created(service.get(filters["since"][0]))
    if filters.get("status") or filters.get("exited") or limit > 0 or before or since:
        all_ = True
    link_names: dict[str, list[str]] = {}
    for p in conts:
        for t, a in _link_targets(service, p):
            link_names.setdefault(t, []).append(f"{p.name}/{a}")
    out = []
    for c in conts:
        st = c.state["Status"]
        if not all_ and not cs.is_running(st) and not filters.get("status"):
            continue
        if before is not None and _created(c) >= before:
            continue
        if since is not None and _created(c) <= since:
            continue
        if not match(service, c, filters):
            continue
        out.append(summary(service, c, size, link_names))
        if limit > 0 and len(out) >= limit:
            break
    return out


def match(service, c, filters: dict[str, list[str]]) -> bool:
    rec = c.rec
    for k, wanted in filters.items():
        if not wanted:
            continue
        if k == "id" and not any(c.id.startswith(w) for w in wanted):
            return False
        if k == "name" and not any(w.lstrip("/") in c.name.lstrip("/") for w in wanted):
            return False
        if k == "label" and not _label_match(rec["Config"].get("Labels") or {}, wanted):
            return False
        if k == "label!" and _label_match(rec["Config"].get("Labels") or {}, wanted):
            return False
        if k == "status" and c.state["Status"] not in wanted:
            return False
        if k == "exited":
            if cs.is_running(c.state["Status"]) or c.state["Status"] == cs.CREATED:
                return False
            if str(c.state["ExitCode"]) not in wanted:
                return False
        if k == "ancestor":
            ok = False
            for w in wanted:
                if w in (rec["Config"].get("Image"), rec["Image"]) or \
                        rec["Image"].startswith("sha256:" + w) or rec["Image"].startswith(w):
                    ok = True
                else:
                    try:
                        ok = service.engine.images.resolve(w) == rec["Image"]
                    except Exception:  # noqa: BLE001 - an unknown image matches nothing
                        ok = False
                if ok:
                    break
            if not ok:
                return False
        if k == "volume":
            pts = rec.get("MountPoints", [])
            if not any(p.get("Name") == w or p.get("Destination") == w for p in pts
                       for w in wanted):
                return False
        if k == "network":
            nets = set(network_settings(c)["Networks"])
            if not nets & set(wanted):
                return False
        if k == "is-task" and "true" in wanted:
            return False
        if k == "health" and ((c.state.get("Health") or {}).get("Status") or "none") \
                not in wanted:
            return False
        if k == "expose":
            ports = set(rec["Config"].get("ExposedPorts") or {})
            if not any(w in ports or f"{w}/tcp" in ports for w in wanted):
                return False
        if k == "publish":
            ports = set((rec.get("NetworkSettings") or {}).get("Ports") or {})
            if not any(w in ports or f"{w}/tcp" in ports for w in wanted):
                return False
    return True


def match_prune(c, filters: dict[str, list[str]]) -> bool:
    for k in filters:
        if k not in PRUNE_FILTERS:
            raise InvalidArgument(f"invalid filter '{k}'")
    labels = c.rec["Config"].get("Labels") or {}
    if filters.get("label") and not _label_match(labels, filters["label"]):
        return False
    if filters.get("label!") and _label_match(labels, filters["label!"]):
        return False
    for u in filters.get("until", []):
        limit = _until(u)
        if _created(c) >= limit:
            return False
    return True


def _until(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        pass
    units = {"s": 1, "m": 60, "h": 3600}
    if value[-1:] in units:
        try:
            return time.time() - float(value[:-1]) * units[value[-1]]
        except ValueError:
            pass
    return cs.parse_rfc3339(value if value.endswith("Z") else value + "Z")
