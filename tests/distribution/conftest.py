"""Fixtures for the distribution tests (the helpers they use are in regprocs.py)."""

import shutil
import tempfile
from pathlib import Path

import pytest

from .regprocs import start_berth_registry, start_reference_registry


@pytest.fixture
def berth_registry(tmp_path):
    r = start_berth_registry(tmp_path)
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture(scope="module")
def shared_registry(tmp_path_factory):
    """One berth registry for a module's tests; each test uses its own repository names."""
    r = start_berth_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def reference_registry(tmp_path):
    r = start_reference_registry(tmp_path)
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def docker_config(tmp_path, monkeypatch):
    """DOCKER_CONFIG (and HOME) pointed at a temp dir, so no test reads or writes the user's."""
    d = tmp_path / "docker-config"
    d.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(d))
    monkeypatch.setenv("HOME", str(tmp_path))
    return d


@pytest.fixture
def tmp_short():
    """A short temp dir (some peers put sockets under it)."""
    d = tempfile.mkdtemp(prefix="berth-dist-")
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)
