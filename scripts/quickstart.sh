#!/bin/bash
# Sets berth up on a fresh Debian 12 machine (as root) and runs the main job: a busybox
# container run by berth-runtime, printing what shows its isolation.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
scripts/install.sh
export PATH="$repo/.venv/bin:$PATH"

work=$(mktemp -d /tmp/berth-quickstart.XXXXXX)
root="$work/state"
cg="berth-quickstart-$$"
cleanup() {
    berth-runtime --root "$root" delete --force quickstart >/dev/null 2>&1 || true
    # the per-run cgroup parent made for the container's own cgroup
    find /sys/fs/cgroup -depth -type d -name "$cg" -exec rmdir {} \; 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

scripts/busybox-rootfs.sh "$work/rootfs"
cd "$work"
berth-runtime spec
python3 - config.json "$cg" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/sh", "-c",
    "echo \"hostname:  $(hostname)\"; echo \"pid 1:     $(cat /proc/1/cmdline | tr '\\0' ' ')\";"
    "echo \"processes: $(ls -d /proc/[0-9]* | wc -l) visible\"; echo \"root:      $(echo $(ls /))\";"
    "echo \"memory:    $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null ||"
    " cat /sys/fs/cgroup/memory.max) bytes\"; echo \"pids max:  $(cat /sys/fs/cgroup/pids/pids.max"
    " 2>/dev/null || cat /sys/fs/cgroup/pids.max)\""]
c["hostname"] = "berth-quickstart"
c["root"]["readonly"] = True
c["process"]["rlimits"] = []
c["linux"]["cgroupsPath"] = sys.argv[2] + "/quickstart"
c.setdefault("linux", {})["resources"] = {"memory": {"limit": 64 * 1024 * 1024},
                                          "pids": {"limit": 32}}
json.dump(c, open(p, "w"), indent=2)
PY
echo "berth-runtime run quickstart (busybox, 64 MiB memory limit, 32 pids):"
berth-runtime --root "$root" run quickstart

# --- issue 3: berthd, the busybox image, `berth images` -----------------------------------
# A private berthd (own root, run dir and socket under $work), ended by its pid on exit.
bd="$work/berthd"
mkdir -p "$bd"
berthd_pid=""
cleanup_berthd() {
    if [ -n "$berthd_pid" ]; then
        kill "$berthd_pid" 2>/dev/null || true
        wait "$berthd_pid" 2>/dev/null || true
    fi
}
trap 'cleanup_berthd; cleanup' EXIT
berthd --root "$bd/root" --run "$bd/run" -H "unix://$bd/berth.sock" --bridge none \
    2>"$bd/berthd.log" &
berthd_pid=$!
export BERTH_HOST="unix://$bd/berth.sock"
for _ in $(seq 100); do berth version >/dev/null 2>&1 && break; sleep 0.1; done
tar -C "$work/rootfs" -cf "$work/busybox.tar" .
echo
echo "berthd (pid $berthd_pid): berth import busybox, then berth images:"
berth import -c 'CMD ["sh"]' "$work/busybox.tar" busybox:latest
berth images

# --- issue 4: the main job — berthd installed and started, `berth run --rm busybox ...` -----
# berthd runs as the system's daemon (root /var/lib/berth, run dir /run/berth, socket
# unix:///run/berth/berth.sock): a systemd unit where systemd is PID 1, otherwise a background
# daemon with its pid file (RUN/berthd.pid). Running this again finds it running and keeps it.
# BERTH_ROOT / BERTH_RUN move it elsewhere and BERTHD_OPTS adds flags (the tests use them to
# stay off the system's paths, bridge and nft table).
sys_root=${BERTH_ROOT:-/var/lib/berth}
sys_run=${BERTH_RUN:-/run/berth}
sys_sock="unix://$sys_run/berth.sock"
export BERTH_HOST="$sys_sock"
if berth version >/dev/null 2>&1; then
    echo
    echo "berthd is already running on $sys_sock"
elif [ -d /run/systemd/system ] && [ -z "${BERTH_ROOT:-}${BERTH_RUN:-}${BERTHD_OPTS:-}" ]; then
    cat > /etc/systemd/system/berthd.service <<UNIT
[Unit]
Description=berth container engine daemon
After=network.target

[Service]
ExecStart=$repo/.venv/bin/berthd --root $sys_root --run $sys_run -H $sys_sock
KillMode=process
Restart=on-failure
Delegate=yes

[Install]
WantedBy=multi-user.target
UNIT
    systemctl daemon-reload
    systemctl enable --now berthd.service
    echo
    echo "berthd started by systemd (berthd.service)"
else
    mkdir -p "$sys_run" "$sys_root"
    # KillMode=process in spirit: the shims that outlive berthd keep their containers running
    # shellcheck disable=SC2086  # BERTHD_OPTS: words on purpose
    setsid "$repo/.venv/bin/berthd" --root "$sys_root" --run "$sys_run" -H "$sys_sock" \
        ${BERTHD_OPTS:-} \
        </dev/null >>"$sys_run/berthd.log" 2>&1 &
    echo
    echo "berthd started in the background (pid $!, pid file $sys_run/berthd.pid," \
         "log $sys_run/berthd.log)"
fi
for _ in $(seq 100); do berth version >/dev/null 2>&1 && break; sleep 0.1; done
berth version >/dev/null || { echo "error: berthd did not answer on $sys_sock" >&2; exit 1; }
if [ -z "$(berth images -q busybox:latest)" ]; then
    tar -C "$work/rootfs" -cf "$work/busybox.tar" .
    berth import -c 'CMD ["sh"]' "$work/busybox.tar" busybox:latest >/dev/null
    echo "imported busybox:latest (Debian's busybox-static)"
fi
echo
echo "berth run --rm --network none -m 64m --pids-limit 32 busybox ... :"
berth run --rm --network none -m 64m --pids-limit 32 --name berth-quickstart \
    -h berth-quickstart busybox sh -c '
echo "hostname:     $(hostname)"
echo "pid 1:        $(tr "\0\n" "  " < /proc/1/cmdline | cut -c1-5) ... (this script)"
echo "processes:    $(ls -d /proc/[0-9]* | wc -l) visible (the host has many more)"
echo "root:         $(echo $(ls /))"
echo "capabilities: $(grep CapEff /proc/self/status | cut -f2) (Docker'"'"'s default set)"
echo "seccomp:      mode $(grep "^Seccomp:" /proc/self/status | cut -f2) (a filter is loaded)"
echo "memory limit: $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null ||
                      cat /sys/fs/cgroup/memory.max) bytes"
echo "pids limit:   $(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max)"
touch /proc/sys/kernel/x 2>/dev/null || echo "/proc/sys:    read-only"'
