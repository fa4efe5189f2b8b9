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

    def parse(self, ctx, argv: list[str]):
        """→ (opts, args), or None when ``--help`` was printed."""
        opts, args = parse(self.flags, argv, self.interspersed)
        if opts.pop("help"):
            ctx.out.write(usage_text(self.usage, self.flags, self.description))
            return None
        name = " ".join(self.usage.split()[:2])
        n = len(args)
        bad = None
        if self.max_args is not None and self.min_args == self.max_args and n != self.min_args:
            bad = (f'"{name}" requires exactly {self.min_args} argument'
                   f'{"s" if self.min_args != 1 else ""}.')
            if self.min_args == 0:
                bad = f'"{name}" accepts no arguments.'
        elif n < self.min_args:
            bad = (f'"{name}" requires at least {self.min_args} argument'
                   f'{"s" if self.min_args != 1 else ""}.')
        elif self.max_args is not None and n > self.max_args:
            bad = (f'"{name}" requires at most {self.max_args} argument'
                   f'{"s" if self.max_args != 1 else ""}.')
        if bad:
            raise UsageError(f"{bad}\nSee '{name} --help'.\n\nUsage:  {self.usage}\n\n"
                             f"{self.description}", status=1)
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

