"""Docker's JSON progress messages (the ``jsonmessage`` stream) for pull and push.

``POST /images/create`` and ``POST /images/{name}/push`` answer a stream of JSON objects, one
per line, that the docker CLI draws as per-layer bars. The shapes, as dockerd sends them:

    {"status": "Pulling from library/busybox", "id": "latest"}
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "a7c516fe33c2"}
    {"status": "Downloading", "progressDetail": {"current": 32768, "total": 200282},
     "progress": "[========>     ]  32.77kB/200.3kB", "id": "a7c516fe33c2"}
    {"status": "Download complete", "progressDetail": {}, "id": "a7c516fe33c2"}
    {"status": "Digest: sha256:..."}
    {"errorDetail": {"message": "..."}, "error": "..."}
    {"progressDetail": {}, "aux": {"Tag": "1", "Digest": "sha256:...", "Size": 527}}

Two kinds, as dockerd's progress package has them: a *message* (``Pulling from``, ``Digest:``,
``Status:``, ``The push refers to``) has no ``progressDetail``; a layer's *update*
(``Pulling fs layer``, ``Downloading``, ``Pull complete``, ``Pushed``) always has one. Layer
ids are the first 12 hex digits of a digest, as docker shows them. This module builds the
objects; encoding them is the caller's (berthd writes them as lines).
"""

__all__ = ["aux", "bar", "error", "human_size", "message", "short_id", "status"]

_UNITS = ("B", "kB", "MB", "GB", "TB")


def short_id(digest: str) -> str:
    return digest.partition(":")[2][:12] or digest[:12]


def human_size(n: float) -> str:
    """Sizes as docker prints them (go-units' HumanSize: decimal units, 4 significant
    digits): ``200.3kB``, ``3.001MB``, ``512B``."""
    i = 0
    while n >= 1000 and i < len(_UNITS) - 1:
        n /= 1000
        i += 1
    return f"{n:.4g}{_UNITS[i]}"


def bar(current: int, total: int) -> str:
    """docker's progress text: ``[=====>      ]  1.2MB/3.4MB``, 50 cells of 2 %; the arrow
    stays at the end of a full bar, as docker draws it."""
    if total <= 0:
        return f"{human_size(current):>8}"
    filled = min(50, int(current / total * 100) // 2)
    counts = f"{human_size(current):>8}" + (f"/{human_size(total)}" if current <= total else "")
    return f"[{'=' * filled}>{' ' * (50 - filled)}] {counts}"


def message(text: str, id: str | None = None) -> dict:
    """A status message (no ``progressDetail``)."""
    m: dict = {"status": text}
    if id is not None:
        m["id"] = id
    return m


def status(text: str, id: str | None = None, current: int | None = None,
           total: int | None = None) -> dict:
    """A layer's update: ``progressDetail`` always, with byte counts when given."""
    m: dict = {"status": text, "progressDetail": {}}
    if id is not None:
        m["id"] = id
    if current is not None:
        detail = {"current": current}
        if total:
            detail["total"] = total
        m["progressDetail"] = detail
        m["progress"] = bar(current, total or 0)
    return m


def error(message: str) -> dict:
    return {"errorDetail": {"message": message}, "error": message}


def aux(obj: dict) -> dict:
    return {"progressDetail": {}, "aux": obj}
