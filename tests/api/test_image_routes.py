"""Image routes as a table: (method, path, body, status, content type, message) on a real
berthd with busybox imported."""

import http.client
import json
import socket

import pytest

pytestmark = [pytest.mark.root, pytest.mark.interop]


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, busybox_tar):
    from tests.conftest import _start_berthd

    d = _start_berthd()
    try:
        d.docker("import", str(busybox_tar), "busybox:latest")
        yield d
    finally:
        d.stop()


ROWS = [
    ("GET", "/v1.41/images/json", b"", 200, "application/json", None),
    ("GET", "/images/json", b"", 200, "application/json", None),
    ("GET", "/v1.41/images/busybox/json", b"", 200, "application/json", None),
    ("GET", "/v1.41/images/docker.io/library/busybox:latest/json", b"", 200,
     "application/json", None),
    ("GET", "/v1.41/images/nosuch/json", b"", 404, "application/json",
     "No such image: nosuch:latest"),
    ("GET", "/v1.41/images/Bad/json", b"", 400, "application/json", "must be lowercase"),
    ("GET", "/v1.41/images/busybox/history", b"", 200, "application/json", None),
    ("DELETE", "/v1.41/images/nosuch", b"", 404, "application/json", "No such image"),
    ("POST", "/v1.41/images/busybox/tag?repo=Bad&tag=1", b"", 400, "application/json",
     "must be lowercase"),
    ("POST", "/v1.41/images/busybox/tag?repo=ok&tag=bad%20tag", b"", 400, "application/json",
     "invalid"),
    ("POST", "/v1.41/images/nosuch/tag?repo=x", b"", 404, "application/json", "No such image"),
    ("GET", '/v1.41/images/json?filters={"bogus":["x"]}', b"", 400, "application/json",
     "Invalid filter 'bogus'"),
    ("GET", '/v1.41/images/json?filters={"dangling":["maybe"]}', b"", 400,
     "application/json", "Invalid filter 'dangling=[maybe]'"),
    ("GET", '/v1.41/images/json?filters={"reference":["["]}', b"", 400, "application/json",
     "syntax error in pattern"),
    ("GET", "/v1.41/images/json?filters=notjson", b"", 400, "application/json",
     "invalid filters"),
    ("POST", "/v1.41/images/create?fromSrc=http://example.invalid/x.tar", b"", 400,
     "application/json", "only an uploaded archive"),
    ("POST", "/v1.41/images/create?fromImage=127.0.0.1:1/busybox&tag=latest", b"", 500,
     "application/json", "connect: connection refused"),
    ("GET", "/v1.41/images/get?names=nosuch", b"", 404, "application/json", "No such image"),
    ("GET", "/v1.41/images/get?names=busybox", b"", 200, "application/x-tar", None),
    ("GET", "/v1.41/images/busybox/get", b"", 200, "application/x-tar", None),
    # dockerd answers every load failure in the stream, after a 200 (docker-py's
    # ImageLoadError comes from there)
    ("POST", "/v1.41/images/load", b"garbage" * 200, 200, "application/json",
     "invalid tar header"),
    ("POST", "/v1.41/images/load", b"abc", 200, "application/json", "not a tar archive"),
    ("POST", "/v1.41/images/prune", b"", 200, "application/json", None),
    ("POST", '/v1.41/images/prune?filters={"bogus":["1"]}', b"", 400, "application/json",
     "Invalid filter 'bogus'"),
    ("POST", '/v1.41/images/prune?filters={"until":["soon"]}', b"", 400, "application/json",
     'failed to parse value as time or duration: "soon"'),
]


@pytest.mark.parametrize("method,path,body,status,ctype,message", ROWS,
                         ids=[f"{r[0]} {r[1]}" for r in ROWS])
def test_image_route(daemon, method, path, body, status, ctype, message):
    c = UnixHTTP(str(daemon.sock))
    c.request(method, path, body=body or None)
    r = c.getresponse()
    data = r.read()
    assert r.status == status, data
    assert r.getheader("Content-Type") == ctype
    assert r.getheader("Api-Version") == "1.41"
    if message is not None:
        doc = json.loads(data.splitlines()[-1])
        assert message in (doc["errorDetail"]["message"] if status == 200 else doc["message"])
    c.close()
