#!/usr/bin/env python3
"""Published ports and network set-up: berth's network package against a private dockerd.

Run as root from the repository: ``.venv/bin/python bench/network_publish.py [--rounds N]``.

1. Data path. busybox httpd behind ``-p 127.0.0.1:P:80``: on berth (nftables DNAT from the
   host's loopback) and on dockerd (docker-proxy), and each at the container's own address,
   wrk -t2 -c16, alternating berth / dockerd / berth-direct / dockerd-direct each round. Prints
   medians of requests/s and p99 latency and the ratios the issue asks for (berth ≥ 1.3×
   dockerd, berth within 20% of direct).
2. Network set-up cost per container: berth's sandbox + attach + publish + teardown against
   dockerd's cost of a bridge network (``docker run --rm busybox true`` on its bridge minus
   the same with ``--network none``), alternating.

The dockerd here runs on its own root and socket with its own bridge (made by this script, not
docker0) and ``--iptables=false``: it leaves the host's iptables (and other engineers' FORWARD
traffic) alone, and the loopback path it serves a published port through is docker-proxy with
or without iptables. Traffic goes only to loopback and to this script's containers.
"""

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from network_common import BridgedDockerd  # noqa: E402

from berth.network.manager import NetworkManager  # noqa: E402
from berth.network.ports import parse_publish  # noqa: E402


def sh(*a, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(a, check=True, capture_output=True, text=True, **kw)


def free_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wrk(url: str, seconds: int) -> tuple[float, float]:
    """(requests/s, p99 latency in ms) of wrk -t2 -c16 against ``url``."""
    out = sh("wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", url).stdout
    rps = float(next(ln for ln in out.splitlines() if ln.startswith("Requests/sec")).split()[1])
    p99 = next(ln for ln in out.splitlines() if ln.strip().startswith("99%")).split()[1]
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    num = p99.rstrip("usm")
    return rps, float(num) * unit[p99[len(num):]]


def wait_http(url: str) -> None:
    deadline = time.monotonic() + 10
    while subprocess.run(["busybox", "timeout", "3", "busybox", "wget", "-qO", "/dev/null", url],
                         capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} never answered")
        time.sleep(0.1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--setups", type=int, default=15)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root")

    sfx = secrets.token_hex(3)
    tmp = Path(tempfile.mkdtemp(prefix="bnb-"))
    rootfs = tmp / "rootfs"
    sh(str(REPO / "scripts/busybox-rootfs.sh"), str(rootfs))
    mgr = NetworkManager(str(tmp / "root"), str(tmp / "run"), table=f"bb_{sfx}",
                         default_bridge=f"bb{sfx}b", upstream=[])
    dbr = f"bb{sfx}d"
    dockerd = None
    procs: list[subprocess.Popen] = []
    try:
        mgr.ensure_default()
        # dockerd's bridge: a subnet from berth's own pool logic, so nothing on the host clashes.
        from berth.network import ipam

        dsub = ipam.pick_subnet(mgr._taken_subnets())
        dockerd = BridgedDockerd(Path(tempfile.mkdtemp(prefix="bnbd-")), dbr, dsub)
        tar = tmp / "busybox.tar"
        sh("tar", "-C", str(rootfs), "-cf", str(tar), ".")
        dockerd.docker("import", str(tar), "busybox:latest")

        # -- the data path ---------------------------------------------------------------------
        # Separate servers for the published and the direct runs: both paths reach the server
        # from the gateway's address, and the TIME_WAIT tuples one run leaves in the server
        # would otherwise slow the SYNs of the next (conntrack picks around them, the host's
        # own port choice does not).
        sids, eps = [], []
        for _ in range(2):
            sid = secrets.token_hex(32)
            path = mgr.create_sandbox(sid)
            eps.append(mgr.attach(sid, "bridge"))
            sids.append(sid)
            procs.append(subprocess.Popen(["nsenter", f"--net={path}", "chroot", str(rootfs),
                                           "httpd", "-f", "-p", "80", "-h", "/var/www"]))
        bport = free_port()
        mgr.publish(sids[0], parse_publish(f"127.0.0.1:{bport}:80"))
        ep = eps[1]
        dport = free_port()
        cid = dockerd.docker("run", "-d", "-p", f"127.0.0.1:{dport}:80", "busybox", "httpd",
                             "-f", "-p", "80", "-h", "/var/www").stdout.strip()
        cid2 = dockerd.docker("run", "-d", "busybox", "httpd", "-f", "-p", "80", "-h",
                              "/var/www").stdout.strip()
        dip = dockerd.docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}",
                             cid2).stdout.strip()
        targets = {
            "berth -p": f"http://127.0.0.1:{bport}/",
            "dockerd -p": f"http://127.0.0.1:{dport}/",
            "berth direct": f"http://{ep.ip}:80/",
            "dockerd direct": f"http://{dip}:80/",
        }
        for url in targets.values():
            wait_http(url)
        res: dict[str, list[tuple[float, float]]] = {k: [] for k in targets}
        for r in range(args.rounds):
            for k, url in targets.items():
                res[k].append(wrk(url, args.seconds))
                print(f"round {r + 1} {k:15s} {res[k][-1][0]:9.0f} req/s  p99 "
                      f"{res[k][-1][1]:8.2f} ms", flush=True)
        med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
               for k, v in res.items()}
        print("\npublished port, wrk -t2 -c16, medians of", args.rounds, "rounds:")
        for k, (rps, p99) in med.items():
            print(f"  {k:15s} {rps:9.0f} req/s  p99 {p99:8.2f} ms")
        bp, dp = med["berth -p"], med["dockerd -p"]
        print(f"  berth -p / dockerd -p requests/s:   {bp[0] / dp[0]:.2f}x  (goal >= 1.3x)")
        print(f"  berth -p / dockerd -p p99 latency:  {bp[1] / dp[1]:.3f}x  (goal <= 1x)")
        print(f"  berth -p / berth direct requests/s: "
              f"{med['berth -p'][0] / med['berth direct'][0]:.2f}x  (goal >= 0.8x)")
        dockerd.docker("rm", "-f", cid, cid2)
        for p in procs:
            p.kill()
            p.wait()
        procs.clear()
        for sid in sids:
            mgr.destroy_sandbox(sid)

        # -- network set-up cost per container ---------------------------------------------------
        b_cost, d_bridge, d_none = [], [], []
        for _ in range(args.setups):
            s = secrets.token_hex(32)
            t = time.perf_counter()
            mgr.create_sandbox(s)
            mgr.attach(s, "bridge")
            mgr.publish(s, parse_publish("80"))
            mgr.destroy_sandbox(s)
            b_cost.append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            dockerd.docker("run", "--rm", "busybox", "/bin/true")
            d_bridge.append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            dockerd.docker("run", "--rm", "--network", "none", "busybox", "/bin/true")
            d_none.append((time.perf_counter() - t) * 1e3)
        mb, mdb, mdn = (statistics.median(x) for x in (b_cost, d_bridge, d_none))
        print(f"\nnetwork set-up + teardown per container, medians of {args.setups}:")
        print(f"  berth sandbox+attach+publish+destroy: {mb:7.2f} ms")
        print(f"  docker run --rm busybox /bin/true:    {mdb:7.1f} ms (bridge)")
        print(f"  docker run --rm --network none ...:   {mdn:7.1f} ms")
        print(f"  dockerd's bridge network cost:        {mdb - mdn:7.1f} ms")
        print(f"  berth / dockerd network cost:         {mb / max(mdb - mdn, 1e-9):.3f}x")
    finally:
        for p in procs:
            p.kill()
            p.wait()
        if dockerd:
            dockerd.stop()
        subprocess.run(["ip", "link", "del", dbr], capture_output=True)
        mgr.teardown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
