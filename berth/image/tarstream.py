"""A streaming tar reader and a small tar writer (ustar + pax), made for layers.

Why not ``tarfile``: a layer is read once, from a pipe, with the digest computed over exactly
the bytes read, and every entry must be judged (path, link target, type) before anything is
written; a minimal reader makes that explicit and is faster on the hot path of ``load``.

``TarReader(read)`` iterates ``Entry`` objects; the caller reads an entry's content with
``reader.read_content(entry, n)`` (or ``copy_to(fd)``) before asking for the next entry —
content not read is skipped. Supported: ustar, POSIX pax (``path``, ``linkpath``, ``size``,
``uid``, ``gid``, ``uname``, ``gname``, ``mtime``, ``SCHILY.xattr.*``), GNU long names (``L``,
``K``). GNU sparse files are refused. ``TarWriter`` writes regular files, directories and
symlinks with pax headers when a field does not fit.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from berth.errors import InvalidArgument

BLOCK = 512

REGTYPE = b"0"
AREGTYPE = b"\0"
LNKTYPE = b"1"
SYMTYPE = b"2"
CHRTYPE = b"3"
BLKTYPE = b"4"
DIRTYPE = b"5"
FIFOTYPE = b"6"
CONTTYPE = b"7"


class BadArchive(InvalidArgument):
    pass


class Entry:
    __slots__ = ("name", "type", "size", "mode", "uid", "gid", "mtime", "linkname",
                 "devmajor", "devminor", "xattrs", "uname", "gname", "_left", "raw")

    def __init__(self) -> None:
        self.xattrs: dict[str, bytes] = {}

    @property
    def is_file(self) -> bool:
        return self.type in (REGTYPE, AREGTYPE, CONTTYPE)

    @property
    def is_dir(self) -> bool:
        return self.type == DIRTYPE


def _num(field: bytes, what: str) -> int:
    if field and field[0] & 0x80:  # base-256 (GNU) for large values
        v = int.from_bytes(field, "big") & ~(1 << (8 * len(field) - 1))
        return v
    s = field.split(b"\0", 1)[0].strip(b" \0")
    if not s:
        return 0
    try:
        return int(s, 8)
    except ValueError:
        raise BadArchive(f"invalid tar header: bad {what} field {field!r}") from None


def _str(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _parse_pax(data: bytes) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    i = 0
    while i < len(data):
        sp = data.find(b" ", i)
        if sp < 0:
            break
        try:
            length = int(data[i:sp])
        except ValueError:
            raise BadArchive("invalid pax header") from None
        if length <= 0:
            raise BadArchive("invalid pax header")
        rec = data[sp + 1:i + length - 1]  # without trailing \n
        k, _, v = rec.partition(b"=")
        out[k.decode("utf-8", "surrogateescape")] = v
        i += length
    return out


class TarReader:
    def __init__(self, read: Callable[[int], bytes], what: str = "archive",
                 capture: bool = False) -> None:
        # capture: keep each entry's raw header blocks (``entry.raw``) and the bytes after the
        # last entry (``trailer``), so the exact archive can be rebuilt from them and the
        # entries' contents (a tar-split, as dockerd keeps one per layer).
        self.capture = capture
        self.trailer: bytes | None = None
        self.exact = True  # False once something the raw parts cannot rebuild was seen
        self._read = read
        self.what = what
        self._buf = b""
        self._current: Entry | None = None
        self.pos = 0  # bytes consumed
        self._short = 0  # bytes of the block a read could not complete

    def _readn(self, n: int) -> bytes:
        parts = [self._buf[:n]] if self._buf else []
        have = len(parts[0]) if parts else 0
        self._buf = self._buf[n:] if self._buf else b""
        while have < n:
            b = self._read(max(n - have, 1 << 16))
            if not b:
                self._short = have
                raise BadArchive(f"{self.what}: unexpected end of tar archive")
            need = n - have
            parts.append(b[:need])
            if len(b) > need:
                self._buf = b[need:]
            have += min(len(b), need)
        self.pos += n
        return b"".join(parts)

    def _skip_content(self) -> None:
        e = self._current
        if e is None:
            return
        while e._left:
            chunk = self.read_content(e, min(e._left, 1 << 20))
            if not chunk:
                break
        pad = -e.size % BLOCK
        if pad:
            padding = self._readn(pad)
            if self.capture and padding.count(0) != pad:
                self.exact = False
        self._current = None

    def read_content(self, e: Entry, n: int = 1 << 20) -> bytes:
        """Up to ``n`` bytes of ``e``'s content; b"" at its end."""
        if e._left <= 0:
            return b""
        n = min(n, e._left)
        if self._buf:
            out = self._buf[:n]
            self._buf = self._buf[len(out):]
        else:
            out = self._read(n)
            if not out:
                raise BadArchive(f"{self.what}: unexpected end of tar archive in {e.name}")
            if len(out) > n:
                self._buf = out[n:]
                out = out[:n]
        e._left -= len(out)
        self.pos += len(out)
        return out

    def copy_to(self, e: Entry, fd: int) -> None:
        while True:
            chunk = self.read_content(e)
            if not chunk:
                return
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]

    def drain(self) -> None:
        """Read to the end of the underlying stream (so a digest covers all of it)."""
        while True:
            b = self._read(1 << 20)
            if not b:
                return
            self.pos += len(b)
            if self.capture and self.trailer is not None:
                if len(self.trailer) + len(b) > 1 << 20:
                    self.exact = False
                    self.trailer = b""
                self.trailer += b

    def __iter__(self) -> Iterator[Entry]:
        pax_global: dict[str, bytes] = {}
        while True:
            self._skip_content()
            pax: dict[str, bytes] = {}
            longname = longlink = None
            raw: list[bytes] = []
            while True:
                try:
                    hdr = self._readn(BLOCK)
                except BadArchive:
                    if self.pos == 0:
                        # nothing at all, or less than one header of something
                        why = "a short file" if self._short else "empty"
                        raise BadArchive(f"{self.what}: not a tar archive ({why})") from None
                    raise
                if hdr == b"\0" * BLOCK:
                    # end of archive (one or two zero blocks; read the rest as padding)
                    if self.capture:
                        self.trailer = hdr + self._buf
                    self._buf = b""
                    return
                if self.capture:
                    raw.append(hdr)
                chk = _num(hdr[148:156], "checksum")
                calc = sum(hdr[:148]) + 32 * 8 + sum(hdr[156:])
                if chk != calc:
                    signed = sum((b - 256 if b > 127 else b) for b in hdr[:148]) + 256 + sum(
                        (b - 256 if b > 127 else b) for b in hdr[156:])
                    if chk != signed:
                        raise BadArchive(f"{self.what}: invalid tar header checksum at offset "
                                         f"{self.pos - BLOCK}")
                typ = hdr[156:157]
                size = _num(hdr[124:136], "size")
                if typ in (b"x", b"g", b"L", b"K"):
                    block = self._readn(size + (-size % BLOCK))
                    if self.capture:
                        raw.append(block)
                    data = block[:size]
                    if typ == b"x":
                        pax.update(_parse_pax(data))
                    elif typ == b"g":
                        pax_global.update(_parse_pax(data))
                    elif typ == b"L":
                        longname = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
                    else:
                        longlink = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
                    continue
                break
            if typ == b"S":
                raise BadArchive(f"{self.what}: GNU sparse files are not supported")
            meta = {**pax_global, **pax}
            e = Entry()
            name = _str(hdr[0:100])
            if hdr[257:263] in (b"ustar\x00", b"ustar ") and hdr[345:500].strip(b"\0"):
                prefix = _str(hdr[345:500])
                if hdr[257:263] == b"ustar\x00":
                    name = prefix + "/" + name
            e.name = longname or (meta["path"].decode("utf-8", "surrogateescape")
                                  if "path" in meta else name)
            e.linkname = longlink or (meta["linkpath"].decode("utf-8", "surrogateescape")
                                      if "linkpath" in meta else _str(hdr[157:257]))
            e.type = typ
            e.size = int(meta["size"]) if "size" in meta else size
            e.mode = _num(hdr[100:108], "mode") & 0o7777
            e.uid = int(meta["uid"]) if "uid" in meta else _num(hdr[108:116], "uid")
            e.gid = int(meta["gid"]) if "gid" in meta else _num(hdr[116:124], "gid")
            if "mtime" in meta:
                e.mtime = float(meta["mtime"])
            else:
                e.mtime = float(_num(hdr[136:148], "mtime"))
            e.uname = _str(hdr[265:297])
            e.gname = _str(hdr[297:329])
            e.devmajor = _num(hdr[329:337], "devmajor")
            e.devminor = _num(hdr[337:345], "devminor")
            for k, v in meta.items():
                if k.startswith("SCHILY.xattr."):
                    e.xattrs[k[len("SCHILY.xattr."):]] = v
            if e.type in (LNKTYPE, SYMTYPE, DIRTYPE, CHRTYPE, BLKTYPE, FIFOTYPE):
                e.size = 0 if e.type != LNKTYPE else e.size
            e._left = e.size
            e.raw = b"".join(raw) if self.capture else b""
            self._current = e
            yield e


# ------------------------------------------------------------------------------- the writer

def _octal(n: int, width: int) -> bytes:
    return (b"%0*o" % (width - 1, n)) + b"\0"


def _pax_record(k: str, v: bytes) -> bytes:
    body = k.encode() + b"=" + v + b"\n"
    n = len(body) + 2
    while len(str(n).encode()) + 1 + len(body) != n:
        n = len(str(n).encode()) + 1 + len(body)
    return str(n).encode() + b" " + body


def header(name: str, size: int = 0, typ: bytes = REGTYPE, mode: int = 0o644,
           mtime: float = 0, linkname: str = "", uid: int = 0, gid: int = 0,
           xattrs: dict[str, bytes] | None = None, devmajor: int = 0,
           devminor: int = 0) -> bytes:
    """One entry's header block(s): ustar, with a pax header first when a field won't fit
    (long names, sizes ≥ 8 GiB, large ids, xattrs)."""
    pax = {}
    for k, v in (xattrs or {}).items():
        pax["SCHILY.xattr." + k] = v
    if uid >= 8 ** 7:
        pax["uid"] = str(uid).encode()
        uid = 0
    if gid >= 8 ** 7:
        pax["gid"] = str(gid).encode()
        gid = 0
    bname = name.encode("utf-8", "surrogateescape")
    blink = linkname.encode("utf-8", "surrogateescape")
    if len(bname) > 100:
        pax["path"] = bname
        bname = bname[:100]
    if len(blink) > 100:
        pax["linkpath"] = blink
        blink = blink[:100]
    if size >= 8 ** 11:
        pax["size"] = str(size).encode()
    out = b""
    if pax:
        data = b"".join(_pax_record(k, v) for k, v in pax.items())
        out += _block(b"././@PaxHeader", len(data), b"x", 0o644, 0, b"", 0, 0)
        out += data + b"\0" * (-len(data) % BLOCK)
    return out + _block(bname, size if size < 8 ** 11 else 0, typ, mode, mtime, blink, uid, gid,
                        devmajor, devminor)


def _block(bname: bytes, size: int, typ: bytes, mode: int, mtime: float, blink: bytes,
           uid: int, gid: int, devmajor: int = 0, devminor: int = 0) -> bytes:
    h = bytearray(BLOCK)
    h[0:len(bname)] = bname
    h[100:108] = _octal(mode, 8)
    h[108:116] = _octal(uid, 8)
    h[116:124] = _octal(gid, 8)
    h[124:136] = _octal(size, 12)
    h[136:148] = _octal(int(mtime), 12)
    h[148:156] = b" " * 8
    h[156:157] = typ
    h[157:157 + len(blink)] = blink
    h[257:265] = b"ustar\x0000"
    if typ in (CHRTYPE, BLKTYPE):
        h[329:337] = _octal(devmajor, 8)
        h[337:345] = _octal(devminor, 8)
    chk = sum(h)
    h[148:156] = b"%06o\0 " % chk
    return bytes(h)


class TarWriter:
    """Writes an archive through ``write(bytes)``; entries are added whole or streamed."""

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self.write = write

    def add_dir(self, name: str, mtime: int = 0) -> None:
        self.write(header(name.rstrip("/") + "/", 0, DIRTYPE, 0o755, mtime))

    def add_bytes(self, name: str, data: bytes, mtime: int = 0, mode: int = 0o644) -> None:
        self.write(header(name, len(data), REGTYPE, mode, mtime))
        self.write(data + b"\0" * (-len(data) % BLOCK))

    def add_symlink(self, name: str, target: str, mtime: int = 0) -> None:
        self.write(header(name, 0, SYMTYPE, 0o777, mtime, target))

    def add_file(self, name: str, path: str, mtime: int = 0, chunk: int = 1 << 20) -> None:
        size = os.stat(path).st_size
        self.write(header(name, size, REGTYPE, 0o644, mtime))
        with open(path, "rb") as f:
            left = size
            while left:
                b = f.read(min(chunk, left))
                if not b:
                    raise BadArchive(f"{path}: file shrank while archiving")
                self.write(b)
                left -= len(b)
        if size % BLOCK:
            self.write(b"\0" * (-size % BLOCK))

    def close(self) -> None:
        self.write(b"\0" * (2 * BLOCK))
