"""berth's error tree: one root, a few kinds, every module's errors beneath one kind.

    BerthError
    ├── NotFound            no such image / container / network / volume / blob
    ├── Conflict            name in use, object in a state that forbids the call
    ├── InvalidArgument     bad input from the user: a flag, a config field, an archive
    ├── FailedPrecondition  the system is not in the state the call needs
    ├── PermissionDenied    not allowed (auth, file modes)
    ├── Unavailable         a peer or resource is not reachable right now
    └── Internal            a bug or an unexpected fault in berth itself

A module subclasses the kind that fits (``class NoSuchImage(NotFound)``) so that callers can
catch broadly and the API layer can map a kind to an HTTP status in one table. Messages are one
line, lower-case, and name the object and the path (``no such image: busybox:latest``), so the
user can act on them. OSError is translated once, at the layer edge, with ``raise X(...) from e``.

This module imports nothing: the runtime's init and the shim use it.
"""


class BerthError(Exception):
    """Root of every error berth raises on purpose."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class NotFound(BerthError):
    pass


class Conflict(BerthError):
    pass


class InvalidArgument(BerthError):
    pass


class FailedPrecondition(BerthError):
    pass


class PermissionDenied(BerthError):
    pass


class Unavailable(BerthError):
    pass


class Internal(BerthError):
    pass
