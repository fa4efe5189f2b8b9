"""Output formats every command shares: ``--format`` templates, docker's tables, sizes, ages.

The template engine (Go's text/template subset, with Go's errors) lives in
``berth.cli.gotemplate``; ``render`` runs it over a command's rows, with the ``table`` prefix
giving a header row through ``tabwrite`` (docker's tabwriter settings: minwidth 10, padding
3). ``json`` marshals as Go does (sorted keys, ``<>&`` escaped). Imports nothing heavy: the
CLI's hot path loads it for every listing.
"""

from __future__ import annotations

from berth.units import human_duration  # noqa: F401  (the tables' durations)

from .gotemplate import NO_VALUE, Template, TemplateError, go_json, go_str  # noqa: F401

# ---------------------------------------------------------------------- human-readable values

# time.Time{}.Unix(): the Created dockerd reports for an image (or a history step) with no time
ZERO_UNIX = -62135596800


def go_time(ts: int) -> str:
    """Go's ``time.Unix(ts, 0).String()`` in UTC (``0001-01-01 00:00:00 +0000 UTC`` for the
    zero time: the year keeps its four digits, which strftime's %Y does not)."""
    import time

    t = time.gmtime(ts)
    return f"{t.tm_year:04d}-" + time.strftime("%m-%d %H:%M:%S +0000 UTC", t)


def go_rfc3339(ts: int) -> str:
    """Go's ``time.Unix(ts, 0).Format(time.RFC3339)`` in UTC."""
    import time

    t = time.gmtime(ts)
    return f"{t.tm_year:04d}-" + time.strftime("%m-%dT%H:%M:%SZ", t)


_DECIMAL = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]


def human_size(size: float, precision: int = 3) -> str:
    """go-units HumanSizeWithPrecision: decimal units, ``precision`` significant digits."""
    i = 0
    size = float(size)
    while size >= 1000.0 and i < len(_DECIMAL) - 1:
        size /= 1000.0
        i += 1
    return f"{size:.{precision}g}{_DECIMAL[i]}"


_BINARY = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]


def bytes_size(size: float) -> str:
    """go-units BytesSize: binary units, 4 significant digits (``docker info``'s memory)."""
    i = 0
    size = float(size)
    while size >= 1024.0 and i < len(_BINARY) - 1:
        size /= 1024.0
        i += 1
    return f"{size:.4g}{_BINARY[i]}"


# ----------------------------------------------------------------------------------- tables

def tabwrite(rows: list[str], minwidth: int = 10, padding: int = 3) -> str:
    """Go's tabwriter as docker configures it: cells end at tabs, columns padded to align."""
    split = [r.split("\t") for r in rows]
    widths: list[int] = []
    for cells in split:
        for i, c in enumerate(cells[:-1]):
            w = max(len(c) + padding, minwidth)
            if i >= len(widths):
                widths.append(w)
            elif w > widths[i]:
                widths[i] = w
    out = []
    for cells in split:
        line = "".join(c.ljust(widths[i]) for i, c in enumerate(cells[:-1])) + cells[-1]
        out.append(line)
    return "\n".join(out) + ("\n" if out else "")


def preformat(fmt: str) -> tuple[bool, str]:
    """docker's preFormat: strip ``table``, trim spaces, turn ``\\t`` and ``\\n`` into real ones."""
    table = fmt.startswith("table")
    if table:
        fmt = fmt[len("table"):]
    fmt = fmt.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    return table, fmt


def render(fmt: str, rows: list[dict], headers: dict[str, str], context: str = "",
           missing: str = "default") -> str:
    """Render ``rows`` with a ``--format`` value (or a ``table ...`` format). ``context``:
    the Go type docker formats these rows as (an unknown field is then an error, as there);
    ``missing="error"``: a missing map key is an error (``inspect``)."""
    table, body = preformat(fmt)
    tmpl = Template(body, missing=missing, context=context)
    lines = [tmpl.render(r) for r in rows]
    if not table:
        return "".join(line + "\n" for line in lines)
    # the header row is the template over the column titles: a field without one is blank
    head = Template(body).render(dict(headers))
    if "<no value>" in head:
        head = head.replace("<no value>", "")
    text = "\n".join(([head] if head.strip() or rows else []) + lines)
    return tabwrite(text.split("\n")) if text else ""
