import os

import pytest

from berth import atomic


def test_write_replaces_whole_file(tmp_path):
    p = tmp_path / "state.json"
    atomic.write_text(str(p), "old")
    atomic.write_text(str(p), "new", mode=0o600)
    assert p.read_text() == "new"
    assert p.stat().st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["state.json"]


def test_failed_write_keeps_old_content_and_no_temp(tmp_path):
    p = tmp_path / "state.json"
    atomic.write_text(str(p), "old")
    with pytest.raises(TypeError):
        atomic.write_bytes(str(p), 12)  # type: ignore[arg-type]
    assert p.read_text() == "old"
    assert os.listdir(tmp_path) == ["state.json"]
