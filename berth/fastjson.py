"""JSON for hot paths (CLI, shim, runtime init) without importing the stdlib ``json`` package.

``import json`` pulls in ``re`` (and with it ``enum``), which costs several milliseconds of
start-up on every process; the C accelerator ``_json`` that ``json`` itself uses needs neither.
This module drives ``_json`` directly and is exact where it matters: it accepts what
``json.loads`` accepts for objects, arrays, strings, numbers, true/false/null, and produces the
same text as ``json.dumps`` with compact separators. Long-running processes (berthd) may use the
stdlib ``json`` freely.
"""

import _json

__all__ = ["JSONDecodeError", "dumps", "loads"]

_WS = " \t\n\r"


class JSONDecodeError(ValueError):
    """Raised for text that is not a single JSON value."""


class _DecodeContext:
    # The attributes _json.make_scanner reads from json.JSONDecoder.
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict = {}

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}[name]


_scan = _json.make_scanner(_DecodeContext())


def loads(text: str | bytes) -> object:
    """Parse one JSON value; anything but whitespace around it is an error."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8-sig") if text[:3] == b"\xef\xbb\xbf" else text.decode()
    n = len(text)
    i = 0
    while i < n and text[i] in _WS:
        i += 1
    try:
        value, end = _scan(text, i)
    except StopIteration as e:
        raise JSONDecodeError(f"expecting a value at offset {e.value}") from None
    except (ValueError, SystemError):
        # _json reports errors through json.decoder.JSONDecodeError, looked up in sys.modules
        # only: without the json package loaded it raises SystemError. An error path may be
        # slow, so let the stdlib parse again for its exact message.
        raise JSONDecodeError(_stdlib_error(text)) from None
    while end < n and text[end] in _WS:
        end += 1
    if end != n:
        raise JSONDecodeError(f"extra data at offset {end}")
    return value


def _stdlib_error(text: str) -> str:
    import json

    try:
        json.loads(text)
    except ValueError as e:
        return str(e)
    return "invalid JSON"


def _no_default(o: object) -> object:
    raise TypeError(f"object of type {type(o).__name__} is not JSON serializable")


def _encoder(sort_keys: bool):
    # The C encoder has no indent support (json.dumps falls back to Python for indent).
    return _json.make_encoder(
        {},  # markers: detect cycles
        _no_default,
        _json.encode_basestring_ascii,
        None,  # indent
        ":",
        ",",
        sort_keys,
        False,  # skipkeys
        True,  # allow_nan
    )


def dumps(obj: object, *, sort_keys: bool = False) -> str:
    """Compact JSON text (``separators=(",", ":")``), ASCII-escaped as ``json.dumps`` does."""
    # A fresh encoder per call: its cycle markers would outlive a failed call otherwise.
    return "".join(_encoder(sort_keys)(obj, 0))
