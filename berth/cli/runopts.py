"""``run``/``create`` flags → the body of ``POST /containers/create``, with docker's errors.

What the docker CLI checks itself is checked here, with its words (``invalid argument "1x" for
"-m, --memory" flag: invalid suffix: 'x'``); what dockerd checks (memory minimum, CPU range,
mount sources, names, ...) is left to berthd, which answers with dockerd's words. Two kinds of
error, as docker prints them:

- ``FlagError``: a flag's value does not parse; printed with the usage line (exit 125);
- ``RunError``: the flags parse but do not fit together; printed as ``berth: ...`` (exit 125).

Hot path of ``berth run``: imports nothing beyond berth.cli.flags and berth.fastjson.
"""

from __future__ import annotations

import os

from .flags import Flag, UsageError


class FlagError(UsageError):
    """A value that does not parse: ``invalid argument "V" for "-x, --xx" flag: why``."""


class RunError(UsageError):
    """Flags that parse but conflict or name something missing (a file)."""


# --- value parsers with go's / go-units' messages ------------------------------------------

_BINARY = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}


def _go_float(text: str) -> float:
    try:
        if not text or text.strip() != text or "_" in text:
            raise ValueError
        return float(text)
    except ValueError:
        raise ValueError(f'strconv.ParseFloat: parsing "{text}": invalid syntax') from None


def ram_in_bytes(text: str) -> int:
    """go-units' RAMInBytes: ``64m`` = 64 MiB, suffix b/k/m/g/t/p with optional b or ib."""
    sep = -1
    for i in range(len(text) - 1, -1, -1):
        if text[i] in "0123456789. ":
            sep = i
            break
    if sep == -1:
        raise ValueError(f"invalid size: '{text}'")
    if text[sep] != " ":
        num, sfx = text[:sep + 1], text[sep + 1:]
    else:
        num, sfx = text[:sep], text[sep + 1:]
    size = _go_float(num)
    if size < 0:
        raise ValueError(f"invalid size: '{text}'")
    if not sfx:
        return int(size)
    low = sfx.lower()
    if len(sfx) > 3:
        raise ValueError(f"invalid suffix: '{low}'")
    if low[0] == "b":
        if len(low) > 1:
            raise ValueError(f"invalid suffix: '{low}'")
        return int(size)
    mul = _BINARY.get(low[0])
    if mul is None or (len(low) == 2 and low[1] != "b") or (len(low) == 3 and low[1:] != "ib"):
        raise ValueError(f"invalid suffix: '{low}'")
    return int(size * mul)


def parse_int(text: str, bits: int = 64) -> int:
    """strconv.ParseInt(text, 0, bits), as pflag's int flags parse: 10, 0x1f, 0o17, 017."""
    body = text[1:] if text[:1] in "+-" else text
    base = 10
    digits = body
    if body[:2].lower() in ("0x", "0o", "0b"):
        base = {"x": 16, "o": 8, "b": 2}[body[1].lower()]
        digits = body[2:].replace("_", "")
    elif len(body) > 1 and body[0] == "0":
        base, digits = 8, body[1:]
    try:
        if not digits or not digits.isalnum():
            raise ValueError
        v = int(digits, base)
    except ValueError:
        raise ValueError(f'strconv.ParseInt: parsing "{text}": invalid syntax') from None
    if text.startswith("-"):
        v = -v
    if not -(1 << (bits - 1)) <= v < (1 << (bits - 1)):
        raise ValueError(f'strconv.ParseInt: parsing "{text}": value out of range')
    return v


def parse_uint(text: str, bits: int = 64) -> int:
    if text.startswith("-") or text.startswith("+"):
        raise ValueError(f'strconv.ParseUint: parsing "{text}": invalid syntax')
    try:
        v = parse_int(text, bits + 1)
    except ValueError as e:
        raise ValueError(str(e).replace("ParseInt", "ParseUint")) from None
    if v >= 1 << bits:
        raise ValueError(f'strconv.ParseUint: parsing "{text}": value out of range')
    return v


def parse_bool(text: str) -> bool:
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{text}": invalid syntax')


def parse_cpus(text: str) -> int:
    """``--cpus 1.5`` → 1_500_000_000 nano-CPUs, exact (docker parses a big.Rat)."""
    t = text.strip()
    ok = bool(t)
    num, den = t, "1"
    if "/" in t:
        num, den = t.split("/", 1)
    sign = 1
    if num[:1] in "+-":
        sign = -1 if num[0] == "-" else 1
        num = num[1:]
    ip, _, fp = num.partition(".")
    if not (ip + fp).isdigit() or not den.isdigit() or int(den or "0") == 0:
        ok = False
    if "e" in t.lower():
        ok = False
    if not ok:
        raise ValueError(f"failed to parse {text} as a rational number")
    # (ip.fp / den) * 1e9 must be an integer
    scale = 10 ** len(fp)
    numer = sign * int((ip or "0") + fp) * 1_000_000_000
    denom = scale * int(den)
    if numer % denom:
        raise ValueError("value is too precise")
    return numer // denom


_ULIMITS = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
            "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")


def parse_ulimit(text: str) -> dict:
    name, eq, limits = text.partition("=")
    if not eq:
        raise ValueError(f"invalid ulimit argument: {text}")
    if name not in _ULIMITS:
        raise ValueError(f"invalid ulimit type: {name}")
    soft_s, colon, hard_s = limits.partition(":")
    soft = parse_int(soft_s)
    hard = parse_int(hard_s) if colon else soft
    if colon and soft > hard:
        raise ValueError(f"ulimit soft limit must be less than or equal to hard limit: "
                         f"{soft} > {hard}")
    return {"Name": name, "Hard": hard, "Soft": soft}


def _csv_fields(text: str) -> list[str]:
    """One CSV record (Go's encoding/csv): fields split on commas, "quoted" fields allowed."""
    out, cur, i, n = [], [], 0, len(text)
    quoted = False
    while i < n:
        ch = text[i]
        if quoted:
            if ch == '"':
                if i + 1 < n and text[i + 1] == '"':
                    cur.append('"')
                    i += 2
                    continue
                quoted = False
            else:
                cur.append(ch)
        elif ch == '"' and not cur:
            quoted = True
        elif ch == ",":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    if quoted:
        raise ValueError(f'parse error on line 1, column {n + 1}: extraneous or missing " in '
                         "quoted-field")
    out.append("".join(cur))
    return out


def parse_mount(text: str) -> dict:
    """``--mount type=bind,source=/a,target=/b,readonly`` → an API ``Mount`` object."""
    value = text.strip()
    if not value:
        raise ValueError("value is empty")
    m: dict = {"Type": "volume"}
    bind: dict = {}
    vol: dict = {}
    tmpfs: dict = {}
    for field in _csv_fields(value):
        key, eq, val = field.partition("=")
        key_l = key.lower()
        if not eq:
            if key_l in ("readonly", "ro", "volume-nocopy", "bind-nonrecursive",
                         "bind-create-src"):
                val = "true"
            else:
                raise ValueError(f"invalid field '{field}' must be a key=value pair")
        if key_l == "type":
            m["Type"] = val.lower()
        elif key_l in ("source", "src"):
            m["Source"] = os.path.abspath(val) if val.startswith(".") else val
        elif key_l in ("target", "dst", "destination"):
            m["Target"] = val
        elif key_l in ("readonly", "ro"):
            try:
                m["ReadOnly"] = parse_bool(val)
            except ValueError:
                raise ValueError(f"invalid value for {key}: {val}") from None
        elif key_l == "consistency":
            m["Consistency"] = val.lower()
        elif key_l == "bind-propagation":
            bind["Propagation"] = val.lower()
        elif key_l == "bind-nonrecursive":
            try:
                bind["NonRecursive"] = parse_bool(val)
            except ValueError:
                raise ValueError(f"invalid value for {key}: {val}") from None
        elif key_l == "bind-recursive":
            if val == "disabled":
                bind["NonRecursive"] = True
            elif val not in ("enabled", "writable", "readonly"):
                raise ValueError(f'invalid value for {key}: {val} (must be "enabled", '
                                 '"disabled", "writable", or "readonly")')
        elif key_l == "bind-create-src":
            bind["CreateMountpoint"] = parse_bool(val)
        elif key_l == "volume-nocopy":
            try:
                vol["NoCopy"] = parse_bool(val)
            except ValueError:
                raise ValueError(f"invalid value for {key}: {val}") from None
        elif key_l == "volume-subpath":
            vol["Subpath"] = val
        elif key_l == "volume-label":
            k, _, v = val.partition("=")
            vol.setdefault("Labels", {})[k] = v
        elif key_l == "volume-driver":
            vol.setdefault("DriverConfig", {})["Name"] = val
        elif key_l == "volume-opt":
            k, _, v = val.partition("=")
            vol.setdefault("DriverConfig", {}).setdefault("Options", {})[k] = v
        elif key_l == "tmpfs-size":
            try:
                tmpfs["SizeBytes"] = ram_in_bytes(val)
            except ValueError:
                raise ValueError(f"invalid value for {key}: {val}") from None
        elif key_l == "tmpfs-mode":
            try:
                tmpfs["Mode"] = int(val, 8)
            except ValueError:
                raise ValueError(f"invalid value for {key}: {val}") from None
        else:
            raise ValueError(f"unexpected key '{key}' in '{field}'")
    if not m.get("Target"):
        raise ValueError("target is required")
    if bind:
        m["BindOptions"] = bind
    if vol:
        m["VolumeOptions"] = vol
    if tmpfs:
        m["TmpfsOptions"] = tmpfs
    return m


def parse_env_file(path: str) -> list[str]:
    """docker's env file: KEY=VALUE lines, ``#`` comments, a bare KEY taken from our env."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise RunError(f"open {path}: {(e.strerror or str(e)).lower()}") from None
    out = []
    for n, raw in enumerate(lines, 1):
        line = raw.lstrip()
        if n == 1 and line.startswith("\ufeff"):
            line = line[1:]
        if not line or line.startswith("#"):
            continue
        k, eq, v = line.partition("=")
        if not k:
            raise RunError(f"no variable name on line '{line}'")
        if " " in k or "\t" in k:
            raise RunError(f"variable '{k}' contains whitespaces")
        if eq:
            out.append(f"{k}={v}")
        elif k in os.environ:
            out.append(f"{k}={os.environ[k]}")
    return out


def env_value(text: str) -> str:
    k, eq, _ = text.partition("=")
    if not k:
        raise ValueError(f"invalid environment variable: {text}")
    if eq:
        return text
    if k in os.environ:
        return f"{k}={os.environ[k]}"
    return text


def parse_restart(text: str) -> dict:
    """``on-failure:3`` → {"Name": "on-failure", "MaximumRetryCount": 3} (CLI-side checks)."""
    if not text:
        return {"Name": "no", "MaximumRetryCount": 0}
    name, colon, count = text.partition(":")
    if colon:
        try:
            n = int(count)
        except ValueError:
            raise RunError("invalid restart policy format: maximum retry count must be an "
                           "integer") from None
        return {"Name": name, "MaximumRetryCount": n}
    return {"Name": name, "MaximumRetryCount": 0}


def _valid_ip(text: str) -> bool:
    if text.count(".") == 3:
        parts = text.split(".")
        return all(p.isdigit() and int(p) < 256 and (p == "0" or not p.startswith("0"))
                   for p in parts)
    if ":" in text:
        try:
            import ipaddress

            ipaddress.IPv6Address(text.strip("[]"))
            return True
        except ValueError:
            return False
    return False


def parse_ports(specs: list[str]) -> tuple[dict, dict]:
    """``-p [ip:][hostPort:]containerPort[/proto]`` → (ExposedPorts, PortBindings)."""
    exposed: dict = {}
    bindings: dict = {}
    for spec in specs:
        if "=" in spec:
            params = {"protocol": "tcp"}
            for p in spec.split(","):
                k, eq, v = p.partition("=")
                if not eq or not k:
                    raise RunError(f"invalid publish opts format (should be name=value but got "
                                   f"'{p}')")
                params[k] = v
            spec = f"{params.get('published', '')}:{params.get('target', '')}/" \
                   f"{params['protocol']}"
        raw, _, proto = spec.rpartition("/") if "/" in spec else (spec, "", "tcp")
        proto = proto.lower() or "tcp"
        if proto not in ("tcp", "udp", "sctp"):
            raise RunError(f"invalid proto: {proto}")
        ip, host_port, ctr = "", "", raw
        if raw.startswith("["):
            end = raw.find("]")
            ip = raw[1:end]
            rest = raw[end + 2:]
            host_port, _, ctr = rest.rpartition(":")
        else:
            parts = raw.split(":")
            if len(parts) == 1:
                ctr = parts[0]
            elif len(parts) == 2:
                host_port, ctr = parts
            elif len(parts) == 3:
                ip, host_port, ctr = parts
            else:
                ip = ":".join(parts[:-2])
                host_port, ctr = parts[-2], parts[-1]
        if ip and not _valid_ip(ip):
            raise RunError(f"invalid IP address: {ip}")
        if not ctr:
            raise RunError(f"no port specified: {spec}<empty>")
        c_lo, c_hi = _port_range(ctr, "containerPort")
        if host_port:
            h_lo, h_hi = _port_range(host_port, "hostPort")
            if h_hi - h_lo != c_hi - c_lo and h_lo != h_hi:
                raise RunError(f"invalid ranges specified for container and host Ports: "
                               f"{ctr} and {host_port}")
        else:
            h_lo = h_hi = None
        for i, port in enumerate(range(c_lo, c_hi + 1)):
            key = f"{port}/{proto}"
            exposed[key] = {}
            if h_lo is None:
                hp = ""
            elif h_lo == h_hi and c_lo != c_hi:
                hp = f"{h_lo}"
            elif h_lo == h_hi:
                hp = str(h_lo)
            else:
                hp = str(h_lo + i)
            bindings.setdefault(key, []).append({"HostIp": ip, "HostPort": hp})
    return exposed, bindings


def _port_range(text: str, what: str) -> tuple[int, int]:
    lo_s, dash, hi_s = text.partition("-")
    try:
        lo = int(lo_s)
        hi = int(hi_s) if dash else lo
        if not (0 <= lo <= 65535 and 0 <= hi <= 65535) or hi < lo:
            raise ValueError
    except ValueError:
        raise RunError(f"invalid {what}: {text}") from None
    return lo, hi


_SYSCTL_PREFIXES = ("kernel.msg", "kernel.sem", "kernel.shm", "fs.mqueue.", "net.")
_SYSCTLS = ("kernel.domainname", "kernel.hostname", "kernel.msgmax", "kernel.msgmnb",
            "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax", "kernel.shmmni",
            "kernel.shm_rmid_forced")


def parse_sysctl(text: str) -> tuple[str, str]:
    k, eq, v = text.partition("=")
    if not eq or not (k in _SYSCTLS or k.startswith(("fs.mqueue.", "net."))):
        raise ValueError(f"sysctl '{text}' is not allowed")
    return k, v


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration → nanoseconds (``1m30s``, ``500ms``, ``0``)."""
    units = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
             "m": 60_000_000_000, "h": 3_600_000_000_000}
    t = text
    neg = t.startswith("-")
    t = t.lstrip("+-")
    if t == "0":
        return 0
    if not t:
        raise ValueError(f'time: invalid duration "{text}"')
    total = 0.0
    i = 0
    while i < len(t):
        j = i
        while j < len(t) and (t[j].isdigit() or t[j] == "."):
            j += 1
        if j == i:
            raise ValueError(f'time: invalid duration "{text}"')
        num = float(t[i:j])
        k = j
        while k < len(t) and not (t[k].isdigit() or t[k] == "."):
            k += 1
        unit = t[j:k]
        if unit not in units:
            if not unit:
                raise ValueError(f'time: missing unit in duration "{text}"')
            raise ValueError(f'time: unknown unit "{unit}" in duration "{text}"')
        total += num * units[unit]
        i = k
    return int(-total if neg else total)


# --- the flags --------------------------------------------------------------------------

UNSET = "\0unset"  # the default of a flag whose absence differs from its zero value


def _f(names: str, kind: str = "bool", help: str = "", default=None, metavar: str = "") -> Flag:
    return Flag(names, kind, default, help, metavar)


CREATE_FLAGS = [
    _f("--add-host", "list", "Add a custom host-to-IP mapping (host:ip)"),
    _f("--annotation", "list", "Add an annotation to the container (passed through to the OCI "
                               "runtime)", metavar="map"),
    _f("-a,--attach", "list", "Attach to STDIN, STDOUT or STDERR"),
    _f("--blkio-weight", "str", "Block IO (relative weight), between 10 and 1000, or 0 to "
                                "disable (default 0)", metavar="uint16"),
    _f("--cap-add", "list", "Add Linux capabilities"),
    _f("--cap-drop", "list", "Drop Linux capabilities"),
    _f("--cgroup-parent", "str", "Optional parent cgroup for the container"),
    _f("--cgroupns", "str", "Cgroup namespace to use (host|private)"),
    _f("--cidfile", "str", "Write the container ID to the file"),
    _f("--cpu-period", "str", "Limit CPU CFS (Completely Fair Scheduler) period",
       metavar="int"),
    _f("--cpu-quota", "str", "Limit CPU CFS (Completely Fair Scheduler) quota", metavar="int"),
    _f("--cpu-rt-period", "str", "Limit CPU real-time period in microseconds", metavar="int"),
    _f("--cpu-rt-runtime", "str", "Limit CPU real-time runtime in microseconds",
       metavar="int"),
    _f("-c,--cpu-shares", "str", "CPU shares (relative weight)", metavar="int"),
    _f("--cpus", "str", "Number of CPUs", metavar="decimal"),
    _f("--cpuset-cpus", "str", "CPUs in which to allow execution (0-3, 0,1)"),
    _f("--cpuset-mems", "str", "MEMs in which to allow execution (0-3, 0,1)"),
    _f("--device", "list", "Add a host device to the container"),
    _f("--device-cgroup-rule", "list", "Add a rule to the cgroup allowed devices list"),
    _f("--disable-content-trust", "bool", "Skip image verification (default true)"),
    _f("--dns", "list", "Set custom DNS servers"),
    _f("--dns-option,--dns-opt", "list", "Set DNS options"),
    _f("--dns-search", "list", "Set custom DNS search domains"),
    _f("--domainname", "str", "Container NIS domain name"),
    _f("--entrypoint", "str", "Overwrite the default ENTRYPOINT of the image", default=UNSET),
    _f("-e,--env", "list", "Set environment variables"),
    _f("--env-file", "list", "Read in a file of environment variables"),
    _f("--expose", "list", "Expose a port or a range of ports"),
    _f("--gpus", "str", "GPU devices to add to the container ('all' to pass all GPUs)"),
    _f("--group-add", "list", "Add additional groups to join"),
    _f("--health-cmd", "str", "Command to run to check health"),
    _f("--health-interval", "str", "Time between running the check (ms|s|m|h) (default 0s)",
       metavar="duration"),
    _f("--health-retries", "str", "Consecutive failures needed to report unhealthy",
       metavar="int"),
    _f("--health-start-interval", "str", "Time between running the check during the start "
                                         "period (ms|s|m|h) (default 0s)", metavar="duration"),
    _f("--health-start-period", "str", "Start period for the container to initialize before "
                                       "starting health-retries countdown (ms|s|m|h) (default "
                                       "0s)", metavar="duration"),
    _f("--health-timeout", "str", "Maximum time to allow one check to run (ms|s|m|h) (default "
                                  "0s)", metavar="duration"),
    _f("-h,--hostname", "str", "Container host name"),
    _f("--init", "bool", "Run an init inside the container that forwards signals and reaps "
                         "processes", default=UNSET),
    _f("-i,--interactive", "bool", "Keep STDIN open even if not attached"),
    _f("--ip", "str", "IPv4 address (e.g., 172.30.100.104)"),
    _f("--ip6", "str", "IPv6 address (e.g., 2001:db8::33)"),
    _f("--ipc", "str", "IPC mode to use"),
    _f("--isolation", "str", "Container isolation technology"),
    _f("--kernel-memory", "str", "Kernel memory limit", metavar="bytes"),
    _f("-l,--label", "list", "Set meta data on a container"),
    _f("--label-file", "list", "Read in a line delimited file of labels"),
    _f("--link", "list", "Add link to another container"),
    _f("--link-local-ip", "list", "Container IPv4/IPv6 link-local addresses"),
    _f("--log-driver", "str", "Logging driver for the container"),
    _f("--log-opt", "list", "Log driver options"),
    _f("--mac-address", "str", "Container MAC address (e.g., 92:d0:c6:0a:29:33)"),
    _f("-m,--memory", "str", "Memory limit", metavar="bytes"),
    _f("--memory-reservation", "str", "Memory soft limit", metavar="bytes"),
    _f("--memory-swap", "str", "Swap limit equal to memory plus swap: '-1' to enable unlimited "
                               "swap", metavar="bytes"),
    _f("--memory-swappiness", "str", "Tune container memory swappiness (0 to 100) (default -1)",
       metavar="int"),
    _f("--mount", "list", "Attach a filesystem mount to the container", metavar="mount"),
    _f("--name", "str", "Assign a name to the container"),
    _f("--network,--net", "list", "Connect a container to a network", metavar="network"),
    _f("--network-alias,--net-alias", "list", "Add network-scoped alias for the container"),
    _f("--no-healthcheck", "bool", "Disable any container-specified HEALTHCHECK"),
    _f("--oom-kill-disable", "bool", "Disable OOM Killer"),
    _f("--oom-score-adj", "str", "Tune host's OOM preferences (-1000 to 1000)", metavar="int"),
    _f("--pid", "str", "PID namespace to use"),
    _f("--pids-limit", "str", "Tune container pids limit (set -1 for unlimited)",
       metavar="int"),
    _f("--platform", "str", "Set platform if server is multi-platform capable"),
    _f("--privileged", "bool", "Give extended privileges to this container"),
    _f("-p,--publish", "list", "Publish a container's port(s) to the host"),
    _f("-P,--publish-all", "bool", "Publish all exposed ports to random ports"),
    _f("--pull", "str", 'Pull image before running ("always", "missing", "never")',
       default="missing"),
    _f("-q,--quiet", "bool", "Suppress the pull output"),
    _f("--read-only", "bool", "Mount the container's root filesystem as read only"),
    _f("--restart", "str", "Restart policy to apply when a container exits", default="no"),
    _f("--rm", "bool", "Automatically remove the container and its associated anonymous "
                       "volumes when it exits"),
    _f("--runtime", "str", "Runtime to use for this container"),
    _f("--security-opt", "list", "Security Options"),
    _f("--shm-size", "str", "Size of /dev/shm", metavar="bytes"),
    _f("--stop-signal", "str", "Signal to stop the container"),
    _f("--stop-timeout", "str", "Timeout (in seconds) to stop a container", default=None,
       metavar="int"),
    _f("--storage-opt", "list", "Storage driver options for the container"),
    _f("--sysctl", "list", "Sysctl options", metavar="map"),
    _f("--tmpfs", "list", "Mount a tmpfs directory"),
    _f("-t,--tty", "bool", "Allocate a pseudo-TTY"),
    _f("--ulimit", "list", "Ulimit options", metavar="ulimit"),
    _f("-u,--user", "str", "Username or UID (format: <name|uid>[:<group|gid>])"),
    _f("--userns", "str", "User namespace to use"),
    _f("--uts", "str", "UTS namespace to use"),
    _f("-v,--volume", "list", "Bind mount a volume"),
    _f("--volume-driver", "str", "Optional volume driver for the container"),
    _f("--volumes-from", "list", "Mount volumes from the specified container(s)"),
    _f("-w,--workdir", "str", "Working directory inside the container"),
]

RUN_ONLY_FLAGS = [
    _f("-d,--detach", "bool", "Run container in background and print container ID"),
    _f("--detach-keys", "str", "Override the key sequence for detaching a container"),
    _f("--sig-proxy", "bool", "Proxy received signals to the process (default true)",
       default=True),
]


def _flag_name(flag: Flag) -> str:
    short = [n for n in flag.names if not n.startswith("--")]
    long = [n for n in flag.names if n.startswith("--")][0]
    return f"{short[0]}, {long}" if short else long


_BY_DEST = {f.dest: f for f in CREATE_FLAGS + RUN_ONLY_FLAGS}


def _conv(opts: dict, dest: str, fn, *args):
    """Convert one flag's raw value with ``fn``; a failure is pflag's "invalid argument"."""
    raw = opts[dest]
    if raw is None or raw == "" and fn is not parse_bool:
        return None

    def one(v):
        try:
            return fn(v, *args)
        except ValueError as e:
            raise FlagError(f'invalid argument "{v}" for "{_flag_name(_BY_DEST[dest])}" flag: '
                            f"{e}") from None

    if isinstance(raw, list):
        return [one(v) for v in raw]
    return one(raw)


_NS_MODES = {"pid": ("", "host"), "uts": ("", "host"), "userns": ("", "host"),
             "cgroupns": ("", "host", "private")}


def build(opts: dict, args: list[str]) -> tuple[dict, dict]:
    """(the create body, CLI-side settings: name, pull, cidfile, detach, ...)."""
    image = args[0]
    cmd = args[1:]
    mem = _conv(opts, "memory", ram_in_bytes) or 0
    mem_res = _conv(opts, "memory_reservation", ram_in_bytes) or 0
    swap_raw = opts["memory_swap"]
    swap = -1 if swap_raw == "-1" else (_conv(opts, "memory_swap", ram_in_bytes) or 0)
    shm = _conv(opts, "shm_size", ram_in_bytes) or 0
    _conv(opts, "kernel_memory", ram_in_bytes)
    nano = _conv(opts, "cpus", parse_cpus) or 0
    shares = _conv(opts, "cpu_shares", parse_int) or 0
    period = _conv(opts, "cpu_period", parse_int) or 0
    quota = _conv(opts, "cpu_quota", parse_int) or 0
    rt_period = _conv(opts, "cpu_rt_period", parse_int) or 0
    rt_runtime = _conv(opts, "cpu_rt_runtime", parse_int) or 0
    pids = _conv(opts, "pids_limit", parse_int)
    swappiness = _conv(opts, "memory_swappiness", parse_int)
    swappiness = -1 if swappiness is None else swappiness
    oom_adj = _conv(opts, "oom_score_adj", parse_int, 32) or 0
    blkio = _conv(opts, "blkio_weight", parse_uint, 16) or 0
    stop_timeout = _conv(opts, "stop_timeout", parse_int, 32)
    init = None if opts["init"] == UNSET else opts["init"]
    ulimits = _conv(opts, "ulimit", parse_ulimit) or []
    mounts = _conv(opts, "mount", parse_mount) or []
    env_flags = _conv(opts, "env", env_value) or []
    sysctls = dict(_conv(opts, "sysctl", parse_sysctl) or [])
    health = {}
    for key, dest in (("Interval", "health_interval"), ("Timeout", "health_timeout"),
                      ("StartPeriod", "health_start_period"),
                      ("StartInterval", "health_start_interval")):
        v = _conv(opts, dest, parse_duration)
        if v:
            health[key] = v
    retries = _conv(opts, "health_retries", parse_int) or 0
    attach = []
    for a in opts["attach"]:
        if a.lower() not in ("stdin", "stdout", "stderr"):
            raise FlagError(f'invalid argument "{a}" for "-a, --attach" flag: valid streams are '
                            "STDIN, STDOUT and STDERR")
        attach.append(a.lower())
    for h in opts["add_host"]:
        name, colon, ip = h.partition(":")
        if not colon or not name:
            if "=" in h:
                name, _, ip = h.partition("=")
            else:
                raise FlagError(f'invalid argument "{h}" for "--add-host" flag: bad format for '
                                f'add-host: "{h}"')
    for d in opts["dns"]:
        if not _valid_ip(d):
            raise FlagError(f'invalid argument "{d}" for "--dns" flag: IP address is not '
                            f"correctly formatted: {d}")
    for lab in opts["label"]:
        if not lab.partition("=")[0]:
            raise FlagError(f'invalid argument "{lab}" for "-l, --label" flag: invalid label '
                            f"'{lab}': empty name")

    # Valid values; now how they fit together (docker's parse(), in its order).
    if swappiness != -1 and not 0 <= swappiness <= 100:
        raise RunError(f"invalid value: {swappiness}. Valid memory swappiness range is 0-100")
    binds: list[str] = []
    volumes: dict = {}
    for v in opts["volume"]:
        parts = v.split(":")
        if any(p == "" for p in parts) and len(parts) > 1:
            raise RunError(f"invalid spec: {v}: empty section between colons")
        if len(parts) == 1:
            volumes[v] = {}
            continue
        src = parts[0]
        if src.startswith(".") and not src.startswith("/"):
            src = os.path.abspath(src)
        binds.append(":".join([src, *parts[1:]]))
    tmpfs = {}
    for t in opts["tmpfs"]:
        k, _, v = t.partition(":")
        tmpfs[k] = v
    exposed, port_bindings = parse_ports(opts["publish"])
    for e in opts["expose"]:
        raw, _, proto = e.partition("/")
        lo, hi = _port_range(raw, "containerPort") if raw else (None, None)
        if lo is None:
            raise RunError(f"invalid range format for --expose: {e}")
        for p in range(lo, hi + 1):
            exposed[f"{p}/{proto or 'tcp'}"] = {}
    env = []
    for f in opts["env_file"]:
        env += parse_env_file(f)
    env += env_flags
    labels: dict = {}
    for f in opts["label_file"]:
        for line in _read_lines(f):
            k, _, val = line.partition("=")
            labels[k] = val
    for lab in opts["label"]:
        k, _, val = lab.partition("=")
        labels[k] = val
    for mode in ("pid", "uts", "userns", "cgroupns"):
        val = opts[mode]
        ok = val in _NS_MODES[mode] or (mode == "pid" and val.startswith("container:"))
        if not ok:
            what = {"pid": "PID", "uts": "UTS", "userns": "USER", "cgroupns": "CGROUP"}[mode]
            raise RunError(f"--{mode}: invalid {what} mode")
    restart = parse_restart(opts["restart"])
    log_opts = {}
    for lo in opts["log_opt"]:
        k, _, val = lo.partition("=")
        log_opts[k] = val
    if opts["log_driver"] == "none" and opts["log_opt"]:
        raise RunError(f"invalid logging opts for driver {opts['log_driver']}")
    security = []
    masked = readonly = None
    for so in opts["security_opt"]:
        k, eq, val = so.partition("=")
        if not eq and k != "no-new-privileges":
            k, eq, val = so.partition(":")
        if (not eq or not val) and k != "no-new-privileges":
            raise RunError(f'Invalid --security-opt: "{so}"')
        if so == "systempaths=unconfined":
            masked, readonly = [], []
            continue
        if k == "seccomp" and val not in ("builtin", "unconfined"):
            try:
                with open(val, "rb") as fh:
                    data = fh.read()
            except OSError as e:
                raise RunError(f"opening seccomp profile ({val}) failed: open {val}: "
                               f"{(e.strerror or '').lower()}") from None
            from berth import fastjson

            try:
                so = "seccomp=" + fastjson.dumps(fastjson.loads(data))
            except ValueError as e:
                raise RunError(f"compacting json for seccomp profile ({val}) failed: {e}") \
                    from None
        security.append(so)
    storage = {}
    for s in opts["storage_opt"]:
        k, eq, val = s.partition("=")
        if not eq:
            raise RunError("invalid storage option")
        storage[k] = val
    health_cfg = None
    have_health = bool(opts["health_cmd"] or health or retries)
    if opts["no_healthcheck"]:
        if have_health:
            raise RunError("--no-healthcheck conflicts with --health-* options")
        health_cfg = {"Test": ["NONE"]}
    elif have_health:
        for key, flag in (("Interval", "interval"), ("Timeout", "timeout"),
                          ("StartPeriod", "start-period"), ("StartInterval", "start-interval")):
            if health.get(key, 0) < 0:
                raise RunError(f"--health-{flag} cannot be negative")
        if retries < 0:
            raise RunError("--health-retries cannot be negative")
        health_cfg = {"Test": ["CMD-SHELL", opts["health_cmd"]] if opts["health_cmd"] else None,
                      **health, "Retries": retries}
    devices = []
    for d in opts["device"]:
        parts = d.split(":")
        src = parts[0]
        dst, perms = src, "rwm"
        if len(parts) >= 2:
            if parts[1] and all(c in "rwm" for c in parts[1]) and len(parts) == 2:
                perms = parts[1]
            else:
                dst = parts[1]
        if len(parts) == 3:
            perms = parts[2]
        if len(parts) > 3:
            raise RunError(f"invalid device specification: {d}")
        devices.append({"PathOnHost": src, "PathInContainer": dst, "CgroupPermissions": perms})

    tty = opts["tty"]
    stdin_open = opts["interactive"]
    attach_stdin = "stdin" in attach or stdin_open
    attach_stdout = "stdout" in attach or not attach
    attach_stderr = "stderr" in attach or not attach
    entrypoint = None
    if opts["entrypoint"] != UNSET:
        entrypoint = [opts["entrypoint"]] if opts["entrypoint"] else [""]
    networks = opts["network"]
    network_mode = networks[0] if networks else "default"

    config: dict = {
        "Hostname": opts["hostname"], "Domainname": opts["domainname"], "User": opts["user"],
        "AttachStdin": attach_stdin, "AttachStdout": attach_stdout,
        "AttachStderr": attach_stderr, "Tty": tty, "OpenStdin": stdin_open,
        "StdinOnce": stdin_open and attach_stdin, "Env": env, "Cmd": cmd or None,
        "Image": image, "Volumes": volumes or None, "WorkingDir": opts["workdir"],
        "Entrypoint": entrypoint, "Labels": labels, "StopSignal": opts["stop_signal"] or None,
    }
    if exposed:
        config["ExposedPorts"] = exposed
    if health_cfg is not None:
        config["Healthcheck"] = health_cfg
    if stop_timeout is not None:
        config["StopTimeout"] = stop_timeout
    if opts["mac_address"]:
        config["MacAddress"] = opts["mac_address"]
    host: dict = {
        "Binds": binds or None, "ContainerIDFile": opts["cidfile"],
        "LogConfig": {"Type": opts["log_driver"], "Config": log_opts},
        "NetworkMode": network_mode, "PortBindings": port_bindings,
        "RestartPolicy": restart, "AutoRemove": opts["rm"],
        "VolumeDriver": opts["volume_driver"], "VolumesFrom": opts["volumes_from"] or None,
        "CapAdd": opts["cap_add"] or None, "CapDrop": opts["cap_drop"] or None,
        "CgroupnsMode": opts["cgroupns"], "Dns": opts["dns"], "DnsOptions": opts["dns_option"],
        "DnsSearch": opts["dns_search"], "ExtraHosts": opts["add_host"] or None,
        "GroupAdd": opts["group_add"] or None, "IpcMode": opts["ipc"], "Cgroup": "",
        "Links": opts["link"] or None, "OomScoreAdj": oom_adj, "PidMode": opts["pid"],
        "Privileged": opts["privileged"], "PublishAllPorts": opts["publish_all"],
        "ReadonlyRootfs": opts["read_only"], "SecurityOpt": security or None,
        "StorageOpt": storage or None, "Tmpfs": tmpfs or None, "UTSMode": opts["uts"],
        "UsernsMode": opts["userns"], "ShmSize": shm, "Sysctls": sysctls or None,
        "Runtime": opts["runtime"], "Isolation": opts["isolation"],
        "CpuShares": shares, "Memory": mem, "NanoCpus": nano,
        "CgroupParent": opts["cgroup_parent"], "BlkioWeight": blkio,
        "CpuPeriod": period, "CpuQuota": quota, "CpuRealtimePeriod": rt_period,
        "CpuRealtimeRuntime": rt_runtime, "CpusetCpus": opts["cpuset_cpus"],
        "CpusetMems": opts["cpuset_mems"], "Devices": devices,
        "DeviceCgroupRules": opts["device_cgroup_rule"] or None,
        "MemoryReservation": mem_res, "MemorySwap": swap, "MemorySwappiness": swappiness,
        "OomKillDisable": opts["oom_kill_disable"], "PidsLimit": pids,
        "Ulimits": ulimits or None, "Mounts": mounts or None,
    }
    if init is not None:
        host["Init"] = init
    if masked is not None:
        host["MaskedPaths"] = masked
        host["ReadonlyPaths"] = readonly
    if opts["annotation"]:
        host["Annotations"] = dict(a.partition("=")[::2] for a in opts["annotation"])
    if opts["rm"] and restart["Name"] not in ("", "no"):
        raise RunError("conflicting options: cannot specify both --restart and --rm")
    endpoints: dict = {}
    ep: dict = {}
    if opts["network_alias"]:
        ep["Aliases"] = list(opts["network_alias"])
    if opts["ip"] or opts["ip6"]:
        ep["IPAMConfig"] = {"IPv4Address": opts["ip"], "IPv6Address": opts["ip6"]}
    if ep:
        if network_mode in ("default", "bridge", "host", "none") and opts["network_alias"]:
            raise RunError("network-scoped aliases are only supported for user-defined "
                           "networks")
        endpoints[network_mode] = ep
    for n in networks[1:]:
        endpoints[n] = {}
    body = {**config, "HostConfig": host, "NetworkingConfig": {"EndpointsConfig": endpoints}}
    side = {"name": opts["name"], "pull": opts["pull"], "cidfile": opts["cidfile"],
            "platform": opts["platform"], "quiet": opts["quiet"], "attach": attach}
    if opts["pull"] not in ("always", "missing", "never"):
        raise RunError(f'invalid pull option: \'{opts["pull"]}\': must be one of "always", '
                       '"missing" or "never"')
    return body, side


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return [ln.strip() for ln in f.read().splitlines()
                    if ln.strip() and not ln.lstrip().startswith("#")]
    except OSError as e:
        raise RunError(f"open {path}: {(e.strerror or str(e)).lower()}") from None
