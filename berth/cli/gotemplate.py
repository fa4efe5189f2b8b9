"""The subset of Go's text/template that docker's ``--format`` users write, with Go's errors.

    {{.Field}}  {{.A.B}}  {{.}}  {{$}}  {{json .}}  {{.A}}:{{.B}}  {{join .Names ", "}}
    {{index .Labels "k"}}  {{range .X}}..{{else}}..{{end}}  {{range $i, $e := .X}}..{{end}}
    {{if .X}}..{{else if .Y}}..{{else}}..{{end}}  {{with .X}}..{{end}}  {{$v := .X}}{{$v}}
    {{lower .X}} {{upper}} {{title}} {{split .X ","}} {{truncate .X 5}} {{pad .X 1 1}}
    {{len .X}} {{slice .X 1 3}} {{printf "%-10s|%5.2f" .A .B}} {{print}} {{println}}
    {{html}} {{js}} {{urlquery}}  eq ne lt le gt ge not and or   pipelines ({{.X | json}})
    {{- and -}} trimming, {{/* comments */}}

Values are what the daemon's JSON decodes to (dicts, lists, str, int, float, bool, None). What a
missing key gives depends on what docker formats: a map prints ``<no value>``; ``image inspect``
(``missing="error"``) fails with ``map has no entry for key``; the list commands' rows are Go
structs in docker (``context="*formatter.imageContext"``), so an unknown field fails with
``can't evaluate field``. Errors carry Go's ``template: :LINE:COL: executing "" at <NODE>: ...``
text (COL is the 0-based byte offset of the node in its line), so the CLI prints what docker
prints. Imports nothing heavy: every listing loads it.
"""

from __future__ import annotations

from berth import fastjson

from .flags import CommandError


class TemplateError(CommandError):
    """A template that does not parse (``parse``) or fails on a value."""

    prefix = "template parsing error: "  # docker's words for both kinds

    def __init__(self, message: str, parse: bool = False) -> None:
        super().__init__(message)
        self.parse = parse


class _NoValue:
    def __repr__(self) -> str:
        return "<no value>"


NO_VALUE = _NoValue()


def _marshal_order(v):
    """Maps with sorted keys, structs (GoStruct) in their field order, as Go marshals them."""
    if isinstance(v, (GoNilSlice, GoNilMap)):
        return None
    if isinstance(v, GoStruct):
        return {k: _marshal_order(x) for k, x in v.items()}
    if isinstance(v, dict):
        return {k: _marshal_order(v[k]) for k in sorted(v)}
    if isinstance(v, (list, tuple)):
        return [_marshal_order(x) for x in v]
    return None if v is NO_VALUE else v


def go_json(v: object) -> str:
    """encoding/json's Marshal: sorted map keys and HTML-safe escapes."""
    text = fastjson.dumps(_marshal_order(v))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class GoTime(str):
    """An RFC 3339 time that docker holds as a time.Time: ``json`` gives it as it came,
    printing gives Go's ``2006-01-02 15:04:05.999999999 +0000 UTC``."""

    def go(self) -> str:
        if self.endswith("Z") and "T" in self:
            return self[:-1].replace("T", " ", 1) + " +0000 UTC"
        return str(self)


class GoStruct(dict):
    """A JSON object that docker decodes into a Go struct: a field it lacks is an error
    (``can't evaluate field``), ``aliases`` maps Go field names to JSON keys (``ID`` → ``Id``)
    and ``hidden`` JSON keys are not fields; it prints as ``{v1 v2 ...}``."""

    aliases: dict[str, str] = {}
    hidden: frozenset = frozenset()
    defaults: dict = {}  # fields the JSON leaves out (omitempty): their zero values
    go_type = "struct"


class GoNilSlice(list):
    """A nil slice of a Go struct: prints ``[]`` where a JSON null would be ``<nil>``;
    marshals as null."""


class GoNilMap(dict):
    """A nil map of a Go struct: prints ``map[]``, marshals as null."""


def go_str(v: object) -> str:
    """fmt's %v for the values the daemon's JSON decodes to."""
    if isinstance(v, GoStruct):
        return "{" + " ".join(go_str(x) for x in v.values()) + "}"
    if v is None:
        return "<nil>"
    if isinstance(v, GoTime):
        return v.go()
    if v is NO_VALUE:
        return "<no value>"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, float):
        return _go_float(v)
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(go_str(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{go_str(v[k])}" for k in sorted(v)) + "]"
    return str(v)


def _go_float(v: float) -> str:
    """strconv.FormatFloat(v, 'g', -1, 64): the shortest form, exponent from 1e21."""
    if v == int(v) and abs(v) < 1e21:
        return str(int(v))
    r = repr(v)
    if "e" in r:
        mant, _, exp = r.partition("e")
        sign = exp[0] if exp[0] in "+-" else "+"
        digits = exp.lstrip("+-").lstrip("0") or "0"
        return f"{mant}e{sign}{digits.zfill(2)}"
    return r


def go_type(v: object) -> str:
    """The Go type docker's values have, for %T and errors."""
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int64"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        return "[]string" if all(isinstance(x, str) for x in v) else "[]interface {}"
    if isinstance(v, dict):
        return "map[string]interface {}"
    return type(v).__name__


def truthy(v: object) -> bool:
    if v is NO_VALUE or v is None:
        return False
    if isinstance(v, (str, list, tuple, dict)):
        return len(v) > 0
    return bool(v)


# ------------------------------------------------------------------------------ lexing

class _Src:
    """The template text, to turn offsets into Go's ``:LINE:COL``."""

    def __init__(self, text: str) -> None:
        self.text = text

    def where(self, pos: int) -> str:
        line = self.text.count("\n", 0, pos) + 1
        col = pos - (self.text.rfind("\n", 0, pos) + 1)
        return f":{line}:{col}"

    def line(self, pos: int) -> str:
        return f":{self.text.count(chr(10), 0, pos) + 1}"


def _tokenize(src: str) -> list[tuple]:
    """→ [("text", s) | ("action", inner, offset of inner)], with trimming applied."""
    out: list[tuple] = []
    i = 0
    while True:
        j = src.find("{{", i)
        if j < 0:
            out.append(("text", src[i:]))
            return out
        text = src[i:j]
        k = src.find("}}", j + 2)
        start = j + 2
        if k < 0:
            raise TemplateError(f"template: {_Src(src).line(j)}: unclosed action", parse=True)
        inner = src[start:k]
        if inner.startswith("- ") or inner == "-":
            text = text.rstrip(" \t\r\n")
            inner = inner[1:]
            start += 1
        trim_right = inner.endswith(" -")
        if trim_right:
            inner = inner[:-1]
        out.append(("text", text))
        stripped = inner.lstrip()
        if not stripped.startswith("/*"):
            out.append(("action", stripped.rstrip(), start + len(inner) - len(stripped)))
        i = k + 2
        if trim_right:
            while i < len(src) and src[i] in " \t\r\n":
                i += 1


_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "r": "\r", "a": "\a", "0": "\0"}


def _lex(s: str, base: int, src: _Src) -> list[tuple]:
    """One action's tokens: (kind, value, offset) with kinds str, lit, field, var, ident,
    op (``| ( ) , :=``)."""
    toks: list[tuple] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c in " \t\r\n":
            i += 1
        elif c in "|(),":
            toks.append(("op", c, base + i))
            i += 1
        elif s.startswith(":=", i) or (c == "=" and toks and toks[-1][0] == "var"):
            toks.append(("op", ":=", base + i))
            i += 2 if c == ":" else 1
        elif c == '"':
            j = i + 1
            buf = []
            while j < n and s[j] != '"':
                if s[j] == "\\" and j + 1 < n:
                    buf.append(_ESCAPES.get(s[j + 1], s[j + 1]))
                    j += 2
                else:
                    buf.append(s[j])
                    j += 1
            if j >= n:
                raise TemplateError(f"template: {src.line(base)}: unterminated quoted string",
                                    parse=True)
            toks.append(("str", "".join(buf), base + i))
            i = j + 1
        elif c == "`":
            j = s.find("`", i + 1)
            if j < 0:
                raise TemplateError(f"template: {src.line(base)}: unterminated raw quoted "
                                    "string", parse=True)
            toks.append(("str", s[i + 1:j], base + i))
            i = j + 1
        else:
            j = i
            while j < n and s[j] not in " \t\r\n|(),\"" and not s.startswith(":=", j):
                j += 1
            word = s[i:j]
            if word.startswith("."):
                toks.append(("field", word, base + i))
            elif word.startswith("$"):
                toks.append(("var", word, base + i))
            elif word in ("true", "false"):
                toks.append(("lit", word == "true", base + i))
            elif word == "nil":
                toks.append(("lit", None, base + i))
            else:
                num = _number(word)
                toks.append(("lit", num, base + i) if num is not None else
                            ("ident", word, base + i))
            i = j
    return toks


def _number(word: str):
    try:
        return int(word, 0)
    except ValueError:
        pass
    try:
        return float(word)
    except ValueError:
        return None


# ------------------------------------------------------------------------------ parsing
# A pipeline is (declared variable names, [command]); a command is a list of operands; an
# operand is (kind, value, offset) or ("pipe", pipeline, offset).

def _pipeline(toks: list[tuple], src: _Src, pos: int = 0, close: bool = False):
    decl: list[str] = []
    # "$x :=" or "$i, $e :=" opens a pipeline that declares variables
    if len(toks) > pos + 1 and toks[pos][0] == "var" and toks[pos + 1][1] == ":=":
        decl, pos = [toks[pos][1]], pos + 2
    elif len(toks) > pos + 3 and toks[pos][0] == "var" and toks[pos + 1][1] == "," and \
            toks[pos + 2][0] == "var" and toks[pos + 3][1] == ":=":
        decl, pos = [toks[pos][1], toks[pos + 2][1]], pos + 4
    cmds: list[list] = [[]]
    while pos < len(toks):
        kind, val, off = toks[pos]
        if kind == "op" and val == "|":
            if not cmds[-1]:
                raise TemplateError(f"template: {src.line(off)}: missing command", parse=True)
            cmds.append([])
            pos += 1
        elif kind == "op" and val == "(":
            sub, pos = _pipeline(toks, src, pos + 1, close=True)
            cmds[-1].append(("pipe", sub, off))
        elif kind == "op" and val == ")":
            if not close:
                raise TemplateError(f"template: {src.line(off)}: unexpected right paren",
                                    parse=True)
            return (decl, cmds), pos + 1
        elif kind == "op":
            raise TemplateError(f"template: {src.line(off)}: unexpected \"{val}\" in command",
                                parse=True)
        else:
            if kind == "ident" and val not in FUNCS:
                raise TemplateError(f"template: {src.line(off)}: function \"{val}\" not "
                                    "defined", parse=True)
            cmds[-1].append((kind, val, off))
            pos += 1
    if close:
        raise TemplateError(f"template: {src.line(toks[-1][2] if toks else 0)}: unclosed "
                            "left paren", parse=True)
    if not cmds[-1]:
        raise TemplateError(f"template: {src.line(toks[-1][2] if toks else 0)}: missing "
                            "value for command", parse=True)
    return (decl, cmds), pos


def _parse(tokens: list[tuple], src: _Src) -> list:
    """→ nodes: ("text", s) | ("pipe", pipeline, offset) | (word, pipeline, body, else_body,
    offset) for if/range/with."""
    pos = 0
    last = [0]

    def eof():
        return TemplateError(f"template: {src.line(last[0])}: unexpected EOF", parse=True)

    def control(word: str, expr: str, off: int):
        nonlocal pos
        if not expr.strip():
            raise TemplateError(f"template: {src.line(off)}: missing value for {word}",
                                parse=True)
        pipe, _ = _pipeline(_lex(expr, off, src), src)
        body, end = block(("else", "end"))
        else_body: list = []
        if end == "else":
            inner, eoff = tokens[pos][1], tokens[pos][2]
            rest = inner[len("else"):].lstrip()
            pos += 1
            sub = rest.split(None, 1)[0] if rest else ""
            if sub in ("if", "with"):
                # {{else if X}} is {{else}}{{if X}}...{{end}}{{end}} with one {{end}}: the
                # nested node takes it
                at = eoff + inner.index(rest) + len(sub)
                else_body = [control(sub, rest[len(sub):], at)]
                return (word, pipe, body, else_body, off)
            else_body, end2 = block(("end",))
            if end2 != "end":
                raise eof()
        elif end != "end":
            raise eof()
        pos += 1  # the {{end}}
        return (word, pipe, body, else_body, off)

    def block(stop: tuple[str, ...]):
        nonlocal pos
        nodes: list = []
        while pos < len(tokens):
            tok = tokens[pos]
            if tok[0] == "text":
                if tok[1]:
                    nodes.append(("text", tok[1]))
                pos += 1
                continue
            val, off = tok[1], tok[2]
            last[0] = off
            word = val.split(None, 1)[0] if val else ""
            if word in stop:
                return nodes, word
            pos += 1
            if word in ("if", "range", "with"):
                nodes.append(control(word, val[len(word):], off + len(word)))
            elif word in ("end", "else"):
                raise TemplateError(f"template: {src.line(off)}: unexpected {{{{{word}}}}}",
                                    parse=True)
            elif not val:
                raise TemplateError(f"template: {src.line(off)}: missing value for command",
                                    parse=True)
            else:
                pipe, _ = _pipeline(_lex(val, off, src), src)
                nodes.append(("pipe", pipe, off))
        return nodes, ""

    nodes, _ = block(())
    return nodes


# ---------------------------------------------------------------------------- functions

def _fmt_verb(verb: str, flags: str, width: int | None, prec: int | None, a) -> str:
    if verb in "dboxXc" and isinstance(a, (int, float)) and not isinstance(a, bool) and \
            (isinstance(a, int) or a == int(a)):
        a = int(a)
        if verb == "c":
            s = chr(a)
        else:
            spec = {"d": "d", "b": "b", "o": "o", "x": "x", "X": "X"}[verb]
            s = format(abs(a), spec)
            if "#" in flags and verb in "xXo":
                s = {"x": "0x", "X": "0X", "o": "0"}[verb] + s
            sign = "-" if a < 0 else ("+" if "+" in flags else (" " if " " in flags else ""))
            s = sign + s
    elif verb in "xX" and isinstance(a, str):
        s = a.encode().hex()
        s = s.upper() if verb == "X" else s
    elif verb in "feEgG" and isinstance(a, (int, float)) and not isinstance(a, bool):
        p = 6 if prec is None and verb in "feE" else prec
        s = format(float(a), f"{'+' if '+' in flags else ''}.{p}{verb}" if p is not None
                   else f"{'+' if '+' in flags else ''}{verb}")
        if verb in "gG" and p is None:
            s = _go_float(float(a))
    elif verb == "q":
        s = fastjson.dumps(a if isinstance(a, str) else go_str(a))
    elif verb == "t" and isinstance(a, bool):
        s = go_str(a)
    elif verb == "T":
        s = go_type(a)
    elif verb in "vs":
        s = go_str(a)
        if prec is not None and verb == "s":
            s = s[:prec]
    else:
        return f"%!{verb}({go_type(a)}={go_str(a)})"
    if width is not None and len(s) < width:
        if "-" in flags:
            s = s.ljust(width)
        elif "0" in flags and verb in "dfeEgGxXob":
            neg = s[:1] in "+-"
            s = (s[0] + s[1:].rjust(width - 1, "0")) if neg else s.rjust(width, "0")
        else:
            s = s.rjust(width)
    return s


def _printf(fmt: str, *args) -> str:
    """fmt.Sprintf for the verbs templates use."""
    out, i, ai = [], 0, 0
    while i < len(fmt):
        c = fmt[i]
        if c != "%" or i + 1 >= len(fmt):
            out.append(c)
            i += 1
            continue
        j = i + 1
        flags = ""
        while j < len(fmt) and fmt[j] in "-+# 0":
            flags += fmt[j]
            j += 1
        w0 = j
        while j < len(fmt) and fmt[j].isdigit():
            j += 1
        width = int(fmt[w0:j]) if j > w0 else None
        prec = None
        if j < len(fmt) and fmt[j] == ".":
            j += 1
            p0 = j
            while j < len(fmt) and fmt[j].isdigit():
                j += 1
            prec = int(fmt[p0:j]) if j > p0 else 0
        if j >= len(fmt):
            out.append("%!(NOVERB)")
            break
        verb = fmt[j]
        if verb == "%":
            out.append("%")
        elif ai >= len(args):
            out.append(f"%!{verb}(MISSING)")
        else:
            out.append(_fmt_verb(verb, flags, width, prec, args[ai]))
            ai += 1
        i = j + 1
    if ai < len(args):
        out.append("%!(EXTRA " + ", ".join(f"{go_type(a)}={go_str(a)}" for a in args[ai:]) + ")")
    return "".join(out)


def _len(v) -> int:
    if isinstance(v, (str, list, tuple, dict)):
        return len(v.encode() if isinstance(v, str) else v)
    raise _CallError(f"len of type {go_type(v)}")


def _index(v, *keys):
    for k in keys:
        if isinstance(v, dict):
            v = v.get(k, NO_VALUE) if isinstance(k, str) else NO_VALUE
        elif isinstance(v, (list, tuple, str)):
            if not isinstance(k, int) or isinstance(k, bool):
                raise _CallError(f"cannot index slice/array with type {go_type(k)}")
            seq = v.encode() if isinstance(v, str) else v
            if not 0 <= k < len(seq):
                raise _CallError(f"index out of range: {k}")
            v = seq[k]
        elif v is None or v is NO_VALUE:
            raise _CallError("index of untyped nil")
        else:
            raise _CallError(f"can't index item of type {go_type(v)}")
    return v


def _slice(v, *idx):
    if not isinstance(v, (str, list, tuple)):
        raise _CallError(f"can't slice item of type {go_type(v)}")
    if len(idx) > 2:
        raise _CallError("too many slice indexes")
    lo = idx[0] if idx else 0
    hi = idx[1] if len(idx) > 1 else len(v)
    if not (0 <= lo <= hi <= len(v)):
        raise _CallError(f"index out of range: {hi if hi > len(v) else lo}")
    return v[lo:hi]


def _html(*a) -> str:
    s = "".join(go_str(x) for x in a)
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&#34;").replace("'", "&#39;").replace("\0", "\uFFFD"))


def _js(*a) -> str:
    out = []
    for ch in "".join(go_str(x) for x in a):
        if ch in "\\'\"":
            out.append("\\" + ch)
        elif ch in "<>&=":
            out.append(f"\\u{ord(ch):04X}")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return "".join(out)


def _urlquery(*a) -> str:
    safe = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"
    out = []
    for b in "".join(go_str(x) for x in a).encode():
        ch = chr(b)
        out.append(ch if ch in safe else "+" if ch == " " else f"%{b:02X}")
    return "".join(out)


def _cmp(a, b) -> int:
    if type(a) is not type(b) and not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
        raise _CallError("incompatible types for comparison")
    return (a > b) - (a < b)


class _CallError(Exception):
    """A function's own error: reported as ``error calling NAME: ...``."""


def _pad(v, a, b) -> str:
    return " " * int(a) + go_str(v) + " " * int(b)


def _title(v) -> str:
    s = go_str(v)
    out, prev = [], " "
    for ch in s:
        out.append(ch.upper() if not (prev.isalnum() or prev in "_'") else ch)
        prev = ch
    return "".join(out)


FUNCS = {
    "json": lambda v: go_json(v),
    "join": lambda v, sep: sep.join(go_str(x) for x in (v or [])),
    "split": lambda v, sep: go_str(v).split(sep),
    "lower": lambda v: go_str(v).lower(),
    "upper": lambda v: go_str(v).upper(),
    "title": _title,
    "truncate": lambda v, n: go_str(v)[:int(n)],
    "pad": _pad,
    "len": _len,
    "index": _index,
    "slice": _slice,
    "print": lambda *a: "".join((" " if i and not isinstance(x, str) and
                                 not isinstance(a[i - 1], str) else "") + go_str(x)
                                for i, x in enumerate(a)),
    "println": lambda *a: " ".join(go_str(x) for x in a) + "\n",
    "printf": _printf,
    "html": _html,
    "js": _js,
    "urlquery": _urlquery,
    "eq": lambda a, *bs: any(a == b for b in bs),
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: _cmp(a, b) < 0,
    "le": lambda a, b: _cmp(a, b) <= 0,
    "gt": lambda a, b: _cmp(a, b) > 0,
    "ge": lambda a, b: _cmp(a, b) >= 0,
    "not": lambda a: not truthy(a),
    "and": lambda *a: next((x for x in a if not truthy(x)), a[-1]),
    "or": lambda *a: next((x for x in a if truthy(x)), a[-1]),
}

# how many arguments each takes (min, max or None), for Go's "wrong number of args"
_ARITY = {"json": (1, 1), "join": (2, 2), "split": (2, 2), "lower": (1, 1), "upper": (1, 1),
          "title": (1, 1), "truncate": (2, 2), "pad": (3, 3), "len": (1, 1),
          "index": (1, None), "slice": (1, None), "eq": (1, None), "ne": (2, 2),
          "lt": (2, 2), "le": (2, 2), "gt": (2, 2), "ge": (2, 2), "not": (1, 1),
          "and": (1, None), "or": (1, None), "printf": (1, None)}


# ---------------------------------------------------------------------------- execution

class Template:
    """``Template(text).render(dot)``; see the module docstring for ``missing``/``context``.
    """

    def __init__(self, source: str, missing: str = "default", context: str = "") -> None:
        self.source = source
        self.src = _Src(source)
        self.missing = missing
        self.context = context  # the Go type docker formats rows as, e.g. *formatter.imageContext
        self.nodes = _parse(_tokenize(source), self.src)

    def render(self, dot: object) -> str:
        out: list[str] = []
        self._root = dot
        self._exec(self.nodes, dot, {"$": dot}, out)
        return "".join(out)

    def _fail(self, off: int, node: str, msg: str):
        raise TemplateError(f"template: {self.src.where(off)}: executing \"\" at <{node}>: "
                            f"{msg}")

    def _exec(self, nodes, dot, env: dict, out: list[str]) -> None:
        for node in nodes:
            kind = node[0]
            if kind == "text":
                out.append(node[1])
            elif kind == "pipe":
                decl = node[1][0]
                v = self._pipe(node[1], dot, env)
                if decl:
                    env[decl[0]] = v
                else:
                    out.append(go_str(v))
            elif kind in ("if", "with"):
                scope = dict(env)
                v = self._pipe(node[1], dot, scope)
                if node[1][0]:
                    scope[node[1][0][0]] = v
                if truthy(v):
                    self._exec(node[2], v if kind == "with" else dot, scope, out)
                else:
                    self._exec(node[3], dot, dict(env), out)
            elif kind == "range":
                scope = dict(env)
                v = self._pipe(node[1], dot, scope)
                decl = node[1][0]
                if isinstance(v, dict):
                    items = [(k, v[k]) for k in sorted(v)]
                elif isinstance(v, (list, tuple)):
                    items = list(enumerate(v))
                elif isinstance(v, int) and not isinstance(v, bool):
                    items = [(i, i) for i in range(v)]
                elif v is None or v is NO_VALUE:
                    items = []
                else:
                    self._fail(node[4], "range", f"range can't iterate over {go_str(v)}")
                if not items:
                    self._exec(node[3], dot, dict(env), out)
                for k, it in items:
                    inner = dict(scope)
                    if len(decl) == 1:
                        inner[decl[0]] = it
                    elif len(decl) == 2:
                        inner[decl[0]], inner[decl[1]] = k, it
                    self._exec(node[2], it, inner, out)

    def _field(self, base, path: str, off: int, node: str):
        """``.A.B`` from ``base``; ``off``: where ``path`` starts in the source."""
        cur = base
        seg_off = off
        for name in path[1:].split("."):
            if not name:
                continue
            if isinstance(cur, GoStruct):
                key = cur.aliases.get(name, name)
                if key in cur and not (key == name and name in cur.hidden):
                    cur = cur[key]
                elif name in cur.defaults:
                    cur = cur.defaults[name]
                else:
                    self._fail(seg_off, node, f"can't evaluate field {name} in type "
                                              f"{cur.go_type}")
            elif isinstance(cur, dict):
                if name in cur:
                    cur = cur[name]
                elif self.context and cur is self._root:
                    self._fail(seg_off, node, f"can't evaluate field {name} in type "
                                              f"{self.context}")
                elif self.missing == "error":
                    self._fail(seg_off, node, f"map has no entry for key \"{name}\"")
                else:
                    cur = NO_VALUE
            elif cur is None or cur is NO_VALUE:
                if self.missing == "error" or cur is None:
                    self._fail(seg_off, node, f"nil pointer evaluating interface {{}}.{name}")
                return NO_VALUE
            else:
                typ = "interface {}" if self.missing == "error" else go_type(cur)
                self._fail(seg_off, node, f"can't evaluate field {name} in type {typ}")
            seg_off += len(name) + 1
        return cur

    def _operand(self, op, dot, env):
        kind, val, off = op
        if kind == "field":
            if val == ".":
                return dot
            return self._field(dot, val, off, val)
        if kind == "var":
            name, dot_, rest = val.partition(".")
            if name not in env:
                raise TemplateError(f"template: {self.src.line(off)}: undefined variable "
                                    f"\"{name}\"", parse=True)
            if not rest:
                return env[name]
            return self._field(env[name], dot_ + rest, off + len(name), val)
        if kind in ("str", "lit"):
            return val
        if kind == "pipe":
            return self._pipe(val, dot, env)
        if kind == "ident":
            return self._call(val, [], op, dot, env, val)
        raise TemplateError(f"template: {self.src.line(off)}: unexpected {val!r}", parse=True)

    def _call(self, name: str, args: list, head, dot, env, text: str):
        fn = FUNCS.get(name)
        off = head[2]
        if fn is None:
            raise TemplateError(f"template: {self.src.line(off)}: function \"{name}\" not "
                                "defined", parse=True)
        lo, hi = _ARITY.get(name, (0, None))
        if len(args) < lo or (hi is not None and len(args) > hi):
            self._fail(off, text, f"wrong number of args for {name}: want "
                                  f"{lo if hi == lo else f'at least {lo}'} got {len(args)}")
        if name == "len" and self.context and args and args[0] is self._root:
            self._fail(off, text, f"error calling len: len of type {self.context.lstrip('*')}")
        try:
            return fn(*args)
        except _CallError as e:
            self._fail(off, text, f"error calling {name}: {e}")
        except TypeError:
            self._fail(off, text, f"wrong number of args for {name}")
        return None

    def _pipe(self, pipe, dot, env):
        _decl, cmds = pipe
        prev = NO_VALUE
        for i, cmd in enumerate(cmds):
            head = cmd[0]
            text = " ".join(_op_text(o) for o in cmd)
            if head[0] == "ident":
                args = [self._operand(a, dot, env) for a in cmd[1:]]
                if i:
                    args.append(prev)
                prev = self._call(head[1], args, head, dot, env, text)
            else:
                if len(cmd) > 1 or i:
                    self._fail(head[2], text, f"can't give argument to non-function {text}")
                prev = self._operand(head, dot, env)
        return prev


def _op_text(op) -> str:
    kind, val, _ = op
    if kind == "str":
        return fastjson.dumps(val)
    if kind == "lit":
        return go_str(val) if val is not None else "nil"
    if kind == "pipe":
        return "(" + " | ".join(" ".join(_op_text(o) for o in c) for c in val[1]) + ")"
    return str(val)
