"""Fixtures for berth-runtime's tests: bundles made from the session's busybox rootfs, and a
driver that runs the same bundle under berth-runtime and under runc (Debian's package).

Every name a test makes in a kernel-global place is unique: container ids carry a random
suffix, cgroups live under one per-session prefix (removed at the end), state roots and bundles
are in the test's tmp_path. A test's containers are force-deleted when it ends, pass or fail.
"""

import copy
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = REPO / ".venv" / "bin" / "berth-runtime"
PREFIX = f"berth-test-{uuid.uuid4().hex[:8]}"


def berth_cmd() -> list[str]:
    if LAUNCHER.exists() and "berth.runtime.cli" in LAUNCHER.read_text(errors="replace"):
        return [str(LAUNCHER)]
    return [sys.executable, "-I", "-S", "-c",
            f"import sys;sys.path.insert(0,{str(REPO)!r});"
            "from berth.runtime.cli import main;sys.exit(main())"]


def base_config() -> dict:
    """runc's `spec`, made scriptable: no terminal, no rlimits (as PEERS.md advises)."""
    d = Path(f"/tmp/{PREFIX}-spec")
    if not (d / "config.json").exists():
        d.mkdir(exist_ok=True)
        subprocess.run(["runc", "spec"], cwd=d, check=True)
    cfg = json.loads((d / "config.json").read_text())
    cfg["process"]["terminal"] = False
    cfg["process"]["rlimits"] = []
    return cfg


class Runtime:
    """One runtime's command line, with its own --root."""

    def __init__(self, name: str, cmd: list[str], root: Path) -> None:
        self.name, self.cmd, self.root = name, cmd, root
        self.ids: list[str] = []

    def __call__(self, *args: str, check: bool = False, timeout: float = 60,
                 **kw) -> subprocess.CompletedProcess:
        detached = args and (args[0] == "create" or (args[0] in ("run", "exec") and (
            "-d" in args or "--detach" in args)))
        if detached and not kw:
            # The container keeps the stdio it was given: pipes would never see EOF.
            import tempfile

            with tempfile.TemporaryFile() as err:
                r = subprocess.run([*self.cmd, "--root", str(self.root), *args],
                                   timeout=timeout, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=err)
                err.seek(0)
                r.stderr = err.read()
        else:
            kw.setdefault("capture_output", True)
            r = subprocess.run([*self.cmd, "--root", str(self.root), *args],
                               timeout=timeout, **kw)
        if check and r.returncode != 0:
            raise AssertionError(f"{self.name} {' '.join(args)} exited {r.returncode}: "
                                 f"{r.stderr!r}")
        return r

    def new_id(self, tag: str = "c") -> str:
        cid = f"{tag}-{uuid.uuid4().hex[:10]}"
        self.ids.append(cid)
        return cid

    def state(self, cid: str) -> dict:
        return json.loads(self("state", cid, check=True).stdout)

    def cleanup(self) -> None:
        for cid in self.ids:
            self("delete", "--force", cid)


class Bundle:
    def __init__(self, path: Path, rootfs: Path, cfg: dict) -> None:
        self.path, self.rootfs, self.cfg = path, rootfs, cfg

    def write(self) -> "Bundle":
        (self.path / "config.json").write_text(json.dumps(self.cfg, indent=1))
        return self


@pytest.fixture(scope="session")
def cgroup_prefix():
    if os.geteuid() != 0:
        yield PREFIX
        return
    yield PREFIX
    sys.path.insert(0, str(REPO))
    from berth.runtime import cgroups

    fs = cgroups.CgroupFS()
    for p in cgroups.V1Manager.for_path(PREFIX, fs).paths.values():
        if os.path.isdir(p):
            for d, _dirs, _files in sorted(os.walk(p), key=lambda x: -len(x[0])):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
    shutil.rmtree(f"/tmp/{PREFIX}-spec", ignore_errors=True)


@pytest.fixture
def runtimes(tmp_path, cgroup_prefix):
    """{"berth": Runtime, "runc": Runtime}, each with a private state root."""
    if not shutil.which("runc"):
        pytest.skip("runc is not installed (apt-get install runc)")
    rts = {"berth": Runtime("berth", berth_cmd(), tmp_path / "berth-root"),
           "runc": Runtime("runc", ["runc"], tmp_path / "runc-root")}
    try:
        yield rts
    finally:
        for rt in rts.values():
            rt.cleanup()


@pytest.fixture
def berth(runtimes):
    return runtimes["berth"]


@pytest.fixture
def make_bundle(busybox_rootfs, tmp_path, cgroup_prefix):
    """make_bundle(name, args, rootfs=None) -> Bundle with runc's default config."""
    made = []

    def make(name: str = "b", args: list[str] | None = None, rootfs: Path | None = None,
             copy_rootfs: bool = False) -> Bundle:
        path = tmp_path / f"bundle-{name}"
        path.mkdir()
        if rootfs is None:
            if copy_rootfs:
                rootfs = path / "rootfs"
                shutil.copytree(busybox_rootfs, rootfs, symlinks=True)
            else:
                rootfs = busybox_rootfs
        cfg = copy.deepcopy(base_config())
        cfg["root"] = {"path": str(rootfs), "readonly": True}
        cfg["process"]["args"] = args or ["true"]
        cfg["linux"]["cgroupsPath"] = f"{cgroup_prefix}/{name}-{uuid.uuid4().hex[:8]}"
        b = Bundle(path, rootfs, cfg)
        made.append(b)
        return b

    return make


def run_both(runtimes: dict, make_bundle, cfg_edit, args: list[str], name: str = "x",
             **kw) -> dict:  # noqa: D103
    """Run ``args`` in the same bundle (edited by cfg_edit) under both runtimes."""
    out = {}
    for rt_name, rt in runtimes.items():
        b = make_bundle(f"{name}-{rt_name}", args, **kw)
        if cfg_edit:
            cfg_edit(b.cfg, b)
        b.write()
        cid = rt.new_id(name)
        r = rt("run", "--bundle", str(b.path), cid, stdin=subprocess.DEVNULL)
        out[rt_name] = r
    return out


@pytest.fixture
def mapped_rootfs(busybox_rootfs):
    """A rootfs the mapped root (host uid 100000) owns, in a directory it can traverse."""
    import tempfile

    d = tempfile.mkdtemp(prefix="berth-userns-")
    os.chmod(d, 0o755)
    root = os.path.join(d, "rootfs")
    shutil.copytree(busybox_rootfs, root, symlinks=True)
    subprocess.run(["chown", "-R", "-h", "100000:100000", root], check=True)
    try:
        yield root
    finally:
        shutil.rmtree(d, ignore_errors=True)
