"""berthd frames its JSON streams byte for byte as dockerd does: the same requests sent raw over
each daemon's socket, the answers' framing compared — status, Content-Type, chunked or
Content-Length, one message per chunk and the line ending after each message ("\\r\\n" after
pull/push/load/import progress and their in-band errors, "\\n" after events, stats and wait).
"""

import json
import os
import socket
import time

import pytest

from tests.distribution.regprocs import start_berth_registry
from tests.image.imagebuild import config_for, docker_archive, layer_tar

pytestmark = [pytest.mark.root, pytest.mark.interop]


def _request(engine, method: str, path: str, body: bytes = b"", headers: dict | None = None,
             max_chunks: int | None = None) -> tuple[int, dict, list[bytes] | bytes]:
    """(status, headers, the chunks of a chunked body or the whole fixed-length body), read off
    the daemon's socket as sent; ``max_chunks`` stops reading an endless stream."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(60)
    s.connect(str(engine.sock))
    head = f"{method} /v1.41{path} HTTP/1.1\r\nHost: api\r\n"
    for k, v in (headers or {}).items():
        head += f"{k}: {v}\r\n"
    if body or method == "POST":
        head += f"Content-Length: {len(body)}\r\n"
    s.sendall(head.encode() + b"\r\n" + body)
    buf = b""

    def need(n: int) -> None:
        nonlocal buf
        while len(buf) < n:
            data = s.recv(65536)
            if not data:
                raise AssertionError(f"connection closed mid-answer: {buf[-200:]!r}")
            buf += data

    def line() -> bytes:
        nonlocal buf
        while b"\r\n" not in buf:
            need(len(buf) + 1)
        ln, _, buf = buf.partition(b"\r\n")
        return ln

    try:
        status = int(line().split()[1])
        hdrs = {}
        while ln := line():
            k, _, v = ln.decode().partition(":")
            hdrs[k.strip().lower()] = v.strip()
        if "content-length" in hdrs:
            need(int(hdrs["content-length"]))
            return status, hdrs, buf[:int(hdrs["content-length"])]
        assert hdrs.get("transfer-encoding") == "chunked", hdrs
        chunks = []
        while max_chunks is None or len(chunks) < max_chunks:
            size = int(line(), 16)
            if size == 0:
                break
            need(size + 2)
            chunks.append(buf[:size])
            assert buf[size:size + 2] == b"\r\n"
            buf = buf[size + 2:]
        return status, hdrs, chunks
    finally:
        s.close()


def framing(answer) -> tuple:
    """What of an answer is framing: status, Content-Type, transfer, and for each message its
    ending — every chunk must hold exactly one JSON message."""
    status, hdrs, body = answer
    transfer = "chunked" if isinstance(body, list) else "length"
    chunks = body if isinstance(body, list) else [body]
    endings = set()
    for c in chunks:
        if not c:
            continue  # an empty chunk that only flushed the headers
        end = b"\r\n" if c.endswith(b"\r\n") else b"\n" if c.endswith(b"\n") else b""
        json.loads(c[:len(c) - len(end)])  # one message, nothing more
        endings.add(end)
    return status, hdrs.get("content-type"), transfer, sorted(endings)


@pytest.fixture
def engines(berthd, dockerd, busybox_tar):
    """berthd and dockerd with busybox; NAME is unique, dockerd's NAME* images go after."""
    name = f"frm{os.urandom(3).hex()}"
    berthd.docker("import", str(busybox_tar), "busybox:latest")
    try:
        yield (berthd, dockerd), name
    finally:
        left = dockerd.docker("images", "-q", "--no-trunc", "--filter", f"reference=*{name}*",
                              check=False, text=True).stdout.split()
        if left:
            dockerd.docker("rmi", "-f", *sorted(set(left)), check=False)


def both(engines, fn) -> list:
    (b, d), name = engines
    return [framing(fn(e, name)) for e in (b, d)]


def test_load_and_import_progress_end_in_crlf(engines, busybox_tar):
    def load(e, name):
        layers = [layer_tar([("file", "a", b"a" * 100)])]
        arch = docker_archive([(layers, [f"{name}:1"])], config=config_for(layers))
        return _request(e, "POST", "/images/load", arch)

    ours, theirs = both(engines, load)
    assert ours == theirs == (200, "application/json", "chunked", [b"\r\n"])
    # an in-band failure of load is a progress message too
    ours, theirs = both(engines, lambda e, _: _request(e, "POST", "/images/load",
                                                      b"not a tar" * 200))
    assert ours == theirs == (200, "application/json", "chunked", [b"\r\n"])
    tar = busybox_tar.read_bytes()
    ours, theirs = both(engines, lambda e, name: _request(
        e, "POST", f"/images/create?fromSrc=-&repo={name}&tag=imp", tar))
    assert ours == theirs == (200, "application/json", "chunked", [b"\r\n"])


def test_push_and_pull_progress_end_in_crlf(engines, tmp_path):
    reg = start_berth_registry(tmp_path / "reg")
    auth = {"X-Registry-Auth": "e30="}
    try:
        def push(e, name):
            ref = f"{reg.host}/{name}-{'b' if e is engines[0][0] else 'd'}"
            e.docker("tag", "busybox:latest", f"{ref}:1")
            return _request(e, "POST", f"/images/{ref}/push?tag=1", headers=auth)

        def pull(e, name):
            ref = f"{reg.host}/{name}-{'b' if e is engines[0][0] else 'd'}"
            e.docker("rmi", f"{ref}:1")
            return _request(e, "POST", f"/images/create?fromImage={ref}&tag=1", headers=auth)

        ours, theirs = both(engines, push)
        assert ours == theirs == (200, "application/json", "chunked", [b"\r\n"])
        ours, theirs = both(engines, pull)
        assert ours == theirs == (200, "application/json", "chunked", [b"\r\n"])
    finally:
        reg.stop()


def test_events_stats_and_wait_end_in_lf(engines):
    (b, d), name = engines
    since = int(time.time())
    ids = {}
    for e in (b, d):
        out = e.docker("run", "-d", "--network", "none", "--name", f"{name}{e is b}",
                       "busybox", "sleep", "30").stdout
        ids[e] = (out.decode() if isinstance(out, bytes) else out).strip()
    try:
        # a stream of samples: no Content-Type at all; one sample: a plain JSON document
        ours, theirs = both(engines, lambda e, _: _request(
            e, "GET", f"/containers/{ids[e]}/stats?stream=1", max_chunks=2))
        assert ours == theirs == (200, None, "chunked", [b"\n"])
        ours, theirs = both(engines, lambda e, _: _request(
            e, "GET", f"/containers/{ids[e]}/stats?stream=0&one-shot=1"))
        assert ours == theirs == (200, "application/json", "length", [b"\n"])
        for e in (b, d):
            e.docker("kill", ids[e])
        ours, theirs = both(engines, lambda e, _: _request(
            e, "POST", f"/containers/{ids[e]}/wait"))
        assert ours == theirs == (200, "application/json", "chunked", [b"\n"])
        docs = [json.loads(b"".join(_request(e, "POST", f"/containers/{ids[e]}/wait")[2]))
                for e in (b, d)]
        assert docs == [{"Error": None, "StatusCode": 137}] * 2
        assert [list(doc) for doc in docs] == [["Error", "StatusCode"]] * 2
    finally:
        for e in (b, d):
            e.docker("rm", "-f", ids[e], check=False)
    until = int(time.time()) + 1
    ours, theirs = both(engines, lambda e, _: _request(
        e, "GET", f"/events?since={since}&until={until}"))
    assert ours == theirs == (200, "application/json", "chunked", [b"\n"])
