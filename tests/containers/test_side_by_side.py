"""What the independent check found, each beside the real dockerd through the real clients
(docker CLI 28, docker-py): the user sees the same codes, words and JSON from both."""

import io
import os
import subprocess
import tarfile
import threading
import time

import docker
import pytest

pytestmark = [pytest.mark.root, pytest.mark.interop]


def both(bd, dockerd, *args, **kw):
    """(berthd's result, dockerd's result) of ``docker ARGS``."""
    return bd.docker(*args, check=False, **kw), dockerd.docker(*args, check=False, text=True,
                                                                **kw)


@pytest.mark.parametrize("args,code", [
    (["-w", "/etc", "busybox", "/etc/passwd"], 126),
    (["-w", "/etc", "busybox", "./passwd"], 126),
    (["busybox", "/tmp"], 126),
    (["busybox", "/nonexist"], 127),
    (["busybox", "nonexist"], 127),
    (["-e", "PATH=/etc", "busybox", "passwd"], 127),
])
def test_a_command_that_cannot_start(bd, dockerd, args, code):
    b, d = both(bd, dockerd, "run", "--rm", "--network", "none", *args)
    assert b.returncode == d.returncode == code, (b.stderr, d.stderr)
    # the words of runc's error, and no "Error waiting for container" from the removal's wait
    tail = d.stderr.split("unable to start container process: ")[1].split(": unknown")[0]
    assert tail in b.stderr
    assert "Error waiting" not in b.stderr
    assert bd.docker("ps", "-aq").stdout == ""


def test_a_file_bound_onto_a_directory(bd, dockerd, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    b, d = both(bd, dockerd, "run", "--rm", "--network", "none", "-v", f"{f}:/etc", "busybox",
                "true")
    assert b.returncode == d.returncode == 125
    hint = ("not a directory: unknown: Are you trying to mount a directory onto a file (or "
            "vice-versa)? Check if the specified host path exists and is the expected type")
    assert hint in d.stderr
    assert hint.split(": unknown: ")[1] in b.stderr
    assert "Error waiting" not in b.stderr


def test_wait_for_removal_of_a_container_that_failed_to_start(bd, dockerd):
    results = []
    for c in (bd.client(), docker.DockerClient(base_url=dockerd.host, timeout=60)):
        ctr = c.containers.create("busybox", ["/nonexist"], network_mode="none")
        out = {}
        try:
            with pytest.raises(docker.errors.APIError):
                ctr.start()
            t = threading.Thread(target=lambda c=c, i=ctr.id, o=out: o.update(
                c.api.wait(i, condition="removed")))
            t.start()
            time.sleep(0.5)  # the wait is in before the removal
            ctr.remove()
            t.join(10)
            results.append(out)
        finally:
            try:
                ctr.remove(force=True)
            except docker.errors.NotFound:
                pass
            c.close()
    assert results[0] == results[1] == {"StatusCode": 127, "Error": None}


def test_logs_tail_that_is_not_a_number_means_all(bd, dockerd):
    for d in (bd, dockerd):
        d.docker("run", "--name", "tl", "--network", "none", "busybox", "sh", "-c",
                 "echo a; echo b")
    try:
        for tail in ("x", "-1", "all", "1"):
            b, d = both(bd, dockerd, "logs", "--tail", tail, "tl")
            assert (b.returncode, b.stdout, b.stderr) == (d.returncode, d.stdout, d.stderr)
        assert b.stdout == "b\n"
    finally:
        for d in (bd, dockerd):
            d.docker("rm", "-f", "tl", check=False)


def test_stats_of_a_stopped_container(bd, dockerd):
    for d in (bd, dockerd):
        d.docker("create", "--name", "st", "--network", "none", "busybox", "true")
    try:
        b, d = both(bd, dockerd, "stats", "--no-stream", "st")
        assert b.returncode == d.returncode == 0
        assert b.stdout.splitlines()[1].split()[1:] == d.stdout.splitlines()[1].split()[1:]
        berth = bd.berth("stats", "--no-stream", "st").stdout
        assert berth.splitlines()[1].split()[1:] == d.stdout.splitlines()[1].split()[1:]
    finally:
        for d in (bd, dockerd):
            d.docker("rm", "-f", "st", check=False)


def _owners(d, ctr: str, path: str) -> list[str]:
    """uid/gid of each file under PATH in the container, read through the archive API."""
    r = subprocess.run(["docker", "-H", d.host, "cp", f"{ctr}:{path}", "-"],
                       capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as t:
        return sorted(f"{m.name} {m.uid}:{m.gid}" for m in t if m.isfile())


@pytest.mark.parametrize("running", [True, False])
def test_cp_into_a_container_keeps_owners_and_a_gives_them_to_its_user(bd, dockerd, tmp_path,
                                                                        running):
    src = tmp_path / "d"
    src.mkdir()
    (src / "f").write_text("x")
    os.chown(src / "f", 1234, 5678)
    got = []
    for d in (bd, dockerd):
        if running:
            d.docker("run", "-d", "--name", "own", "-u", "nobody", "--network", "none",
                     "busybox", "sleep", "60")
        else:
            d.docker("create", "--name", "own", "-u", "nobody", "--network", "none",
                     "busybox", "true")
        try:
            d.docker("cp", str(src), "own:/plain")
            d.docker("cp", "-a", str(src), "own:/archive")
            got.append(_owners(d, "own", "/plain") + _owners(d, "own", "/archive"))
        finally:
            d.docker("rm", "-f", "own", check=False)
    assert got[0] == got[1] == ["plain/f 1234:5678", "archive/f 65534:65534"]


def test_cp_out_of_a_container_belongs_to_the_user_who_ran_it(bd, dockerd, tmp_path):
    for d in (bd, dockerd):
        d.docker("run", "--name", "out", "--network", "none", "busybox", "sh", "-c",
                 "mkdir /d; echo x > /d/f; chown 1:2 /d /d/f")
    try:
        for who, cli in (("docker-dockerd", dockerd.docker), ("docker-berthd", bd.docker),
                         ("berth", bd.berth)):
            for flag in ([], ["-a"]):
                dst = tmp_path / f"{who}{''.join(flag)}"
                cli("cp", *flag, "out:/d", str(dst))
                st = (dst / "f").stat()
                assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid()), (who, flag)
    finally:
        for d in (bd, dockerd):
            d.docker("rm", "-f", "out", check=False)


def _names(data: bytes) -> set[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return {m.name.strip("/") for m in t}


# dockerd's init layer: placeholders berth does not make
_INIT_LAYER = {".dockerenv", "dev/console", "dev/pts", "dev/shm", "etc/mtab"}


def test_export_and_cp_root_of_a_running_container(bd, dockerd, tmp_path):
    got = {}
    for name, d in (("berthd", bd), ("dockerd", dockerd)):
        d.docker("run", "-d", "--name", "ex", "--network", "none", "--tmpfs", "/scratch",
                 "busybox", "sh", "-c", "echo hi > /made; echo t > /scratch/t; sleep 60")
        try:
            exp = subprocess.run(["docker", "-H", d.host, "export", "ex"], capture_output=True,
                                 timeout=60)
            arc = subprocess.run(["docker", "-H", d.host, "cp", "ex:/", "-"],
                                 capture_output=True, timeout=60)
            dst = tmp_path / name
            cp = subprocess.run(["docker", "-H", d.host, "cp", "ex:/", str(dst)],
                                capture_output=True, timeout=60)
            got[name] = (exp.returncode, arc.returncode, cp.returncode,
                         _names(exp.stdout) - _INIT_LAYER,
                         {n.lstrip("/") for n in _names(arc.stdout)} - _INIT_LAYER,
                         sorted(p.name for p in dst.iterdir()))
        finally:
            d.docker("rm", "-f", "ex", check=False)
    b, d = got["berthd"], got["dockerd"]
    assert b[:3] == d[:3] == (0, 0, 0)
    assert "made" in b[3] and "proc" in b[3] and not any(n.startswith("proc/") for n in b[3])
    assert b[3] == d[3]  # the rootfs alone: no tmpfs, no /proc or /sys contents
    assert not any(n.startswith(("proc/", "sys/", "dev/")) for n in b[4])
    assert b[5] == [n for n in d[5] if n != ".dockerenv"]
