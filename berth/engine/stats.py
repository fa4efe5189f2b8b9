"""A running container's resource use, read from its cgroups, in Docker's stats shape; and
``top``'s process table.

The container's cgroups are found from its init's ``/proc/PID/cgroup`` (whatever path the
runtime chose), in the v1 hierarchies or the unified v2 one. The numbers are Docker's:

- ``cpu_stats.cpu_usage.total_usage`` (ns, cpuacct.usage or cpu.stat usage_usec),
  ``system_cpu_usage`` (ns of all CPUs from /proc/stat), ``online_cpus`` — ``docker stats``
  computes CPU % from two samples of these;
- ``memory_stats.usage``/``limit``/``stats`` (memory.stat; the CLI subtracts
  ``total_inactive_file``/``inactive_file``); a limit above the host's memory shows as the
  host's memory, as dockerd shows it;
- ``pids_stats.current``/``limit``; ``blkio_stats`` from blkio.throttle; ``networks`` from
  the container's network namespace (``/proc/PID/net/dev``, loopback left out).
"""

from __future__ import annotations

import os
import time

CGROUP = "/sys/fs/cgroup"
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _int(path: str, default: int = 0) -> int:
    v = _read(path).strip()
    if v == "max":
        return -1
    try:
        return int(v)
    except ValueError:
        return default


def cgroup_paths(pid: int) -> dict[str, str]:
    """controller → directory of ``pid``'s cgroup ("" → the unified v2 one)."""
    out: dict[str, str] = {}
    for line in _read(f"/proc/{pid}/cgroup").splitlines():
        hid, _, rest = line.partition(":")
        ctrls, _, path = rest.partition(":")
        if hid == "0" and ctrls == "":
            unified = os.path.join(CGROUP, "unified")
            base = unified if os.path.isdir(unified) and \
                not os.path.exists(os.path.join(CGROUP, "cgroup.controllers")) else CGROUP
            out[""] = base + path
            continue
        for ctrl in ctrls.split(","):
            if ctrl.startswith("name="):
                continue
            d = os.path.join(CGROUP, ctrl)
            if not os.path.isdir(d):
                d = os.path.join(CGROUP, ctrls)
            out[ctrl] = d + path
    return out


def pids_of(pid: int) -> list[int]:
    """Every process in ``pid``'s container (its cgroup), for ``top``."""
    paths = cgroup_paths(pid)
    for ctrl in ("pids", "memory", "cpuacct", "devices", ""):
        d = paths.get(ctrl)
        if d and os.path.exists(os.path.join(d, "cgroup.procs")):
            out = []
            for line in _read(os.path.join(d, "cgroup.procs")).split():
                if line.isdigit():
                    out.append(int(line))
            return out
    return [pid]


def system_cpu_usage() -> int:
    for line in _read("/proc/stat").splitlines():
        if line.startswith("cpu "):
            ticks = sum(int(x) for x in line.split()[1:8])
            return ticks * 1_000_000_000 // _CLK_TCK
    return 0


def _mem_total() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _kv(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        try:
            out[k] = int(v)
        except ValueError:
            pass
    return out


def _blkio(path: str) -> list[dict]:
    out = []
    for line in _read(path).splitlines():
        parts = line.split()
        if len(parts) != 3 or ":" not in parts[0]:
            continue
        major, _, minor = parts[0].partition(":")
        out.append({"major": int(major), "minor": int(minor), "op": parts[1],
                    "value": int(parts[2])})
    return out


def _networks(pid: int) -> dict:
    out = {}
    for line in _read(f"/proc/{pid}/net/dev").splitlines()[2:]:
        name, _, rest = line.partition(":")
        name = name.strip()
        if not name or name == "lo":
            continue
        v = [int(x) for x in rest.split()]
        if len(v) < 16:
            continue
        out[name] = {"rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2],
                     "rx_dropped": v[3], "tx_bytes": v[8], "tx_packets": v[9],
                     "tx_errors": v[10], "tx_dropped": v[11]}
    return out


def _rfc3339(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + \
        f".{ns % 1_000_000_000:09d}Z"


ZERO = "0001-01-01T00:00:00Z"


def empty_cpu() -> dict:
    return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def sample(pid: int) -> dict:
    """One sample of a running container's stats (without name/id/precpu)."""
    paths = cgroup_paths(pid)
    now = time.time_ns()
    cpu: dict = empty_cpu()
    mem: dict = {}
    pids: dict = {}
    blk: dict = {"io_service_bytes_recursive": None, "io_serviced_recursive": None,
                 "io_queue_recursive": None, "io_service_time_recursive": None,
                 "io_wait_time_recursive": None, "io_merged_recursive": None,
                 "io_time_recursive": None, "sectors_recursive": None}
    ncpu = os.cpu_count() or 1
    if "cpuacct" in paths:
        d = paths["cpuacct"]
        percpu = [int(x) for x in _read(os.path.join(d, "cpuacct.usage_percpu")).split()]
        st = _kv(_read(os.path.join(d, "cpuacct.stat")))
        tick = 1_000_000_000 // _CLK_TCK
        cpu["cpu_usage"] = {"total_usage": _int(os.path.join(d, "cpuacct.usage")),
                            "percpu_usage": percpu,
                            "usage_in_kernelmode": st.get("system", 0) * tick,
                            "usage_in_usermode": st.get("user", 0) * tick}
        ncpu = len([x for x in percpu]) or ncpu
    if "cpu" in paths:
        st = _kv(_read(os.path.join(paths["cpu"], "cpu.stat")))
        cpu["throttling_data"] = {"periods": st.get("nr_periods", 0),
                                  "throttled_periods": st.get("nr_throttled", 0),
                                  "throttled_time": st.get("throttled_time", 0)}
    elif "" in paths:
        d = paths[""]
        st = _kv(_read(os.path.join(d, "cpu.stat")))
        if st:
            cpu["cpu_usage"] = {"total_usage": st.get("usage_usec", 0) * 1000,
                                "usage_in_kernelmode": st.get("system_usec", 0) * 1000,
                                "usage_in_usermode": st.get("user_usec", 0) * 1000}
            cpu["throttling_data"] = {"periods": st.get("nr_periods", 0),
                                      "throttled_periods": st.get("nr_throttled", 0),
                                      "throttled_time": st.get("throttled_usec", 0) * 1000}
    online = _read("/sys/devices/system/cpu/online").strip()
    if online:
        from .hostconfig import parse_cpuset

        try:
            ncpu = len(parse_cpuset(online))
        except Exception:  # noqa: BLE001 - keep the count we have
            pass
    cpu["system_cpu_usage"] = system_cpu_usage()
    cpu["online_cpus"] = ncpu
    host_mem = _mem_total()
    if "memory" in paths:
        d = paths["memory"]
        limit = _int(os.path.join(d, "memory.limit_in_bytes"))
        if limit < 0 or (host_mem and limit > host_mem):
            limit = host_mem
        mem = {"usage": _int(os.path.join(d, "memory.usage_in_bytes")),
               "max_usage": _int(os.path.join(d, "memory.max_usage_in_bytes")),
               "stats": _kv(_read(os.path.join(d, "memory.stat"))),
               "failcnt": _int(os.path.join(d, "memory.failcnt")),
               "limit": limit}
    elif "" in paths:
        d = paths[""]
        limit = _int(os.path.join(d, "memory.max"), -1)
        if limit < 0 or (host_mem and limit > host_mem):
            limit = host_mem
        mem = {"usage": _int(os.path.join(d, "memory.current")),
               "stats": _kv(_read(os.path.join(d, "memory.stat"))), "limit": limit}
    pd = paths.get("pids") or paths.get("")
    if pd:
        pids = {"current": _int(os.path.join(pd, "pids.current"))}
        lim = _int(os.path.join(pd, "pids.max"), -1)
        if lim > 0:
            pids["limit"] = lim
    if "blkio" in paths:
        d = paths["blkio"]
        blk["io_service_bytes_recursive"] = \
            _blkio(os.path.join(d, "blkio.throttle.io_service_bytes_recursive")) or \
            _blkio(os.path.join(d, "blkio.throttle.io_service_bytes"))
        blk["io_serviced_recursive"] = \
            _blkio(os.path.join(d, "blkio.throttle.io_serviced_recursive")) or \
            _blkio(os.path.join(d, "blkio.throttle.io_serviced"))
    out = {"read": _rfc3339(now), "pids_stats": pids, "blkio_stats": blk, "num_procs": 0,
           "storage_stats": {}, "cpu_stats": cpu, "memory_stats": mem}
    nets = _networks(pid)
    if nets:
        out["networks"] = nets
    return out


def stopped_sample() -> dict:
    """What dockerd sends for a container that is not running: zeros."""
    return {"read": ZERO, "preread": ZERO, "pids_stats": {}, "blkio_stats": {
        k: None for k in ("io_service_bytes_recursive", "io_serviced_recursive",
                          "io_queue_recursive", "io_service_time_recursive",
                          "io_wait_time_recursive", "io_merged_recursive",
                          "io_time_recursive", "sectors_recursive")},
        "num_procs": 0, "storage_stats": {}, "cpu_stats": empty_cpu(),
        "precpu_stats": empty_cpu(), "memory_stats": {}}


def top(pids: list[int], ps_args: str = "") -> dict:
    """Docker's top: ``ps ARGS`` on the host, rows kept for the container's pids."""
    import subprocess

    from berth.errors import InvalidArgument

    args = ps_args.split() if ps_args else ["-ef"]
    try:
        out = subprocess.run(["ps", *args], capture_output=True, text=True, check=True).stdout
    except subprocess.CalledProcessError as e:
        raise InvalidArgument(f"ps: {e.stderr.strip()}") from None
    except FileNotFoundError:
        raise InvalidArgument("ps: not found on the host (apt-get install procps)") from None
    lines = out.splitlines()
    if not lines:
        return {"Titles": [], "Processes": []}
    titles = lines[0].split()
    try:
        pid_col = titles.index("PID")
    except ValueError:
        raise InvalidArgument("Couldn't find PID field in ps output") from None
    want = set(pids)
    procs = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) <= pid_col:
            continue
        try:
            p = int(fields[pid_col])
        except ValueError:
            continue
        if p in want:
            procs.append(fields)
    return {"Titles": titles, "Processes": procs}
