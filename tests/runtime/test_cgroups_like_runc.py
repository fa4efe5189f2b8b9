"""Cgroup behaviours runc's own integration tests (cgroups.bats, exec.bats, update.bats,
events.bats) check, run here under berth-runtime and runc side by side on this v1 host:
a pre-existing frozen or non-empty cgroup, `exec --cgroup` and `--ignore-paused`, `update`
lifting limits, OOM events.
"""

import os
import subprocess
import threading
import time

import pytest

from berth.runtime import cgroups

pytestmark = [pytest.mark.root, pytest.mark.interop]


def v1_only():
    fs = cgroups.CgroupFS()
    if fs.mode() == "unified":
        pytest.skip("a cgroup v1 host")
    return fs


def dirs(path: str) -> dict[str, str]:
    return cgroups.V1Manager.for_path(path, cgroups.CgroupFS()).paths


def memory_dir_with_swap(b) -> str:
    mem = dirs(b.cfg["linux"]["cgroupsPath"])["memory"]
    if not os.path.exists(os.path.dirname(mem) + "/memory.memsw.limit_in_bytes"):
        pytest.skip("no swap accounting")
    return mem


def _bundles(runtimes, make_bundle, tag, args=None):
    out = {}
    for name, rt in runtimes.items():
        b = make_bundle(f"{tag}-{name}", args or ["sleep", "100"]).write()
        out[name] = (rt, b, rt.new_id(tag))
    return out


def test_frozen_cgroup_is_refused(runtimes, make_bundle):
    v1_only()
    for name, (rt, b, cid) in _bundles(runtimes, make_bundle, "fz").items():
        fz = dirs(b.cfg["linux"]["cgroupsPath"])["freezer"]
        os.makedirs(fz)
        try:
            with open(fz + "/freezer.state", "w") as f:
                f.write("FROZEN")
            r = rt("run", "-d", "--bundle", str(b.path), cid, timeout=20)
            assert r.returncode == 1, (name, r.stderr)
            assert b"container's cgroup unexpectedly frozen" in r.stderr, (name, r.stderr)
            assert not (rt.root / cid).exists(), name
            assert os.path.isdir(fz), name  # not ours to remove
        finally:
            with open(fz + "/freezer.state", "w") as f:
                f.write("THAWED")
            os.rmdir(fz)


def test_non_empty_cgroup_is_warned_about(runtimes, make_bundle):
    for name, (rt, b, cid) in _bundles(runtimes, make_bundle, "ne").items():
        rt("run", "-d", "--bundle", str(b.path), cid, check=True)
        second = rt.new_id("ne2")
        r = rt("run", "-d", "--bundle", str(b.path), second)
        assert r.returncode == 0, (name, r.stderr)
        assert b"container's cgroup is not empty" in r.stderr, (name, r.stderr)


def test_exec_into_sub_cgroups(runtimes, make_bundle):
    v1_only()
    for name, (rt, b, cid) in _bundles(runtimes, make_bundle, "sc").items():
        rt("run", "-d", "--bundle", str(b.path), cid, check=True)
        base = dirs(b.cfg["linux"]["cgroupsPath"])
        rel = b.cfg["linux"]["cgroupsPath"]
        r = rt("exec", "--cgroup", "..", cid, "true")
        assert r.returncode == 255 and b".. is not a sub cgroup path" in r.stderr, name
        r = rt("exec", "--cgroup", "nonexistent", cid, "true")
        assert r.returncode == 255, name
        assert b"/nonexistent/cgroup.procs: no such file" in r.stderr, (name, r.stderr)
        r = rt("exec", "--cgroup", "whaaat:/", cid, "true")
        assert r.returncode == 255 and b"unknown controller " in r.stderr, (name, r.stderr)
        os.mkdir(base["memory"] + "/submem")
        os.mkdir(base["cpu"] + "/subcpu")
        try:
            r = rt("exec", "--cgroup", "memory:submem", "--cgroup", "cpu:subcpu", cid,
                   "cat", "/proc/self/cgroup", check=True)
            seen = dict(line.split(":", 2)[1:] for line in r.stdout.decode().splitlines())
            assert seen["memory"].endswith(f"{rel}/submem"), (name, seen)
            assert seen["cpu"].endswith(f"{rel}/subcpu"), (name, seen)
            assert seen["pids"].endswith(rel), (name, seen)
        finally:
            rt("delete", "-f", cid)
            for d in (base["memory"] + "/submem", base["cpu"] + "/subcpu"):
                if os.path.isdir(d):
                    os.rmdir(d)


def test_exec_ignore_paused(runtimes, make_bundle):
    for name, (rt, b, cid) in _bundles(runtimes, make_bundle, "ip").items():
        rt("run", "-d", "--bundle", str(b.path), cid, check=True)
        rt("pause", cid, check=True)
        r = rt("exec", cid, "echo", "ok")
        assert r.returncode == 255 and b"cannot exec in a paused container" in r.stderr, name
        threading.Timer(1.0, lambda rt=rt, cid=cid: rt("resume", cid)).start()
        t0 = time.monotonic()
        r = rt("exec", "--ignore-paused", cid, "echo", "ok", timeout=30)
        assert r.returncode == 0 and r.stdout == b"ok\n", (name, r.stderr)
        assert time.monotonic() - t0 >= 0.9, name  # it waited for the resume


def test_update_memory_unlimited_lifts_swap_too(runtimes, make_bundle):
    v1_only()
    for name, (rt, b, cid) in _bundles(runtimes, make_bundle, "um").items():
        mem = memory_dir_with_swap(b)
        b.cfg["linux"]["resources"]["memory"] = {"limit": 64 << 20, "swap": 96 << 20}
        b.write()
        rt("run", "-d", "--bundle", str(b.path), cid, check=True)
        r = rt("update", cid, "--memory", "-1")
        assert r.returncode == 0, (name, r.stderr)
        unlimited = 9223372036854771712  # the v1 "max", page-aligned
        assert int(open(mem + "/memory.limit_in_bytes").read()) == unlimited, name
        assert int(open(mem + "/memory.memsw.limit_in_bytes").read()) == unlimited, name


def test_events_reports_oom_and_ends_with_the_container(runtimes, make_bundle):
    v1_only()
    for name, (rt, b, cid) in _bundles(runtimes, make_bundle, "oom").items():
        memory_dir_with_swap(b)
        b.cfg["linux"]["resources"]["memory"] = {"limit": 16 << 20, "swap": 16 << 20}
        b.cfg["root"]["readonly"] = False
        b.cfg["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"})
        b.write()
        rt("run", "-d", "--bundle", str(b.path), cid, check=True)
        ev = subprocess.Popen([*rt.cmd, "--root", str(rt.root), "events", "--interval", "200ms",
                               cid], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            first = ev.stdout.readline()  # a stats event: it is watching
            assert b'"type":"stats"' in first, (name, first)
            rt("exec", "-d", cid, "sh", "-c", "x=$(head -c 40000000 /dev/zero | tr '\\0' a)")
            deadline = time.monotonic() + 20
            seen = b""
            while b'"type":"oom"' not in seen and time.monotonic() < deadline:
                seen += ev.stdout.readline()
            assert f'{{"type":"oom","id":"{cid}"}}'.encode() in seen, (name, seen[-300:])
            rt("delete", "-f", cid, check=True)
            assert ev.wait(timeout=15) == 0, name  # the cgroup is gone: events ends
        finally:
            if ev.poll() is None:
                ev.kill()
                ev.wait()
