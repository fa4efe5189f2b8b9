"""System commands: version, info, events, system df."""

from __future__ import annotations

from .common import Spec
from .flags import Flag
from .format import bytes_size, human_duration, human_size, render


def version(ctx, argv) -> int:
    spec = Spec("berth version [OPTIONS]", "Show the berth version information",
                [Flag("-f,--format", "str", help="Format output using a Go template")],
                0, 0)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, _ = parsed
    from berth import __version__

    client = {"Version": __version__, "ApiVersion": "1.41", "Os": "linux"}
    server = ctx.client.get_json("/version")
    if opts["format"]:
        ctx.out.write(render(opts["format"], [{"Client": client, "Server": server}], {}))
        return 0
    ctx.out.write(
        "Client:\n"
        f" Version:           {client['Version']}\n"
        f" API version:       {client['ApiVersion']}\n\n"
        f"Server: {server.get('Platform', {}).get('Name', '')}\n"
        " Engine:\n"
        f"  Version:          {server.get('Version', '')}\n"
        f"  API version:      {server.get('ApiVersion', '')} (minimum version "
        f"{server.get('MinAPIVersion', '')})\n"
        f"  OS/Arch:          {server.get('Os', '')}/{server.get('Arch', '')}\n"
        f"  Kernel version:   {server.get('KernelVersion', '')}\n")
    return 0


def info(ctx, argv) -> int:
    spec = Spec("berth info [OPTIONS]", "Display system-wide information",
                [Flag("-f,--format", "str", help="Format output using a Go template")], 0, 0)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, _ = parsed
    i = ctx.client.get_json("/info")
    if opts["format"]:
        ctx.out.write(render(opts["format"], [i], {}))
        return 0
    ctx.out.write(
        "Server:\n"
        f" Containers: {i['Containers']}\n"
        f"  Running: {i['ContainersRunning']}\n"
        f"  Paused: {i['ContainersPaused']}\n"
        f"  Stopped: {i['ContainersStopped']}\n"
        f" Images: {i['Images']}\n"
        f" Server Version: {i['ServerVersion']}\n"
        f" Storage Driver: {i['Driver']}\n"
        f" Logging Driver: {i['LoggingDriver']}\n"
        f" Cgroup Driver: {i['CgroupDriver']}\n"
        f" Cgroup Version: {i['CgroupVersion']}\n"
        f" Default Runtime: {i['DefaultRuntime']}\n"
        f" Kernel Version: {i['KernelVersion']}\n"
        f" Operating System: {i['OperatingSystem']}\n"
        f" OSType: {i['OSType']}\n"
        f" Architecture: {i['Architecture']}\n"
        f" CPUs: {i['NCPU']}\n"
        f" Total Memory: {bytes_size(i['MemTotal'])}\n"
        f" Name: {i['Name']}\n"
        f" ID: {i['ID']}\n"
        f" Docker Root Dir: {i['DockerRootDir']}\n")
    return 0


def events(ctx, argv) -> int:
    spec = Spec("berth events [OPTIONS]", "Get real time events from the server", [
        Flag("-f,--filter", "list", help="Filter output based on conditions provided"),
        Flag("--format", "str", help="Format output using a Go template"),
        Flag("--since", "str", help="Show all events created since timestamp"),
        Flag("--until", "str", help="Stream events until this timestamp"),
    ], 0, 0)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, _ = parsed
    from berth import fastjson

    query = {"since": opts["since"] or None, "until": opts["until"] or None}
    filters = parse_filter_flags(opts["filter"])
    if filters:
        query["filters"] = fastjson.dumps(filters)
    r = ctx.client.request("GET", "/events", query)
    if r.status >= 400:
        from .client import APIError

        raise APIError(r.status, r.error_message())
    for line in r.lines():
        ev = fastjson.loads(line)
        if opts["format"]:
            ctx.out.write(render(opts["format"], [ev], {}))
        else:
            attrs = ev.get("Actor", {}).get("Attributes", {})
            t = ev.get("timeNano", 0)
            import time

            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 1_000_000_000))
            ts += f".{t % 1_000_000_000:09d}Z"
            a = ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs))
            ctx.out.write(f"{ts} {ev['Type']} {ev['Action']} {ev['Actor']['ID']}"
                          + (f" ({a})" if a else "") + "\n")
        ctx.out.flush()
    return 0


def parse_filter_flags(values: list[str]) -> dict[str, list[str]]:
    from .flags import UsageError

    out: dict[str, list[str]] = {}
    for v in values:
        k, eq, val = v.partition("=")
        if not eq:
            raise UsageError("bad format of filter (expected name=value)", status=125)
        out.setdefault(k.strip(), []).append(val)
    return out


def df(ctx, argv) -> int:
    spec = Spec("berth system df [OPTIONS]", "Show berth disk usage", [
        Flag("--format", "str", help="Format output using a Go template"),
        Flag("-v,--verbose", "bool", help="Show detailed information on space usage"),
    ], 0, 0)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, _ = parsed
    d = ctx.client.get_json("/system/df")
    images = d.get("Images") or []
    containers = d.get("Containers") or []
    volumes = d.get("Volumes") or []
    cache = d.get("BuildCache") or []
    active_images = sum(1 for i in images if i.get("Containers", 0) > 0)
    layers = d.get("LayersSize", 0)
    reclaim_img = sum(i.get("Size", 0) - i.get("SharedSize", 0) for i in images
                      if i.get("Containers", 0) <= 0)
    reclaim_img = min(max(reclaim_img, 0), layers)
    img_pct = f" ({reclaim_img * 100 // layers}%)" if layers else ""
    c_size = sum(c.get("SizeRw", 0) for c in containers)
    c_reclaim = sum(c.get("SizeRw", 0) for c in containers if c.get("State") != "running")
    c_pct = f" ({c_reclaim * 100 // c_size}%)" if c_size else ""
    v_size = sum(max(v.get("UsageData", {}).get("Size", 0), 0) for v in volumes)
    v_active = sum(1 for v in volumes if v.get("UsageData", {}).get("RefCount", 0) > 0)
    v_reclaim = sum(max(v.get("UsageData", {}).get("Size", 0), 0) for v in volumes
                    if v.get("UsageData", {}).get("RefCount", 0) == 0)
    v_pct = f" ({v_reclaim * 100 // v_size}%)" if v_size else ""
    b_size = sum(b.get("Size", 0) for b in cache)
    b_reclaim = sum(b.get("Size", 0) for b in cache if not b.get("InUse"))
    rows = [
        {"Type": "Images", "TotalCount": str(len(images)), "Active": str(active_images),
         "Size": human_size(layers, 4), "Reclaimable": human_size(reclaim_img, 4) + img_pct},
        {"Type": "Containers", "TotalCount": str(len(containers)),
         "Active": str(sum(1 for c in containers if c.get("State") == "running")),
         "Size": human_size(c_size, 4), "Reclaimable": human_size(c_reclaim, 4) + c_pct},
        {"Type": "Local Volumes", "TotalCount": str(len(volumes)), "Active": str(v_active),
         "Size": human_size(v_size, 4), "Reclaimable": human_size(v_reclaim, 4) + v_pct},
        {"Type": "Build Cache", "TotalCount": str(len(cache)),
         "Active": str(sum(1 for b in cache if b.get("InUse"))),
         "Size": human_size(b_size, 4), "Reclaimable": human_size(b_reclaim, 4)},
    ]
    if opts["verbose"] and not opts["format"]:
        ctx.out.write(_df_verbose(images, containers, volumes, cache, b_size))
        return 0
    headers = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
               "Reclaimable": "RECLAIMABLE"}
    fmt = opts["format"] or ("table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t"
                             "{{.Reclaimable}}")
    if fmt == "json":
        fmt = "{{json .}}"
    ctx.out.write(render(fmt, rows, headers, context="*formatter.diskUsageImagesContext"))
    return 0


def _df_verbose(images, containers, volumes, cache, cache_size) -> str:
    """``system df -v``: docker's four sections."""
    import time

    from .images import IMAGE_HEADERS, image_rows

    now = time.time()
    # docker shows one row per image here: its first tag only
    rows = image_rows([dict(i, RepoTags=(i.get("RepoTags") or [])[:1], RepoDigests=[])
                       for i in images], False, False)
    out = ["Images space usage:\n\n"]
    out.append(render("table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
                      "\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}", rows,
                      IMAGE_HEADERS))
    crow = [{"ID": c.get("Id", "")[:12], "Image": c.get("Image", ""),
             "Command": '"' + (c.get("Command", "")[:19] + "…"
                               if len(c.get("Command", "")) > 20 else c.get("Command", "")) + '"',
             "LocalVolumes": str(sum(1 for m in c.get("Mounts") or []
                                     if m.get("Type") == "volume")),
             "Size": human_size(c.get("SizeRw", 0), 4),
             "CreatedSince": human_duration(now - c.get("Created", now)) + " ago",
             "Status": c.get("Status", ""),
             "Names": ",".join(n.lstrip("/") for n in c.get("Names") or [])}
            for c in containers]
    out.append("\nContainers space usage:\n\n")
    out.append(render("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}"
                      "\t{{.CreatedSince}}\t{{.Status}}\t{{.Names}}", crow,
                      {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
                       "LocalVolumes": "LOCAL VOLUMES", "Size": "SIZE",
                       "CreatedSince": "CREATED", "Status": "STATUS", "Names": "NAMES"}))
    vrow = [{"Name": v.get("Name", ""),
             "Links": str(v.get("UsageData", {}).get("RefCount", 0)),
             "Size": human_size(max(v.get("UsageData", {}).get("Size", 0), 0), 4)}
            for v in volumes]
    out.append("\nLocal Volumes space usage:\n\n")
    out.append(render("table {{.Name}}\t{{.Links}}\t{{.Size}}", vrow,
                      {"Name": "VOLUME NAME", "Links": "LINKS", "Size": "SIZE"}))
    out.append(f"\nBuild cache usage: {human_size(cache_size, 4)}\n\n")
    out.append(render("table {{.ID}}\t{{.Type}}\t{{.Size}}\t{{.Created}}\t{{.LastUsed}}"
                      "\t{{.Usage}}\t{{.Shared}}", [],
                      {"ID": "CACHE ID", "Type": "CACHE TYPE", "Size": "SIZE",
                       "Created": "CREATED", "LastUsed": "LAST USED", "Usage": "USAGE",
                       "Shared": "SHARED"}))
    return "".join(out)


COMMANDS = {"version": version, "info": info, "events": events, "df": df}
