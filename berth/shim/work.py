"""One-off work of the shim — every runtime call, and making a process's stdio — done in a
short-lived fork of the shim, which hands back a small JSON result and the fds it opened.

Why: the shim is forked from the zygote and shares its pages copy-on-write. CPython writes to
every object it touches (reference counts) and allocates into partly used pools, so each line
of Python run in the shim makes private copies of shared pages, for good. Creating a container
runs a lot of Python once (spawning the runtime, reading its log and pid file, finding the
cgroup); in a fork that exits, those copies vanish with it, and the long-lived shim only ever
runs its event loop. This cuts the shim's private memory roughly in half.

    shim (subreaper) ──fork──▶ worker ──posix_spawn──▶ runtime create ──▶ container init
      ▲   │                      │ result + fds (SCM_RIGHTS)                 │
      │   └── waits ◀────────────┘ exits                                     │
      └──────────────── init reparented to the shim when the runtime exits ───┘

The worker is not a subreaper (the flag is not inherited), so orphans skip it and reach the
shim. It resets SIGCHLD and the signal wakeup fd first: its own children's deaths are its
business, not the shim's loop's.
"""

import _signal
import _socket
import os
import select

from berth import fastjson
from berth.errors import BerthError, FailedPrecondition, InvalidArgument, NotFound

from .runtime import RuntimeFailed, for_options

__all__ = ["WorkFailed", "in_fork", "make_process", "runtime_call"]

TIMEOUT = 120.0
_MAX_FDS = 16


class WorkFailed(FailedPrecondition):
    pass


def in_fork(fn, *args, after=None, keep: tuple[int, ...] = (),
            timeout: float = TIMEOUT) -> tuple[dict, list[int]]:
    """Run ``fn(*args)`` (returning ``(dict, [fds])``) in a fork; its result here.

    ``after(result)``, if given, runs in the fork too once ``fn`` succeeded (the shim uses it
    to write the state it is about to enter, so that it does not run that code itself) and may
    add to the result. The fork closes every inherited fd but its stdio and ``keep``: a
    client's socket or a container's pipe must not stay open in it after the shim closed its
    own copy. A BerthError raised in the fork is raised here again, of the same kind
    (RuntimeFailed keeps its class, for callers that tell runtime refusals apart).
    """
    a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:
        _worker(a, b, fn, args, after, keep)
    b.close()
    # Not waited for: tearing down a fork's address space takes a millisecond or two, and the
    # shim's reaper collects it like any other child.
    try:
        msg, fds = _receive(a, timeout, pid)
    finally:
        a.close()
    if "error" in msg:
        for fd in fds:
            os.close(fd)
        raise _rebuild(msg)
    return msg.get("ok") or {}, fds


def _worker(a, b, fn, args, after, keep) -> None:
    code = 0
    try:
        a.close()
        _signal.set_wakeup_fd(-1)
        _signal.signal(17, _signal.SIG_DFL)
        low = 3
        for fd in sorted({b.fileno(), *keep}):
            if fd >= low:
                os.closerange(low, fd)
                low = fd + 1
        os.closerange(low, 1 << 20)
        fds: list[int] = []
        try:
            res, fds = fn(*args)
            if after is not None:
                after(res)
            msg = {"ok": res}
        except BerthError as e:
            from .server import error_kind

            msg = {"error": str(e), "kind": error_kind(e), "class": type(e).__name__,
                   "command": getattr(e, "command", ""),
                   "exit_code": getattr(e, "exit_code", -1)}
        data = fastjson.dumps(msg).encode()
        anc = []
        if fds:
            anc = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                    b"".join(fd.to_bytes(4, "little") for fd in fds))]
        b.sendmsg([len(data).to_bytes(4, "big") + data], anc)
    except BaseException:
        code = 1
        try:
            import traceback

            traceback.print_exc()
        except BaseException:
            pass
    os._exit(code)


def _receive(a, timeout: float, pid: int) -> tuple[dict, list[int]]:
    buf = b""
    fds: list[int] = []
    p = select.poll()
    p.register(a.fileno(), select.POLLIN)
    need = -1
    while need < 0 or len(buf) < need:
        if not p.poll(timeout * 1000):
            os.kill(pid, 9)
            raise WorkFailed("the shim's worker took too long")
        data, anc, _, _ = a.recvmsg(65536, _socket.CMSG_SPACE(4 * _MAX_FDS))
        for level, kind, payload in anc:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                fds += [int.from_bytes(payload[i:i + 4], "little")
                        for i in range(0, len(payload) - len(payload) % 4, 4)]
        if not data:
            for fd in fds:
                os.close(fd)
            raise WorkFailed("the shim's worker died (see shim.log)")
        buf += data
        if need < 0 and len(buf) >= 4:
            need = 4 + int.from_bytes(buf[:4], "big")
    for fd in fds:
        os.set_inheritable(fd, False)
    return fastjson.loads(buf[4:need]), fds


def _rebuild(msg: dict) -> BerthError:
    from berth import errors

    text = str(msg.get("error", "shim worker failed"))
    if msg.get("class") == "RuntimeFailed":
        return RuntimeFailed(text, msg.get("command", ""), msg.get("exit_code", -1))
    cls = getattr(errors, str(msg.get("kind")), errors.Internal)
    if not (isinstance(cls, type) and issubclass(cls, BerthError)):
        cls = errors.Internal
    return cls(text)


# -- the work itself (runs in the fork) ---------------------------------------------------------


def _runtime(opts):
    return for_options(opts, os.path.join(opts.run_dir, "runtime.log"))


def runtime_call(opts, op: str, *args) -> tuple[dict, list[int]]:
    """One runtime command that hands back nothing but success (start, kill, delete, ...)."""
    rt = _runtime(opts)
    if op == "delete_quietly":
        try:
            rt.delete(*args)
        except RuntimeFailed:
            rt.delete(args[0], force=True)
        return {}, []
    getattr(rt, op)(*args)
    return {}, []


def _console(path: str):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.bind(path)
        s.listen(1)
    except OSError as e:
        s.close()
        raise WorkFailed(f"cannot listen on {path}: {e.strerror}") from None
    return s


def _receive_master(s) -> int:
    # The runtime connected and sent the fd before it exited: both sit in the backlog now.
    s.settimeout(5.0)
    try:
        fd, _ = s._accept()
        c = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, fd)
        try:
            c.settimeout(5.0)
            _, anc, _, _ = c.recvmsg(4096, _socket.CMSG_SPACE(4))
        finally:
            c.close()
    except OSError:
        raise RuntimeFailed("the runtime sent no terminal over the console socket") from None
    for level, kind, data in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS and len(data) >= 4:
            return int.from_bytes(data[:4], "little")
    raise RuntimeFailed("the runtime's console message carried no file descriptor")


def _read_pid(path: str) -> int:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError as e:
        raise RuntimeFailed(f"the runtime wrote no pid file {path}: {e.strerror}") from None
    if not text.isdigit():
        raise RuntimeFailed(f"the runtime's pid file {path} holds {text!r}")
    return int(text)


def bundle_terminal(bundle: str) -> bool:
    """``process.terminal`` of the bundle: the one place the runtime reads it too."""
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            config = fastjson.loads(f.read())
    except FileNotFoundError:
        raise NotFound(f"no config.json in bundle: {bundle}") from None
    except ValueError as e:
        raise InvalidArgument(f"bad config.json in bundle {bundle}: {e}") from None
    process = config.get("process") if isinstance(config, dict) else None
    return bool(isinstance(process, dict) and process.get("terminal"))


def make_process(opts, kind: str, tty: bool, stdin: bool, tag: str,
                 process: dict | None = None, oom: bool = False) -> tuple[dict, list[int]]:
    """Create the init (``kind`` "create") or an exec (``kind`` "exec"), with its stdio.

    Returns ({"pid", "fds": [role, ...], "oom": {...}}, fds) where each fd's role is "stdin",
    "stdout", "stderr" or "master" (a pty master is stdin and stdout both). On failure nothing
    is left: the runtime is asked to forget a half-made init, every fd is closed.
    """
    run_dir = opts.run_dir
    rt = _runtime(opts)
    null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    mine: list[tuple[str, int]] = []
    theirs: list[int] = []
    console = None
    # The console socket's name is short whatever the exec id: a unix socket path has 107 bytes.
    cpath = os.path.join(run_dir, f"c{os.getpid()}.sock")
    pid_file = os.path.join(run_dir, "init.pid" if kind == "create" else f"exec-{tag}.pid")
    spec = os.path.join(run_dir, f"exec-{tag}.json")
    try:
        if tty:
            console = _console(cpath)
            stdio = (null, null, null)
        else:
            child_in = null
            if stdin:
                r, w = os.pipe()
                mine.append(("stdin", w))
                theirs.append(r)
                child_in = r
            o_r, o_w = os.pipe()
            e_r, e_w = os.pipe()
            mine += [("stdout", o_r), ("stderr", e_r)]
            theirs += [o_w, e_w]
            stdio = (child_in, o_w, e_w)
        try:
            os.unlink(pid_file)
        except FileNotFoundError:
            pass
        if kind == "create":
            try:
                rt.create(opts.id, opts.bundle, pid_file, stdio, cpath if tty else None)
            except BaseException:
                try:
                    rt.delete(opts.id, force=True)
                except RuntimeFailed:
                    pass
                raise
        else:
            with open(os.open(spec, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                              0o600), "w") as f:
                f.write(fastjson.dumps(process))
            rt.exec(opts.id, spec, pid_file, stdio, cpath if tty else None)
        for fd in theirs:
            os.close(fd)
        theirs = []
        if tty:
            mine.append(("master", _receive_master(console)))
        pid = _read_pid(pid_file)
        info = {"pid": pid, "fds": [role for role, _ in mine]}
        fds = [fd for _, fd in mine]
        if oom:
            from .oom import discover

            found = discover(pid)
            if found is not None:
                info["oom"] = found[0]
                fds += found[1]
        return info, fds
    except BaseException:
        for _, fd in mine:
            os.close(fd)
        for fd in theirs:
            os.close(fd)
        raise
    finally:
        os.close(null)
        if console is not None:
            console.close()
        for path in (cpath, spec) if kind == "exec" or tty else ():
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        if kind == "exec":
            try:
                os.unlink(pid_file)
            except FileNotFoundError:
                pass
