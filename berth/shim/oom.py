"""Whether the kernel's OOM killer fired in a container's memory cgroup (for ``OOMKilled``).

The cgroup is found from ``/proc/<init>/cgroup`` once the runtime has created the container (so
any runtime and any cgroupsPath work) and mapped to its directory through /proc/self/mountinfo:

- cgroup v1: ``memory.oom_control`` has an ``oom_kill`` counter (Linux ≥ 4.13), and an eventfd
  registered through ``cgroup.event_control`` becomes readable at each OOM, which gives a live
  ``oom`` event;
- cgroup v2: ``memory.events`` has ``oom_kill`` (hierarchical); it is read at exit only (a live
  event would need inotify).

The counter is read at create time and again at exit, before the runtime deletes the cgroup;
OOMKilled is "it grew". Nothing here raises for a missing controller: no memory cgroup means
no OOM information, as with docker on such a host.
"""

import os

__all__ = ["OomWatch", "discover", "memory_cgroup"]


def _mounts() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(v1 memory mounts, v2 mounts) as (root, mountpoint) pairs."""
    v1, v2 = [], []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            rfields = right.split()
            if len(fields) < 5 or len(rfields) < 3:
                continue
            fstype = rfields[0]
            if fstype == "cgroup2":
                v2.append((fields[3], fields[4]))
            elif fstype == "cgroup" and "memory" in rfields[2].split(","):
                v1.append((fields[3], fields[4]))
    return v1, v2


def _join(mounts: list[tuple[str, str]], path: str) -> str | None:
    for root, point in mounts:
        if root == "/":
            return point + path if path != "/" else point
        if path == root or path.startswith(root + "/"):
            return point + path[len(root):]
    return None


def memory_cgroup(pid: int) -> tuple[str, int] | None:
    """(directory, cgroup version) of ``pid``'s memory cgroup, or None."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    v1_path = v2_path = None
    for line in lines:
        hid, _, rest = line.partition(":")
        ctrls, _, path = rest.partition(":")
        if hid == "0" and ctrls == "":
            v2_path = path
        elif "memory" in ctrls.split(","):
            v1_path = path
    v1, v2 = _mounts()
    if v1_path is not None:
        d = _join(v1, v1_path)
        if d and os.path.isdir(d):
            return d, 1
    if v2_path is not None:
        d = _join(v2, v2_path)
        if d and os.path.exists(os.path.join(d, "memory.events")):
            return d, 2
    return None


def _oom_kills(directory: str, version: int) -> int:
    name = "memory.oom_control" if version == 1 else "memory.events"
    try:
        with open(os.path.join(directory, name)) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


def discover(pid: int) -> tuple[dict, list[int]] | None:
    """Find ``pid``'s memory cgroup, read its OOM baseline and (v1) arm an eventfd.

    Returns ({"dir", "version", "base"}, fds) with fds [eventfd, memory.oom_control] when the
    live event could be armed, [] otherwise; None without a memory cgroup.
    """
    found = memory_cgroup(pid)
    if found is None:
        return None
    directory, version = found
    info = {"dir": directory, "version": version, "base": _oom_kills(directory, version)}
    return info, (_register_v1(directory) if version == 1 else [])


def _register_v1(directory: str) -> list[int]:
    try:
        ctl = os.open(os.path.join(directory, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return []
    efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
    try:
        fd = os.open(os.path.join(directory, "cgroup.event_control"), os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, f"{efd} {ctl}".encode())
        finally:
            os.close(fd)
    except OSError:
        os.close(efd)
        os.close(ctl)
        return []
    return [efd, ctl]


class OomWatch:
    """The OOM state of one run of a container: its baseline, ``killed()`` at the end."""

    __slots__ = ("_base", "_ctl", "directory", "fd", "version")

    def __init__(self, info: dict | None, fds: list[int]) -> None:
        self.directory = info["dir"] if info else None
        self.version = info["version"] if info else 0
        self._base = info["base"] if info else 0
        self.fd, self._ctl = (fds[0], fds[1]) if len(fds) == 2 else (-1, -1)

    def read_event(self) -> bool:
        """Drain the eventfd after epoll said it is readable; True if an OOM was signalled.

        The eventfd also fires when the cgroup is removed; the counter tells the two apart.
        """
        try:
            os.eventfd_read(self.fd)
        except OSError:
            return False
        return self.killed()

    def killed(self) -> bool:
        if self.directory is None:
            return False
        return _oom_kills(self.directory, self.version) > self._base

    def close(self) -> None:
        for fd in (self.fd, self._ctl):
            if fd >= 0:
                os.close(fd)
        self.fd = self._ctl = -1
