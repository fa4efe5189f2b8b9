"""The json-file log against the real peer: the same output through dockerd and through the
shim must give the same records (log text, stream, splitting), times in the same format."""

import re

import pytest

from .shimkit import launched, log_records, run

pytestmark = [pytest.mark.root, pytest.mark.interop]

# Escapes, invalid UTF-8, U+2028, a line of exactly 16 KiB, a 40000-byte line, CRs, an
# unterminated end; on both streams.
SCRIPT = (
    r"printf 'a<b>&\001\377\303\251\t\"q\"\\ \342\200\250 \342\202x \355\240\200 \r\n'; "
    r"head -c 16384 /dev/zero | tr '\0' a; echo; "
    r"head -c 40000 /dev/zero | tr '\0' b; echo; "
    r"printf 'err\033[0m\n' >&2; printf 'x\r\ny\n\n'; "
    r"printf 'end-no-newline'"
)

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


def _by_stream(recs):
    return {s: [r["log"] for r in recs if r["stream"] == s] for s in ("stdout", "stderr")}


def test_same_records_as_dockerd(env, zygote, dockerd):
    r = dockerd.docker("run", "-d", "--network", "none", "busybox", "sh", "-c", SCRIPT)
    cid = r.stdout.decode().strip()
    try:
        dockerd.docker("wait", cid)
        path = dockerd.base / "data" / "containers" / cid / f"{cid}-json.log"
        theirs_raw = path.read_bytes()
    finally:
        dockerd.docker("rm", "-f", cid, check=False)

    opts = env.options(["sh", "-c", SCRIPT])

    async def body():
        shim = await launched(opts, zygote, start=True)
        await shim.wait()
        await shim.close()

    run(body())
    ours_raw = open(opts.log, "rb").read()
    import json

    theirs = [json.loads(line) for line in theirs_raw.splitlines()]
    ours = log_records(opts.log)
    assert _by_stream(ours) == _by_stream(theirs)
    # byte-for-byte the same escaping: compare each record's text up to its "time"
    strip = re.compile(rb',"time":"[^"]*"\}$')
    mine = sorted(strip.sub(b"", line) for line in ours_raw.splitlines())
    peer = sorted(strip.sub(b"", line) for line in theirs_raw.splitlines())
    assert mine == peer
    for rec in ours:
        assert TIME.match(rec["time"]), rec["time"]
        assert list(rec) == ["log", "stream", "time"]
