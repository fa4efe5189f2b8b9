"""Tar-split: rebuild a layer's exact tar from its unpacked snapshot and a small record.

dockerd keeps one per layer so that ``docker save`` gives back the very bytes (and so the
diffID) that came in without keeping the tar itself; berth does the same for uncompressed
layers, which then live on disk once (as files), not twice (as files and as a tar blob).

The record (``tar-split`` beside the snapshot's ``fs``) is a sequence of

    b"E" u32 len  raw header blocks (ustar + pax/GNU extension blocks, exactly as read)
         u32 len  path of the entry's content in ``fs`` (empty when it has none)
         u64      content size
    b"T" u32 len  the bytes after the last entry (end-of-archive blocks and padding)

Content is followed by zero padding to 512 bytes (an archive whose padding was not zeros is
not recorded: ``TarReader.exact`` is False). ``rebuild`` streams the archive back;
``ImageStore`` checks its digest against the diffID once before trusting it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

from berth.errors import Internal

BLOCK = 512
NAME = "tar-split"


class TarSplitError(Internal):
    pass


class Recorder:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def entry(self, raw: bytes, path: str | None, size: int) -> None:
        p = (path or "").encode("utf-8", "surrogateescape")
        self.parts.append(b"E" + struct.pack("<I", len(raw)) + raw + struct.pack("<I", len(p))
                          + p + struct.pack("<Q", size))

    def save(self, path: str, trailer: bytes) -> None:
        from berth import atomic

        atomic.write_bytes(path, b"".join(self.parts) + b"T" + struct.pack("<I", len(trailer))
                           + trailer, 0o600)


def _records(data: bytes) -> Iterator[tuple[bytes, str, int] | bytes]:
    i = 0
    n = len(data)
    while i < n:
        tag = data[i:i + 1]
        (ln,) = struct.unpack_from("<I", data, i + 1)
        i += 5
        if tag == b"T":
            yield data[i:i + ln]
            return
        if tag != b"E":
            raise TarSplitError(f"corrupt tar-split at offset {i - 5}")
        raw = data[i:i + ln]
        i += ln
        (pl,) = struct.unpack_from("<I", data, i)
        i += 4
        path = data[i:i + pl].decode("utf-8", "surrogateescape")
        i += pl
        (size,) = struct.unpack_from("<Q", data, i)
        i += 8
        yield raw, path, size
    raise TarSplitError("corrupt tar-split: no trailer")


def check(fs: str, split_path: str, expected_size: int) -> bool:
    """The record is whole and matches ``fs``: rebuilt length and every content file's size."""
    with open(split_path, "rb") as f:
        data = f.read()
    total = 0
    for rec in _records(data):
        if isinstance(rec, bytes):
            total += len(rec)
            continue
        raw, path, sz = rec
        if len(raw) % BLOCK or not raw:
            return False
        if sz and os.lstat(os.path.join(fs, path)).st_size != sz:
            return False
        total += len(raw) + sz + (-sz % BLOCK)
    return total == expected_size


def rebuild(fs: str, split_path: str, chunk: int = 1 << 20) -> Iterator[bytes]:
    """The archive's bytes, in pieces."""
    with open(split_path, "rb") as f:
        data = f.read()
    pending: list[bytes] = []
    held = 0
    for rec in _records(data):
        if isinstance(rec, bytes):
            pending.append(rec)
            yield b"".join(pending)
            return
        raw, path, sz = rec
        pending.append(raw)
        held += len(raw)
        if sz:
            if held:
                yield b"".join(pending)
                pending, held = [], 0
            fd = os.open(os.path.join(fs, path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                left = sz
                while left:
                    b = os.read(fd, min(chunk, left))
                    if not b:
                        raise TarSplitError(f"{path}: shorter than its tar entry")
                    left -= len(b)
                    yield b
            finally:
                os.close(fd)
            if sz % BLOCK:
                pending.append(b"\0" * (-sz % BLOCK))
                held += -sz % BLOCK
        elif held >= chunk:
            yield b"".join(pending)
            pending, held = [], 0


class Reader:
    """A file-like ``read(n)`` over ``rebuild``."""

    def __init__(self, fs: str, split_path: str) -> None:
        self._it = rebuild(fs, split_path)
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            out = self._buf + b"".join(self._it)
            self._buf = b""
            return out
        while len(self._buf) < n:
            b = next(self._it, None)
            if b is None:
                break
            self._buf += b
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def close(self) -> None:
        self._it.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
