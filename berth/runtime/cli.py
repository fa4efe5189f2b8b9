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

USAGE = """usage: berth-runtime [--root DIR] [--log FILE] [--log-format text|json] COMMAND ...

commands (as runc's):
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
  update [--resources F|-] [--memory N] [--cpu-shares N] [--cpu-quota N] ... ID
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
             "--cgroup": True},
    "ps": {"--format": True, "-f": "--format"},
    "list": {"--format": True, "-f": "--format", "--quiet": False, "-q": "--quiet"},
    "spec": {"--bundle": True, "-b": "--bundle", "--rootless": False},
    "update": {"--resources": True, "-r": "--resources", "--memory": True, "-m": "--memory",
               "--memory-swap": True, "--memory-reservation": True, "--kernel-memory": True,
               "--kernel-memory-tcp": True, "--cpu-shares": True, "--cpu-quota": True,
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


def parse(argv: list[str], table: dict) -> tuple[dict, list[str]]:
    opts: dict = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            i += 1
            break
        if not a.startswith("-") or a == "-":
            break
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
    return opts, argv[i:]


class Log:
    def __init__(self, path: str | None, fmt: str) -> None:
        self.path, self.fmt = path, fmt

    def write(self, level: str, msg: str) -> None:
        if not self.path:
            return
        from berth.runtime.container import _now

        t = _now()
        if self.fmt == "json":
            line = fastjson.dumps({"level": level, "msg": msg, "time": t})
        else:
            line = f'time="{t}" level={level} msg={fastjson.dumps(msg)}'
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        except OSError:
            pass


def _id(args: list[str], cmd: str) -> str:
    if not args:
        raise UsageError(f"{cmd}: a container id is required")
    return args[0]


def _pretty(v: object, indent: str = "") -> str:
    """JSON indented by two spaces, as runc prints state (Go's MarshalIndent)."""
    inner = indent + "  "
    if isinstance(v, dict) and v:
        items = [f"{inner}{fastjson.dumps(k)}: {_pretty(x, inner)}" for k, x in v.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(v, list) and v:
        return "[\n" + ",\n".join(inner + _pretty(x, inner) for x in v) + "\n" + indent + "]"
    return fastjson.dumps(v)


def _bytes(s: str) -> int:
    s = s.strip().lower()
    if s in ("-1", "max"):
        return -1
    mult = 1
    for suf, m in (("kb", 1024), ("mb", 1 << 20), ("gb", 1 << 30), ("k", 1024),
                   ("m", 1 << 20), ("g", 1 << 30), ("b", 1)):
        if s.endswith(suf):
            s, mult = s[:-len(suf)], m
            break
    try:
        return int(float(s) * mult)
    except ValueError:
        raise UsageError(f"invalid size {s!r}") from None


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
    for c in opts.get("--cap") or ():
        c = c.upper()
        c = c if c.startswith("CAP_") else "CAP_" + c
        caps = proc.setdefault("capabilities", {})
        for k in ("bounding", "effective", "permitted", "ambient"):
            lst = caps.setdefault(k, [])
            if c not in lst:
                lst.append(c)
    return proc


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    log = Log(None, "text")
    try:
        g, rest = parse(argv, {**GLOBAL, "--help": False, "-h": "--help", "--version": False,
                               "-v": "--version"})
        log = Log(g.get("--log"), g.get("--log-format") or "text")
        if g.get("--version"):
            from berth import __version__

            print(f"berth-runtime version {__version__}\nspec: 1.1.0")
            return 0
        if g.get("--help") or not rest or rest[0] in ("help", "--help", "-h"):
            sys.stdout.write(USAGE)
            return 0 if g.get("--help") or rest else 1
        cmd, rest = rest[0], rest[1:]
        if cmd not in OPTIONS:
            raise UsageError(f"no such command: {cmd}")
        opts, args = parse(rest, OPTIONS[cmd])
        root = g.get("--root") or "/run/berth-runtime"
        return _dispatch(cmd, root, opts, args, log)
    except BerthError as e:
        log.write("error", str(e))
        sys.stderr.write(f"berth-runtime: {e}\n")
        return 1
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

    c.warn = lambda m: (log.write("warning", m), sys.stderr.write(f"berth-runtime: {m}\n"))
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
                preserve_fds=int(pf) if pf and pf.isdigit() else 0, _init=init)
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
    atomic.write_text(p, _pretty(spec.default_spec(bool(opts.get("--rootless")))) + "\n",
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
    for flag, key in (("--cpu-shares", "shares"), ("--cpu-quota", "quota"),
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


def _events(c, root: str, opts: dict, args: list[str]) -> int:
    import time

    cid = _id(args, "events")
    if opts.get("--stats"):
        print(fastjson.dumps({"type": "stats", "id": cid, "data": c.stats(root, cid)}))
        return 0
    iv = (opts.get("--interval") or "5s").strip()
    mult = {"ms": 0.001, "s": 1, "m": 60}
    secs = 5.0
    for suf in ("ms", "s", "m"):
        if iv.endswith(suf):
            secs = float(iv[:-len(suf)]) * mult[suf]
            break
    while True:
        try:
            data = c.stats(root, cid)
        except BerthError:
            return 0
        print(fastjson.dumps({"type": "stats", "id": cid, "data": data}), flush=True)
        time.sleep(secs)


def _features() -> int:
    """runtime-spec 1.1 features.md: what this runtime recognises and honours, nothing more
    (an ignored field is not listed: apparmor and selinux are off, idmapped mounts absent)."""
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
                  "apparmor": {"enabled": False}, "selinux": {"enabled": False},
                  "intelRdt": {"enabled": False}},
        "annotations": ann,
    }))
    return 0
