"""Unit tests of the shim's pure parts (no root): frames, the json-file log, restart back-off,
options, and the runtime driver's error handling against a tiny runtime script."""

import json
import os
import stat
import time

import pytest

from berth import errors
from berth.shim import proto
from berth.shim.config import ShimOptions, parse_args, parse_size
from berth.shim.jsonlog import LINE_MAX, JsonLog, escape, rfc3339nano
from berth.shim.restart import RestartManager, parse_policy
from berth.shim.runtime import RuntimeCLI, RuntimeFailed

# -- frames -------------------------------------------------------------------------------


def test_frames_round_trip_in_any_split():
    data = (proto.frame(proto.REQUEST, '{"id":1}') + proto.frame(proto.STDOUT, b"x" * 70000)
            + proto.frame(proto.STDIN, b""))
    for step in (1, 7, 8, 9, 4096, len(data)):
        dec = proto.Decoder()
        got = []
        for i in range(0, len(data), step):
            got += dec.feed(data[i:i + step])
        assert got == [(proto.REQUEST, b'{"id":1}'), (proto.STDOUT, b"x" * 70000),
                       (proto.STDIN, b"")]
        assert dec.pending == 0


def test_frame_header_is_dockers_stdcopy():
    assert proto.frame(proto.STDERR, b"hi") == b"\x02\x00\x00\x00\x00\x00\x00\x02hi"


@pytest.mark.parametrize("bad", [
    b"\x05\x00\x00\x00\x00\x00\x00\x00",
    b"\x01\x01\x00\x00" + bytes(4),
    bytes([16, 0, 0, 0]) + (proto.MAX_PAYLOAD + 1).to_bytes(4, "big"),
])
def test_bad_frames_are_refused(bad):
    with pytest.raises(proto.ProtocolError):
        proto.Decoder().feed(bad)


# -- the json-file log -------------------------------------------------------------------------


@pytest.mark.parametrize("raw, want", [
    (b"plain", "plain"),
    (b'q"b\\', 'q\\"b\\\\'),
    (b"\n\r\t\x00\x1f", "\\n\\r\\u0009\\u0000\\u001f"),
    (b"<a&b>", "\\u003ca\\u0026b\\u003e"),
    ("é☃".encode(), "é☃"),
    (b"\xff\xc3", "\\ufffd\\ufffd"),
    (b"\xe2\x82x", "\\ufffd\\ufffdx"),               # truncated sequence: one per byte, as Go
    ("\u2028\u2029".encode(), "\\u2028\\u2029"),
    ("\ufffd".encode(), "\ufffd"),                   # a real U+FFFD stays raw
])
def test_escape_is_gos_html_safe_escaping(raw, want):
    assert escape(raw).decode() == want
    per_byte = "".join("\ufffd" if 0xDC80 <= ord(c) <= 0xDCFF else c
                       for c in raw.decode(errors="surrogateescape"))
    assert json.loads('"' + escape(raw).decode() + '"') == per_byte


def test_rfc3339nano_drops_trailing_zeros():
    assert rfc3339nano(0) == "1970-01-01T00:00:00Z"
    assert rfc3339nano(1_500_000_000) == "1970-01-01T00:00:01.5Z"
    assert rfc3339nano(1_000_000_007) == "1970-01-01T00:00:01.000000007Z"


def _recs(path):
    return [json.loads(line) for line in open(path)]


def test_lines_are_cut_as_docker_cuts_them(tmp_path):
    p = str(tmp_path / "log")
    log = JsonLog(p)
    log.write("stdout", b"one\ntw")
    log.write("stderr", b"e1\n")
    log.write("stdout", b"o\n" + b"x" * LINE_MAX + b"\n" + b"y" * (2 * LINE_MAX + 5))
    log.write("stdout", b"\nlast")
    log.end("stdout")
    log.close()
    recs = _recs(p)
    assert [(r["stream"], r["log"]) for r in recs] == [
        ("stdout", "one\n"), ("stderr", "e1\n"), ("stdout", "two\n"),
        ("stdout", "x" * LINE_MAX), ("stdout", "\n"),          # exactly 16 KiB: cut, then "\n"
        ("stdout", "y" * LINE_MAX), ("stdout", "y" * LINE_MAX), ("stdout", "yyyyy\n"),
        ("stdout", "last"),                                    # EOF: no newline added
    ]
    # the pieces of one long line share the first piece's time
    assert recs[3]["time"] == recs[4]["time"]
    assert recs[5]["time"] == recs[6]["time"] == recs[7]["time"]
    assert open(p, "rb").read().splitlines()[0] == \
        b'{"log":"one\\n","stream":"stdout","time":"' + recs[0]["time"].encode() + b'"}'
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o640


def test_rotation_keeps_max_file_files(tmp_path):
    p = str(tmp_path / "c-json.log")
    log = JsonLog(p, max_size=200, max_file=3)
    for i in range(30):
        log.write("stdout", b"line %02d\n" % i)
    log.close()
    files = sorted(os.listdir(tmp_path))
    assert files == ["c-json.log", "c-json.log.1", "c-json.log.2"]
    texts = [r["log"] for f in ("c-json.log.2", "c-json.log.1", "c-json.log")
             for r in _recs(str(tmp_path / f))]
    assert texts == [f"line {i:02d}\n" for i in range(30 - len(texts), 30)]  # newest kept
    assert os.path.getsize(str(tmp_path / "c-json.log.1")) >= 200  # rotated at, not before


def test_rotation_with_one_file_starts_over(tmp_path):
    p = str(tmp_path / "log")
    log = JsonLog(p, max_size=100, max_file=1)
    for i in range(10):
        log.write("stdout", b"%d\n" % i)
    log.close()
    assert os.listdir(tmp_path) == ["log"]
    assert _recs(p)[-1]["log"] == "9\n" and len(_recs(p)) < 10


def test_log_appends_to_an_existing_file(tmp_path):
    p = str(tmp_path / "log")
    for word in (b"a\n", b"b\n"):
        log = JsonLog(p)
        log.write("stdout", word)
        log.close()
    assert [r["log"] for r in _recs(p)] == ["a\n", "b\n"]


# -- restart policies ---------------------------------------------------------------------------


def test_back_off_doubles_caps_and_resets():
    rm = RestartManager("always")
    delays = [rm.should_restart(0, False, 0.5) for _ in range(12)]
    assert delays[:5] == [0.1, 0.2, 0.4, 0.8, 1.6]
    assert max(delays) == 60.0 and delays[-1] == 60.0
    assert rm.should_restart(0, False, 10.0) == 0.1  # ran 10 s: back to 100 ms
    assert rm.restart_count == 13


def test_on_failure_counts_and_limits():
    rm = RestartManager("on-failure", 2)
    assert rm.should_restart(0, False, 1) is None
    assert rm.should_restart(1, False, 1) is not None
    assert rm.should_restart(1, False, 1) is not None
    assert rm.should_restart(1, False, 1) is None
    assert rm.restart_count == 2
    unlimited = RestartManager("on-failure", 0, restart_count=50)
    assert unlimited.should_restart(3, False, 1) is not None


def test_manual_stop_and_unless_stopped():
    assert RestartManager("unless-stopped").should_restart(0, True, 1) is None
    assert RestartManager("unless-stopped").should_restart(0, False, 1) == 0.1
    assert RestartManager("always").should_restart(0, True, 1) == 0.1  # a stop cancels instead
    rm = RestartManager("always")
    rm.cancel()
    assert rm.should_restart(1, False, 1) is None
    assert RestartManager("no").should_restart(1, False, 1) is None


@pytest.mark.parametrize("text, want", [("no", ("no", 0)), ("", ("no", 0)),
                                        ("always", ("always", 0)),
                                        ("on-failure", ("on-failure", 0)),
                                        ("on-failure:5", ("on-failure", 5))])
def test_parse_policy(text, want):
    assert parse_policy(text) == want


@pytest.mark.parametrize("text", ["sometimes", "always:3", "on-failure:x", "on-failure:-1"])
def test_parse_policy_errors(text):
    with pytest.raises(errors.InvalidArgument) as e:
        parse_policy(text)
    assert text in str(e.value) or "retry" in str(e.value)


# -- options ---------------------------------------------------------------------------------


def test_options_round_trip():
    o = ShimOptions("c1", "/b", "/r", log="/l", log_max_size=1000, log_max_file=3,
                    runtime="/usr/bin/crun", runtime_root="/rr",
                    runtime_args=("--systemd-cgroup",), stdin=True, stdin_once=True,
                    restart="on-failure:4", restart_count=2, start=True)
    p = parse_args(o.to_argv())
    for k in ShimOptions.__slots__:
        assert getattr(p, k) == getattr(o, k), k
    assert parse_args(["--id=a", "--bundle=/b", "--run-dir=/r"]).id == "a"


@pytest.mark.parametrize("argv, words", [
    (["--bundle", "/b", "--run-dir", "/r"], "--id"),
    (["--id", "a", "--bundle", "/b", "--run-dir", "/r", "--frob"], "--frob"),
    (["--id", "a", "--bundle", "/b", "--run-dir", "/r", "--log-max-file", "0"],
     "--log-max-file"),
    (["--id", "a", "--bundle", "/b", "--run-dir", "/r", "--log-max-size", "1x"], "1x"),
    (["--id", "a", "--bundle", "/b", "--run-dir", "/r", "--stdin-once"], "--stdin"),
    (["--id", "a", "--bundle", "/b", "--run-dir", "/r", "--restart", "often"], "often"),
    (["--id", "a", "--bundle"], "--bundle"),
])
def test_bad_options_name_the_option(argv, words):
    with pytest.raises(errors.InvalidArgument) as e:
        parse_args(argv)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_sizes_are_dockers_decimal_units():
    assert parse_size("10m") == 10_000_000
    assert parse_size("1.5k") == 1500
    assert parse_size("123") == 123
    assert parse_size("2GB") == 2_000_000_000


# -- the runtime driver -----------------------------------------------------------------------

FAKE = """#!/bin/sh
# A stand-in OCI runtime for the driver's own tests: logs its argv, fails or hangs on request.
echo "$@" >> "$(dirname "$0")/calls"
log=""; while [ $# -gt 0 ]; do
  case "$1" in --log) log=$2; shift 2;; --root|--log-format) shift 2;; *) break;; esac
done
case "$1" in
  state) echo '{"ociVersion":"1.0.2","id":"'$2'","status":"running","pid":1}';;
  kill) echo '{"level":"info","msg":"noise"}' >> "$log"
        echo '{"level":"error","msg":"container not running"}' >> "$log"; echo junk >&2; exit 1;;
  pause) echo "plain stderr message" >&2; exit 3;;
  resume) sleep 30;;
esac
"""


@pytest.fixture
def fake_runtime(tmp_path):
    p = tmp_path / "fakert"
    p.write_text(FAKE)
    p.chmod(0o755)
    return RuntimeCLI(str(p), root=str(tmp_path / "root"), log=str(tmp_path / "rt.log"),
                      timeout=0.5), tmp_path


def test_runtime_cli_builds_runc_command_lines(fake_runtime):
    rt, d = fake_runtime
    assert rt.state("c1")["status"] == "running"
    rt.delete("c1", force=True)
    rt.start("c1")
    calls = (d / "calls").read_text().splitlines()
    pre = f"--root {d}/root --log {d}/rt.log --log-format json"
    assert calls == [f"{pre} state c1", f"{pre} delete --force c1", f"{pre} start c1"]


def test_runtime_errors_come_from_its_log_then_stderr(fake_runtime):
    rt, _ = fake_runtime
    with pytest.raises(RuntimeFailed) as e:
        rt.kill("c1", 15)
    assert str(e.value) == "runtime kill failed: container not running"
    assert e.value.exit_code == 1 and isinstance(e.value, errors.FailedPrecondition)
    with pytest.raises(RuntimeFailed) as e:
        rt.pause("c1")
    assert str(e.value) == "runtime pause failed: plain stderr message"


def test_a_hung_runtime_is_killed_after_the_timeout(fake_runtime):
    rt, _ = fake_runtime
    t = time.monotonic()
    with pytest.raises(RuntimeFailed) as e:
        rt.resume("c1")
    assert time.monotonic() - t < 5
    assert "signal 9" in str(e.value)


def test_missing_runtime_is_a_clear_error(tmp_path):
    with pytest.raises(errors.InvalidArgument) as e:
        RuntimeCLI("no-such-runtime-binary")
    assert "no-such-runtime-binary" in str(e.value)


# -- the zygote (no container: what it refuses, and its lifeline) --------------------------


def test_zygote_refuses_bad_requests_and_follows_its_lifeline(tmp_path):
    import asyncio
    import subprocess

    from berth.shim import client
    from berth.shim.config import ShimOptions

    sock = tmp_path / "z.sock"
    argv, env = client.shim_command("zygote", str(sock))
    z = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert z.stdout.readline() == b"ready\n"

        async def body():
            r, w = await asyncio.open_unix_connection(str(sock))
            w.write(proto.frame(proto.REQUEST, b'{"op":"frobnicate"}'))
            await w.drain()
            bad_op = await client._read_reply_frame(r)
            w.close()
            try:
                await client.Zygote(str(sock)).spawn(
                    ShimOptions("c1", str(tmp_path / "nobundle"), str(tmp_path / "run")))
                missing = None
            except errors.BerthError as e:
                missing = e
            return bad_op, missing

        bad_op, missing = asyncio.run(body())
        assert bad_op["kind"] == "InvalidArgument" and "spawn" in bad_op["error"]
        assert isinstance(missing, errors.NotFound) and "config.json" in str(missing)
        assert not (tmp_path / "run" / "shim.sock").exists()
    finally:
        z.stdin.close()  # the lifeline: EOF ends the zygote
        assert z.wait(10) == 0
    assert not sock.exists()


def test_broadcast_survives_a_subscriber_that_has_gone(tmp_path):
    """An event sent to a subscriber whose peer closed (EPIPE) drops that connection and still
    reaches the others (it once ended the shim: the set changed size during iteration)."""
    import socket

    from berth.shim.server import Conn, Shim

    shim = Shim(ShimOptions("c1", str(tmp_path), str(tmp_path)))
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        conns = []
        for mine, _ in pairs:
            c = Conn(shim, mine.detach())
            c.subscribed = True
            shim.conns.add(c)
            conns.append(c)
        pairs[1][1].close()  # the client of the second is gone, the shim has not read its EOF
        shim._broadcast({"event": "exit", "exit_code": 0})
        shim._broadcast({"event": "exit", "exit_code": 1})
        assert conns[1] not in shim.conns and conns[1].fd == -1
        for i in (0, 2):
            dec = proto.Decoder()
            got = [json.loads(p) for k, p in dec.feed(pairs[i][1].recv(65536))
                   if k == proto.EVENT]
            assert [e["exit_code"] for e in got] == [0, 1]
    finally:
        for c in list(shim.conns):
            shim.conn_lost(c)
        shim.dispose()
        for _, theirs in pairs:
            theirs.close()
