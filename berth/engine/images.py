"""Image operations (placeholder until the image store lands)."""

from __future__ import annotations


class ImageService:
    def __init__(self, root: str, events) -> None:
        self.root = root
        self.events = events

    def count(self) -> int:
        return 0

    def list(self, **kw) -> list[dict]:
        return []

    def close(self) -> None:
        pass
