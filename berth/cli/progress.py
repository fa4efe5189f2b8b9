"""Drawing docker's JSON progress stream: live per-layer bars on a terminal, plain lines
otherwise.

On a terminal each message with an ``id`` owns one line, in order of first appearance; a new
message for that id redraws its line in place (cursor up, clear, write, cursor down), as the
docker CLI does. A progress message is drawn as ``id: Downloading [====>   ] 12.3MB/45.6MB
8.1MB/s 4s`` with the speed and the time left computed here from the byte counts. Off a
terminal, progress messages are dropped and every status change is one line
(``id: Pull complete``), which is what logs and pipes want.

Imports nothing heavy: the CLI is a hot path.
"""

from __future__ import annotations

import time

from berth import fastjson
from berth.distribution.jsonmessage import human_size as _size  # imports nothing


def _eta(seconds: float) -> str:
    s = int(seconds + 0.5)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class Renderer:
    """Feeds on messages; writes to ``out``. ``close`` ends the drawing."""

    def __init__(self, out, tty: bool, width: int = 80) -> None:
        self.out = out
        self.tty = tty
        # a pty that reports no size (0 columns) gets docker's default of 80
        self.width = width if width > 0 else 80
        self.lines: list[str] = []           # ids in order of their line
        self.seen: dict[str, float] = {}     # id+status → time of first byte count
        self.first: dict[str, int] = {}      # id+status → first byte count seen
        self.last_status: dict[str, str] = {}
        self.errors: list[str] = []
        self.aux: list[dict] = []

    def _progress_text(self, ident: str, msg: dict) -> str:
        detail = msg.get("progressDetail") or {}
        cur, total = detail.get("current"), detail.get("total")
        text = f"{ident}: {msg.get('status', '')}"
        if cur is None:
            return text
        now = time.monotonic()
        # per phase: Extracting's counts start again from 0 after Downloading's
        key = f"{ident}\0{msg.get('status', '')}"
        if key not in self.seen:
            self.seen[key], self.first[key] = now, cur
        elapsed = now - self.seen[key]
        speed = (cur - self.first[key]) / elapsed if elapsed > 0.05 else 0.0
        if total:
            width = max(10, min(40, self.width - len(text) - 40))
            filled = min(width, int(width * cur / total))
            bar = "=" * filled + (">" if filled < width else "") + " " * max(
                0, width - filled - 1)
            text += f" [{bar}] {_size(cur)}/{_size(total)}"
        else:
            text += f" {_size(cur)}"
        if speed > 0:
            text += f" {_size(speed)}/s"
            if total and cur < total:
                text += f" {_eta((total - cur) / speed)}"
        return text

    def feed(self, msg: dict) -> None:
        if "errorDetail" in msg or "error" in msg:
            err = (msg.get("errorDetail") or {}).get("message") or msg.get("error")
            self.errors.append(err)
            return
        if "aux" in msg:
            self.aux.append(msg["aux"])
            return
        ident = msg.get("id")
        status = msg.get("status")
        if status is None:
            return
        if ident is None:
            self.out.write(status + "\n")
            self.out.flush()
            return
        has_bytes = (msg.get("progressDetail") or {}).get("current") is not None
        if not self.tty:
            if has_bytes or self.last_status.get(ident) == status:
                return
            self.last_status[ident] = status
            self.out.write(f"{ident}: {status}\n")
            self.out.flush()
            return
        text = self._progress_text(ident, msg)[: self.width - 1]
        if ident not in self.lines:
            self.lines.append(ident)
            self.out.write(text + "\n")
        else:
            up = len(self.lines) - self.lines.index(ident)
            self.out.write(f"\x1b[{up}A\r\x1b[2K{text}\r\x1b[{up}B")
        self.out.flush()

    def feed_lines(self, lines) -> None:
        for line in lines:
            try:
                msg = fastjson.loads(line)
            except ValueError:
                continue
            if isinstance(msg, dict):
                self.feed(msg)
