"""``cp`` lands the same files as the docker CLI on dockerd, case by case: trailing "/" and
"/.", symlinks at either end, -L, a directory onto a file, a parent that does not exist. The
berth CLI on berthd is compared with the docker CLI on dockerd (and the docker CLI on berthd
where berthd's archive naming decides), by the tree left behind and the last error line."""

import os
import shutil
import subprocess

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.root, pytest.mark.interop]

SETUP = ("rm -rf /s /t; mkdir -p /s/dir/sub /t/dir; echo f > /s/file; echo a > /s/dir/a.txt; "
         "echo b > /s/dir/sub/b; ln -s dir /s/ldir; ln -s file /s/lfile; "
         "ln -s nowhere /s/broken; echo x > /t/file; ln -s dir /t/ldir; ln -s file /t/lfile")


@pytest.fixture(scope="module")
def engines(cbd, dockerd):
    """(name, CLI argv, daemon's docker argv) of each side, with a container "cpr" in each."""
    sides = [("docker>dockerd", ["docker", "-H", dockerd.host], ["docker", "-H", dockerd.host]),
             ("docker>berthd", ["docker", "-H", cbd.host], ["docker", "-H", cbd.host]),
             ("berth>berthd", [str(REPO / ".venv/bin/berth"), "-H", cbd.host],
              ["docker", "-H", cbd.host])]
    for d in (sides[0][2], sides[1][2]):
        subprocess.run(d + ["rm", "-f", "cpr"], capture_output=True)
        subprocess.run(d + ["run", "-d", "--name", "cpr", "--network", "none", "busybox", "sh",
                            "-c", SETUP + "; exec sleep 600"], check=True, capture_output=True)
    try:
        yield sides
    finally:
        for d in (sides[0][2], sides[1][2]):
            subprocess.run(d + ["rm", "-f", "cpr"], capture_output=True)


def _host_setup(base):
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(f"{base}/s/dir/sub")
    os.makedirs(f"{base}/t/dir")
    for p, text in (("s/file", "f"), ("s/dir/a.txt", "a"), ("s/dir/sub/b", "b"), ("t/file", "x")):
        with open(f"{base}/{p}", "w") as f:
            f.write(text + "\n")
    for link, target in (("s/ldir", "dir"), ("s/lfile", "file"), ("s/broken", "nowhere"),
                         ("t/ldir", "dir"), ("t/lfile", "file")):
        os.symlink(target, f"{base}/{link}")


def _host_tree(p) -> list[str]:
    out = []
    for root, dirs, files in os.walk(p):
        for n in sorted(dirs + files):
            f = os.path.join(root, n)
            rel = os.path.relpath(f, p)
            if os.path.islink(f):
                out.append(f"{rel} -> {os.readlink(f)}")
            elif os.path.isdir(f):
                out.append(rel + "/")
            else:
                with open(f) as fh:
                    out.append(f"{rel} [{fh.read().strip()}]")
    return sorted(out)


def _last_line(err: str, base: str) -> str:
    lines = [x for x in err.strip().replace(base, "BASE").splitlines() if "level=error" not in x]
    return lines[-1] if lines else ""


def _compare(results):
    first = results[0][1]
    for name, got in results[1:]:
        if "lstat" in first[1] and "not a directory" in first[1]:  # dockerd names host paths
            got, first = (got[0], "", got[2]), (first[0], "", first[2])
        assert got == first, f"{name} {got} != docker>dockerd {first}"


@pytest.mark.parametrize("flags,src,dst,sides", [
    ([], "/s/file", "new/", 2), ([], "/s/dir", "file", 2), ([], "/s/dir/.", "new", 3),
    ([], "/s/dir", "new/", 2), ([], "/s/dir", "nope/x", 2), ([], "/s/file", "lfile", 2),
    ([], "/s/dir/./", "new", 3), ([], "/s/dir/..", "new", 3), ([], "/s/dir", "ldir", 2),
    (["-L"], "/s/lfile", "dir", 2), (["-L"], "/s/ldir/", "new", 2), ([], "/s/file/", "x", 2),
])
def test_from_container(engines, tmp_path, flags, src, dst, sides):
    results = []
    for name, cli, _d in (engines[0], engines[2], engines[1])[:sides]:
        base = str(tmp_path / name)
        _host_setup(base)
        r = subprocess.run(cli + ["cp", *flags, f"cpr:{src}", os.path.join(base, "t", dst)],
                           capture_output=True, text=True, cwd=base, timeout=60)
        results.append((name, (r.returncode, _last_line(r.stderr, base),
                               _host_tree(f"{base}/t"))))
    _compare(results)


@pytest.mark.parametrize("flags,src,dst", [
    ([], "file", "/t/new/"), ([], "dir", "/t/file"), ([], "dir", "/t/new/"),
    ([], "file/", "/t/new"), ([], "file", "/t/ldir"), ([], "file", "/t/lfile"),
    ([], "dir", "/t/ldir"), ([], "dir/.", "/t/new"), (["-L"], "dir/.", "/t/dir"),
    (["-L"], "broken", "/t/new"), ([], "ldir/", "/t/new"), ([], "dir", "/t/nope/x"),
])
def test_to_container(engines, tmp_path, flags, src, dst):
    results = []
    for name, cli, daemon in (engines[0], engines[2]):
        base = str(tmp_path / name)
        _host_setup(base)
        subprocess.run(daemon + ["exec", "cpr", "sh", "-c", SETUP], check=True)
        r = subprocess.run(cli + ["cp", *flags, os.path.join(base, "s", src), f"cpr:{dst}"],
                           capture_output=True, text=True, cwd=base, timeout=60)
        tree = subprocess.run(daemon + ["exec", "cpr", "sh", "-c",
                                        "cd /t && find . | sort | while read f; do "
                                        "if [ -L \"$f\" ]; then echo \"$f -> $(readlink $f)\"; "
                                        "elif [ -d \"$f\" ]; then echo \"$f/\"; "
                                        "else echo \"$f [$(cat $f)]\"; fi; done"],
                              capture_output=True, text=True).stdout
        results.append((name, (r.returncode, _last_line(r.stderr, base), tree)))
    _compare(results)
