#!/usr/bin/env bash
# demo.sh: a narrated tour of nsbox. Each section starts a real container and
# prints what the host sees beside what the container sees.
#
# Run it with `make demo` (as root), which builds the binaries and demo/rootfs
# first. Everything it makes lives in demo/bundle-* and under its own state
# root (/run/nsbox-demo), and is removed again when it ends, even on error.
#
# The container commands are single-quoted on purpose: they expand inside.
# shellcheck disable=SC2016
set -Eeuo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
RUNTIME=${RUNTIME:-$REPO/target/x86_64-unknown-linux-gnu/release/runtime}
ROOT=${NSBOX_DEMO_ROOT:-/run/nsbox-demo}
DEMO=$REPO/demo
ROOTFS=$DEMO/rootfs
HOSTNAME_IN=nsbox-demo
TIMEOUT=60 # seconds any one runtime call may take
# Bridge networking: the host ports the web servers get (BASE+1..BASE+3), and
# the bridge and subnet (nsbox's defaults unless these are set).
PORT_BASE=${NSBOX_DEMO_PORT_BASE:-8080}
BRIDGE=${NSBOX_DEMO_BRIDGE:-nsbox0}
NET_OPTS=()
[ -n "${NSBOX_DEMO_BRIDGE:-}" ] && NET_OPTS+=(--bridge "$NSBOX_DEMO_BRIDGE")
[ -n "${NSBOX_DEMO_SUBNET:-}" ] && NET_OPTS+=(--subnet "$NSBOX_DEMO_SUBNET")

CONTAINERS=() # every container this script created, for cleanup
SHM_ID=""     # the SysV shared memory segment made for the IPC section
OUT=""        # scratch directory for captured output

# ---------------------------------------------------------------- output ----

if [ -t 1 ]; then
    BOLD=$'\e[1m' DIM=$'\e[2m' CYAN=$'\e[36m' GREEN=$'\e[32m' RED=$'\e[31m' RESET=$'\e[0m'
else
    BOLD="" DIM="" CYAN="" GREEN="" RED="" RESET=""
fi

STEP=0
section() { # TITLE
    STEP=$((STEP + 1))
    printf '\n%s== %d. %s%s\n' "$BOLD$CYAN" "$STEP" "$1" "$RESET"
}
say() { printf '%s\n' "$*" | fold -s -w 78 | sed 's/ *$//; s/^/  /'; }
cmd() { printf '  %s$ %s%s\n' "$DIM" "$*" "$RESET"; } # show a command as typed
ok() { printf '  %s%s%s\n' "$GREEN" "$*" "$RESET"; }
die() {
    printf '%sdemo: %s%s\n' "$RED" "$*" "$RESET" >&2
    exit 1
}

# side HOST_TEXT CONTAINER_TEXT: the host's view beside the container's.
# One line each: "host: ..." above "container: ...". Several lines: two columns.
side() {
    local -a h c
    mapfile -t h <<<"$1"
    mapfile -t c <<<"$2"
    if [ "${#h[@]}" -le 1 ] && [ "${#c[@]}" -le 1 ]; then
        printf '    %-11s %s\n' "host:" "${h[0]:-}" "container:" "${c[0]:-}"
        return
    fi
    local w=20 i n line
    for line in "${h[@]}"; do
        [ "${#line}" -gt "$w" ] && w=${#line}
    done
    [ "$w" -gt 44 ] && w=44
    n=${#h[@]}
    [ "${#c[@]}" -gt "$n" ] && n=${#c[@]}
    printf "    %s%-${w}s   %s%s\n" "$BOLD" "host:" "container:" "$RESET"
    for ((i = 0; i < n; i++)); do
        line=${h[i]:-}
        [ "${#line}" -gt "$w" ] && line="${line:0:w-3}..."
        printf "    %-${w}s │ %s\n" "$line" "${c[i]:-}"
    done
}

# --------------------------------------------------------------- runtime ----

# Runs the runtime (without the saved fds 3 and 4, which are for cleanup).
rt() { timeout "$TIMEOUT" "$RUNTIME" --root "$ROOT" "$@" 3>&- 4>&-; }

# bundle NAME SPEC-OPTIONS... -- ARGS...: a fresh demo/bundle-NAME via `runtime spec`.
bundle() {
    local dir=$DEMO/bundle-$1
    shift
    rm -rf --one-file-system -- "$dir"
    rt spec --bundle "$dir" "$@" >/dev/null ||
        die "runtime spec --bundle ${dir#"$REPO"/} failed"
}

# run_fg ID NAME: runs demo/bundle-NAME in the foreground as container ID; its
# output goes to $OUT/ID. Shows the command, and any error in full.
run_fg() {
    local id=$1 b=demo/bundle-$2 rc=0
    CONTAINERS+=("$id")
    cmd "runtime run -b $b $id"
    rt run -b "$REPO/$b" "$id" </dev/null >"$OUT/$id" 2>"$OUT/$id.err" || rc=$?
    if [ "$rc" -ne 0 ]; then
        sed 's/^/    | /' "$OUT/$id" "$OUT/$id.err" >&2
        die "runtime run $id exited with $rc"
    fi
    if [ -s "$OUT/$id.err" ]; then
        sed 's/^/    stderr| /' "$OUT/$id.err"
    fi
    # A foreground run leaves a stopped container (or none); tidy either way.
    rt delete -f "$id" >/dev/null 2>&1 || true
}

# run_bg ID NAME: starts demo/bundle-NAME detached as container ID.
run_bg() {
    local id=$1 b=demo/bundle-$2 rc=0
    CONTAINERS+=("$id")
    cmd "runtime run -d -b $b $id"
    # The container keeps the stdio it is given: give it /dev/null so that
    # nothing here waits on it.
    rt run -d -b "$REPO/$b" "$id" </dev/null >/dev/null 2>"$OUT/$id.err" || rc=$?
    if [ "$rc" -ne 0 ]; then
        sed 's/^/    | /' "$OUT/$id.err" >&2
        die "runtime run -d $id exited with $rc"
    fi
}

# field ID NAME: one field of `runtime state ID` (a string or a number).
field() {
    rt state "$1" | tr -d '\n' |
        sed -n 's/.*"'"$2"'"[[:space:]]*:[[:space:]]*"\{0,1\}\([^",}]*\).*/\1/p'
}

# http_get ADDR PORT: the page at http://ADDR:PORT/ (busybox wget, 5 s at most).
http_get() { timeout 5 busybox wget -q -O- "http://$1:$2/" 2>/dev/null; }

# is_pid TEXT: TEXT is a host pid (not empty, not 0).
is_pid() { [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -gt 0 ]; }

# alive PID: PID runs and is not a zombie (one that has exited, but that its
# parent, the host's init for a shim, has not reaped yet).
alive() { ps -o stat= -p "$1" 2>/dev/null | grep -qv '^Z'; }

# wait_for SECONDS COMMAND...: polls until COMMAND succeeds.
wait_for() {
    local tries=$(($1 * 10))
    shift
    while ! "$@" 2>/dev/null; do
        tries=$((tries - 1))
        [ "$tries" -gt 0 ] || return 1
        sleep 0.1
    done
}

# ns_of TEXT NS: the "ns:[inode]" that a line "NS ns:[inode]" of TEXT gives.
ns_of() { sed -n "s/^$2 //p" <<<"$1"; }

# --------------------------------------------------------------- cleanup ----

cleanup() {
    local rc=$? id left=""
    trap - EXIT INT TERM ERR
    set +e
    # A signal can land while a command's output is redirected: report to the
    # terminal the demo started with.
    exec 1>&3 2>&4
    for id in "${CONTAINERS[@]}"; do
        if "$RUNTIME" --root "$ROOT" state "$id" >/dev/null 2>&1; then
            if ! timeout "$TIMEOUT" "$RUNTIME" --root "$ROOT" delete -f "$id" >/dev/null 2>&1; then
                echo "demo: could not delete container $id (try: $RUNTIME --root $ROOT delete -f $id)" >&2
                left=1
            fi
        fi
    done
    [ -n "$SHM_ID" ] && ipcrm -m "$SHM_ID" 2>/dev/null
    if [ -d "$ROOT" ]; then
        if findmnt -rn -o TARGET | grep -q "^$ROOT/"; then
            echo "demo: mounts are left under $ROOT; not removing it:" >&2
            findmnt -rn -o TARGET | grep "^$ROOT/" | sed 's/^/  /' >&2
            left=1
        else
            rm -rf --one-file-system -- "$ROOT"
        fi
    fi
    [ -n "$OUT" ] && rm -rf -- "$OUT"
    if [ -n "$left" ]; then
        echo "demo: some of what the demo made is left over (see above)" >&2
        [ "$rc" -ne 0 ] || rc=1
    elif [ "$rc" -ne 0 ]; then
        echo "demo: failed (exit $rc); the containers it made have been deleted" >&2
    fi
    exit "$rc"
}

on_error() { # LINENO BASH_COMMAND: where the demo stopped, in the script itself
    local n=${#BASH_LINENO[@]} line=$1
    [ "$n" -ge 3 ] && line=${BASH_LINENO[n - 2]} # called from a function
    printf '%sdemo: line %s: failed: %s%s\n' "$RED" "$line" "$2" "$RESET" >&2
}

# ------------------------------------------------------------- preflight ----

[ "$(id -u)" -eq 0 ] || die "run me as root (containers need it): sudo make demo"
[ -x "$RUNTIME" ] || die "$RUNTIME not found: run 'make build' first"
[ -x "$ROOTFS/bin/busybox" ] || die "$ROOTFS not found: run 'make rootfs' first"
for tool in pstree ps ipcmk ipcrm findmnt timeout busybox bridge nft; do
    command -v "$tool" >/dev/null || die "$tool not found: run 'make deps' first"
done

exec 3>&1 4>&2 # the demo's own stdout and stderr, for cleanup
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR
OUT=$(mktemp -d /tmp/nsbox-demo.XXXXXX)

# Containers left by an interrupted earlier run of this demo.
if [ -d "$ROOT" ]; then
    for id in $(rt list -q 2>/dev/null); do
        rt delete -f "$id" >/dev/null 2>&1 || true
    done
fi

printf '%snsbox demo%s\n' "$BOLD" "$RESET"
say "nsbox runs a process in namespaces of its own: its own hostname, process numbers, root filesystem and mounts, IPC objects and network stack. Each step below starts a real container from a busybox root filesystem ($(realpath --relative-to="$REPO" "$ROOTFS")) and shows the host's view beside the container's."
say "Runtime: ${RUNTIME#"$REPO"/}, state under $ROOT."
echo
say "A container is a bundle: a directory with a config.json. 'runtime spec' writes one, for example:"
cmd "runtime spec --bundle demo/bundle-uts --rootfs \"\$PWD/demo/rootfs\" --hostname $HOSTNAME_IN -- sh -c 'hostname'"
say "(--rootfs and --image take absolute paths, or paths relative to the bundle.)"

# ------------------------------------------------------------------- UTS ----

section "UTS namespace: the hostname"
say "The container has its own hostname, set from config.json. The host's does not change."
bundle uts --rootfs "$ROOTFS" --hostname "$HOSTNAME_IN" -- sh -c 'hostname'
run_fg demo-uts uts
side "$(hostname)" "$(cat "$OUT/demo-uts")"

# ------------------------------------------------------------------- PID ----

section "PID namespace: who is PID 1?"
say "On the host, PID 1 is the system's init. In the container, PID 1 is nsbox's tiny-init, and the container sees only its own processes."
bundle pid --rootfs "$ROOTFS" --hostname "$HOSTNAME_IN" -- sh -c 'echo "my pid is $$"; ps -o pid,comm'
run_fg demo-pid pid
side "$(echo "my pid is $$"; ps -o pid,comm -p 1,$$)" "$(cat "$OUT/demo-pid")"

# ------------------------------------------------------------ namespaces ----

section "Namespaces side by side: /proc/self/ns"
say "Every process names its namespaces in /proc/self/ns; two processes share a namespace exactly when the inode numbers match."
bundle ns --rootfs "$ROOTFS" --hostname "$HOSTNAME_IN" -- \
    sh -c 'for n in mnt uts ipc pid net user cgroup; do echo "$n $(readlink /proc/self/ns/$n)"; done'
run_fg demo-ns ns
ctr_ns=$(cat "$OUT/demo-ns")
own="" shared=""
printf '    %s%-8s %-22s %-22s%s\n' "$BOLD" "" "host:" "container:" "$RESET"
for n in mnt uts ipc pid net user cgroup; do
    host_ns=$(readlink "/proc/self/ns/$n")
    ctr_ns_n=$(ns_of "$ctr_ns" "$n")
    if [ -z "$ctr_ns_n" ]; then
        note="(not shown)"
    elif [ "$host_ns" = "$ctr_ns_n" ]; then
        note="shared with the host"
        shared+=" $n"
    else
        note="${GREEN}its own${RESET}"
        own+=" $n"
    fi
    printf '    %-8s %-22s %-22s %s\n' "$n" "$host_ns" "$ctr_ns_n" "$note"
done
say "The container's own:${own:- none}. Shared with the host:${shared:- none}. (This one shares the host's user namespace: the user-namespace section below gives a container one of its own.)"

# ----------------------------------------------------------------- mount ----

section "Mount namespace: a root filesystem of its own"
say "tiny-init mounts the bundle's rootfs, pivot_roots into it and mounts a fresh /proc and /dev there. The container sees busybox, not the host's Debian."
bundle mnt --rootfs "$ROOTFS" --hostname "$HOSTNAME_IN" -- \
    sh -c 'echo "ls /: $(ls / | tr "\n" " ")"; echo "/etc/issue: $(cat /etc/issue)"'
run_fg demo-mnt mnt
host_view=$(
    # shellcheck disable=SC2012 # names for people to read
    echo "ls /: $(ls / | tr '\n' ' ')"
    echo "/etc/issue: $(head -n1 /etc/issue | sed 's/ *\\[a-z].*//')"
    if [ -r /etc/debian_version ]; then
        echo "/etc/debian_version: $(cat /etc/debian_version)"
    fi
)
side "$host_view" "$(cat "$OUT/demo-mnt")"

# ------------------------------------------------------------------- IPC ----

section "IPC namespace: System V shared memory"
say "The host makes a shared memory segment (ipcmk). Host processes can find it; the container, with its own IPC namespace, sees none."
cmd "ipcmk -M 4096"
SHM_ID=$(ipcmk -M 4096 | sed -n 's/.*id: *//p')
[ -n "$SHM_ID" ] || die "ipcmk did not make a segment"
bundle ipc --rootfs "$ROOTFS" --hostname "$HOSTNAME_IN" -- \
    sh -c 'echo "shm segments: $(($(wc -l </proc/sysvipc/shm) - 1))"; grep -q " $1 " /proc/sysvipc/shm && echo "segment $1: visible" || echo "segment $1: not there"' \
    sh "$SHM_ID"
run_fg demo-ipc ipc
host_shm=$(($(wc -l </proc/sysvipc/shm) - 1))
host_seen=$(awk -v id="$SHM_ID" 'NR > 1 && $2 == id { print "visible" }' /proc/sysvipc/shm)
side "$(echo "shm segments: $host_shm"; echo "segment $SHM_ID: ${host_seen:-not there}")" "$(cat "$OUT/demo-ipc")"
ipcrm -m "$SHM_ID" && SHM_ID=""

# --------------------------------------------------------------- network ----

section "Network namespace: loopback only"
say "With --net none (the default of 'runtime spec'), the container gets a network namespace of its own with just a loopback interface, which tiny-init brings up. The host's interfaces are out of its sight."
bundle net --rootfs "$ROOTFS" --hostname "$HOSTNAME_IN" -- \
    sh -c 'echo "interfaces: $(ip -o link show | cut -d: -f2 | tr -d " " | tr "\n" " ")"'
run_fg demo-net net
side "interfaces: $(ip -o link show | cut -d: -f2 | cut -d@ -f1 | tr -d ' ' | tr '\n' ' ')" "$(cat "$OUT/demo-net")"

# ---------------------------------------------------------------- bridge ----

section "Bridge networking: three web servers on three host ports"
say "With --net bridge, a container gets a veth pair: one end, eth0, inside with an address from the bridge's subnet and a default route; the other end on the host, on the bridge $BRIDGE (made with the first container, removed with the last). --publish HOST:CONTAINER makes a container port answer on the host, 127.0.0.1 included, through nftables rules in a table of nsbox's own."
cmd "runtime spec --bundle demo/bundle-web1 --rootfs \"\$PWD/demo/rootfs\" --hostname web1 --net bridge --publish $((PORT_BASE + 1)):80 -- sh -c 'echo hello from web1 >/tmp/index.html; exec httpd -f -p 80 -h /tmp'"
for i in 1 2 3; do
    bundle "web$i" --rootfs "$ROOTFS" --hostname "web$i" --net bridge "${NET_OPTS[@]}" \
        --publish "$((PORT_BASE + i)):80" -- \
        sh -c "ip addr >/tmp/ip-addr.txt; echo 'hello from web$i' >/tmp/index.html; exec httpd -f -p 80 -h /tmp"
done
for i in 1 2 3; do
    run_bg "demo-web$i" "web$i"
done
echo
say "Each answers on its own host port, from 127.0.0.1, with its own page:"
for i in 1 2 3; do
    port=$((PORT_BASE + i))
    wait_for 10 http_get 127.0.0.1 "$port" >/dev/null ||
        die "nothing answers on 127.0.0.1:$port (see: $RUNTIME --root $ROOT state demo-web$i)"
    printf '    %s$ busybox wget -q -O- http://127.0.0.1:%s/%s   %s\n' "$DIM" "$port" "$RESET" "$(http_get 127.0.0.1 "$port")"
done
echo
web1_ip=$(field demo-web1 nsbox.ip)
gateway=$(field demo-web1 nsbox.gateway)
web1_pid=$(field demo-web1 pid)
say "'runtime state' shows each container's address, veth and ports among its annotations:"
cmd "runtime state demo-web1 | grep nsbox."
rt state demo-web1 | grep '"nsbox\.' | sed 's/^ */    /'
echo
say "Inside web1, 'ip addr' (run by the container itself; the host reads it through /proc/PID/root):"
wait_for 5 test -s "/proc/$web1_pid/root/tmp/ip-addr.txt" || die "web1 did not write /tmp/ip-addr.txt"
sed 's/^/    /' "/proc/$web1_pid/root/tmp/ip-addr.txt"
echo
say "On the host, the bridge and the host ends of the three veth pairs:"
cmd "bridge link show master $BRIDGE"
bridge link show master "$BRIDGE" | sed 's/^/    /'
cmd "ip -br addr show $BRIDGE"
ip -br addr show "$BRIDGE" | sed 's/^/    /'
echo
say "Containers on one bridge reach each other by address, and a published port through the bridge's address:"
bundle client --rootfs "$ROOTFS" --hostname client --net bridge "${NET_OPTS[@]}" -- \
    sh -c 'echo "wget http://$1/: $(wget -q -O- "http://$1/")"; echo "wget http://$2:$3/: $(wget -q -O- "http://$2:$3/")"' \
    sh "$web1_ip" "$gateway" "$((PORT_BASE + 2))"
run_fg demo-client client
sed 's/^/    /' "$OUT/demo-client"
echo
say "The nftables table: masquerading out of the subnet, the published ports as maps (host port to container address and port), and the loopback guard:"
cmd "nft list table ip nsbox-$BRIDGE"
nft list table ip "nsbox-$BRIDGE" | sed 's/^/    /'
echo
say "Deleting the containers removes their veths, addresses and rules; with the last one, the bridge and the table go too."
for i in 1 2 3; do
    cmd "runtime delete -f demo-web$i"
    rt delete -f "demo-web$i"
done
if ip link show "$BRIDGE" >/dev/null 2>&1; then
    die "bridge $BRIDGE is still there after the last container was deleted"
fi
if nft list table ip "nsbox-$BRIDGE" >/dev/null 2>&1; then
    die "table ip nsbox-$BRIDGE is still there after the last container was deleted"
fi
ok "  gone: no $BRIDGE, no veth, no table ip nsbox-$BRIDGE"

# ---------------------------------------------------------- copy-on-write ---

section "Copy-on-write root: two containers, one image"
say "With --image, 'runtime spec' gives each container a private overlayfs over a read-only image: the container writes to its own upper layer, never to the image, and containers never see each other's writes."
cmd "runtime spec --bundle demo/bundle-cow-a --image \"\$PWD/demo/rootfs\" -- sh -c 'echo hello from cow-a >/hello.txt; ...'"
bundle cow-a --image "$ROOTFS" --hostname cow-a -- \
    sh -c 'echo "hello from cow-a" >/hello.txt; while :; do sleep 1000; done'
bundle cow-b --image "$ROOTFS" --hostname cow-b -- \
    sh -c 'if [ -e /hello.txt ]; then echo "/hello.txt: $(cat /hello.txt)"; else echo "/hello.txt: not there"; fi'
run_bg demo-cow-a cow-a
cow_pid=$(field demo-cow-a pid)
is_pid "$cow_pid" || die "runtime state demo-cow-a: no pid"
wait_for 10 test -e "/proc/$cow_pid/root/hello.txt" ||
    die "demo-cow-a did not write /hello.txt"
say "cow-a, still running, has written /hello.txt. The host can look into its root through /proc/PID/root:"
cmd "cat /proc/$cow_pid/root/hello.txt"
printf '    %s\n' "$(cat "/proc/$cow_pid/root/hello.txt")"
say "cow-b, from the same image, looks for the file while cow-a runs:"
run_fg demo-cow-b cow-b
printf '    %s\n' "$(cat "$OUT/demo-cow-b")"
say "And the image itself is unchanged:"
cmd "ls demo/rootfs/hello.txt"
if [ -e "$ROOTFS/hello.txt" ]; then
    die "the image demo/rootfs has changed: $ROOTFS/hello.txt exists"
fi
ok "  no such file: the write stayed in cow-a's own layer"
rt delete -f demo-cow-a >/dev/null

# ---------------------------------------------------------- user namespace --

section "User namespace: root inside, nobody outside"
say "With --userns 0:100000:65536, root in the container is host uid 100000. The image needs no chown: the shim presents the rootfs through an idmapped mount, so files owned by host root look owned by the container's root."
bundle user --rootfs "$ROOTFS" --hostname "$HOSTNAME_IN" --userns 0:100000:65536 -- \
    sh -c 'id; stat -c %u /bin/busybox; tr -s " " </proc/self/uid_map; while :; do sleep 1000; done'
cmd "runtime spec --bundle demo/bundle-user --rootfs \"\$PWD/demo/rootfs\" --userns 0:100000:65536 -- sh -c 'id; ...'"
CONTAINERS+=(demo-user)
cmd "runtime run -d -b demo/bundle-user demo-user"
rt run -d -b "$DEMO/bundle-user" demo-user </dev/null >"$OUT/demo-user" 2>"$OUT/demo-user.err" ||
    die "runtime run -d demo-user failed: $(cat "$OUT/demo-user.err")"
user_pid=$(field demo-user pid)
is_pid "$user_pid" || die "runtime state demo-user: no pid"
wait_for 10 sh -c "[ \$(wc -l <'$OUT/demo-user') -ge 3 ]" || die "demo-user printed nothing"
user_sh=$(pgrep -P "$user_pid" | head -1)
is_pid "$user_sh" || die "demo-user's shell is not running"
say "The container's view: id, the owner of /bin/busybox, and its uid_map:"
sed 's/^/    container:  /' "$OUT/demo-user"
say "The host's view of the same processes, tiny-init and sh:"
cmd "ps -o user,pid,comm -p $user_pid,$user_sh"
ps -o user,pid,comm -p "$user_pid,$user_sh" | sed 's/^/    /'
cmd "cat /proc/$user_sh/uid_map"
tr -s ' ' <"/proc/$user_sh/uid_map" | sed 's/^/    /'
cmd "stat -c %u demo/rootfs/bin/busybox"
printf '    %s\n' "$(stat -c %u "$ROOTFS/bin/busybox")"
ok "  root in the container, uid 100000 on the host; the image still belongs to host root"
rt delete -f demo-user >/dev/null

# ---------------------------------------------------------- process tree ----

section "The process tree: shim, tiny-init, workload"
say "nsbox is a few small cooperating programs. 'runtime' returns once the container runs; a 'shim' per container stays behind as its parent on the host, and tiny-init is PID 1 inside, the parent of the workload."
bundle tree --rootfs "$ROOTFS" --hostname "$HOSTNAME_IN" -- \
    sh -c 'ping -c 1000 127.0.0.1 >/dev/null; echo "ping ended"'
run_bg demo-tree tree
init_pid=$(field demo-tree pid)
is_pid "$init_pid" || die "runtime state demo-tree: no pid"
shim_pid=$(ps -o ppid= -p "$init_pid" | tr -d ' ')
echo
cmd "runtime state demo-tree"
rt state demo-tree | sed 's/^/    /'
echo
cmd "runtime list"
rt list | sed 's/^/    /'
echo
cmd "runtime ps demo-tree"
rt ps demo-tree | sed 's/^/    /'
echo
say "The init pid from 'runtime state' is $init_pid; its parent is the shim, $shim_pid:"
cmd "pstree -p $shim_pid"
pstree -p "$shim_pid" | sed 's/^/    /'
# The workload's child (ping): the same process, numbered in both PID namespaces.
sh_pid=$(pgrep -P "$init_pid" | head -n1 || true)
leaf_pid=""
if [ -n "$sh_pid" ] && wait_for 5 pgrep -P "$sh_pid" >/dev/null; then
    leaf_pid=$(pgrep -P "$sh_pid" | head -n1)
fi
if [ -n "$leaf_pid" ]; then
    leaf=$(cat "/proc/$leaf_pid/comm")
    echo
    say "One process, two numbers: the kernel lists both in /proc/PID/status (NSpid: the host's pid, then the container's)."
    cmd "grep NSpid /proc/$leaf_pid/status"
    grep NSpid "/proc/$leaf_pid/status" | sed 's/^/    /'
    read -r _ host_n ctr_n < <(grep NSpid "/proc/$leaf_pid/status")
    side "$leaf is pid $host_n" "$leaf is pid ${ctr_n:-?}"
fi

echo
say "Stopping it: 'runtime kill' sends SIGTERM to the workload (through tiny-init), then 'runtime delete' removes what is left."
cmd "runtime kill demo-tree TERM"
rt kill demo-tree TERM
if ! wait_for 10 eval '[ "$(field demo-tree status)" = stopped ]'; then
    die "demo-tree did not stop within 10s of SIGTERM (status: $(field demo-tree status))"
fi
cmd "runtime state demo-tree"
rt state demo-tree | sed 's/^/    /'
cmd "runtime delete demo-tree"
rt delete demo-tree
alive "$shim_pid" && die "shim $shim_pid is still running after delete"
alive "$init_pid" && die "tiny-init $init_pid is still running after delete"
ok "  gone: the shim $shim_pid and tiny-init $init_pid have exited"

# ------------------------------------------------------------------ next ----

section "Your turn"
say "Done: every container this demo made has been deleted. To run your own, as root (or 'make install' and call it 'runtime'):"
cmd "R=${RUNTIME#"$REPO"/}"
say "For a network: add --net bridge --publish 8080:80 to 'spec', and the container answers on the host's port 8080."
say "In the background: 'run -d' keeps the container's output for '\$R logs -f ID', a container with a terminal ('spec --tty', or 'run -d -t') takes '\$R attach ID' (Ctrl-P Ctrl-Q leaves it running), and '\$R list' shows them all."
say "And now an interactive shell in a container of your own: your terminal is its terminal until you type 'exit' ('hostname', 'ps' and 'ls /' are worth a try; Ctrl-C reaches the container). '\$R --help' lists every command."
cmd "\$R spec --bundle /tmp/mybox --rootfs \"\$PWD/demo/rootfs\" --hostname mybox -- sh"
cmd "\$R run -t -b /tmp/mybox mybox"
