"""A container's lifecycle status and the one function that moves it, as Docker shows it.

    created ──start──▶ running ◀──unpause── paused
       ▲                 │  │ ──pause──────▲
       │                 │  └──exit, policy says again──▶ restarting ──(back-off)──▶ running
       │               exit / stop / kill
       │                 ▼
       └── (none) ◀── exited ──start──▶ running
                         │
         created|exited ─┴─rm──▶ removing ──▶ (gone)        any ──fault──▶ dead

``transition(state, event, **facts)`` is the only place a ``State`` changes: it checks the move
is allowed (a ``Conflict`` with Docker's words otherwise) and fills the fields Docker reports
(``Running``, ``Paused``, ``Pid``, ``ExitCode``, ``StartedAt``, ``FinishedAt``, ``OOMKilled``,
``Error``). ``can_start``/``can_kill``/``can_delete`` answer the questions operations ask.
Pure: no I/O; the container service persists what this returns.
"""

from __future__ import annotations

import time

from berth.errors import Conflict
from berth.units import human_duration

ZERO_TIME = "0001-01-01T00:00:00Z"

CREATED = "created"
RUNNING = "running"
PAUSED = "paused"
RESTARTING = "restarting"
REMOVING = "removing"
EXITED = "exited"
DEAD = "dead"

STATUSES = (CREATED, RUNNING, PAUSED, RESTARTING, REMOVING, EXITED, DEAD)


class StateConflict(Conflict):
    pass


def now_rfc3339() -> str:
    """Go's RFC3339Nano in UTC, as Docker writes StartedAt/FinishedAt."""
    ns = time.time_ns()
    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + \
        (f".{frac}" if frac else "") + "Z"


def new_state() -> dict:
    return {"Status": CREATED, "Running": False, "Paused": False, "Restarting": False,
            "OOMKilled": False, "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "",
            "StartedAt": ZERO_TIME, "FinishedAt": ZERO_TIME}


def can_start(s: dict) -> bool:
    return s["Status"] in (CREATED, EXITED)


def can_kill(s: dict) -> bool:
    return s["Status"] in (RUNNING, PAUSED, RESTARTING)


def can_delete(s: dict, force: bool = False) -> bool:
    if s["Status"] == REMOVING:
        return False
    return force or s["Status"] in (CREATED, EXITED, DEAD)


def is_running(s: dict | str) -> bool:
    """Running in Docker's sense: paused and restarting containers count too."""
    status = s if isinstance(s, str) else s["Status"]
    return status in (RUNNING, PAUSED, RESTARTING)


_ALLOWED = {
    "start": (CREATED, EXITED, RESTARTING),
    "exit": (RUNNING, PAUSED, RESTARTING, CREATED),
    "restarting": (RUNNING, PAUSED),
    "pause": (RUNNING,),
    "unpause": (PAUSED,),
    "remove": (CREATED, EXITED, DEAD, RUNNING, PAUSED, RESTARTING),
    "removed-failed": (REMOVING,),
    "dead": STATUSES,
    "start-failed": (CREATED, EXITED, RESTARTING),
}


def transition(s: dict, event: str, cid: str = "", **facts) -> dict:
    """The state after ``event``; ``s`` is not changed. Facts: pid, exit_code, oom_killed,
    error, started_at, finished_at."""
    allowed = _ALLOWED.get(event)
    if allowed is None:
        raise ValueError(f"unknown container event {event!r}")
    status = s["Status"]
    if status not in allowed:
        raise StateConflict(_conflict_message(event, status, cid))
    n = dict(s)
    if event == "start":
        n.update(Status=RUNNING, Running=True, Paused=False, Restarting=False, OOMKilled=False,
                 Dead=False, Pid=facts.get("pid", 0), ExitCode=0, Error="",
                 StartedAt=facts.get("started_at") or now_rfc3339())
        if status != RESTARTING:
            n["FinishedAt"] = ZERO_TIME if status == CREATED else s["FinishedAt"]
    elif event == "exit":
        n.update(Status=EXITED, Running=False, Paused=False, Restarting=False, Pid=0,
                 ExitCode=facts.get("exit_code", 0),
                 OOMKilled=bool(facts.get("oom_killed")), Error=facts.get("error", ""),
                 FinishedAt=facts.get("finished_at") or now_rfc3339())
        if facts.get("started_at"):
            # the shim's clock for both ends: a quick exit never finishes before it started
            n["StartedAt"] = facts["started_at"]
    elif event == "restarting":
        n.update(Status=RESTARTING, Running=True, Paused=False, Restarting=True, Pid=0,
                 ExitCode=facts.get("exit_code", 0),
                 OOMKilled=bool(facts.get("oom_killed")),
                 FinishedAt=facts.get("finished_at") or now_rfc3339())
    elif event == "pause":
        n.update(Status=PAUSED, Paused=True)
    elif event == "unpause":
        n.update(Status=RUNNING, Paused=False)
    elif event == "remove":
        n.update(Status=REMOVING)
    elif event == "removed-failed":
        n.update(Status=DEAD, Dead=True, Running=False, Pid=0, Error=facts.get("error", ""))
    elif event == "dead":
        n.update(Status=DEAD, Dead=True, Running=False, Paused=False, Restarting=False, Pid=0,
                 Error=facts.get("error", ""))
    elif event == "start-failed":
        code = facts.get("exit_code", 128)
        if code == 128 and s.get("ExitCode"):
            code = s["ExitCode"]  # dockerd sets its "unknown" 128 only over a zero
        n.update(Error=facts.get("error", ""), ExitCode=code, Running=False, Pid=0)
        if status == CREATED:
            n["Status"] = CREATED
        else:
            n["Status"] = EXITED
    return n


def _conflict_message(event: str, status: str, cid: str) -> str:
    if event == "pause":
        if status == PAUSED:
            return f"container {cid} is already paused"
        return f"container {cid} is not running"
    if event == "unpause":
        return f"container {cid} is not paused"
    if event == "remove":
        return f"removal of container {cid} is already in progress"
    if event == "start":
        if status == PAUSED:
            return ("cannot start a paused container, try unpause instead")
        if status == REMOVING:
            return "container is marked for removal and cannot be started"
        if status == DEAD:
            return "container is marked for removal and cannot be started"
        return f"container {cid} is already running"
    return f"container {cid} is {status}: cannot {event}"


def status_text(s: dict, restart_count: int = 0) -> str:
    """``docker ps``'s STATUS column: "Up 5 seconds", "Exited (0) 2 minutes ago", ..."""
    st = s["Status"]
    if st in (RUNNING, PAUSED):
        txt = "Up " + human_duration(time.time() - parse_rfc3339(s["StartedAt"]))
        if st == PAUSED:
            return txt + " (Paused)"
        health = (s.get("Health") or {}).get("Status")
        if health == "starting":
            return txt + " (health: starting)"
        if health in ("healthy", "unhealthy"):
            return f"{txt} ({health})"
        return txt
    if st == RESTARTING:
        return (f"Restarting ({s['ExitCode']}) "
                f"{human_duration(time.time() - parse_rfc3339(s['FinishedAt']))} ago")
    if st == REMOVING:
        return "Removal In Progress"
    if st == DEAD:
        return "Dead"
    if st == CREATED:
        return "Created"
    if s["FinishedAt"] == ZERO_TIME:
        return ""
    return (f"Exited ({s['ExitCode']}) "
            f"{human_duration(time.time() - parse_rfc3339(s['FinishedAt']))} ago")


def parse_rfc3339(text: str) -> float:
    if not text or text.startswith("0001-"):
        return 0.0
    base, _, frac = text.rstrip("Z").partition(".")
    import calendar

    t = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return t + (float("0." + frac) if frac else 0.0)
