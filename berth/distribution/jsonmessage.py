"""Docker's JSON progress messages (the ``jsonmessage`` stream) for pull and push.

``POST /images/create`` and ``POST /images/{name}/push`` answer a stream of JSON objects, one
per line, that the docker CLI draws as per-layer bars. The shapes, as dockerd sends them:

    {"status": "Pulling from library/busybox", "id": "latest"}
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "a7c516fe33c2"}
    {"status": "Downloading", "progressDetail": {"current": 1, "total": 2},
     "progress": "[=====>     ]  1MB/2MB", "id": "a7c516fe33c2"}
    {"status": "Download complete", "progressDetail": {}, "id": "a7c516fe33c2"}
    {"status": "Digest: sha256:..."}
    {"errorDetail": {"message": "..."}, "error": "..."}
    {"progressDetail": {}, "aux": {"Tag": "1", "Digest": "sha256:...", "Size": 527}}

Layer ids are the first 12 hex digits of a digest, as docker shows them. This module builds the
objects; encoding them is the caller's (berthd writes them as lines).
"""

__all__ = ["aux", "bar", "error", "human_size", "short_id", "status"]

_UNITS = ("B", "kB", "MB", "GB", "TB")


def short_id(digest: str) -> str:
    return digest.partition(":")[2][:12] or digest[:12]


def human_size(n: float) -> str:
    """Sizes as docker prints them (decimal units, 3 significant digits): ``1.07MB``."""
    i = 0
    while n >= 1000 and i < len(_UNITS) - 1:
        n /= 1000
        i += 1
    if i == 0:
        return f"{int(n)}{_UNITS[0]}"
    return f"{n:.3g}{_UNITS[i]}"


def bar(current: int, total: int, width: int = 50) -> str:
    """docker's progress text: ``[=====>      ]  1.2MB/3.4MB``."""
    if total <= 0:
        return f"{human_size(current):>8}"
    filled = min(width, int(width * current / total))
    arrow = ">" if filled < width else ""
    pad = " " * max(width - filled - len(arrow), 0)
    return f"[{'=' * filled}{arrow}{pad}] {human_size(current):>8}/{human_size(total)}"


def status(text: str, id: str | None = None, current: int | None = None,
           total: int | None = None) -> dict:
    m: dict = {"status": text}
    if id is not None:
        m["progressDetail"] = {}
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
