"""`berth-runtime`: runc's command line over berth.runtime.container.

Arguments are parsed by hand (argparse costs ~6 ms per start, and `run` is a hot path): global
options first, then the command, its options, its positional arguments, as runc's urfave/cli
reads them (``--opt value`` or ``--opt=value``; options stop at the first positional argument).
Errors print one line on stderr (and to --log, as JSON with --log-format json, where containerd
reads them) and exit 1; `run` and `exec` in the foreground exit with the process's status.
"""

import os
import sys

from berth import fastjson
from berth.errors import BerthError

USAGE = """NAME:
   berth-runtime - an OCI runtime with runc's command line

USAGE:
   berth-runtime [--root DIR] [--log FILE] [--log-format text|json] [--debug] COMMAND ...
   berth-runtime COMMAND --help

COMMANDS (as runc's):
  create [--bundle B] [--console-socket S] [--pid-file P] [--no-pivot] [--preserve-fds N] ID
  start ID
  run [--bundle B] [--console-socket S] [--pid-file P] [--detach] [--keep] ID
  state ID
  kill [--all] ID [SIGNAL]
  delete [--force] ID
  exec [--process F | --tty --cwd D --env K=V --user U[:G] --cap C] [--detach]
       [--pid-file P] [--console-socket S] ID [COMMAND [ARG...]]
  ps [--format table|json] ID [PS_ARGS...]
  list [--format table|json] [--quiet]
  pause ID / resume ID
  update [--resources F|-] [--memory N] [--cpu-share N] [--cpu-quota N] ... ID
  events [--stats] [--interval 5s] ID
  spec [--bundle B] [--rootless]
  features
"""

# option name -> takes a value?  Aliases map to the long name.
_COMMON = {"--bundle": True, "-b": "--bundle", "--console-socket": True, "--pid-file": True,
           "--no-pivot": False, "--no-new-keyring": False, "--preserve-fds": True,
           "--detach": False, "-d": "--detach", "--keep": False, "--no-subreaper": False}
OPTIONS = {
    "create": _COMMON, "run": _COMMON, "start": {}, "state": {}, "pause": {}, "resume": {},
    "kill": {"--all": False, "-a": "--all"},
    "delete": {"--force": False, "-f": "--force"},
    "exec": {"--console-socket": True, "--cwd": True, "--env": "multi", "-e": "--env",
             "--tty": False, "-t": "--tty", "--user": True, "-u": "--user",
             "--additional-gids": "multi", "-g": "--additional-gids", "--process": True,
             "-p": "--process", "--detach": False, "-d": "--detach", "--pid-file": True,
             "--process-label": True, "--apparmor": True, "--no-new-privs": False,
             "--cap": "multi", "-c": "--cap", "--preserve-fds": True, "--ignore-paused": False,
             "--cgroup": "multi"},
    "ps": {"--format": True, "-f": "--format"},
    "list": {"--format": True, "-f": "--format", "--quiet": False, "-q": "--quiet"},
    "spec": {"--bundle": True, "-b": "--bundle", "--rootless": False},
    "update": {"--resources": True, "-r": "--resources", "--memory": True, "-m": "--memory",
               "--memory-swap": True, "--memory-reservation": True, "--kernel-memory": True,
               "--kernel-memory-tcp": True, "--cpu-share": True, "--cpu-shares": "--cpu-share",
               "--cpu-quota": True,
               "--cpu-period": True, "--cpu-rt-period": True, "--cpu-rt-runtime": True,
               "--cpuset-cpus": True, "--cpuset-mems": True, "--pids-limit": True,
               "--blkio-weight": True, "--l3-cache-schema": True, "--mem-bw-schema": True},
    "events": {"--stats": False, "--interval": True},
    "features": {},
}
OPTIONS["ls"] = OPTIONS["list"]
GLOBAL = {"--root": True, "--log": True, "--log-format": True, "--debug": False,
          "--systemd-cgroup": False, "--rootless": True, "--criu": True}


class UsageError(BerthError):
    pass


class NoSuchCommand(UsageError):
    pass


# command -> (what it does, its arguments, (min, max) positional arguments; None: no limit)
COMMANDS = {
    "create": ("create a container", "<container-id>", (1, 1)),
    "start": ("executes the user defined process in a created container", "<container-id>",
              (1, 1)),
    "run": ("create and run a container", "<container-id>", (1, 1)),
    "state": ("output the state of a container", "<container-id>", (1, 1)),
    "kill": ("send a signal (default: SIGTERM) to the container's init process",
             "<container-id> [signal]", (1, 2)),
    "delete": ("delete any resources held by the container", "<container-id>", (1, 1)),
    "exec": ("execute new process inside the container",
             "<container-id> <command> [command options]", (1, None)),
    "ps": ("ps displays the processes running inside a container",
           "<container-id> [ps options]", (1, None)),
    "list": ("lists containers started by berth-runtime with the given root", "", (0, 0)),
    "pause": ("pause suspends all processes inside the container", "<container-id>", (1, 1)),
    "resume": ("resumes all processes that have been previously paused", "<container-id>",
               (1, 1)),
    "update": ("update container resource constraints", "<container-id>", (1, 1)),
    "events": ("display container events such as OOM notifications and resource usage",
               "<container-id>", (1, 1)),
    "spec": ("create a new specification file", "", (0, 0)),
    "features": ("show the enabled features", "", (0, 0)),
}
COMMANDS["ls"] = COMMANDS["list"]


def command_help(cmd: str) -> str:
    """The command's help page, laid out as runc's (NAME, USAGE, OPTIONS)."""
    what, args, _n = COMMANDS[cmd]
    names: dict[str, list[str]] = {}
    for name, kind in OPTIONS[cmd].items():
        if isinstance(kind, str) and kind.startswith("-"):
            names.setdefault(kind, [kind]).append(name)
        else:
            names.setdefault(name, [name])
    lines = ["NAME:", f"   berth-runtime {cmd} - {what}", "", "USAGE:",
             f"   berth-runtime {cmd} [command options] {args}".rstrip()]
    if names:
        lines += ["", "OPTIONS:"]
        for long, al in names.items():
            value = " value" if OPTIONS[cmd][long] is not False else ""
            lines.append(f"   {', '.join(al)}{value}")
    return "\n".join(lines) + "\n"


def _check_args(cmd: str, args: list[str]) -> None:
    lo, hi = COMMANDS[cmd][2]
    if lo == hi and len(args) != lo:
        raise UsageError(f'"{cmd}" requires exactly {lo} argument(s)')
    if len(args) < lo:
        raise UsageError(f'"{cmd}" requires a minimum of {lo} argument(s)')
    if hi is not None and len(args) > hi:
        raise UsageError(f'"{cmd}" requires a maximum of {hi} argument(s)')


# runc's urfave/cli reorders a command's arguments so that options may follow the container
# id (`runc update ID --memory 1M`); exec and ps skip that, since what follows the id is the
# process's own command line.
NO_REORDER = {"exec", "ps"}


def parse(argv: list[str], table: dict, reorder: bool = False) -> tuple[dict, list[str]]:
    opts: dict = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            i += 1
            break
        if not a.startswith("-") or a == "-":
            if not reorder:
                break
            rest.append(a)
            i += 1
            continue
        name, eq, val = a.partition("=")
        kind = table.get(name)
        if isinstance(kind, str) and kind.startswith("-"):
            name, kind = kind, table[kind]
        if kind is None:
            # a single dash long option (-root) is accepted by urfave/cli too
            alt = "-" + name if not name.startswith("--") else None
            if alt and alt in table and not isinstance(table[alt], str):
                name, kind = alt, table[alt]
            else:
                raise UsageError(f"flag provided but not defined: {name}")
        if kind is False:
            opts[name] = val.lower() not in ("false", "0") if eq else True
        else:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"flag needs an argument: {name}")
                val = argv[i]
            if kind == "multi":
                opts.setdefault(name, []).append(val)
            else:
                opts[name] = val
        i += 1
    return opts, rest + argv[i:]


class Log:
    """--log and --log-format as runc has them: errors, warnings and (with --debug) debug lines
    go to the file in logrus' text or JSON form; without --log, warnings and debug lines go to
    stderr in text form, and errors as one plain line."""

    def __init__(self, path: str | None, fmt: str, debug: bool = False) -> None:
        self.path, self.fmt, self.debugging = path, fmt, debug
        if path:
            # runc opens (and so creates) its log file first thing, whatever happens next
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                                 0o644))
            except OSError:
                pass

    def _line(self, level: str, msg: str, fmt: str) -> str:
        from berth.runtime.container import _now

        t = _now()
        if fmt == "json":
            return fastjson.dumps({"level": level, "msg": msg, "time": t})
        return f'time="{t}" level={level} msg={fastjson.dumps(msg)}'

    def write(self, level: str, msg: str) -> None:
        if not self.path:
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, (self._line(level, msg, self.fmt) + "\n").encode())
            finally:
                os.close(fd)
        except OSError:
            pass

    def warn(self, msg: str) -> None:
        if self.path:
            self.write("warning", msg)
        else:
            sys.stderr.write(f"berth-runtime: warning: {msg}\n")

    def debug(self, msg: str) -> None:
        if not self.debugging:
            return
        if self.path:
            self.write("debug", msg)
        else:
            sys.stderr.write(self._line("debug", msg, "text") + "\n")


def _id(args: list[str], cmd: str) -> str:
    if not args:
        raise UsageError(f"{cmd}: a container id is required")
    return args[0]


def _pretty(v: object, indent: str = "", step: str = "  ") -> str:
    """JSON indented by ``step``, as runc prints it (Go's MarshalIndent: two spaces for
    state, a tab for spec)."""
    inner = indent + step
    if isinstance(v, dict) and v:
        items = [f"{inner}{fastjson.dumps(k)}: {_pretty(x, inner, step)}" for k, x in v.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(v, list) and v:
        return "[\n" + ",\n".join(inner + _pretty(x, inner, step) for x in v) + "\n" + \
            indent + "]"
    return fastjson.dumps(v)


def _bytes(s: str) -> int:
    """A size as runc reads it (docker/go-units RAMInBytes: binary units, "50M", "1.5g",
    "64KiB", "100"), or -1."""
    t = s.strip().lower()
    if t == "-1":
        return -1
    num = t.rstrip("bi")  # "b", "ib" and "i" are optional after the unit
    mult = 1
    if num and num[-1] in "kmgtp":
        mult = 1 << (10 * ("kmgtp".index(num[-1]) + 1))
        num = num[:-1]
    elif num != t.rstrip("b") and num != t:
        num = ""  # an "i" with no unit before it
    num = num.rstrip()
    try:
        if not num or num.startswith(("-", "+")) or num.count(".") > 1:
            raise ValueError
        return int(float(num) * mult)
    except ValueError:
        raise UsageError(f"invalid size: {s!r}") from None


def _user_process(base: dict, opts: dict, args: list[str]) -> dict:
    proc = fastjson.loads(fastjson.dumps(base))
    proc["args"] = args
    proc["terminal"] = bool(opts.get("--tty"))
    proc.pop("consoleSize", None)
    if opts.get("--cwd"):
        proc["cwd"] = opts["--cwd"]
    env = proc.setdefault("env", [])
    for e in opts.get("--env") or ():
        k = e.split("=", 1)[0] + "="
        env[:] = [x for x in env if not x.startswith(k)] + [e]
    if opts.get("--user"):
        u, _, g = opts["--user"].partition(":")
        try:
            proc["user"] = {"uid": int(u), "gid": int(g) if g else 0}
        except ValueError:
            raise UsageError(f"--user {opts['--user']!r}: use numeric uid[:gid]") from None
    if opts.get("--additional-gids"):
        proc.setdefault("user", {"uid": 0, "gid": 0})["additionalGids"] = [
            int(g) for g in opts["--additional-gids"]]
    if opts.get("--no-new-privs"):
        proc["noNewPrivileges"] = True
    if opts.get("--apparmor"):
        proc["apparmorProfile"] = opts["--apparmor"]
    if opts.get("--process-label"):
        proc["selinuxLabel"] = opts["--process-label"]
    for c in opts.get("--cap") or ():
        c = c.upper()
        c = c if c.startswith("CAP_") else "CAP_" + c
        caps = proc.setdefault("capabilities", {})
        for k in ("bounding", "effective", "permitted", "ambient"):
            lst = caps.setdefault(k, [])
            if c not in lst:
                lst.append(c)
    return proc


def _version() -> str:
    from berth import __version__

    lines = [f"berth-runtime version {__version__}", "spec: 1.1.0",
             "python: " + sys.version.split()[0]]
    try:
        from berth.linux import seccomp

        lines.append("libseccomp: " + seccomp.version())
    except (OSError, AttributeError):
        pass
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    log = Log(None, "text")
    cmd = ""
    try:
        g, rest = parse(argv, {**GLOBAL, "--help": False, "-h": "--help", "--version": False,
                               "-v": "--version"})
        if g.get("--log-format") not in (None, "text", "json"):
            raise UsageError(f"invalid log-format: {g['--log-format']}")
        log = Log(g.get("--log"), g.get("--log-format") or "text", bool(g.get("--debug")))
        if g.get("--version"):
            sys.stdout.write(_version())
            return 0
        if rest and rest[0] in ("help", "h"):
            rest = [*rest[1:2], "--help"] if len(rest) > 1 else []
            g["--help"] = not rest
        if g.get("--help") or not rest:
            sys.stdout.write(USAGE)
            return 0 if g.get("--help") else 1
        cmd, rest = rest[0], rest[1:]
        if cmd not in OPTIONS:
            raise NoSuchCommand(f"No help topic for '{cmd}'")
        table = {**OPTIONS[cmd], "--help": False, "-h": "--help"}
        opts, args = parse(rest, table, reorder=cmd not in NO_REORDER)
        if opts.pop("--help", False):
            sys.stdout.write(command_help(cmd))
            return 0
        _check_args(cmd, args)
        root = g.get("--root") or "/run/berth-runtime"
        return _dispatch(cmd, root, opts, args, log)
    except NoSuchCommand as e:
        log.write("error", str(e))
        sys.stderr.write(f"berth-runtime: {e}\n")
        return 3  # urfave/cli's status for an unknown command, which runc users see
    except UsageError as e:
        log.write("error", str(e))
        sys.stderr.write(f"berth-runtime: {e}\n")
        return 1
    except BerthError as e:
        log.write("error", str(e))
        sys.stderr.write(f"berth-runtime: {e}\n")
        # as runc: exec's own failures (not its process's) exit 255, apart from its status
        return 255 if cmd == "exec" else 1
    except KeyboardInterrupt:
        return 130


def _dispatch(cmd: str, root: str, opts: dict, args: list[str], log: Log) -> int:
    init = None
    if cmd in ("create", "run", "exec") and not opts.get("--console-socket"):
        # Start the init's interpreter now: it boots on the other core while we import,
        # read config.json and make the cgroups. It exits on EOF if we end up not using it.
        from berth.runtime.spawn import Init

        init = Init()
    from berth.runtime import container as c

    c.warn = log.warn
    c.debug = log.debug if log.debugging else None
    pf = opts.get("--preserve-fds")
    preserve = int(pf) if pf and pf.isdigit() else 0
    if cmd == "create":
        c.create(root, _id(args, cmd), opts.get("--bundle") or ".",
                 console_socket=opts.get("--console-socket"), pid_file=opts.get("--pid-file"),
                 no_pivot=bool(opts.get("--no-pivot")), preserve_fds=preserve, _init=init)
        return 0
    if cmd == "run":
        return c.run(root, _id(args, cmd), opts.get("--bundle") or ".",
                     console_socket=opts.get("--console-socket"),
                     pid_file=opts.get("--pid-file"), detach=bool(opts.get("--detach")),
                     no_pivot=bool(opts.get("--no-pivot")), preserve_fds=preserve,
                     keep=bool(opts.get("--keep")), _init=init)
    if cmd == "start":
        c.start(root, _id(args, cmd))
        return 0
    if cmd == "state":
        print(_pretty(c.state(root, _id(args, cmd))))
        return 0
    if cmd == "kill":
        cid = _id(args, cmd)
        c.state(root, cid)  # an unknown container is the error to report first, as runc's
        sig = c.parse_signal(args[1]) if len(args) > 1 else 15
        c.kill(root, cid, sig, all_=bool(opts.get("--all")))
        return 0
    if cmd == "delete":
        c.delete(root, _id(args, cmd), force=bool(opts.get("--force")))
        return 0
    if cmd == "exec":
        return _exec(c, root, opts, args, init)
    if cmd == "ps":
        return _ps(c, root, opts, args)
    if cmd in ("list", "ls"):
        return _list(c, root, opts)
    if cmd == "pause":
        c.pause(root, _id(args, cmd))
        return 0
    if cmd == "resume":
        c.resume(root, _id(args, cmd))
        return 0
    if cmd == "spec":
        return _spec(opts)
    if cmd == "update":
        return _update(c, root, opts, args)
    if cmd == "events":
        return _events(c, root, opts, args)
    if cmd == "features":
        return _features()
    raise UsageError(f"no such command: {cmd}")


def _exec(c, root: str, opts: dict, args: list[str], init=None) -> int:
    try:
        return _exec2(c, root, opts, args, init)
    except BaseException:
        if init is not None:
            init.abort()
        raise


def _exec2(c, root: str, opts: dict, args: list[str], init) -> int:
    from berth.runtime import state as st_mod

    cid = _id(args, "exec")
    if opts.get("--process"):
        p = opts["--process"]
        try:
            with open(p, "rb") as f:
                proc = fastjson.loads(f.read())
        except OSError as e:
            raise UsageError(f"--process {p}: {e.strerror}") from e
        except (ValueError, SystemError) as e:
            raise UsageError(f"--process {p}: invalid JSON: {e}") from e
        if not isinstance(proc, dict):
            raise UsageError(f"--process {p}: expected a JSON object")
    else:
        if len(args) < 2:
            raise UsageError("exec: a command is required (or --process)")
        base = st_mod.load(root, cid).get("config", {}).get("process") or {}
        proc = _user_process(base, opts, args[1:])
    pf = opts.get("--preserve-fds")
    r = c.exec_(root, cid, proc, console_socket=opts.get("--console-socket"),
                pid_file=opts.get("--pid-file"), detach=bool(opts.get("--detach")),
                preserve_fds=int(pf) if pf and pf.isdigit() else 0, _init=init,
                sub_cgroups=opts.get("--cgroup"),
                ignore_paused=bool(opts.get("--ignore-paused")))
    return 0 if opts.get("--detach") else r


def _ps(c, root: str, opts: dict, args: list[str]) -> int:
    cid = _id(args, "ps")
    pids = c.ps(root, cid)
    if (opts.get("--format") or "table") == "json":
        print(fastjson.dumps(pids))
        return 0
    import subprocess

    ps_args = args[1:] or ["-ef"]
    out = subprocess.run(["ps", *ps_args], capture_output=True, text=True)
    if out.returncode != 0:
        raise UsageError(f"ps: {out.stderr.strip()}")
    lines = out.stdout.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    try:
        col = header.index("PID")
    except ValueError:
        raise UsageError("ps: no PID column in the output of ps") from None
    print(lines[0])
    want = set(pids)
    for line in lines[1:]:
        f = line.split()
        if len(f) > col and f[col].isdigit() and int(f[col]) in want:
            print(line)
    return 0


def _list(c, root: str, opts: dict) -> int:
    items = c.list_(root)
    if opts.get("--quiet"):
        for s in items:
            print(s["id"])
        return 0
    if (opts.get("--format") or "table") == "json":
        print(fastjson.dumps(items))
        return 0
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
    rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], "root")
             for s in items]
    widths = [max(12, max(len(r[i]) for r in rows) + 3) for i in range(5)]
    for r in rows:
        print("".join(r[i].ljust(widths[i]) for i in range(5)) + r[5])
    return 0


def _spec(opts: dict) -> int:
    from berth import atomic
    from berth.runtime import spec

    d = opts.get("--bundle") or "."
    p = os.path.join(d, "config.json")
    if os.path.exists(p):
        raise UsageError(f"file {p} exists: remove it first")
    # byte for byte what runc writes: tab-indented, no final newline
    atomic.write_text(p, _pretty(spec.default_spec(bool(opts.get("--rootless"))), step="\t"),
                      0o644)
    return 0


def _update(c, root: str, opts: dict, args: list[str]) -> int:
    cid = _id(args, "update")
    res: dict = {}
    r = opts.get("--resources")
    if r:
        data = sys.stdin.buffer.read() if r == "-" else open(r, "rb").read()
        try:
            res = fastjson.loads(data)
        except (ValueError, SystemError) as e:
            raise UsageError(f"--resources: invalid JSON: {e}") from e
        if not isinstance(res, dict):
            raise UsageError("--resources: expected a JSON object")
    mem = {}
    for flag, key in (("--memory", "limit"), ("--memory-swap", "swap"),
                      ("--memory-reservation", "reservation"), ("--kernel-memory", "kernel"),
                      ("--kernel-memory-tcp", "kernelTCP")):
        if opts.get(flag):
            mem[key] = _bytes(opts[flag])
    if mem:
        res.setdefault("memory", {}).update(mem)
    cpu = {}
    for flag, key in (("--cpu-share", "shares"), ("--cpu-quota", "quota"),
                      ("--cpu-period", "period"), ("--cpu-rt-period", "realtimePeriod"),
                      ("--cpu-rt-runtime", "realtimeRuntime")):
        if opts.get(flag):
            try:
                cpu[key] = int(opts[flag])
            except ValueError:
                raise UsageError(f"{flag}: {opts[flag]!r} is not a number") from None
    for flag, key in (("--cpuset-cpus", "cpus"), ("--cpuset-mems", "mems")):
        if opts.get(flag):
            cpu[key] = opts[flag]
    if cpu:
        res.setdefault("cpu", {}).update(cpu)
    if opts.get("--pids-limit"):
        res["pids"] = {"limit": int(opts["--pids-limit"])}
    if opts.get("--blkio-weight"):
        res["blockIO"] = {"weight": int(opts["--blkio-weight"])}
    c.update(root, cid, res)
    return 0


def _duration(s: str) -> float:
    """A Go duration ("5s", "100ms", "1m30s", "1.5h") in seconds."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    total, num, i = 0.0, "", 0
    s = s.strip()
    if s in ("0", ""):
        return 0.0
    while i < len(s):
        if s[i].isdigit() or s[i] == ".":
            num += s[i]
            i += 1
            continue
        unit = next((u for u in ("ns", "us", "µs", "ms", "s", "m", "h") if s.startswith(u, i)),
                    None)
        if unit is None or not num:
            raise UsageError(f"invalid duration {s!r}")
        total += float(num) * units[unit]
        num, i = "", i + len(unit)
    if num:
        raise UsageError(f"invalid duration {s!r}: missing unit")
    return total


def _events(c, root: str, opts: dict, args: list[str]) -> int:
    """As runc: stats every --interval and an "oom" event on each OOM, until the cgroup
    ends (v1: removed; v2: no process left)."""
    import select
    import time

    cid = _id(args, "events")
    secs = _duration(opts.get("--interval") or "5s")
    if secs <= 0:
        raise UsageError("duration interval must be greater than 0")
    if opts.get("--stats"):
        print(fastjson.dumps({"type": "stats", "id": cid, "data": c.stats(root, cid)}))
        return 0
    watch = c.oom_watch(root, cid)
    try:
        p = select.poll()
        for fd in watch.fds:
            p.register(fd, select.POLLPRI if watch.prio else select.POLLIN)
        due = time.monotonic() + secs
        while True:
            left = max(0.0, due - time.monotonic())
            for fd, _ev in p.poll(int(left * 1000) + 1):
                what = watch.event(fd)
                if what == "oom":
                    print(fastjson.dumps({"type": "oom", "id": cid}), flush=True)
                elif what == "end":
                    return 0
            if time.monotonic() >= due:
                due += secs
                try:
                    data = c.stats(root, cid)
                except BerthError as e:
                    if not os.path.isdir(watch.dir):
                        return 0
                    log_error(str(e))
                    continue
                print(fastjson.dumps({"type": "stats", "id": cid, "data": data}), flush=True)
    finally:
        watch.close()


def log_error(msg: str) -> None:
    sys.stderr.write(f"berth-runtime: {msg}\n")


def _features() -> int:
    """runtime-spec 1.1 features.md: what this runtime recognises and honours, nothing more
    (an ignored field is not listed: idmapped mounts are absent)."""
    from berth import __version__
    from berth.linux import seccomp as ls
    from berth.linux.prctl import CAPS
    from berth.runtime import spec

    ann = {"org.berth.runtime.version": __version__}
    try:
        ann["io.github.seccomp.libseccomp.version"] = ls.version()
    except (OSError, AttributeError):
        pass
    print(_pretty({
        "ociVersionMin": "1.0.0", "ociVersionMax": "1.1.0",
        "hooks": list(spec.HOOK_KINDS),
        "mountOptions": spec.known_mount_options(),
        "linux": {"namespaces": sorted(spec.NAMESPACES),
                  "capabilities": sorted(CAPS, key=CAPS.get),
                  "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False,
                             "rdma": False},
                  "seccomp": {"enabled": True,
                              "actions": sorted(spec.SECCOMP_ACTIONS - {"SCMP_ACT_NOTIFY"}),
                              "operators": sorted(spec.SECCOMP_OPS),
                              "archs": sorted(ls.ARCHES),
                              "knownFlags": sorted(spec.SECCOMP_FLAGS),
                              "supportedFlags": sorted(spec.SECCOMP_FLAGS_SUPPORTED)},
                  # applied at exec (berth.runtime.init.exec_attr), as runc does
                  "apparmor": {"enabled": True}, "selinux": {"enabled": True},
                  "intelRdt": {"enabled": False}},
        "annotations": ann,
    }))
    return 0
