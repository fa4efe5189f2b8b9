#!/bin/bash
# Installs what berth needs on Debian 12 (as root): system packages, a venv at .venv, and berth
# itself (editable). With --test, also what the test suite needs: the peers it compares against
# (runc, dockerd, skopeo, umoci, the reference registry, podman) and the Python test libraries.
# Idempotent: packages already present are not fetched again. Downloads only from the Debian
# and PyPI registries.
set -euo pipefail
cd "$(dirname "$0")/.."

# Runtime needs: an interpreter with venv, busybox for the default image, libseccomp for
# seccomp filters, nftables and iproute2 for networking, util-linux/procps for mount and ps.
pkgs=(python3 python3-venv python3-dev gcc busybox-static libseccomp2 nftables iproute2
      util-linux procps iptables kmod ca-certificates)
# containers: `run --init` binds tini-static (what Docker ships as docker-init)
pkgs+=(tini)
if [ "${1:-}" = "--test" ]; then
    pkgs+=(runc skopeo umoci docker.io docker-registry podman wrk jq psmisc attr
           conntrack e2fsprogs hyperfine openssl curl libc6-dev)
fi

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Debian's interpreter, not whatever python3 is first on PATH: the same everywhere.
PY=/usr/bin/python3
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"
# compat mode puts the source tree on sys.path through a plain .pth line: no import hook to
# slow down every process start (the CLI, the shim and the runtime are hot paths).
if ! .venv/bin/pip install -q --disable-pip-version-check \
        --config-settings editable_mode=compat -e ".${extras}"; then
    echo "error: pip install of berth failed" >&2
    exit 1
fi

# berth-runtime is a hot path (runc's ~18 ms is the bar): the console script pip writes starts
# the interpreter with site (~30 ms) and imports re. Replace it with a launcher that starts
# Debian's interpreter isolated and without site, with only the source tree on its path.
launcher=.venv/bin/berth-runtime
rm -f "$launcher"
cat > "$launcher" <<LAUNCH
#!$PY -IS
import sys
sys.path.insert(0, "$PWD")
from berth.runtime.cli import main
sys.exit(main())
LAUNCH
chmod 755 "$launcher"

# The berth CLI is a hot path too (`berth run` must reach berthd within a few ms): the same
# kind of launcher, isolated and without site.
launcher=.venv/bin/berth
rm -f "$launcher"
cat > "$launcher" <<LAUNCH
#!$PY -IS
import sys
sys.path.insert(0, "$PWD")
from berth.cli.main import main
sys.exit(main())
LAUNCH
chmod 755 "$launcher"

# Byte-code for every module, compiled once here: processes that start with
# PYTHONDONTWRITEBYTECODE set (some environments set it) would otherwise compile berth's
# modules from source at every start — the CLI, each shim and each container's runtime init
# (several ms each on this machine).
"$PY" -m compileall -q -j 0 berth >/dev/null
