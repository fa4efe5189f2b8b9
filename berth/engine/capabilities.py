"""Linux capabilities as Docker names and applies them: the default set, --cap-add/--cap-drop.

A container gets Docker's default set (``DEFAULT``: the 14 capabilities a typical service needs
and that cannot reach beyond its namespaces), plus what ``--cap-add`` names, minus what
``--cap-drop`` names; ``ALL`` stands for every capability this host can pass on (berthd's
bounding set), and ``--privileged`` gives all of those. Names are accepted as Docker accepts
them: case-insensitive, with or without the ``CAP_`` prefix; an unknown name is refused with
Docker's message and nothing is created.

Invariant: ``effective()`` returns canonical ``CAP_*`` names in kernel-number order, so that
the OCI spec (bounding = effective = permitted) is the same for the same flags.
"""

from __future__ import annotations

from berth.errors import InvalidArgument

# Kernel numbers (include/uapi/linux/capability.h); the order of this list is the numbering.
ALL = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
    "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON",
    "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
_NUMBER = {name: i for i, name in enumerate(ALL)}

# Docker's default set: file ownership and modes inside the container's own files, process
# identity changes, binding low ports, raw sockets (ping), chroot, signals to its own processes,
# audit records, and setting file capabilities. Nothing that reaches the host: no SYS_ADMIN,
# NET_ADMIN, SYS_MODULE, SYS_PTRACE, SYS_TIME, ...
DEFAULT = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)


class UnknownCapability(InvalidArgument):
    pass


def available() -> frozenset[str]:
    """The capabilities this process may pass on: its bounding set (a container host, or a
    VM, may lack some; Docker's "ALL" means all of these, not all the kernel knows)."""
    global _AVAILABLE
    if _AVAILABLE is None:
        mask = (1 << len(ALL)) - 1
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("CapBnd:"):
                        mask = int(line.split()[1], 16)
                        break
        except OSError:
            pass
        _AVAILABLE = frozenset(c for i, c in enumerate(ALL) if mask >> i & 1)
    return _AVAILABLE


_AVAILABLE: frozenset[str] | None = None


def canonical(name: str) -> str:
    """``net_admin`` / ``NET_ADMIN`` / ``CAP_NET_ADMIN`` → ``CAP_NET_ADMIN``; ``all`` → ``ALL``."""
    n = name.upper()
    if n == "ALL":
        return "ALL"
    if not n.startswith("CAP_"):
        n = "CAP_" + n
    if n not in _NUMBER:
        raise UnknownCapability(f'unknown capability: "{n}"')
    if n not in available():
        raise UnknownCapability("capability not supported by your kernel or not available in "
                                f'the current environment: "{n}"')
    return n


def effective(add: list[str] | None, drop: list[str] | None,
              privileged: bool = False) -> list[str]:
    """The container's capability set, by Docker's rules.

    ``ALL`` in ``add`` means every capability but those dropped; otherwise ``ALL`` in ``drop``
    means exactly those added; otherwise the default set minus the dropped plus the added.
    """
    everything = available()
    if privileged:
        return [c for c in ALL if c in everything]
    adds = [canonical(c) for c in add or []]
    drops = [canonical(c) for c in drop or []]
    if "ALL" in adds:
        caps = set(everything) - set(drops)
    elif "ALL" in drops:
        caps = set(adds)
    else:
        caps = (set(DEFAULT) - set(drops)) | set(adds)
    return sorted(caps, key=_NUMBER.__getitem__)
