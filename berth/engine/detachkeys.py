"""Docker's detach-keys syntax: ``ctrl-p,ctrl-q`` → the bytes that end an attach."""

from __future__ import annotations

from berth.errors import InvalidArgument

DEFAULT = "ctrl-p,ctrl-q"


def parse_detach_keys(text: str | None) -> bytes:
    """``ctrl-<a..z @ [ \\ ] ^ _>`` or single characters, comma separated."""
    text = text if text else DEFAULT
    out = bytearray()
    for key in text.split(","):
        k = key.strip()
        low = k.lower()
        if len(k) == 1:
            out.append(ord(k))
        elif low.startswith("ctrl-") and len(k) == 6:
            ch = low[5]
            if "a" <= ch <= "z":
                out.append(ord(ch) - ord("a") + 1)
            elif ch in "@[\\]^_":
                out.append({"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}[ch])
            else:
                raise InvalidArgument(f"Invalid detach keys ({text}) provided")
        else:
            raise InvalidArgument(f"Invalid detach keys ({text}) provided")
    return bytes(out)
