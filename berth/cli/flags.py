"""Docker-style flag parsing without argparse (which costs ~6 ms to import).

A command declares its flags as ``Flag`` objects; ``parse(flags, argv)`` returns the values
and the positional arguments. It accepts what the docker CLI (cobra/pflag) accepts: ``-q``,
``--quiet``, combined short booleans ``-aq``, ``-f VALUE``, ``-fVALUE``, ``-f=VALUE``,
``--format VALUE``, ``--format=VALUE``, booleans as ``--all=false``, repeated list flags, and
``--`` ending the flags. Flags and positionals may interleave, except after the first
positional for commands that pass the rest on (``run IMAGE CMD...``: ``interspersed=False``).
"""

from __future__ import annotations


class CommandError(Exception):
    """A command's own failure: the CLI prints the message (with ``prefix``) and exits with
    ``status``."""

    status = 1
    prefix = ""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(Exception):
    """Bad flags or arguments: the CLI prints it with a hint and exits 125 (or 1)."""

    def __init__(self, message: str, status: int = 125, usage: str = "",
                 hint: str = "Run") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.usage = usage  # the command's usage line, printed below the message
        self.hint = hint  # "Run" or "See" ... --help, as the docker CLI words each error


class Flag:
    __slots__ = ("names", "kind", "default", "help", "dest", "metavar")

    def __init__(self, names: str, kind: str = "bool", default=None, help: str = "",
                 metavar: str = "") -> None:
        # names: "-q,--quiet"; kind: bool | str | int | list
        self.names = [n.strip() for n in names.split(",")]
        self.kind = kind
        if default is None:
            default = {"bool": False, "list": None, "str": "", "int": 0}[kind]
        self.default = default
        self.help = help
        self.metavar = metavar
        long = [n for n in self.names if n.startswith("--")]
        self.dest = (long[0] if long else self.names[0])[1:].lstrip("-").replace("-", "_")


_TRUE = ("1", "t", "T", "true", "TRUE", "True")
_FALSE = ("0", "f", "F", "false", "FALSE", "False")


def _bool(name: str, v: str) -> bool:
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise UsageError(f'invalid argument "{v}" for "{name}" flag: strconv.ParseBool: parsing '
                     f'"{v}": invalid syntax')


def parse(flags: list[Flag], argv: list[str], interspersed: bool = True):
    """→ (values: dict dest → value, positionals: list)."""
    by_name = {}
    for f in flags:
        for n in f.names:
            by_name[n] = f
    values: dict = {f.dest: (list(f.default) if f.kind == "list" and f.default else
                             ([] if f.kind == "list" else f.default)) for f in flags}
    values["help"] = False
    pos: list[str] = []
    i = 0

    def store(f: Flag, name: str, v: str) -> None:
        if f.kind == "bool":
            values[f.dest] = _bool(name, v)
        elif f.kind == "int":
            try:
                values[f.dest] = int(v)
            except ValueError:
                raise UsageError(f'invalid argument "{v}" for "{name}" flag: strconv.ParseInt: '
                                 f'parsing "{v}": invalid syntax') from None
        elif f.kind == "list":
            values[f.dest].append(v)
        else:
            values[f.dest] = v

    while i < len(argv):
        a = argv[i]
        i += 1
        if a == "--":
            pos.extend(argv[i:])
            break
        if a.startswith("--") and len(a) > 2:
            name, eq, v = a.partition("=")
            if name == "--help":
                values["help"] = True
                continue
            f = by_name.get(name)
            if f is None:
                raise UsageError(f"unknown flag: {name}")
            if f.kind == "bool":
                values[f.dest] = _bool(name, v) if eq else True
            else:
                if not eq:
                    if i >= len(argv):
                        raise UsageError(f"flag needs an argument: {name}")
                    v = argv[i]
                    i += 1
                store(f, name, v)
            continue
        if a.startswith("-") and len(a) > 1:
            j = 1
            while j < len(a):
                name = "-" + a[j]
                if name == "-h":
                    values["help"] = True
                    j += 1
                    continue
                f = by_name.get(name)
                if f is None:
                    raise UsageError(f"unknown shorthand flag: '{a[j]}' in {a}")
                if f.kind == "bool":
                    if j + 1 < len(a) and a[j + 1] == "=":
                        values[f.dest] = _bool(name, a[j + 2:])
                        break
                    values[f.dest] = True
                    j += 1
                    continue
                rest = a[j + 1:]
                if rest.startswith("="):
                    rest = rest[1:]
                if not rest:
                    if i >= len(argv):
                        raise UsageError(f"flag needs an argument: '{a[j]}' in {a}")
                    rest = argv[i]
                    i += 1
                store(f, name, rest)
                break
            continue
        pos.append(a)
        if not interspersed:
            pos.extend(argv[i:])
            break
    return values, pos


def usage_text(usage: str, flags: list[Flag], description: str = "") -> str:
    lines = [f"\nUsage:  {usage}\n"]
    if description:
        lines.append(description + "\n")
    if flags:
        lines.append("Options:")
        rows = []
        for f in flags:
            short = [n for n in f.names if not n.startswith("--")]
            long = [n for n in f.names if n.startswith("--")]
            left = (short[0] + ", " if short else "    ") + (long[0] if long else "")
            if f.kind != "bool":
                left += " " + (f.metavar or f.kind)
            rows.append((left, f.help))
        w = max(len(r[0]) for r in rows)
        lines += [f"  {a.ljust(w)}   {b}".rstrip() for a, b in rows]
    return "\n".join(lines) + "\n"
