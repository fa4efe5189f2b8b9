"""Helpers every command module uses: flag parsing with docker's messages, printing."""

from __future__ import annotations

from .flags import Flag, UsageError, parse, usage_text


class Spec:
    """A command's usage line, description, flags and how many arguments it takes."""

    def __init__(self, usage: str, description: str, flags: list[Flag] | None = None,
                 min_args: int = 0, max_args: int | None = None,
                 interspersed: bool = True) -> None:
        self.usage = usage
        self.description = description
        self.flags = flags or []
        self.min_args = min_args
        self.max_args = max_args
        self.interspersed = interspersed

    def usage_line(self, ctx) -> str:
        """The usage line with the command path the user typed (``image ls`` or
        ``images``), as cobra's UseLine."""
        words = self.usage.split()
        i = 1
        while i < len(words) and words[i].isalpha() and words[i].islower():
            i += 1
        path = getattr(ctx, "cmdline", "") or " ".join(words[1:i])
        return " ".join(["berth", path, *words[i:]])

    def parse(self, ctx, argv: list[str]):
        """→ (opts, args), or None when ``--help`` was printed."""
        try:
            opts, args = parse(self.flags, argv, self.interspersed)
        except UsageError as e:
            e.usage = self.usage_line(ctx)
            raise
        if opts.pop("help"):
            ctx.out.write(usage_text(self.usage_line(ctx), self.flags, self.description))
            return None
        n = len(args)
        bad = hint = None

        def plural(k: int) -> str:
            return f"{k} argument{'s' if k != 1 else ''}"

        # the docker CLI 28's words (cli/required.go), "See" or "Run" as it prints them
        if self.max_args is not None and self.min_args == self.max_args and n != self.min_args:
            bad, hint = f"requires {plural(self.min_args)}", "Run"
            if self.min_args == 0:
                bad = "accepts no arguments"
        elif n < self.min_args:
            bad, hint = f"requires at least {plural(self.min_args)}", "See"
        elif self.max_args is not None and n > self.max_args:
            bad, hint = f"requires at most {plural(self.max_args)}", "Run"
        if bad:
            line = self.usage_line(ctx)
            path = line.split(" [", 1)[0] if " [" in line else line
            path = " ".join(w for w in path.split() if w.isalpha() and w.islower())
            raise UsageError(f"berth: '{path}' {bad}", status=1, usage=line, hint=hint)
        return opts, args


def stream_json(ctx, resp, quiet: bool = False) -> int:
    """Print a JSON-lines progress stream as docker does; an in-band error exits 1."""
    from berth import fastjson

    status = 0
    for line in resp.lines():
        try:
            msg = fastjson.loads(line)
        except ValueError:
            continue
        if "errorDetail" in msg or "error" in msg:
            err = msg.get("errorDetail", {}).get("message") or msg.get("error")
            ctx.err.write(f"{err}\n")
            status = 1
            continue
        if quiet:
            continue
        if "stream" in msg:
            ctx.out.write(msg["stream"])
        elif "status" in msg:
            ident = msg.get("id")
            ctx.out.write((f"{ident}: " if ident else "") + msg["status"] + "\n")
        ctx.out.flush()
    return status



# ----------------------------------------------------------------- inspect and prune, shared

def go_html_safe(text: str) -> str:
    """``<``, ``>`` and ``&`` as Go's JSON encoder writes them (only ever inside strings)."""
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def dump_json(obj) -> str:
    """docker's inspect output without --format: indented four spaces, HTML-safe."""
    import json

    return go_html_safe(json.dumps(obj, indent=4, ensure_ascii=False))


def inspect_each(ctx, names: list[str], get, not_found: str | None = None) -> tuple[list, int]:
    """``get(name)`` for each name → (what was found, exit status); each failure is printed as
    docker prints it (``not_found`` with ``{}`` for the name, for a 404, when given)."""
    from .client import APIError

    found, status = [], 0
    for n in names:
        try:
            found.append(get(n))
        except APIError as e:
            if not_found is not None and e.status == 404:
                ctx.err.write(not_found.format(n) + "\n")
            else:
                ctx.err.write(f"Error response from daemon: {e.message}\n")
            status = 1
    return found, status


def print_inspected(ctx, fmt: str, found: list) -> None:
    """The objects through ``--format``, or as docker's indented JSON."""
    if fmt:
        from .format import render

        ctx.out.write(render(fmt, found, {}))
    else:
        ctx.out.write(dump_json(found) + "\n")


def confirm(ctx, warning: str) -> bool:
    """docker's prune prompt: only y or yes goes on."""
    ctx.out.write(warning + "\nAre you sure you want to continue? [y/N] ")
    ctx.out.flush()
    import sys

    return sys.stdin.readline().strip().lower() in ("y", "yes")


def prune_call(ctx, path: str, filters: dict) -> dict:
    """POST a prune with its filters (none sent when there are none)."""
    from berth import fastjson

    return ctx.client.call("POST", path, {"filters": fastjson.dumps(filters)} if filters
                           else None)


def prune_report(ctx, what: str, deleted: list | None, space: int) -> int:
    """docker's prune output: the removed, then the space they took."""
    from .format import human_size

    if deleted:
        ctx.out.write(f"Deleted {what}:\n" + "".join(d + "\n" for d in deleted) + "\n")
    ctx.out.write(f"Total reclaimed space: {human_size(space, 4)}\n")
    return 0
