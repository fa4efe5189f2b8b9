"""Shared pieces of the registry benchmarks: the test image, private daemons and registries.

Every process here is private (own root, socket, loopback port) and ended by its pid; nothing
touches the system dockerd or /var/lib/docker. The image is made here: ``LAYERS`` layers of
``LAYER_MB`` MB each, every layer a tar of 1 MB files of pseudo-random bytes (so gzip cannot
shrink it and the bytes on the wire are the sizes stated), pushed to a reference registry with
skopeo.
"""

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchkit

REPO = benchkit.REPO

LAYERS = int(os.environ.get("BENCH_LAYERS", "5"))
LAYER_MB = int(os.environ.get("BENCH_LAYER_MB", "40"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_image(layout: str, tag: str = "latest", seed: str = "bench"):
    """An OCI layout with the benchmark image; returns imagegen's Built."""
    import gzip
    import hashlib
    import io
    import json
    import random
    import tarfile

    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    Path(layout, "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    descs, diff_ids = [], []
    for i in range(LAYERS):
        rnd = random.Random(f"{seed}-{i}")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            for j in range(LAYER_MB):
                data = rnd.randbytes(1 << 20)
                ti = tarfile.TarInfo(f"layer{i}/file{j:03d}.bin")
                ti.size, ti.mtime = len(data), 0
                t.addfile(ti, io.BytesIO(data))
        tar = buf.getvalue()
        gz = gzip.compress(tar, compresslevel=1, mtime=0)
        d = "sha256:" + hashlib.sha256(gz).hexdigest()
        Path(layout, "blobs", "sha256", d[7:]).write_bytes(gz)
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                      "digest": d, "size": len(gz)})
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "created": "2026-01-01T00:00:00Z",
                      "config": {"Cmd": ["/bin/sh"]},
                      "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    cd = "sha256:" + hashlib.sha256(cfg).hexdigest()
    Path(layout, "blobs", "sha256", cd[7:]).write_bytes(cfg)
    man = json.dumps({"schemaVersion": 2,
                      "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                 "digest": cd, "size": len(cfg)},
                      "layers": descs}).encode()
    md = "sha256:" + hashlib.sha256(man).hexdigest()
    Path(layout, "blobs", "sha256", md[7:]).write_bytes(man)
    Path(layout, "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md,
         "size": len(man), "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    return md, sum(x["size"] for x in descs), cd


class Proc:
    def __init__(self, args, log: Path, env=None) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def wait_http(url: str, timeout: float = 20) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


def reference_registry(base: Path) -> tuple[Proc, str]:
    port = free_port()
    (base / "root").mkdir(parents=True, exist_ok=True)
    cfg = base / "config.yml"
    cfg.write_text("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
                   f"storage:\n  filesystem:\n    rootdirectory: {base / 'root'}\n"
                   f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n")
    p = Proc(["docker-registry", "serve", str(cfg)], base / "registry.log")
    wait_http(f"http://127.0.0.1:{port}/v2/")
    return p, f"127.0.0.1:{port}"


def berth_registry(base: Path, *extra: str) -> tuple[Proc, str]:
    port = free_port()
    p = Proc([sys.executable, "-m", "berth.distribution.server", "serve", "--addr",
              f"127.0.0.1:{port}", "--root", str(base / "root"), *extra], base / "registry.log")
    wait_http(f"http://127.0.0.1:{port}/v2/")
    return p, f"127.0.0.1:{port}"


class Dockerd(benchkit.Dockerd):
    """The tests' private dockerd, on a temp base of its own."""

    def __init__(self) -> None:
        super().__init__(Path(tempfile.mkdtemp(prefix="berth-bench-dk-")))

    def run(self, *args: str) -> None:
        self.docker(*args)


class Berthd:
    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="berth-bench-bd-"))
        self.host = f"unix://{self.base}/berth.sock"
        self.p = Proc([str(REPO / ".venv/bin/berthd"), "--root", str(self.base / "root"),
                       "--run", str(self.base / "run"), "-H", self.host, "--bridge", "none"],
                      self.base / "berthd.log")
        deadline = time.monotonic() + 30
        while subprocess.run(["docker", "-H", self.host, "version"],
                             capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("berthd did not start: " +
                                   (self.base / "berthd.log").read_text())
            time.sleep(0.1)

    def berth(self, *args: str) -> None:
        subprocess.run([str(REPO / ".venv/bin/berth"), "-H", self.host, *args], check=True,
                       capture_output=True)

    def docker(self, *args: str) -> None:
        subprocess.run(["docker", "-H", self.host, *args], check=True, capture_output=True)

    def stop(self) -> None:
        self.p.stop()
        benchkit.sweep_mounts(self.base)
        shutil.rmtree(self.base, ignore_errors=True)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def report(title: str, results: dict[str, list[float]], base: str, mb: float) -> None:
    print(f"\n{title}  ({ROUNDS} rounds, alternating; {mb:.0f} MB image, {LAYERS} layers)")
    meds = {k: statistics.median(v) for k, v in results.items()}
    for k, v in results.items():
        print(f"  {k:<34} median {meds[k]:7.3f} s   {mb / meds[k]:7.1f} MB/s   "
              f"runs {' '.join(f'{x:.3f}' for x in v)}")
    for k in results:
        if k != base:
            print(f"  ratio {k} / {base}: time {meds[k] / meds[base]:.2f}x, "
                  f"throughput {meds[base] / meds[k]:.2f}x")
