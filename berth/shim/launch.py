"""Starting shims: forked from a zygote, or as a fresh process that daemonizes.

Zygote (``python3 -S -m berth.shim zygote SOCKET``): one process per berthd, started fresh,
with everything the shim runs already imported. Each shim is a fork of it, so the interpreter's
pages stay shared copy-on-write between all shims and a shim starts in about a millisecond
instead of ~15. The zygote is single-threaded and holds nothing of berthd's: forking it is as
clean as a fresh exec::

    berthd ── exec ──▶ zygote   stdin: berthd's lifeline (EOF: the zygote exits; shims stay)
       │  connect SOCKET        │ accept, fork, nothing else
       │                        └─ fork ─▶ shim  setsid, subreaper, comm berth-shim
       │                                    └─ fork ─▶ setup worker (berth.shim.work)
       │  REQUEST {"op":"spawn","argv":[...]} ──▶ reads it, parses the options, makes the run
       │                                          dir, logs and socket, creates the container,
       │ ◀── REPLY {"ok":{"pid","init_pid","socket"}} | {"error","kind"} ── writes state.json;
       │                                          hands its fds and a summary to the shim, exits

Fresh (``python3 -S -c '...launch import main...' run OPTIONS``): the launcher puts the same
spawn request on a socketpair, forks the shim with the other end, prints the reply as one JSON
line and exits 0 (ok) or 1 (2 for bad options).

Why the work is where it is — memory. A shim shares the zygote's pages copy-on-write, and
CPython writes to every object it touches (reference counts, the adaptive interpreter's
counters, allocation into half-used pools), so each line of Python the long-lived shim runs
costs it private copies of pages, for good; a line the zygote runs between forks costs every
shim forked before (they keep the old page). So the zygote runs nothing per spawn but accept
and fork, and the shim runs nothing once that a worker can run for it: parsing options,
``os.path``, reading the bundle, opening files, the runtime itself all happen in forks that
exit. The shim only builds its few objects from the worker's summary and runs its loop.

In both paths the reply comes once the container is created (and started with --start), or
with the error that stopped it, after which nothing of it is left.
"""

import _signal
import os
import sys

from berth import fastjson
from berth.errors import BerthError, InvalidArgument
from berth.linux.prctl_lite import set_child_subreaper, set_name

# Imported here, not in the functions that use them: an import statement run in a shim writes
# to importlib's objects (reference counts), however cached the module is, at a page each.
from . import proto, work
from .config import ShimOptions, parse_args
from .server import Shim, error_kind

__all__ = ["become_shim", "main"]

REQUEST_TIMEOUT = 5.0
REHEARSALS = 8  # in all (berth.shim.rehearse): the first before "ready", the others when idle
REHEARSAL_IDLE = 50  # ms without a request before the zygote rehearses again


def _report(fd: int, msg: dict) -> None:
    if fd < 0:
        return
    data = proto.frame(proto.REPLY, fastjson.dumps(msg))
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        pass
    os.close(fd)


def _error(e: BaseException) -> dict:
    return {"error": str(e) or type(e).__name__, "kind": error_kind(e)}


class BadSpawnRequest(InvalidArgument):
    pass


def _read_request(fd: int) -> list[str]:
    """The argv of the spawn request on ``fd`` (a connection, or the fresh launcher's pair)."""
    import select

    p = select.poll()
    p.register(fd, select.POLLIN)
    dec = proto.Decoder()
    while True:
        if not p.poll(REQUEST_TIMEOUT * 1000):
            raise BadSpawnRequest("no spawn request within 5 s")
        b = os.read(fd, 65536)
        if not b:
            raise BadSpawnRequest("the spawn request ended early")
        for kind, payload in dec.feed(b):
            if kind != proto.REQUEST:
                continue
            req = fastjson.loads(payload)
            argv = req.get("argv") if isinstance(req, dict) else None
            if not isinstance(req, dict) or req.get("op") != "spawn" \
                    or not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
                raise BadSpawnRequest("zygote request must be {op: spawn, argv: [str]}")
            return argv


def _set_up(fd: int) -> tuple[dict, list[int]]:
    """(In the setup worker) the request read, the shim prepared, the container created.

    Returns the shim's summary (berth.shim.server.Shim.set_up) and its fds, shim.log's first:
    BerthError with nothing left behind (the run dir stays, with shim.log).
    """
    opts = parse_args(_read_request(fd))
    try:
        os.makedirs(opts.run_dir, mode=0o700, exist_ok=True)
        log = os.open(os.path.join(opts.run_dir, "shim.log"),
                      os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise InvalidArgument(f"cannot make run dir {opts.run_dir}: {e.strerror}") from None
    # The runtime's and this worker's own complaints belong in shim.log too.
    os.dup2(log, 2)
    summary, fds = Shim(opts).set_up(fd)
    return summary, [log, *fds]


# No terminal, no job control: a shim ignores these (the zygote does already, for its forks).
_IGNORED = (1, 2, 20, 21, 22)  # SIGHUP SIGINT SIGTSTP SIGTTIN SIGTTOU


def _detach() -> None:
    """Stdio on /dev/null, cwd /, _IGNORED ignored: what a fork of the zygote inherits (but
    fd 0, the zygote's lifeline), what the fresh path's shim does itself."""
    null = os.open("/dev/null", os.O_RDWR)
    for i in (0, 1):
        if null != i:
            os.dup2(null, i)
    if null > 1:
        os.close(null)
    os.chdir("/")
    for sig in _IGNORED:
        _signal.signal(sig, _signal.SIG_IGN)


def become_shim(fd: int, detached: bool = False) -> None:
    """Turn this fresh fork (of the zygote, ``detached``, or the launcher) into a shim; never
    returns.

    ``fd`` carries the spawn request and takes the reply (from a worker, once the container is
    created, or started with --start; from here if that failed).
    """
    code = 1
    try:
        os.setsid()
        set_name(b"berth-shim")
        # Before the setup worker forks: the init it creates must be reparented to us.
        set_child_subreaper()
        if not detached:
            _detach()
    except BaseException as e:
        _report(fd, _error(e))
        os._exit(1)
    try:
        if live(fd) is not None:
            code = 0
    except BaseException:
        try:
            import traceback

            traceback.print_exc()
        except BaseException:
            pass
    os._exit(code)


def live(fd: int, stderr: bool = True):
    """A shim's life, from the spawn request on ``fd`` to the container's end: the Shim, or
    None when it could not be set up (the error was replied). ``stderr``: shim.log becomes
    this process's fd 2. (The process is a subreaper already; the zygote's rehearsal runs
    this too, in the zygote.)"""
    try:
        summary, fds = work.in_fork(_set_up, fd, keep=(fd,))
    except BerthError as e:
        _report(fd, _error(e))
        return None
    try:
        if stderr:
            os.dup2(fds[0], 2)
        os.close(fds[0])
        shim = Shim(ShimOptions.from_fields(summary["opts"]))
        shim.take_over(summary, fds[1:])
        if shim.opts.start:
            shim.report_fd = fd
            try:
                shim.start_init()
            except BerthError as e:
                # A failed --start: the shim sees the container through to "stopped".
                shim.report_fd = -1
                _report(fd, _error(e))
                fd = -1
            shim.report_fd = -1
        if fd >= 0:
            # A worker wrote the reply (this process need not run that code); this copy of
            # the fd only has to go, and no later worker may write to its number.
            os.close(fd)
            fd = -1
        shim.serve()
    except BaseException as e:
        _report(fd, _error(e))
        raise
    return shim


def _read_reply(fd: int) -> dict:
    dec = proto.Decoder()
    while True:
        b = os.read(fd, 65536)
        if not b:
            return {"error": "the shim exited before it reported", "kind": "Internal"}
        for kind, payload in dec.feed(b):
            if kind == proto.REPLY:
                return fastjson.loads(payload)


def run_fresh(argv: list[str]) -> int:
    import _socket

    try:
        parse_args(argv)
    except BerthError as e:
        sys.stdout.write(fastjson.dumps(_error(e)) + "\n")
        return 2
    a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    a.sendall(proto.frame(proto.REQUEST, fastjson.dumps({"op": "spawn", "argv": argv})))
    pid = os.fork()
    if pid == 0:
        a.close()
        become_shim(b.detach())
    b.close()
    reply = _read_reply(a.fileno())
    sys.stdout.write(fastjson.dumps(reply) + "\n")
    sys.stdout.flush()
    return 0 if "ok" in reply else 1


def zygote(argv: list[str]) -> int:
    import _socket
    import fcntl  # noqa: F401
    import gc
    import select
    import termios  # noqa: F401

    from berth.linux import prctl_lite  # noqa: F401

    # Everything a shim imports, imported once here so that every shim shares it (and
    # berth-runtime's library, which its workers call in-process).
    from . import config, jsonlog, oom, process, restart, runtime, server, work  # noqa: F401

    try:
        from berth.runtime import container  # noqa: F401
    except ImportError:
        pass

    if len(argv) != 1:
        sys.stderr.write("usage: python3 -S -m berth.shim zygote SOCKET\n")
        return 2
    path = os.path.abspath(argv[0])
    rehearsals = os.path.dirname(path)
    # Shims are our children until they leave: let the kernel reap them.
    _signal.signal(17, _signal.SIG_IGN)
    # What a shim would do first (see _detach), done once for all of them; fd 1 follows after
    # "ready", fd 0 (the lifeline) becomes /dev/null in each fork.
    os.chdir("/")
    for sig in _IGNORED:
        _signal.signal(sig, _signal.SIG_IGN)
    from .rehearse import rehearse

    rehearse(rehearsals)
    done = 1
    gc.collect()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    lst = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    lst.bind(path)
    os.chmod(path, 0o600)
    mine = os.stat(path).st_ino
    lst.listen(64)
    os.write(1, b"ready\n")
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 1)
    os.close(null)
    poller = select.poll()
    poller.register(0, select.POLLIN)
    poller.register(lst.fileno(), select.POLLIN)
    try:
        while True:
            # More rehearsals make lighter shims (the interpreter specializes code run eight
            # times and more); they cost ~10 ms each, so they wait until nothing else does.
            events = poller.poll(REHEARSAL_IDLE if done < REHEARSALS else -1)
            if not events:
                rehearse(rehearsals)
                done += 1
                if done == REHEARSALS:
                    gc.collect()
                continue
            for fd, _ in events:
                if fd == 0:
                    if not os.read(0, 4096):
                        return 0
                    continue
                try:
                    cfd, _ = lst._accept()
                except OSError:
                    continue
                _spawn_from(cfd, lst, gc)
    finally:
        lst.close()
        # Only our own: a new berthd may have started its zygote here already.
        try:
            if os.stat(path).st_ino == mine:
                os.unlink(path)
        except FileNotFoundError:
            pass


def _spawn_from(cfd: int, lst, gc) -> None:
    """Fork a shim for one connection. The zygote does nothing else for it: a page it writes
    after the fork stops being shared with the shims forked before."""
    # Everything made so far is shared with the shim; keep the collector off it there.
    gc.freeze()
    try:
        pid = os.fork()
    except OSError as e:
        _report(cfd, {"error": f"cannot fork a shim: {e.strerror}", "kind": "Unavailable"})
        return
    if pid:
        os.close(cfd)
        return
    try:
        lst.close()
        os.dup2(1, 0)  # the lifeline's end becomes /dev/null
        # Not ignored: the init, reparented to the shim, would be reaped by the kernel unseen.
        _signal.signal(17, _signal.SIG_DFL)
    except BaseException:
        os._exit(1)
    become_shim(cfd, detached=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "run":
        return run_fresh(argv[1:])
    if argv and argv[0] == "zygote":
        return zygote(argv[1:])
    sys.stderr.write("usage: python3 -S -m berth.shim run OPTIONS... | zygote SOCKET\n")
    return 2
