"""The runtime's errors, each beneath one kind of berth.errors."""

from berth.errors import Conflict, FailedPrecondition, Internal, InvalidArgument, NotFound


class InvalidConfig(InvalidArgument):
    """config.json (or a process.json) is malformed; the message names the field."""


class NoSuchContainer(NotFound):
    pass


class ContainerExists(Conflict):
    pass


class BadState(FailedPrecondition):
    """The container's status forbids the operation (start a running one, delete a running one)."""


class InitFailed(Internal):
    """The container's init reported an error while setting the container up."""


class CgroupError(FailedPrecondition):
    """A cgroup could not be made, limited or removed."""
