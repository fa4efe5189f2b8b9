#!/usr/bin/env python3
"""Push of the ~200 MB, 5-layer image to a localhost reference registry: ``berth push`` from
berthd vs ``docker push`` from dockerd. Goal: berth ≤ 0.67× docker's time.

Both daemons first pull the image from a source registry (untimed). Each round pushes to a
fresh, empty reference registry, so that neither side can skip or mount a layer: every byte
goes over the wire. berthd pushes the compressed layers its content store kept from the pull;
dockerd keeps only unpacked layers and compresses them again on every push (its design).
Run as root: ``.venv/bin/python bench/registry_push.py``.
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
    work = Path(tempfile.mkdtemp(prefix="berth-bench-push-"))
    procs = []
    try:
        _, size, _ = make_image(str(work / "layout"))
        src, src_host = reference_registry(work / "src")
        procs.append(src)
        subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false",
                        f"oci:{work / 'layout'}:latest", f"docker://{src_host}/bench/app:1"],
                       check=True)
        dk = Dockerd()
        procs.append(dk)  # at once: a berthd that fails to start must not leave dockerd running
        bd = Berthd()
        procs.append(bd)
        bd.berth("pull", "-q", f"{src_host}/bench/app:1")
        dk.run("pull", "-q", f"{src_host}/bench/app:1")
        res: dict[str, list[float]] = {"berth push (berthd)": [], "docker push (dockerd)": []}
        for i in range(ROUNDS + 1):
            for name, daemon in (("berth push (berthd)", bd), ("docker push (dockerd)", dk)):
                dst, host = reference_registry(work / f"dst-{i}-{name[0]}")
                try:
                    ref = f"{host}/bench/app:1"
                    if daemon is bd:
                        bd.docker("tag", f"{src_host}/bench/app:1", ref)
                        t = timed(lambda ref=ref: bd.berth("push", "-q", ref))
                    else:
                        dk.run("tag", f"{src_host}/bench/app:1", ref)
                        t = timed(lambda ref=ref: dk.run("push", "-q", ref))
                    if i > 0:  # round 0 warms both daemons
                        res[name].append(t)
                finally:
                    dst.stop()
                    shutil.rmtree(work / f"dst-{i}-{name[0]}", ignore_errors=True)
        report("push to a fresh localhost reference registry", res, "docker push (dockerd)",
               size / 1e6)
    finally:
        for p in reversed(procs):
            p.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
