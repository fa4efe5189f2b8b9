"""Docker's json-file log, written exactly as dockerd writes it, so that `docker logs` readers and
log shippers that parse docker's files read ours unchanged.

One record per line::

    {"log":"hello\\n","stream":"stdout","time":"2026-12-01T07:06:55.011682709Z"}

The rules, taken from moby's logger copier and jsonlog marshaller:

- output is cut at newlines; a record's ``log`` keeps its ``\\n``;
- a line longer than 16 KiB is cut into 16 KiB pieces, logged without ``\\n`` ("partial"); every
  piece and the final rest of the line carry the timestamp of the first piece;
- at end of stream an unterminated rest is logged without ``\\n``;
- escaping is Go's with HTML-safe escapes: ``" \\ \\n \\r`` as such, other bytes below 0x20 and
  ``< > &`` as ``\\u00XX``, U+2028/U+2029 escaped, valid UTF-8 kept raw, each byte of invalid
  UTF-8 as ``\\ufffd``;
- ``time`` is RFC 3339 in UTC with nanoseconds, trailing zeros dropped (Go's RFC3339Nano);
- with ``max-size``, a write finding the file at or over the size first rotates: with
  ``max-file`` 1 the file starts again empty, otherwise ``log`` → ``log.1`` → ... →
  ``log.<max-file - 1>``, the oldest dropped. (docker's ``compress`` is not offered.)

Invariant: a record is written whole with one write(2) to an O_APPEND file, so a reader never
sees half a record unless the disk is full.
"""

import os
import time

__all__ = ["LINE_MAX", "JsonLog", "escape", "rfc3339nano"]

# moby's copier buffer: lines are cut when this much has gathered without a newline.
LINE_MAX = 16 * 1024

_ESC = {c: f"\\u{c:04x}" for c in range(0x20)}
_ESC.update({0x0A: "\\n", 0x0D: "\\r", 0x22: '\\"', 0x5C: "\\\\", 0x3C: "\\u003c",
             0x3E: "\\u003e", 0x26: "\\u0026", 0x2028: "\\u2028", 0x2029: "\\u2029"})
# surrogateescape turns each undecodable byte into one lone surrogate U+DC80..U+DCFF.
_ESC.update(dict.fromkeys(range(0xDC80, 0xDD00), "\\ufffd"))


def escape(data: bytes) -> bytes:
    """The JSON string body (without quotes) docker writes for ``data``."""
    return data.decode("utf-8", "surrogateescape").translate(_ESC).encode()


def rfc3339nano(ns: int) -> str:
    sec, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    if not frac:
        return base + "Z"
    return f"{base}.{frac:09d}".rstrip("0") + "Z"


class _Stream:
    __slots__ = ("pending", "partial_ts", "tag")

    def __init__(self, name: str) -> None:
        self.pending = bytearray()
        self.partial_ts: bytes | None = None
        self.tag = b'","stream":"' + name.encode() + b'","time":"'


class JsonLog:
    """Appends container output to a json-file log; ``write`` per chunk read, ``end`` at EOF."""

    def __init__(self, path: str, max_size: int = -1, max_file: int = 1, fd: int = -1,
                 size: int = 0) -> None:
        """Opens ``path``; or takes ``fd``, open on it already, of ``size`` bytes."""
        self.path = path
        self.max_size = max_size
        self.max_file = max_file
        if fd < 0:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            size = os.fstat(fd).st_size
        self._fd = fd
        self._size = size
        self._streams: dict[str, _Stream] = {}
        self._sec = -1
        self._prefix = b""

    @property
    def fd(self) -> int:
        return self._fd

    @property
    def size(self) -> int:
        return self._size

    def _now(self) -> bytes:
        ns = time.time_ns()
        sec, frac = divmod(ns, 1_000_000_000)
        if sec != self._sec:
            self._sec = sec
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)).encode()
        if not frac:
            return self._prefix + b"Z"
        return self._prefix + (b".%09d" % frac).rstrip(b"0") + b"Z"

    def _stream(self, name: str) -> _Stream:
        st = self._streams.get(name)
        if st is None:
            st = self._streams[name] = _Stream(name)
        return st

    def write(self, stream: str, data: bytes) -> None:
        st = self._stream(stream)
        buf = st.pending
        buf += data
        records = []
        pos = 0
        n = len(buf)
        while pos < n:
            # Search only the first LINE_MAX bytes: a line of exactly LINE_MAX is cut before its
            # newline, as moby's full buffer is, and the newline then makes an empty record.
            nl = buf.find(b"\n", pos, pos + LINE_MAX)
            if nl >= 0:
                records.append(self._record(st, bytes(buf[pos:nl + 1]), True))
                pos = nl + 1
            elif n - pos >= LINE_MAX:
                records.append(self._record(st, bytes(buf[pos:pos + LINE_MAX]), False))
                pos += LINE_MAX
            else:
                break
        del buf[:pos]
        if records:
            self._append(records)

    def end(self, stream: str) -> None:
        """The stream reached EOF: log its unterminated rest, as docker does, without a newline."""
        st = self._streams.get(stream)
        if st is None:
            return
        if st.pending:
            rec = self._record(st, bytes(st.pending), False)
            st.pending.clear()
            self._append([rec])
        st.partial_ts = None

    def _record(self, st: _Stream, line: bytes, complete: bool) -> bytes:
        ts = st.partial_ts
        if ts is None:
            ts = self._now()
            if not complete:
                st.partial_ts = ts
        elif complete:
            st.partial_ts = None
        return b'{"log":"' + escape(line) + st.tag + ts + b'"}\n'

    def _append(self, records: list[bytes]) -> None:
        if self.max_size < 0:
            data = b"".join(records)
            self._write(data)
            return
        # Rotation is decided per record, before writing it, as moby does.
        for rec in records:
            if self._size >= self.max_size:
                self._rotate()
            self._write(rec)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self._size += len(data)

    def _rotate(self) -> None:
        os.close(self._fd)
        path = self.path
        if self.max_file < 2:
            _unlink(path)
        else:
            _unlink(f"{path}.{self.max_file - 1}")
            for i in range(self.max_file - 1, 1, -1):
                try:
                    os.rename(f"{path}.{i - 1}", f"{path}.{i}")
                except FileNotFoundError:
                    pass
            try:
                os.rename(path, path + ".1")
            except FileNotFoundError:
                pass
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC
                           | os.O_CLOEXEC, 0o640)
        self._size = 0

    def close(self) -> None:
        if self._fd >= 0:
            for name in list(self._streams):
                self.end(name)
            os.close(self._fd)
            self._fd = -1


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
