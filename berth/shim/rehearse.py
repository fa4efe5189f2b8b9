"""The zygote's rehearsal: one whole shim life on a stand-in container, in the zygote itself.

Why — memory. A shim is a fork of the zygote and pays a private page for every shared page it
writes. The first run of a code path in a process writes far more than its later runs: the
interpreter's type-attribute cache fills, lazily made objects come into being, caches and
tables grow, names are looked up the slow way. Run once in the zygote, those writes happen
there, before any fork, and stay shared; a shim then writes little more than reference
counts. The zygote rehearses once before it says "ready" and again whenever it has been idle
for a while, eight times in all (berth.shim.launch): CPython 3.11 specializes a code object's
instructions only after several runs, and those rewrites too belong in the zygote. (Measured
through berthd, a shim's private memory: 1.26 MB without a rehearsal, 1.13 MB after one,
1.05 MB after eight. A shim forked between two rehearsals keeps the pages the later ones
rewrite, ~0.4 MB more; only the few forked in the zygote's first idle half-second pay it.)

What runs is the real thing — ``berth.shim.launch.live`` in the zygote itself, its setup
worker, the shim's loop, its runtime workers — with two stand-ins:

- a runtime (what the workers get from ``for_options``) whose container is a process that
  waits to be killed, and whose other commands do nothing;
- a client, in a fork of its own, doing what berthd does with a shim: start, subscribe,
  state, kill as a stop; it then waits for the exit event.

Afterwards nothing is left: the processes reaped, the run dir removed, no fd open, the signal
dispositions and the subreaper flag as they were. Best effort: a failure is written to stderr
and the zygote goes on without a rehearsal (its shims then cost more, nothing else).
"""

import _signal
import _socket
import os
import sys

from berth import fastjson
from berth.linux.prctl_lite import set_child_subreaper

from . import proto, work

__all__ = ["rehearse"]

TIMEOUT = 5.0
_SIGNALS = (1, 2, 15, 17, 20, 21, 22)  # what a shim sets (and SIGTERM, to be sure)


class _StandIn:
    """A runtime with the drivers' methods (berth.shim.runtime) and a process for a container."""

    def __init__(self, opts, log) -> None:
        pass

    def create(self, cid, bundle, pid_file, stdio, console_socket=None) -> None:
        pid = os.fork()
        if pid == 0:
            try:
                for i, fd in enumerate(stdio):
                    os.dup2(fd, i)
                os.closerange(3, 1 << 16)
                # Killed by the client in a few ms; should the client be gone, SIGALRM ends it
                # (and then the rehearsal), instead of the zygote waiting for ever.
                _signal.alarm(int(4 * TIMEOUT))
                while True:
                    _signal.pause()
            finally:
                os._exit(0)
        with open(pid_file, "w") as f:
            f.write(str(pid))

    def start(self, cid) -> None:
        pass

    def kill(self, cid, signal, all=False) -> None:
        pass

    def delete(self, cid, force=False) -> None:
        pass

    def close(self) -> None:
        pass


def _stand_in(opts, log):
    return _StandIn(opts, log)


def _frames(sock, dec: proto.Decoder):
    while True:
        data = sock.recv(65536)
        if not data:
            raise EOFError("the rehearsal's shim closed the connection")
        yield from dec.feed(data)


def _call(sock, dec: proto.Decoder, msg: dict) -> dict:
    sock.sendall(proto.frame(proto.REQUEST, fastjson.dumps(msg)))
    for kind, payload in _frames(sock, dec):
        if kind == proto.REPLY:
            reply = fastjson.loads(payload)
            if reply.get("id") == msg["id"]:
                if "error" in reply:
                    raise RuntimeError(f"rehearsal {msg['op']}: {reply['error']}")
                return reply["ok"]


def _connect(path: str):
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect(path)
    return s


def _client(reply_fd: int, sock_path: str) -> None:
    """(In a fork) berthd's part: the spawn reply, then start, subscribe, state, stop."""
    spawn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, reply_fd)
    spawn.settimeout(TIMEOUT)
    init = 0
    try:
        for kind, payload in _frames(spawn, proto.Decoder()):
            if kind == proto.REPLY:
                init = fastjson.loads(payload)["ok"]["init_pid"]
                break
        c1, d1 = _connect(sock_path), proto.Decoder()
        _call(c1, d1, {"id": 1, "op": "start"})
        c2, d2 = _connect(sock_path), proto.Decoder()
        _call(c2, d2, {"id": 1, "op": "subscribe"})
        _call(c2, d2, {"id": 2, "op": "state"})
        _call(c1, d1, {"id": 2, "op": "kill", "signal": 9, "stop": True})
        for kind, payload in _frames(c2, d2):
            if kind == proto.EVENT:
                ev = fastjson.loads(payload)
                if ev.get("event") == "exit" and not ev.get("restarting"):
                    break
        c1.close()
        c2.close()
    finally:
        if init:
            try:
                os.kill(init, 9)
            except ProcessLookupError:
                pass


def _remove_tree(d: str) -> None:
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return
    for name in names:
        try:
            os.unlink(f"{d}/{name}")
        except FileNotFoundError:
            pass
    os.rmdir(d)


def _sweep() -> None:
    """Reap what of ours has ended already (with SIGCHLD ignored again, the rest goes unseen)."""
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return


def rehearse(base_dir: str) -> None:
    """Run the rehearsal in this (the zygote's) process, in a run dir made under ``base_dir``."""
    from . import launch

    d = f"{base_dir}/.shim-rehearsal-{os.getpid()}"
    saved = {sig: _signal.getsignal(sig) for sig in _SIGNALS}
    real = work.for_options
    client = 0
    try:
        os.mkdir(d, 0o700)
        with open(f"{d}/config.json", "w") as f:
            f.write('{"process": {"terminal": false}}')
        a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
        argv = ["--id", f"shim-rehearsal-{os.getpid()}", "--bundle", d, "--run-dir", d,
                "--log", f"{d}/json.log", "--runtime", sys.executable]
        a.sendall(proto.frame(proto.REQUEST, fastjson.dumps({"op": "spawn", "argv": argv})))
        client = os.fork()
        if client == 0:
            code = 1
            try:
                b.close()
                _client(a.detach(), f"{d}/shim.sock")
                code = 0
            finally:
                os._exit(code)
        a.close()
        set_child_subreaper()
        work.for_options = _stand_in
        shim = launch.live(b.detach(), stderr=False)
        if shim is None:
            raise RuntimeError("the rehearsal's shim could not be set up")
        shim.dispose()
    except Exception as e:  # noqa: BLE001 - best effort, see the module's docstring
        sys.stderr.write(f"berth shim zygote: rehearsal failed: {e}\n")
    finally:
        work.for_options = real
        set_child_subreaper(False)
        if client:
            # Now, while SIGCHLD is not ignored (a wait with it ignored waits for every child,
            # the zygote's shims too). The client ends right after the exit event.
            try:
                os.waitpid(client, 0)
            except ChildProcessError:
                pass
        for sig, handler in saved.items():
            _signal.signal(sig, _signal.SIG_DFL if handler is None else handler)
        _sweep()
        try:
            _remove_tree(d)
        except OSError:
            pass
