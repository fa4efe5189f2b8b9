"""The OCI runtime spec (config.json) of a container, with Docker's defaults.

``build(SpecInput)`` turns what the engine knows about a container (its Docker ``Config`` and
``HostConfig``, the resolved user, the mounts it asked for with their host paths, its /etc
files, its network namespace) into the runtime-spec 1.1 document a runtime with runc's command
line runs. Pure: it reads nothing but ``/dev`` (for --privileged, which gives the host's
devices, as Docker does) and writes nothing.

Docker's defaults, and where they differ by flag:

- namespaces: mount, uts, pid, ipc, cgroup always; network is a path from the network service,
  a new empty one (``--network none``) or the host's (``--network host``: none listed);
- capabilities: the default set (berth.engine.capabilities) ± --cap-add/--cap-drop, all with
  --privileged; bounding = effective = permitted, nothing inheritable or ambient;
- seccomp: the default profile (berth.engine.seccomp) resolved for those capabilities, a
  profile given with ``seccomp=<json>``, none with ``seccomp=unconfined`` or --privileged;
- masked paths (/proc/kcore, /proc/keys, ...) and read-only paths (/proc/sys, ...), none with
  --privileged; /sys read-only (read-write with --privileged), cgroupfs read-only;
- devices: the cgroup denies all but null, zero, full, random, urandom, tty, console, ptmx,
  pts; --privileged allows all and creates every host device;
- mounts: /proc, /dev (tmpfs), /dev/pts, /dev/mqueue, /dev/shm (64 MiB, --shm-size),
  /sys, /sys/fs/cgroup, then /etc/resolv.conf, /etc/hostname, /etc/hosts, then the user's
  mounts sorted by depth so that a parent is mounted before what lies inside it. A user mount
  at a default destination replaces the default.

Invariant: the same input gives the same document (lists are ordered), so a bundle written
again at restart is byte-identical.
"""

from __future__ import annotations

import os

from . import capabilities, seccomp

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
INIT_PATH = "/sbin/docker-init"  # where --init's reaper is bound in the container, as Docker

MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# (type, major, minor) the device cgroup allows besides what the runtime creates by default
_ALLOWED_DEVICES = (
    ("c", 1, 3),    # null
    ("c", 1, 5),    # zero
    ("c", 1, 7),    # full
    ("c", 1, 8),    # random
    ("c", 1, 9),    # urandom
    ("c", 5, 0),    # tty
    ("c", 5, 1),    # console
    ("c", 5, 2),    # ptmx
    ("c", 136, None),  # pts/*
    ("c", 10, 200),  # net/tun: Docker allows it; the device node is absent unless added
)

RLIMITS = {
    "core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA", "fsize": "RLIMIT_FSIZE",
    "locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK", "msgqueue": "RLIMIT_MSGQUEUE",
    "nice": "RLIMIT_NICE", "nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC",
    "rss": "RLIMIT_RSS", "rtprio": "RLIMIT_RTPRIO", "rttime": "RLIMIT_RTTIME",
    "sigpending": "RLIMIT_SIGPENDING", "stack": "RLIMIT_STACK", "as": "RLIMIT_AS",
}

CPU_PERIOD = 100_000  # µs; what --cpus divides, as Docker


class SpecInput:
    """Everything ``build`` needs, already validated and resolved by the engine.

    ``mounts`` are the user's mounts as OCI mounts (destination, type, source, options), host
    paths resolved; ``etc_files`` maps /etc/hosts, /etc/hostname, /etc/resolv.conf to files on
    the host; ``netns`` is None for a new empty namespace, ``"host"`` for the host's, or the
    path of a namespace to join; ``user`` is (uid, gid, additional gids).
    """

    __slots__ = ("annotations", "args", "cgroups_path", "config", "cwd", "env", "etc_files",
                 "host", "init_binary", "mounts", "netns", "rootfs", "seccomp_profile",
                 "user")

    def __init__(self, *, config: dict, host: dict, rootfs: str, args: list[str],
                 env: list[str], cwd: str, user: tuple[int, int, list[int]],
                 mounts: list[dict] | None = None, etc_files: dict[str, str] | None = None,
                 netns: str | None = None, cgroups_path: str = "",
                 init_binary: str | None = None, seccomp_profile: dict | None = None,
                 annotations: dict[str, str] | None = None) -> None:
        self.config = config
        self.host = host
        self.rootfs = rootfs
        self.args = args
        self.env = env
        self.cwd = cwd
        self.user = user
        self.mounts = mounts or []
        self.etc_files = etc_files or {}
        self.netns = netns
        self.cgroups_path = cgroups_path
        self.init_binary = init_binary
        self.seccomp_profile = seccomp_profile
        self.annotations = annotations or {}


def security_options(host: dict) -> tuple[bool, str | None, bool]:
    """``HostConfig.SecurityOpt`` → (no-new-privileges, seccomp profile or None, unconfined).

    Accepts Docker's spellings: ``no-new-privileges``, ``no-new-privileges=true|false``,
    ``no-new-privileges:true``, ``seccomp=unconfined|builtin|<json>``, ``seccomp:<...>``;
    ``label=``/``apparmor=`` are accepted and have no effect here (no LSM on this kernel).
    """
    from berth.errors import InvalidArgument

    nnp = False
    profile = None
    unconfined = False
    for opt in host.get("SecurityOpt") or []:
        if opt == "no-new-privileges":
            nnp = True
            continue
        k, sep, v = opt.partition("=")
        if not sep:
            k, sep, v = opt.partition(":")
        if not sep:
            raise InvalidArgument(f"invalid --security-opt 1: {opt!r}")
        if k == "no-new-privileges":
            if v not in ("true", "false", "1", "0"):
                raise InvalidArgument(f"invalid --security-opt 2: {opt!r}")
            nnp = v in ("true", "1")
        elif k == "seccomp":
            if v == "unconfined":
                unconfined = True
                profile = None
            elif v in ("builtin", "default"):
                unconfined = False
                profile = None
            else:
                profile = v
        elif k in ("label", "apparmor", "systempaths", "writable-cgroups"):
            continue
        else:
            raise InvalidArgument(f"invalid --security-opt 2: {opt!r}")
    return nnp, profile, unconfined


def _depth(path: str) -> int:
    return len([p for p in os.path.normpath(path).split("/") if p])


def _default_mounts(host: dict, privileged: bool) -> list[dict]:
    shm = host.get("ShmSize") or DEFAULT_SHM_SIZE
    ro = [] if privileged else ["ro"]
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", *ro]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", *ro]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm // 1024}k"]},
    ]


def host_devices(root: str = "/dev") -> list[dict]:
    """Every char and block device under /dev, as --privileged passes them (Docker skips
    /dev/pts, /dev/mqueue, /dev/shm and the console, which the runtime makes itself)."""
    import stat

    out = []
    skip = {"pts", "mqueue", "shm", "console", "fd", "core"}
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == root:
            dirnames[:] = [d for d in dirnames if d not in skip]
        for name in sorted(filenames):
            p = os.path.join(dirpath, name)
            if dirpath == root and name in skip:
                continue
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode):
                kind = "c"
            elif stat.S_ISBLK(st.st_mode):
                kind = "b"
            else:
                continue
            out.append({"path": p, "type": kind, "major": os.major(st.st_rdev),
                        "minor": os.minor(st.st_rdev), "fileMode": stat.S_IMODE(st.st_mode),
                        "uid": st.st_uid, "gid": st.st_gid})
    out.sort(key=lambda d: d["path"])
    return out


def _device(d: dict) -> dict | None:
    """``--device HOST[:CONTAINER[:PERMS]]`` → an OCI device (a char or block node)."""
    import stat

    try:
        st = os.stat(d["PathOnHost"])
    except OSError:
        return None
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        return None
    return {"path": d.get("PathInContainer") or d["PathOnHost"], "type": kind,
            "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
            "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}


def resources(host: dict) -> dict:
    """``HostConfig`` resource fields → OCI ``linux.resources`` (cgroup settings)."""
    res: dict = {}
    mem: dict = {}
    memory = host.get("Memory") or 0
    if memory > 0:
        mem["limit"] = memory
        swap = host.get("MemorySwap") or 0
        if swap == 0:
            mem["swap"] = memory * 2  # Docker: as much swap as memory unless told otherwise
        elif swap > 0:
            mem["swap"] = swap
        elif swap == -1:
            mem["swap"] = -1
    if (host.get("MemoryReservation") or 0) > 0:
        mem["reservation"] = host["MemoryReservation"]
    sw = host.get("MemorySwappiness")
    if sw is not None and sw >= 0:
        mem["swappiness"] = sw
    if host.get("OomKillDisable"):
        mem["disableOOMKiller"] = True
    if mem:
        res["memory"] = mem
    cpu: dict = {}
    if host.get("CpuShares"):
        cpu["shares"] = host["CpuShares"]
    nano = host.get("NanoCpus") or 0
    if nano > 0:
        cpu["period"] = CPU_PERIOD
        cpu["quota"] = nano * CPU_PERIOD // 1_000_000_000
    else:
        if host.get("CpuPeriod"):
            cpu["period"] = host["CpuPeriod"]
        if host.get("CpuQuota"):
            cpu["quota"] = host["CpuQuota"]
    if host.get("CpuRealtimePeriod"):
        cpu["realtimePeriod"] = host["CpuRealtimePeriod"]
    if host.get("CpuRealtimeRuntime"):
        cpu["realtimeRuntime"] = host["CpuRealtimeRuntime"]
    if host.get("CpusetCpus"):
        cpu["cpus"] = host["CpusetCpus"]
    if host.get("CpusetMems"):
        cpu["mems"] = host["CpusetMems"]
    if cpu:
        res["cpu"] = cpu
    pids = host.get("PidsLimit")
    if pids is not None and pids > 0:
        res["pids"] = {"limit": pids}
    if host.get("BlkioWeight"):
        res["blockIO"] = {"weight": host["BlkioWeight"]}
    return res


def _devices_cgroup(privileged: bool) -> list[dict]:
    if privileged:
        return [{"allow": True, "access": "rwm"}]
    rules: list[dict] = [{"allow": False, "access": "rwm"}]
    for kind, major, minor in _ALLOWED_DEVICES:
        r: dict = {"allow": True, "type": kind, "major": major, "access": "rwm"}
        if minor is not None:
            r["minor"] = minor
        rules.append(r)
    return rules


def build(s: SpecInput) -> dict:
    cfg, host = s.config, s.host
    privileged = bool(host.get("Privileged"))
    caps = capabilities.effective(host.get("CapAdd"), host.get("CapDrop"), privileged)
    nnp, profile_text, unconfined = security_options(host)
    uid, gid, gids = s.user
    args = list(s.args)
    if s.init_binary:
        args = [INIT_PATH, "--", *args]
    process: dict = {
        "terminal": bool(cfg.get("Tty")),
        "user": {"uid": uid, "gid": gid},
        "args": args,
        "env": list(s.env),
        "cwd": s.cwd or "/",
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": nnp,
    }
    if gids:
        process["user"]["additionalGids"] = list(gids)
    if host.get("OomScoreAdj"):
        process["oomScoreAdj"] = host["OomScoreAdj"]
    rlimits = []
    for u in host.get("Ulimits") or []:
        rlimits.append({"type": RLIMITS[u["Name"]], "hard": u["Hard"], "soft": u["Soft"]})
    if rlimits:
        process["rlimits"] = rlimits
    if cfg.get("Tty"):
        process["consoleSize"] = {"height": 24, "width": 80}

    user_mounts = sorted(s.mounts, key=lambda m: _depth(m["destination"]))
    taken = {os.path.normpath(m["destination"]) for m in user_mounts}
    mounts = [m for m in _default_mounts(host, privileged) if m["destination"] not in taken]
    for dest in ("/etc/resolv.conf", "/etc/hostname", "/etc/hosts"):
        src = s.etc_files.get(dest)
        if src and dest not in taken:
            mounts.append({"destination": dest, "type": "bind", "source": src,
                           "options": ["rbind", "rprivate"]})
    if s.init_binary:
        mounts.append({"destination": INIT_PATH, "type": "bind", "source": s.init_binary,
                       "options": ["bind", "ro", "rprivate"]})
    mounts += user_mounts

    namespaces = [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]
    if host.get("CgroupnsMode", "private") != "host":
        namespaces.append({"type": "cgroup"})
    if s.netns != "host":
        ns: dict = {"type": "network"}
        if s.netns:
            ns["path"] = s.netns
        namespaces.append(ns)

    linux: dict = {
        "namespaces": namespaces,
        "resources": {"devices": _devices_cgroup(privileged), **resources(host)},
    }
    if s.cgroups_path:
        linux["cgroupsPath"] = s.cgroups_path
    if privileged:
        linux["devices"] = host_devices()
    elif host.get("Devices"):
        linux["devices"] = []
        for d in host["Devices"]:
            dev = _device(d)
            if dev is not None:
                linux["devices"].append(dev)
                linux["resources"]["devices"].append(
                    {"allow": True, "type": dev["type"], "major": dev["major"],
                     "minor": dev["minor"], "access": d.get("CgroupPermissions") or "rwm"})
    else:
        masked = host.get("MaskedPaths")
        ro_paths = host.get("ReadonlyPaths")
        linux["maskedPaths"] = list(MASKED_PATHS if masked is None else masked)
        linux["readonlyPaths"] = list(READONLY_PATHS if ro_paths is None else ro_paths)
    if host.get("Sysctls"):
        linux["sysctl"] = dict(sorted(host["Sysctls"].items()))
    if not privileged and not unconfined:
        profile = s.seccomp_profile
        if profile is None:
            profile = seccomp.parse_profile(profile_text) if profile_text \
                else seccomp.DEFAULT_PROFILE
        linux["seccomp"] = seccomp.to_oci(profile, caps)

    spec: dict = {
        "ociVersion": "1.1.0",
        "process": process,
        "root": {"path": s.rootfs, "readonly": bool(host.get("ReadonlyRootfs"))},
        "hostname": cfg.get("Hostname") or "",
        "mounts": mounts,
        "linux": linux,
    }
    if cfg.get("Domainname"):
        spec["domainname"] = cfg["Domainname"]
    if s.annotations:
        spec["annotations"] = dict(sorted(s.annotations.items()))
    return spec


def merge_env(image_env: list[str] | None, env: list[str] | None) -> list[str]:
    """Docker's rule: the container's ``KEY=v`` replaces the image's ``KEY``; a bare ``KEY``
    in the container's list removes it; order of first appearance kept."""
    out: dict[str, str | None] = {}
    for e in image_env or []:
        k, eq, _ = e.partition("=")
        out[k] = e
    for e in env or []:
        k, eq, _ = e.partition("=")
        if not eq:
            out.pop(k, None)
            continue
        out[k] = e
    return [v for v in out.values() if v is not None]


def process_env(config_env: list[str], hostname: str, tty: bool,
                home: str | None = None) -> list[str]:
    """The process's environment as Docker builds it: PATH, HOSTNAME, TERM (with a tty), each
    replaced in place by the container's Env, then the rest of that Env; HOME from the user's
    passwd entry unless set (runc's rule, kept whatever the runtime)."""
    base = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}"]
    if tty:
        base.append("TERM=xterm")
    out = merge_env(base, config_env)
    if home is not None and "HOME" not in {e.partition("=")[0] for e in out}:
        out.append(f"HOME={home}")
    return out
