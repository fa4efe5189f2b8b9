"""Cgroup managers: one interface, a v1 (legacy/hybrid) backend and a v2 (unified) backend.

    detect(fs)  -> "unified" | "hybrid" | "legacy"       (as youki's libcgroups does)
    manager(path, fs) -> V1Manager | V2Manager            (hybrid uses v1, joining unified too)

    m.create()          make the directories (cpuset.cpus/mems seeded on v1, controllers
                        enabled down the tree on v2)
    m.apply(pid)        move a process in
    m.set(resources)    write linux.resources (runtime-spec names)
    m.freeze()/thaw()/frozen()   the freezer
    m.pids()            every pid in the cgroup (recursive)
    m.kill_all(sig)     signal every process (frozen first, so none can fork away)
    m.stats()           what `runc events --stats` prints under "data"
    m.oom_watch()       fds to poll for OOM events (v1 eventfd, v2 memory.events)
    m.destroy()         remove the directories (processes must be gone)
    m.to_state() / from_state(d)   what state.json records so delete can find them

``CgroupFS`` is the only thing that touches the filesystem: where hierarchies are mounted (from
mountinfo) and the calling process's own cgroups. Tests give it a tempdir holding a fake
cgroupfs. Paths are resolved as runc's fs managers do: an absolute cgroupsPath is below each
hierarchy's root, a relative one below the caller's own cgroup.
"""

import os
import time

from berth.runtime.errors import CgroupError

V1_SUBSYSTEMS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
                 "hugetlb", "net_cls", "net_prio", "perf_event", "rdma", "misc", "name=systemd")

MAX_UINT64 = (1 << 64) - 1


class CgroupFS:
    """Where the cgroup hierarchies are, read from ``mountinfo`` and ``self_cgroup``."""

    def __init__(self, mountinfo: str = "/proc/self/mountinfo",
                 self_cgroup: str = "/proc/self/cgroup", prefix: str = "") -> None:
        self.prefix = prefix  # a fake root for tests: mount points are joined below it
        self.v1: dict[str, tuple[str, str]] = {}  # subsystem -> (mountpoint, mount root)
        self.v2: tuple[str, str] | None = None
        with open(mountinfo) as f:
            for line in f:
                a = line.split()
                sep = a.index("-")
                fstype, opts = a[sep + 1], a[sep + 3].split(",")
                root, mnt = _unescape(a[3]), prefix + _unescape(a[4])
                if fstype == "cgroup2":
                    if self.v2 is None or mnt == prefix + "/sys/fs/cgroup":
                        self.v2 = (mnt, root)
                elif fstype == "cgroup":
                    for o in opts:
                        if o in V1_SUBSYSTEMS and o not in self.v1:
                            self.v1[o] = (mnt, root)
        self.own: dict[str, str] = {}
        with open(self_cgroup) as f:
            for line in f:
                n, ctrls, path = line.rstrip("\n").split(":", 2)
                for c in (ctrls.split(",") if ctrls else [""]):
                    self.own[c] = path

    def mode(self) -> str:
        if self.v2 and self.v2[0] == self.prefix + "/sys/fs/cgroup":
            return "unified"
        return "hybrid" if self.v2 and self.v1 else "legacy"


def _unescape(s: str) -> str:
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")


def detect(fs: CgroupFS | None = None) -> str:
    return (fs or CgroupFS()).mode()


def _join(mnt: str, mroot: str, own: str, path: str) -> str:
    if path.startswith("/"):
        rel = path
    else:
        # Below our own cgroup, seen from this mount's root (a container may see a sub-tree).
        base = own[len(mroot):] if mroot != "/" and own.startswith(mroot) else own
        rel = base.rstrip("/") + "/" + path
    return os.path.normpath(mnt + "/" + rel.lstrip("/"))


def _write(path: str, value: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise CgroupError(f"cgroup: cannot open {path}: {e.strerror}") from e
    try:
        os.write(fd, value.encode())
    except OSError as e:
        raise CgroupError(f"cgroup: write {value!r} to {path}: {e.strerror}") from e
    finally:
        os.close(fd)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _read_int(path: str, default: int = 0) -> int:
    try:
        s = _read(path).strip()
    except OSError:
        return default
    if s == "max":
        return MAX_UINT64
    try:
        return int(s)
    except ValueError:
        return default


def _kv(path: str) -> dict[str, int]:
    out = {}
    try:
        for line in _read(path).splitlines():
            k, _, v = line.partition(" ")
            try:
                out[k] = int(v)
            except ValueError:
                pass
    except OSError:
        pass
    return out


def _pids_in(d: str) -> list[int]:
    out = []
    for root, _dirs, _files in os.walk(d):
        try:
            out += [int(x) for x in _read(root + "/cgroup.procs").split()]
        except OSError:
            pass
    return out


def _rmdir_tree(d: str) -> None:
    if not os.path.isdir(d):
        return
    for root, dirs, _files in os.walk(d, topdown=False):
        for x in dirs:
            _rmdir_retry(os.path.join(root, x))
    _rmdir_retry(d)


def _rmdir_retry(d: str) -> None:
    # A cgroup whose last task just exited can stay busy for a moment.
    delay = 0.001
    for _ in range(12):
        try:
            os.rmdir(d)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != 16:  # EBUSY
                raise CgroupError(f"cgroup: remove {d}: {e.strerror}") from e
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
    raise CgroupError(f"cgroup: remove {d}: device or resource busy")


def parse_sub_cgroups(args: list[str]) -> dict[str, str]:
    """`exec --cgroup` values as runc reads them: one bare PATH (every controller), or
    CONTROLLER[,CONTROLLER]:PATH, as often as needed."""
    out: dict[str, str] = {}
    for a in args:
        parts = a.split(":")
        if len(parts) > 2:
            raise CgroupError(f"invalid --cgroup argument: {a}")
        if len(parts) == 1:
            if len(args) != 1:
                raise CgroupError(f"invalid --cgroup argument: {a} (missing <controller>: "
                                  "prefix)")
            out[""] = a
        else:
            for ctrl in parts[0].split(","):
                out[ctrl] = parts[1]
    return out


class Manager:
    version = 0

    def __init__(self, paths: dict[str, str]) -> None:
        self.paths = paths

    def sub_paths(self, sub: dict[str, str]) -> dict[str, str]:
        """Our paths with ``exec --cgroup``'s sub-cgroups below them (never above them)."""
        paths = dict(self.paths)
        if "" in sub:
            chosen = {k: sub[""] for k in paths}
        else:
            chosen = {}
            for ctrl, rel in sub.items():
                key = "unified" if ctrl == "" else ctrl
                if key not in paths:
                    raise CgroupError(f"unknown controller {ctrl} in --cgroup")
                chosen[key] = rel
        for k, rel in chosen.items():
            p = os.path.normpath(paths[k] + "/" + rel)
            if p != paths[k] and not p.startswith(paths[k] + "/"):
                raise CgroupError(f"cgroup path {rel} is not a sub cgroup path")
            paths[k] = p
        return paths

    def join(self, pid: int, paths: dict[str, str] | None = None,
             init_pid: int = 0) -> None:
        """Put ``pid`` (an exec's first process) in ``paths`` (default: ours). On cgroup v2 a
        cgroup whose children have domain controllers refuses processes (EBUSY): then the
        init's own cgroup is joined, as runc does, unless sub-cgroups were asked for."""
        for p in (paths or self.paths).values():
            try:
                fd = os.open(p + "/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.write(fd, str(pid).encode())
                finally:
                    os.close(fd)
            except OSError as e:
                if e.errno == 16 and self.version == 2 and init_pid and not paths:
                    alt = self._cgroup_of(init_pid)
                    if alt:
                        _write(alt + "/cgroup.procs", str(pid))
                        continue
                raise CgroupError(f"error adding pid {pid} to cgroups: {p}/cgroup.procs: "
                                  f"{e.strerror.lower()}") from None

    def _cgroup_of(self, pid: int) -> str | None:
        return None

    def to_state(self) -> dict:
        return {"version": self.version, "paths": self.paths}

    def exists(self) -> bool:
        return any(os.path.isdir(p) for p in self.paths.values())

    def destroy(self) -> None:
        for p in self.paths.values():
            _rmdir_tree(p)

    def kill_all(self, sig: int) -> None:
        frozen = self.freeze_quiet()
        try:
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        finally:
            if frozen:
                self.thaw()

    def freeze_quiet(self) -> bool:
        try:
            self.freeze()
            return True
        except CgroupError:
            return False


class V1Manager(Manager):
    """cgroup v1: one directory per mounted hierarchy."""

    version = 1

    @classmethod
    def for_path(cls, path: str, fs: CgroupFS) -> "V1Manager":
        paths = {}
        for sub, (mnt, mroot) in fs.v1.items():
            own = fs.own.get(sub, "/")
            paths[sub] = _join(mnt, mroot, own, path)
        if fs.v2:  # hybrid: join the unified hierarchy too, as runc does
            paths["unified"] = _join(fs.v2[0], fs.v2[1], fs.own.get("", "/"), path)
        return cls(paths)

    def create(self) -> None:
        for sub, p in self.paths.items():
            try:
                os.makedirs(p, exist_ok=True)
            except OSError as e:
                raise CgroupError(f"cgroup: mkdir {p}: {e.strerror}") from e
            if sub == "cpuset":
                self._seed_cpuset(p)

    def _seed_cpuset(self, p: str) -> None:
        # A new cpuset is empty and refuses tasks: copy cpus/mems down from the first
        # ancestor that has them.
        chain = []
        d = p
        while True:
            chain.append(d)
            parent = os.path.dirname(d)
            if parent == d or not os.path.exists(parent + "/cpuset.cpus"):
                break
            d = parent
        for d in reversed(chain[:-1]):
            parent = os.path.dirname(d)
            for f in ("cpuset.cpus", "cpuset.mems"):
                try:
                    if not _read(f"{d}/{f}").strip():
                        _write(f"{d}/{f}", _read(f"{parent}/{f}").strip() or "\n")
                except OSError:
                    pass

    def apply(self, pid: int) -> None:
        for p in self.paths.values():
            _write(p + "/cgroup.procs", str(pid))

    def _need(self, sub: str, field: str) -> str:
        p = self.paths.get(sub)
        if not p:
            raise CgroupError(f"cgroup: {field} needs the {sub} controller, which is not "
                              "mounted on this host")
        return p

    def set(self, res: dict) -> None:
        if res.get("unified"):
            raise CgroupError("cgroup: linux.resources.unified needs cgroup v2")
        mem = res.get("memory") or {}
        m = self.paths.get("memory")
        if any(mem.get(k) for k in ("limit", "reservation", "swap")) or \
                mem.get("swappiness") is not None:
            m = self._need("memory", "linux.resources.memory")
        if mem and m:
            limit, swap = mem.get("limit"), mem.get("swap")
            if limit == -1 and not swap and os.path.exists(m + "/memory.memsw.limit_in_bytes"):
                swap = -1  # as runc: no memory limit and no swap given means no swap limit
            if swap is not None and not os.path.exists(m + "/memory.memsw.limit_in_bytes"):
                raise CgroupError("cgroup: memory swap limit needs swap accounting "
                                  "(memory.memsw.limit_in_bytes is missing)")
            # memsw must stay >= limit at every step: pick the order that keeps it so.
            cur_sw = _read_int(m + "/memory.memsw.limit_in_bytes", -1)
            first_swap = swap is not None and (swap == -1 or (limit is not None and limit != -1
                                                              and swap > cur_sw != -1)
                                               or limit is None)
            order = [("swap", swap), ("limit", limit)] if first_swap else \
                [("limit", limit), ("swap", swap)]
            for k, v in order:
                if v is None or (k == "limit" and v == 0):
                    continue
                f = "memory.limit_in_bytes" if k == "limit" else "memory.memsw.limit_in_bytes"
                _write(f"{m}/{f}", str(v))
            if mem.get("reservation"):
                _write(m + "/memory.soft_limit_in_bytes", str(mem["reservation"]))
            if mem.get("swappiness") is not None:
                _write(m + "/memory.swappiness", str(mem["swappiness"]))
            if mem.get("disableOOMKiller"):
                _write(m + "/memory.oom_control", "1")
        cpu = res.get("cpu") or {}
        c = self.paths.get("cpu")
        if any(cpu.get(k) for k in ("shares", "quota", "period", "realtimePeriod",
                                    "realtimeRuntime")):
            c = self._need("cpu", "linux.resources.cpu")
        if cpu.get("cpus") or cpu.get("mems"):
            self._need("cpuset", "linux.resources.cpu.cpus")
        if cpu and c:
            if cpu.get("shares"):
                _write(c + "/cpu.shares", str(cpu["shares"]))
            period, quota = cpu.get("period"), cpu.get("quota")
            if period:
                try:
                    _write(c + "/cpu.cfs_period_us", str(period))
                except CgroupError:
                    if not quota:
                        raise
                    _write(c + "/cpu.cfs_quota_us", str(quota))
                    quota = None
                    _write(c + "/cpu.cfs_period_us", str(period))
            if quota:
                _write(c + "/cpu.cfs_quota_us", str(quota))
            if cpu.get("realtimePeriod"):
                _write(c + "/cpu.rt_period_us", str(cpu["realtimePeriod"]))
            if cpu.get("realtimeRuntime"):
                _write(c + "/cpu.rt_runtime_us", str(cpu["realtimeRuntime"]))
        cs = self.paths.get("cpuset")
        if cpu and cs:
            if cpu.get("cpus"):
                _write(cs + "/cpuset.cpus", cpu["cpus"])
            if cpu.get("mems"):
                _write(cs + "/cpuset.mems", cpu["mems"])
        pids = res.get("pids") or {}
        if pids.get("limit"):
            lim = pids["limit"]
            _write(self._need("pids", "linux.resources.pids") + "/pids.max",
                   str(lim) if lim > 0 else "max")
        blk = res.get("blockIO") or {}
        b = self.paths.get("blkio")
        if any(blk.get(k) for k in ("weight", "throttleReadBpsDevice", "throttleWriteBpsDevice",
                                    "throttleReadIOPSDevice", "throttleWriteIOPSDevice")):
            b = self._need("blkio", "linux.resources.blockIO")
        if any(blk.get(k) for k in ("leafWeight", "weightDevice")):
            b = self._need("blkio", "linux.resources.blockIO")
        if blk and b:
            # kernels without CFQ have only BFQ's files (as runc, use whichever is there)
            bfq = "" if os.path.exists(b + "/blkio.weight") else "bfq."
            if blk.get("weight"):
                _write(f"{b}/blkio.{bfq}weight", str(blk["weight"]))
            if blk.get("leafWeight"):
                _write(f"{b}/blkio.leaf_weight", str(blk["leafWeight"]))
            for d in blk.get("weightDevice") or ():
                dev = f"{d['major']}:{d['minor']}"
                if d.get("weight"):
                    _write(f"{b}/blkio.{bfq}weight_device", f"{dev} {d['weight']}")
                if d.get("leafWeight"):
                    _write(f"{b}/blkio.leaf_weight_device", f"{dev} {d['leafWeight']}")
            for k, f in (("throttleReadBpsDevice", "read_bps_device"),
                         ("throttleWriteBpsDevice", "write_bps_device"),
                         ("throttleReadIOPSDevice", "read_iops_device"),
                         ("throttleWriteIOPSDevice", "write_iops_device")):
                for d in blk.get(k) or ():
                    _write(f"{b}/blkio.throttle.{f}", f"{d['major']}:{d['minor']} {d['rate']}")
        for hp in res.get("hugepageLimits") or ():
            h = self._need("hugetlb", "linux.resources.hugepageLimits")
            _write(f"{h}/hugetlb.{hp['pageSize']}.limit_in_bytes", str(hp["limit"]))
        net = res.get("network") or {}
        if net.get("classID") is not None:
            n = self._need("net_cls", "linux.resources.network.classID")
            _write(n + "/net_cls.classid", str(net["classID"]))
        for prio in net.get("priorities") or ():
            n = self._need("net_prio", "linux.resources.network.priorities")
            _write(n + "/net_prio.ifpriomap", f"{prio['name']} {prio['priority']}")

    def set_devices(self, rules) -> None:
        """Bring the devices cgroup to ``rules`` (a berth.runtime.devices.Rules) from whatever
        its devices.list holds, with the fewest disruptive writes."""
        d = self.paths.get("devices")
        if not d:
            return
        from berth.runtime import devices

        try:
            current = devices.parse_v1_list(_read(d + "/devices.list"))
        except OSError as e:
            raise CgroupError(f"cgroup: read {d}/devices.list: {e.strerror}") from e
        for f, line in devices.v1_lines(current, rules):
            _write(f"{d}/{f}", line)

    def pids(self) -> list[int]:
        for sub in ("pids", "freezer", "memory", "cpu", "devices"):
            if sub in self.paths and os.path.isdir(self.paths[sub]):
                return _pids_in(self.paths[sub])
        for p in self.paths.values():
            if os.path.isdir(p):
                return _pids_in(p)
        return []

    def freeze(self) -> None:
        f = self.paths.get("freezer")
        if not f:
            raise CgroupError("cgroup: no freezer hierarchy is mounted")
        _write(f + "/freezer.state", "FROZEN")
        for _ in range(1000):
            if _read(f + "/freezer.state").strip() == "FROZEN":
                return
            time.sleep(0.001)
            _write(f + "/freezer.state", "FROZEN")
        raise CgroupError(f"cgroup: {f} did not freeze")

    def thaw(self) -> None:
        f = self.paths.get("freezer")
        if not f:
            raise CgroupError("cgroup: no freezer hierarchy is mounted")
        _write(f + "/freezer.state", "THAWED")

    def frozen(self) -> bool:
        f = self.paths.get("freezer")
        try:
            return bool(f) and _read(f + "/freezer.state").strip() != "THAWED"
        except OSError:
            return False

    def oom_watch(self) -> "OomWatch":
        """OOM notifications through memory.oom_control and cgroup.event_control (the v1
        interface runc uses); the cgroup's removal ends them."""
        m = self._need("memory", "events")
        efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        try:
            ofd = os.open(m + "/memory.oom_control", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            os.close(efd)
            raise CgroupError(f"cgroup: open {m}/memory.oom_control: {e.strerror}") from e
        try:
            _write(m + "/cgroup.event_control", f"{efd} {ofd}")
        except CgroupError:
            os.close(efd)
            os.close(ofd)
            raise
        return OomWatch([efd], [ofd], self._v1_event, m)

    @staticmethod
    def _v1_event(watch: "OomWatch", fd: int) -> str | None:
        try:
            os.eventfd_read(fd)
        except BlockingIOError:
            return None
        # the kernel signals the eventfd on an OOM and when the cgroup goes away
        return "oom" if os.path.isdir(watch.dir) else "end"

    def stats(self) -> dict:
        out: dict = {}
        ca = self.paths.get("cpuacct")
        c = self.paths.get("cpu")
        cpu: dict = {"usage": {}, "throttling": {}}
        if ca and os.path.isdir(ca):
            cpu["usage"]["total"] = _read_int(ca + "/cpuacct.usage")
            try:
                cpu["usage"]["percpu"] = [int(x) for x in
                                          _read(ca + "/cpuacct.usage_percpu").split()]
            except OSError:
                pass
            st = _kv(ca + "/cpuacct.stat")
            tick = os.sysconf("SC_CLK_TCK")
            cpu["usage"]["user"] = st.get("user", 0) * 1_000_000_000 // tick
            cpu["usage"]["kernel"] = st.get("system", 0) * 1_000_000_000 // tick
        if c and os.path.isdir(c):
            st = _kv(c + "/cpu.stat")
            cpu["throttling"] = {"periods": st.get("nr_periods", 0),
                                 "throttled_periods": st.get("nr_throttled", 0),
                                 "throttled_time": st.get("throttled_time", 0)}
        out["cpu"] = cpu
        m = self.paths.get("memory")
        if m and os.path.isdir(m):
            def entry(prefix):
                return {"limit": _read_int(f"{m}/{prefix}limit_in_bytes"),
                        "usage": _read_int(f"{m}/{prefix}usage_in_bytes"),
                        "max": _read_int(f"{m}/{prefix}max_usage_in_bytes"),
                        "failcnt": _read_int(f"{m}/{prefix}failcnt")}
            raw = _kv(m + "/memory.stat")
            out["memory"] = {"cache": raw.get("cache", 0), "usage": entry("memory."),
                             "swap": entry("memory.memsw."), "kernel": entry("memory.kmem."),
                             "kernelTCP": entry("memory.kmem.tcp."), "raw": raw}
        p = self.paths.get("pids")
        if p and os.path.isdir(p):
            lim = _read_int(p + "/pids.max")
            out["pids"] = {"current": _read_int(p + "/pids.current"),
                           "limit": 0 if lim == MAX_UINT64 else lim}
        b = self.paths.get("blkio")
        out["blkio"] = {}
        if b and os.path.isdir(b):
            out["blkio"]["ioServiceBytesRecursive"] = _blkio_entries(
                b + "/blkio.throttle.io_service_bytes_recursive")
            out["blkio"]["ioServicedRecursive"] = _blkio_entries(
                b + "/blkio.throttle.io_serviced_recursive")
        out["hugetlb"] = {}
        return out


def _blkio_entries(path: str) -> list[dict]:
    out = []
    try:
        for line in _read(path).splitlines():
            a = line.split()
            if len(a) == 3 and ":" in a[0]:
                maj, mnr = a[0].split(":")
                out.append({"major": int(maj), "minor": int(mnr), "op": a[1],
                            "value": int(a[2])})
    except OSError:
        pass
    return out


def shares_to_weight(shares: int) -> int:
    """cpu.shares (2..262144) → cpu.weight (1..10000), the conversion runc and crun use."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_to_io_weight(w: int) -> int:
    if w == 0:
        return 0
    return 1 + (w - 10) * 9999 // 990


class V2Manager(Manager):
    """cgroup v2: one directory in the unified hierarchy."""

    version = 2

    @classmethod
    def for_path(cls, path: str, fs: CgroupFS) -> "V2Manager":
        if not fs.v2:
            raise CgroupError("cgroup: no cgroup2 hierarchy is mounted")
        return cls({"": _join(fs.v2[0], fs.v2[1], fs.own.get("", "/"), path)},
                   mountpoint=fs.v2[0])

    def __init__(self, paths: dict[str, str], mountpoint: str | None = None) -> None:
        super().__init__(paths)
        self.dir = paths[""]
        self.mountpoint = mountpoint

    def to_state(self) -> dict:
        return {"version": 2, "paths": self.paths, "mountpoint": self.mountpoint}

    def _cgroup_of(self, pid: int) -> str | None:
        try:
            for line in _read(f"/proc/{pid}/cgroup").splitlines():
                if line.startswith("0::"):
                    return os.path.normpath((self.mountpoint or "/sys/fs/cgroup") + "/" +
                                            line[3:])
        except OSError:
            pass
        return None

    def create(self) -> None:
        # Enable every available controller from the top down to our parent, as runc does;
        # a level that already has processes refuses (no internal processes) and is left.
        top = self.mountpoint or os.path.dirname(self.dir)
        rel = os.path.relpath(self.dir, top).split("/")
        d = top
        for part in rel:
            self._enable_controllers(d)
            d = d + "/" + part
            try:
                os.mkdir(d)
            except FileExistsError:
                pass
            except OSError as e:
                raise CgroupError(f"cgroup: mkdir {d}: {e.strerror}") from e

    def _enable_controllers(self, d: str) -> None:
        try:
            avail = _read(d + "/cgroup.controllers").split()
            have = set(_read(d + "/cgroup.subtree_control").split())
        except OSError:
            return
        want = [c for c in avail if c not in have]
        if want:
            try:
                _write(d + "/cgroup.subtree_control", " ".join("+" + c for c in want))
            except CgroupError:
                pass

    def apply(self, pid: int) -> None:
        _write(self.dir + "/cgroup.procs", str(pid))

    def _need(self, ctrl: str, field: str) -> None:
        try:
            have = _read(self.dir + "/cgroup.controllers").split()
        except OSError:
            have = []
        if ctrl not in have:
            raise CgroupError(f"cgroup: {field} needs the {ctrl} controller, which "
                              f"{self.dir} does not have")

    def set(self, res: dict) -> None:
        d = self.dir
        mem = res.get("memory") or {}
        if any(mem.get(k) for k in ("limit", "reservation", "swap")):
            self._need("memory", "linux.resources.memory")
            limit, swap = mem.get("limit"), mem.get("swap")
            if limit == -1 and not swap:
                swap = -1  # unlimited memory, swap not given: unlimited swap too (as runc)
            if limit:
                _write(d + "/memory.max", "max" if limit == -1 else str(limit))
            if swap:
                # The spec's swap is memory+swap; v2 limits swap alone.
                if swap == -1:
                    v = "max"
                elif limit and limit != -1:
                    if swap < limit:
                        raise CgroupError("cgroup: memory swap limit must be at least the "
                                          "memory limit")
                    v = str(swap - limit)
                else:
                    raise CgroupError("cgroup: a swap limit needs a memory limit on cgroup v2")
                _write(d + "/memory.swap.max", v)
            if mem.get("reservation"):
                _write(d + "/memory.low", str(mem["reservation"]))
        cpu = res.get("cpu") or {}
        if cpu.get("shares") or cpu.get("quota") or cpu.get("period"):
            self._need("cpu", "linux.resources.cpu")
            if cpu.get("shares"):
                _write(d + "/cpu.weight", str(shares_to_weight(cpu["shares"])))
            if cpu.get("quota") or cpu.get("period"):
                q = cpu.get("quota")
                qs = "max" if not q or q < 0 else str(q)
                _write(d + "/cpu.max", f"{qs} {cpu.get('period') or 100000}")
        if cpu.get("cpus") or cpu.get("mems"):
            self._need("cpuset", "linux.resources.cpu.cpus")
            if cpu.get("cpus"):
                _write(d + "/cpuset.cpus", cpu["cpus"])
            if cpu.get("mems"):
                _write(d + "/cpuset.mems", cpu["mems"])
        pids = res.get("pids") or {}
        if pids.get("limit"):
            self._need("pids", "linux.resources.pids")
            lim = pids["limit"]
            _write(d + "/pids.max", str(lim) if lim > 0 else "max")
        blk = res.get("blockIO") or {}
        bfq = os.path.exists(d + "/io.bfq.weight")
        if blk.get("weight"):
            self._need("io", "linux.resources.blockIO")
            # BFQ takes blkio's 10..1000 as it is; io.weight is 1..10000
            if bfq:
                _write(d + "/io.bfq.weight", str(blk["weight"]))
            else:
                _write(d + "/io.weight", str(blkio_to_io_weight(blk["weight"])))
        for dev in blk.get("weightDevice") or ():
            if not dev.get("weight"):
                continue
            self._need("io", "linux.resources.blockIO.weightDevice")
            key = f"{dev['major']}:{dev['minor']}"
            if bfq:
                _write(d + "/io.bfq.weight", f"{key} {dev['weight']}")
            else:
                _write(d + "/io.weight", f"{key} {blkio_to_io_weight(dev['weight'])}")
        for k, key in (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                       ("throttleReadIOPSDevice", "riops"),
                       ("throttleWriteIOPSDevice", "wiops")):
            for dev in blk.get(k) or ():
                self._need("io", "linux.resources.blockIO")
                _write(d + "/io.max", f"{dev['major']}:{dev['minor']} {key}={dev['rate']}")
        for hp in res.get("hugepageLimits") or ():
            self._need("hugetlb", "linux.resources.hugepageLimits")
            _write(f"{d}/hugetlb.{hp['pageSize']}.max", str(hp["limit"]))
        for k, v in (res.get("unified") or {}).items():
            if "/" in k or k.startswith("."):
                raise CgroupError(f"cgroup: linux.resources.unified: bad file name {k!r}")
            _write(f"{d}/{k}", v)

    def set_devices(self, rules) -> None:
        """Enforce ``rules`` (a berth.runtime.devices.Rules) with a BPF_CGROUP_DEVICE program
        attached to this cgroup, replacing the one attached before (as runc does: with
        BPF_F_REPLACE when there is exactly one, else attach then detach the old ones)."""
        from berth.runtime import devices

        try:
            attach_device_filter(self.dir, devices.program(rules))
        except CgroupError:
            # A runtime inside a user namespace cannot use bpf(2), and cannot reach host
            # devices either: go on without the filter, as runc and crun do.
            if not _in_user_namespace():
                raise

    def device_filters(self) -> list[dict]:
        """The device programs attached to this cgroup: [{"id", "type", "name"}]."""
        from berth.linux import bpf

        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            out = []
            for pid in bpf.prog_query(fd, bpf.BPF_CGROUP_DEVICE):
                pfd = bpf.prog_get_fd_by_id(pid)
                try:
                    out.append(bpf.prog_info(pfd))
                finally:
                    os.close(pfd)
            return out
        finally:
            os.close(fd)

    def pids(self) -> list[int]:
        return _pids_in(self.dir) if os.path.isdir(self.dir) else []

    def freeze(self) -> None:
        _write(self.dir + "/cgroup.freeze", "1")
        for _ in range(2000):
            if _kv(self.dir + "/cgroup.events").get("frozen") == 1:
                return
            time.sleep(0.001)
        raise CgroupError(f"cgroup: {self.dir} did not freeze")

    def thaw(self) -> None:
        _write(self.dir + "/cgroup.freeze", "0")

    def frozen(self) -> bool:
        return _kv(self.dir + "/cgroup.events").get("frozen") == 1

    def kill_all(self, sig: int) -> None:
        if sig == 9 and os.path.exists(self.dir + "/cgroup.kill"):
            _write(self.dir + "/cgroup.kill", "1")
            return
        super().kill_all(sig)

    def oom_watch(self) -> "OomWatch":
        """OOM kills counted in memory.events; the end is cgroup.events saying "populated 0"
        (both kernfs files wake a poll for POLLPRI when they change), as runc's fs2 does."""
        fds = []
        # without the memory controller there is no memory.events, and no OOM either
        names = ["cgroup.events"] + (["memory.events"] if os.path.exists(
            self.dir + "/memory.events") else [])
        try:
            for f in names:
                fds.append(os.open(f"{self.dir}/{f}", os.O_RDONLY | os.O_CLOEXEC))
        except OSError as e:
            for fd in fds:
                os.close(fd)
            raise CgroupError(f"cgroup: open {self.dir}/{f}: {e.strerror}") from e
        w = OomWatch(fds, [], self._v2_event, self.dir, prio=True)
        if len(fds) > 1:
            w.kills = _kv_fd(fds[1]).get("oom_kill", 0)
        return w

    @staticmethod
    def _v2_event(watch: "OomWatch", fd: int) -> str | None:
        if fd == watch.fds[0]:
            return "end" if _kv_fd(fd).get("populated", 1) == 0 else None
        kills = _kv_fd(fd).get("oom_kill", 0)
        if kills > watch.kills:
            watch.kills = kills
            return "oom"
        return None

    def stats(self) -> dict:
        d = self.dir
        out: dict = {}
        st = _kv(d + "/cpu.stat")
        out["cpu"] = {"usage": {"total": st.get("usage_usec", 0) * 1000,
                                "user": st.get("user_usec", 0) * 1000,
                                "kernel": st.get("system_usec", 0) * 1000},
                      "throttling": {"periods": st.get("nr_periods", 0),
                                     "throttled_periods": st.get("nr_throttled", 0),
                                     "throttled_time": st.get("throttled_usec", 0) * 1000}}
        if os.path.exists(d + "/memory.current"):
            raw = _kv(d + "/memory.stat")
            out["memory"] = {
                "cache": raw.get("file", 0),
                "usage": {"usage": _read_int(d + "/memory.current"),
                          "limit": _read_int(d + "/memory.max"),
                          "max": _read_int(d + "/memory.peak"),
                          "failcnt": _kv(d + "/memory.events").get("max", 0)},
                "swap": {"usage": _read_int(d + "/memory.swap.current"),
                         "limit": _read_int(d + "/memory.swap.max")},
                "raw": raw}
        if os.path.exists(d + "/pids.current"):
            lim = _read_int(d + "/pids.max")
            out["pids"] = {"current": _read_int(d + "/pids.current"),
                           "limit": 0 if lim == MAX_UINT64 else lim}
        out["blkio"] = {}
        out["hugetlb"] = {}
        return out


class OomWatch:
    """The fds that wake a poll when the container hits an OOM (or its cgroup ends), and how
    to read them: ``event(fd)`` says "oom", "end" or None (nothing that matters)."""

    def __init__(self, fds: list[int], keep: list[int], reader, directory: str,
                 prio: bool = False) -> None:
        self.fds, self.keep, self.reader, self.dir, self.prio = fds, keep, reader, directory, prio
        self.kills = 0

    def event(self, fd: int) -> str | None:
        return self.reader(self, fd)

    def close(self) -> None:
        for fd in self.fds + self.keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _kv_fd(fd: int) -> dict[str, int]:
    out = {}
    for line in os.pread(fd, 65536, 0).decode().splitlines():
        k, _, v = line.partition(" ")
        if v.isdigit():
            out[k] = int(v)
    return out


DEVICE_FILTER_NAME = "berth_devices"


def _in_user_namespace() -> bool:
    try:
        return _read("/proc/self/uid_map").split() != ["0", "0", "4294967295"]
    except OSError:
        return False


def attach_device_filter(cgroup_dir: str, insns: bytes) -> None:
    """Load ``insns`` as a cgroup device program and make it the one attached to
    ``cgroup_dir``. An old berth program is replaced atomically; a failure leaves the old one."""
    from berth.linux import bpf

    try:
        dfd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise CgroupError(f"cgroup: open {cgroup_dir}: {e.strerror}") from e
    prog = -1
    old: list[int] = []
    try:
        try:
            prog = _load_device_program(bpf, insns)
            for pid in bpf.prog_query(dfd, bpf.BPF_CGROUP_DEVICE):
                try:
                    old.append(bpf.prog_get_fd_by_id(pid))
                except PermissionError:
                    pass  # another manager's program behind an LSM: it can only restrict more
            if len(old) == 1:
                bpf.prog_attach(dfd, prog, bpf.BPF_CGROUP_DEVICE,
                                bpf.BPF_F_ALLOW_MULTI | bpf.BPF_F_REPLACE, old[0])
            else:
                bpf.prog_attach(dfd, prog, bpf.BPF_CGROUP_DEVICE, bpf.BPF_F_ALLOW_MULTI)
                for o in old:
                    bpf.prog_detach(dfd, o, bpf.BPF_CGROUP_DEVICE)
        except OSError as e:
            raise CgroupError(f"cgroup: device filter for {cgroup_dir}: {e.strerror}") from e
    finally:
        for fd in [dfd, prog, *old]:
            if fd >= 0:
                os.close(fd)


def _load_device_program(bpf, insns: bytes) -> int:
    try:
        return bpf.prog_load(bpf.BPF_PROG_TYPE_CGROUP_DEVICE, insns, "GPL", DEVICE_FILTER_NAME)
    except PermissionError:
        # Kernels before 5.11 charge programs to RLIMIT_MEMLOCK: lift it (it is not inherited
        # by the container, which gets process.rlimits) and try once more, as runc does.
        import resource

        inf = resource.RLIM_INFINITY
        try:
            resource.setrlimit(resource.RLIMIT_MEMLOCK, (inf, inf))
        except (OSError, ValueError):
            raise OSError(1, "loading a device program needs CAP_BPF or CAP_SYS_ADMIN") from None
    except OSError as e:
        if e.errno != 22:
            raise
        # EINVAL: ask the verifier why (a bug in berth's program, never the user's input)
        return bpf.prog_load(bpf.BPF_PROG_TYPE_CGROUP_DEVICE, insns, "GPL",
                             DEVICE_FILTER_NAME, log_size=1 << 16)
    return bpf.prog_load(bpf.BPF_PROG_TYPE_CGROUP_DEVICE, insns, "GPL", DEVICE_FILTER_NAME)


def manager(path: str, fs: CgroupFS | None = None) -> Manager:
    """The manager for cgroupsPath ``path`` on this host's cgroup setup."""
    fs = fs or CgroupFS()
    if fs.mode() == "unified":
        return V2Manager.for_path(path, fs)
    return V1Manager.for_path(path, fs)


def from_state(d: dict) -> Manager:
    if d.get("version") == 2:
        return V2Manager(d["paths"], d.get("mountpoint"))
    return V1Manager(d["paths"])
