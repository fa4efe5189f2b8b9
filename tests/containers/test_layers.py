"""The writable layer: containers share their image's layers, write only to their own upper
directory; diff, commit and export read that layer."""

import io
import os
import subprocess
import tarfile

import pytest

from .conftest import run

pytestmark = pytest.mark.root

BIG = 200 * 1024 * 1024


@pytest.fixture(scope="module")
def big_image(cbd, busybox_rootfs, tmp_path_factory):
    """busybox plus a 200 MB file, imported once: bigimg:1."""
    d = tmp_path_factory.mktemp("bigimg")
    tar = d / "big.tar"
    big = d / "big.bin"
    with open(big, "wb") as f:
        block = os.urandom(1 << 20)
        for _ in range(BIG >> 20):
            f.write(block)
    subprocess.run(["tar", "-C", str(busybox_rootfs), "-cf", str(tar), "."], check=True)
    subprocess.run(["tar", "-C", str(d), "-rf", str(tar), "big.bin"], check=True)
    big.unlink()
    cbd.berth("import", str(tar), "bigimg:1")
    tar.unlink()
    yield "bigimg:1"
    cbd.berth("rmi", "bigimg:1", check=False)


def du(path) -> int:
    out = subprocess.run(["du", "-sxB1", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return int(out.split()[0])


def test_twenty_containers_cost_almost_no_disk(bd, big_image):
    before = du(bd.root)
    ids = [bd.berth("run", "-d", "--network", "none", big_image, "sleep", "60").stdout.strip()
           for _ in range(20)]
    after = du(bd.root)
    assert after - before < 5 * 1024 * 1024, (before, after)  # all 20: under 5 MB
    # each one sees the whole image
    assert bd.berth("exec", ids[0], "stat", "-c", "%s", "/big.bin").stdout == f"{BIG}\n"
    # a write lands in one container only
    bd.berth("exec", ids[0], "sh", "-c", "echo mine > /etc/only-here")
    assert bd.berth("exec", ids[0], "cat", "/etc/only-here").stdout == "mine\n"
    for other in ids[1:3]:
        r = bd.berth("exec", other, "cat", "/etc/only-here", check=False)
        assert r.returncode == 1
    r = run(bd, big_image, "cat", "/etc/only-here", check=False)
    assert r.returncode == 1  # nor in the image
    bd.berth("rm", "-f", *ids)


def test_diff_commit_export(bd, tmp_path):
    bd.berth("run", "--name", "chg", "--network", "none", "busybox", "sh", "-c",
             "mkdir /newdir && echo x > /newdir/f && rm /etc/group && echo y >> /etc/passwd")
    diff = bd.berth("diff", "chg").stdout.splitlines()
    assert diff == ["C /etc", "D /etc/group", "C /etc/passwd", "A /newdir", "A /newdir/f"]
    assert bd.docker("diff", "chg").stdout.splitlines() == diff
    iid = bd.berth("commit", "-m", "changed", "-c", "CMD [\"cat\", \"/newdir/f\"]", "chg",
                   "committed:1").stdout.strip()
    assert iid.startswith("sha256:")
    assert run(bd, "committed:1").stdout == "x\n"
    out = run(bd, "committed:1", "sh", "-c", "test -e /etc/group || echo gone; tail -1 "
              "/etc/passwd").stdout
    assert out == "gone\ny\n"
    hist = bd.berth("history", "--format", "{{.Comment}}", "committed:1").stdout
    assert hist.splitlines()[0] == "changed"
    # a tagged commit has a tag time, as on dockerd (an untagged one has Go's zero time)
    tagged = bd.berth("image", "inspect", "-f", "{{.Metadata.LastTagTime}}", "committed:1")
    assert tagged.stdout.strip() not in ("", "0001-01-01 00:00:00 +0000 UTC")
    exported = tmp_path / "exp.tar"
    bd.berth("export", "-o", str(exported), "chg")
    with tarfile.open(exported) as t:
        names = set(t.getnames())
        assert "newdir/f" in names and "bin/busybox" in names and "etc/group" not in names
        assert t.extractfile("newdir/f").read() == b"x\n"
    r = subprocess.run(["docker", "-H", bd.host, "export", "chg"], capture_output=True,
                       check=True)
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as t:
        assert "newdir/f" in t.getnames()
    bd.berth("rm", "chg")
    bd.berth("rmi", "committed:1")


def test_a_container_keeps_its_image(bd, tmp_path):
    bd.berth("run", "--name", "mk", "--network", "none", "busybox", "touch", "/made")
    iid = bd.berth("commit", "mk").stdout.strip()  # untagged: dangling, what prune takes
    bd.berth("rm", "mk")
    bd.berth("create", "--name", "user", iid, "true")
    r = bd.berth("rmi", iid, check=False)
    assert r.returncode == 1 and "image is being used by stopped container" in r.stderr
    bd.berth("image", "prune", "-f")
    assert iid in bd.berth("images", "-q", "--no-trunc", "-a").stdout  # in use: kept
    bd.berth("start", "-a", "user")  # and its layers too
    bd.berth("rm", "user")
    bd.berth("image", "prune", "-f")
    assert iid not in bd.berth("images", "-q", "--no-trunc", "-a").stdout
