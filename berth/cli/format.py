"""Output formats every command shares: Go-template ``--format``, docker's tables, sizes, ages.

The template engine is the subset of Go's text/template that docker's users write:

    {{.Field}}  {{.A.B}}  {{.}}  {{json .}}  {{.A}}:{{.B}}  {{join .Names ", "}}
    {{index .Labels "k"}}  {{range .X}}...{{else}}...{{end}}  {{if .X}}...{{else}}...{{end}}
    {{with .X}}...{{end}}  {{lower .X}} {{upper}} {{title}} {{split .X ","}} {{truncate .X 5}}
    {{pad .X 1 1}}  {{len .X}}  {{printf "%s" .X}}  {{println .X}}  eq ne lt le gt ge not and or
    pipelines ({{.X | json}}), {{- and -}} trimming, "table" prefix with a header row

Values are dicts (a command builds one per row, with docker's field names); a missing key prints
``<no value>`` as Go does for a map. ``json`` marshals as Go does (sorted keys, ``<>&``
escaped). Tables go through ``tabwrite`` with docker's tabwriter settings (minwidth 10,
padding 3). Imports nothing heavy: the CLI's hot path loads it for every listing.
"""

from __future__ import annotations

from berth import fastjson


class TemplateError(Exception):
    pass


# ---------------------------------------------------------------------- human-readable values

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


def human_duration(seconds: float) -> str:
    """go-units HumanDuration."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def go_json(v: object) -> str:
    """encoding/json's Marshal: sorted map keys and HTML-safe escapes."""
    text = fastjson.dumps(v, sort_keys=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def go_str(v: object) -> str:
    """fmt's %v for the values commands produce."""
    if v is None:
        return "<nil>"
    if v is _NO_VALUE:
        return "<no value>"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, float) and v == int(v) and abs(v) < 1e21:
        return str(int(v))
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(go_str(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{go_str(v[k])}" for k in sorted(v)) + "]"
    return str(v)


# ---------------------------------------------------------------------------- the template

class _NoValue:
    def __repr__(self) -> str:
        return "<no value>"


_NO_VALUE = _NoValue()


def _truthy(v: object) -> bool:
    if v is _NO_VALUE or v is None:
        return False
    if isinstance(v, (str, list, tuple, dict)):
        return len(v) > 0
    return bool(v)


def _tokenize(src: str) -> list[tuple[str, str]]:
    """→ [("text", s) | ("action", inner)], with {{- and -}} trimming applied."""
    out: list[tuple[str, str]] = []
    i = 0
    while True:
        j = src.find("{{", i)
        if j < 0:
            out.append(("text", src[i:]))
            return out
        text = src[i:j]
        k = src.find("}}", j + 2)
        if k < 0:
            raise TemplateError(f"template: unclosed action at offset {j}")
        inner = src[j + 2:k]
        if inner.startswith("- ") or inner == "-":
            text = text.rstrip(" \t\r\n")
            inner = inner[1:]
        trim_right = inner.endswith(" -")
        if trim_right:
            inner = inner[:-1]
        out.append(("text", text))
        # Go comments: {{/* ... */}}
        if not inner.strip().startswith("/*"):
            out.append(("action", inner.strip()))
        i = k + 2
        if trim_right:
            while i < len(src) and src[i] in " \t\r\n":
                i += 1


def _lex_args(s: str) -> list:
    """Split a pipeline into tokens: strings, numbers, fields, identifiers, |, ( )."""
    toks: list = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c in " \t\n":
            i += 1
        elif c in "|()":
            toks.append(("op", c))
            i += 1
        elif c == '"':
            j = i + 1
            buf = []
            while j < n and s[j] != '"':
                if s[j] == "\\" and j + 1 < n:
                    esc = s[j + 1]
                    buf.append({"n": "\n", "t": "\t", "\\": "\\", '"': '"'}.get(esc, esc))
                    j += 2
                else:
                    buf.append(s[j])
                    j += 1
            if j >= n:
                raise TemplateError("template: unterminated quoted string")
            toks.append(("str", "".join(buf)))
            i = j + 1
        elif c == "`":
            j = s.find("`", i + 1)
            if j < 0:
                raise TemplateError("template: unterminated raw quoted string")
            toks.append(("str", s[i + 1:j]))
            i = j + 1
        else:
            j = i
            while j < n and s[j] not in " \t\n|()":
                j += 1
            word = s[i:j]
            i = j
            if word.startswith(".") or word.startswith("$"):
                toks.append(("field", word))
            elif word in ("true", "false"):
                toks.append(("lit", word == "true"))
            elif word == "nil":
                toks.append(("lit", None))
            else:
                try:
                    toks.append(("lit", int(word)))
                except ValueError:
                    try:
                        toks.append(("lit", float(word)))
                    except ValueError:
                        toks.append(("ident", word))
    return toks


def _parse_pipeline(toks: list, pos: int = 0, close: bool = False):
    """→ (pipeline: list of commands, pos). A command is a list of operands."""
    cmds: list[list] = [[]]
    while pos < len(toks):
        kind, val = toks[pos]
        if kind == "op" and val == "|":
            cmds.append([])
            pos += 1
        elif kind == "op" and val == "(":
            sub, pos = _parse_pipeline(toks, pos + 1, close=True)
            cmds[-1].append(("pipe", sub))
        elif kind == "op" and val == ")":
            if not close:
                raise TemplateError("template: unexpected )")
            return cmds, pos + 1
        else:
            cmds[-1].append((kind, val))
            pos += 1
    if close:
        raise TemplateError("template: unclosed (")
    if any(not c for c in cmds):
        raise TemplateError("template: missing command in pipeline")
    return cmds, pos


def _parse(tokens: list[tuple[str, str]]):
    """Build a tree: list of nodes; node = ("text", s) | ("pipe", p) | ("if"/"range"/"with",
    pipeline, body, else_body)."""
    pos = 0

    def block(stop: tuple[str, ...]):
        nonlocal pos
        nodes: list = []
        while pos < len(tokens):
            kind, val = tokens[pos]
            if kind == "text":
                if val:
                    nodes.append(("text", val))
                pos += 1
                continue
            word = val.split(None, 1)[0] if val else ""
            if word in stop:
                return nodes, word, val
            pos += 1
            if word in ("if", "range", "with"):
                expr = val[len(word):].strip()
                if not expr:
                    raise TemplateError(f"template: missing value for {word}")
                pipe, _ = _parse_pipeline(_lex_args(expr))
                body, end, _ = block(("else", "end"))
                else_body: list = []
                if end == "else":
                    pos += 1
                    rest = tokens[pos - 1][1][len("else"):].strip()
                    if rest.startswith("if "):
                        # {{else if X}} is sugar for {{else}}{{if X}}...{{end}}{{end}}
                        tokens[pos - 1] = ("action", rest)
                        pos -= 1
                        inner, _, _ = block(("end",))
                        else_body = inner
                    else:
                        else_body, end2, _ = block(("end",))
                        if end2 != "end":
                            raise TemplateError(f"template: unexpected EOF in {word}")
                elif end != "end":
                    raise TemplateError(f"template: unexpected EOF in {word}")
                pos += 1  # the {{end}}
                nodes.append((word, pipe, body, else_body))
            elif word in ("end", "else"):
                raise TemplateError(f"template: unexpected {{{{{word}}}}}")
            else:
                pipe, _ = _parse_pipeline(_lex_args(val))
                nodes.append(("pipe", pipe))
        if stop:
            return nodes, "", ""
        return nodes, "", ""

    nodes, end, _ = block(())
    return nodes


def _field(dot: object, path: str, root: object):
    if path == ".":
        return dot
    if path == "$":
        return root
    cur = root if path.startswith("$") else dot
    parts = path.lstrip("$").split(".")
    for name in parts:
        if not name:
            continue
        if isinstance(cur, dict):
            cur = cur.get(name, _NO_VALUE)
        elif cur is None or cur is _NO_VALUE:
            raise TemplateError(f'template: nil pointer evaluating .{name}')
        else:
            if not hasattr(cur, name):
                raise TemplateError(f"template: can't evaluate field {name}")
            cur = getattr(cur, name)
    return cur


def _printf(fmt: str, *args) -> str:
    out, i, ai = [], 0, 0
    while i < len(fmt):
        c = fmt[i]
        if c == "%" and i + 1 < len(fmt):
            j = i + 1
            while j < len(fmt) and fmt[j] in "-+# 0123456789.":
                j += 1
            verb = fmt[j] if j < len(fmt) else "v"
            spec = fmt[i + 1:j]
            if verb == "%":
                out.append("%")
            else:
                a = args[ai] if ai < len(args) else _NO_VALUE
                ai += 1
                if verb in "dx" and isinstance(a, int):
                    out.append(("%" + spec + verb) % a)
                elif verb == "q":
                    out.append(fastjson.dumps(go_str(a)))
                else:
                    out.append(("%" + spec + "s") % go_str(a))
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _cmp(a, b) -> int:
    return (a > b) - (a < b)


FUNCS = {
    "json": lambda v: go_json(None if v is _NO_VALUE else v),
    "join": lambda v, sep: sep.join(go_str(x) for x in (v or [])),
    "split": lambda v, sep: go_str(v).split(sep),
    "lower": lambda v: go_str(v).lower(),
    "upper": lambda v: go_str(v).upper(),
    "title": lambda v: go_str(v).title(),
    "truncate": lambda v, n: go_str(v)[:int(n)],
    "pad": lambda v, a, b: " " * int(a) + go_str(v) + " " * int(b),
    "len": lambda v: len(v) if v is not _NO_VALUE and v is not None else 0,
    "index": lambda v, *ks: _index(v, ks),
    "print": lambda *a: "".join(go_str(x) for x in a),
    "println": lambda *a: " ".join(go_str(x) for x in a) + "\n",
    "printf": _printf,
    "eq": lambda a, *bs: any(a == b for b in bs),
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: _cmp(a, b) < 0,
    "le": lambda a, b: _cmp(a, b) <= 0,
    "gt": lambda a, b: _cmp(a, b) > 0,
    "ge": lambda a, b: _cmp(a, b) >= 0,
    "not": lambda a: not _truthy(a),
    "and": lambda *a: next((x for x in a if not _truthy(x)), a[-1]),
    "or": lambda *a: next((x for x in a if _truthy(x)), a[-1]),
}


def _index(v, keys):
    for k in keys:
        if isinstance(v, dict):
            v = v.get(k, _NO_VALUE)
        elif isinstance(v, (list, tuple)):
            try:
                v = v[int(k)]
            except (IndexError, ValueError):
                raise TemplateError(f"template: error calling index: index out of range: {k}")
        else:
            raise TemplateError(f"template: error calling index: can't index item of type {v!r}")
    return v


class Template:
    def __init__(self, source: str) -> None:
        self.source = source
        self.nodes = _parse(_tokenize(source))

    def render(self, dot: object) -> str:
        out: list[str] = []
        self._exec(self.nodes, dot, dot, out)
        return "".join(out)

    def _exec(self, nodes, dot, root, out) -> None:
        for node in nodes:
            kind = node[0]
            if kind == "text":
                out.append(node[1])
            elif kind == "pipe":
                v = self._pipe(node[1], dot, root)
                out.append(go_str(v))
            elif kind == "if":
                if _truthy(self._pipe(node[1], dot, root)):
                    self._exec(node[2], dot, root, out)
                else:
                    self._exec(node[3], dot, root, out)
            elif kind == "with":
                v = self._pipe(node[1], dot, root)
                if _truthy(v):
                    self._exec(node[2], v, root, out)
                else:
                    self._exec(node[3], dot, root, out)
            elif kind == "range":
                v = self._pipe(node[1], dot, root)
                items = []
                if isinstance(v, dict):
                    items = [v[k] for k in sorted(v)]
                elif isinstance(v, (list, tuple)):
                    items = list(v)
                elif isinstance(v, int) and not isinstance(v, bool):
                    items = list(range(v))
                if items:
                    for it in items:
                        self._exec(node[2], it, root, out)
                else:
                    self._exec(node[3], dot, root, out)

    def _operand(self, op, dot, root):
        kind, val = op
        if kind == "field":
            return _field(dot, val, root)
        if kind in ("str", "lit"):
            return val
        if kind == "pipe":
            return self._pipe(val, dot, root)
        if kind == "ident":
            fn = FUNCS.get(val)
            if fn is None:
                raise TemplateError(f'template: function "{val}" not defined')
            return fn()
        raise TemplateError(f"template: bad operand {val!r}")

    def _pipe(self, cmds, dot, root):
        prev = None
        first = True
        for cmd in cmds:
            head = cmd[0]
            if head[0] == "ident":
                fn = FUNCS.get(head[1])
                if fn is None:
                    raise TemplateError(f'template: function "{head[1]}" not defined')
                args = [self._operand(a, dot, root) for a in cmd[1:]]
                if not first:
                    args.append(prev)
                try:
                    prev = fn(*args)
                except TypeError:
                    raise TemplateError(f"template: wrong number of args for {head[1]}")
            else:
                if len(cmd) > 1:
                    raise TemplateError(f"template: can't give argument to non-function "
                                        f"{head[1]}")
                prev = self._operand(head, dot, root)
            first = False
        return prev


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


def render(fmt: str, rows: list[dict], headers: dict[str, str]) -> str:
    """Render ``rows`` with a ``--format`` value (or a ``table ...`` format)."""
    table, body = preformat(fmt)
    tmpl = Template(body)
    lines = [tmpl.render(r) for r in rows]
    if not table:
        return "".join(line + "\n" for line in lines)
    head = tmpl.render({k: v for k, v in headers.items()})
    text = "\n".join(([head] if head.strip() or rows else []) + lines)
    return tabwrite(text.split("\n")) if text else ""
