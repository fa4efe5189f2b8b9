"""Live restore, both halves: the shim outlives the daemon that started it (kill -9 of the
daemon stand-in; a new client finds it again), and a shim killed -9 is noticed and its container
reported exited and cleaned up."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from berth.shim import client

from .shimkit import alive, leftover_cgroups, log_records, run, wait_for

pytestmark = [pytest.mark.root, pytest.mark.interop]

# A stand-in for berthd: starts its own zygote, launches a shim, starts the container, reports,
# then idles until it is killed.
DAEMON = r"""
import asyncio, json, sys
from berth.shim import client
from berth.shim.config import ShimOptions

async def main():
    a = json.loads(sys.argv[1])
    z = await client.Zygote.start(a["zygote"])
    info = await client.launch(ShimOptions(**a["opts"]), z)
    shim = await client.ShimClient.connect(a["opts"]["run_dir"])
    await shim.subscribe()
    await shim.start()
    print(json.dumps({"info": info, "zygote_pid": z.proc.pid}), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def _opts_dict(o) -> dict:
    return {"id": o.id, "bundle": o.bundle, "run_dir": o.run_dir, "log": o.log,
            "runtime": o.runtime, "runtime_root": o.runtime_root, "stdin": o.stdin,
            "runtime_mode": o.runtime_mode}


def test_shim_outlives_a_killed_daemon_and_everything_works_again(env):
    opts = env.options(["sh", "-c", "i=0; while :; do i=$((i+1)); echo tick$i; sleep 0.1; "
                        "done"], stdin=True)
    zsock = os.path.join(env.short, "z.sock")
    daemon = subprocess.Popen([sys.executable, "-c", DAEMON,
                               json.dumps({"zygote": zsock, "opts": _opts_dict(opts)})],
                              stdout=subprocess.PIPE, start_new_session=True)
    try:
        line = daemon.stdout.readline()
        assert line, "the daemon stand-in did not report"
        rep = json.loads(line)
        info, zpid = rep["info"], rep["zygote_pid"]
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.wait()
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    # The zygote follows its daemon (lifeline EOF); the shim and its container do not.
    wait_for(lambda: not alive(zpid), timeout=5)
    assert alive(info["pid"]) and alive(info["init_pid"])
    n_before = len(log_records(opts.log))
    time.sleep(0.5)
    assert len(log_records(opts.log)) > n_before  # still logging with nobody connected

    async def body():
        shim = await client.ShimClient.connect(opts.run_dir)
        st = await shim.state()
        att = await shim.attach()
        first = await att.read()
        ex_att = await shim.exec("after", {"args": ["sh", "-c", "echo exec-ok; exit 4"],
                                           "cwd": "/", "env": ["PATH=/bin"],
                                           "user": {"uid": 0, "gid": 0}})
        eout, _ = await ex_att.read_all()
        await ex_att.close()
        waiter = asyncio.ensure_future(client.watch(opts.run_dir))
        await asyncio.sleep(0.1)
        stopped = await shim.stop(timeout=0.5)
        await att.read_all()
        await att.close()
        watched = await waiter
        w = await shim.wait()
        await shim.close()
        return st, first, eout, ex_att.exit, stopped, watched, w

    st, first, eout, exexit, stopped, watched, w = run(body())
    assert st["status"] == "running" and st["pid"] == info["init_pid"]
    assert first[1].startswith(b"tick")
    assert eout == b"exec-ok\n" and exexit["exit_code"] == 4
    assert stopped["exit_code"] == 137  # sh as PID 1 ignores SIGTERM: killed after the timeout
    assert watched["exit_code"] == 137 and not watched.get("shim_died")
    assert w["exit_code"] == 137
    wait_for(lambda: not alive(info["pid"]), timeout=5)
    assert leftover_cgroups(opts.id) == []


def test_a_shim_killed_by_force_is_noticed_and_cleaned_up(env, zygote):
    opts = env.options(["sleep", "300"])

    async def body():
        info = await client.launch(opts, zygote)
        shim = await client.ShimClient.connect(opts.run_dir)
        await shim.start()
        idle = await client.ShimClient.connect(opts.run_dir)
        watcher = asyncio.ensure_future(client.watch(opts.run_dir))
        await asyncio.sleep(0.2)
        t = time.monotonic()
        os.kill(info["pid"], signal.SIGKILL)
        exit_seen = await watcher
        noticed = time.monotonic() - t
        try:
            await idle.call("state")
            idle_err = None
        except client.ShimUnavailable as e:
            idle_err = e
        orphan_alive = alive(info["init_pid"])
        rec = await client.reap_dead_shim(opts.run_dir, opts.id, opts.runtime,
                                          opts.runtime_root)
        again = await client.watch(opts.run_dir)
        await shim.close()
        await idle.close()
        return info, exit_seen, noticed, idle_err, orphan_alive, rec, again

    info, seen, noticed, idle_err, orphan_alive, rec, again = run(body())
    assert seen["shim_died"] is True and seen["exit_code"] == 137
    assert noticed < 2.0
    assert idle_err is not None
    assert orphan_alive  # the runtime's container outlived its shim until reaped
    assert rec["exit_code"] == 137 and rec["error"] == "shim died"
    assert again["exit_code"] == 137  # recorded: a later look finds the same
    wait_for(lambda: not alive(info["init_pid"]), timeout=5)
    assert leftover_cgroups(opts.id) == []
    st = client.read_state(opts.run_dir)
    assert st["status"] == "stopped"
    assert not os.path.exists(os.path.join(opts.run_dir, "shim.sock"))


def test_watch_after_the_shim_left_reads_the_record(env, zygote):
    opts = env.options(["sh", "-c", "exit 9"])

    async def body():
        info = await client.launch(opts, zygote)
        shim = await client.ShimClient.connect(opts.run_dir)
        await shim.start()
        await shim.close()
        # wait for the shim to be gone entirely, as if berthd had been down meanwhile
        while alive(info["pid"]):
            await asyncio.sleep(0.02)
        return await client.watch(opts.run_dir)

    rec = run(body())
    assert rec["exit_code"] == 9 and not rec.get("shim_died")
