"""A stream socket's send queue: how many bytes sent on it its peer has not read yet.

For AF_UNIX, ioctl SIOCOUTQ counts what sits in the peer's receive queue (the kernel charges
it to the sender until the reader takes it); for TCP it counts unsent and unacknowledged
bytes, which says nothing about the reading application, so callers ask for AF_UNIX only.
"""

import fcntl
import struct

SIOCOUTQ = 0x5411  # = TIOCOUTQ


def unread(fd: int) -> int:
    """Bytes written on ``fd`` that the peer has not read yet."""
    return struct.unpack("i", fcntl.ioctl(fd, SIOCOUTQ, b"\0\0\0\0"))[0]
