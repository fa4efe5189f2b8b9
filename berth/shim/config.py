"""The shim's options: one command line, parsed by hand (argparse costs ~6 ms per start).

    --id ID              container id, as the runtime knows it              (required)
    --bundle DIR         OCI bundle (config.json + rootfs)                  (required)
    --run-dir DIR        the shim's directory: socket, pid and state files  (required)
    --log PATH           json-file log of the container's output (none without it)
    --log-max-size SIZE  rotate at SIZE (bytes, or docker's 10k/10m/1g: powers of 1000)
    --log-max-file N     keep N files in all (default 1)
    --runtime BIN        OCI runtime with runc's command line (default runc)
    --runtime-root DIR   its --root
    --runtime-arg ARG    an extra global runtime argument (repeatable, e.g. --systemd-cgroup)
    --runtime-exec       run berth-runtime as a command, not through its library in-process
    --stdin              give the container a stdin pipe (docker run -i)
    --stdin-once         close it when the first attached client's stdin ends
    --restart POLICY     no | always | unless-stopped | on-failure[:N]
    --restart-count N    restarts made before this shim (kept across shims)
    --start              start the container as soon as it is created

Whether the container gets a terminal is read from the bundle (``process.terminal``), the one
place the runtime also reads it. Bad options raise InvalidArgument with one line naming the
option; nothing is created before they are all valid.
"""

import os

from berth.errors import InvalidArgument

from .restart import parse_policy

__all__ = ["ShimOptions", "parse_args", "parse_size"]


class InvalidShimOption(InvalidArgument):
    pass


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3,
          "gb": 1000**3, "t": 1000**4, "tb": 1000**4}


def parse_size(text: str) -> int:
    """docker's ``units.FromHumanSize``: ``"10m"`` is 10,000,000 bytes."""
    t = text.strip().lower()
    i = len(t)
    while i and not (t[i - 1].isdigit() or t[i - 1] == "."):
        i -= 1
    num, unit = t[:i], t[i:].strip()
    try:
        value = float(num)
    except ValueError:
        raise InvalidShimOption(f"invalid size: {text!r}") from None
    if unit not in _UNITS or value < 0:
        raise InvalidShimOption(f"invalid size: {text!r}")
    return int(value * _UNITS[unit])


class ShimOptions:
    __slots__ = ("bundle", "id", "log", "log_max_file", "log_max_size", "restart",
                 "restart_count", "restart_max", "run_dir", "runtime", "runtime_args",
                 "runtime_mode", "runtime_root", "start", "stdin", "stdin_once")

    def __init__(self, id: str, bundle: str, run_dir: str, *, log: str | None = None,
                 log_max_size: int = -1, log_max_file: int = 1, runtime: str = "runc",
                 runtime_root: str | None = None, runtime_args: tuple[str, ...] = (),
                 runtime_mode: str = "auto", stdin: bool = False, stdin_once: bool = False,
                 restart: str = "no", restart_count: int = 0, start: bool = False) -> None:
        # Absolute paths: the shim runs in / and its launcher may have been anywhere.
        self.id = id
        self.bundle = os.path.abspath(bundle)
        self.run_dir = os.path.abspath(run_dir)
        self.log = os.path.abspath(log) if log else None
        self.log_max_size = log_max_size
        self.log_max_file = log_max_file
        self.runtime = os.path.abspath(runtime) if "/" in runtime else runtime
        self.runtime_root = os.path.abspath(runtime_root) if runtime_root else None
        if runtime_mode not in ("auto", "exec"):
            raise InvalidShimOption(f"invalid runtime mode: {runtime_mode!r}")
        self.runtime_mode = runtime_mode
        self.runtime_args = tuple(runtime_args)
        self.stdin = stdin
        self.stdin_once = stdin_once
        self.restart, self.restart_max = parse_policy(restart)
        self.restart_count = restart_count
        self.start = start

    def fields(self) -> dict:
        """The options as JSON-able values (what ``from_fields`` takes back)."""
        return {k: getattr(self, k) for k in self.__slots__}

    @classmethod
    def from_fields(cls, fields: dict) -> "ShimOptions":
        """Options that ``fields`` gave, checked already: no paths resolved, no parsing (the
        shim takes them from its setup worker and runs as little code as it can)."""
        self = cls.__new__(cls)
        for k in cls.__slots__:
            setattr(self, k, fields[k])
        self.runtime_args = tuple(self.runtime_args)
        return self

    def to_argv(self) -> list[str]:
        """The command line that ``parse_args`` turns back into these options."""
        a = ["--id", self.id, "--bundle", self.bundle, "--run-dir", self.run_dir]
        if self.log:
            a += ["--log", self.log]
        if self.log_max_size >= 0:
            a += ["--log-max-size", str(self.log_max_size)]
        if self.log_max_file != 1:
            a += ["--log-max-file", str(self.log_max_file)]
        if self.runtime != "runc":
            a += ["--runtime", self.runtime]
        if self.runtime_root:
            a += ["--runtime-root", self.runtime_root]
        for arg in self.runtime_args:
            a += ["--runtime-arg", arg]
        if self.runtime_mode == "exec":
            a.append("--runtime-exec")
        if self.stdin:
            a.append("--stdin")
        if self.stdin_once:
            a.append("--stdin-once")
        if self.restart != "no":
            pol = self.restart + (f":{self.restart_max}" if self.restart_max else "")
            a += ["--restart", pol]
        if self.restart_count:
            a += ["--restart-count", str(self.restart_count)]
        if self.start:
            a.append("--start")
        return a


_FLAGS = {"--stdin": "stdin", "--stdin-once": "stdin_once", "--start": "start",
          "--runtime-exec": "runtime_mode"}
_VALUES = {"--id": "id", "--bundle": "bundle", "--run-dir": "run_dir", "--log": "log",
           "--log-max-size": "log_max_size", "--log-max-file": "log_max_file",
           "--runtime": "runtime", "--runtime-root": "runtime_root",
           "--runtime-arg": "runtime_args", "--restart": "restart",
           "--restart-count": "restart_count"}


def _count(opt: str, text: str, minimum: int) -> int:
    if not text.isdigit() or int(text) < minimum:
        raise InvalidShimOption(f"{opt} must be an integer ≥ {minimum}: {text!r}")
    return int(text)


def parse_args(argv: list[str]) -> ShimOptions:
    kw: dict = {"runtime_args": []}
    i = 0
    while i < len(argv):
        opt = argv[i]
        value = None
        if opt.startswith("--") and "=" in opt:
            opt, value = opt.split("=", 1)
        if opt in _FLAGS and value is None:
            kw[_FLAGS[opt]] = "exec" if opt == "--runtime-exec" else True
            i += 1
            continue
        if opt not in _VALUES:
            raise InvalidShimOption(f"unknown shim option: {argv[i]!r}")
        if value is None:
            if i + 1 >= len(argv):
                raise InvalidShimOption(f"shim option {opt} needs a value")
            value = argv[i + 1]
            i += 2
        else:
            i += 1
        key = _VALUES[opt]
        if key == "runtime_args":
            kw[key].append(value)
        elif key == "log_max_size":
            kw[key] = parse_size(value)
            if kw[key] <= 0:
                raise InvalidShimOption(f"--log-max-size must be positive: {value!r}")
        elif key == "log_max_file":
            kw[key] = _count(opt, value, 1)
        elif key == "restart_count":
            kw[key] = _count(opt, value, 0)
        else:
            kw[key] = value
    for req in ("id", "bundle", "run_dir"):
        if not kw.get(req):
            raise InvalidShimOption(f"shim option --{req.replace('_', '-')} is required")
    if kw.get("stdin_once") and not kw.get("stdin"):
        raise InvalidShimOption("--stdin-once needs --stdin")
    return ShimOptions(**kw)
