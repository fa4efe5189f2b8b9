"""Helpers for the shim's tests: busybox bundles (``runc spec`` plus edits), short run dirs, and
a tiny driver that runs the async client from synchronous tests.
"""

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from berth.shim import client
from berth.shim.config import ShimOptions


def unique_id(prefix: str = "shimt") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def make_bundle(rootfs: Path, bundle: Path, cid: str, args: list[str], *, tty: bool = False,
                env: list[str] | None = None, memory: int | None = None,
                network: bool = False, mounts: list[dict] | None = None,
                readonly: bool = False) -> Path:
    """A runc-spec bundle over ``rootfs`` running ``args``, in its own cgroup named for ``cid``."""
    bundle.mkdir(parents=True, exist_ok=True)
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["root"] = {"path": str(rootfs), "readonly": readonly}
    p = cfg["process"]
    p["terminal"] = tty
    p["args"] = args
    p["rlimits"] = []
    if env is not None:
        p["env"] = env
    lin = cfg["linux"]
    # A top-level cgroup per container: the runtime removes it on delete, nothing stays behind.
    lin["cgroupsPath"] = f"/berth-{cid}"
    if not network:
        lin["namespaces"] = [n for n in lin["namespaces"] if n["type"] != "network"]
    if memory is not None:
        lin.setdefault("resources", {})["memory"] = {"limit": memory, "swap": memory}
    if mounts:
        cfg["mounts"].extend(mounts)
    (bundle / "config.json").write_text(json.dumps(cfg, indent=1))
    return bundle


class Env:
    """One test's shim world: a short run dir (unix socket paths ≤ 107 bytes), a runtime root,
    bundles over a private rootfs copy, and cleanup of anything a failing test left."""

    def __init__(self, base: Path, rootfs: Path, runtime: str, mode: str = "auto") -> None:
        self.base = base
        self.rootfs = rootfs
        self.runtime = runtime
        self.mode = mode
        self.short = Path(tempfile.mkdtemp(prefix="bs-", dir="/tmp"))
        self.runtime_root = str(self.short / "rt")
        self.ids: list[str] = []

    def options(self, args: list[str], *, cid: str | None = None, log: bool = True,
                **kw) -> ShimOptions:
        cid = cid or unique_id()
        self.ids.append(cid)
        bkw = {k: kw.pop(k) for k in ("tty", "env", "memory", "network", "mounts", "readonly")
               if k in kw}
        bundle = make_bundle(self.rootfs, self.base / "bundles" / cid, cid, args, **bkw)
        run_dir = self.short / cid[-12:]
        return ShimOptions(cid, str(bundle), str(run_dir),
                           log=str(self.base / f"{cid}-json.log") if log else None,
                           runtime=self.runtime, runtime_root=self.runtime_root,
                           runtime_mode=self.mode, **kw)

    def cleanup(self) -> None:
        for cid in self.ids:
            run_dir = self.short / cid[-12:]
            # Shown by pytest only when the test failed: what the shim said about itself.
            for name in ("shim.log", "state.json"):
                p = run_dir / name
                if p.exists() and p.stat().st_size:
                    print(f"--- {p}\n{p.read_text(errors='replace')[-4000:]}")
            st = client.read_state(str(run_dir)) or {}
            pid = st.get("shim_pid")
            if pid and st.get("status") != "stopped" and _alive(pid):
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            subprocess.run([self.runtime, "--root", self.runtime_root, "delete", "--force", cid],
                           capture_output=True)
        shutil.rmtree(self.short, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def alive(pid: int) -> bool:
    return _alive(pid)


async def launched(opts: ShimOptions, zygote=None, start: bool = False) -> client.ShimClient:
    """A shim for ``opts`` (its container created, started if asked) and a client of it."""
    await client.launch(opts, zygote)
    shim = await client.ShimClient.connect(opts.run_dir)
    if start:
        await shim.start()
    return shim


async def finish(shim: client.ShimClient) -> dict:
    """Kill the container (a manual stop), wait for its exit record, close the client."""
    await shim.kill(9, stop=True)
    ex = await shim.wait()
    await shim.close()
    return ex


def run(coro, timeout: float = 60.0):
    """Run one coroutine to completion (the tests are synchronous; the client is async)."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def log_records(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def wait_for(pred, timeout: float = 10.0, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def leftover_cgroups(cid: str) -> list[str]:
    out = []
    for ctrl in Path("/sys/fs/cgroup").iterdir():
        p = ctrl / f"berth-{cid}"
        if p.exists():
            out.append(str(p))
    return out


def children_of(pid: int) -> list[int]:
    try:
        return [int(x) for x in
                Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@contextlib.contextmanager
def zygote_process(prefix: str):
    """A zygote of our own, ended by its lifeline: (its Popen, a client.Zygote, its dir)."""
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    path = os.path.join(d, "zygote.sock")
    argv, env = client.shim_command("zygote", path)
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            start_new_session=True)
    try:
        assert proc.stdout.readline() == b"ready\n"
        yield proc, client.Zygote(path), d
    finally:
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(d, ignore_errors=True)
