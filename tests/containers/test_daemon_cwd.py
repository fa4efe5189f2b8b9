"""berthd's helper processes (the shim zygote, shims, the runtime's init, the cp helper) run
berth's own code whichever directory berthd was started from: a ``berth`` package in the working
directory (a checkout of another version, or a directory others can write) is never imported."""

import pytest

from tests.conftest import _start_berthd

from .conftest import remove_cgroup_parent

pytestmark = pytest.mark.root


def test_a_berth_package_in_the_working_directory_is_not_run(busybox_tar, tmp_path,
                                                             monkeypatch):
    decoy = tmp_path / "cwd"
    marker = tmp_path / "imported"
    (decoy / "berth").mkdir(parents=True)
    (decoy / "berth" / "__init__.py").write_text(
        f"open({str(marker)!r}, 'a').write('x')\nraise SystemExit('decoy berth imported')\n")
    monkeypatch.chdir(decoy)
    parent = f"berth-cwd-{tmp_path.name[-8:]}"
    d = _start_berthd(("--cgroup-parent", parent))
    try:
        d.berth("import", str(busybox_tar), "busybox:latest")
        # a file without an x bit: only berth's own init lookup says "permission denied"
        r = d.berth("run", "--rm", "--network", "none", "busybox", "/etc/passwd", check=False)
        assert r.returncode == 126 and "permission denied" in r.stderr, r.stderr
        d.berth("run", "-d", "--name", "cw", "--network", "none", "busybox", "sleep", "60")
        assert d.berth("exec", "cw", "echo", "in").stdout == "in\n"
        out = tmp_path / "passwd"
        d.berth("cp", "cw:/etc/passwd", str(out))
        assert out.read_text().startswith("root:")
        d.berth("rm", "-f", "cw")
        assert not marker.exists()
    finally:
        d.stop()
        remove_cgroup_parent(parent)
