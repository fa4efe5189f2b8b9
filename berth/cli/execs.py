"""``berth exec``: run a command in a running container (-i, -t, -d, -e, -w, -u)."""

from __future__ import annotations

import os

from .client import APIError
from .common import Spec
from .flags import Flag


def exec_(ctx, argv) -> int:
    spec = Spec("berth exec [OPTIONS] CONTAINER COMMAND [ARG...]", "Execute a command in a "
                "running container", [
                    Flag("-d,--detach", help="Detached mode: run command in the background"),
                    Flag("--detach-keys", "str", help="Override the key sequence for detaching "
                         "a container"),
                    Flag("-e,--env", "list", help="Set environment variables"),
                    Flag("--env-file", "list", help="Read in a file of environment variables"),
                    Flag("-i,--interactive", help="Keep STDIN open even if not attached"),
                    Flag("--privileged", help="Give extended privileges to the command"),
                    Flag("-t,--tty", help="Allocate a pseudo-TTY"),
                    Flag("-u,--user", "str", help="Username or UID (format: "
                         '"<name|uid>[:<group|gid>]")'),
                    Flag("-w,--workdir", "str", help="Working directory inside the container"),
                ], 2, None, interspersed=False)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, args = parsed
    from . import runopts

    env = []
    try:
        for f in opts["env_file"]:
            env += runopts.parse_env_file(f)
        env += [runopts.env_value(e) for e in opts["env"]]
    except (runopts.RunError, ValueError) as e:
        ctx.err.write(f"{getattr(e, 'message', e)}\n")
        return 125
    name, cmd = args[0], args[1:]
    tty, stdin, detach = opts["tty"], opts["interactive"], opts["detach"]
    if tty and stdin and not detach and not os.isatty(0):
        ctx.err.write("the input device is not a TTY\n")
        return 1
    client = ctx.client
    body = {"User": opts["user"], "Privileged": opts["privileged"], "Tty": tty,
            "AttachStdin": stdin and not detach, "AttachStdout": not detach,
            "AttachStderr": not detach, "Detach": detach, "DetachKeys": opts["detach_keys"],
            "Env": env, "WorkingDir": opts["workdir"], "Cmd": cmd}
    if tty:
        from .attachio import terminal_size

        sz = terminal_size(1)
        if sz:
            body["ConsoleSize"] = [sz[0], sz[1]]
    try:
        res = client.call("POST", f"/containers/{name}/exec", json=body)
    except APIError as e:
        ctx.err.write(f"Error response from daemon: {e.message}\n")
        return 1 if e.status != 404 else 1
    xid = res["Id"]
    if detach:
        client.call("POST", f"/exec/{xid}/start", json={"Detach": True, "Tty": tty})
        return 0
    start = {"Detach": False, "Tty": tty}
    if body.get("ConsoleSize"):
        start["ConsoleSize"] = body["ConsoleSize"]
    r = client.request("POST", f"/exec/{xid}/start", json=start, upgrade=True)
    if r.status >= 400:
        msg = r.error_message()
        r.close()
        ctx.err.write(f"Error response from daemon: {msg}\n")
        return 126 if "permission denied" in msg else 127 if (
            "not found" in msg or "no such file" in msg) else 1
    from .attachio import raw_terminal, stream
    from .containers import _on_winch, _resize, _restore_signals

    restore = raw_terminal(0) if tty and stdin else (lambda: None)
    old = {}
    if tty:
        _resize(client, f"/exec/{xid}/resize")
        old[28] = _on_winch(client, f"/exec/{xid}/resize")
    try:
        stream(r.sock, r._buf, tty, stdin)
    finally:
        restore()
        _restore_signals(old)
        r.close()
    info = client.get_json(f"/exec/{xid}/json")
    code = info.get("ExitCode")
    for _ in range(200):
        if code is not None or not info.get("Running"):
            break
        import time

        time.sleep(0.01)
        info = client.get_json(f"/exec/{xid}/json")
        code = info.get("ExitCode")
    return int(code or 0)


COMMANDS = {"exec": exec_}
