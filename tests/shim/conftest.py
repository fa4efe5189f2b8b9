"""Fixtures for the shim's tests: one conformance run per OCI runtime (Debian's runc, and
berth-runtime once it exists), a zygote per session, and a per-test Env that cleans up."""

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

from .shimkit import Env, zygote_process


def _berth_runtime() -> str | None:
    # BERTH_TEST_RUNTIME names another build of berth-runtime (e.g. a branch not merged yet).
    other = os.environ.get("BERTH_TEST_RUNTIME")
    if other:
        return other if os.access(other, os.X_OK) else None
    exe = Path(__file__).resolve().parents[2] / ".venv/bin/berth-runtime"
    if importlib.util.find_spec("berth.runtime.cli") is None or not exe.exists():
        return None
    return str(exe)


# One conformance run per way of driving an OCI runtime: Debian's runc as a command,
# berth-runtime in-process (the shim's default for it) and berth-runtime as a command.
@pytest.fixture(params=["runc", "berth-runtime", "berth-runtime-cli"])
def runtime(request) -> tuple[str, str]:
    if os.geteuid() != 0:
        pytest.skip("needs root: the shim runs real containers")
    if request.param == "runc":
        if not shutil.which("runc"):
            pytest.skip("runc is not installed (apt-get install runc)")
        return "runc", "auto"
    exe = _berth_runtime()
    if exe is None:
        pytest.skip("berth-runtime is not on this branch yet")
    if os.environ.get("BERTH_TEST_RUNTIME") and request.param == "berth-runtime":
        pytest.skip("another berth-runtime build runs as a command only")
    return exe, "exec" if request.param == "berth-runtime-cli" else "auto"


@pytest.fixture
def env(runtime, rootfs_copy, tmp_path):
    e = Env(tmp_path, rootfs_copy, *runtime)
    try:
        yield e
    finally:
        e.cleanup()


@pytest.fixture(scope="session")
def zygote():
    """A zygote for the whole session, ended (by its lifeline) at the end."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with zygote_process("bz-") as (_, z, _):
        yield z
