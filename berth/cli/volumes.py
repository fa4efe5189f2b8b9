"""Volume commands: volume create, ls, inspect, rm, prune."""

from __future__ import annotations

from berth import fastjson

from .client import APIError
from .common import Spec, confirm, inspect_each, print_inspected, prune_call, prune_report
from .flags import Flag
from .format import render
from .system import parse_filter_flags


def create(ctx, argv) -> int:
    spec = Spec("berth volume create [OPTIONS] [VOLUME]", "Create a volume", [
        Flag("-d,--driver", "str", default="local", help='Specify volume driver name (default '
             '"local")'),
        Flag("--label", "list", help="Set metadata for a volume"),
        Flag("-o,--opt", "list", help="Set driver specific options", metavar="map"),
        Flag("--name", "str", help="Specify volume name"),
    ], 0, 1)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, args = parsed
    name = args[0] if args else opts["name"]
    if args and opts["name"] and args[0] != opts["name"]:
        ctx.err.write("conflicting options: cannot specify a volume-name through both "
                      "--name and as a positional arg\n")
        return 1
    body = {"Name": name, "Driver": opts["driver"],
            "DriverOpts": dict(o.partition("=")[::2] for o in opts["opt"]),
            "Labels": dict(lb.partition("=")[::2] for lb in opts["label"])}
    v = ctx.client.call("POST", "/volumes/create", json=body)
    ctx.out.write(v["Name"] + "\n")
    return 0


def ls(ctx, argv) -> int:
    spec = Spec("berth volume ls [OPTIONS]", "List volumes", [
        Flag("-f,--filter", "list", help="Provide filter values (e.g. \"dangling=true\")"),
        Flag("--format", "str", help="Format output using a custom template"),
        Flag("-q,--quiet", help="Only display volume names"),
    ], 0, 0)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, _ = parsed
    filters = parse_filter_flags(opts["filter"])
    res = ctx.client.get_json("/volumes", {"filters": fastjson.dumps(filters)} if filters
                              else None)
    rows = [{"Driver": v["Driver"], "Name": v["Name"], "Mountpoint": v["Mountpoint"],
             "Scope": v.get("Scope", "local"), "Labels": ",".join(
                 f"{k}={val}" for k, val in sorted((v.get("Labels") or {}).items())),
             "Links": "N/A", "Size": "N/A"} for v in res.get("Volumes") or []]
    rows.sort(key=lambda r: r["Name"])
    fmt = opts["format"]
    if opts["quiet"]:
        fmt = "{{.Name}}"
    elif not fmt or fmt == "table":
        fmt = "table {{.Driver}}\t{{.Name}}"
    elif fmt == "json":
        fmt = "{{json .}}"
    ctx.out.write(render(fmt, rows, {"Driver": "DRIVER", "Name": "VOLUME NAME",
                                     "Mountpoint": "MOUNTPOINT", "Scope": "SCOPE",
                                     "Labels": "LABELS", "Links": "LINKS", "Size": "SIZE"}))
    return 0


def inspect(ctx, argv) -> int:
    spec = Spec("berth volume inspect [OPTIONS] VOLUME [VOLUME...]", "Display detailed "
                "information on one or more volumes", [
                    Flag("-f,--format", "str", help="Format output using a custom template")],
                1)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, names = parsed
    found, status = inspect_each(ctx, names, lambda n: ctx.client.get_json(f"/volumes/{n}"),
                                 "Error: No such volume: {}")
    print_inspected(ctx, opts["format"], found)
    return status


def rm(ctx, argv) -> int:
    spec = Spec("berth volume rm [OPTIONS] VOLUME [VOLUME...]", "Remove one or more volumes", [
        Flag("-f,--force", help="Force the removal of one or more volumes")], 1)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, names = parsed
    status = 0
    for n in names:
        try:
            ctx.client.call("DELETE", f"/volumes/{n}", {"force": "1" if opts["force"] else None})
            ctx.out.write(n + "\n")
        except APIError as e:
            ctx.err.write(f"Error response from daemon: {e.message}\n")
            status = 1
    return status


def prune(ctx, argv) -> int:
    spec = Spec("berth volume prune [OPTIONS]", "Remove unused local volumes", [
        Flag("-a,--all", help="Remove all unused volumes, not just anonymous ones"),
        Flag("--filter", "list", help="Provide filter values (e.g. \"label=<label>\")"),
        Flag("-f,--force", help="Do not prompt for confirmation"),
    ], 0, 0)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, _ = parsed
    if not opts["force"] and not confirm(ctx, "WARNING! This will remove anonymous local "
                                              "volumes not used by at least one container."):
        return 0
    filters = parse_filter_flags(opts["filter"])
    if opts["all"]:
        filters["all"] = ["true"]
    res = prune_call(ctx, "/volumes/prune", filters)
    return prune_report(ctx, "Volumes", res.get("VolumesDeleted"),
                        res.get("SpaceReclaimed", 0))


COMMANDS = {"create": create, "ls": ls, "inspect": inspect, "rm": rm, "prune": prune}
