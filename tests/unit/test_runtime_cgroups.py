"""Both cgroup managers against a fake cgroupfs in a tempdir: path resolution, the files each
limit is written to, the v1 cpuset seeding, v2 controller enabling and unit conversions."""

import os

import pytest

from berth.runtime import cgroups, devices
from berth.runtime.errors import CgroupError

V1_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
V1_SELF = "5:pids:/\n4:memory:/user/me\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n6:freezer:/\n" \
          "7:devices:/\n0::/\n"
V2_MOUNTINFO = "31 23 0:28 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n"


def fake(tmp_path, mountinfo, self_cgroup):
    mi = tmp_path / "mountinfo"
    mi.write_text(mountinfo)
    sc = tmp_path / "self_cgroup"
    sc.write_text(self_cgroup)
    return cgroups.CgroupFS(str(mi), str(sc), prefix=str(tmp_path / "fs"))


@pytest.fixture
def v1(tmp_path):
    fs = fake(tmp_path, V1_MOUNTINFO, V1_SELF)
    for sub in ("cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "devices", "unified"):
        os.makedirs(f"{fs.prefix}/sys/fs/cgroup/{sub}")
    cs = f"{fs.prefix}/sys/fs/cgroup/cpuset"
    open(cs + "/cpuset.cpus", "w").write("0-3\n")
    open(cs + "/cpuset.mems", "w").write("0\n")
    return fs


def test_detect_modes(tmp_path, v1):
    assert v1.mode() == "hybrid"
    assert cgroups.detect(fake(tmp_path / "u", V2_MOUNTINFO, "0::/\n")
                          if (tmp_path / "u").mkdir() is None else None) == "unified"
    legacy = "".join(line + "\n" for line in V1_MOUNTINFO.splitlines() if "cgroup2" not in line)
    (tmp_path / "l").mkdir()
    assert fake(tmp_path / "l", legacy, V1_SELF).mode() == "legacy"


def test_v1_paths_relative_and_absolute(v1):
    rel = cgroups.manager("pre/c1", v1)
    assert isinstance(rel, cgroups.V1Manager)
    assert rel.paths["memory"] == f"{v1.prefix}/sys/fs/cgroup/memory/user/me/pre/c1"
    assert rel.paths["cpu"] == f"{v1.prefix}/sys/fs/cgroup/cpu/pre/c1"
    assert rel.paths["unified"] == f"{v1.prefix}/sys/fs/cgroup/unified/pre/c1"
    ab = cgroups.manager("/abs/c1", v1)
    assert ab.paths["memory"] == f"{v1.prefix}/sys/fs/cgroup/memory/abs/c1"


def test_v1_create_seeds_cpuset_and_writes_limits(v1):
    m = cgroups.manager("/a/b", v1)
    # the kernel makes a new cpuset with empty cpus/mems files
    cs = m.paths["cpuset"]
    for d in (os.path.dirname(cs), cs):
        os.makedirs(d, exist_ok=True)
        for f in ("cpuset.cpus", "cpuset.mems"):
            open(f"{d}/{f}", "w").close()
    m.create()
    cs = m.paths["cpuset"]
    assert open(cs + "/cpuset.cpus").read().strip() == "0-3"
    assert open(os.path.dirname(cs) + "/cpuset.mems").read().strip() == "0"
    open(cs + "/cpuset.cpus", "w").close()  # a fake file keeps old bytes past a short write
    mem = m.paths["memory"]
    for f in ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes",
              "memory.soft_limit_in_bytes"):
        open(f"{mem}/{f}", "w").write("-1")
    for f in ("cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us"):
        open(f"{m.paths['cpu']}/{f}", "w").write("0")
    open(m.paths["pids"] + "/pids.max", "w").write("max")
    m.set({"memory": {"limit": 1 << 26, "swap": 1 << 27, "reservation": 1 << 25},
           "cpu": {"shares": 512, "quota": 20000, "period": 100000, "cpus": "1"},
           "pids": {"limit": -1}})
    assert open(mem + "/memory.limit_in_bytes").read() == str(1 << 26)
    assert open(mem + "/memory.memsw.limit_in_bytes").read() == str(1 << 27)
    assert open(mem + "/memory.soft_limit_in_bytes").read() == str(1 << 25)
    assert open(m.paths["cpu"] + "/cpu.cfs_quota_us").read() == "20000"
    assert open(m.paths["cpuset"] + "/cpuset.cpus").read() == "1"
    assert open(m.paths["pids"] + "/pids.max").read() == "max"


def test_v1_swap_needs_accounting(v1):
    m = cgroups.manager("/s", v1)
    m.create()
    open(m.paths["memory"] + "/memory.limit_in_bytes", "w").write("-1")
    with pytest.raises(CgroupError, match="swap accounting"):
        m.set({"memory": {"limit": 10, "swap": 20}})


def test_v1_devices_rules_in_order_then_defaults(v1):
    m = cgroups.manager("/d", v1)
    m.create()
    d = m.paths["devices"]
    open(d + "/devices.list", "w").write("a *:* rwm\n")  # a new v1 cgroup allows everything
    # a fake cgroupfs keeps only the last write; record them all instead
    writes = []
    orig = cgroups._write
    cgroups._write = lambda p, v: writes.append((os.path.basename(p), v))
    try:
        m.set_devices(devices.evaluate([{"allow": False, "access": "rwm"},
                                        {"allow": True, "type": "c", "major": 10,
                                         "minor": 229, "access": "rw"}]))
    finally:
        cgroups._write = orig
    assert writes[0] == ("devices.deny", "a")
    assert ("devices.allow", "c 10:229 rw") in writes
    assert ("devices.allow", "c 1:3 rwm") in writes and ("devices.allow", "c 136:* rwm") in writes
    assert all(f == "devices.allow" for f, _ in writes[1:])


def test_v1_stats_from_files(v1):
    m = cgroups.manager("/st", v1)
    m.create()
    ca, mem, p = m.paths["cpuacct"], m.paths["memory"], m.paths["pids"]
    open(ca + "/cpuacct.usage", "w").write("12345\n")
    open(ca + "/cpuacct.usage_percpu", "w").write("10000 2345\n")
    open(ca + "/cpuacct.stat", "w").write("user 2\nsystem 1\n")
    open(mem + "/memory.usage_in_bytes", "w").write("4096\n")
    open(mem + "/memory.limit_in_bytes", "w").write("8192\n")
    open(mem + "/memory.stat", "w").write("cache 100\nrss 200\n")
    open(p + "/pids.current", "w").write("3\n")
    open(p + "/pids.max", "w").write("max\n")
    s = m.stats()
    assert s["cpu"]["usage"]["total"] == 12345
    assert s["cpu"]["usage"]["percpu"] == [10000, 2345]
    assert s["cpu"]["usage"]["user"] == 2 * 10**9 // os.sysconf("SC_CLK_TCK")
    assert s["memory"]["usage"]["usage"] == 4096 and s["memory"]["cache"] == 100
    assert s["memory"]["raw"] == {"cache": 100, "rss": 200}
    assert s["pids"] == {"current": 3, "limit": 0}


@pytest.fixture
def v2(tmp_path):
    fs = fake(tmp_path, V2_MOUNTINFO, "0::/user/me\n")
    top = f"{fs.prefix}/sys/fs/cgroup"
    os.makedirs(top)
    open(top + "/cgroup.controllers", "w").write("cpu memory pids io\n")
    open(top + "/cgroup.subtree_control", "w").write("")
    return fs


def test_v2_path_and_controller_enabling(v2):
    m = cgroups.manager("c2", v2)
    assert isinstance(m, cgroups.V2Manager)
    assert m.dir == f"{v2.prefix}/sys/fs/cgroup/user/me/c2"
    m.create()
    top = f"{v2.prefix}/sys/fs/cgroup"
    assert open(top + "/cgroup.subtree_control").read() == "+cpu +memory +pids +io"
    assert os.path.isdir(m.dir)


def test_v2_limits_and_conversions(v2):
    m = cgroups.manager("/c3", v2)
    m.create()
    open(m.dir + "/cgroup.controllers", "w").write("cpu memory pids io\n")
    for f in ("memory.max", "memory.swap.max", "memory.low", "cpu.weight", "cpu.max",
              "pids.max", "io.weight", "memory.high"):
        open(f"{m.dir}/{f}", "w").close()
    m.set({"memory": {"limit": 1000, "swap": 3000, "reservation": 500},
           "cpu": {"shares": 1024, "quota": 50000, "period": 100000},
           "pids": {"limit": 10}, "blockIO": {"weight": 500},
           "unified": {"memory.high": "900"}})
    r = lambda f: open(f"{m.dir}/{f}").read()  # noqa: E731
    assert r("memory.max") == "1000"
    assert r("memory.swap.max") == "2000"  # the spec's swap is memory+swap
    assert r("memory.low") == "500"
    assert r("cpu.weight") == "39"  # 1 + (1024-2)*9999/262142
    assert r("cpu.max") == "50000 100000"
    assert r("pids.max") == "10"
    assert r("io.weight") == str(1 + (500 - 10) * 9999 // 990)
    assert r("memory.high") == "900"
    assert cgroups.shares_to_weight(2) == 1 and cgroups.shares_to_weight(262144) == 10000


def test_v2_missing_controller_is_a_clear_error(v2):
    m = cgroups.manager("/c4", v2)
    m.create()
    open(m.dir + "/cgroup.controllers", "w").write("pids\n")
    with pytest.raises(CgroupError, match="memory controller"):
        m.set({"memory": {"limit": 1000}})
    with pytest.raises(CgroupError, match="bad file name"):
        open(m.dir + "/cgroup.controllers", "w").write("")
        m.set({"unified": {"../escape": "1"}})


def test_state_round_trip_v1(v1):
    m = cgroups.manager("/rt", v1)
    m2 = cgroups.from_state(m.to_state())
    assert type(m2) is cgroups.V1Manager and m2.paths == m.paths


def test_state_round_trip_v2(v2):
    m = cgroups.manager("/rt", v2)
    m2 = cgroups.from_state(m.to_state())
    assert type(m2) is cgroups.V2Manager and m2.paths == m.paths


def test_v1_limit_without_its_hierarchy_is_a_clear_error(v1):
    """As runc: a limit whose controller is not mounted fails, never silently unset."""
    m = cgroups.manager("/berth-x", v1)
    m.create()
    for res, field in (({"network": {"classID": 7}}, "network.classID needs the net_cls"),
                       ({"network": {"priorities": [{"name": "eth0", "priority": 1}]}},
                        "network.priorities needs the net_prio"),
                       ({"blockIO": {"weight": 100}}, "blockIO needs the blkio"),
                       ({"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]},
                        "hugepageLimits needs the hugetlb")):
        with pytest.raises(CgroupError, match=field):
            m.set(res)


def test_v1_network_classid_and_priorities(tmp_path):
    mi = V1_MOUNTINFO + ("42 31 0:39 / /sys/fs/cgroup/net_cls,net_prio rw,relatime - cgroup "
                         "cgroup rw,net_cls,net_prio\n")
    fs = fake(tmp_path, mi, V1_SELF + "8:net_cls,net_prio:/\n")
    m = cgroups.manager("/berth-n", fs)
    os.makedirs(m.paths["net_cls"])
    for f in ("net_cls.classid", "net_prio.ifpriomap"):
        open(f"{m.paths['net_cls']}/{f}", "w").close()
    m.set({"network": {"classID": 1048577, "priorities": [{"name": "lo", "priority": 3}]}})
    assert open(m.paths["net_cls"] + "/net_cls.classid").read() == "1048577"
    assert open(m.paths["net_prio"] + "/net_prio.ifpriomap").read() == "lo 3"


def test_v1_per_device_weights_use_bfq_files_when_cfq_is_gone(tmp_path):
    mi = V1_MOUNTINFO + "43 31 0:40 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio\n"
    fs = fake(tmp_path, mi, V1_SELF + "9:blkio:/\n")
    m = cgroups.manager("/berth-b", fs)
    os.makedirs(m.paths["blkio"])
    for f in ("blkio.bfq.weight", "blkio.bfq.weight_device", "blkio.leaf_weight_device"):
        open(f"{m.paths['blkio']}/{f}", "w").close()
    m.set({"blockIO": {"weight": 333, "weightDevice": [
        {"major": 7, "minor": 0, "weight": 444, "leafWeight": 10}]}})
    assert open(m.paths["blkio"] + "/blkio.bfq.weight").read() == "333"
    assert open(m.paths["blkio"] + "/blkio.bfq.weight_device").read() == "7:0 444"
    assert open(m.paths["blkio"] + "/blkio.leaf_weight_device").read() == "7:0 10"


def test_v2_io_weights_bfq_or_converted(v2):
    m = cgroups.manager("c", v2)
    m.create()
    for f in ("io.weight", "memory.max", "memory.swap.max"):
        open(f"{m.dir}/{f}", "w").close()
    open(m.dir + "/cgroup.controllers", "w").write("io memory\n")
    m.set({"blockIO": {"weight": 10, "weightDevice": [{"major": 8, "minor": 0, "weight": 1000}]}})
    assert open(m.dir + "/io.weight").read() == "8:0 10000"  # the last write: per device
    open(m.dir + "/io.bfq.weight", "w").close()
    m.set({"blockIO": {"weightDevice": [{"major": 8, "minor": 0, "weight": 444}]}})
    assert open(m.dir + "/io.bfq.weight").read() == "8:0 444"
    m.set({"memory": {"limit": -1}})  # no limit and no swap given: no swap limit either
    assert open(m.dir + "/memory.swap.max").read() == "max"


def test_exec_sub_cgroup_paths(v1):
    m = cgroups.manager("/ct", v1)
    assert cgroups.parse_sub_cgroups(["memory:a", "cpu,cpuacct:b"]) == {
        "memory": "a", "cpu": "b", "cpuacct": "b"}
    p = m.sub_paths(cgroups.parse_sub_cgroups(["memory:a", "cpu,cpuacct:b"]))
    assert p["memory"] == m.paths["memory"] + "/a" and p["cpuacct"] == m.paths["cpuacct"] + "/b"
    assert p["pids"] == m.paths["pids"]
    assert m.sub_paths({"": "x/y"})["pids"] == m.paths["pids"] + "/x/y"
    assert m.sub_paths({"": "/"}) == m.paths
    with pytest.raises(CgroupError, match="is not a sub cgroup path"):
        m.sub_paths({"": "../other"})
    with pytest.raises(CgroupError, match="unknown controller whaaat"):
        m.sub_paths({"whaaat": "/"})
    with pytest.raises(CgroupError, match="missing <controller>: prefix"):
        cgroups.parse_sub_cgroups(["a", "b"])
