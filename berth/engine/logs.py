"""Reading a container's json-file log as ``docker logs`` wants it: tail, since/until,
timestamps, follow.

The shim writes ``{"log": ..., "stream": "stdout"|"stderr", "time": RFC3339Nano}`` records,
one per line, with rotation to ``.1``, ``.2``, ... (berth.shim.jsonlog). This module yields
``(stream, bytes, time_ns)`` for the records asked for, oldest first; with ``follow`` it keeps
reading as the file grows (and across a rotation) until ``done()`` says the container has
stopped and everything written has been read.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable

from . import container_state as cs

POLL = 0.05  # s between looks at a followed file that did not grow


def parse_time_ns(text: str) -> int:
    """RFC 3339 with nanoseconds (the log's ``time``) → ns since the epoch."""
    base, _, frac = text.rstrip("Z").partition(".")
    return int(cs.parse_rfc3339(base + "Z")) * 1_000_000_000 + int((frac + "000000000")[:9])


def format_time(ns: int) -> str:
    """``docker logs -t``'s stamp: RFC3339Nano (trailing zeros dropped)."""
    import time

    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + \
        (f".{frac}" if frac else "") + "Z"


def _decode(line: bytes) -> tuple[str, bytes, int] | None:
    try:
        rec = json.loads(line)
        return rec["stream"], rec["log"].encode("utf-8", "surrogateescape"), \
            parse_time_ns(rec["time"])
    except (ValueError, KeyError, TypeError):
        return None


def _files(path: str) -> list[str]:
    """The rotated files oldest first, then the live one."""
    out = []
    n = 1
    while os.path.exists(f"{path}.{n}"):
        out.append(f"{path}.{n}")
        n += 1
    return list(reversed(out)) + ([path] if os.path.exists(path) else [])


def read_records(path: str, tail: int = -1, since_ns: int = 0, until_ns: int = 0
                 ) -> tuple[list[tuple[str, bytes, int]], int, int]:
    """Records now in the log (filtered) → (records, inode of the live file, its offset)."""
    recs: list[tuple[str, bytes, int]] = []
    ino, offset = 0, 0
    for p in _files(path):
        try:
            with open(p, "rb") as f:
                data = f.read()
                if p == path:
                    ino = os.fstat(f.fileno()).st_ino
        except FileNotFoundError:
            continue
        end = data.rfind(b"\n") + 1
        if p == path:
            offset = end
        for line in data[:end].splitlines():
            r = _decode(line)
            if r is None:
                continue
            if since_ns and r[2] < since_ns:
                continue
            if until_ns and r[2] > until_ns:
                continue
            recs.append(r)
    if tail >= 0:
        recs = recs[len(recs) - tail:] if tail else []
    return recs, ino, offset


async def follow(path: str, ino: int, offset: int, done: Callable[[], bool],
                 until_ns: int = 0) -> AsyncIterator[tuple[str, bytes, int]]:
    """Records appended after ``offset`` until ``done()`` and nothing more is there."""
    pending = b""
    f = None
    try:
        while True:
            if f is None:
                try:
                    f = open(path, "rb")  # noqa: SIM115 - held across awaits
                except FileNotFoundError:
                    if done():
                        return
                    await asyncio.sleep(POLL)
                    continue
                if os.fstat(f.fileno()).st_ino == ino:
                    f.seek(offset)
                else:
                    pending = b""
            data = f.read(1 << 20)
            if data:
                pending += data
                lines = pending.split(b"\n")
                pending = lines.pop()
                for line in lines:
                    r = _decode(line)
                    if r is None:
                        continue
                    if until_ns and r[2] > until_ns:
                        return
                    yield r
                continue
            try:
                st = os.stat(path)
                rotated = st.st_ino != os.fstat(f.fileno()).st_ino
            except FileNotFoundError:
                rotated = True
            if rotated:
                f.close()
                f = None
                ino = -1
                continue
            if done():
                return
            await asyncio.sleep(POLL)
    finally:
        if f is not None:
            f.close()
