"""Bad input gets one clear line and changes nothing: no container, volume, mount or cgroup
is left, and the daemon's state is what it was."""

import json

import pytest

pytestmark = pytest.mark.root


def state(bd) -> tuple:
    return (bd.berth("ps", "-aq").stdout, bd.berth("volume", "ls", "-q").stdout,
            sorted(p.name for p in (bd.root / "containers").iterdir()),
            sorted(p.name for p in (bd.run / "c").iterdir()))


@pytest.mark.parametrize("args,code,message", [
    (["nosuchimage-berth:1", "true"], 125, "No such image: nosuchimage-berth:1"),
    (["-m", "1x", "busybox", "true"], 125,
     'invalid argument "1x" for "-m, --memory" flag: invalid suffix: \'x\''),
    (["--cpus", "-1", "busybox", "true"], 125,
     "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"),
    (["--mount", "type=bind,source=/nonexistent-berth,target=/x", "busybox", "true"], 125,
     'invalid mount config for type "bind": bind source path does not exist: '
     "/nonexistent-berth"),
    (["-v", "/tmp:relative", "busybox", "true"], 125,
     "invalid volume specification: '/tmp:relative'"),
    (["--restart", "bogus", "busybox", "true"], 125, "invalid restart policy 'bogus'"),
    (["--cap-add", "foo", "busybox", "true"], 125,
     'invalid CapAdd: unknown capability: "CAP_FOO"'),
    (["--stop-signal", "NOPE", "busybox", "true"], 125, "Invalid signal: NOPE"),
    (["--name", "a/b", "busybox", "true"], 125, "Invalid container name (a/b)"),
    (["-m", "1k", "busybox", "true"], 125, "Minimum memory limit allowed is 6MB"),
    (["--network", "nosuchnet-berth", "busybox", "true"], 125, "nosuchnet-berth not found"),
    (["busybox"], 125, "No command specified"),
    (["--security-opt", "seccomp={oops", "busybox", "true"], 125, "opening seccomp profile"),
])
def test_create_and_run_refuse_and_change_nothing(bd, args, code, message):
    before = state(bd)
    for cmd in (["create"], ["run", "-d"]):
        r = bd.berth(*cmd, "--pull", "never", *args, check=False)
        assert r.returncode == code, r.stderr
        assert message in r.stderr
        assert state(bd) == before


def test_docker_cli_gets_the_same_refusals(bd):
    before = state(bd)
    r = bd.docker("run", "--rm", "--pull", "never", "--mount",
                  "type=bind,source=/nonexistent-berth,target=/x", "busybox", "true",
                  check=False)
    assert r.returncode == 125
    assert "bind source path does not exist: /nonexistent-berth" in r.stderr
    r = bd.docker("run", "--rm", "--pull", "never", "nosuchimage-berth:1", "true", check=False)
    assert r.returncode == 125 and "nosuchimage-berth:1" in r.stderr
    assert state(bd) == before


def test_name_conflict_is_409(bd):
    import docker

    bd.berth("create", "--name", "dupname", "busybox", "true")
    before = state(bd)
    with pytest.raises(docker.errors.APIError) as e:
        bd.client().containers.create("busybox", "true", name="dupname")
    assert e.value.status_code == 409
    assert state(bd) == before


def test_exec_into_a_stopped_container(bd):
    bd.berth("create", "--name", "stopped", "busybox", "true")
    r = bd.berth("exec", "stopped", "true", check=False)
    assert r.returncode == 1 and "is not running" in r.stderr
    r = bd.docker("exec", "stopped", "true", check=False)
    assert r.returncode == 1 and "is not running" in r.stderr


def test_api_errors_have_dockers_shape(bd):
    import socket

    def call(method, path, body=b""):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(bd.sock))
            s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                      + body)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), rest

    status, body = call("GET", "/v1.41/containers/nosuch/json")
    assert status == 404 and json.loads(body) == {"message": "No such container: nosuch"}
    status, body = call("POST", "/containers/create", b'{"Image": "busybox", "Cmd": ["true"], '
                        b'"HostConfig": {"Memory": 1000}}')
    assert status == 400 and "Minimum memory limit" in json.loads(body)["message"]
    status, _ = call("POST", "/v1.41/containers/nosuch/start")
    assert status == 404
    status, body = call("POST", "/v1.41/containers/nosuch/wait?condition=bogus")
    assert status == 404
