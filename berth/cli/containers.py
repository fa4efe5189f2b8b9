"""Container commands: run, create, start, stop, kill, restart, rm, ps, logs, attach, wait,
inspect, top, stats, cp, pause, unpause, rename, commit, diff, export, prune, update.

Each is an API client only, and prints what the docker CLI prints. ``run`` is the hot path: it
imports runopts, the HTTP client and attachio, and makes the fewest round trips that keep
docker's guarantees (create; attach before start so no output is missed; the wait request sent
before start so a quick exit is not missed; start; then the stream and the wait's answer).
"""

from __future__ import annotations

import os
import sys

from berth import fastjson

from .client import APIError, quote
from .common import Spec, confirm, print_inspected, prune_call, prune_report
from .flags import Flag, UsageError

RUN_USAGE = "berth run [OPTIONS] IMAGE [COMMAND] [ARG...]"
CREATE_USAGE = "berth create [OPTIONS] IMAGE [COMMAND] [ARG...]"


# ------------------------------------------------------------------ helpers

def _die_run(ctx, cmd: str, message: str, status: int = 125) -> int:
    ctx.err.write(f"berth: {message}\n\nRun 'berth {cmd} --help' for more information\n")
    return status


def _flag_error(ctx, usage: str, cmd: str, message: str) -> int:
    ctx.err.write(f"{message}\n\nUsage:  {usage}\n\nRun 'berth {cmd} --help' for more "
                  "information\n")
    return 125


def _status_for_start_error(message: str) -> int:
    """The docker CLI's exit code for a failed start (125 daemon, 126 cannot run, 127 none)."""
    if "executable file not found" in message or "no such file or directory" in message \
            or "system cannot find the file specified" in message:
        return 127
    if "permission denied" in message or "is a directory" in message:
        return 126
    return 125


def _send_only(client, method: str, path: str, query: dict | None = None):
    """Send a request and leave its answer unread on the socket (read it with _read_answer)."""
    from .client import API_PREFIX, urlencode

    target = API_PREFIX + quote(path)
    if query:
        target += "?" + urlencode(query)
    s = client._connect()
    s.sendall(f"{method} {target} HTTP/1.1\r\nHost: api.moby.localhost\r\n"
              "User-Agent: berth-cli/0.1\r\nContent-Length: 0\r\n\r\n".encode())
    return s


def _read_answer(client, s):
    r = client._read_head(s)
    try:
        if r.status >= 400:
            raise APIError(r.status, r.error_message())
        return r.json()
    finally:
        r.close()


def _names(ctx, argv_names, fn, verb_error: str | None = None) -> int:
    """Run ``fn(name)`` for each name; print the name on success, the error otherwise."""
    failed = []
    for n in argv_names:
        try:
            fn(n)
            ctx.out.write(n + "\n")
        except APIError as e:
            ctx.err.write(f"Error response from daemon: {e.message}\n")
            failed.append(n)
    if failed and verb_error:
        ctx.err.write(f"Error: failed to {verb_error} containers: {', '.join(failed)}\n")
    return 1 if failed else 0


# ------------------------------------------------------------------ create / run

def _create_flags(run: bool) -> list[Flag]:
    from . import runopts

    return runopts.CREATE_FLAGS + (runopts.RUN_ONLY_FLAGS if run else [])


def _create(ctx, body: dict, side: dict, cmd: str) -> str:
    query = {"name": side["name"] or None}
    if side.get("platform"):
        query["platform"] = side["platform"]
    image = body["Image"]
    if side["pull"] == "always":
        _pull(ctx, image, side["quiet"])
    try:
        res = ctx.client.call("POST", "/containers/create", query, json=body)
    except APIError as e:
        if e.status != 404 or side["pull"] == "never" or "image" not in e.message.lower():
            raise
        ref = image if (":" in image.rpartition("/")[2] or "@" in image) else image + ":latest"
        ctx.err.write(f"Unable to find image '{ref}' locally\n")
        _pull(ctx, image, side["quiet"])
        res = ctx.client.call("POST", "/containers/create", query, json=body)
    for w in res.get("Warnings") or []:
        ctx.err.write(f"WARNING: {w}\n")
    if side.get("cidfile"):
        with open(side["cidfile"], "w") as f:
            f.write(res["Id"])
    return res["Id"]


def _pull(ctx, image: str, quiet: bool) -> None:
    from .common import stream_json

    name, _, tag = image.rpartition(":") if ":" in image.rpartition("/")[2] else (image, "", "")
    r = ctx.client.request("POST", "/images/create",
                           {"fromImage": name or image, "tag": tag or "latest"})
    if r.status >= 400:
        raise APIError(r.status, r.error_message())
    if stream_json(ctx, r, quiet) != 0:
        raise APIError(500, "pull failed")


def _prepare(ctx, argv, run: bool):
    from . import runopts

    usage = RUN_USAGE if run else CREATE_USAGE
    cmd = "run" if run else "create"
    spec = Spec(usage, "Create and run a new container from an image" if run else
                "Create a new container", _create_flags(run), 1, None, interspersed=False)
    try:
        parsed = spec.parse(ctx, argv)
    except runopts.FlagError as e:
        return _flag_error(ctx, usage, cmd, e.message)
    except UsageError as e:
        if e.status == 125:
            return _flag_error(ctx, usage, cmd, e.message)
        raise
    if parsed is None:
        return 0
    opts, args = parsed
    try:
        body, side = runopts.build(opts, args)
    except runopts.FlagError as e:
        return _flag_error(ctx, usage, cmd, e.message)
    except runopts.RunError as e:
        return _die_run(ctx, cmd, e.message)
    if side.get("cidfile") and os.path.exists(side["cidfile"]):
        return _die_run(ctx, cmd, f"container ID file found, make sure the other container "
                                  f"isn't running or delete {side['cidfile']}")
    return opts, body, side


def create(ctx, argv) -> int:
    p = _prepare(ctx, argv, run=False)
    if isinstance(p, int):
        return p
    _opts, body, side = p
    try:
        cid = _create(ctx, body, side, "create")
    except APIError as e:
        return _die_run(ctx, "create", f"Error response from daemon: {e.message}")
    ctx.out.write(cid + "\n")
    return 0


def run(ctx, argv) -> int:
    p = _prepare(ctx, argv, run=True)
    if isinstance(p, int):
        return p
    opts, body, side = p
    detach = opts["detach"]
    if detach:
        if side["attach"]:
            ctx.err.write("conflicting options: cannot specify both --attach and --detach\n")
            return 1
        body["AttachStdin"] = body["AttachStdout"] = body["AttachStderr"] = False
        body["StdinOnce"] = False
    tty = bool(body.get("Tty"))
    if not detach and body["AttachStdin"] and tty and not os.isatty(0):
        ctx.err.write("the input device is not a TTY\n")
        return 1
    try:
        cid = _create(ctx, body, side, "run")
    except APIError as e:
        return _die_run(ctx, "run", f"Error response from daemon: {e.message}")
    client = ctx.client
    auto_remove = bool(body["HostConfig"].get("AutoRemove"))
    if detach:
        try:
            client.call("POST", f"/containers/{cid}/start")
        except APIError as e:
            return _die_run(ctx, "run", f"Error response from daemon: {e.message}",
                            _status_for_start_error(e.message))
        ctx.out.write(cid + "\n")
        return 0
    attach_in = bool(body["AttachStdin"])
    q = {"stream": "1", "stdin": "1" if attach_in else None,
         "stdout": "1" if body["AttachStdout"] else None,
         "stderr": "1" if body["AttachStderr"] else None}
    if opts.get("detach_keys"):
        q["detachKeys"] = opts["detach_keys"]
    att = client.request("POST", f"/containers/{cid}/attach", q, upgrade=True)
    if att.status >= 400:
        msg = att.error_message()
        att.close()
        return _die_run(ctx, "run", f"Error response from daemon: {msg}")
    waiter = _send_only(client, "POST", f"/containers/{cid}/wait",
                        {"condition": "removed" if auto_remove else "next-exit"})
    try:
        client.call("POST", f"/containers/{cid}/start")
    except APIError as e:
        att.close()
        if auto_remove:
            try:
                _read_answer(client, waiter)
            except (APIError, OSError):
                pass
        waiter.close()
        return _die_run(ctx, "run", f"Error response from daemon: {e.message}",
                        _status_for_start_error(e.message))
    return _attached(ctx, client, cid, att, waiter, tty, attach_in, opts.get("sig_proxy", True))


def _attached(ctx, client, cid: str, att, waiter, tty: bool, stdin: bool,
              sig_proxy: bool) -> int:
    from .attachio import raw_terminal, stream

    restore = raw_terminal(0) if tty and stdin else (lambda: None)
    old_handlers = {}
    if tty:
        _resize(client, f"/containers/{cid}/resize")
        old_handlers[28] = _on_winch(client, f"/containers/{cid}/resize")
    elif sig_proxy:
        old_handlers.update(_proxy_signals(client, cid))
    try:
        stream(att.sock, att._buf, tty, stdin)
    finally:
        restore()
        _restore_signals(old_handlers)
        att.close()
    try:
        res = _read_answer(client, waiter)
    except (APIError, OSError) as e:
        ctx.err.write(f"Error response from daemon: {e}\n")
        return 125
    finally:
        waiter.close()
    if res and res.get("Error") and res["Error"].get("Message"):
        ctx.err.write(f"berth: {res['Error']['Message']}\n")
    return int((res or {}).get("StatusCode", 0))


def _resize(client, path: str) -> None:
    from .attachio import terminal_size

    sz = terminal_size(1) or terminal_size(0)
    if sz is None:
        return
    try:
        client.call("POST", path, {"h": sz[0], "w": sz[1]})
    except (APIError, OSError):
        pass


def _on_winch(client, path: str):
    import _signal  # not signal: it imports enum (~5 ms on the hot path of run)

    return _signal.signal(_signal.SIGWINCH, lambda *_: _resize(client, path))


def _proxy_signals(client, cid: str) -> dict:
    """docker run's --sig-proxy: signals to the CLI go to the container."""
    import _signal as signal

    old = {}

    def fwd(sig, _frame):
        try:
            client.call("POST", f"/containers/{cid}/kill", {"signal": str(sig)})
        except (APIError, OSError):
            pass

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
              signal.SIGUSR2):
        old[s] = signal.signal(s, fwd)
    return old


def _restore_signals(old: dict) -> None:
    if not old:
        return
    import _signal as signal

    for s, h in old.items():
        signal.signal(s, h if h is not None else signal.SIG_DFL)


# ------------------------------------------------------------------ lifecycle

def start(ctx, argv) -> int:
    spec = Spec("berth start [OPTIONS] CONTAINER [CONTAINER...]", "Start one or more stopped "
                "containers", [
                    Flag("-a,--attach", help="Attach STDOUT/STDERR and forward signals"),
                    Flag("--detach-keys", "str", help="Override the key sequence for detaching "
                         "a container"),
                    Flag("-i,--interactive", help="Attach container's STDIN"),
                ], 1)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, names = parsed
    client = ctx.client
    if opts["attach"] or opts["interactive"]:
        if len(names) > 1:
            ctx.err.write("you cannot start and attach multiple containers at once\n")
            return 1
        c = client.get_json(f"/containers/{names[0]}/json")
        tty = bool(c["Config"].get("Tty"))
        stdin = opts["interactive"] and bool(c["Config"].get("OpenStdin"))
        q = {"stream": "1", "stdout": "1", "stderr": "1", "stdin": "1" if stdin else None}
        if opts["detach_keys"]:
            q["detachKeys"] = opts["detach_keys"]
        att = client.request("POST", f"/containers/{c['Id']}/attach", q, upgrade=True)
        if att.status >= 400:
            raise APIError(att.status, att.error_message())
        waiter = _send_only(client, "POST", f"/containers/{c['Id']}/wait",
                            {"condition": "next-exit"})
        try:
            client.call("POST", f"/containers/{c['Id']}/start")
        except APIError:
            att.close()
            waiter.close()
            raise
        return _attached(ctx, client, c["Id"], att, waiter, tty, stdin, True)
    return _names(ctx, names, lambda n: client.call("POST", f"/containers/{n}/start"),
                  "start")


def _each(ctx, argv, usage: str, description: str, flags: list[Flag], action: str,
          query) -> int:
    """A command that POSTs ``/containers/{name}/{action}`` for each name it is given."""
    parsed = Spec(usage, description, flags, 1).parse(ctx, argv)
    if parsed is None:
        return 0
    opts, names = parsed
    q = query(opts)
    return _names(ctx, names, lambda n: ctx.client.call("POST", f"/containers/{n}/{action}", q))


_STOP_FLAGS = [
    Flag("-s,--signal", "str", help="Signal to send to the container"),
    Flag("-t,--timeout,--time", "str", help="Seconds to wait before killing the container",
         metavar="int"),
]


def stop(ctx, argv) -> int:
    return _each(ctx, argv, "berth stop [OPTIONS] CONTAINER [CONTAINER...]",
                 "Stop one or more running containers", _STOP_FLAGS, "stop",
                 lambda o: {"t": o["timeout"] or None, "signal": o["signal"] or None})


def restart(ctx, argv) -> int:
    return _each(ctx, argv, "berth restart [OPTIONS] CONTAINER [CONTAINER...]",
                 "Restart one or more containers", _STOP_FLAGS, "restart",
                 lambda o: {"t": o["timeout"] or None, "signal": o["signal"] or None})


def kill(ctx, argv) -> int:
    return _each(ctx, argv, "berth kill [OPTIONS] CONTAINER [CONTAINER...]",
                 "Kill one or more running containers",
                 [Flag("-s,--signal", "str", help="Signal to send to the container")], "kill",
                 lambda o: {"signal": o["signal"] or None})


def rm(ctx, argv) -> int:
    spec = Spec("berth rm [OPTIONS] CONTAINER [CONTAINER...]", "Remove one or more containers", [
        Flag("-f,--force", help="Force the removal of a running container (uses SIGKILL)"),
        Flag("-l,--link", help="Remove the specified link"),
        Flag("-v,--volumes", help="Remove anonymous volumes associated with the container"),
    ], 1)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, names = parsed
    q = {"force": "1" if opts["force"] else None, "v": "1" if opts["volumes"] else None,
         "link": "1" if opts["link"] else None}
    return _names(ctx, names, lambda n: ctx.client.call("DELETE", f"/containers/{n}", q))


def pause(ctx, argv) -> int:
    return _each(ctx, argv, "berth pause CONTAINER [CONTAINER...]",
                 "Pause all processes within one or more containers", [], "pause",
                 lambda o: None)


def unpause(ctx, argv) -> int:
    return _each(ctx, argv, "berth unpause CONTAINER [CONTAINER...]",
                 "Unpause all processes within one or more containers", [], "unpause",
                 lambda o: None)


def rename(ctx, argv) -> int:
    spec = Spec("berth rename CONTAINER NEW_NAME", "Rename a container", [], 2, 2)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    old, new = parsed[1]
    ctx.client.call("POST", f"/containers/{old}/rename", {"name": new})
    return 0


def wait(ctx, argv) -> int:
    spec = Spec("berth wait CONTAINER [CONTAINER...]", "Block until one or more containers "
                "stop, then print their exit codes", [], 1)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    status = 0
    for n in parsed[1]:
        try:
            res = ctx.client.call("POST", f"/containers/{n}/wait")
            ctx.out.write(f"{res.get('StatusCode', 0)}\n")
            ctx.out.flush()
        except APIError as e:
            ctx.err.write(f"Error response from daemon: {e.message}\n")
            status = 1
    return status


def update(ctx, argv) -> int:
    from . import runopts

    spec = Spec("berth update [OPTIONS] CONTAINER [CONTAINER...]", "Update configuration of one "
                "or more containers", [
                    Flag("--restart", "str", help="Restart policy to apply when a container "
                         "exits"),
                    Flag("-m,--memory", "str", help="Memory limit", metavar="bytes"),
                    Flag("--memory-swap", "str", help="Swap limit", metavar="bytes"),
                    Flag("--cpus", "str", help="Number of CPUs", metavar="decimal"),
                    Flag("-c,--cpu-shares", "str", help="CPU shares", metavar="int"),
                    Flag("--pids-limit", "str", help="Tune container pids limit",
                         metavar="int"),
                ], 1)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, names = parsed
    body: dict = {}
    try:
        if opts["restart"]:
            body["RestartPolicy"] = runopts.parse_restart(opts["restart"])
        if opts["memory"]:
            body["Memory"] = runopts.ram_in_bytes(opts["memory"])
        if opts["memory_swap"]:
            body["MemorySwap"] = -1 if opts["memory_swap"] == "-1" else \
                runopts.ram_in_bytes(opts["memory_swap"])
        if opts["cpus"]:
            body["NanoCpus"] = runopts.parse_cpus(opts["cpus"])
        if opts["cpu_shares"]:
            body["CpuShares"] = runopts.parse_int(opts["cpu_shares"])
        if opts["pids_limit"]:
            body["PidsLimit"] = runopts.parse_int(opts["pids_limit"])
    except ValueError as e:
        raise UsageError(f"invalid argument: {e}") from None
    return _names(ctx, names, lambda n: ctx.client.call("POST", f"/containers/{n}/update",
                                                        json=body), "update")


# ------------------------------------------------------------------ ps

PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
              "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS",
              "State": "STATE", "Status": "STATUS", "Size": "SIZE", "Names": "NAMES",
              "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
              "LocalVolumes": "LOCAL VOLUMES"}


def _go_quote(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _ellipsis(s: str, n: int) -> str:
    if len(s) <= n:
        return s
    return s[:n - 1] + "…"


def format_ports(ports: list[dict]) -> str:
    out = []
    for p in sorted(ports, key=lambda x: (x.get("PrivatePort", 0), x.get("Type", ""))):
        if p.get("PublicPort"):
            out.append(f"{p.get('IP', '0.0.0.0')}:{p['PublicPort']}->{p['PrivatePort']}/"
                       f"{p['Type']}")
        else:
            out.append(f"{p['PrivatePort']}/{p['Type']}")
    return ", ".join(out)


def ps_rows(conts: list[dict], no_trunc: bool) -> list[dict]:
    import time

    from .format import human_duration, human_size

    rows = []
    now = time.time()
    for c in conts:
        cmd = c.get("Command", "")
        cmd = _go_quote(cmd if no_trunc else _ellipsis(cmd, 20))
        names = [n.lstrip("/") for n in c.get("Names") or []]
        size = ""
        if "SizeRw" in c:
            size = f"{human_size(c.get('SizeRw', 0))} (virtual " \
                   f"{human_size(c.get('SizeRootFs', 0))})"
        labels = c.get("Labels") or {}
        rows.append({
            "ID": c["Id"] if no_trunc else c["Id"][:12], "Image": c.get("Image", ""),
            "Command": cmd,
            "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC",
                                       time.gmtime(c.get("Created", 0))),
            "RunningFor": human_duration(now - c.get("Created", 0)) + " ago",
            "Ports": format_ports(c.get("Ports") or []), "State": c.get("State", ""),
            "Status": c.get("Status", ""), "Size": size, "Names": ",".join(names),
            "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
            "Mounts": ",".join(m.get("Name") or m.get("Source", "")
                               for m in c.get("Mounts") or []),
            "Networks": ",".join(sorted((c.get("NetworkSettings") or {}).get("Networks")
                                        or {})),
            "LocalVolumes": str(sum(1 for m in c.get("Mounts") or []
                                    if m.get("Type") == "volume")),
        })
    return rows


def ps(ctx, argv) -> int:
    from .format import render
    from .system import parse_filter_flags

    spec = Spec("berth ps [OPTIONS]", "List containers", [
        Flag("-a,--all", help="Show all containers (default shows just running)"),
        Flag("-f,--filter", "list", help="Filter output based on conditions provided"),
        Flag("--format", "str", help="Format output using a custom template"),
        Flag("-n,--last", "str", default="-1", help="Show n last created containers (includes "
             "all states)", metavar="int"),
        Flag("-l,--latest", help="Show the latest created container (includes all states)"),
        Flag("--no-trunc", help="Don't truncate output"),
        Flag("-q,--quiet", help="Only display container IDs"),
        Flag("-s,--size", help="Display total file sizes"),
    ], 0, 0)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, _ = parsed
    filters = parse_filter_flags(opts["filter"])
    limit = 1 if opts["latest"] else int(opts["last"] or -1)
    q = {"all": "1" if opts["all"] else None, "size": "1" if opts["size"] else None,
         "limit": str(limit) if limit > 0 else None}
    if filters:
        q["filters"] = fastjson.dumps(filters)
    conts = ctx.client.get_json("/containers/json", q) or []
    rows = ps_rows(conts, opts["no_trunc"])
    fmt = opts["format"]
    if opts["quiet"]:
        fmt = "{{.ID}}"
    elif not fmt or fmt == "table":
        fmt = ("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t"
               "{{.Ports}}\t{{.Names}}" + ("\t{{.Size}}" if opts["size"] else ""))
    elif fmt == "json":
        fmt = "{{json .}}"
    ctx.out.write(render(fmt, rows, PS_HEADERS))
    return 0


# ------------------------------------------------------------------ inspect

def inspect(ctx, argv, kind: str = "container") -> int:
    usage = "berth inspect [OPTIONS] NAME|ID [NAME|ID...]" if kind == "any" else \
        "berth container inspect [OPTIONS] CONTAINER [CONTAINER...]"
    spec = Spec(usage, "Return low-level information on objects", [
        Flag("-f,--format", "str", help="Format output using a custom template"),
        Flag("-s,--size", help="Display total file sizes"),
        Flag("--type", "str", help="Return JSON for specified type"),
    ], 1)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, names = parsed
    found, status = [], 0
    want = opts["type"] or ("container" if kind == "container" else "")
    for n in names:
        obj = None
        tried = []
        for t in ([want] if want else ["container", "image", "volume", "network"]):
            path = {"container": f"/containers/{n}/json", "image": f"/images/{n}/json",
                    "volume": f"/volumes/{n}", "network": f"/networks/{n}"}.get(t)
            if path is None:
                ctx.err.write(f'"{want}" is not a valid value for --type\n')
                return 1
            try:
                obj = ctx.client.get_json(path, {"size": "1" if opts["size"] else None}
                                          if t == "container" else None)
                break
            except APIError as e:
                tried.append(e)
                if e.status != 404:
                    break
        if obj is None:
            status = 1
            e = tried[-1] if tried else None
            if e is not None and e.status != 404:
                ctx.err.write(f"Error response from daemon: {e.message}\n")
            elif kind == "container" or want == "container":
                ctx.err.write(f"Error: No such container: {n}\n")
            else:
                ctx.err.write(f"Error: No such object: {n}\n")
            continue
        found.append(obj)
    print_inspected(ctx, opts["format"], found)
    return status


def inspect_any(ctx, argv) -> int:
    return inspect(ctx, argv, kind="any")


# ------------------------------------------------------------------ logs, attach

def logs(ctx, argv) -> int:
    spec = Spec("berth logs [OPTIONS] CONTAINER", "Fetch the logs of a container", [
        Flag("--details", help="Show extra details provided to logs"),
        Flag("-f,--follow", help="Follow log output"),
        Flag("--since", "str", help="Show logs since timestamp or relative (e.g. 42m)"),
        Flag("-n,--tail", "str", default="all", help="Number of lines to show from the end of "
             "the logs"),
        Flag("-t,--timestamps", help="Show timestamps"),
        Flag("--until", "str", help="Show logs before a timestamp or relative"),
    ], 1, 1)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, (name,) = parsed
    c = ctx.client.get_json(f"/containers/{name}/json")
    q = {"stdout": "1", "stderr": "1", "follow": "1" if opts["follow"] else None,
         "timestamps": "1" if opts["timestamps"] else None, "tail": opts["tail"] or "all",
         "since": _rel_time(opts["since"]), "until": _rel_time(opts["until"])}
    r = ctx.client.request("GET", f"/containers/{c['Id']}/logs", q)
    if r.status >= 400:
        raise APIError(r.status, r.error_message())
    from .attachio import Demux, _write_all

    demux = None if c["Config"].get("Tty") else Demux()
    try:
        while True:
            chunk = r.read_chunk()
            if not chunk:
                break
            if demux is None:
                _write_all(1, chunk)
            else:
                demux.feed(chunk)
    finally:
        r.close()
    return 0


def _rel_time(v: str) -> str | None:
    """docker's --since/--until: a duration (10m) is relative to now; else sent as given."""
    if not v:
        return None
    import time

    units = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    for u in sorted(units, key=len, reverse=True):
        if v.endswith(u):
            try:
                return f"{time.time() - float(v[:-len(u)]) * units[u]:.9f}"
            except ValueError:
                break
    return v


def attach(ctx, argv) -> int:
    spec = Spec("berth attach [OPTIONS] CONTAINER", "Attach local standard input, output, and "
                "error streams to a running container", [
                    Flag("--detach-keys", "str", help="Override the key sequence for detaching "
                         "a container"),
                    Flag("--no-stdin", help="Do not attach STDIN"),
                    Flag("--sig-proxy", "bool", default=True, help="Proxy all received signals "
                         "to the process (default true)"),
                ], 1, 1)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, (name,) = parsed
    client = ctx.client
    c = client.get_json(f"/containers/{name}/json")
    if not c["State"]["Running"]:
        ctx.err.write("You cannot attach to a stopped container, start it first\n")
        return 1
    if c["State"]["Paused"]:
        ctx.err.write("You cannot attach to a paused container, unpause it first\n")
        return 1
    tty = bool(c["Config"].get("Tty"))
    stdin = not opts["no_stdin"] and bool(c["Config"].get("OpenStdin"))
    if stdin and tty and not os.isatty(0):
        ctx.err.write("the input device is not a TTY\n")
        return 1
    q = {"stream": "1", "stdout": "1", "stderr": "1", "stdin": "1" if stdin else None}
    if opts["detach_keys"]:
        q["detachKeys"] = opts["detach_keys"]
    att = client.request("POST", f"/containers/{c['Id']}/attach", q, upgrade=True)
    if att.status >= 400:
        raise APIError(att.status, att.error_message())
    waiter = _send_only(client, "POST", f"/containers/{c['Id']}/wait",
                        {"condition": "not-running"})
    from .attachio import raw_terminal, stream

    restore = raw_terminal(0) if tty and stdin else (lambda: None)
    old = {}
    if tty:
        _resize(client, f"/containers/{c['Id']}/resize")
        old[28] = _on_winch(client, f"/containers/{c['Id']}/resize")
    elif opts["sig_proxy"]:
        old.update(_proxy_signals(client, c["Id"]))
    try:
        stream(att.sock, att._buf, tty, stdin)
    finally:
        restore()
        _restore_signals(old)
        att.close()
    # detached (the stream ended with the container still running): exit 0 at once
    try:
        st = client.get_json(f"/containers/{c['Id']}/json")
        if st["State"]["Running"]:
            waiter.close()
            return 0
    except APIError:
        pass
    try:
        res = _read_answer(client, waiter)
        return int((res or {}).get("StatusCode", 0))
    except (APIError, OSError):
        return 0
    finally:
        waiter.close()


# ------------------------------------------------------------------ top, stats

def top(ctx, argv) -> int:
    from .format import tabwrite

    spec = Spec("berth top CONTAINER [ps OPTIONS]", "Display the running processes of a "
                "container", [], 1, None, interspersed=False)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    _opts, args = parsed
    q = {"ps_args": " ".join(args[1:])} if len(args) > 1 else None
    res = ctx.client.get_json(f"/containers/{args[0]}/top", q)
    lines = ["\t".join(res.get("Titles") or [])]
    lines += ["\t".join(p) for p in res.get("Processes") or []]
    ctx.out.write(tabwrite(lines, minwidth=20, padding=3))
    return 0


def _bytes_size(n: float) -> str:
    """go-units BytesSize: binary units, 4 significant digits (docker stats' memory)."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:.4g}{units[i]}"


def stats_row(s: dict, prev: dict | None, no_trunc: bool) -> dict:
    from .format import human_size

    cpu = s.get("cpu_stats") or {}
    pre = s.get("precpu_stats") or {}
    if prev is not None:
        pre = prev.get("cpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - \
        (pre.get("cpu_usage") or {}).get("total_usage", 0)
    sys_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage")
                                           or []) or 1
    cpu_pct = cpu_delta / sys_delta * online * 100.0 if sys_delta > 0 and cpu_delta > 0 \
        else 0.0
    mem = s.get("memory_stats") or {}
    st = mem.get("stats") or {}
    usage = mem.get("usage", 0)
    if "total_inactive_file" in st and st["total_inactive_file"] < usage:
        usage -= st["total_inactive_file"]
    elif "inactive_file" in st and st["inactive_file"] < usage:
        usage -= st["inactive_file"]
    limit = mem.get("limit", 0)
    mem_pct = usage / limit * 100.0 if limit else 0.0
    rx = sum(n.get("rx_bytes", 0) for n in (s.get("networks") or {}).values())
    tx = sum(n.get("tx_bytes", 0) for n in (s.get("networks") or {}).values())
    rd = wr = 0
    for e in (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = e.get("op", "").lower()
        if op == "read":
            rd += e.get("value", 0)
        elif op == "write":
            wr += e.get("value", 0)
    # a stopped container's sample is all zeros, and docker shows it as zeros ("--" is only
    # for a sample the CLI could not read)
    cid = s.get("id", "")
    return {"ID": cid if no_trunc else cid[:12], "Container": cid if no_trunc else cid[:12],
            "Name": (s.get("name") or "").lstrip("/"),
            "CPUPerc": f"{cpu_pct:.2f}%",
            "MemUsage": f"{_bytes_size(usage)} / {_bytes_size(limit)}",
            "MemPerc": f"{mem_pct:.2f}%",
            "NetIO": f"{human_size(rx)} / {human_size(tx)}",
            "BlockIO": f"{human_size(rd)} / {human_size(wr)}",
            "PIDs": str((s.get("pids_stats") or {}).get("current", 0))}


STATS_HEADERS = {"ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME",
                 "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %",
                 "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}
STATS_TABLE = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t"
               "{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}")


def stats(ctx, argv) -> int:
    from .format import render

    spec = Spec("berth stats [OPTIONS] [CONTAINER...]", "Display a live stream of container(s) "
                "resource usage statistics", [
                    Flag("-a,--all", help="Show all containers (default shows just running)"),
                    Flag("--format", "str", help="Format output using a custom template"),
                    Flag("--no-stream", help="Disable streaming stats and only pull the first "
                         "result"),
                    Flag("--no-trunc", help="Do not truncate output"),
                ], 0)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, names = parsed
    client = ctx.client
    if not names:
        conts = client.get_json("/containers/json", {"all": "1" if opts["all"] else None})
        names = [c["Id"] for c in conts or []]
    fmt = opts["format"] or STATS_TABLE
    if fmt == "json":
        fmt = "{{json .}}"
    if opts["no_stream"]:
        rows = []
        for n in names:
            try:
                s = client.get_json(f"/containers/{n}/stats", {"stream": "0"})
            except APIError as e:
                ctx.err.write(f"Error response from daemon: {e.message}\n")
                return 1
            rows.append(stats_row(s, None, opts["no_trunc"]))
        ctx.out.write(render(fmt, rows, STATS_HEADERS))
        return 0
    import time

    streams = {}
    last: dict[str, dict] = {}
    for n in names:
        r = client.request("GET", f"/containers/{n}/stats", {"stream": "1"})
        if r.status >= 400:
            raise APIError(r.status, r.error_message())
        streams[n] = r.lines()
    try:
        while True:
            rows = []
            for n, it in list(streams.items()):
                try:
                    s = fastjson.loads(next(it))
                except StopIteration:
                    del streams[n]
                    continue
                rows.append(stats_row(s, None, opts["no_trunc"]))
                last[n] = s
            if not streams:
                return 0
            if sys.stdout.isatty():
                ctx.out.write("\033[2J\033[H")
            ctx.out.write(render(fmt, rows, STATS_HEADERS))
            ctx.out.flush()
            time.sleep(0)
    except KeyboardInterrupt:
        return 0


# ------------------------------------------------------------------ cp

def _split_cp(arg: str) -> tuple[str | None, str]:
    """docker's splitCpArg: an absolute path, no colon, or a first part starting with "."
    is local."""
    if arg.startswith("/"):
        return None, arg
    ctr, sep, path = arg.partition(":")
    if not sep or ctr.startswith("."):
        return None, arg
    return ctr, path


def cp(ctx, argv) -> int:
    spec = Spec("berth cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n\tberth cp [OPTIONS] "
                "SRC_PATH|- CONTAINER:DEST_PATH", "Copy files/folders between a container and "
                "the local filesystem", [
                    Flag("-a,--archive", help="Archive mode (copy all uid/gid information)"),
                    Flag("-L,--follow-link", help="Always follow symbol link in SRC_PATH"),
                    Flag("-q,--quiet", help="Suppress progress output during copy"),
                ], 2, 2)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, (src, dst) = parsed
    sc, sp = _split_cp(src)
    dc, dp = _split_cp(dst)
    if not sp:
        ctx.err.write("source can not be empty\n")
        return 1
    if not dp:
        ctx.err.write("destination can not be empty\n")
        return 1
    if sc and dc:
        ctx.err.write("copying between containers is not supported\n")
        return 1
    if not sc and not dc:
        ctx.err.write("must specify at least one container source\n")
        return 1
    from . import cpio

    if sc:
        return cpio.from_container(ctx, sc, sp, dp, opts["follow_link"])
    return cpio.to_container(ctx, sp, dc, dp, opts["archive"], opts["follow_link"])


# ------------------------------------------------------------------ layers

def diff(ctx, argv) -> int:
    spec = Spec("berth diff CONTAINER", "Inspect changes to files or directories on a "
                "container's filesystem", [], 1, 1)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    res = ctx.client.get_json(f"/containers/{parsed[1][0]}/changes") or []
    for ch in res:
        ctx.out.write(f"{'CAD'[ch['Kind']]} {ch['Path']}\n")
    return 0


def export(ctx, argv) -> int:
    spec = Spec("berth export [OPTIONS] CONTAINER", "Export a container's filesystem as a tar "
                "archive", [Flag("-o,--output", "str", help="Write to a file, instead of "
                                 "STDOUT")], 1, 1)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, (name,) = parsed
    if not opts["output"] and os.isatty(1):
        ctx.err.write("cowardly refusing to save to a terminal. Use the -o flag or redirect\n")
        return 1
    r = ctx.client.request("GET", f"/containers/{name}/export")
    if r.status >= 400:
        raise APIError(r.status, r.error_message())
    fd = os.open(opts["output"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644) \
        if opts["output"] else 1
    from .attachio import _write_all

    try:
        while True:
            chunk = r.read_chunk()
            if not chunk:
                break
            _write_all(fd, chunk)
    finally:
        r.close()
        if fd != 1:
            os.close(fd)
    return 0


def commit(ctx, argv) -> int:
    spec = Spec("berth commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]", "Create a new image from "
                "a container's changes", [
                    Flag("-a,--author", "str", help='Author (e.g., "John Hannibal Smith '
                         '<hannibal@a-team.com>")'),
                    Flag("-c,--change", "list", help="Apply Dockerfile instruction to the "
                         "created image"),
                    Flag("-m,--message", "str", help="Commit message"),
                    Flag("-p,--pause", "bool", default=True, help="Pause container during "
                         "commit (default true)"),
                ], 1, 2)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, args = parsed
    repo, tag = "", ""
    if len(args) == 2:
        ref = args[1]
        slash = ref.rfind("/")
        colon = ref.rfind(":")
        repo, tag = (ref[:colon], ref[colon + 1:]) if colon > slash else (ref, "")
    q = {"container": args[0], "repo": repo or None, "tag": tag or None,
         "comment": opts["message"] or None, "author": opts["author"] or None,
         "pause": "1" if opts["pause"] else "0"}
    path = "/commit"
    if opts["change"]:
        q["changes"] = "\n".join(opts["change"])
    res = ctx.client.call("POST", path, q, json={})
    ctx.out.write(res["Id"] + "\n")
    return 0


def prune(ctx, argv) -> int:
    from .system import parse_filter_flags

    spec = Spec("berth container prune [OPTIONS]", "Remove all stopped containers", [
        Flag("--filter", "list", help="Provide filter values (e.g. \"until=<timestamp>\")"),
        Flag("-f,--force", help="Do not prompt for confirmation"),
    ], 0, 0)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, _ = parsed
    if not opts["force"] and not confirm(ctx, "WARNING! This will remove all stopped "
                                              "containers."):
        return 0
    res = prune_call(ctx, "/containers/prune", parse_filter_flags(opts["filter"]))
    return prune_report(ctx, "Containers", res.get("ContainersDeleted"),
                        res.get("SpaceReclaimed", 0))


COMMANDS = {"run": run, "create": create, "start": start, "stop": stop, "restart": restart,
            "kill": kill, "rm": rm, "ps": ps, "inspect": inspect, "inspect_any": inspect_any,
            "logs": logs, "attach": attach, "wait": wait, "top": top, "stats": stats, "cp": cp,
            "pause": pause, "unpause": unpause, "rename": rename, "commit": commit,
            "diff": diff, "export": export, "prune": prune, "update": update}
