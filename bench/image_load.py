#!/usr/bin/env python3
"""Benchmark: `docker load` / `docker save` of a ~200 MB three-layer docker-archive into berthd
and into dockerd, alternating, in one run; prints both medians and the ratio (goal ≤ 1.0×).
Then loads a second image that shares all but one layer and prints the bytes each engine wrote
to disk for it (goal: ≈ that one layer).

Both engines are private (temp roots and sockets) and driven by the same docker CLI.
Usage: bench/image_load.py [--runs N] [--mb 200]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def layer(seed: int, mb: int, small_files: int) -> bytes:
    """A layer of a few large files (half random, half compressible) and many small ones."""
    buf = io.BytesIO()
    rnd = hashlib.sha256(str(seed).encode()).digest()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        d = tarfile.TarInfo(f"layer{seed}")
        d.type = tarfile.DIRTYPE
        d.mode = 0o755
        tf.addfile(d)
        per = max(mb // 4, 1) << 20
        for i in range(4):
            data = os.urandom(per // 2) + (rnd * (per // 64))[:per // 2]
            ti = tarfile.TarInfo(f"layer{seed}/big{i}")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        for i in range(small_files):
            data = os.urandom(512 + i % 3000)
            ti = tarfile.TarInfo(f"layer{seed}/small/{i // 100}/f{i}")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def archive(layers: list[bytes], tag: str) -> bytes:
    diff_ids = ["sha256:" + hashlib.sha256(x).hexdigest() for x in layers]
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
                      "config": {"Cmd": ["sh"]},
                      "rootfs": {"type": "layers", "diff_ids": diff_ids},
                      "history": [{"created": "2026-01-01T00:00:00Z"} for _ in layers]}).encode()
    cname = hashlib.sha256(cfg).hexdigest() + ".json"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        def add(name, data):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        paths = []
        for d, x in zip(diff_ids, layers, strict=True):
            paths.append(f"{d[7:]}/layer.tar")
            add(paths[-1], x)
        add(cname, cfg)
        add("manifest.json", json.dumps([{"Config": cname, "RepoTags": [tag],
                                          "Layers": paths}]).encode())
    return buf.getvalue()


class Engine:
    def __init__(self, name: str, argv: list[str], host: str, root: str, base: str) -> None:
        self.name = name
        self.host = host
        self.root = root
        self.base = base
        self.log = open(os.path.join(base, f"{name}.log"), "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while subprocess.run(["docker", "-H", host, "version"], capture_output=True).returncode:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"{name} did not start; see {base}/{name}.log")
            time.sleep(0.2)

    def docker(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "-H", self.host, *args], check=True,
                              capture_output=True, **kw)

    def timed(self, *args: str) -> float:
        t = time.perf_counter()
        self.docker(*args)
        return time.perf_counter() - t

    def disk(self) -> int:
        subprocess.run(["sync"], check=True)
        out = subprocess.run(["du", "-s", "-B1", self.root], capture_output=True, text=True,
                             check=True).stdout
        return int(out.split()[0])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--mb", type=int, default=200)
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (runs private berthd and dockerd)", file=sys.stderr)
        return 1
    base = tempfile.mkdtemp(prefix="berth-bench-")
    engines = []
    try:
        mb = a.mb
        layers = [layer(1, mb * 5 // 10, 3000), layer(2, mb * 3 // 10, 1500),
                  layer(3, mb * 2 // 10, 500)]
        img = os.path.join(base, "img.tar")
        with open(img, "wb") as f:
            f.write(archive(layers, "bench/img:1"))
        second = os.path.join(base, "second.tar")
        new_layer = layer(4, mb * 2 // 10, 500)
        with open(second, "wb") as f:
            f.write(archive(layers[:2] + [new_layer], "bench/img:2"))
        size = os.path.getsize(img)
        sizes = ", ".join(f"{len(x) / 1e6:.0f} MB" for x in layers)
        print(f"archive: {size / 1e6:.1f} MB, 3 layers ({sizes})")

        bd = os.path.join(base, "berth")
        os.makedirs(bd)
        engines.append(Engine("berthd", [os.path.join(REPO, ".venv/bin/berthd"), "--root",
                                         f"{bd}/root", "--run", f"{bd}/run", "-H",
                                         f"unix://{bd}/b.sock", "--bridge", "none"], f"unix://{bd}/b.sock",
                              f"{bd}/root", base))
        dd = os.path.join(base, "docker")
        os.makedirs(dd)
        engines.append(Engine("dockerd", ["dockerd", "--data-root", f"{dd}/data", "--exec-root",
                                          f"{dd}/exec", "-H", f"unix://{dd}/d.sock", "--pidfile",
                                          f"{dd}/d.pid", "--bridge=none", "--iptables=false",
                                          "--ip6tables=false"], f"unix://{dd}/d.sock",
                              f"{dd}/data", base))
        times: dict[str, dict[str, list[float]]] = {e.name: {"load": [], "save": []}
                                                    for e in engines}
        out = os.path.join(base, "out.tar")
        for i in range(a.runs):
            for e in (engines if i % 2 == 0 else list(reversed(engines))):
                subprocess.run(["sync"], check=True)
                times[e.name]["load"].append(e.timed("load", "-q", "-i", img))
                times[e.name]["save"].append(e.timed("save", "-o", out, "bench/img:1"))
                os.unlink(out)
                e.docker("rmi", "bench/img:1")
        print(f"{'':8} {'berthd':>10} {'dockerd':>10}  ratio (berthd/dockerd)")
        for op in ("load", "save"):
            b = statistics.median(times["berthd"][op])
            d = statistics.median(times["dockerd"][op])
            print(f"{op:8} {b:9.3f}s {d:9.3f}s  {b / d:.2f}x")
        # bytes written for a second image sharing all but one layer
        print(f"second image: shares 2 of 3 layers; its own layer is {len(new_layer) / 1e6:.1f} MB")
        for e in engines:
            e.docker("load", "-q", "-i", img)
            before = e.disk()
            e.docker("load", "-q", "-i", second)
            grown = e.disk() - before
            print(f"  {e.name:8} wrote {grown / 1e6:8.1f} MB  ({grown / len(new_layer):.2f}x the "
                  "new layer)")
        return 0
    finally:
        for e in engines:
            e.stop()
        for line in reversed(open("/proc/self/mountinfo").read().splitlines()):
            mnt = line.split()[4]
            if mnt.startswith(base):
                subprocess.run(["umount", "-l", mnt], check=False)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
