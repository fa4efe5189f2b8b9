"""Layer compression: detect gzip / zstd / none by magic bytes and decompress while streaming.

``decompressed(read)`` wraps a ``read(n)`` function and returns another that yields the
uncompressed bytes; a truncated or corrupt stream raises ``CorruptLayer`` naming what failed
(never a silent short read). Concatenated gzip members are read as one stream, as gzip(1) does.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

from berth.errors import InvalidArgument

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CHUNK = 1 << 20


class CorruptLayer(InvalidArgument):
    pass


def detect(head: bytes) -> str:
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


class _Peek:
    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self.head = b""
        while len(self.head) < 4:
            b = read(4 - len(self.head))
            if not b:
                break
            self.head += b

    def read(self, n: int) -> bytes:
        if self.head:
            out, self.head = self.head, b""
            return out
        return self._read(n)


class _Decompressor:
    def __init__(self, src: _Peek, kind: str, what: str) -> None:
        self.src = src
        self.kind = kind
        self.what = what
        self.buf = b""
        self.eof = False
        self._new()

    def _new(self) -> None:
        if self.kind == "gzip":
            self.d = zlib.decompressobj(wbits=31)
        else:
            import zstandard

            self.d = zstandard.ZstdDecompressor().decompressobj()

    def read(self, n: int = CHUNK) -> bytes:
        while not self.buf and not self.eof:
            data = self.src.read(CHUNK)
            if not data:
                if self.kind == "gzip" and not self.d.eof:
                    raise CorruptLayer(f"{self.what}: truncated gzip stream (unexpected EOF)")
                if self.kind == "zstd" and not self.d.eof:
                    raise CorruptLayer(f"{self.what}: truncated zstd stream (unexpected EOF)")
                self.eof = True
                break
            try:
                out = self.d.decompress(data)
                while self.d.eof and self.d.unused_data:
                    rest = self.d.unused_data
                    self._new()
                    out += self.d.decompress(rest)
            except zlib.error as e:
                raise CorruptLayer(f"{self.what}: corrupt gzip stream: {e}") from None
            except Exception as e:  # zstandard.ZstdError
                if type(e).__name__ == "ZstdError":
                    raise CorruptLayer(f"{self.what}: corrupt zstd stream: {e}") from None
                raise
            self.buf = out
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def decompressed(read: Callable[[int], bytes], what: str = "layer"
                 ) -> tuple[Callable[[int], bytes], str]:
    """→ (read function over the uncompressed bytes, the compression found)."""
    peek = _Peek(read)
    kind = detect(peek.head)
    if kind == "none":
        return peek.read, kind
    return _Decompressor(peek, kind, what).read, kind
