"""The events bus: every state change an operation makes is published here once.

``GET /events`` subscribers and ``docker events`` read it. Events are Docker's shape (``Type``,
``Action``, ``Actor``, ``scope``, ``time``, ``timeNano`` plus the legacy ``status``/``id``/
``from`` fields for images and containers). The bus keeps the last ``HISTORY`` events so that
``since`` can replay them, as dockerd does.

Invariants: ``publish`` is safe from any thread (operations run in worker threads); a subscriber
never blocks a publisher (each has its own unbounded asyncio queue, fed through its loop).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Iterable

HISTORY = 1024

# filter name → how to read the value from an event
_FILTER_FIELDS = {
    "type": lambda e: [e["Type"]],
    "event": lambda e: [e["Action"], e["Action"].split(":")[0]],
    "scope": lambda e: [e.get("scope", "local")],
    "image": lambda e: [e["Actor"]["ID"], e["Actor"]["Attributes"].get("name", ""),
                        e["Actor"]["Attributes"].get("image", "")] if e["Type"] in
                       ("image", "container") else [],
    "container": lambda e: [e["Actor"]["ID"], e["Actor"]["Attributes"].get("name", "")]
                           if e["Type"] == "container" else [],
    "network": lambda e: [e["Actor"]["ID"], e["Actor"]["Attributes"].get("name", "")]
                         if e["Type"] == "network" else [],
    "volume": lambda e: [e["Actor"]["ID"]] if e["Type"] == "volume" else [],
    "daemon": lambda e: [e["Actor"]["ID"]] if e["Type"] == "daemon" else [],
}


def matches(event: dict, filters: dict[str, Iterable[str]]) -> bool:
    """Docker's rule: every filter name must match; within one name any value may."""
    for name, wanted in filters.items():
        wanted = list(wanted)
        if not wanted:
            continue
        if name == "label":
            attrs = event["Actor"]["Attributes"]
            for w in wanted:
                k, eq, v = w.partition("=")
                if k not in attrs or (eq and attrs[k] != v):
                    return False
            continue
        field = _FILTER_FIELDS.get(name)
        if field is None:
            continue
        values = field(event)
        prefix_ok = name in ("container", "image")  # ids match by prefix too
        if not any(v == w or (prefix_ok and v.startswith(w))
                   for w in wanted for v in values if v):
            return False
    return True


class Subscription:
    def __init__(self, bus: EventBus, loop: asyncio.AbstractEventLoop) -> None:
        self.bus = bus
        self.loop = loop
        self.queue: asyncio.Queue[dict] = asyncio.Queue()

    async def get(self) -> dict:
        return await self.queue.get()

    def close(self) -> None:
        self.bus._unsubscribe(self)


class EventBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._history: deque[dict] = deque(maxlen=HISTORY)
        self._subs: list[Subscription] = []

    def publish(self, type_: str, action: str, actor_id: str,
                attributes: dict[str, str] | None = None) -> dict:
        now = time.time_ns()
        ev: dict = {
            "Type": type_,
            "Action": action,
            "Actor": {"ID": actor_id, "Attributes": dict(attributes or {})},
            "scope": "local",
            "time": now // 1_000_000_000,
            "timeNano": now,
        }
        if type_ in ("image", "container"):
            ev = {"status": action, "id": actor_id, **ev}
            if type_ == "container" and attributes and "image" in attributes:
                ev["from"] = attributes["image"]
        with self._lock:
            self._history.append(ev)
            subs = list(self._subs)
        for s in subs:
            try:
                s.loop.call_soon_threadsafe(s.queue.put_nowait, ev)
            except RuntimeError:  # that subscriber's loop is closed
                pass
        return ev

    def subscribe(self, since_ns: int | None = None,
                  until_ns: int | None = None) -> tuple[list[dict], Subscription]:
        """Replay (events in [since, until]) and a live subscription, taken atomically."""
        sub = Subscription(self, asyncio.get_running_loop())
        with self._lock:
            past = []
            if since_ns is not None:
                past = [e for e in self._history if e["timeNano"] >= since_ns
                        and (until_ns is None or e["timeNano"] <= until_ns)]
            self._subs.append(sub)
        return past, sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    @property
    def listeners(self) -> int:
        with self._lock:
            return len(self._subs)
