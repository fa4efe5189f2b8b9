"""The API server core without root: routing, errors, streams, hijack, keep-alive.

A real App (asyncio + h11) serves a temp unix socket from a thread; requests are raw bytes on
a socket so that what is checked is exactly what a client sees on the wire.
"""

import asyncio
import json
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from berth.api.http import HijackResponse, StreamResponse, json_response
from berth.api.server import App
from berth.engine.core import Engine
from berth.errors import Conflict, InvalidArgument, NotFound


class Served:
    def __init__(self, app: App, path: str):
        self.app = app
        self.path = path
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.app.listen(f"unix://{self.path}", 0o600, 0))
        self.ready.set()
        self.loop.run_forever()

    def stop(self):
        fut = asyncio.run_coroutine_threadsafe(self.app.stop(), self.loop)
        fut.result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(self.path)
        return s


def read_response(s: socket.socket) -> tuple[int, dict, bytes]:
    """Read one HTTP response (Content-Length or chunked) from s."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        assert d, "closed before headers"
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(rest) < n:
            rest += s.recv(65536)
        return status, headers, rest[:n]
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += s.recv(65536)
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            while len(rest) < size + 2:
                rest += s.recv(65536)
            body += rest[:size]
            rest = rest[size + 2:]
            if size == 0:
                return status, headers, body
    return status, headers, rest


def request(srv: Served, method: str, path: str, body: bytes = b"", headers: str = ""):
    with srv.connect() as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
                  f"{headers}\r\n".encode() + body)
        return read_response(s)


@pytest.fixture
def served():
    d = Path(tempfile.mkdtemp(prefix="berth-h-"))
    engine = Engine(str(d / "root"), str(d / "run"))
    app = App(engine)

    async def boom(req):
        kind = req.params["kind"]
        raise {"notfound": NotFound("no such thing: x"), "conflict": Conflict("in use: x"),
               "bad": InvalidArgument("bad x"), "bug": ZeroDivisionError("oops")}[kind]

    async def echo_body(req):
        data = await req.body()
        return json_response({"len": len(data), "tail": data[-5:].decode()})

    async def progress(req):
        async def gen():
            for i in range(3):
                yield json.dumps({"status": f"step {i}"}).encode() + b"\n"
                await asyncio.sleep(0.01)

        return StreamResponse(gen())

    async def hijack(req):
        async def pump(reader, writer, early):
            # Echo every byte upper-cased; after the client's EOF, keep writing: a trailer.
            data = early
            while True:
                if data:
                    writer.write(data.upper())
                    await writer.drain()
                data = await reader.read(4096)
                if not data:
                    break
            await asyncio.sleep(0.05)
            writer.write(b"AFTER-EOF")
            await writer.drain()
            writer.write_eof()

        return HijackResponse(pump)

    app.router.add("GET", "/test/boom/{kind}", boom)
    app.router.add("POST", "/test/echo", echo_body)
    app.router.add("GET", "/test/progress", progress)
    app.router.add("POST", "/test/images/{name:.*}/attach", hijack)
    srv = Served(app, str(d / "api.sock"))
    try:
        yield srv
    finally:
        srv.stop()
        engine.close()
        import shutil

        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("path", ["/_ping", "/v1.41/_ping", "/v1.24/_ping"])
def test_ping_with_and_without_version_prefix(served, path):
    status, headers, body = request(served, "GET", path)
    assert (status, body) == (200, b"OK")
    assert headers["api-version"] == "1.41"
    assert headers["ostype"] == "linux"
    assert headers["docker-experimental"] == "false"


def test_head_ping_has_headers_and_no_body(served):
    with served.connect() as s:
        s.sendall(b"HEAD /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        data = s.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"Api-Version: 1.41" in head and b"Content-Length: 0" in head
    assert rest == b""


@pytest.mark.parametrize("method,path,status,message", [
    ("GET", "/nope", 404, "page not found"),
    ("GET", "/v1.99/version", 400, "client version 1.99 is too new. Maximum supported API "
                                   "version is 1.41"),
    ("GET", "/v1.5/version", 400, "client version 1.5 is too old"),
    ("GET", "/test/boom/notfound", 404, "no such thing: x"),
    ("GET", "/test/boom/conflict", 409, "in use: x"),
    ("GET", "/test/boom/bad", 400, "bad x"),
    ("GET", "/v1.41/test/boom/bug", 500, "internal error: oops"),
    ("POST", "/_ping", 404, "page not found"),
])
def test_error_table(served, method, path, status, message):
    got, headers, body = request(served, method, path)
    assert got == status
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["message"].startswith(message)


def test_version_reports_api_1_41(served):
    status, _, body = request(served, "GET", "/version")
    v = json.loads(body)
    assert status == 200 and v["ApiVersion"] == "1.41" and v["MinAPIVersion"] == "1.12"
    assert v["Os"] == "linux"


def test_chunked_json_lines(served):
    status, headers, body = request(served, "GET", "/test/progress")
    assert status == 200 and headers["transfer-encoding"] == "chunked"
    assert [json.loads(x)["status"] for x in body.splitlines()] == ["step 0", "step 1", "step 2"]


def test_keep_alive_and_large_streamed_body(served):
    payload = b"x" * (3 * 1024 * 1024) + b"tail!"
    with served.connect() as s:
        for _ in range(2):
            s.sendall(b"POST /test/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(payload), 1 << 20):
                part = payload[i:i + (1 << 20)]
                s.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
            s.sendall(b"0\r\n\r\n")
            status, _, body = read_response(s)
            assert status == 200 and json.loads(body) == {"len": len(payload), "tail": "tail!"}


def test_malformed_request_is_400(served):
    with served.connect() as s:
        s.sendall(b"GARBAGE\r\n\r\n")
        data = s.recv(65536)
    assert data.startswith(b"HTTP/1.1 400")


@pytest.mark.parametrize("upgrade", [True, False])
def test_hijack_carries_raw_bytes_both_ways_after_half_close(served, upgrade):
    with served.connect() as s:
        extra = "Connection: Upgrade\r\nUpgrade: tcp\r\n" if upgrade else ""
        # stdin typed before the answer arrives travels right behind the request
        s.sendall(f"POST /v1.41/test/images/a/b/attach HTTP/1.1\r\nHost: x\r\n{extra}"
                  "Content-Length: 0\r\n\r\nearly ".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)
        head, _, rest = buf.partition(b"\r\n\r\n")
        if upgrade:
            assert head.startswith(b"HTTP/1.1 101 UPGRADED")
            assert b"Upgrade: tcp" in head
        else:
            assert head.startswith(b"HTTP/1.1 200 OK")
        assert b"Content-Type: application/vnd.docker.raw-stream" in head
        s.sendall(b"hello")
        s.shutdown(socket.SHUT_WR)  # stdin ends; output must keep flowing
        out = rest
        while True:
            d = s.recv(4096)
            if not d:
                break
            out += d
    assert out == b"EARLY HELLOAFTER-EOF"


def test_events_since_until(served):
    engine = served.app.engine
    engine.events.publish("image", "tag", "sha256:abc", {"name": "busybox:latest"})
    engine.events.publish("container", "start", "c1", {"name": "web"})
    status, _, body = request(served, "GET",
                              '/events?since=0&until=1&filters={"type":["image"]}')
    assert status == 200 and body == b""  # until=1 (1970) ends at once, nothing in range
    now = time.time()
    status, _, body = request(served, "GET",
                              f'/events?since=0&until={now:.3f}&filters={{"type":["image"]}}')
    evs = [json.loads(x) for x in body.splitlines()]
    assert [(e["Type"], e["Action"], e["Actor"]["ID"]) for e in evs] == [
        ("image", "tag", "sha256:abc")]
    assert evs[0]["status"] == "tag" and evs[0]["id"] == "sha256:abc"


def test_events_stream_live_until(served):
    engine = served.app.engine
    until = time.time() + 1.0

    def later():
        time.sleep(0.3)
        engine.events.publish("image", "delete", "sha256:def", {})

    threading.Thread(target=later).start()
    started = time.monotonic()
    status, _, body = request(served, "GET", f"/events?until={until:.3f}")
    assert status == 200
    assert [json.loads(x)["Action"] for x in body.splitlines()] == ["delete"]
    assert 0.6 < time.monotonic() - started < 5


def test_expect_100_continue_is_answered(served):
    with served.connect() as s:
        s.sendall(b"POST /test/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        head = s.recv(65536)
        assert head.startswith(b"HTTP/1.1 100")
        s.sendall(b"hello")
        status, _, body = read_response(s)
    assert status == 200 and json.loads(body) == {"len": 5, "tail": "hello"}
