#!/usr/bin/env python3
"""Pull of a ~200 MB, 5-layer image from a localhost reference registry: ``berth pull`` into
berthd vs ``docker pull`` into dockerd vs ``skopeo copy`` to an OCI layout. Goal: berth ≤
0.67× docker's time.

Each round, in turn: berth pull (layers downloaded, verified, unpacked into snapshots), then
``rmi`` by image ID (the store's GC removes blobs and snapshots); docker pull then ``docker rmi``;
skopeo copy into a fresh directory. Medians and ratios printed at the end. Run as root:
``.venv/bin/python bench/registry_pull.py`` (BENCH_ROUNDS, BENCH_LAYERS, BENCH_LAYER_MB).
"""

import shutil
import subprocess
import tempfile
from pathlib import Path

from registry_common import (
    ROUNDS,
    Berthd,
    Dockerd,
    make_image,
    reference_registry,
    report,
    timed,
)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="berth-bench-pull-"))
    procs = []
    try:
        _, size, image_id = make_image(str(work / "layout"))
        reg, host = reference_registry(work / "reg")
        procs.append(reg)
        subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false",
                        f"oci:{work / 'layout'}:latest", f"docker://{host}/bench/app:1"],
                       check=True)
        ref = f"{host}/bench/app:1"
        dk = Dockerd()
        procs.append(dk)  # at once: a berthd that fails to start must not leave dockerd running
        bd = Berthd()
        procs.append(bd)
        res: dict[str, list[float]] = {"berth pull (berthd)": [], "docker pull (dockerd)": [],
                                       "skopeo copy (to OCI layout)": []}
        # one untimed round each: both daemons warm (berthd imports its HTTP client on the
        # first registry call, dockerd has its own first-use costs)
        bd.berth("pull", "-q", ref)
        bd.docker("rmi", image_id)
        dk.run("pull", "-q", ref)
        dk.run("rmi", ref)
        for i in range(ROUNDS):
            res["berth pull (berthd)"].append(timed(lambda: bd.berth("pull", "-q", ref)))
            bd.docker("rmi", image_id)  # by ID: every reference, then GC of blobs/layers
            res["docker pull (dockerd)"].append(timed(lambda: dk.run("pull", "-q", ref)))
            dk.run("rmi", ref)
            out = work / f"oci-{i}"
            res["skopeo copy (to OCI layout)"].append(timed(lambda out=out: subprocess.run(
                ["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}",
                 f"oci:{out}:x"], check=True)))
            shutil.rmtree(out)
        report("pull from a localhost reference registry", res, "docker pull (dockerd)",
               size / 1e6)
    finally:
        for p in reversed(procs):
            p.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
