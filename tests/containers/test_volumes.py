"""Volumes: named, anonymous, --mount, --tmpfs, the volume commands, copy-up, prune."""

import json

import pytest

from .conftest import run

pytestmark = pytest.mark.root


def test_named_volume_outlives_its_containers(bd):
    assert bd.berth("volume", "create", "--label", "a=b", "data1").stdout == "data1\n"
    run(bd, "-v", "data1:/data", "busybox", "sh", "-c", "echo kept > /data/f")
    assert run(bd, "-v", "data1:/data", "busybox", "cat", "/data/f").stdout == "kept\n"
    v = json.loads(bd.berth("volume", "inspect", "data1").stdout)[0]
    assert v["Name"] == "data1" and v["Driver"] == "local" and v["Labels"] == {"a": "b"}
    assert v["Mountpoint"].endswith("/volumes/data1/_data")
    assert bd.berth("volume", "ls", "--format", "{{.Driver}} {{.Name}}").stdout == \
        "local data1\n"


def test_run_creates_a_missing_named_volume_and_rm_v_keeps_it(bd):
    bd.berth("run", "--name", "vc", "-v", "auto1:/data", "--network", "none", "busybox",
             "touch", "/data/x")
    assert "auto1" in bd.berth("volume", "ls", "-q").stdout.split()
    r = bd.berth("volume", "rm", "auto1", check=False)
    assert r.returncode == 1 and "volume is in use" in r.stderr
    bd.berth("rm", "-v", "vc")  # -v removes anonymous volumes only
    assert "auto1" in bd.berth("volume", "ls", "-q").stdout.split()
    assert bd.berth("volume", "rm", "auto1").stdout == "auto1\n"
    r = bd.berth("volume", "inspect", "auto1", check=False)
    assert r.returncode == 1 and "No such volume" in r.stderr


def test_anonymous_volume_goes_with_rm_flag(bd):
    run(bd, "-v", "/anon", "busybox", "touch", "/anon/x")
    assert bd.berth("volume", "ls", "-q").stdout == ""  # --rm took its anonymous volume
    bd.berth("create", "--name", "an", "-v", "/anon", "busybox", "true")
    vols = bd.berth("volume", "ls", "-q").stdout.split()
    assert len(vols) == 1 and len(vols[0]) == 64
    bd.berth("rm", "-v", "an")
    assert bd.berth("volume", "ls", "-q").stdout == ""


def test_a_new_volume_starts_with_the_images_content(bd):
    out = run(bd, "-v", "etccopy:/etc", "busybox", "cat", "/etc/group").stdout
    assert out.startswith("root:x:0:")
    out = run(bd, "--mount", "type=volume,src=nocp,dst=/etc,volume-nocopy", "busybox", "ls",
              "/etc").stdout
    assert out == ""


def test_mount_flag_kinds(bd, tmp_path):
    (tmp_path / "f").write_text("bound\n")
    out = run(bd, "--mount", f"type=bind,src={tmp_path},dst=/b,readonly",
              "--mount", "type=volume,src=mv,dst=/v",
              "--mount", "type=tmpfs,dst=/t,tmpfs-size=1m",
              "--tmpfs", "/t2:size=2m,mode=700", "busybox", "sh", "-c",
              "cat /b/f; touch /b/x 2>/dev/null || echo ro; touch /v/ok && echo vol; "
              "grep -E ' /t2? ' /proc/mounts | cut -d' ' -f2,3,4").stdout.splitlines()
    assert out[:3] == ["bound", "ro", "vol"]
    mounts = {m.split()[0]: m.split()[2] for m in out[3:]}
    assert set(mounts) == {"/t", "/t2"}
    assert "size=1024k" in mounts["/t"] and "size=2048k" in mounts["/t2"]
    assert "mode=700" in mounts["/t2"]


def test_volume_driver_options_tmpfs(bd):
    bd.berth("volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs", "--opt",
             "o=size=1m", "tv")
    out = run(bd, "-v", "tv:/d", "busybox", "sh", "-c",
              "grep ' /d ' /proc/mounts | cut -d' ' -f3").stdout
    assert out == "tmpfs\n"


def test_volume_prune_and_bad_names(bd):
    bd.berth("volume", "create", "keep1")
    bd.berth("volume", "create", "drop1")
    bd.berth("run", "-d", "--name", "user1", "-v", "keep1:/k", "--network", "none", "busybox",
             "sleep", "60")
    out = bd.berth("volume", "prune", "-f", "-a").stdout
    assert "drop1" in out and "keep1" not in out
    assert bd.berth("volume", "ls", "-q").stdout == "keep1\n"
    r = bd.berth("volume", "create", "a", check=False)
    assert r.returncode == 1 and "volume name is too short" in r.stderr
    r = bd.berth("volume", "create", "bad/name", check=False)
    assert r.returncode == 1 and "includes invalid characters" in r.stderr


def test_docker_cli_volumes(bd):
    assert bd.docker("volume", "create", "dv1").stdout == "dv1\n"
    assert bd.docker("run", "--rm", "--network", "none", "-v", "dv1:/x", "busybox", "sh", "-c",
                     "echo hi > /x/f && cat /x/f").stdout == "hi\n"
    assert bd.docker("volume", "ls", "-q").stdout == "dv1\n"
    assert bd.docker("volume", "inspect", "-f", "{{.Name}} {{.Driver}}", "dv1").stdout == \
        "dv1 local\n"
    assert bd.docker("volume", "rm", "dv1").stdout == "dv1\n"
