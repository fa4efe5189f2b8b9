"""The client side of the shim, for berthd (asyncio): launch shims, talk to them, notice deaths.

Only berthd imports this (it may import asyncio; the shim never does). How the engine uses it::

    zygote = await Zygote.start(f"{run_root}/shim-zygote.sock")    # once, at daemon start
    info = await launch(ShimOptions(id, bundle, run_dir, log=...), zygote)  # container created
    shim = await ShimClient.connect(run_dir)
    att = await shim.attach(stdin=True)           # before start, to miss no output
    await shim.start()
    ... att.read() / att.write() ...; exit = await shim.wait()

    # after a berthd restart (or at any time): follow each container until it stops
    exit = await watch(run_dir, on_event)         # live restore: reconnects, re-subscribes
    if exit.get("shim_died"):
        await reap_dead_shim(run_dir, id, runtime)   # the runtime kills what the shim left

A shim that is gone is noticed two ways: its socket closes (every connection sees EOF) and its
pidfd becomes readable. ``watch`` then reads ``state.json``: a final record there means the
container stopped normally; none means the shim died and the container is reported exited with
137 (128 + SIGKILL), as containerd reports a dead shim's task.
"""

import asyncio
import os
import sys

import berth
from berth import errors, fastjson
from berth.errors import Unavailable

from . import proto
from .config import ShimOptions

__all__ = ["Attachment", "ShimClient", "ShimDied", "ShimUnavailable", "Zygote", "launch",
           "read_state", "reap_dead_shim", "shim_command", "watch"]

DEAD_SHIM_EXIT = 137
OUTPUT_QUEUE = 32  # output chunks (≤ 64 KiB each) an Attachment holds before it stops reading


class ShimUnavailable(Unavailable):
    """No shim answers at this run dir (it exited, or never started)."""


class ShimDied(Unavailable):
    """The shim went away without recording that its container stopped."""


# ``python3 -m berth.shim`` would do the same through runpy, which costs ~3 ms and ~300 kB
# of heap that every shim forked from the zygote would map.
_MAIN = "import sys; from berth.shim.launch import main; sys.exit(main())"


def shim_command(*args: str) -> tuple[list[str], dict]:
    """argv and environment to run the shim's entry point (berth.shim.launch) with ARGS.

    ``-S`` skips site (~30 ms); berth is then found through PYTHONPATH, which -S keeps. ``-P``:
    not the working directory first in sys.path (berthd run from a checkout, or from a
    directory others can write, would run the shim, and the runtime's init, from there).
    """
    src = os.path.dirname(os.path.dirname(os.path.abspath(berth.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = src
    return [sys.executable, "-P", "-S", "-c", _MAIN, *args], env


def _raise_remote(reply: dict):
    kind = reply.get("kind", "Internal")
    cls = getattr(errors, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, errors.BerthError)):
        cls = errors.Internal
    raise cls(str(reply.get("error", "shim error")))


def _unwrap(reply) -> dict:
    if not isinstance(reply, dict):
        raise errors.Internal("shim sent a malformed reply")
    if "error" in reply:
        _raise_remote(reply)
    return reply.get("ok") or {}


async def _read_reply_frame(reader: asyncio.StreamReader) -> dict:
    dec = proto.Decoder()
    while True:
        data = await reader.read(65536)
        if not data:
            raise ShimUnavailable("the shim exited before it reported")
        for kind, payload in dec.feed(data):
            if kind == proto.REPLY:
                return fastjson.loads(payload)


class Zygote:
    """The fork server shims are started from (berth.shim.launch); lives while berthd does."""

    def __init__(self, path: str, proc: asyncio.subprocess.Process | None = None) -> None:
        self.path = path
        self.proc = proc

    @classmethod
    async def start(cls, path: str, timeout: float = 10.0) -> "Zygote":
        argv, env = shim_command("zygote", path)
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout)
        except TimeoutError:
            line = b""
        if line != b"ready\n":
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            raise ShimUnavailable(f"shim zygote did not start at {path}")
        return cls(path, proc)

    async def spawn(self, opts: ShimOptions, timeout: float = 120.0) -> dict:
        try:
            reader, writer = await asyncio.open_unix_connection(self.path)
        except OSError as e:
            raise ShimUnavailable(f"shim zygote not listening at {self.path}: {e}") from None
        try:
            writer.write(proto.frame(proto.REQUEST, fastjson.dumps(
                {"op": "spawn", "argv": opts.to_argv()})))
            await writer.drain()
            return _unwrap(await asyncio.wait_for(_read_reply_frame(reader), timeout))
        finally:
            writer.close()

    async def close(self) -> None:
        """End the zygote (the shims it started live on)."""
        if self.proc is None:
            return
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def launch(opts: ShimOptions, zygote: Zygote | None = None) -> dict:
    """Start a shim for ``opts``; returns {pid, init_pid, socket} once the container exists."""
    if zygote is not None:
        return await zygote.spawn(opts)
    argv, env = shim_command("run", *opts.to_argv())
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, start_new_session=True)
    out, err = await proc.communicate()
    lines = out.strip().splitlines()
    if not lines:
        raise errors.Internal(f"shim printed nothing: {err.decode(errors='replace').strip()}")
    return _unwrap(fastjson.loads(lines[-1]))


class _Channel:
    """One connection to a shim: requests with ids, and queues for events and output."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pending: dict[int, asyncio.Future] = {}
        self.events: asyncio.Queue = asyncio.Queue()
        # Bounded: a reader that does not keep up stops our reading, the shim's buffer fills
        # and the container blocks on its pipe, as under dockerd (not berthd's memory growing).
        self.output: asyncio.Queue = asyncio.Queue(OUTPUT_QUEUE)
        self.next_id = 0
        self.closed = False
        self.task = asyncio.ensure_future(self._read_loop())

    @classmethod
    async def open(cls, run_dir: str) -> "_Channel":
        path = os.path.join(run_dir, "shim.sock")
        try:
            reader, writer = await asyncio.open_unix_connection(path)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise ShimUnavailable(f"no shim listening at {path}") from e
        return cls(reader, writer)

    async def _read_loop(self) -> None:
        dec = proto.Decoder()
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                for kind, payload in dec.feed(data):
                    if kind == proto.REPLY:
                        msg = fastjson.loads(payload)
                        fut = self.pending.pop(msg.get("id"), None)
                        if fut is not None and not fut.done():
                            fut.set_result(msg)
                    elif kind == proto.EVENT:
                        ev = fastjson.loads(payload)
                        self.events.put_nowait(ev)
                        # An attach stream's own ending (its process's exit, its detach
                        # keys) comes in order with its output.
                        name = ev.get("event")
                        if name == "detached" or (name == "exit" and "exec" in ev):
                            await self.output.put((proto.EVENT, ev))
                    else:
                        await self.output.put((kind, payload))
        except (OSError, ValueError, proto.ProtocolError):
            pass
        finally:
            self.closed = True
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(ShimUnavailable("the shim closed the connection"))
            self.pending.clear()
            self.events.put_nowait(None)
            self._end_output()

    def _end_output(self) -> None:
        # The end marker must get in even when the queue is full of unread output.
        q = self.output
        if q.full():
            # asyncio.Queue has no put that ignores maxsize: append as put_nowait would.
            q._queue.append(None)
            q._wakeup_next(q._getters)
        else:
            q.put_nowait(None)

    async def call(self, op: str, args: dict) -> dict:
        if self.closed:
            raise ShimUnavailable("the shim closed the connection")
        self.next_id += 1
        rid = self.next_id
        fut = asyncio.get_running_loop().create_future()
        self.pending[rid] = fut
        try:
            self.writer.write(proto.frame(proto.REQUEST, fastjson.dumps(
                {"id": rid, "op": op, **args})))
            await self.writer.drain()
        except OSError:
            self.pending.pop(rid, None)
            fut.cancel()
            raise ShimUnavailable("the shim closed the connection") from None
        return _unwrap(await fut)

    async def send(self, kind: int, data: bytes) -> None:
        if self.closed:
            raise ShimUnavailable("the shim closed the connection")
        try:
            self.writer.write(proto.frame(kind, data))
            await self.writer.drain()
        except OSError:
            raise ShimUnavailable("the shim closed the connection") from None

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass
        self.task.cancel()
        try:
            await self.task
        except (asyncio.CancelledError, Exception):
            pass


class Attachment:
    """An attach stream: ``read`` output until it returns None; ``exit`` then says how it ended."""

    def __init__(self, ch: _Channel, pid: int = 0) -> None:
        self._ch = ch
        self.pid = pid
        self.exit: dict | None = None
        self.detached = False

    async def read(self) -> tuple[int, bytes] | None:
        """(proto.STDOUT or proto.STDERR, bytes), or None when the stream has ended."""
        while True:
            item = await self._ch.output.get()
            if item is None:
                self._ch._end_output()
                return None
            kind, payload = item
            if kind == proto.EVENT:
                if payload.get("event") == "exit":
                    self.exit = payload
                else:
                    self.detached = True
                continue
            return kind, payload

    async def read_all(self) -> tuple[bytes, bytes]:
        out, err = [], []
        while (item := await self.read()) is not None:
            (out if item[0] == proto.STDOUT else err).append(item[1])
        return b"".join(out), b"".join(err)

    async def write(self, data: bytes) -> None:
        if data:
            await self._ch.send(proto.STDIN, data)

    async def close_stdin(self) -> None:
        await self._ch.send(proto.STDIN, b"")

    async def resize(self, height: int, width: int, exec: str = "") -> None:
        """Sent without waiting for the reply: it would queue behind unread output."""
        self._ch.next_id += 1
        await self._ch.send(proto.REQUEST, fastjson.dumps(
            {"id": self._ch.next_id, "op": "resize", "exec": exec, "height": height,
             "width": width}).encode())

    async def close(self) -> None:
        await self._ch.close()


class ShimClient:
    """Requests to one shim over one connection; events after ``subscribe``."""

    def __init__(self, ch: _Channel, run_dir: str) -> None:
        self._ch = ch
        self.run_dir = run_dir

    @classmethod
    async def connect(cls, run_dir: str) -> "ShimClient":
        return cls(await _Channel.open(run_dir), run_dir)

    async def call(self, op: str, **args) -> dict:
        return await self._ch.call(op, args)

    def _stopped_state(self) -> dict:
        """After the shim left: its final state.json, or ShimUnavailable if there is none."""
        st = read_state(self.run_dir)
        if st is None or st.get("status") != "stopped":
            raise ShimUnavailable(f"no shim listening at {self.run_dir} and no final state")
        return st

    async def state(self) -> dict:
        try:
            return await self.call("state")
        except ShimUnavailable:
            return self._stopped_state()

    async def subscribe(self) -> dict:
        """Start the event stream on this connection; returns the state at that moment."""
        return (await self.call("subscribe"))["state"]

    async def next_event(self) -> dict | None:
        """The next event, or None once the connection has closed."""
        ev = await self._ch.events.get()
        if ev is None:
            self._ch.events.put_nowait(None)
        return ev

    async def start(self) -> int:
        return (await self.call("start"))["pid"]

    async def kill(self, signal: int = 15, exec: str = "", all: bool = False,
                   stop: bool = False) -> None:
        await self.call("kill", exec=exec, signal=signal, all=all, stop=stop)

    async def stop(self, signal: int = 15, timeout: float = 10) -> dict:
        return await self.call("stop", signal=signal, timeout=timeout)

    async def wait(self, exec: str = "") -> dict:
        """The process's exit record once it has exited (also if the shim has left since)."""
        try:
            return await self.call("wait", exec=exec)
        except ShimUnavailable:
            st = self._stopped_state()
        if not exec:
            return dict(st.get("exit") or {})
        x = (st.get("execs") or {}).get(exec)
        if x is None:
            raise errors.NotFound(f"no such exec: {exec}")
        return {"exit_code": x.get("exit_code"), "signal": x.get("signal", 0)}

    async def resize(self, height: int, width: int, exec: str = "") -> None:
        await self.call("resize", exec=exec, height=height, width=width)

    async def close_stdin(self, exec: str = "") -> None:
        await self.call("close_stdin", exec=exec)

    async def pause(self) -> None:
        await self.call("pause")

    async def resume(self) -> None:
        await self.call("resume")

    async def update(self, restart: str) -> None:
        await self.call("update", restart=restart)

    async def delete(self, force: bool = False) -> dict:
        return await self.call("delete", force=force)

    async def attach(self, exec: str = "", stdin: bool = False, stdout: bool = True,
                     stderr: bool = True, detach_keys: bytes = b"") -> Attachment:
        """A new connection streaming the process's output (and taking its stdin)."""
        ch = await _Channel.open(self.run_dir)
        try:
            await ch.call("attach", {"exec": exec, "stdin": stdin, "stdout": stdout,
                                     "stderr": stderr, "detach_keys": list(detach_keys)})
        except BaseException:
            await ch.close()
            raise
        return Attachment(ch)

    async def exec(self, exec_id: str, process: dict, stdin: bool = False,
                   attach: bool = True, detach_keys: bytes = b"") -> Attachment | int:
        """Run ``process`` (an OCI process object) in the container.

        With ``attach`` an Attachment to it (its ``pid`` set); otherwise just the pid.
        """
        if not attach:
            return (await self.call("exec", exec_id=exec_id, process=process,
                                    stdin=stdin))["pid"]
        ch = await _Channel.open(self.run_dir)
        try:
            r = await ch.call("exec", {"exec_id": exec_id, "process": process, "stdin": stdin,
                                       "attach": {"stdin": stdin, "stdout": True,
                                                  "stderr": True,
                                                  "detach_keys": list(detach_keys)}})
        except BaseException:
            await ch.close()
            raise
        return Attachment(ch, r["pid"])

    async def close(self) -> None:
        await self._ch.close()


def read_state(run_dir: str) -> dict | None:
    """The shim's last state.json, or None if there is none (or it is unreadable)."""
    try:
        with open(os.path.join(run_dir, "state.json"), "rb") as f:
            st = fastjson.loads(f.read())
    except (OSError, ValueError):
        return None
    return st if isinstance(st, dict) else None


def _dead_record(st: dict | None) -> dict:
    started = (st or {}).get("started_at", 0)
    return {"exit_code": DEAD_SHIM_EXIT, "signal": 9, "oom_killed": False,
            "started_at": started, "exited_at": 0, "restart_count":
            (st or {}).get("restart_count", 0), "error": "shim died", "shim_died": True}


def _final_exit(st: dict | None) -> dict | None:
    if st and st.get("status") == "stopped":
        return dict(st.get("exit") or {})
    return None


async def _pid_gone(pid: int) -> None:
    """Returns when process ``pid`` has exited (its pidfd becomes readable)."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    loop.add_reader(fd, lambda: fut.done() or fut.set_result(None))
    try:
        await fut
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def watch(run_dir: str, on_event=None) -> dict:
    """Follow the container until it stops; its final exit record.

    Works whether the shim is up (subscribes; ``on_event`` sees every event), already gone
    after recording the stop, or dead without one (``{"shim_died": True, "exit_code": 137}``).
    """
    try:
        client = await ShimClient.connect(run_dir)
    except ShimUnavailable:
        st = read_state(run_dir)
        return _final_exit(st) or _dead_record(st)
    try:
        try:
            st = await client.subscribe()
        except Unavailable:
            st = read_state(run_dir)
            return _final_exit(st) or _dead_record(st)
        done = _final_exit(st)
        if done is not None:
            return done
        gone = asyncio.ensure_future(_pid_gone(st["shim_pid"]))
        try:
            while True:
                nxt = asyncio.ensure_future(client.next_event())
                await asyncio.wait({nxt, gone}, return_when=asyncio.FIRST_COMPLETED)
                if not nxt.done():
                    # The shim is gone; what it sent before is still to be read, and the
                    # kernel has closed its end, so the end of the stream comes at once.
                    try:
                        await asyncio.wait_for(nxt, 1.0)
                    except TimeoutError:
                        break
                ev = nxt.result()
                if ev is None:
                    break
                if on_event is not None:
                    on_event(ev)
                if ev.get("event") == "exit" and not ev.get("restarting"):
                    ev = dict(ev)
                    for k in ("event", "exec", "restarting"):
                        ev.pop(k, None)
                    return ev
        finally:
            gone.cancel()
        st = read_state(run_dir)
        return _final_exit(st) or _dead_record(st)
    finally:
        await client.close()


async def reap_dead_shim(run_dir: str, cid: str, runtime: str = "runc",
                         runtime_root: str | None = None,
                         runtime_args: tuple[str, ...] = ()) -> dict:
    """After a shim died: have the runtime kill and delete what it left; record the exit.

    Idempotent: a container the runtime no longer knows is simply recorded as exited.
    """
    argv = [runtime]
    if runtime_root:
        argv += ["--root", runtime_root]
    argv += [*runtime_args, "delete", "--force", cid]
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)
    await proc.wait()
    st = read_state(run_dir) or {"id": cid}
    rec = _final_exit(st)
    if rec is None:
        rec = _dead_record(st)
        st.update(status="stopped", pid=0, exit=rec, error="shim died")
        from berth import atomic

        atomic.write_text(os.path.join(run_dir, "state.json"), fastjson.dumps(st), sync=False)
    for name in ("shim.sock", "shim.pid"):
        try:
            os.unlink(os.path.join(run_dir, name))
        except FileNotFoundError:
            pass
    return rec
