"""Sandboxes: one network namespace per container, kept alive by a bind mount under the run dir.

A sandbox is the file ``<run>/netns/<id>``: the bind mount of a namespace with loopback up and
IPv6 off (containers get IPv4 only, and no IPv6 means no DAD or router solicitations). The
runtime joins it through config.json ``linux.namespaces[{"type": "network", "path": ...}]``.

Invariants:
- the directory ``<run>/netns`` is a mount point with shared propagation, as iproute2 does for
  /run/netns, so that unmounting a sandbox also unmounts the copies in mount namespaces made
  after it (a container's own mount namespace would otherwise keep the netns alive);
- a sandbox file exists only as a mount point: creation either finishes or removes the file;
- destroy is one umount: the kernel then frees the namespace and the veth ends inside it,
  taking their host-side peers with them, asynchronously (deleting a veth synchronously costs
  ~18 ms of RCU grace period here, which teardown does not need to wait for).
"""

import os
import threading

from ..errors import Conflict, Internal, NotFound
from ..linux import mount as m
from ..linux import ns
from .netlink import Netlink, host_netns_fd

_prepared: set[str] = set()
_prep_lock = threading.Lock()


class SandboxError(Internal):
    pass


class NoSuchSandbox(NotFound):
    pass


def _is_mountpoint(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def prepare_dir(d: str) -> None:
    """Make ``d`` a shared mount point (bind to itself), once per process."""
    if d in _prepared:
        return
    with _prep_lock:
        if d in _prepared:
            return
        os.makedirs(d, mode=0o755, exist_ok=True)
        if not _is_mountpoint(d):
            m.mount(d, d, None, m.MS_BIND)
        try:
            m.mount(None, d, None, m.MS_SHARED)
        except OSError:
            # The parent mount may be private/unbindable: make ours private first, then shared.
            m.mount(None, d, None, m.MS_PRIVATE)
            m.mount(None, d, None, m.MS_SHARED)
        _prepared.add(d)


def release_dir(d: str) -> None:
    """Undo ``prepare_dir`` once no sandbox is left in ``d`` (tests, purges)."""
    with _prep_lock:
        _prepared.discard(d)
        if _is_mountpoint(d):
            m.umount2(d, m.MNT_DETACH)


def write_sysctl(path: str, value: str) -> None:
    """Write a /proc/sys file; for net.* the calling thread's netns is the one changed."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def create(path: str) -> None:
    """A fresh network namespace bind-mounted at ``path`` (which must not exist), lo up."""
    prepare_dir(os.path.dirname(path))
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))
    except FileExistsError:
        raise Conflict(f"sandbox already exists: {path}") from None
    host = host_netns_fd()
    mounted = False
    try:
        try:
            ns.unshare(ns.CLONE_NEWNET)
            # /proc/sys/net follows the opening thread's netns: these are the new namespace's.
            write_sysctl("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1")
            write_sysctl("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1")
            with Netlink() as nl:
                nl.set_link_up("lo")
            m.mount("/proc/thread-self/ns/net", path, None, m.MS_BIND)
            mounted = True
        finally:
            ns.setns(host, ns.CLONE_NEWNET)
    except OSError as e:
        if mounted:
            _umount(path)
        _unlink(path)
        raise SandboxError(f"create sandbox {path}: {e.strerror or e}") from e


def _umount(path: str) -> None:
    try:
        m.umount2(path, m.MNT_DETACH)
    except OSError as e:
        if e.errno not in (22, 2):  # EINVAL: not a mount point; ENOENT: gone
            raise


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def destroy(path: str) -> None:
    """Unmount and remove the sandbox at ``path``; a missing one is not an error."""
    try:
        _umount(path)
    except OSError as e:
        raise SandboxError(f"destroy sandbox {path}: {e.strerror}") from e
    _unlink(path)


def exists(path: str) -> bool:
    return os.path.exists(path) and _is_mountpoint(path)


def list_dir(d: str) -> list[str]:
    """Sandbox files under ``d`` (mounted or half-made)."""
    try:
        return sorted(os.path.join(d, n) for n in os.listdir(d) if not n.startswith("."))
    except FileNotFoundError:
        return []


class SandboxPool:
    """Sandboxes made ahead of time, so that a container start only renames one into place.

    ``take(path)`` moves a ready namespace to ``path`` (a bind mount of the ready one, then an
    unmount of the ready one: cheaper than unshare + configure), or makes one on the spot when
    the pool is empty. ``fill()`` tops the pool up; the engine calls it off the hot path.
    """

    def __init__(self, spare_dir: str, size: int = 2) -> None:
        self.dir = spare_dir
        self.size = size
        self.lock = threading.Lock()
        self.ready: list[str] = []
        self.n = 0

    def fill(self) -> None:
        while True:
            with self.lock:
                if len(self.ready) >= self.size:
                    return
                self.n += 1
                p = os.path.join(self.dir, f"spare-{os.getpid()}-{self.n}")
            create(p)
            with self.lock:
                self.ready.append(p)

    def take(self, path: str) -> None:
        with self.lock:
            spare = self.ready.pop() if self.ready else None
        if spare is None:
            create(path)
            return
        prepare_dir(os.path.dirname(path))
        try:
            os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))
        except FileExistsError:
            with self.lock:
                self.ready.append(spare)
            raise Conflict(f"sandbox already exists: {path}") from None
        try:
            m.mount(spare, path, None, m.MS_BIND)
        except OSError as e:
            _unlink(path)
            destroy(spare)
            raise SandboxError(f"create sandbox {path}: {e.strerror}") from e
        destroy(spare)

    def drain(self) -> None:
        with self.lock:
            spares, self.ready = self.ready, []
        for p in spares:
            destroy(p)
        # Spares never outlive the daemon (a container's namespace lives elsewhere), so their
        # directory's self-bind goes too: a run dir removed after berthd stops must not be busy.
        if not list_dir(self.dir):
            release_dir(self.dir)
