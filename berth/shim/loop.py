"""A minimal epoll loop with timers, for the single-threaded shim (asyncio costs ~30 ms to import).

Callbacks get the epoll event mask; timers are few (a restart delay, a stop timeout, drain
deadlines), so they are a plain list scanned once per turn.
"""

import select
import time

__all__ = ["Loop", "Timer"]


class Timer:
    __slots__ = ("fn", "live", "when")

    def __init__(self, when: float, fn) -> None:
        self.when = when
        self.fn = fn
        self.live = True

    def cancel(self) -> None:
        self.live = False


class Loop:
    """The epoll instance is made on first use: a Loop built before a fork (in the zygote) must
    not share one with the child, as registrations live in the shared open file."""

    def __init__(self) -> None:
        self._ep = None
        self._cbs: dict[int, object] = {}
        self._masks: dict[int, int] = {}
        self._timers: list[Timer] = []

    @property
    def ep(self):
        if self._ep is None:
            self._ep = select.epoll()
        return self._ep

    def watch(self, fd: int, mask: int, cb) -> None:
        self.ep.register(fd, mask)
        self._cbs[fd] = cb
        self._masks[fd] = mask

    def watching(self, fd: int) -> bool:
        return fd in self._cbs

    def modify(self, fd: int, mask: int) -> None:
        if fd in self._masks and self._masks[fd] != mask:
            self.ep.modify(fd, mask)
            self._masks[fd] = mask

    def mask(self, fd: int) -> int:
        return self._masks.get(fd, 0)

    def unwatch(self, fd: int) -> None:
        if self._cbs.pop(fd, None) is not None:
            del self._masks[fd]
            try:
                self.ep.unregister(fd)
            except OSError:
                pass

    def later(self, delay: float, fn) -> Timer:
        t = Timer(time.monotonic() + delay, fn)
        self._timers.append(t)
        return t

    def run_once(self, max_wait: float = -1) -> None:
        timers = self._timers
        if timers:
            timers[:] = [t for t in timers if t.live]
        timeout = max_wait
        if timers:
            now = time.monotonic()
            first = max(0.0, min(t.when for t in timers) - now)
            timeout = first if timeout < 0 else min(timeout, first)
        for fd, ev in self.ep.poll(timeout):
            cb = self._cbs.get(fd)
            if cb is not None:
                cb(ev)
        if timers:
            now = time.monotonic()
            due = [t for t in timers if t.live and t.when <= now]
            for t in due:
                t.live = False
                t.fn()

    def close(self) -> None:
        if self._ep is not None:
            self._ep.close()
            self._ep = None
