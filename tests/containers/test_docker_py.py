"""The Docker SDK for Python's containers API against berthd."""

import io
import tarfile
import time

import pytest

pytestmark = [pytest.mark.root, pytest.mark.interop]


def test_run_returns_output_and_raises_on_failure(bd):
    import docker

    c = bd.client()
    assert c.containers.run("busybox", ["echo", "hi"], remove=True, network_mode="none") == \
        b"hi\n"
    with pytest.raises(docker.errors.ContainerError) as e:
        c.containers.run("busybox", ["sh", "-c", "echo bad >&2; exit 3"], remove=True,
                         network_mode="none")
    assert e.value.exit_status == 3 and b"bad" in e.value.stderr
    # create, not run: run would try to pull it from Docker Hub (no network here)
    with pytest.raises(docker.errors.ImageNotFound):
        c.containers.create("nosuchimage-berth-test:1", "true", network_mode="none")


def test_lifecycle_exec_logs_archive(bd):
    import docker

    client = bd.client()
    ct = client.containers.run("busybox", ["sh", "-c", "echo hello; sleep 300"], detach=True,
                               name="pyc", network_mode="none", labels={"k": "v"},
                               environment={"E": "1"})
    try:
        ct.reload()
        assert ct.status == "running" and ct.name == "pyc" and ct.labels == {"k": "v"}
        deadline = time.monotonic() + 5
        while b"hello" not in ct.logs() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ct.logs() == b"hello\n"
        res = ct.exec_run(["sh", "-c", "echo $E; exit 2"])
        assert res.exit_code == 2 and res.output == b"1\n"
        res = ct.exec_run("cat /etc/hostname", demux=True)
        assert res.output[0] == ct.id[:12].encode() + b"\n"
        # put_archive / get_archive
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            data = b"archived\n"
            ti = tarfile.TarInfo("note.txt")
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
        assert ct.put_archive("/tmp", buf.getvalue())
        stream, stat = ct.get_archive("/tmp/note.txt")
        assert stat["name"] == "note.txt" and stat["size"] == 9
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as t:
            assert t.extractfile("note.txt").read() == b"archived\n"
        with pytest.raises(docker.errors.NotFound):
            ct.get_archive("/nonexistent")
        top = ct.top()
        assert "PID" in top["Titles"] and len(top["Processes"]) == 1
        s = ct.stats(stream=False)
        assert s["memory_stats"]["usage"] > 0 and s["pids_stats"]["current"] == 1
        assert s["cpu_stats"]["system_cpu_usage"] > s["precpu_stats"]["system_cpu_usage"] > 0
        ct.pause()
        ct.reload()
        assert ct.status == "paused"
        ct.unpause()
        ct.stop(timeout=1)
        assert ct.wait()["StatusCode"] == 137
        ct.reload()
        assert ct.status == "exited"
        assert [c.name for c in client.containers.list(all=True)] == ["pyc"]
        assert client.containers.list() == []
    finally:
        ct.remove(force=True)
    with pytest.raises(docker.errors.NotFound):
        client.containers.get("pyc")


def test_create_conflict_and_bad_values(bd):
    import docker

    client = bd.client()
    client.containers.create("busybox", "true", name="dup")
    with pytest.raises(docker.errors.APIError) as e:
        client.containers.create("busybox", "true", name="dup")
    assert e.value.status_code == 409
    with pytest.raises(docker.errors.APIError) as e:
        client.containers.create("busybox", "true", mem_limit="1k")
    assert e.value.status_code == 400 and "Minimum memory limit" in str(e.value)
    assert len(client.containers.list(all=True)) == 1


def test_attach_socket_and_wait(bd):
    client = bd.client()
    ct = client.containers.create("busybox", ["sh", "-c", "read line; echo got $line"],
                                  stdin_open=True, network_mode="none")
    sock = ct.attach_socket(params={"stdin": 1, "stdout": 1, "stream": 1})
    ct.start()
    raw = sock._sock
    raw.sendall(b"value\n")
    out = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and b"got" not in out:
        chunk = raw.recv(4096)
        if not chunk:
            break
        out += chunk
    sock.close()
    assert ct.wait()["StatusCode"] == 0
    assert b"got value\n" in out
    # non-tty attach is framed: stream type 1, three zero bytes, big-endian length
    assert out.startswith(b"\x01\x00\x00\x00")


def test_kill_then_remove_and_volumes_api(bd):
    client = bd.client()
    ct = client.containers.run("busybox", "sleep 100", detach=True, network_mode="none",
                               mem_limit="64m", pids_limit=10, read_only=True,
                               tmpfs={"/run": "size=1m"}, user="nobody", hostname="pyhost",
                               init=True)
    ct.reload()
    hc = ct.attrs["HostConfig"]
    assert (hc["Memory"], hc["PidsLimit"], hc["Init"], hc["ReadonlyRootfs"]) == \
        (64 << 20, 10, True, True)
    assert ct.exec_run("id -un").output == b"nobody\n"
    ct.kill()  # SIGKILL: answered once the container is stopped, so remove works at once
    ct.remove()
    v = client.volumes.create("pyvol", labels={"x": "1"})
    assert client.volumes.get("pyvol").attrs["Labels"] == {"x": "1"}
    assert client.containers.run("busybox", ["sh", "-c", "echo v > /v/f; cat /v/f"],
                                 volumes={"pyvol": {"bind": "/v", "mode": "rw"}},
                                 remove=True, network_mode="none") == b"v\n"
    v.remove()
    assert client.volumes.list() == []
