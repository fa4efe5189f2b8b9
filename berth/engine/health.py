"""Health checks (``HEALTHCHECK``, ``--health-cmd``): a probe run in the container, Docker's way.

While a container with a check runs, a task on the daemon's loop runs the probe every
``Interval`` (``StartInterval`` during the ``StartPeriod``) as an exec through the shim, with
``Timeout``; the result goes into ``State.Health`` as dockerd keeps it: ``Status`` starting →
healthy after one success, unhealthy after ``Retries`` failures in a row (failures inside the
start period do not count), ``FailingStreak``, and the last five results in ``Log`` (Start,
End, ExitCode, Output). Each change of status is a ``health_status: <status>`` event.

Defaults as Docker's: interval 30 s, timeout 30 s, start period 0, start interval 5 s,
retries 3. ``["NONE"]`` disables a check the image defines.
"""

from __future__ import annotations

import asyncio
import logging
import os

from . import container_state as cs

log = logging.getLogger("berth.engine")

DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_START_INTERVAL = 5.0
DEFAULT_RETRIES = 3
LOG_ENTRIES = 5
OUTPUT_MAX = 4096


def probe_args(check: dict | None) -> list[str] | None:
    """The probe's argv, or None when the container has no (enabled) check."""
    test = (check or {}).get("Test") or []
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        return list(test[1:]) or None
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])]
    return None


def _secs(ns, default: float) -> float:
    return ns / 1e9 if ns else default


class HealthMonitor:
    """The check of one running container."""

    def __init__(self, service, c) -> None:
        self.service = service
        self.c = c
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.c.rec["State"]["Health"] = {"Status": "starting", "FailingStreak": 0, "Log": []}
        self.task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None

    async def _run(self) -> None:
        check = self.c.rec["Config"].get("Healthcheck") or {}
        args = probe_args(check)
        interval = _secs(check.get("Interval"), DEFAULT_INTERVAL)
        timeout = _secs(check.get("Timeout"), DEFAULT_TIMEOUT)
        start_period = _secs(check.get("StartPeriod"), 0.0)
        start_interval = _secs(check.get("StartInterval"), DEFAULT_START_INTERVAL)
        retries = check.get("Retries") or DEFAULT_RETRIES
        loop = asyncio.get_running_loop()
        began = loop.time()
        n = 0
        try:
            while True:
                in_start = loop.time() - began < start_period
                health = self.c.rec["State"].get("Health") or {}
                await asyncio.sleep(start_interval if in_start and
                                    health.get("Status") == "starting" else interval)
                if not cs.is_running(self.c.state) or self.c.client is None:
                    return
                n += 1
                code, out, t0, t1 = await self._probe(args, timeout, n)
                self._record(code, out, t0, t1, retries, loop.time() - began < start_period)
        except asyncio.CancelledError:
            pass

    async def _probe(self, args: list[str], timeout: float, n: int):
        c = self.c
        t0 = cs.now_rfc3339()
        execs = self.service.execs
        xid = f"health-{os.urandom(6).hex()}"
        try:
            proc = await asyncio.to_thread(execs.probe_process, c, args)
            att = await c.client.exec(xid, proc, stdin=False, attach=True)
        except Exception as e:  # noqa: BLE001 - a probe that cannot run has failed
            return -1, str(e), t0, cs.now_rfc3339()
        out: list[bytes] = []
        try:
            async with asyncio.timeout(timeout):
                while (item := await att.read()) is not None:
                    if sum(map(len, out)) < OUTPUT_MAX:
                        out.append(item[1])
            code = (att.exit or {}).get("exit_code")
            code = -1 if code is None else code
            text = b"".join(out)[:OUTPUT_MAX].decode(errors="replace")
        except TimeoutError:
            try:
                await c.client.kill(9, exec=xid)
            except Exception:  # noqa: BLE001 - it may have ended meanwhile
                pass
            code, text = -1, f"Health check exceeded timeout ({timeout:g}s)"
        finally:
            await att.close()
        return code, text, t0, cs.now_rfc3339()

    def _record(self, code: int, out: str, t0: str, t1: str, retries: int,
                in_start: bool) -> None:
        c = self.c
        h = dict(c.rec["State"].get("Health") or {"Status": "starting", "FailingStreak": 0,
                                                  "Log": []})
        before = h["Status"]
        if code == 0:
            h["Status"] = "healthy"
            h["FailingStreak"] = 0
        elif not (in_start and before == "starting"):
            h["FailingStreak"] = h.get("FailingStreak", 0) + 1
            if h["FailingStreak"] >= retries:
                h["Status"] = "unhealthy"
        h["Log"] = (list(h.get("Log") or []) + [{"Start": t0, "End": t1, "ExitCode": code,
                                                 "Output": out}])[-LOG_ENTRIES:]
        c.rec["State"]["Health"] = h
        self.service._save(c)
        if h["Status"] != before:
            self.service.events.publish("container", f"health_status: {h['Status']}", c.id,
                                        self.service._event_attrs(c))

