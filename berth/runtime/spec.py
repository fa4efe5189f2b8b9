"""config.json (runtime-spec 1.1): validation, mount option parsing, and `spec`'s default.

``load(bundle)`` reads and checks the whole document before anything is created, so a bad
config fails with one line that names the field (``linux.namespaces[2].type: unknown namespace
"foo"``). What it returns is the document itself; parsed mount flags are computed by
``mount_flags``. Pure logic: no syscalls, cheap to import (no json, no re).
"""

import os

from berth import fastjson
from berth.runtime.errors import InvalidConfig

NAMESPACES = {
    "pid": 0x20000000, "network": 0x40000000, "mount": 0x00020000, "ipc": 0x08000000,
    "uts": 0x04000000, "user": 0x10000000, "cgroup": 0x02000000, "time": 0x00000080,
}
# /proc/PID/ns/<name> for each spec namespace type.
NS_PROC_NAME = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts",
                "user": "user", "cgroup": "cgroup", "time": "time"}

RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8,
    "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12,
    "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}

PROPAGATION = {
    "shared": 0x100000, "slave": 0x80000, "private": 0x40000, "unbindable": 0x20000,
    "rshared": 0x100000 | 0x4000, "rslave": 0x80000 | 0x4000, "rprivate": 0x40000 | 0x4000,
    "runbindable": 0x20000 | 0x4000,
}

# option -> (clear?, flag), as mount(8) and runc read them.
_FLAGS = {
    "acl": (False, 0x10000), "noacl": (True, 0x10000), "symfollow": (True, 0x100),
    "async": (True, 0x10), "atime": (True, 0x400), "bind": (False, 0x1000),
    "defaults": (False, 0), "dev": (True, 0x4), "diratime": (True, 0x800),
    "dirsync": (False, 0x80), "exec": (True, 0x8), "iversion": (False, 0x800000),
    "lazytime": (False, 0x2000000), "loud": (True, 0x8000), "mand": (False, 0x40),
    "noatime": (False, 0x400), "nodev": (False, 0x4), "nodiratime": (False, 0x800),
    "noexec": (False, 0x8), "noiversion": (True, 0x800000), "nolazytime": (True, 0x2000000),
    "nomand": (True, 0x40), "norelatime": (True, 0x200000), "nostrictatime": (True, 0x1000000),
    "nosuid": (False, 0x2), "nosymfollow": (False, 0x100), "rbind": (False, 0x1000 | 0x4000),
    "relatime": (False, 0x200000), "remount": (False, 0x20), "ro": (False, 0x1),
    "rw": (True, 0x1), "silent": (False, 0x8000), "strictatime": (False, 0x1000000),
    "suid": (True, 0x2), "sync": (False, 0x10),
}
# Recursive options (runtime-spec 1.1, applied with mount_setattr(2) AT_RECURSIVE to the mount
# and every mount below it): option -> (clear?, MOUNT_ATTR_* flag), as runc reads them. An
# atime value replaces the whole atime field (MOUNT_ATTR__ATIME is always cleared), so
# "ratime", "rnorelatime" and "rnostrictatime" all give relatime, the kernel's default.
RECURSIVE = {
    "rro": (False, 0x1), "rrw": (True, 0x1), "rnosuid": (False, 0x2), "rsuid": (True, 0x2),
    "rnodev": (False, 0x4), "rdev": (True, 0x4), "rnoexec": (False, 0x8),
    "rexec": (True, 0x8), "rnodiratime": (False, 0x80), "rdiratime": (True, 0x80),
    "rrelatime": (False, 0x0), "rnorelatime": (True, 0x0), "rnoatime": (False, 0x10),
    "ratime": (True, 0x10), "rstrictatime": (False, 0x20), "rnostrictatime": (True, 0x20),
    "rnosymfollow": (False, 0x200000), "rsymfollow": (True, 0x200000),
}
_ATIME_FIELD = 0x70
# runc's extension handled by berth.runtime.rootfs itself, not by mount(2).
_IGNORED_OPTIONS = {"tmpcopyup"}

SECCOMP_ACTIONS = {"SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                   "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW",
                   "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY"}
SECCOMP_OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
               "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
SECCOMP_FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                 "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"}
# What berth.runtime.init honours (WAIT_KILLABLE_RECV only matters to a notify listener,
# which berth does not hand off).
SECCOMP_FLAGS_SUPPORTED = SECCOMP_FLAGS - {"SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"}
CAP_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")
HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
              "poststop")


def _fail(field: str, what: str):
    raise InvalidConfig(f"{field}: {what}")


def _type(v: object, t: type | tuple, field: str, name: str) -> None:
    # bool is an int in Python; the spec keeps them apart.
    if isinstance(v, bool) and t is not bool and (t is int or (isinstance(t, tuple) and
                                                               bool not in t)):
        _fail(field, f"expected {name}, got boolean")
    if not isinstance(v, t):
        got = {str: "string", int: "number", float: "number", bool: "boolean", list: "array",
               dict: "object", type(None): "null"}.get(type(v), type(v).__name__)
        _fail(field, f"expected {name}, got {got}")


def _get(obj: dict, key: str, t: type | tuple, name: str, prefix: str, required=False):
    if key not in obj or obj[key] is None:
        if required:
            _fail(f"{prefix}{key}", "required field is missing")
        return None
    v = obj[key]
    _type(v, t, f"{prefix}{key}", name)
    return v


def _uint(obj, key, prefix, required=False, bits=32):
    v = _get(obj, key, int, "an unsigned integer", prefix, required)
    if v is not None and not 0 <= v < (1 << bits):
        _fail(f"{prefix}{key}", f"{v} is out of range")
    return v


def _int(obj, key, prefix, required=False):
    return _get(obj, key, int, "an integer", prefix, required)


def _strlist(obj, key, prefix, required=False):
    v = _get(obj, key, list, "an array of strings", prefix, required)
    for i, s in enumerate(v or ()):
        _type(s, str, f"{prefix}{key}[{i}]", "a string")
    return v


def _abs(v: str, field: str) -> None:
    if not v.startswith("/"):
        _fail(field, f"path {v!r} is not absolute")


def load(bundle: str) -> dict:
    """Read and validate ``bundle``/config.json; the message of any error names the field."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise InvalidConfig(f"no config.json in bundle {bundle}") from None
    except OSError as e:
        raise InvalidConfig(f"cannot read {path}: {e.strerror}") from e
    try:
        cfg = fastjson.loads(data)
    except (ValueError, SystemError) as e:
        # (_json's scanner raises SystemError for some malformed text when the json package
        # is not loaded; it is still malformed text)
        raise InvalidConfig(f"{path}: invalid JSON: {e}") from None
    validate(cfg)
    return cfg


def validate(cfg: object) -> None:
    _type(cfg, dict, "config.json", "an object")
    v = _get(cfg, "ociVersion", str, "a string", "", required=True)
    if not v:
        _fail("ociVersion", "must not be empty")
    root = _get(cfg, "root", dict, "an object", "", required=True)
    _get(root, "path", str, "a string", "root.", required=True)
    _get(root, "readonly", bool, "a boolean", "root.")
    proc = _get(cfg, "process", dict, "an object", "", required=True)
    validate_process(proc, "process.")
    _get(cfg, "hostname", str, "a string", "")
    _get(cfg, "domainname", str, "a string", "")
    ann = _get(cfg, "annotations", dict, "an object", "")
    for k, val in (ann or {}).items():
        _type(val, str, f"annotations.{k}", "a string")
    for i, m in enumerate(_get(cfg, "mounts", list, "an array", "") or ()):
        p = f"mounts[{i}]."
        _type(m, dict, p[:-1], "an object")
        d = _get(m, "destination", str, "a string", p, required=True)
        _abs(d, p + "destination")
        _get(m, "source", str, "a string", p)
        _get(m, "type", str, "a string", p)
        for j, o in enumerate(_strlist(m, "options", p) or ()):
            if o.startswith("idmap") or o == "ridmap":
                _fail(f"{p}options[{j}]", f"unsupported mount option {o!r} (berth-runtime "
                                          "does not make id-mapped mounts)")
        for k in ("uidMappings", "gidMappings"):
            if m.get(k):
                # Ignoring them would show the container files under the wrong owners.
                _fail(p + k, "id-mapped mounts are not supported by berth-runtime")
    hooks = _get(cfg, "hooks", dict, "an object", "")
    for kind, lst in (hooks or {}).items():
        if kind not in HOOK_KINDS:
            _fail(f"hooks.{kind}", "unknown hook kind")
        _type(lst, list, f"hooks.{kind}", "an array")
        for i, h in enumerate(lst):
            p = f"hooks.{kind}[{i}]."
            _type(h, dict, p[:-1], "an object")
            _abs(_get(h, "path", str, "a string", p, required=True), p + "path")
            _strlist(h, "args", p)
            _strlist(h, "env", p)
            t = _int(h, "timeout", p)
            if t is not None and t <= 0:
                _fail(p + "timeout", "must be greater than zero")
    linux = _get(cfg, "linux", dict, "an object", "")
    if linux is not None:
        validate_linux(linux, cfg)


def validate_process(proc: dict, p: str, exec_: bool = False) -> None:
    args = _strlist(proc, "args", p, required=True)
    if not args:
        _fail(p + "args", "must not be empty")
    for i, e in enumerate(_strlist(proc, "env", p) or ()):
        if "=" not in e:
            _fail(f"{p}env[{i}]", f"{e!r} is not of the form KEY=value")
    cwd = _get(proc, "cwd", str, "a string", p, required=not exec_)
    if cwd is not None:
        _abs(cwd, p + "cwd")
    _get(proc, "terminal", bool, "a boolean", p)
    cs = _get(proc, "consoleSize", dict, "an object", p)
    if cs is not None:
        _uint(cs, "height", p + "consoleSize.", True)
        _uint(cs, "width", p + "consoleSize.", True)
    user = _get(proc, "user", dict, "an object", p, required=not exec_)
    if user is not None:
        _uint(user, "uid", p + "user.", required=True)
        _uint(user, "gid", p + "user.", required=True)
        m = _uint(user, "umask", p + "user.")
        if m is not None and m > 0o777:
            _fail(p + "user.umask", f"{m:o} is not a file mode")
        v = _get(user, "additionalGids", list, "an array", p + "user.")
        for i, g in enumerate(v or ()):
            _type(g, int, f"{p}user.additionalGids[{i}]", "an unsigned integer")
            if g < 0:
                _fail(f"{p}user.additionalGids[{i}]", f"{g} is out of range")
    caps = _get(proc, "capabilities", dict, "an object", p)
    for s in CAP_SETS:
        if caps is not None:
            _strlist(caps, s, p + "capabilities.")
    seen = set()
    for i, r in enumerate(_get(proc, "rlimits", list, "an array", p) or ()):
        q = f"{p}rlimits[{i}]."
        _type(r, dict, q[:-1], "an object")
        t = _get(r, "type", str, "a string", q, required=True)
        if t not in RLIMITS:
            _fail(q + "type", f"unknown rlimit {t!r}")
        if t in seen:
            _fail(q + "type", f"duplicate rlimit {t}")
        seen.add(t)
        _uint(r, "soft", q, required=True, bits=64)
        _uint(r, "hard", q, required=True, bits=64)
    _get(proc, "noNewPrivileges", bool, "a boolean", p)
    o = _int(proc, "oomScoreAdj", p)
    if o is not None and not -1000 <= o <= 1000:
        _fail(p + "oomScoreAdj", f"{o} is not in [-1000, 1000]")
    _get(proc, "apparmorProfile", str, "a string", p)
    if _get(proc, "selinuxLabel", str, "a string", p) and not os.path.isdir("/sys/fs/selinux"):
        _fail(p + "selinuxLabel", "selinux label is specified in config, but selinux is "
                                  "disabled or not supported")


def _mappings(linux: dict, key: str) -> list:
    out = _get(linux, key, list, "an array", "linux.") or []
    for i, m in enumerate(out):
        p = f"linux.{key}[{i}]."
        _type(m, dict, p[:-1], "an object")
        for k in ("containerID", "hostID", "size"):
            _uint(m, k, p, required=True)
        if m["size"] == 0:
            _fail(p + "size", "must be greater than zero")
    return out


def validate_linux(linux: dict, cfg: dict) -> None:
    seen = set()
    for i, ns in enumerate(_get(linux, "namespaces", list, "an array", "linux.") or ()):
        p = f"linux.namespaces[{i}]."
        _type(ns, dict, p[:-1], "an object")
        t = _get(ns, "type", str, "a string", p, required=True)
        if t not in NAMESPACES:
            _fail(p + "type", f"unknown namespace {t!r}")
        if t in seen:
            _fail(p + "type", f"duplicate namespace {t!r}")
        seen.add(t)
        path = _get(ns, "path", str, "a string", p)
        if path:
            _abs(path, p + "path")
    um, gm = _mappings(linux, "uidMappings"), _mappings(linux, "gidMappings")
    if "user" in seen and not any(n.get("path") for n in linux["namespaces"]
                                  if n["type"] == "user"):
        if not um:
            _fail("linux.uidMappings", "a user namespace needs uid mappings")
        if not gm:
            _fail("linux.gidMappings", "a user namespace needs gid mappings")
    elif (um or gm) and "user" not in seen:
        _fail("linux.uidMappings", "mappings given without a user namespace")
    cp = _get(linux, "cgroupsPath", str, "a string", "linux.")
    if cp and (".." in cp.split("/")):
        _fail("linux.cgroupsPath", f"{cp!r} must not contain '..'")
    sysctl = _get(linux, "sysctl", dict, "an object", "linux.")
    for k, v in (sysctl or {}).items():
        _type(v, str, f"linux.sysctl.{k}", "a string")
        if "/" in k.replace(".", "/").strip("/") and ".." in k:
            _fail(f"linux.sysctl.{k}", "not a sysctl name")
        if k.startswith("net.") and "network" not in seen:
            _fail(f"linux.sysctl.{k}", "needs a network namespace")
        if (k.startswith("kernel.msg") or k.startswith("kernel.sem") or
                k.startswith("kernel.shm") or k.startswith("fs.mqueue.")) and "ipc" not in seen:
            _fail(f"linux.sysctl.{k}", "needs an ipc namespace")
        if k in ("kernel.hostname", "kernel.domainname") and "uts" not in seen:
            _fail(f"linux.sysctl.{k}", "needs a uts namespace")
    if cfg.get("hostname") and "uts" not in seen:
        _fail("hostname", "setting the hostname needs a uts namespace")
    for key in ("maskedPaths", "readonlyPaths"):
        for i, s in enumerate(_strlist(linux, key, "linux.") or ()):
            _abs(s, f"linux.{key}[{i}]")
    rp = _get(linux, "rootfsPropagation", str, "a string", "linux.")
    if rp and rp not in PROPAGATION:
        _fail("linux.rootfsPropagation", f"unknown propagation {rp!r}")
    for i, d in enumerate(_get(linux, "devices", list, "an array", "linux.") or ()):
        p = f"linux.devices[{i}]."
        _type(d, dict, p[:-1], "an object")
        _abs(_get(d, "path", str, "a string", p, required=True), p + "path")
        t = _get(d, "type", str, "a string", p, required=True)
        if t not in ("c", "b", "u", "p"):
            _fail(p + "type", f"unknown device type {t!r}")
        if t != "p":
            _int(d, "major", p, required=True)
            _int(d, "minor", p, required=True)
        for k in ("fileMode", "uid", "gid"):
            _uint(d, k, p)
    res = _get(linux, "resources", dict, "an object", "linux.")
    if res is not None:
        validate_resources(res, "linux.resources.")
    sc = _get(linux, "seccomp", dict, "an object", "linux.")
    if sc is not None:
        validate_seccomp(sc)
    _get(linux, "mountLabel", str, "a string", "linux.")


def validate_resources(res: dict, p: str) -> None:
    mem = _get(res, "memory", dict, "an object", p)
    if mem is not None:
        for k in ("limit", "reservation", "swap", "kernel", "kernelTCP"):
            _int(mem, k, p + "memory.")
        s = _int(mem, "swappiness", p + "memory.")
        if s is not None and not 0 <= s <= 100:
            _fail(p + "memory.swappiness", f"{s} is not in [0, 100]")
        _get(mem, "disableOOMKiller", bool, "a boolean", p + "memory.")
        _get(mem, "useHierarchy", bool, "a boolean", p + "memory.")
    cpu = _get(res, "cpu", dict, "an object", p)
    if cpu is not None:
        for k in ("shares", "period", "realtimePeriod"):
            _uint(cpu, k, p + "cpu.", bits=64)
        for k in ("quota", "realtimeRuntime", "idle"):
            _int(cpu, k, p + "cpu.")
        for k in ("cpus", "mems"):
            _get(cpu, k, str, "a string", p + "cpu.")
    pids = _get(res, "pids", dict, "an object", p)
    if pids is not None:
        _int(pids, "limit", p + "pids.", required=True)
    blk = _get(res, "blockIO", dict, "an object", p)
    if blk is not None:
        _uint(blk, "weight", p + "blockIO.")
        _uint(blk, "leafWeight", p + "blockIO.")
        for i, d in enumerate(_get(blk, "weightDevice", list, "an array", p + "blockIO.") or ()):
            q = f"{p}blockIO.weightDevice[{i}]."
            _type(d, dict, q[:-1], "an object")
            _int(d, "major", q, True)
            _int(d, "minor", q, True)
            _uint(d, "weight", q)
            _uint(d, "leafWeight", q)
        for k in ("throttleReadBpsDevice", "throttleWriteBpsDevice",
                  "throttleReadIOPSDevice", "throttleWriteIOPSDevice"):
            for i, d in enumerate(_get(blk, k, list, "an array", p + "blockIO.") or ()):
                q = f"{p}blockIO.{k}[{i}]."
                _int(d, "major", q, True)
                _int(d, "minor", q, True)
                _uint(d, "rate", q, True, bits=64)
    for i, d in enumerate(_get(res, "devices", list, "an array", p) or ()):
        q = f"{p}devices[{i}]."
        _type(d, dict, q[:-1], "an object")
        _get(d, "allow", bool, "a boolean", q, required=True)
        t = _get(d, "type", str, "a string", q)
        if t is not None and t not in ("a", "b", "c"):
            _fail(q + "type", f"unknown device type {t!r}")
        _int(d, "major", q)
        _int(d, "minor", q)
        a = _get(d, "access", str, "a string", q)
        if a and not set(a) & set("rwm"):
            _fail(q + "access", f"{a!r} is not a combination of r, w and m")
    hp = _get(res, "hugepageLimits", list, "an array", p)
    for i, h in enumerate(hp or ()):
        q = f"{p}hugepageLimits[{i}]."
        _get(h, "pageSize", str, "a string", q, True)
        _uint(h, "limit", q, True, bits=64)
    net = _get(res, "network", dict, "an object", p)
    if net is not None:
        _uint(net, "classID", p + "network.")
        for i, pr in enumerate(_get(net, "priorities", list, "an array", p + "network.") or ()):
            q = f"{p}network.priorities[{i}]."
            _type(pr, dict, q[:-1], "an object")
            name = _get(pr, "name", str, "a string", q, True)
            if not name or "/" in name or " " in name:
                _fail(q + "name", f"{name!r} is not an interface name")
            _uint(pr, "priority", q, True)
    _get(res, "unified", dict, "an object", p)


def validate_seccomp(sc: dict) -> None:
    p = "linux.seccomp."
    a = _get(sc, "defaultAction", str, "a string", p, required=True)
    if a not in SECCOMP_ACTIONS:
        _fail(p + "defaultAction", f"unknown action {a!r}")
    if a == "SCMP_ACT_NOTIFY":
        _fail(p + "defaultAction", "SCMP_ACT_NOTIFY cannot be the default action")
    _uint(sc, "defaultErrnoRet", p)
    from berth.linux.seccomp import ARCHES

    for i, arch in enumerate(_strlist(sc, "architectures", p) or ()):
        if arch not in ARCHES:
            _fail(f"{p}architectures[{i}]", f"unknown architecture {arch!r}")
    for i, f in enumerate(_strlist(sc, "flags", p) or ()):
        if f not in SECCOMP_FLAGS:
            _fail(f"{p}flags[{i}]", f"unknown flag {f!r}")
    _get(sc, "listenerPath", str, "a string", p)
    for i, s in enumerate(_get(sc, "syscalls", list, "an array", p) or ()):
        q = f"{p}syscalls[{i}]."
        _type(s, dict, q[:-1], "an object")
        names = _strlist(s, "names", q, required=True)
        if not names:
            _fail(q + "names", "must not be empty")
        act = _get(s, "action", str, "a string", q, required=True)
        if act not in SECCOMP_ACTIONS:
            _fail(q + "action", f"unknown action {act!r}")
        if act == "SCMP_ACT_NOTIFY":
            # Honouring it means handing the notify fd to listenerPath: not implemented.
            _fail(q + "action", "SCMP_ACT_NOTIFY is not supported by berth-runtime")
        _uint(s, "errnoRet", q)
        for j, arg in enumerate(_get(s, "args", list, "an array", q) or ()):
            r = f"{q}args[{j}]."
            _type(arg, dict, r[:-1], "an object")
            idx = _uint(arg, "index", r, required=True)
            if idx > 5:
                _fail(r + "index", f"{idx} is not a syscall argument (0-5)")
            _uint(arg, "value", r, required=True, bits=64)
            _uint(arg, "valueTwo", r, bits=64)
            op = _get(arg, "op", str, "a string", r, required=True)
            if op not in SECCOMP_OPS:
                _fail(r + "op", f"unknown operator {op!r}")


def known_mount_options() -> list[str]:
    """Every option string mount_flags gives a meaning (what `features` lists)."""
    return sorted(set(_FLAGS) | set(PROPAGATION) | set(RECURSIVE) | _IGNORED_OPTIONS)


def mount_flags(options: list[str]) -> tuple[int, int, str, tuple[int, int] | None]:
    """(flags, propagation flags, data, recursive) for a mount's option list; ``recursive``
    is (attr_set, attr_clr) for mount_setattr(AT_RECURSIVE), or None."""
    flags = 0
    pflags = 0
    data = []
    rset = rclr = 0
    rec = False
    for o in options or ():
        if o in _FLAGS:
            clear, f = _FLAGS[o]
            flags = flags & ~f if clear else flags | f
        elif o in PROPAGATION:
            pflags |= PROPAGATION[o]
        elif o in RECURSIVE:
            rec = True
            clear, f = RECURSIVE[o]
            if f & _ATIME_FIELD == f:  # an atime value (relatime is 0)
                rset &= ~_ATIME_FIELD
                rclr |= _ATIME_FIELD
                if not clear:
                    rset |= f
            elif clear:
                rclr, rset = rclr | f, rset & ~f
            else:
                rset, rclr = rset | f, rclr & ~f
        elif o in _IGNORED_OPTIONS:
            continue
        else:
            data.append(o)
    return flags, pflags, ",".join(data), (rset, rclr) if rec else None


def default_spec(rootless: bool = False) -> dict:
    """What `runc spec` writes: a busybox-friendly starting point."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    spec = {
        "ociVersion": "1.1.0",
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps,
                             "ambient": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "berth",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                         "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                           {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                            "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                            "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    }
    linux = spec["linux"]
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        # As runc: a cgroup namespace by default only where the host is cgroup v2 alone.
        linux["namespaces"].append({"type": "cgroup"})
    if rootless:  # runc's ToRootless
        ns = [n for n in linux.pop("namespaces") if n["type"] not in ("network", "user")]
        uid, gid = os.geteuid(), os.getegid()
        # (the key order of runc's output: mappings come first in its Linux struct)
        spec["linux"] = linux = {
            "uidMappings": [{"containerID": 0, "hostID": uid, "size": 1}],
            "gidMappings": [{"containerID": 0, "hostID": gid, "size": 1}],
            **linux, "namespaces": ns + [{"type": "user"}]}
        del linux["resources"]
        for m in spec["mounts"]:
            if m["destination"] == "/sys":
                m.update(type="none", source="/sys",
                         options=["rbind", "nosuid", "noexec", "nodev", "ro"])
            elif m.get("options"):
                m["options"] = [o for o in m["options"]
                                if not o.startswith(("gid=", "uid="))]
        linux["maskedPaths"] = linux.pop("maskedPaths")
        linux["readonlyPaths"] = linux.pop("readonlyPaths")
    return spec
