"""The state directory of each container, and its status.

Layout under the state root (``--root``, default /run/berth-runtime):

    <root>/<id>/state.json   written atomically, first with status "creating" and the cgroup
                             paths (before anything else exists), then with the init's pid
    <root>/<id>/exec.fifo    present between create and start: the init blocks opening it

Status is never stored; it is derived each time, as runc does, from the init's pid and start
time (so a reused pid is not mistaken for the container), the fifo, and the freezer:

    creating ──▶ created ──start──▶ running ◀──pause/resume──▶ paused
        │            │                 │
        └────────────┴──(init exits)───┴──▶ stopped ──delete──▶ (gone)

state.json is written without fsync: like /run on tmpfs, it describes live processes and means
nothing after a reboot.
"""

import os

from berth import atomic, fastjson
from berth.runtime.errors import InvalidArgument, NoSuchContainer

DEFAULT_ROOT = "/run/berth-runtime"


def check_id(cid: str) -> None:
    ok = cid and len(cid) <= 1024 and cid not in (".", "..") and all(
        c.isalnum() or c in "_+-." for c in cid) and cid.isascii()
    if not ok:
        raise InvalidArgument(f"invalid container id {cid!r}: use letters, digits and _+-.")


def dir_of(root: str, cid: str) -> str:
    check_id(cid)
    return os.path.join(root, cid)


def save(root: str, cid: str, st: dict) -> None:
    atomic.write_text(os.path.join(root, cid, "state.json"), fastjson.dumps(st), 0o600,
                      sync=False)


def load(root: str, cid: str) -> dict:
    d = dir_of(root, cid)
    try:
        with open(os.path.join(d, "state.json"), "rb") as f:
            return fastjson.loads(f.read())
    except FileNotFoundError:
        if os.path.isdir(d):
            return {"id": cid, "partial": True}
        raise NoSuchContainer(f"container {cid} does not exist") from None
    except (ValueError, UnicodeDecodeError):
        return {"id": cid, "partial": True}


def list_ids(root: str) -> list[str]:
    try:
        return sorted(x for x in os.listdir(root) if not x.startswith("."))
    except FileNotFoundError:
        return []


def proc_start_time(pid: int) -> tuple[int, str] | None:
    """(start time in clock ticks, state letter) of ``pid``, or None if there is no such pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(b")") + 2:].split()
    return int(rest[19]), rest[0].decode()


def alive(st: dict) -> bool:
    pid = st.get("pid")
    if not pid:
        return False
    t = proc_start_time(pid)
    return t is not None and t[1] not in ("Z", "X") and t[0] == st.get("start_time")


def status(root: str, st: dict, cgroup=None) -> str:
    if st.get("partial"):
        return "stopped"
    if not st.get("pid"):
        creator = st.get("creator")
        t = proc_start_time(creator) if creator else None
        return "creating" if t and t[0] == st.get("creator_start") else "stopped"
    if not alive(st):
        return "stopped"
    if os.path.exists(os.path.join(root, st["id"], "exec.fifo")):
        return "created"
    if cgroup is not None and cgroup.frozen():
        return "paused"
    return "running"
