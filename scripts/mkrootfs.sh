#!/usr/bin/env bash
# mkrootfs.sh DIR [EXTRA_BINARY]
#
# Builds a minimal busybox root filesystem in DIR: a static busybox in
# DIR/bin with one relative symlink per applet, a few files in /etc, and the
# empty mount points a container needs. With EXTRA_BINARY, that (static)
# binary is copied into DIR/bin too. Running it again refreshes DIR in place.
set -euo pipefail

usage() {
    echo "usage: $0 DIR [EXTRA_BINARY]" >&2
    exit 2
}

if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
dir=$1
extra=${2:-}
busybox=${BUSYBOX:-/usr/bin/busybox}

if [ ! -x "$busybox" ]; then
    echo "mkrootfs: $busybox not found; install busybox-static (make deps)" >&2
    exit 1
fi
# A dynamically linked busybox would need the host's libc inside the rootfs.
if command -v file >/dev/null 2>&1 && file -L "$busybox" | grep -q 'dynamically linked'; then
    echo "mkrootfs: $busybox is dynamically linked; install busybox-static" >&2
    exit 1
fi
if [ -n "$extra" ] && [ ! -f "$extra" ]; then
    echo "mkrootfs: extra binary $extra not found" >&2
    exit 1
fi

mkdir -p "$dir"/{bin,dev,etc,proc,root,sys,tmp}
chmod 1777 "$dir/tmp"
chmod 0700 "$dir/root"

install -m 0755 "$busybox" "$dir/bin/busybox"
"$busybox" --list | while read -r applet; do
    case $applet in
        "" | busybox | */*) continue ;;
    esac
    ln -sfn busybox "$dir/bin/$applet"
done

cat >"$dir/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$dir/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
echo "nsbox demo rootfs (busybox)" >"$dir/etc/issue"
echo "nsbox" >"$dir/etc/hostname"
# Mount points for the files a bridged container gets (nsbox never writes
# into the image, so they must be here to be mounted over).
printf '127.0.0.1\tlocalhost\n' >"$dir/etc/hosts"
: >"$dir/etc/resolv.conf"

if [ -n "$extra" ]; then
    install -m 0755 "$extra" "$dir/bin/$(basename "$extra")"
fi
