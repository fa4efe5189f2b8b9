"""The shim: the supervisor of one container, serving clients on ``<run-dir>/shim.sock``.

Process tree (the shim is a child subreaper, so the container's init, orphaned when the runtime's
``create`` exits, becomes its child, as do exec'd processes after ``exec --detach``)::

    berthd ··· (launch: zygote fork, or a fresh exec that daemonizes) ··· shim  [own session]
                                                                         ├─ init of the container
                                                                         └─ exec'd processes

Lifecycle of the container's init, one *run* per runtime create+start::

    created ──start──▶ running ⇄ paused
       │                  │ exit (reaped, output drained, runtime delete)
       │                  ▼
       │   restart policy says "again in d s" ──▶ restarting ──(d s: create+start)──▶ running
       ▼                  │ otherwise, or a manual stop, or a failed restart
    (delete) ───────────▶ stopped: state.json written, socket removed, exit events sent; the shim
                                   exits once every client has its last bytes (≤ 2 s)

Requests (frame type REQUEST, see berth.shim.proto); ``exec`` names an exec id, "" or absent
is the init; replies are ``{}`` unless shown:

    state                                  → the state (as in state.json)
    subscribe                              → {"state": ...}; then EVENT frames on this connection
    start                                  → {"pid"}: runtime start of a created container
    attach  exec stdin stdout stderr detach_keys    the connection becomes an attach stream
    exec    exec_id process(OCI) stdin attach{...}  → {"pid"}; with attach, as attach above
    kill    exec signal all stop           signal the process (all: every process, through the
                                           runtime); stop: a manual stop, no restart after it
    stop    signal timeout                 manual stop: signal, SIGKILL after timeout s (< 0:
                                           never); the reply comes when the container stopped
    wait    exec                           → exit info, when the process has exited
    resize  exec height width              the pty's window size
    close_stdin exec                       the process reads EOF after what was sent
    pause | resume                         the runtime's pause / resume
    update  restart                        a new restart policy
    delete  force                          created or stopped: clean up and exit; running:
                                           Conflict unless force (then SIGKILL first)

Events: start {pid restart_count started_at}, exit {exit_code signal oom_killed started_at
exited_at restart_count restarting delay error}, oom, paused, resumed, exec-start {exec pid},
exec-exit {exec exit_code signal}, detached (an attacher's detach keys). ``exit`` with
``restarting`` false is the last event: the container is stopped and the shim is leaving.

State files in the run dir (written atomically; ``sync=False`` because the run dir is volatile by
design, /run on tmpfs, and rename alone keeps them whole across a crash of the shim):
``shim.pid``, ``init.pid`` (the runtime's pid file), ``state.json`` (each transition; at the end
the exit record berthd reads if it was down), ``runtime.log`` (the runtime's --log),
``shim.log`` (the shim's own stderr).
"""

import _signal
import _socket
import os
import time

from berth import atomic, fastjson
from berth.errors import BerthError, Conflict, InvalidArgument, NotFound

from . import proto, work
from .jsonlog import JsonLog
from .loop import Loop
from .oom import OomWatch
from .process import EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, LOW_WATER, Proc
from .restart import RestartManager, parse_policy
from .runtime import RuntimeFailed, which

__all__ = ["Conn", "Shim", "error_kind"]

MAX_FINISHED_EXECS = 128
EXIT_LINGER = 2.0
MAX_CONN_BUFFER = 16 << 20
SUN_PATH_MAX = 107
SIGKILL = 9

_KINDS = ("NotFound", "Conflict", "InvalidArgument", "FailedPrecondition", "PermissionDenied",
          "Unavailable", "Internal")


def error_kind(e: BaseException) -> str:
    for cls in type(e).__mro__:
        if cls.__name__ in _KINDS and cls.__module__ == "berth.errors":
            return cls.__name__
    return "Internal"


class NoSuchProcess(NotFound):
    pass


class BadRequest(InvalidArgument):
    pass


class Conn:
    """One client connection: frames in, frames out, maybe attached to a process."""

    __slots__ = ("attach", "closing", "dec", "dk", "dk_pos", "fd", "out", "pending",
                 "read_closed", "reading", "shim", "stdin", "subscribed", "want")

    def __init__(self, shim, fd: int) -> None:
        self.shim = shim
        self.fd = fd
        self.dec = proto.Decoder()
        self.out = bytearray()
        self.attach: Proc | None = None
        self.want: tuple[int, ...] = ()
        self.stdin = False
        self.dk = b""
        self.dk_pos = 0
        self.subscribed = False
        self.closing = False
        self.read_closed = False
        self.reading = True
        self.pending = 0

    def _mask(self) -> int:
        m = EPOLLOUT if self.out else 0
        if self.reading and not self.read_closed:
            m |= EPOLLIN
        return m

    def rearm(self) -> None:
        if self.fd < 0:
            return
        loop = self.shim.loop
        m = self._mask()
        if loop.watching(self.fd):
            loop.modify(self.fd, m)
        else:
            loop.watch(self.fd, m, self.on_event)

    def on_event(self, ev: int) -> None:
        if ev & EPOLLOUT:
            self.flush()
        if self.fd < 0:
            return
        if ev & (EPOLLIN | EPOLLERR) or (ev & EPOLLHUP and not self.read_closed):
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                self.shim.conn_lost(self)
                return
            if not data:
                self.shim.conn_eof(self)
                return
            try:
                frames = self.dec.feed(data)
            except proto.ProtocolError:
                self.shim.conn_lost(self)
                return
            for kind, payload in frames:
                if self.fd < 0:
                    return
                self.shim.on_frame(self, kind, payload)
        elif ev & EPOLLHUP:
            self.shim.conn_lost(self)

    def send(self, data: bytes) -> None:
        if self.fd < 0:
            return
        if not self.out:
            try:
                n = os.write(self.fd, data)
            except BlockingIOError:
                n = 0
            except OSError:
                self.shim.conn_lost(self)
                return
            if n == len(data):
                return
            data = data[n:]
            self.out += data
            self.rearm()
            return
        self.out += data
        if len(self.out) > MAX_CONN_BUFFER and self.attach is None:
            # A client that reads no events or replies for 16 MiB is gone in all but name.
            self.shim.conn_lost(self)

    def flush(self) -> None:
        out = self.out
        while out:
            try:
                n = os.write(self.fd, out)
            except BlockingIOError:
                break
            except OSError:
                self.shim.conn_lost(self)
                return
            del out[:n]
        if not out and self.closing:
            self.shim.conn_lost(self)
            return
        self.rearm()
        if self.attach is not None and len(out) <= LOW_WATER:
            self.attach.drained()

    def close_when_flushed(self) -> None:
        self.closing = True
        if not self.out:
            self.shim.conn_lost(self)

    def reply(self, rid, ok: dict | None = None, error: BaseException | None = None) -> None:
        if error is not None:
            msg = {"id": rid, "error": str(error) or type(error).__name__,
                   "kind": error_kind(error)}
        else:
            msg = {"id": rid, "ok": ok if ok is not None else {}}
        self.send(proto.frame(proto.REPLY, fastjson.dumps(msg)))

    def event(self, ev: dict) -> None:
        self.send(proto.frame(proto.EVENT, fastjson.dumps(ev)))


class _Deferred:
    """A reply owed to a client, sent when something happens (an exit, a stop)."""

    __slots__ = ("conn", "rid")

    def __init__(self, conn: Conn, rid) -> None:
        self.conn = conn
        self.rid = rid
        conn.pending += 1

    def send(self, ok: dict | None = None, error: BaseException | None = None) -> None:
        c = self.conn
        c.pending -= 1
        c.reply(self.rid, ok, error)
        if c.read_closed and not c.pending and c.attach is None and not c.subscribed:
            c.close_when_flushed()


class Shim:
    def __init__(self, opts) -> None:
        self.opts = opts
        self.loop = Loop()
        self.run_dir = opts.run_dir
        self.sock_path = opts.run_dir + "/shim.sock"  # (os.path.join would run in the shim)
        self.listener = None
        self.conns: set[Conn] = set()
        self.init: Proc | None = None
        self.execs: dict[str, Proc] = {}
        self.pids: dict[int, Proc] = {}
        self.status = "created"
        self.restart = RestartManager(opts.restart, opts.restart_max, opts.restart_count)
        self.manual_stop = False
        self.deleting = False
        self.error = ""
        self.last_exit: dict | None = None
        self.tty = False
        self.log: JsonLog | None = None
        self.oom: OomWatch | None = None
        self._oom_sent = False
        self.restart_timer = None
        self.stop_timer = None
        self.stop_waiters: list[_Deferred] = []
        self.exiting = False
        self.exit_deadline = 0.0
        self._wake_r = self._wake_w = -1
        self._seq = 0
        self.shim_pid = 0
        self.report_fd = -1  # the launcher's; a worker writes the reply (see _report_ok)
        self._state_pid = 0  # set only in a worker's copy (see _created_state)

    # -- set-up: in a worker, then here -------------------------------------------------

    def set_up(self, report_fd: int) -> tuple[dict, list[int]]:
        """(In the setup worker, on its own copy) all the first run needs before the shim runs
        a line: the json-file log, the listening socket, the container created, shim.pid and
        state.json written, the launcher's reply unless --start follows.

        Returns the summary and fds ``take_over`` wants (listener, json log, the init's);
        BerthError with nothing left behind.
        """
        opts = self.opts
        if len(self.sock_path) > SUN_PATH_MAX:
            raise InvalidArgument(f"run dir path too long for a unix socket: {self.run_dir}")
        self.shim_pid = os.getppid()
        self.report_fd = report_fd
        try:
            if opts.log:
                try:
                    self.log = JsonLog(opts.log, opts.log_max_size, opts.log_max_file)
                except OSError as e:
                    raise InvalidArgument(f"cannot open log {opts.log}: {e.strerror}") from None
            opts.runtime = which(opts.runtime)  # once, here, not in every worker
            self.tty = work.bundle_terminal(opts.bundle)
            for name in ("state.json", "init.pid"):
                _unlink(os.path.join(self.run_dir, name))
            self._listen()
            info, fds = work.make_process(opts, "create", self.tty, opts.stdin, "1", None, True)
        except BaseException:
            self.close(unlink=True)
            raise
        self._created_state(info)
        summary = {"opts": opts.fields(), "tty": self.tty, "init": info,
                   "log_size": self.log.size if self.log is not None else 0}
        # The worker's copies close when it exits; the socket object must not close it sooner.
        mine = [self.listener.detach()]
        self.listener = None
        if self.log is not None:
            mine.append(self.log.fd)
        return summary, mine + fds

    def take_over(self, summary: dict, fds: list[int]) -> None:
        """(In the shim) adopt what ``set_up`` made in the worker, its ``fds`` in its order."""
        opts = self.opts
        self.shim_pid = os.getpid()
        self.tty = summary["tty"]
        self.listener = _socket.socket(fileno=fds[0])
        self.listener.setblocking(False)
        if opts.log:
            self.log = JsonLog(opts.log, opts.log_max_size, opts.log_max_file, fds[1],
                               summary["log_size"])
        self._signals()
        self.loop.watch(fds[0], EPOLLIN, self._on_accept)
        self.init = self._adopt("", self.tty, opts.stdin, opts.stdin_once, summary["init"],
                                fds[2 if opts.log else 1:])
        self.init.log = self.log
        self.status = "created"
        # Children that ended before SIGCHLD had its handler (the worker, perhaps the init).
        self.reap()

    def dispose(self) -> None:
        """(The zygote's rehearsal, after ``serve``) let go of what a shim leaves to its exit:
        the signal wakeup pipe and the epoll fd. The signal dispositions are the caller's."""
        if self._wake_r >= 0:
            _signal.set_wakeup_fd(-1)
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1
        self.loop.close()

    def close(self, unlink: bool = False) -> None:
        """Drop this copy's fds (on failure, in the setup worker)."""
        if self.log is not None:
            self.log.close()
            self.log = None
        if self.listener is not None:
            self.listener.close()
            self.listener = None
            if unlink:
                _unlink(self.sock_path)
        self.loop.close()

    def _listen(self) -> None:
        _unlink(self.sock_path)
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            s.bind(self.sock_path)
            os.chmod(self.sock_path, 0o600)
            s.listen(64)
        except OSError as e:
            s.close()
            raise InvalidArgument(f"cannot listen on {self.sock_path}: {e.strerror}") from None
        s.setblocking(False)
        self.listener = s

    def _unlisten(self) -> None:
        if self.listener is not None:
            self.loop.unwatch(self.listener.fileno())
            self.listener.close()
            self.listener = None
            _unlink(self.sock_path)

    def _signals(self) -> None:
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wake_r, self._wake_w = r, w
        _signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        # SIGCHLD: the wakeup fd wakes the loop; we reap there. (HUP INT TSTP TTIN TTOU are
        # ignored since berth.shim.launch made this process.)
        _signal.signal(17, _no_op)
        self.loop.watch(r, EPOLLIN, self._on_signal)

    # -- runs of the init -----------------------------------------------------------------

    def _runtime(self, op: str, *args, after=None) -> dict:
        return work.in_fork(work.runtime_call, self.opts, op, self.opts.id, *args,
                            after=after, keep=self._report_keep())[0]

    def _report_keep(self) -> tuple[int, ...]:
        return (self.report_fd,) if self.report_fd >= 0 else ()

    def _make_proc(self, xid: str, stdin: bool, stdin_once: bool,
                   process: dict | None = None) -> Proc:
        self._seq += 1
        kind = "exec" if xid else "create"
        tty = bool(process.get("terminal")) if xid else self.tty
        info, fds = work.in_fork(work.make_process, self.opts, kind, tty, stdin,
                                 xid or str(self._seq), process, not xid,
                                 after=None if xid else self._created_state,
                                 keep=self._report_keep())
        return self._adopt(xid, tty, stdin, stdin_once, info, fds)

    def _adopt(self, xid: str, tty: bool, stdin: bool, stdin_once: bool, info: dict,
               fds: list[int]) -> Proc:
        """The process a worker made (``info`` and ``fds`` from berth.shim.work.make_process)."""
        proc = Proc(self, xid, tty, stdin_once, stdin)
        n = len(info["fds"])
        try:
            proc.adopt(info["pid"], info["fds"], fds[:n])
        except BaseException:
            # Not expected (the fds are fresh); but then the process must not outlive us.
            for fd in fds:
                os.close(fd)
            os.kill(info["pid"], SIGKILL)
            if not xid:
                self._force_delete()
            raise
        self.pids[proc.pid] = proc
        if not xid:
            self.oom = OomWatch(info.get("oom"), fds[n:])
            if self.oom.fd >= 0:
                self.loop.watch(self.oom.fd, EPOLLIN, self._on_oom)
        return proc

    def _created_state(self, res: dict) -> None:
        """(In the worker, on its copy of the shim) the files of a just-created container,
        and the launcher's reply when nothing more is to be done before it."""
        self.status = "created"
        self._state_pid = res["pid"]
        atomic.write_text(os.path.join(self.run_dir, "shim.pid"), f"{self.shim_pid}\n",
                          sync=False)
        self._write_state()
        if not self.opts.start:
            self._report_ok(res["pid"])

    def _started_state(self, res: dict) -> None:
        """(In the worker) the state of a just-started container, and the launcher's reply."""
        res["started_at"] = self.init.started_at = time.time_ns()
        self.status = "running"
        self._write_state()
        self._report_ok(self.init.pid)

    def _report_ok(self, init_pid: int) -> None:
        fd = self.report_fd
        if fd >= 0:
            self.report_fd = -1
            data = proto.frame(proto.REPLY, fastjson.dumps(
                {"ok": {"pid": self.shim_pid, "init_pid": init_pid, "socket": self.sock_path}}))
            try:
                os.write(fd, data)
            except OSError:
                pass
            os.close(fd)

    def _create_init(self) -> Proc:
        proc = self._make_proc("", self.opts.stdin, self.opts.stdin_once)
        proc.log = self.log
        self.status = "created"
        return proc

    def _force_delete(self) -> None:
        try:
            self._runtime("delete", True)
        except RuntimeFailed:
            pass

    def start_init(self) -> int:
        proc = self.init
        if self.status != "created" or proc is None or proc.done:
            raise Conflict(f"container {self.opts.id} is {self.status}, not created")
        try:
            res = self._runtime("start", after=self._started_state)
        except RuntimeFailed as e:
            # The init never ran the command: no restart, it is stopped with this error.
            self.error = str(e)
            self.restart.cancel()
            self._kill(proc, SIGKILL)
            raise
        proc.started_at = res["started_at"]
        self.status = "running"
        self._broadcast({"event": "start", "pid": proc.pid,
                         "restart_count": self.restart.restart_count,
                         "started_at": proc.started_at})
        return proc.pid

    def _restart_now(self) -> None:
        self.restart_timer = None
        try:
            self.init = self._create_init()
        except BerthError as e:
            self.error = str(e)  # nothing was left: the worker had the runtime forget it
            self._final()
            return
        try:
            self.start_init()
        except BerthError:
            pass  # start_init killed the init: its exit ends the container (restarts canceled)

    # -- signals, reaping, oom ----------------------------------------------------------------

    def _on_signal(self, ev: int) -> None:
        try:
            while os.read(self._wake_r, 256):
                pass
        except BlockingIOError:
            pass
        self.reap()

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            proc = self.pids.pop(pid, None)
            if proc is not None:
                proc.reaped_with(status)

    def _on_oom(self, ev: int) -> None:
        oom = self.oom
        if oom is None or oom.fd < 0:
            return
        if oom.read_event():
            self._oom_sent = True
            self._broadcast({"event": "oom"})
        else:
            # The eventfd also fires when the cgroup goes away; nothing more will come.
            self.loop.unwatch(oom.fd)

    def _kill(self, proc: Proc, sig: int) -> None:
        # Our child (or still a zombie we have not reaped): the pid cannot have been reused.
        if proc.pid and not proc.reaped:
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                pass

    # -- exits ---------------------------------------------------------------------------------

    def proc_done(self, proc: Proc) -> None:
        """``proc`` exited and its output is drained."""
        if proc is self.init:
            self._init_done(proc)
            return
        info = proc.exit_info()
        self._broadcast({"event": "exec-exit", "exec": proc.id, "exit_code": proc.exit_code,
                         "signal": proc.signal})
        self._release(proc, info)
        finished = [x for x, p in self.execs.items() if p.done]
        for x in finished[:max(0, len(finished) - MAX_FINISHED_EXECS)]:
            del self.execs[x]

    def _release(self, proc: Proc, info: dict) -> None:
        for d in proc.waiters:
            d.send(info)
        proc.waiters = []
        ev = proto.frame(proto.EVENT, fastjson.dumps({"event": "exit", "exec": proc.id, **info}))
        for c in proc.attachers:
            c.send(ev)
            c.attach = None
            c.close_when_flushed()
        proc.attachers = []

    def _init_done(self, proc: Proc) -> None:
        oom = False
        if self.oom is not None:
            oom = self.oom.killed()
            self.loop.unwatch(self.oom.fd)
            self.oom.close()
            self.oom = None
        if oom and not self._oom_sent:
            # The kill and the exit can arrive in one epoll batch; docker sends "oom" first.
            self._broadcast({"event": "oom"})
        self._oom_sent = False
        try:
            self._runtime("delete_quietly")
        except RuntimeFailed:
            pass
        info = proc.exit_info()
        info["oom_killed"] = oom
        if self.error:
            info["error"] = self.error
        if self.stop_timer is not None:
            self.stop_timer.cancel()
            self.stop_timer = None
        delay = None
        if proc.started_at and not self.deleting:
            ran = (proc.exited_at - proc.started_at) / 1e9
            delay = self.restart.should_restart(proc.exit_code, self.manual_stop, ran)
        info["restart_count"] = self.restart.restart_count
        self.last_exit = info
        self._release(proc, info)
        if delay is None:
            self._final()
            return
        self.status = "restarting"
        self._write_state()
        self._broadcast({"event": "exit", **info, "restarting": True, "delay": delay})
        self.restart_timer = self.loop.later(delay, self._restart_now)

    def _final(self) -> None:
        if self.status == "stopped":
            return
        self.status = "stopped"
        if self.restart_timer is not None:
            self.restart_timer.cancel()
            self.restart_timer = None
        if self.last_exit is None:
            self.last_exit = {"exit_code": None, "signal": 0, "started_at": 0, "exited_at": 0,
                              "oom_killed": False, "restart_count": self.restart.restart_count}
        if self.error:
            self.last_exit["error"] = self.error
        # Order matters for a berthd that was down: state.json is whole before the socket
        # disappears, so "no socket" always finds the final record.
        self._write_state()
        self._unlisten()
        pid_path = os.path.join(self.run_dir, "shim.pid")
        try:
            with open(pid_path) as f:
                if f.read().strip() == str(os.getpid()):
                    os.unlink(pid_path)
        except OSError:
            pass
        _unlink(os.path.join(self.run_dir, "init.pid"))
        if self.log is not None:
            self.log.close()
            self.log = None
        for p in self.execs.values():
            if not p.done:
                self._kill(p, SIGKILL)
        self._broadcast({"event": "exit", **self.last_exit, "restarting": False})
        for d in self.stop_waiters:
            d.send(self.last_exit)
        self.stop_waiters = []
        self.exiting = True
        self.exit_deadline = time.monotonic() + EXIT_LINGER
        # Not now: the request being handled (a kill, a delete) still owes its reply.
        self.loop.later(0, self._close_idle)

    def _close_idle(self) -> None:
        for c in list(self.conns):
            if c.attach is None:
                c.close_when_flushed()

    def finished(self) -> bool:
        """True when the shim may exit: stopped, every process done, every client served."""
        if not self.exiting:
            return False
        if time.monotonic() >= self.exit_deadline:
            return True
        if any(not p.done for p in self.execs.values()):
            return False
        if self.init is not None and not self.init.done:
            return False
        return not self.conns

    # -- state ---------------------------------------------------------------------------------

    def state(self) -> dict:
        p = self.init
        execs = {}
        for x, e in self.execs.items():
            execs[x] = {"pid": e.pid, "running": not e.done, "exit_code": e.exit_code,
                        "signal": e.signal, "tty": e.tty}
        pid = self._state_pid or (p.pid if p is not None and not p.reaped
                                  and self.status != "stopped" else 0)
        return {
            "id": self.opts.id, "status": self.status, "pid": pid,
            "shim_pid": self.shim_pid, "tty": self.tty,
            "started_at": p.started_at if p is not None else 0,
            "restart_count": self.restart.restart_count,
            "restart_policy": self.restart.policy + (f":{self.restart.max_retries}"
                                                     if self.restart.max_retries else ""),
            "manual_stop": self.manual_stop, "exit": self.last_exit, "error": self.error,
            "execs": execs,
        }

    def _write_state(self) -> None:
        atomic.write_text(os.path.join(self.run_dir, "state.json"), fastjson.dumps(self.state()),
                          sync=False)

    def _broadcast(self, ev: dict) -> None:
        data = None
        # A copy: a send to a subscriber whose peer has gone (EPIPE) drops it from the set.
        for c in list(self.conns):
            if c.subscribed:
                if data is None:
                    data = proto.frame(proto.EVENT, fastjson.dumps(ev))
                c.send(data)

    # -- connections ---------------------------------------------------------------------------

    def _on_accept(self, ev: int) -> None:
        while self.listener is not None:
            try:
                fd, _ = self.listener._accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            os.set_blocking(fd, False)
            c = Conn(self, fd)
            self.conns.add(c)
            c.rearm()

    def conn_lost(self, c: Conn) -> None:
        if c.fd < 0:
            return
        self._end_attach(c, eof=True)
        self.loop.unwatch(c.fd)
        os.close(c.fd)
        c.fd = -1
        c.out.clear()
        c.subscribed = False
        self.conns.discard(c)

    def conn_eof(self, c: Conn) -> None:
        """The client will send nothing more; it may still want replies and output."""
        c.read_closed = True
        if c.attach is not None and c.stdin:
            self._stdin_ended(c)
        if c.fd < 0:
            return
        if c.attach is None and not c.pending and not c.subscribed:
            c.close_when_flushed()
        else:
            c.rearm()

    def _end_attach(self, c: Conn, eof: bool) -> None:
        p = c.attach
        if p is None:
            return
        if c.stdin and eof and p.stdin_once and not p.tty:
            p.close_stdin()
        c.attach = None
        if c in p.attachers:
            p.attachers.remove(c)
            p.drained()

    def _stdin_ended(self, c: Conn, detached: bool = False) -> None:
        """An attacher's stdin ended (EOF, or its detach keys), as moby's attach handles it.

        With stdin_once and no tty the process's stdin closes; on EOF the attach goes on until
        the process exits. Otherwise the attach ends with its stdin (the process runs on).
        """
        p = c.attach
        c.stdin = False
        if p.stdin_once and not p.tty:
            p.close_stdin()
            if not detached:
                return
        self._end_attach(c, eof=False)
        c.event({"event": "detached"})
        c.close_when_flushed()

    def stdin_pressure(self, proc: Proc, high: bool) -> None:
        for c in proc.attachers:
            if c.stdin and c.reading == high:
                c.reading = not high
                c.rearm()

    def on_frame(self, c: Conn, kind: int, payload: bytes) -> None:
        if kind == proto.REQUEST:
            self._request(c, payload)
        elif kind == proto.STDIN:
            p = c.attach
            if p is None or not c.stdin:
                return
            if not payload:
                self._stdin_ended(c)
                return
            if c.dk and len(payload) == 1:
                # moby's escape proxy: a detach sequence counts only typed key by key.
                if payload[0] == c.dk[c.dk_pos]:
                    c.dk_pos += 1
                    if c.dk_pos == len(c.dk):
                        c.dk_pos = 0
                        self._stdin_ended(c, detached=True)
                    return
                if c.dk_pos:
                    payload = c.dk[:c.dk_pos] + payload
                    c.dk_pos = 0
            elif c.dk_pos:
                payload = c.dk[:c.dk_pos] + payload
                c.dk_pos = 0
            p.write_stdin(payload)
        else:
            self.conn_lost(c)

    def _request(self, c: Conn, payload: bytes) -> None:
        rid = None
        try:
            msg = fastjson.loads(payload)
            if not isinstance(msg, dict):
                raise BadRequest("request is not a JSON object")
            rid = msg.get("id")
            op = msg.get("op")
            handler = _OPS.get(op) if isinstance(op, str) else None
            if handler is None:
                raise BadRequest(f"unknown shim op: {op!r}")
            result = handler(self, c, rid, msg)
        except BerthError as e:
            c.reply(rid, error=e)
            return
        except ValueError as e:
            c.reply(rid, error=BadRequest(f"bad request: {e}"))
            return
        if result is not _DEFER:
            c.reply(rid, result)

    # -- ops --------------------------------------------------------------------------------------

    def _target(self, msg: dict) -> Proc:
        xid = msg.get("exec") or ""
        if not xid:
            if self.init is None:
                raise NoSuchProcess(f"container {self.opts.id} has no process")
            return self.init
        p = self.execs.get(xid)
        if p is None:
            raise NoSuchProcess(f"no such exec: {xid}")
        return p

    def op_state(self, c, rid, msg):
        return self.state()

    def op_subscribe(self, c, rid, msg):
        c.subscribed = True
        return {"state": self.state()}

    def op_start(self, c, rid, msg):
        return {"pid": self.start_init()}

    def op_attach(self, c, rid, msg):
        p = self._target(msg)
        if p.done or (p is self.init and self.status in ("restarting", "stopped")):
            raise Conflict(f"container {self.opts.id} is not running")
        self._attach(c, p, msg)
        return {}

    def _attach(self, c: Conn, p: Proc, a: dict) -> None:
        if c.attach is not None:
            raise Conflict("this connection is attached already")
        want = []
        if a.get("stdout", True):
            want.append(proto.STDOUT)
        if a.get("stderr", True) and not p.tty:
            want.append(proto.STDERR)
        dk = a.get("detach_keys") or b""
        if isinstance(dk, list):
            if not all(isinstance(b, int) and 0 <= b < 256 for b in dk):
                raise BadRequest("detach_keys must be bytes")
            dk = bytes(dk)
        elif isinstance(dk, str):
            dk = dk.encode("latin-1")
        c.want = tuple(want)
        c.stdin = bool(a.get("stdin")) and p.stdin_open
        c.dk = dk
        c.dk_pos = 0
        c.attach = p
        p.attachers.append(c)

    def op_exec(self, c, rid, msg):
        xid = msg.get("exec_id")
        if not isinstance(xid, str) or not _valid_exec_id(xid):
            raise BadRequest(f"invalid exec id: {xid!r}")
        if xid in self.execs:
            raise Conflict(f"exec {xid} exists already")
        if self.status == "paused":
            raise Conflict(f"container {self.opts.id} is paused, unpause it before exec")
        if self.status != "running":
            raise Conflict(f"container {self.opts.id} is not running")
        process = msg.get("process")
        if not isinstance(process, dict) or not isinstance(process.get("args"), list) \
                or not process["args"]:
            raise BadRequest("exec needs an OCI process with args")
        attach = msg.get("attach")
        if attach is not None and not isinstance(attach, dict):
            raise BadRequest("attach must be an object")
        if attach is not None and c.attach is not None:
            raise Conflict("this connection is attached already")
        proc = self._make_proc(xid, bool(msg.get("stdin")), True, process)
        pid = proc.pid
        proc.started_at = time.time_ns()
        self.execs[xid] = proc
        if attach is not None:
            self._attach(c, proc, attach)
        self._broadcast({"event": "exec-start", "exec": xid, "pid": pid})
        return {"pid": pid}

    def op_kill(self, c, rid, msg):
        sig = _signal_arg(msg.get("signal", 15))
        p = self._target(msg)
        is_init = p is self.init
        if is_init and msg.get("stop"):
            self.manual_stop = True
            self.restart.cancel()
            if self.status == "restarting":
                self._final()
                return {}
        if p.reaped or p.done or (is_init and self.status in ("restarting", "stopped")):
            raise Conflict(f"container {self.opts.id} is not running" if is_init
                           else f"exec {p.id} is not running")
        if is_init and msg.get("all"):
            self._runtime("kill", sig, True)
        else:
            self._kill(p, sig)
        if is_init and msg.get("stop") and self.status == "paused":
            # As dockerd does: the signal waits in the frozen cgroup until it thaws.
            self._resume_for_kill()
        return {}

    def op_stop(self, c, rid, msg):
        sig = _signal_arg(msg.get("signal", 15))
        timeout = msg.get("timeout", 10)
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool):
            raise BadRequest("stop timeout must be a number of seconds")
        self.manual_stop = True
        self.restart.cancel()
        if self.status == "stopped":
            return self.last_exit or {}
        if self.status == "restarting":
            self._final()
            return self.last_exit or {}
        p = self.init
        self.stop_waiters.append(_Deferred(c, rid))
        self._kill(p, sig)
        if self.status == "paused":
            self._resume_for_kill()
        if sig != SIGKILL and timeout >= 0 and self.stop_timer is None:
            self.stop_timer = self.loop.later(timeout, lambda: self._kill(self.init, SIGKILL))
        return _DEFER

    def _resume_for_kill(self) -> None:
        try:
            self._runtime("resume")
        except RuntimeFailed:
            pass
        self.status = "running"

    def op_wait(self, c, rid, msg):
        p = self._target(msg)
        if p.done:
            if p is self.init and self.last_exit is not None:
                return self.last_exit
            return p.exit_info()
        p.waiters.append(_Deferred(c, rid))
        return _DEFER

    def op_resize(self, c, rid, msg):
        p = self._target(msg)
        h, w = msg.get("height"), msg.get("width")
        if not (isinstance(h, int) and isinstance(w, int) and 0 <= h < 65536 and 0 <= w < 65536):
            raise BadRequest("resize needs height and width in 0..65535")
        if p.master < 0:
            raise Conflict("the process has no terminal" if not p.done
                           else "the process is not running")
        import fcntl
        import termios

        fcntl.ioctl(p.master, termios.TIOCSWINSZ,
                    h.to_bytes(2, "little") + w.to_bytes(2, "little") + bytes(4))
        return {}

    def op_close_stdin(self, c, rid, msg):
        self._target(msg).close_stdin()
        return {}

    def op_pause(self, c, rid, msg):
        if self.status != "running":
            raise Conflict(f"container {self.opts.id} is not running")
        self._runtime("pause")
        self.status = "paused"
        self._write_state()
        self._broadcast({"event": "paused"})
        return {}

    def op_resume(self, c, rid, msg):
        if self.status != "paused":
            raise Conflict(f"container {self.opts.id} is not paused")
        self._runtime("resume")
        self.status = "running"
        self._write_state()
        self._broadcast({"event": "resumed"})
        return {}

    def op_update(self, c, rid, msg):
        pol = msg.get("restart")
        if pol is not None:
            if not isinstance(pol, str):
                raise BadRequest("restart must be a policy string")
            self.restart.policy, self.restart.max_retries = parse_policy(pol)
            self._write_state()
        return {}

    def op_delete(self, c, rid, msg):
        if self.status == "stopped":
            return self.last_exit or {}
        if self.status == "restarting":
            self.manual_stop = True
            self.restart.cancel()
            self._final()
            return self.last_exit or {}
        if self.status in ("running", "paused") and not msg.get("force"):
            raise Conflict(f"container {self.opts.id} is {self.status}: stop it first or force")
        self.manual_stop = True
        self.deleting = self.status == "created"
        self.restart.cancel()
        self.stop_waiters.append(_Deferred(c, rid))
        if self.deleting:
            self._force_delete()
        self._kill(self.init, SIGKILL)
        if self.status == "paused":
            self._resume_for_kill()
        return _DEFER

    # -- the loop --------------------------------------------------------------------------------

    def serve(self) -> None:
        loop = self.loop
        while not self.finished():
            loop.run_once(0.5 if self.exiting else -1)
        for c in list(self.conns):
            if c.out and c.fd >= 0:
                try:
                    os.write(c.fd, c.out)
                except OSError:
                    pass
            self.conn_lost(c)


_DEFER = object()

_OPS = {name[3:]: fn for name, fn in vars(Shim).items() if name.startswith("op_")}


def _no_op(signum, frame) -> None:
    pass


def _signal_arg(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65:
        raise BadRequest(f"invalid signal: {value!r}")
    return value


def _valid_exec_id(xid: str) -> bool:
    return 0 < len(xid) <= 128 and all(ch.isalnum() or ch in "-_." for ch in xid) \
        and xid[0] != "."


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
