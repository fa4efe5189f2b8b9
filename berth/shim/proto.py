"""The shim's wire protocol: typed frames on a unix stream socket, shared by shim and clients.

Every frame has docker's stdcopy header, so that output frames can be handed to a Docker API
client that wants the multiplexed stream without being re-framed::

    0      1      2      3      4                    8
    +------+------+------+------+------+------+------+------+----------------
    | type |  0   |  0   |  0   |     length (u32, big-endian) | payload ...
    +------+------+------+------+------+------+------+------+----------------

    type  direction      payload
    ----  -------------  -----------------------------------------------------------------
    0     client → shim  STDIN: bytes for the attached process; length 0 means "stdin ends"
    1     shim → client  STDOUT: output of the attached process (all of it with a tty)
    2     shim → client  STDERR
    16    client → shim  REQUEST: JSON {"id": N, "op": "...", ...arguments}
    17    shim → client  REPLY:   JSON {"id": N, "ok": {...}} or {"id": N, "error": "...",
                                  "kind": "NotFound|Conflict|InvalidArgument|..."}
    18    shim → client  EVENT:   JSON {"event": "...", ...} (subscribers and attachers)

    client                                   shim
      | REQUEST {"id":1,"op":"attach",...} ->  |   the connection becomes an attach stream
      | <- REPLY {"id":1,"ok":{}}              |
      | STDIN bytes ...                     -> |   forwarded to the process's stdin
      | <- STDOUT / STDERR bytes ...           |   everything the process writes from now on
      | STDIN (empty)                       -> |   stdin ends (closes the process's stdin when
      |                                        |   the shim was told stdin_once)
      | <- EVENT {"event":"exit",...}          |   after the last output; then the shim closes

Requests may be sent on any connection, also while it attaches; a reply may come later than
replies to later requests (``wait`` and ``stop`` answer when the process has exited), which is
why requests carry ids. The ops and their arguments are listed in ``berth.shim.server``.

Sans-IO: this module only encodes and decodes; it imports nothing, so the shim pays nothing for it.
"""

STDIN = 0
STDOUT = 1
STDERR = 2
REQUEST = 16
REPLY = 17
EVENT = 18

HEADER_SIZE = 8
# Requests are small JSON documents; output frames are cut far below this. A peer that announces
# more is not speaking this protocol.
MAX_PAYLOAD = 4 << 20

_TYPES = frozenset((STDIN, STDOUT, STDERR, REQUEST, REPLY, EVENT))


class ProtocolError(ValueError):
    """The peer sent something that is not a frame of this protocol."""


def header(kind: int, length: int) -> bytes:
    return bytes((kind, 0, 0, 0)) + length.to_bytes(4, "big")


def frame(kind: int, payload: bytes | str = b"") -> bytes:
    if isinstance(payload, str):
        payload = payload.encode()
    return bytes((kind, 0, 0, 0)) + len(payload).to_bytes(4, "big") + payload


class Decoder:
    """Splits a byte stream into ``(type, payload)`` frames; feed it whatever recv returned."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self._buf
        buf += data
        out = []
        pos = 0
        n = len(buf)
        while n - pos >= HEADER_SIZE:
            kind = buf[pos]
            if kind not in _TYPES or buf[pos + 1] or buf[pos + 2] or buf[pos + 3]:
                raise ProtocolError(f"bad frame header {bytes(buf[pos:pos + 8]).hex()}")
            length = int.from_bytes(buf[pos + 4:pos + 8], "big")
            if length > MAX_PAYLOAD:
                raise ProtocolError(f"frame of {length} bytes is larger than {MAX_PAYLOAD}")
            end = pos + HEADER_SIZE + length
            if end > n:
                break
            out.append((kind, bytes(buf[pos + HEADER_SIZE:end])))
            pos = end
        if pos:
            del buf[:pos]
        return out

    @property
    def pending(self) -> int:
        """Bytes received that do not yet make a whole frame."""
        return len(self._buf)
