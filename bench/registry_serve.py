#!/usr/bin/env python3
"""berth's registry serving pulls vs the reference registry (Debian's docker-registry 2.8).
Goal: berth's throughput ≥ the reference's.

The ~200 MB, 5-layer image is pushed to both (skopeo). Each round, alternating between the
two servers: (a) ``skopeo copy`` registry → fresh OCI layout (a real client's whole pull:
manifest, config, layers, digest checks), and (b) every layer fetched at once by parallel
``curl -o /dev/null`` (the server's raw blob throughput, little client work). Medians, MB/s and
the ratio are printed. Run: ``.venv/bin/python bench/registry_serve.py`` (root not needed).
"""

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from registry_common import ROUNDS, berth_registry, make_image, reference_registry, report, timed


def curl_all(host: str, digests: list[str]) -> None:
    procs = [subprocess.Popen(["curl", "-sf", "-o", "/dev/null",
                               f"http://{host}/v2/bench/app/blobs/{d}"]) for d in digests]
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError(f"curl failed against {host}")


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="berth-bench-serve-"))
    procs = []
    try:
        md, size, _ = make_image(str(work / "layout"))
        layers = [x["digest"] for x in json.loads(
            (work / "layout" / "blobs" / "sha256" / md[7:]).read_text())["layers"]]
        ref_p, ref_host = reference_registry(work / "ref")
        procs.append(ref_p)
        b_p, b_host = berth_registry(work / "berth")
        procs.append(b_p)
        for host in (ref_host, b_host):
            subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false",
                            f"oci:{work / 'layout'}:latest", f"docker://{host}/bench/app:1"],
                           check=True)
        servers = (("berth registry", b_host), ("reference registry", ref_host))
        sk = {f"skopeo pull from {n}": [] for n, _ in servers}
        raw = {f"parallel curl from {n}": [] for n, _ in servers}
        for i in range(ROUNDS + 1):
            for n, host in servers:
                out = work / f"oci-{i}-{n[0]}"
                t = timed(lambda host=host, out=out: subprocess.run(
                    ["skopeo", "copy", "-q", "--src-tls-verify=false",
                     f"docker://{host}/bench/app:1", f"oci:{out}:x"], check=True))
                shutil.rmtree(out)
                c = timed(lambda host=host: curl_all(host, layers))
                if i > 0:  # round 0 warms page cache and servers
                    sk[f"skopeo pull from {n}"].append(t)
                    raw[f"parallel curl from {n}"].append(c)
        report("registry serving a whole pull (skopeo to an OCI layout)", sk,
               "skopeo pull from reference registry", size / 1e6)
        report("registry raw blob throughput (5 parallel GETs)", raw,
               "parallel curl from reference registry", size / 1e6)
    finally:
        for p in reversed(procs):
            p.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
