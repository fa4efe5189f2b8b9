"""The container's stdio through the shim: the json-file log, attach, stdin, pty, several
attachers. Real containers (busybox bundles) under each OCI runtime."""

import asyncio
import os
import time

import pytest

from berth.shim import client, proto

from .shimkit import launched, log_records, run

pytestmark = [pytest.mark.root, pytest.mark.interop]


def test_stdout_stderr_to_log_and_exit_code(env, zygote):
    opts = env.options(["sh", "-c", "echo out; echo err >&2; echo out2; exit 3"])

    async def body():
        info = await client.launch(opts, zygote)
        shim = await client.ShimClient.connect(opts.run_dir)
        await shim.start()
        ex = await shim.wait()
        await shim.close()
        return info, ex

    info, ex = run(body())
    assert ex["exit_code"] == 3 and ex["signal"] == 0 and not ex["oom_killed"]
    recs = log_records(opts.log)
    assert [(r["stream"], r["log"]) for r in recs if r["stream"] == "stdout"] == [
        ("stdout", "out\n"), ("stdout", "out2\n")]
    assert [r["log"] for r in recs if r["stream"] == "stderr"] == ["err\n"]
    for r in recs:
        assert set(r) == {"log", "stream", "time"}
        assert r["time"].endswith("Z") and r["time"][10] == "T"


def test_fresh_launch_daemonizes(env):
    """Without a zygote the shim starts as a fresh process and detaches from its launcher."""
    opts = env.options(["sh", "-c", "echo fresh; sleep 30"])

    async def body():
        info = await client.launch(opts)
        shim = await client.ShimClient.connect(opts.run_dir)
        await shim.start()
        st = await shim.state()
        await shim.kill(9, stop=True)
        ex = await shim.wait()
        await shim.close()
        return info, st, ex

    info, st, ex = run(body())
    assert st["status"] == "running" and st["shim_pid"] == info["pid"]
    sid = int(open(f"/proc/{info['pid']}/stat").read().rsplit(")", 1)[1].split()[3]) \
        if _exists(info["pid"]) else None
    assert sid in (None, info["pid"])  # its own session, if still there
    assert ex["exit_code"] == 137 and ex["signal"] == 9


def _exists(pid: int) -> bool:
    try:
        open(f"/proc/{pid}/stat").close()
        return True
    except OSError:
        return False


def test_attach_before_start_sees_everything(env, zygote):
    opts = env.options(["sh", "-c", "echo one; echo two >&2; echo three"])

    async def body():
        shim = await launched(opts, zygote)
        att = await shim.attach()
        await shim.start()
        out, err = await att.read_all()
        await att.close()
        await shim.close()
        return out, err, att.exit

    out, err, ex = run(body())
    assert out == b"one\nthree\n" and err == b"two\n"
    assert ex["exit_code"] == 0


def test_two_attachers_get_the_same_output(env, zygote):
    opts = env.options(["sh", "-c", "read x; for i in 1 2 3; do echo line$i; done"], stdin=True)

    async def body():
        shim = await launched(opts, zygote, start=True)
        a = await shim.attach(stdin=True)
        b = await shim.attach()
        await a.write(b"go\n")
        (oa, _), (ob, _) = await asyncio.gather(a.read_all(), b.read_all())
        await a.close()
        await b.close()
        await shim.close()
        return oa, ob

    oa, ob = run(body())
    assert oa == ob == b"line1\nline2\nline3\n"


def test_stdin_once_closes_the_containers_stdin(env, zygote):
    opts = env.options(["cat"], stdin=True, stdin_once=True)

    async def body():
        shim = await launched(opts, zygote)
        att = await shim.attach(stdin=True)
        await shim.start()
        await att.write(b"hello ")
        await att.write(b"world\n")
        await att.close_stdin()
        out, _ = await att.read_all()
        await att.close()
        ex = await shim.wait()
        await shim.close()
        return out, ex

    out, ex = run(body())
    assert out == b"hello world\n"
    assert ex["exit_code"] == 0  # cat saw EOF


def test_stdin_without_once_survives_an_attacher(env, zygote):
    """docker run -di + attach: an attacher's EOF ends its attach, not the container's stdin."""
    opts = env.options(["cat"], stdin=True)

    async def body():
        shim = await launched(opts, zygote, start=True)
        a = await shim.attach(stdin=True)
        await a.write(b"first\n")
        first = await a.read()
        await a.close_stdin()
        rest, _ = await a.read_all()
        detached = a.detached and rest == b""
        await a.close()
        b = await shim.attach(stdin=True)
        await b.write(b"second\n")
        got = await b.read()
        st = await shim.state()
        await b.close()
        await shim.close_stdin()
        ex = await shim.wait()
        await shim.close()
        return first, detached, got, st, ex

    first, detached, got, st, ex = run(body())
    assert first == (proto.STDOUT, b"first\n") and detached
    assert got == (proto.STDOUT, b"second\n")
    assert st["status"] == "running"
    assert ex["exit_code"] == 0


def test_no_stdin_reads_eof(env, zygote):
    opts = env.options(["sh", "-c", "cat; echo done-$?"])

    async def body():
        shim = await launched(opts, zygote)
        att = await shim.attach()
        await shim.start()
        out, _ = await att.read_all()
        await att.close()
        await shim.close()
        return out

    assert run(body()) == b"done-0\n"


def test_pty_output_and_resize(env, zygote):
    opts = env.options(["sh", "-c", "read x; stty size; echo tty:$(tty)"], tty=True, stdin=True)

    async def body():
        shim = await launched(opts, zygote)
        att = await shim.attach(stdin=True)
        await shim.start()
        await shim.resize(33, 101)
        await att.write(b"go\r")
        out = b""
        while (item := await att.read()) is not None:
            kind, data = item
            assert kind == proto.STDOUT  # a tty has one stream
            out += data
        await att.close()
        await shim.close()
        return out

    out = run(body())
    assert b"33 101" in out
    assert b"tty:/dev/pts/0" in out
    recs = log_records(opts.log)
    assert all(r["stream"] == "stdout" for r in recs)
    assert "33 101\r\n" in "".join(r["log"] for r in recs)


def test_detach_keys_leave_the_container_running(env, zygote):
    opts = env.options(["sh", "-c", "while read l; do echo got:$l; done"], stdin=True)

    async def body():
        shim = await launched(opts, zygote, start=True)
        att = await shim.attach(stdin=True, detach_keys=b"\x10\x11")
        await att.write(b"a\n")
        first = await att.read()
        for key in b"\x10x\n":   # a prefix of the sequence, then other keys: all forwarded
            await att.write(bytes([key]))
        second = await att.read()
        await att.write(b"\x10")
        await att.write(b"\x11")
        rest = await att.read()
        st = await shim.state()
        await att.close()
        await shim.kill(9, stop=True)
        await shim.wait()
        await shim.close()
        return first, second, rest, att.detached, st

    first, second, rest, detached, st = run(body())
    assert first == (proto.STDOUT, b"got:a\n")
    assert second == (proto.STDOUT, b"got:\x10x\n")
    assert rest is None and detached
    assert st["status"] == "running"


def test_large_output_is_logged_whole_and_split_like_docker(env, zygote):
    # 20001 bytes of x then a newline: docker logs a 16 KiB piece without "\n", then the rest.
    opts = env.options(["sh", "-c", "head -c 20001 /dev/zero | tr '\\0' x; echo; "
                        "head -c 3000000 /dev/zero | tr '\\0' y; printf tail"])

    async def body():
        shim = await launched(opts, zygote)
        att = await shim.attach()
        await shim.start()
        t = time.monotonic()
        out, _ = await att.read_all()
        await att.close()
        await shim.close()
        return out, time.monotonic() - t

    out, took = run(body())
    assert out == b"x" * 20001 + b"\n" + b"y" * 3000000 + b"tail"
    recs = log_records(opts.log)
    assert recs[0]["log"] == "x" * 16384 and recs[1]["log"] == "x" * 3617 + "\n"
    assert recs[0]["time"] == recs[1]["time"]
    assert "".join(r["log"] for r in recs[2:]) == "y" * 3000000 + "tail"
    assert all(len(r["log"]) <= 16384 for r in recs)
    assert not recs[-1]["log"].endswith("\n")


def test_an_attachment_not_read_holds_the_container_back(env, zygote):
    opts = env.options(["sh", "-c", "head -c 8000000 /dev/zero | tr '\\0' x"])

    async def body():
        shim = await launched(opts, zygote)
        att = await shim.attach(stderr=False)
        await shim.start()
        await asyncio.sleep(0.6)
        stalled = os.path.getsize(opts.log)
        out, _ = await att.read_all()
        await att.close()
        await shim.close()
        return stalled, len(out)

    stalled, n = run(body())
    assert n == 8000000
    assert stalled < 6000000  # shim 1 MiB + socket buffers + the client's bounded queue
