"""Starting shims: as a fresh process that daemonizes, or forked from a zygote.

Fresh (``python3 -S -m berth.shim run OPTIONS``)::

    caller ── exec ──▶ launcher ── fork ──▶ shim (setsid, subreaper; creates the container)
                          │ ◀── REPLY frame on a pipe ──┘
                          └─ prints the reply as one JSON line, exits 0 (ok) or 1

Zygote (``python3 -S -m berth.shim zygote SOCKET``): one process per berthd, started fresh,
with everything the shim runs already imported. Each shim is a fork of it, so the interpreter's
pages stay shared copy-on-write between all shims (a fresh Python costs ~3 MB of private memory;
a fork of the zygote ~0.8 MB) and a shim starts in about a millisecond instead of ~15. The zygote
is single-threaded and holds nothing of berthd's: forking it is as clean as a fresh exec::

    berthd ── exec ──▶ zygote   stdin: berthd's lifeline (EOF: the zygote exits; shims stay)
       │  connect SOCKET, REQUEST {"op":"spawn","argv":[...]}
       │                   └── fork ──▶ shim (setsid, subreaper; creates the container)
       │ ◀──────────────── REPLY {"ok":{"pid","init_pid","socket"}} | {"error","kind"} ──┘

In both, the reply comes from the shim itself once the container is created (and started with
--start), or with the error that stopped it, after which nothing of it is left.
"""

import os
import sys

from berth import fastjson
from berth.errors import BerthError
from berth.linux.prctl_lite import set_name

from . import proto

__all__ = ["become_shim", "main"]


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
    from .server import error_kind

    return {"error": str(e) or type(e).__name__, "kind": error_kind(e)}


def prepare(opts):
    """What can be done before the fork (in the zygote or the fresh launcher): the run dir,
    the shim's log, its socket and json-file log, its objects.

    Every line of Python the long-lived shim runs costs it private copies of shared pages
    (see berth.shim.work); done here, the work is paid once in the zygote instead. Returns
    (shim, fd of shim.log); BerthError with nothing left behind.
    """
    from .server import Shim

    try:
        os.makedirs(opts.run_dir, mode=0o700, exist_ok=True)
        log = os.open(os.path.join(opts.run_dir, "shim.log"),
                      os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    except OSError as e:
        from berth.errors import InvalidArgument

        raise InvalidArgument(f"cannot make run dir {opts.run_dir}: {e.strerror}") from None
    shim = Shim(opts)
    try:
        shim.prepare()
    except BaseException:
        os.close(log)
        shim.close()
        raise
    return shim, log


def become_shim(shim, log: int, report_fd: int) -> None:
    """Turn this freshly forked process into the (prepared) shim; never returns."""
    code = 1
    try:
        os.setsid()
        set_name(b"berth-shim")
        null = os.open("/dev/null", os.O_RDWR)
        for src, dst in ((null, 0), (null, 1), (log, 2)):
            if src != dst:
                os.dup2(src, dst)
        for fd in (null, log):
            if fd > 2:
                os.close(fd)
        os.chdir("/")
        shim.report_fd = report_fd
        try:
            shim.boot()
            if shim.opts.start:
                shim.start_init()
        except BerthError as e:
            shim.report_fd = -1
            _report(report_fd, _error(e))
            report_fd = -1
            if shim.init is None:
                os._exit(1)
            # A failed --start: the shim sees the container through to "stopped".
        else:
            # The last worker wrote the reply (this process need not run that code); this
            # copy of the fd only has to go, and no later worker may write to its number.
            shim.report_fd = -1
            os.close(report_fd)
            report_fd = -1
        shim.serve()
        code = 0
    except BaseException as e:
        _report(report_fd, _error(e))
        report_fd = -1
        try:
            import traceback

            traceback.print_exc()
        except BaseException:
            pass
    os._exit(code)


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
    from .config import parse_args

    try:
        opts = parse_args(argv)
    except BerthError as e:
        sys.stdout.write(fastjson.dumps(_error(e)) + "\n")
        return 2
    try:
        shim, log = prepare(opts)
    except BerthError as e:
        sys.stdout.write(fastjson.dumps(_error(e)) + "\n")
        return 1
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        become_shim(shim, log, w)
    os.close(w)
    reply = _read_reply(r)
    sys.stdout.write(fastjson.dumps(reply) + "\n")
    sys.stdout.flush()
    return 0 if "ok" in reply else 1


def zygote(argv: list[str]) -> int:
    import _signal
    import _socket
    import fcntl  # noqa: F401
    import gc
    import select
    import termios  # noqa: F401

    from berth.linux import prctl_lite  # noqa: F401

    # Everything a shim imports, imported once here so that every shim shares it (and
    # berth-runtime's library, which its workers call in-process: ~0.1 MB, shared).
    from . import config, jsonlog, oom, process, restart, runtime, server, work  # noqa: F401

    try:
        from berth.runtime import container  # noqa: F401
    except ImportError:
        pass

    if len(argv) != 1:
        sys.stderr.write("usage: python3 -S -m berth.shim zygote SOCKET\n")
        return 2
    path = argv[0]
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    lst = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    lst.bind(path)
    os.chmod(path, 0o600)
    mine = os.stat(path).st_ino
    lst.listen(64)
    # Shims are our children until they leave: let the kernel reap them.
    _signal.signal(17, _signal.SIG_IGN)
    _signal.signal(2, _signal.SIG_IGN)
    os.write(1, b"ready\n")
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 1)
    os.close(null)
    poller = select.poll()
    poller.register(0, select.POLLIN)
    poller.register(lst.fileno(), select.POLLIN)
    try:
        while True:
            for fd, _ in poller.poll():
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
    from .config import parse_args

    conn = None
    try:
        import _socket

        conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, cfd)
        conn.settimeout(5.0)
        dec = proto.Decoder()
        req = None
        while req is None:
            b = conn.recv(65536)
            if not b:
                return
            for kind, payload in dec.feed(b):
                if kind == proto.REQUEST:
                    req = fastjson.loads(payload)
                    break
        argv = req.get("argv") if isinstance(req, dict) else None
        if req.get("op") != "spawn" or not isinstance(argv, list) \
                or not all(isinstance(a, str) for a in argv):
            conn.sendall(proto.frame(proto.REPLY, fastjson.dumps(
                {"error": "zygote request must be {op: spawn, argv: [str]}",
                 "kind": "InvalidArgument"})))
            return
        try:
            shim, log = prepare(parse_args(argv))
        except BerthError as e:
            conn.sendall(proto.frame(proto.REPLY, fastjson.dumps(_error(e))))
            return
        # Everything made so far is shared with the shim; keep the collector off it there.
        gc.freeze()
        try:
            pid = os.fork()
        except OSError as e:
            shim.close(unlink=True)
            os.close(log)
            conn.sendall(proto.frame(proto.REPLY, fastjson.dumps(
                {"error": f"cannot fork a shim: {e.strerror}", "kind": "Unavailable"})))
            return
        if pid == 0:
            lst.close()
            os.close(0)
            fd = conn.detach()
            conn = None
            import _signal

            _signal.signal(17, _signal.SIG_DFL)
            _signal.signal(2, _signal.SIG_DFL)
            os.set_blocking(fd, True)
            become_shim(shim, log, fd)
        # The shim has its own copies of these now.
        shim.close()
        os.close(log)
    except (OSError, ValueError):
        return
    finally:
        if conn is not None:
            conn.close()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "run":
        return run_fresh(argv[1:])
    if argv and argv[0] == "zygote":
        return zygote(argv[1:])
    sys.stderr.write("usage: python3 -S -m berth.shim run OPTIONS... | zygote SOCKET\n")
    return 2
