#!/bin/bash
# Makes a minimal busybox root filesystem at DIR from Debian's busybox-static:
# /bin/busybox with every applet linked beside it, /etc/passwd and /etc/group, /tmp, /root.
# Used by quickstart, the tests and the benchmarks, so that every engine runs the same files.
set -euo pipefail
dir=${1:?usage: busybox-rootfs.sh DIR}
bb=/bin/busybox
[ -x "$bb" ] || { echo "error: $bb not found (apt-get install busybox-static)" >&2; exit 1; }
mkdir -p "$dir"/{bin,etc,tmp,root,proc,sys,dev,home,var/www}
chmod 1777 "$dir/tmp"
cp "$bb" "$dir/bin/busybox"
for applet in $("$bb" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$dir/bin/$applet"
done
cat > "$dir/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat > "$dir/etc/group" <<'G'
root:x:0:
daemon:x:1:
nogroup:x:65534:
G
echo '<h1>hello from berth</h1>' > "$dir/var/www/index.html"
