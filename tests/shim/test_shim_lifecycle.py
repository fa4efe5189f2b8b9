"""The container's lifecycle through the shim: exec, signals, exit codes, stop, pause, OOM,
restart policies with docker's back-off, and nothing left behind."""

import asyncio
import json
import os
import time

import pytest

from berth import errors
from berth.shim import client, proto

from .shimkit import alive, finish, launched, leftover_cgroups, log_records, run

pytestmark = [pytest.mark.root, pytest.mark.interop]


def _proc(args: list[str], tty: bool = False) -> dict:
    return {"terminal": tty, "user": {"uid": 0, "gid": 0}, "args": args,
            "env": ["PATH=/bin", "TERM=xterm"], "cwd": "/"}


def test_exec_output_and_exit_code(env, zygote):
    opts = env.options(["sleep", "30"])

    async def body():
        shim = await launched(opts, zygote, start=True)
        att = await shim.exec("e1", _proc(["sh", "-c", "echo in-$$; echo oops >&2; exit 7"]))
        out, err = await att.read_all()
        await att.close()
        w = await shim.wait(exec="e1")
        st = await shim.state()
        ex = await finish(shim)
        return att, out, err, w, st, ex

    att, out, err, w, st, ex = run(body())
    assert att.pid > 0
    assert err == b"oops\n"
    assert out.startswith(b"in-") and out != b"in-1\n"  # not the container's init
    assert att.exit["exit_code"] == 7 and w["exit_code"] == 7
    assert st["execs"]["e1"]["running"] is False and st["execs"]["e1"]["exit_code"] == 7
    assert ex["exit_code"] == 137
    # exec output is not the container's log (as with docker)
    assert all("oops" not in r["log"] for r in log_records(opts.log))


def test_exec_stdin_and_tty(env, zygote):
    opts = env.options(["sleep", "30"])

    async def body():
        shim = await launched(opts, zygote, start=True)
        a = await shim.exec("cat", _proc(["cat"]), stdin=True)
        await a.write(b"through stdin\n")
        await a.close_stdin()
        out, _ = await a.read_all()
        await a.close()
        t = await shim.exec("tty", _proc(["sh", "-c", "read x; stty size; tty"], tty=True),
                            stdin=True)
        await t.resize(12, 34, exec="tty")
        await t.write(b"x\r")
        tout, terr = await t.read_all()
        await t.close()
        ex = await finish(shim)
        return out, a.exit, tout, terr, t.exit, ex

    out, aexit, tout, terr, texit, ex = run(body())
    assert out == b"through stdin\n" and aexit["exit_code"] == 0
    assert b"12 34" in tout and b"/dev/pts/" in tout and terr == b""
    assert texit["exit_code"] == 0


def test_exec_detached_and_errors(env, zygote):
    opts = env.options(["sleep", "30"])

    async def body():
        shim = await launched(opts, zygote, start=True)
        pid = await shim.exec("bg", _proc(["sleep", "0.2"]), attach=False)
        w = await shim.wait(exec="bg")
        errs = []
        try:
            await shim.exec("bad", _proc(["no-such-binary"]))
        except errors.BerthError as e:
            errs.append(e)
        try:
            await shim.exec("bg", _proc(["true"]))
        except errors.Conflict as e:
            errs.append(e)
        st = await shim.state()
        ex = await finish(shim)
        try:
            await shim.exec("late", _proc(["true"]))
        except errors.BerthError as e:
            errs.append(e)
        return pid, w, errs, st, ex

    pid, w, errs, st, ex = run(body())
    assert pid > 0 and w["exit_code"] == 0
    assert len(errs) == 3
    assert "no-such-binary" in str(errs[0]) and "\n" not in str(errs[0])
    assert "exists" in str(errs[1])
    assert isinstance(errs[2], errors.Unavailable)  # the shim left with its container
    assert set(st["execs"]) == {"bg"}  # failed execs leave nothing


def test_exec_of_a_file_that_is_not_executable(env, zygote):
    """runc says "permission denied" (docker's exit code 126 is chosen from that text)."""
    opts = env.options(["sleep", "30"])

    async def body():
        shim = await launched(opts, zygote, start=True)
        try:
            await shim.exec("nx", _proc(["/etc/passwd"]))
            err = None
        except errors.BerthError as e:
            err = e
        await finish(shim)
        return err

    err = run(body())
    assert err is not None and "permission denied" in str(err).lower()


def test_exit_codes_and_signals(env, zygote):
    # The init is PID 1 of its namespace: only signals it handles reach it, and SIGKILL.
    cases = [
        (["sh", "-c", "exit 0"], None, 0, 0),
        (["sh", "-c", "exit 42"], None, 42, 0),
        (["sh", "-c", "trap 'exit 12' TERM; while :; do sleep 0.05; done"], 15, 12, 0),
        (["sleep", "30"], 9, 137, 9),
    ]
    opts = [env.options(args) for args, *_ in cases]

    async def one(o, sig):
        shim = await launched(o, zygote, start=True)
        if sig:
            await asyncio.sleep(0.2)
            await shim.kill(sig)
        ex = await shim.wait()
        await shim.close()
        return ex

    async def body():
        return await asyncio.gather(*(one(o, c[1]) for o, c in zip(opts, cases, strict=True)))

    for ex, (args, _, code, sig) in zip(run(body()), cases, strict=True):
        assert (ex["exit_code"], ex["signal"]) == (code, sig), args


def test_signals_to_pid1_and_to_an_exec(env, zygote):
    opts = env.options(["sleep", "30"])

    async def body():
        shim = await launched(opts, zygote, start=True)
        pid = (await shim.state())["pid"]
        # Until the init has exec'd sleep it is the runtime's init, which handles SIGTERM.
        while open(f"/proc/{pid}/comm").read().strip() != "sleep":
            await asyncio.sleep(0.01)
        await shim.kill(15)          # PID 1 without a handler: the kernel drops it
        await asyncio.sleep(0.3)
        st = await shim.state()
        pid = await shim.exec("s", _proc(["sleep", "30"]), attach=False)
        await shim.kill(11, exec="s")
        w = await shim.wait(exec="s")
        ex = await finish(shim)
        return st, pid, w, ex

    st, pid, w, ex = run(body())
    assert st["status"] == "running"
    assert (w["exit_code"], w["signal"]) == (139, 11)   # 128 + SIGSEGV
    assert (ex["exit_code"], ex["signal"]) == (137, 9)


def test_stop_escalates_to_sigkill(env, zygote):
    opts = env.options(["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"])

    async def body():
        shim = await launched(opts, zygote, start=True)
        await asyncio.sleep(0.2)
        t = time.monotonic()
        ex = await shim.stop(signal=15, timeout=0.6)
        took = time.monotonic() - t
        await shim.close()
        return ex, took

    ex, took = run(body())
    assert ex["exit_code"] == 137 and ex["signal"] == 9
    assert 0.55 < took < 3.0


def test_pause_resume_and_exec_refused_while_paused(env, zygote):
    opts = env.options(["sh", "-c", "while :; do sleep 0.05; done"])

    async def body():
        shim = await launched(opts, zygote, start=True)
        await shim.pause()
        st = await shim.state()
        try:
            await shim.exec("p", _proc(["true"]))
            refused = None
        except errors.Conflict as e:
            refused = e
        await shim.resume()
        st2 = await shim.state()
        ex = await shim.stop(timeout=0.3)
        await shim.close()
        return st, refused, st2, ex

    st, refused, st2, ex = run(body())
    assert st["status"] == "paused" and "paused" in str(refused)
    assert st2["status"] == "running"
    assert ex["signal"] in (9, 15)


def test_oom_killed_is_reported(env, zygote):
    # dd allocates its 64 MiB block and fills it: over a 32 MiB limit the OOM killer fires.
    opts = env.options(["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
                       memory=32 << 20)

    async def body():
        shim = await launched(opts, zygote)
        st = await shim.subscribe()
        await shim.start()
        events = []
        while (ev := await shim.next_event()) is not None:
            events.append(ev)
            if ev["event"] == "exit":
                break
        await shim.close()
        return st, events

    st, events = run(body())
    ex = events[-1]
    assert ex["oom_killed"] is True and ex["exit_code"] == 137
    names = [e["event"] for e in events]
    assert names[0] == "start" and "oom" in names


def test_no_oom_without_a_limit(env, zygote):
    opts = env.options(["dd", "if=/dev/zero", "of=/dev/null", "bs=8M", "count=1"])

    async def body():
        shim = await launched(opts, zygote, start=True)
        ex = await shim.wait()
        await shim.close()
        return ex

    ex = run(body())
    assert ex["exit_code"] == 0 and ex["oom_killed"] is False


def _starts(events: list[tuple[float, dict]]) -> list[float]:
    return [t for t, e in events if e["event"] == "start"]


async def _follow(opts, zygote, until_final: bool = True, max_events: int = 100,
                  action=None):
    shim = await launched(opts, zygote)
    await shim.subscribe()
    await shim.start()
    events = []
    while (ev := await shim.next_event()) is not None and len(events) < max_events:
        events.append((time.monotonic(), ev))
        if action is not None and await action(shim, events):
            continue
        if ev["event"] == "exit" and not ev.get("restarting"):
            break
    await shim.close()
    return events


def test_on_failure_restarts_with_doubling_back_off(env, zygote):
    opts = env.options(["sh", "-c", "echo run; exit 1"], restart="on-failure:3")
    events = run(_follow(opts, zygote))
    starts = _starts(events)
    exits = [e for _, e in events if e["event"] == "exit"]
    assert len(starts) == 4  # the first run and three restarts
    assert [e["restart_count"] for e in exits] == [1, 2, 3, 3]
    assert [e.get("delay") for e in exits[:-1]] == [0.1, 0.2, 0.4]
    assert exits[-1]["restarting"] is False and exits[-1]["exit_code"] == 1
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    # each gap is the delay plus a runtime create+start; the delays double
    for gap, delay in zip(gaps, (0.1, 0.2, 0.4), strict=True):
        assert delay <= gap < delay + 1.0
    assert gaps[2] > gaps[0] + 0.2
    logs = [r["log"] for r in log_records(opts.log)]
    assert logs == ["run\n"] * 4  # one log across runs


def test_on_failure_does_not_restart_success(env, zygote):
    opts = env.options(["sh", "-c", "exit 0"], restart="on-failure")
    events = run(_follow(opts, zygote))
    assert len(_starts(events)) == 1


def test_always_restarts_until_a_manual_stop(env, zygote):
    opts = env.options(["sh", "-c", "sleep 0.05"], restart="always")

    async def stop_after_three(shim, events):
        if len(_starts(events)) >= 3 and events[-1][1]["event"] == "start":
            ex = await shim.stop(timeout=5)
            events.append((time.monotonic(), {"event": "stopped", **ex}))
            return True
        return False

    events = run(_follow(opts, zygote, action=stop_after_three))
    n = len(_starts(events))
    assert 3 <= n <= 4
    final = [e for _, e in events if e["event"] == "exit" and not e.get("restarting")]
    assert len(final) == 1
    st = client.read_state(opts.run_dir)
    assert st["status"] == "stopped" and st["manual_stop"] is True


def test_unless_stopped_and_kill_during_back_off(env, zygote):
    opts = env.options(["sh", "-c", "exit 2"], restart="unless-stopped")

    async def stop_in_back_off(shim, events):
        ev = events[-1][1]
        if ev["event"] == "exit" and ev.get("restarting") and ev["restart_count"] == 2:
            st = await shim.state()
            assert st["status"] == "restarting"
            await shim.kill(15, stop=True)  # docker kill while restarting: no signal, no restart
            return True
        return False

    events = run(_follow(opts, zygote, action=stop_in_back_off))
    assert len(_starts(events)) == 2
    assert events[-1][1]["restarting"] is False


def test_delete_leaves_nothing_behind(env, zygote):
    opts = env.options(["sh", "-c", "sleep 30 & sleep 30"])

    async def body():
        info = await client.launch(opts, zygote)
        created = client.read_state(opts.run_dir)
        shim = await client.ShimClient.connect(opts.run_dir)
        await shim.start()
        pids = [info["init_pid"]]
        try:
            await shim.delete()
            refused = None
        except errors.Conflict as e:
            refused = e
        ex = await shim.delete(force=True)
        await shim.close()
        return info, created, refused, ex, pids

    info, created, refused, ex, pids = run(body())
    assert created["status"] == "created"
    assert "stop it first" in str(refused)
    assert ex["exit_code"] == 137
    time.sleep(0.3)
    assert not alive(info["pid"]) and not alive(info["init_pid"])
    assert leftover_cgroups(opts.id) == []
    left = set(os.listdir(opts.run_dir))
    assert "state.json" in left and left <= {"runtime.log", "shim.log", "state.json"}, left
    r = os.system(f"{env.runtime} --root {env.runtime_root} state {opts.id} >/dev/null 2>&1")
    assert r != 0  # the runtime has forgotten it


def test_delete_of_a_created_container(env, zygote):
    opts = env.options(["echo", "never"])

    async def body():
        info = await client.launch(opts, zygote)
        shim = await client.ShimClient.connect(opts.run_dir)
        ex = await shim.delete()
        await shim.close()
        return info, ex

    info, ex = run(body())
    time.sleep(0.2)
    assert not alive(info["init_pid"]) and leftover_cgroups(opts.id) == []
    assert log_records(opts.log) == []
    st = client.read_state(opts.run_dir)
    assert st["status"] == "stopped" and st["started_at"] == 0


def test_bad_input_changes_nothing(env, zygote, tmp_path):
    missing = env.options(["true"])
    missing.bundle = str(tmp_path / "no-such-bundle")
    notfound = env.options(["no-such-command"])

    async def body():
        out = []
        for o in (missing, notfound):
            for z in (zygote, None):
                try:
                    await client.launch(o, z)
                    out.append(None)
                except errors.BerthError as e:
                    out.append(e)
        return out

    errs = run(body())
    assert all(e is not None for e in errs)
    assert isinstance(errs[0], errors.NotFound) and "config.json" in str(errs[0])
    assert str(errs[0]) == str(errs[1])
    assert "no-such-command" in str(errs[2]) and "\n" not in str(errs[2])
    for o in (missing, notfound):
        left = set(os.listdir(o.run_dir)) if os.path.isdir(o.run_dir) else set()
        assert left <= {"runtime.log", "shim.log"}, left
        assert leftover_cgroups(o.id) == []
    assert not [r for r in log_records(notfound.log)]  # the runtime's error is not container output


def test_events_and_wait_for_subscribers(env, zygote):
    opts = env.options(["sh", "-c", "sleep 0.2; exit 5"])

    async def body():
        await client.launch(opts, zygote)
        a = await client.ShimClient.connect(opts.run_dir)
        b = await client.ShimClient.connect(opts.run_dir)
        st = await a.subscribe()
        waiter = asyncio.ensure_future(b.wait())
        await b.start()
        evs = []
        while (ev := await a.next_event()) is not None:
            evs.append(ev)
        w = await waiter
        await a.close()
        await b.close()
        return st, evs, w

    st, evs, w = run(body())
    assert st["status"] == "created"
    assert [e["event"] for e in evs] == ["start", "exit"]
    assert evs[1]["exit_code"] == 5 and evs[1]["restarting"] is False
    assert w["exit_code"] == 5 and w["started_at"] == evs[0]["started_at"]


def test_requests_are_validated(env, zygote):
    opts = env.options(["sleep", "30"])

    async def body():
        shim = await launched(opts, zygote, start=True)
        bad = []
        for op, args in [("nope", {}), ("kill", {"signal": 0}), ("kill", {"signal": "TERM"}),
                         ("resize", {"height": -1, "width": 3}), ("resize", {"height": 3,
                                                                             "width": 3}),
                         ("exec", {"exec_id": "../x", "process": _proc(["true"])}),
                         ("exec", {"exec_id": "ok", "process": {"args": []}}),
                         ("wait", {"exec": "nope"}), ("update", {"restart": "sometimes"}),
                         ("start", {})]:
            try:
                await shim.call(op, **args)
                bad.append(None)
            except errors.BerthError as e:
                bad.append(type(e).__mro__[-3].__name__ if False else e)
        st = await shim.state()
        ex = await finish(shim)
        return bad, st, ex

    bad, st, ex = run(body())
    kinds = [type(e).__bases__[0].__name__ if type(e).__module__ != "berth.errors"
             else type(e).__name__ for e in bad]
    assert kinds == ["InvalidArgument", "InvalidArgument", "InvalidArgument", "InvalidArgument",
                     "Conflict", "InvalidArgument", "InvalidArgument", "NotFound",
                     "InvalidArgument", "Conflict"]
    assert st["status"] == "running" and ex["exit_code"] == 137


def test_output_pressure_blocks_the_container_not_the_shim(env, zygote):
    """A stalled attacher holds the container's output back; other clients are still served."""
    opts = env.options(["sh", "-c", "head -c 8000000 /dev/zero | tr '\\0' x; echo done >&2"])

    async def body():
        shim = await launched(opts, zygote)
        # An attacher that never reads: its socket buffer fills, then the shim's buffer.
        r, w = await asyncio.open_unix_connection(os.path.join(opts.run_dir, "shim.sock"))
        w.write(proto.frame(proto.REQUEST, b'{"id":1,"op":"attach","stderr":false}'))
        await w.drain()
        await asyncio.sleep(0.1)
        await shim.start()
        await asyncio.sleep(0.5)
        t = time.monotonic()
        st = await shim.state()           # answered at once despite the stalled reader
        quick = time.monotonic() - t
        stalled = os.path.getsize(opts.log)
        dec = proto.Decoder()
        total = 0
        while data := await r.read(1 << 20):
            total += sum(len(p) for k, p in dec.feed(data) if k == proto.STDOUT)
        w.close()
        ex = await shim.wait()
        await shim.close()
        return st, quick, stalled, total, ex

    st, quick, stalled, total, ex = run(body())
    assert st["status"] == "running" and quick < 0.5
    assert total == 8000000 and ex["exit_code"] == 0
    # while stalled only about HIGH_WATER plus socket buffers was read from the container
    assert stalled < 4000000
    assert os.path.getsize(opts.log) > 8000000


def test_attach_stream_frames_are_docker_stdcopy(env, zygote):
    """Output frames carry docker's 8-byte stdcopy header, so berthd can pass them through."""
    opts = env.options(["sh", "-c", "printf ab; printf cd >&2"])

    async def body():
        await client.launch(opts, zygote)
        r, w = await asyncio.open_unix_connection(os.path.join(opts.run_dir, "shim.sock"))
        w.write(proto.frame(proto.REQUEST, b'{"id":1,"op":"attach"}'))
        w.write(proto.frame(proto.REQUEST, b'{"id":2,"op":"start"}'))
        await w.drain()
        data = await r.read()  # until the shim closes the stream after the exit event
        w.close()
        return data

    data = run(body())
    frames = proto.Decoder().feed(data)
    kinds = [k for k, _ in frames]
    assert kinds[0] == proto.REPLY and kinds[-1] == proto.EVENT
    assert (proto.STDOUT, b"ab") in frames and (proto.STDERR, b"cd") in frames
    # one reply per request, each with its id (nothing else ever writes to a client)
    replies = [json.loads(p) for k, p in frames if k == proto.REPLY]
    assert [r.get("id") for r in replies] == [1, 2] and all("ok" in r for r in replies)
    assert b"\x01\x00\x00\x00\x00\x00\x00\x02ab" in data
    assert b"\x02\x00\x00\x00\x00\x00\x00\x02cd" in data


def test_stop_of_a_paused_container(env, zygote):
    """docker stop of a paused container: the signal is sent, the cgroup thawed, it stops."""
    opts = env.options(["sh", "-c", "trap 'exit 3' TERM; while :; do sleep 0.05; done"])

    async def body():
        shim = await launched(opts, zygote, start=True)
        await asyncio.sleep(0.2)
        await shim.pause()
        ex = await shim.stop(timeout=5)
        await shim.close()
        return ex

    ex = run(body())
    assert ex["exit_code"] == 3


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_no_fd_leak_across_execs(env, zygote):
    opts = env.options(["sleep", "30"])

    async def body():
        info = await client.launch(opts, zygote)
        shim = await client.ShimClient.connect(opts.run_dir)
        await shim.start()
        first = _fds(info["pid"])
        for i in range(6):
            att = await shim.exec(f"x{i}", _proc(["sh", "-c", "echo hi"], tty=i % 2 == 1))
            out, _ = await att.read_all()
            assert out.strip() == b"hi"
            await att.close()
        after = _fds(info["pid"])
        await finish(shim)
        return first, after

    first, after = run(body())
    assert after == first


def test_no_fd_leak_across_restarts(env, zygote):
    opts = env.options(["sh", "-c", "exit 1"], restart="on-failure:3")

    async def body():
        info = await client.launch(opts, zygote)
        shim = await client.ShimClient.connect(opts.run_dir)
        await shim.subscribe()
        await shim.start()
        counts = []
        while (ev := await shim.next_event()) is not None:
            if ev["event"] == "exit" and ev.get("restarting"):
                counts.append(_fds(info["pid"]))  # between runs: nothing of the last one open
            if ev["event"] == "exit" and not ev.get("restarting"):
                break
        await shim.close()
        return counts

    counts = run(body())
    assert len(counts) == 3 and len(set(counts)) == 1


def test_exec_with_a_long_id_and_a_tty(env, zygote):
    opts = env.options(["sleep", "30"])
    xid = "e" * 128

    async def body():
        shim = await launched(opts, zygote, start=True)
        att = await shim.exec(xid, _proc(["tty"], tty=True))
        out, _ = await att.read_all()
        await att.close()
        await finish(shim)
        return out, att.exit

    out, ex = run(body())
    assert out.startswith(b"/dev/pts/") and ex["exit_code"] == 0


def test_a_failed_restart_stops_the_container_with_the_error(env, zygote):
    opts = env.options(["sh", "-c", "sleep 0.2; exit 1"], restart="always")
    cfg = os.path.join(opts.bundle, "config.json")

    async def body():
        shim = await launched(opts, zygote)
        await shim.subscribe()
        await shim.start()
        evs = []
        while (ev := await shim.next_event()) is not None:
            evs.append(ev)
            if ev["event"] == "start" and len(evs) == 1:
                # the next run cannot be made: its command is gone from the bundle
                with open(cfg) as f:
                    c = json.load(f)
                c["process"]["args"] = ["/no/such/command"]
                with open(cfg, "w") as f:
                    json.dump(c, f)
            if ev["event"] == "exit" and not ev.get("restarting"):
                break
        await shim.close()
        return evs

    evs = run(body())
    final = evs[-1]
    assert [e["event"] for e in evs] == ["start", "exit", "exit"]
    assert evs[1]["restarting"] is True and final["restarting"] is False
    assert "/no/such/command" in final["error"]
    st = client.read_state(opts.run_dir)
    assert st["status"] == "stopped" and "/no/such/command" in st["error"]
    time.sleep(0.3)
    assert leftover_cgroups(opts.id) == []
    r = os.system(f"{env.runtime} --root {env.runtime_root} state {opts.id} >/dev/null 2>&1")
    assert r != 0
