"""The ``berth`` command: global flags, then one command group module, imported lazily.

    berth [-H HOST] [-D] COMMAND [ARGS...]

The host comes from ``-H``/``--host``, else ``BERTH_HOST`` (``DOCKER_HOST`` is not read: berth
and docker may run side by side), else ``unix:///run/berth/berth.sock``. Each command lives in
a module of this package that maps its names to functions ``fn(ctx, argv) -> int``
(``COMMANDS``); ``ROUTES`` below maps what the user types to (module, name). Errors print as
docker prints them: ``Error response from daemon: ...`` and exit 1; flag errors exit 125.

Hot path: this module imports only ``os``/``sys`` (already loaded) and the command's module.
"""

from __future__ import annotations

import os
import sys

DEFAULT_HOST = "unix:///run/berth/berth.sock"

# what the user types → (module in berth.cli, command name in that module's COMMANDS)
ROUTES: dict[tuple[str, ...], tuple[str, str]] = {
    ("version",): ("system", "version"),
    ("info",): ("system", "info"),
    ("events",): ("system", "events"),
    ("system", "info"): ("system", "info"),
    ("system", "events"): ("system", "events"),
    ("system", "df"): ("system", "df"),
    ("images",): ("images", "ls"),
    ("image", "ls"): ("images", "ls"),
    ("image", "list"): ("images", "ls"),
    ("tag",): ("images", "tag"),
    ("image", "tag"): ("images", "tag"),
    ("rmi",): ("images", "rm"),
    ("image", "rm"): ("images", "rm"),
    ("image", "remove"): ("images", "rm"),
    ("load",): ("images", "load"),
    ("image", "load"): ("images", "load"),
    ("save",): ("images", "save"),
    ("image", "save"): ("images", "save"),
    ("import",): ("images", "import"),
    ("image", "import"): ("images", "import"),
    ("history",): ("images", "history"),
    ("image", "history"): ("images", "history"),
    ("image", "inspect"): ("images", "inspect"),
    ("inspect",): ("containers", "inspect_any"),
    ("image", "prune"): ("images", "prune"),
    # registries (berth/cli/registry.py)
    ("pull",): ("registry", "pull"),
    ("image", "pull"): ("registry", "pull"),
    ("push",): ("registry", "push"),
    ("image", "push"): ("registry", "push"),
    ("login",): ("registry", "login"),
    ("logout",): ("registry", "logout"),
    ("registry",): ("registry", "registry"),
    # containers, exec, volumes (issue 4)
    **{(c,): ("containers", c) for c in (
        "run", "create", "start", "stop", "restart", "kill", "rm", "ps", "logs", "attach",
        "wait", "top", "stats", "cp", "pause", "unpause", "rename", "commit", "diff", "export",
        "update")},
    **{("container", c): ("containers", c) for c in (
        "run", "create", "start", "stop", "restart", "kill", "rm", "logs", "attach", "wait",
        "top", "stats", "cp", "pause", "unpause", "rename", "commit", "diff", "export", "prune",
        "inspect", "update")},
    ("container", "ls"): ("containers", "ps"),
    ("container", "list"): ("containers", "ps"),
    ("container", "ps"): ("containers", "ps"),
    ("container", "remove"): ("containers", "rm"),
    ("exec",): ("execs", "exec"),
    ("container", "exec"): ("execs", "exec"),
    **{("volume", c): ("volumes", c) for c in ("create", "ls", "inspect", "rm", "prune")},
    ("volume", "list"): ("volumes", "ls"),
    ("volume", "remove"): ("volumes", "rm"),
    # networks (issue 5)
    **{("network", c): ("networks", c) for c in (
        "create", "ls", "inspect", "rm", "prune", "connect", "disconnect")},
    ("network", "list"): ("networks", "ls"),
    ("network", "remove"): ("networks", "rm"),
    ("port",): ("ports", "port"),
    ("container", "port"): ("ports", "port"),
}

GROUPS = {"image": "Manage images", "system": "Manage berth", "container": "Manage containers",
          "volume": "Manage volumes", "network": "Manage networks"}


class Context:
    """What a command gets: the client (made on first use), output streams, global flags."""

    def __init__(self, host: str, debug: bool) -> None:
        self.host = host
        self.debug = debug
        self.out = sys.stdout
        self.err = sys.stderr
        self._client = None

    @property
    def client(self):
        if self._client is None:
            from .client import Client

            self._client = Client(self.host)
        return self._client


def _usage() -> str:
    names = sorted({k[0] for k in ROUTES})
    lines = ["", "Usage:  berth [OPTIONS] COMMAND", "",
             "A container engine that the Docker ecosystem drives unchanged", "",
             "Options:", "  -H, --host string   Daemon socket to connect to",
             "  -D, --debug         Enable debug mode", "  -v, --version       Print version",
             "", "Commands:"]
    lines += [f"  {n}" for n in names]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    host = os.environ.get("BERTH_HOST") or DEFAULT_HOST
    debug = False
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        a = argv[i]
        if a in ("-H", "--host"):
            if i + 1 >= len(argv):
                sys.stderr.write(f"flag needs an argument: {a}\n")
                return 125
            host = argv[i + 1]
            i += 2
        elif a.startswith("--host=") or a.startswith("-H="):
            host = a.split("=", 1)[1]
            i += 1
        elif a.startswith("-H") and len(a) > 2:
            host = a[2:]
            i += 1
        elif a in ("-D", "--debug"):
            debug = True
            i += 1
        elif a in ("-v", "--version"):
            from berth import __version__

            sys.stdout.write(f"berth version {__version__}\n")
            return 0
        elif a in ("-h", "--help"):
            sys.stdout.write(_usage())
            return 0
        elif a.startswith("--log-level") or a.startswith("-l"):
            i += 1 if "=" in a or len(a) > 2 and not a.startswith("--") else 2
        else:
            sys.stderr.write(f"unknown flag: {a}\nSee 'berth --help'.\n")
            return 125
    rest = argv[i:]
    if not rest:
        sys.stdout.write(_usage())
        return 0
    if host.startswith("/"):
        host = "unix://" + host
    route = None
    if len(rest) >= 2 and (rest[0], rest[1]) in ROUTES:
        route, args = ROUTES[(rest[0], rest[1])], rest[2:]
    elif (rest[0],) in ROUTES:
        route, args = ROUTES[(rest[0],)], rest[1:]
    if route is None:
        if rest[0] in GROUPS:
            subs = sorted(k[1] for k in ROUTES if len(k) == 2 and k[0] == rest[0])
            if len(rest) == 1 or rest[1] in ("-h", "--help"):
                sys.stdout.write(f"\nUsage:  berth {rest[0]} COMMAND\n\n{GROUPS[rest[0]]}\n\n"
                                 "Commands:\n" + "".join(f"  {s}\n" for s in subs))
                return 0
            sys.stderr.write(f"berth: '{rest[0]} {rest[1]}' is not a berth command.\n"
                             "See 'berth --help'\n")
            return 1
        sys.stderr.write(f"berth: '{rest[0]}' is not a berth command.\nSee 'berth --help'\n")
        return 1
    modname, name = route
    import importlib

    mod = importlib.import_module(f"berth.cli.{modname}")
    ctx = Context(host, debug)
    cmdline = " ".join(rest[:len(rest) - len(args)])
    return run_command(ctx, mod, name, args, cmdline)


def run_command(ctx: Context, mod, name: str, args: list[str], cmdline: str) -> int:
    from .client import APIError, ConnectError
    from .flags import CommandError, UsageError

    ctx.cmdline = cmdline
    try:
        return mod.COMMANDS[name](ctx, args) or 0
    except UsageError as e:
        if e.usage:
            ctx.err.write(f"{e.message}\n\nUsage:  {e.usage}\n\n"
                          f"{e.hint} 'berth {cmdline} --help' for more information\n")
        else:
            ctx.err.write(f"{e.message}\nSee 'berth {cmdline} --help'.\n")
        return e.status
    except APIError as e:
        ctx.err.write(f"Error response from daemon: {e.message}\n")
        return 1
    except CommandError as e:
        ctx.err.write(f"{e.prefix}{e.message}\n")
        return e.status
    except ConnectError as e:
        ctx.err.write(f"{e}\n")
        return 1
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
