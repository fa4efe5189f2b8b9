"""The create request's ``Config`` and ``HostConfig``: checked with dockerd's words, then
completed with the defaults ``docker inspect`` shows.

``check(config, host, ncpu, runtimes)`` raises ``InvalidArgument`` (400) for the first thing
dockerd would refuse (``Minimum memory limit allowed is 6MB``, ``Range of CPUs is from 0.01 to
2.00, as there are only 2 CPUs available``, ``invalid restart policy 'bogus'``, ...), before
anything is created. ``complete(config, host)`` fills in what a client may leave out, so that
every container's ``HostConfig`` has Docker's full shape. Pure (reads /dev for --device and
the CPU list for --cpuset-cpus).
"""

from __future__ import annotations

import os

from berth.errors import InvalidArgument, NotFound

from . import capabilities

MIN_MEMORY = 6 * 1024 * 1024
SIGNALS = {
    "ABRT": 6, "ALRM": 14, "BUS": 7, "CHLD": 17, "CLD": 17, "CONT": 18, "FPE": 8, "HUP": 1,
    "ILL": 4, "INT": 2, "IO": 29, "IOT": 6, "KILL": 9, "PIPE": 13, "POLL": 29, "PROF": 27,
    "PWR": 30, "QUIT": 3, "SEGV": 11, "STKFLT": 16, "STOP": 19, "SYS": 31, "TERM": 15,
    "TRAP": 5, "TSTP": 20, "TTIN": 21, "TTOU": 22, "URG": 23, "USR1": 10, "USR2": 12,
    "VTALRM": 26, "WINCH": 28, "XCPU": 24, "XFSZ": 25,
}
RESTART_POLICIES = ("", "no", "always", "unless-stopped", "on-failure")
LOG_DRIVERS = ("json-file", "none")


class InvalidConfig(InvalidArgument):
    pass


def parse_signal(text: str | int | None, default: int = 15) -> int:
    """``SIGTERM``, ``TERM``, ``15``, ``RTMIN+3`` → the number; Docker's message otherwise."""
    if text is None or text == "":
        return default
    if isinstance(text, int):
        return text
    t = text.upper()
    if t.isdigit():
        n = int(t)
        if 0 < n <= 64:
            return n
        raise InvalidConfig(f"Invalid signal: {text}")
    if t.startswith("SIG"):
        t = t[3:]
    if t in SIGNALS:
        return SIGNALS[t]
    if t.startswith("RTMIN") or t.startswith("RTMAX"):
        base = 34 if t.startswith("RTMIN") else 64
        rest = t[5:]
        try:
            off = int(rest) if rest else 0
        except ValueError:
            raise InvalidConfig(f"Invalid signal: {text}") from None
        n = base + off
        if 34 <= n <= 64:
            return n
    raise InvalidConfig(f"Invalid signal: {text}")


def parse_cpuset(text: str) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        lo_s, dash, hi_s = part.partition("-")
        if not lo_s.isdigit() or (dash and not hi_s.isdigit()):
            raise InvalidConfig(f"invalid format: {text}")
        lo = int(lo_s)
        hi = int(hi_s) if dash else lo
        if hi < lo:
            raise InvalidConfig(f"invalid format: {text}")
        out.update(range(lo, hi + 1))
    return out


def _online_cpus() -> str:
    try:
        with open("/sys/devices/system/cpu/online") as f:
            return f.read().strip()
    except OSError:
        n = os.cpu_count() or 1
        return "0" if n == 1 else f"0-{n - 1}"


def check(config: dict, host: dict, ncpu: int, runtimes: tuple[str, ...]) -> None:
    mem = host.get("Memory") or 0
    swap = host.get("MemorySwap") or 0
    res = host.get("MemoryReservation") or 0
    if mem < 0:
        raise InvalidConfig("invalid memory limit: memory can not be negative")
    if 0 < mem < MIN_MEMORY:
        raise InvalidConfig("Minimum memory limit allowed is 6MB")
    if mem == 0 and swap > 0:
        raise InvalidConfig("You should always set the Memory limit when using Memoryswap "
                            "limit, see usage")
    if mem > 0 and 0 < swap < mem:
        raise InvalidConfig("Minimum memoryswap limit should be larger than memory limit, see "
                            "usage")
    if mem > 0 and res > mem:
        raise InvalidConfig("Minimum memory limit can not be less than memory reservation "
                            "limit, see usage")
    if res and res < MIN_MEMORY:
        raise InvalidConfig("Minimum memory reservation allowed is 6MB")
    sw = host.get("MemorySwappiness")
    if sw is not None and sw != -1 and not 0 <= sw <= 100:
        raise InvalidConfig(f"Invalid value: {sw}, valid memory swappiness range is 0-100")
    if (host.get("CpuShares") or 0) < 0:
        raise InvalidConfig("shares: invalid argument")
    nano = host.get("NanoCpus") or 0
    if nano and (host.get("CpuPeriod") or host.get("CpuQuota")):
        raise InvalidConfig("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if nano < 0 or nano > ncpu * 1_000_000_000 or 0 < nano < 10_000_000:
        raise InvalidConfig(f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} "
                            "CPUs available")
    period = host.get("CpuPeriod") or 0
    if period and not 1000 <= period <= 1_000_000:
        raise InvalidConfig("CPU cfs period can not be less than 1ms (i.e. 1000) or larger "
                            "than 1s (i.e. 1000000)")
    quota = host.get("CpuQuota") or 0
    if quota and quota < 1000 and quota != -1:
        raise InvalidConfig("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    for key, what in (("CpusetCpus", "cpus"), ("CpusetMems", "mems")):
        val = host.get(key) or ""
        if not val:
            continue
        try:
            want = parse_cpuset(val)
        except InvalidConfig as e:
            raise InvalidConfig(f"Invalid value {val} for cpuset {what}: {e}") from None
        if key == "CpusetCpus":
            online = _online_cpus()
            if not want <= parse_cpuset(online):
                raise InvalidConfig(f"Requested CPUs are not available - requested {val}, "
                                    f"available: {online}")
        elif want - {0}:
            raise InvalidConfig(f"Requested memory nodes are not available - requested {val}, "
                                "available: 0")
    blkio = host.get("BlkioWeight") or 0
    if blkio and not 10 <= blkio <= 1000:
        raise InvalidConfig("Range of blkio weight is from 10 to 1000")
    adj = host.get("OomScoreAdj") or 0
    if not -1000 <= adj <= 1000:
        raise InvalidConfig(f"Invalid value {adj}, range for oom score adj is [-1000, 1000]")
    if (host.get("ShmSize") or 0) < 0:
        raise InvalidConfig("SHM size can not be less than 0")
    ipc = host.get("IpcMode") or ""
    if ipc not in ("", "private", "shareable", "host", "none") and \
            not ipc.startswith("container:"):
        raise InvalidConfig(f"Invalid IPC mode: {ipc}")
    pid = host.get("PidMode") or ""
    if pid not in ("", "host") and not pid.startswith("container:"):
        raise InvalidConfig(f"Invalid PID mode: {pid}")
    uts = host.get("UTSMode") or ""
    if uts not in ("", "host"):
        raise InvalidConfig(f"Invalid UTS mode: {uts}")
    if (host.get("CgroupnsMode") or "") not in ("", "host", "private"):
        raise InvalidConfig(f"invalid cgroup namespace mode: {host['CgroupnsMode']}")
    if (host.get("UsernsMode") or "") not in ("", "host"):
        raise InvalidConfig(f"invalid USER mode: {host['UsernsMode']}")
    iso = host.get("Isolation") or ""
    if iso not in ("", "default"):
        raise InvalidConfig(f'Invalid isolation: "{iso}" - linux only supports \'default\'')
    rt = host.get("Runtime") or ""
    if rt and rt not in runtimes:
        raise InvalidConfig(f"Unknown runtime specified {rt}")
    pol = host.get("RestartPolicy") or {}
    name = pol.get("Name") or ""
    count = pol.get("MaximumRetryCount") or 0
    if name not in RESTART_POLICIES:
        raise InvalidConfig(f"invalid restart policy '{name}'")
    if count < 0:
        raise InvalidConfig("maximum retry count cannot be negative")
    if count and name != "on-failure":
        raise InvalidConfig(f"maximum retry count cannot be used with restart policy '{name}'")
    if host.get("AutoRemove") and name not in ("", "no"):
        raise InvalidConfig("can't create 'AutoRemove' container with restart policy")
    drv = (host.get("LogConfig") or {}).get("Type") or ""
    if drv and drv not in LOG_DRIVERS:
        raise NotFound(f'error looking up logging plugin {drv}: plugin "{drv}" not found')
    for key in ("CapAdd", "CapDrop"):
        try:
            capabilities.effective(host.get(key) if key == "CapAdd" else None,
                                   host.get(key) if key == "CapDrop" else None)
        except InvalidArgument as e:
            raise InvalidConfig(f"invalid {key}: {e}") from None
    if config.get("StopSignal"):
        parse_signal(config["StopSignal"])
    st = config.get("StopTimeout")
    if st is not None and not isinstance(st, int):
        raise InvalidConfig("invalid stop timeout")
    for d in host.get("Devices") or []:
        p = d.get("PathOnHost") or ""
        if not os.path.exists(p):
            raise InvalidConfig(f'error gathering device information while adding custom device '
                                f'"{p}": no such file or directory')
    for k in (host.get("Sysctls") or {}):
        if host.get("NetworkMode") == "host" and k.startswith("net."):
            raise InvalidConfig(f"sysctl '{k}' not allowed in host network namespace")
    if config.get("Hostname") and len(config["Hostname"]) > 63:
        raise InvalidConfig(f"invalid hostname format: {config['Hostname']}")


def adjust(host: dict) -> list[str]:
    """What this kernel cannot do is dropped with dockerd's warning (the create succeeds)."""
    warnings = []
    if (host.get("BlkioWeight") or 0) and not os.path.exists("/sys/fs/cgroup/blkio/blkio.weight") \
            and not os.path.exists("/sys/fs/cgroup/io.weight"):
        warnings.append("Your kernel does not support Block I/O weight or the cgroup is not "
                        "mounted. Weight discarded.")
        host["BlkioWeight"] = 0
    if (host.get("MemorySwap") or 0) > 0 and os.path.isdir("/sys/fs/cgroup/memory") and \
            not os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"):
        warnings.append("Your kernel does not support swap limit capabilities or the cgroup is "
                        "not mounted. Memory limited without swap.")
        host["MemorySwap"] = -1
    return warnings


_HOST_DEFAULTS: tuple[tuple[str, object], ...] = (
    ("Binds", None), ("ContainerIDFile", ""), ("LogConfig", None), ("NetworkMode", "default"),
    ("PortBindings", {}), ("RestartPolicy", None), ("AutoRemove", False), ("VolumeDriver", ""),
    ("VolumesFrom", None), ("ConsoleSize", [0, 0]), ("Annotations", None), ("CapAdd", None),
    ("CapDrop", None), ("CgroupnsMode", "private"), ("Dns", []), ("DnsOptions", []),
    ("DnsSearch", []), ("ExtraHosts", None), ("GroupAdd", None), ("IpcMode", "private"),
    ("Cgroup", ""), ("Links", None), ("OomScoreAdj", 0), ("PidMode", ""), ("Privileged", False),
    ("PublishAllPorts", False), ("ReadonlyRootfs", False), ("SecurityOpt", None),
    ("StorageOpt", None), ("Tmpfs", None), ("UTSMode", ""), ("UsernsMode", ""), ("ShmSize", 0),
    ("Sysctls", None), ("Runtime", ""), ("Isolation", ""), ("CpuShares", 0), ("Memory", 0),
    ("NanoCpus", 0), ("CgroupParent", ""), ("BlkioWeight", 0), ("BlkioWeightDevice", []),
    ("BlkioDeviceReadBps", []), ("BlkioDeviceWriteBps", []), ("BlkioDeviceReadIOps", []),
    ("BlkioDeviceWriteIOps", []), ("CpuPeriod", 0), ("CpuQuota", 0), ("CpuRealtimePeriod", 0),
    ("CpuRealtimeRuntime", 0), ("CpusetCpus", ""), ("CpusetMems", ""), ("Devices", []),
    ("DeviceCgroupRules", None), ("DeviceRequests", None), ("KernelMemory", 0),
    ("KernelMemoryTCP", 0), ("MemoryReservation", 0), ("MemorySwap", 0),
    ("MemorySwappiness", None), ("OomKillDisable", False), ("PidsLimit", None),
    ("Ulimits", []), ("CpuCount", 0), ("CpuPercent", 0), ("IOMaximumIOps", 0),
    ("IOMaximumBandwidth", 0), ("Mounts", None), ("MaskedPaths", None),
    ("ReadonlyPaths", None), ("Init", None),
)

_CONFIG_DEFAULTS: tuple[tuple[str, object], ...] = (
    ("Hostname", ""), ("Domainname", ""), ("User", ""), ("AttachStdin", False),
    ("AttachStdout", False), ("AttachStderr", False), ("Tty", False), ("OpenStdin", False),
    ("StdinOnce", False), ("Env", None), ("Cmd", None), ("Image", ""), ("Volumes", None),
    ("WorkingDir", ""), ("Entrypoint", None), ("OnBuild", None), ("Labels", {}),
)


def complete(config: dict, host: dict, default_runtime: str) -> tuple[dict, dict]:
    """Copies of ``config`` and ``host`` with every field Docker shows."""
    c = {k: config.get(k, d) for k, d in _CONFIG_DEFAULTS}
    for k in ("ExposedPorts", "Healthcheck", "StopSignal", "StopTimeout", "MacAddress",
              "ArgsEscaped", "Shell"):
        if config.get(k) is not None:
            c[k] = config[k]
    if c["Labels"] is None:
        c["Labels"] = {}
    h = {}
    for k, d in _HOST_DEFAULTS:
        v = host.get(k, d)
        h[k] = d if v is None and d is not None else v
    if not h["LogConfig"] or not h["LogConfig"].get("Type"):
        h["LogConfig"] = {"Type": "json-file", "Config": (h["LogConfig"] or {}).get("Config")
                          or {}}
    if h["LogConfig"].get("Config") is None:
        h["LogConfig"]["Config"] = {}
    pol = h["RestartPolicy"] or {}
    h["RestartPolicy"] = {"Name": pol.get("Name") or "no",
                          "MaximumRetryCount": pol.get("MaximumRetryCount") or 0}
    if not h["NetworkMode"]:
        h["NetworkMode"] = "default"
    if not h["CgroupnsMode"]:
        h["CgroupnsMode"] = "private"
    if not h["IpcMode"]:
        h["IpcMode"] = "private"
    if not h["ShmSize"]:
        h["ShmSize"] = 64 * 1024 * 1024
    if not h["Runtime"]:
        h["Runtime"] = default_runtime
    if h["PortBindings"] is None:
        h["PortBindings"] = {}
    if h["MemorySwappiness"] == -1:
        h["MemorySwappiness"] = None
    if h["PidsLimit"] is not None and h["PidsLimit"] <= 0:
        h["PidsLimit"] = None
    for k in ("Annotations", "Init", "Mounts", "StorageOpt", "Sysctls", "Tmpfs"):
        if h.get(k) is None:
            del h[k]  # omitempty in dockerd's HostConfig: absent rather than null
    if h["MaskedPaths"] is None and not h["Privileged"]:
        from .oci import MASKED_PATHS, READONLY_PATHS

        h["MaskedPaths"] = list(MASKED_PATHS)
        h["ReadonlyPaths"] = list(READONLY_PATHS)
    return c, h
