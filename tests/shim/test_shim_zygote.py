"""The zygote's rehearsals (berth.shim.rehearse): repeated while it is idle, each leaves nothing
behind, and shims forked before, between and after them run their containers to the end."""

import asyncio
import os
import time

import pytest

from berth.shim import client, launch

from .shimkit import children_of, run, zygote_process

pytestmark = [pytest.mark.root, pytest.mark.interop]


def _fds(pid: int) -> list[str]:
    return sorted(os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd"))


@pytest.fixture
def own_zygote():
    """A zygote of this test's own (the session's has rehearsed long ago): (proc, Zygote, dir)."""
    with zygote_process("bzr-") as z:
        yield z


def _settled(proc, d: str) -> None:
    """Wait out every idle rehearsal: then the zygote has no child and only its own files."""
    deadline = time.monotonic() + launch.REHEARSALS * 0.5 + 5
    while time.monotonic() < deadline:
        if not children_of(proc.pid) and os.listdir(d) == ["zygote.sock"]:
            time.sleep(launch.REHEARSAL_IDLE / 1000 * 3)
            if not children_of(proc.pid) and os.listdir(d) == ["zygote.sock"]:
                return
        time.sleep(0.05)
    raise AssertionError(f"zygote not settled: children {children_of(proc.pid)}, {os.listdir(d)}")


def test_rehearsals_leave_nothing_behind(own_zygote):
    proc, _, d = own_zygote
    _settled(proc, d)
    fds = _fds(proc.pid)
    # stdin (the lifeline), stdout and stderr, the listening socket: nothing else.
    assert len(fds) == 4, fds
    assert sum(f.startswith("socket:") for f in fds) == 1
    assert proc.poll() is None


def test_shims_forked_around_the_rehearsals(env, own_zygote):
    """Containers started while the zygote still rehearses (in the idle gaps between them) and
    after: each runs to its exit code; one that ends during a rehearsal is not lost."""
    proc, zygote, d = own_zygote

    async def one(i: int, sleep: str) -> dict:
        opts = env.options(["sh", "-c", f"sleep {sleep}; exit {i}"])
        await client.launch(opts, zygote)
        shim = await client.ShimClient.connect(opts.run_dir)
        try:
            await shim.start()
            return await shim.wait()
        finally:
            await shim.close()

    async def body() -> list[dict]:
        out = []
        for i in range(1, 4):
            out.append(await one(i, "0"))
            await asyncio.sleep(launch.REHEARSAL_IDLE / 1000 * 1.5)
        # Ends while the zygote is (or may be) rehearsing again.
        out.append(await one(4, "0.1"))
        return out

    exits = run(body())
    assert [e["exit_code"] for e in exits] == [1, 2, 3, 4]
    _settled(proc, d)
    exits = run(one(5, "0"))
    assert exits["exit_code"] == 5
