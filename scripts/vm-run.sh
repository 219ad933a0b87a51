#!/bin/bash
# scripts/vm-run.sh CMD [ARGS...]
# scripts/vm-run.sh --check
#
# Runs CMD as root inside a throw-away QEMU virtual machine whose only cgroup
# hierarchy is cgroup v2, with this checkout's binaries first on PATH and a
# tmpfs to work in, and exits with CMD's exit status. `make test-cgroup2`
# (scripts/test-cgroup2.sh) runs the cgroup tests with it; use it for
# anything else that needs a pure cgroup v2 host:
#
#   scripts/vm-run.sh runtime run -b /tmp/box box      (after making /tmp/box in it)
#   scripts/vm-run.sh bash -c 'cat /sys/fs/cgroup/cgroup.controllers'
#   NSBOX_VM_OUT=target/vm-out scripts/vm-run.sh sh -c 'dmesg > $NSBOX_VM_OUT/dmesg'
#
# `--check` boots nothing: it prints why this machine cannot boot the VM and
# exits 1, or exits 0 silently when it can.
#
# The VM boots Debian's stock kernel (package linux-image-amd64; the newest
# /boot/vmlinuz-* whose modules are in /lib/modules) from a small initramfs
# of a static busybox, with cgroup_no_v1=all. Inside:
#   /                the host's / (9p, read-only) under a tmpfs overlay: it
#                    can be written, and every write is thrown away. overlayfs
#                    cannot use this root as an upper layer, and unix sockets
#                    do not work on 9p: keep state roots, bundles and root
#                    filesystems on a tmpfs (/run, /tmp or NSBOX_VM_TMPFS).
#   /run, /tmp       fresh tmpfs (so the host's /tmp is not visible).
#   /sys/fs/cgroup   cgroup2 (nsdelegate, memory_recursiveprot), every
#                    controller enabled in the root's cgroup.subtree_control.
#   /proc /sys /dev /dev/pts /dev/shm /dev/mqueue /sys/fs/bpf: the guest's own.
#   cwd              the caller's; environment: the caller's (less a few shell
#                    variables), plus NSBOX_VM=1, PATH with NSBOX_VM_BINDIR
#                    first, and NSBOX_VM_OUT (see below).
#   stdin /dev/null; no network card (lo only); hostname nsbox-vm; no
#   systemd: PID 1 is a busybox shell.
#   Modules (veth, bridge, nf_tables, overlay...) autoload from the host's
#   /lib/modules/VERSION.
#
# Knobs (environment, all optional):
#   NSBOX_VM_BINDIR   put first on PATH in the guest (default: this checkout's
#                     target/x86_64-unknown-linux-gnu/debug, where cargo builds)
#   NSBOX_VM_OUT      a host directory: what CMD leaves in $NSBOX_VM_OUT (in
#                     the guest always an empty directory on the 9p share) is
#                     copied here after the VM ends (logs, results)
#   NSBOX_VM_MEM=2G   guest RAM (the overlay's and the tmpfs' writes live in it)
#   NSBOX_VM_CPUS=2   guest vCPUs (this machine may be shared: 1-2)
#   NSBOX_VM_TIMEOUT=0  seconds before the VM is killed (exit 124); 0: none
#   NSBOX_VM_TMPFS    more directories to cover with a fresh tmpfs
#                     ("/var/lib/containers /root"); /run and /tmp always are
#   NSBOX_VM_CGROUP=/ the cgroup (v2 path) CMD starts in, e.g.
#                     /test.slice/cmd.scope; controllers are enabled on the way
#   NSBOX_VM_CGROUPS=v2  v1: boot a cgroup v1 host instead, every controller
#                     the kernel has (net_cls, net_prio, hugetlb, rdma...)
#                     in a hierarchy of its own at /sys/fs/cgroup/NAME
#   NSBOX_VM_MODULES  modules to modprobe before CMD (br_netfilter, rdma_rxe..)
#   NSBOX_VM_KVM=auto 1: KVM, 0: TCG (emulation, 20-40x slower guest code);
#                     auto: KVM when kvm_intel or kvm_amd is loaded and
#                     /dev/kvm opens, else TCG (a kvm_pvm host's KVM only
#                     runs PVM guests). QEMU falls back to TCG if KVM fails.
#   NSBOX_VM_KERNEL   a /boot/vmlinuz-VERSION to boot instead
#   NSBOX_VM_CACHE=/var/tmp/nsbox-vm-cache   the extracted kernel + initramfs
#   NSBOX_VM_VERBOSE=1  timings and the guest's console on stderr
#   NSBOX_VM_KEEP=1   keep the per-run directory (console.log, qemu.log, ...)
#
# Needs (Debian 12, root): qemu-system-x86 linux-image-amd64 busybox-static
# cpio xz-utils kmod (`make vm-deps` installs them).
# Speed under TCG on 2 vCPUs: 4-12 s to boot and run `true`; a debug build of
# nsbox runs a container in 1-2 s there.
# Exit status: CMD's; 124: NSBOX_VM_TIMEOUT hit; 125: the VM itself failed;
# 75: the guest's kernel locked up before CMD wrote anything to its stdout
# (the VM is killed then: booting it again is safe).
set -u -o pipefail

die() { echo "vm-run: $*" >&2; exit 125; }
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

MEM=${NSBOX_VM_MEM:-2G}
CPUS=${NSBOX_VM_CPUS:-2}
TMO=${NSBOX_VM_TIMEOUT:-0}
CG=${NSBOX_VM_CGROUP:-/}
MODULES=${NSBOX_VM_MODULES:-}
TMPFS="/tmp ${NSBOX_VM_TMPFS:-}"
VERBOSE=${NSBOX_VM_VERBOSE:-0}
CACHE=${NSBOX_VM_CACHE:-/var/tmp/nsbox-vm-cache}
BINDIR=${NSBOX_VM_BINDIR:-$REPO/target/x86_64-unknown-linux-gnu/debug}
OUT=${NSBOX_VM_OUT:-}
LAYOUT=${NSBOX_VM_CGROUPS:-v2}
case $LAYOUT in v1|v2) ;; *) die "NSBOX_VM_CGROUPS is v1 or v2, not $LAYOUT" ;; esac
# The guest's /run is a tmpfs from its first stage on: a checkout there
# would not be seen (one under /tmp is kept in sight, see stage 2).
case $REPO/ in /run/*) die "the checkout $REPO is under /run, which the VM covers with a tmpfs of its own: put it elsewhere" ;; esac

# ---- can this machine boot it? --------------------------------------------
# Sets KIMG (the kernel), KVER, BUSYBOX; or prints why not and returns 1.
find_prereqs() {
    [ "$(id -u)" = 0 ] || { echo "needs root"; return 1; }
    [ "$(uname -m)" = x86_64 ] || { echo "needs an x86_64 machine (this is $(uname -m))"; return 1; }
    local missing="" t
    for t in qemu-system-x86_64:qemu-system-x86 cpio:cpio xz:xz-utils modprobe:kmod \
        flock:util-linux timeout:coreutils; do
        command -v "${t%%:*}" >/dev/null 2>&1 || missing="$missing ${t#*:}"
    done
    BUSYBOX=
    local b
    for b in /bin/busybox /usr/bin/busybox; do
        # The initramfs' only binary: it must be static.
        if [ -x "$b" ] && ! ldd "$b" >/dev/null 2>&1 && "$b" --list | grep -qx switch_root; then
            BUSYBOX=$b
            break
        fi
    done
    [ -n "$BUSYBOX" ] || missing="$missing busybox-static"
    if [ -n "${NSBOX_VM_KERNEL:-}" ]; then
        KIMG=$NSBOX_VM_KERNEL
    else
        KIMG=
        local k
        for k in $(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V -r); do
            [ -d "/lib/modules/${k#/boot/vmlinuz-}/kernel" ] && { KIMG=$k; break; }
        done
        [ -n "$KIMG" ] || missing="$missing linux-image-amd64"
    fi
    if [ -n "$missing" ]; then
        echo "missing packages:$missing (make vm-deps installs them)"
        return 1
    fi
    [ -r "$KIMG" ] || { echo "cannot read the kernel $KIMG"; return 1; }
    KVER=${KIMG#*/vmlinuz-}
    [ -d "/lib/modules/$KVER/kernel" ] || { echo "no /lib/modules/$KVER for $KIMG"; return 1; }
    return 0
}

if [ "${1:-}" = --check ]; then
    find_prereqs
    exit $?
fi
[ $# -ge 1 ] || die "usage: $0 CMD [ARGS...] | --check"
why=$(find_prereqs) || die "cannot boot the VM: $why"
find_prereqs >/dev/null
MODDIR=/lib/modules/$KVER

# ---- guest init scripts ----------------------------------------------------
read -r -d '' STAGE1 <<'EOF_STAGE1'
#!/bin/busybox sh
# stage 1 (initramfs): the host's root (9p) under a tmpfs overlay, then
# switch_root into it.
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
log() { read -r up _ < /proc/uptime; echo "vm-init: [$up] $*" > /dev/console; }
fail() { log "FAILED: $*"; [ -d /io/. ] && echo "125 stage1: $*" > /io/status; poweroff -f; sleep 10; }
log start
for m in $(cat /modules/order); do insmod /modules/$m.ko || fail "insmod $m"; done
mkdir -p /io /lower /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=none vmio /io || fail "mount io share"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro,cache=loose hostroot /lower || fail "mount host root"
mount -t tmpfs -o mode=0755 tmpfs /rw || fail "tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot || fail "overlay"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /newroot/run || fail "run tmpfs"
mkdir -p /newroot/run/nsbox-vm /newroot/run/.vm-init
cp /bin/busybox /io/stage2 /newroot/run/.vm-init/
mount --move /io /newroot/run/nsbox-vm
log "root mounted"
for d in proc sys dev; do mount --move /$d /newroot/$d || fail "move $d"; done
exec switch_root /newroot /run/.vm-init/busybox sh /run/.vm-init/stage2
EOF_STAGE1

read -r -d '' STAGE2 <<'EOF_STAGE2'
# stage 2: PID 1 in the overlay root. cgroup2 alone, then the command.
B=/run/.vm-init/busybox
IO=/run/nsbox-vm
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
. $IO/config
log() { read -r up _ < /proc/uptime; echo "vm: [$up] $*" > /dev/console; }
finish() { echo "$1" > $IO/status.tmp; $B mv $IO/status.tmp $IO/status; $B sync; $B poweroff -f; $B sleep 10; }
if [ "$VM_CGROUPS" = v1 ]; then
    # Every v1 controller the kernel has, each in a hierarchy of its own
    # at /sys/fs/cgroup/NAME, and no cgroup2 mount.
    $B mount -t tmpfs -o mode=755,nosuid,nodev,noexec tmpfs /sys/fs/cgroup || finish "125 cgroup tmpfs"
    while read -r name _ _ enabled; do
        case $name in \#*) continue ;; esac
        [ "$enabled" = 1 ] || continue
        $B mkdir -p /sys/fs/cgroup/$name
        $B mount -t cgroup -o $name cgroup /sys/fs/cgroup/$name || finish "125 mount v1 $name"
    done < /proc/cgroups
else
    $B mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup || finish "125 cgroup2 mount"
    for c in $($B cat /sys/fs/cgroup/cgroup.controllers); do
        echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control || log "cannot enable $c"
    done
fi
$B mkdir -p /dev/pts /dev/shm /dev/mqueue /run/lock /run/user
$B mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
$B mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
$B mount -t mqueue mqueue /dev/mqueue
$B mount -t bpf bpf /sys/fs/bpf 2>/dev/null
$B mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
$B chmod 1777 /run/lock
$B ln -sf /proc/self/fd /dev/fd; $B ln -sf fd/0 /dev/stdin; $B ln -sf fd/1 /dev/stdout; $B ln -sf fd/2 /dev/stderr
[ -e /dev/ptmx ] || $B ln -sf pts/ptmx /dev/ptmx
[ -e /dev/net/tun ] || { $B mkdir -p /dev/net; $B mknod -m 666 /dev/net/tun c 10 200; }
# A checkout under one of those (CI's clone in /tmp, say) stays in sight:
# held aside before the tmpfs covers it, put back at its path after.
held=
for d in $VM_TMPFS; do
    case $VM_REPO/ in "${d%/}"/*)
        $B mkdir -p /run/.vm-repo && $B mount --bind "$VM_REPO" /run/.vm-repo && held=1 || log "cannot hold $VM_REPO aside" ;;
    esac
done
for d in $VM_TMPFS; do $B mkdir -p "$d" && $B mount -t tmpfs -o mode=1777 tmpfs "$d" || log "tmpfs on $d failed"; done
if [ -n "$held" ]; then
    $B mkdir -p "$VM_REPO" && $B mount --move /run/.vm-repo "$VM_REPO" || finish "125 put $VM_REPO back"
fi
$B mkdir -p $IO/out
$B hostname nsbox-vm
$B ip link set lo up
for m in $VM_MODULES; do modprobe -q $m 2>/dev/null || log "module $m failed to load"; done
CGDIR=/sys/fs/cgroup
if [ "$VM_CGROUP" != / ] && [ "$VM_CGROUPS" != v1 ]; then
    p=/sys/fs/cgroup
    for part in $(echo "$VM_CGROUP" | $B tr / ' '); do
        [ "$p" = /sys/fs/cgroup ] || for c in $($B cat $p/cgroup.controllers); do echo "+$c" > $p/cgroup.subtree_control; done
        p=$p/$part; $B mkdir -p $p || finish "125 mkdir $p"
    done
    CGDIR=$p
fi
log "running the command"
$B cut -d' ' -f1 /proc/uptime > $IO/t_start
$B sh -c '[ "$1" = /sys/fs/cgroup ] || echo $$ > "$1/cgroup.procs" || exit 125; exec /bin/bash "$2"' \
    vm-cmd $CGDIR $IO/cmd.sh </dev/null >>$IO/stdout 2>>$IO/stderr
rc=$?
$B cut -d' ' -f1 /proc/uptime > $IO/t_end
log "the command exited $rc"
finish $rc
EOF_STAGE2

# ---- kernel + initramfs, built once per kernel (cached) ----------------------
INIT_MODS="virtio_pci 9pnet_virtio 9p overlay"
KEY=$(printf '%s\n' "$STAGE1" "$INIT_MODS" "$(stat -c '%s %Y' "$KIMG" "$BUSYBOX")" | md5sum | cut -c1-12)
CDIR=$CACHE/$KVER-$KEY
mkdir -p "$CACHE" || die "cannot create $CACHE"
exec 9>"$CACHE/.lock"
flock 9
if [ ! -f "$CDIR/done" ]; then
    rm -rf "$CDIR" "$CACHE/$KVER"-*
    mkdir -p "$CDIR/ird/bin" "$CDIR/ird/modules" "$CDIR/ird"/{proc,sys,dev} || die "mkdir $CDIR"
    # An uncompressed vmlinux (PVH entry) boots seconds faster under TCG
    # than the bzImage, which decompresses itself in emulated code.
    if grep -qx 'CONFIG_PVH=y' "/boot/config-$KVER" 2>/dev/null; then
        for fmt in '\xfd7zXZ\x00|xz -dc' '\x1f\x8b\x08|gzip -dc' '\x28\xb5\x2f\xfd|zstd -qdc'; do
            magic=${fmt%%|*}; dec=${fmt#*|}
            for off in $(LC_ALL=C grep -aboP "$magic" "$KIMG" 2>/dev/null | cut -d: -f1 | head -3); do
                tail -c +$((off + 1)) "$KIMG" | $dec > "$CDIR/vmlinux" 2>/dev/null
                if [ "$(head -c 4 "$CDIR/vmlinux" 2>/dev/null | od -An -c | tr -d ' ')" = '177ELF' ]; then break 2; fi
                rm -f "$CDIR/vmlinux"
            done
        done
    fi
    [ -f "$CDIR/vmlinux" ] || cp "$KIMG" "$CDIR/vmlinuz"
    cp "$BUSYBOX" "$CDIR/ird/bin/busybox"
    printf '%s\n' "$STAGE1" > "$CDIR/ird/init"; chmod 755 "$CDIR/ird/init"
    : > "$CDIR/ird/modules/order"
    for top in $INIT_MODS; do
        modprobe -S "$KVER" --show-depends "$top" > "$CDIR/deps" 2>&1 || die "modprobe --show-depends $top: $(cat "$CDIR/deps")"
        while read -r kind f _; do
            [ "$kind" = insmod ] || continue
            m=$(basename "$f"); m=${m%%.ko*}
            grep -qx "$m" "$CDIR/ird/modules/order" && continue
            case $f in
                *.ko) cp "$f" "$CDIR/ird/modules/$m.ko" ;;
                *.ko.xz) xz -dc "$f" > "$CDIR/ird/modules/$m.ko" ;;
                *.ko.zst) zstd -qdc "$f" > "$CDIR/ird/modules/$m.ko" ;;
                *) die "unknown module format $f" ;;
            esac
            echo "$m" >> "$CDIR/ird/modules/order"
        done < "$CDIR/deps"
    done
    rm -f "$CDIR/deps"
    (cd "$CDIR/ird" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) > "$CDIR/initrd.cpio" || die "cpio"
    rm -rf "$CDIR/ird"
    touch "$CDIR/done"
fi
flock -u 9; exec 9>&-
KERNEL_FILE=$CDIR/vmlinux; [ -f "$KERNEL_FILE" ] || KERNEL_FILE=$CDIR/vmlinuz

# ---- this run --------------------------------------------------------------
T=$(mktemp -d /tmp/nsbox-vm-run.XXXXXX) || die "mktemp"
QPID=; TPIDS=
cleanup() {
    if [ -n "$QPID" ]; then
        kill "$QPID" 2>/dev/null
        ( sleep 5; kill -KILL "$QPID" 2>/dev/null ) & local k=$!
        wait "$QPID" 2>/dev/null; kill "$k" 2>/dev/null
    fi
    for p in $TPIDS; do kill "$p" 2>/dev/null; done
    if [ -n "$OUT" ] && [ -d "$T/out" ]; then
        mkdir -p "$OUT" && cp -a "$T/out/." "$OUT/"
    fi
    [ "${NSBOX_VM_KEEP:-0}" = 1 ] || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$T/out"
printf 'VM_CGROUPS=%q\nVM_CGROUP=%q\nVM_MODULES=%q\nVM_TMPFS=%q\nVM_REPO=%q\n' "$LAYOUT" "$CG" "$MODULES" "$TMPFS" "$REPO" > "$T/config"
{
    echo '# generated by vm-run.sh'
    while IFS= read -r -d '' kv; do
        k=${kv%%=*}
        case $k in
            _|SHLVL|PWD|OLDPWD|HOSTNAME|BASH_FUNC_*|NSBOX_VM_*|*[!A-Za-z0-9_]*|'') continue ;;
        esac
        printf 'export %s=%q\n' "$k" "${kv#*=}"
    done < <(env -0)
    printf 'export NSBOX_VM=1 NSBOX_VM_OUT=/run/nsbox-vm/out\n'
    printf 'export PATH=%q:"$PATH"\n' "$BINDIR"
    printf 'cd -- %q 2>/dev/null || { echo "vm-run: cannot cd to %q, using /" >&2; cd /; }\n' "$PWD" "$PWD"
    printf 'exec'; printf ' %q' "$@"; printf '\n'
} > "$T/cmd.sh"
: > "$T/stdout"; : > "$T/stderr"; : > "$T/console.log"
printf '%s\n' "$STAGE2" > "$T/stage2"

KVM=${NSBOX_VM_KVM:-auto}
if [ "$KVM" = auto ]; then
    KVM=0
    if [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; then
        (: <>/dev/kvm) 2>/dev/null && KVM=1
    fi
fi
# -cpu max is the host's CPU under KVM and everything TCG emulates without.
ACCEL=(-accel tcg,thread=multi -cpu max)
[ "$KVM" = 1 ] && ACCEL=(-accel kvm -accel tcg,thread=multi -cpu max)
APPEND="console=ttyS0 quiet loglevel=4 panic=-1 rdinit=/init"
[ "$LAYOUT" = v2 ] && APPEND="$APPEND cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1"
# Speed-ups for TCG: no delay calibration, crypto self-tests or clock checks.
APPEND="$APPEND lpj=5000000 tsc=reliable no_timer_check mitigations=off cryptomgr.notests rodata=off random.trust_cpu=on i8042.noaux i8042.nokbd 8250.nr_uarts=1"

TMOCMD=()
[ "$TMO" != 0 ] && TMOCMD=(timeout -k 5 "$TMO")
T0=$(date +%s.%N)
"${TMOCMD[@]}" qemu-system-x86_64 -nodefaults -no-user-config -machine pc "${ACCEL[@]}" -smp "$CPUS" -m "$MEM" \
    -display none -monitor none -serial "file:$T/console.log" -no-reboot \
    -kernel "$KERNEL_FILE" -initrd "$CDIR/initrd.cpio" -append "$APPEND" \
    -fsdev "local,id=hostroot,path=/,security_model=passthrough,readonly=on,multidevs=remap" \
    -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
    -fsdev "local,id=vmio,path=$T,security_model=none,multidevs=remap" \
    -device virtio-9p-pci,fsdev=vmio,mount_tag=vmio \
    </dev/null >"$T/qemu.log" 2>&1 &
QPID=$!
tail -q -n +1 -s 0.2 --pid=$QPID -f "$T/stdout" & TPIDS="$TPIDS $!"
tail -q -n +1 -s 0.2 --pid=$QPID -f "$T/stderr" >&2 & TPIDS="$TPIDS $!"
[ "$VERBOSE" = 1 ] && { tail -q -n +1 -s 0.2 --pid=$QPID -f "$T/console.log" | sed 's/^/[console] /' >&2 & TPIDS="$TPIDS $!"; }
# An emulated guest whose kernel locks up never ends by itself (seen once
# in CI: both vCPUs in a soft lockup while systemd started, under TCG,
# until NSBOX_VM_TIMEOUT 40 minutes later). Before CMD has written
# anything of its own, the VM is killed at the kernel's first soft-lockup
# report (after 20 s stuck), and the caller may boot it again.
watch_lockup() {
    while kill -0 "$QPID" 2>/dev/null; do
        sleep 2
        [ -s "$T/stdout" ] && return
        if grep -q 'soft lockup' "$T/console.log"; then
            touch "$T/lockup"
            kill "$QPID" 2>/dev/null
            return
        fi
    done
}
watch_lockup & TPIDS="$TPIDS $!"

wait "$QPID"; QRC=$?
T1=$(date +%s.%N)
QPID=
TIMED_OUT=0
[ "$TMO" != 0 ] && [ "$QRC" = 124 ] && [ ! -s "$T/status" ] && TIMED_OUT=1
for p in $TPIDS; do wait "$p" 2>/dev/null; done; TPIDS=

if [ "$VERBOSE" = 1 ]; then
    printf 'vm-run: kernel %s, kvm %s; qemu ran %.1f s; guest uptime at the command %s s, at its end %s s; qemu exit %s\n' \
        "$KVER" "$KVM" "$(awk "BEGIN{print $T1 - $T0}")" "$(cat "$T/t_start" 2>/dev/null)" "$(cat "$T/t_end" 2>/dev/null)" "$QRC" >&2
fi
if [ -e "$T/lockup" ]; then
    echo "vm-run: the guest's kernel locked up before the command wrote anything; the VM was killed:" >&2
    grep -m 3 'soft lockup\|rcu.*stall' "$T/console.log" >&2
    exit 75
fi
if [ "$TIMED_OUT" = 1 ]; then
    echo "vm-run: timed out after ${TMO}s" >&2
    exit 124
fi
if [ ! -s "$T/status" ]; then
    echo "vm-run: the VM ended without the command's status (qemu exit $QRC); qemu log and console:" >&2
    tail -n 20 "$T/qemu.log" >&2
    tail -n 40 "$T/console.log" >&2
    exit 125
fi
read -r RC REST < "$T/status"
[ -n "${REST:-}" ] && { echo "vm-run: the guest's set-up failed: $REST" >&2; tail -n 40 "$T/console.log" >&2; }
exit "$RC"
