"""The server side of RFC 6455 WebSocket for ``/containers/{id}/attach/ws``: the handshake's
answer and a reader/writer pair that look like the asyncio streams the attach pump uses.

What dockerd (golang.org/x/net/websocket) does and clients rely on: one frame per write, binary
frames for API 1.28 and later, text before; a close frame (1000) at the end of the output;
the client's data frames are the process's stdin, its close frame is stdin's EOF; pings are
answered. Frames from the client must be masked (RFC 6455 5.1); a fragmented message is
taken frame by frame (stdin is a byte stream, message boundaries mean nothing to it).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib

from berth.errors import InvalidArgument

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG = 1, 2, 8, 9, 10
MAX_FRAME = 1 << 24  # stdin arrives in small writes; a bigger frame is not a client of ours


def handshake_head(req) -> bytes:
    """The 101 answer to ``req``'s opening handshake; InvalidArgument if it is not one."""
    key = req.header("sec-websocket-key")
    if req.header("upgrade").lower() != "websocket" or not key:
        raise InvalidArgument("not a websocket handshake: Upgrade: websocket and "
                              "Sec-WebSocket-Key are required")
    accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
    return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode()


def encode(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked frame (the server never masks)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 1 << 16:
        head = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
    return head + payload


def _unmask(mask: bytes, data: bytes) -> bytes:
    n = len(data)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")


class Writer:
    """Frames every write; ``write_eof`` sends the close frame, then half-closes."""

    def __init__(self, writer: asyncio.StreamWriter, opcode: int = BINARY) -> None:
        self.writer = writer
        self.opcode = opcode
        self.closed = False

    def write(self, data: bytes) -> None:
        if data and not self.closed:
            self.writer.write(encode(self.opcode, data))

    async def drain(self) -> None:
        await self.writer.drain()

    def get_extra_info(self, name: str, default=None):
        return self.writer.get_extra_info(name, default)

    def can_write_eof(self) -> bool:
        return True

    def close_frame(self, code: int = 1000) -> None:
        if not self.closed:
            self.closed = True
            self.writer.write(encode(CLOSE, code.to_bytes(2, "big")))

    def write_eof(self) -> None:
        self.close_frame()
        if self.writer.can_write_eof():
            self.writer.write_eof()


class Reader:
    """The client's data frames as a byte stream: ``read`` gives b"" at its close or EOF."""

    def __init__(self, reader: asyncio.StreamReader, writer: Writer, early: bytes = b"") -> None:
        self.reader = reader
        self.writer = writer
        self.buf = bytearray(early)
        self.done = False

    async def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            more = await self.reader.read(65536)
            if not more:
                raise EOFError
            self.buf += more
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def read(self, _n: int = -1) -> bytes:
        while not self.done:
            try:
                b0, b1 = await self._exactly(2)
                n = b1 & 0x7F
                if n == 126:
                    n = int.from_bytes(await self._exactly(2), "big")
                elif n == 127:
                    n = int.from_bytes(await self._exactly(8), "big")
                if not b1 & 0x80 or n > MAX_FRAME:
                    self.writer.close_frame(1002)  # protocol error: unmasked or huge
                    break
                mask = await self._exactly(4)
                payload = _unmask(mask, await self._exactly(n))
            except EOFError:
                break
            opcode = b0 & 0x0F
            if opcode == CLOSE:
                self.writer.close_frame()
                break
            if opcode == PING:
                self.writer.writer.write(encode(PONG, payload))
            elif opcode in (0, TEXT, BINARY) and payload:
                return payload
        self.done = True
        return b""
