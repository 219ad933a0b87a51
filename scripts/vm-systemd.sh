#!/bin/bash
# scripts/vm-systemd.sh CMD [ARGS...]      (inside a VM of scripts/vm-run.sh)
#
# Runs CMD as a service of systemd: systemd is started as PID 1 of a new
# PID and mount namespace (as it runs in a container: no udev, no
# getty, no generators), on the VM's cgroup v2 tree, and CMD runs as a
# transient service under system.slice (systemd-run --wait --pipe), with
# this environment and working directory, its output passed through and
# its exit status returned. Once CMD ends, systemd is left to die with the
# VM. Booting the VM with systemd as init (vng --systemd) did not finish
# in 400 s under TCG; this is up in 10-25 s (see README, "cgroup v2 and
# systemd").
#
#   scripts/vm-run.sh scripts/vm-systemd.sh systemctl status
#
# The system D-Bus is started with it (dbus.service): nsbox, Podman, Docker
# and containerd talk to systemd through it. NSBOX_VM_SYSTEMD_UNITS: more
# units to start before CMD. The log of systemd's start is in $NSBOX_VM_OUT/systemd.log.
set -euo pipefail

[ "${NSBOX_VM:-}" = 1 ] || { echo "vm-systemd: runs inside scripts/vm-run.sh's VM" >&2; exit 125; }
[ $# -ge 1 ] || { echo "usage: $0 CMD [ARGS...]" >&2; exit 125; }
OUT=${NSBOX_VM_OUT:-/run}
up() { cut -d' ' -f1 /proc/uptime; }
t0=$(up)

# What a container's systemd needs, and nothing of a boot's: a target of
# our own, no generators (5 s under TCG), systemd's units kept as they are.
mkdir -p /run/systemd/system /etc/systemd/system-generators
for g in /lib/systemd/system-generators/* /usr/lib/systemd/system-generators/*; do
    [ -e "$g" ] && ln -sf /dev/null "/etc/systemd/system-generators/${g##*/}"
done
cat >/run/systemd/system/nsbox-vm.target <<EOF
[Unit]
Description=nsbox test VM
Wants=dbus.socket dbus.service ${NSBOX_VM_SYSTEMD_UNITS:-}
EOF

# systemd as PID 1 of its own PID namespace (it refuses to be a system
# manager otherwise); container= tells it it is one.
unshare --pid --mount --fork --mount-proc --propagation unchanged \
    env -i container=nsbox-vm PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    /lib/systemd/systemd --unit=nsbox-vm.target --log-target=kmsg --log-level=notice \
    </dev/null >"$OUT/systemd.log" 2>&1 &
unshare_pid=$!
sd=
for _ in $(seq 600); do
    sd=$(pgrep -P "$unshare_pid" -x systemd || true)
    [ -n "$sd" ] && [ -S /run/systemd/private ] && break
    kill -0 "$unshare_pid" 2>/dev/null || { echo "vm-systemd: systemd exited:" >&2; cat "$OUT/systemd.log" >&2; exit 125; }
    sleep 0.1
done
[ -n "$sd" ] || { echo "vm-systemd: systemd did not start within 60 s" >&2; exit 125; }
in_sd() { nsenter --target "$sd" --pid --mount -- "$@"; }
state=$(in_sd systemctl is-system-running --wait 2>/dev/null || true)
echo "vm-systemd: systemd $(in_sd systemctl --version | head -1 | cut -d' ' -f2) up ($state) in $(awk "BEGIN{print $(up) - $t0}") s" >&2


# CMD as a service of its own, with this environment (from a file: a
# unit's lines would need quoting of their own), its output through two
# FIFOs, which systemd opens when it starts CMD, and its exit status in a
# file written before they close.
run=/run/nsbox-vm-cmd
mkdir -p "$run"
env -0 | while IFS= read -r -d '' kv; do
    k=${kv%%=*}
    case $k in _|SHLVL|PWD|OLDPWD|*[!A-Za-z0-9_]*|'') continue ;; esac
    printf 'export %s=%q\n' "$k" "${kv#*=}"
done >"$run/env"
{
    printf 'cd -- %q\n' "$PWD"
    printf '%q ' "$@"
    printf '\necho $? >%q/status\n' "$run"
} >>"$run/env"
mkfifo "$run/out" "$run/err"
cat >/run/systemd/system/nsbox-vm-cmd.service <<EOF
[Unit]
Description=vm-systemd.sh's command
DefaultDependencies=no
[Service]
Type=exec
ExecStart=/bin/bash $run/env
StandardInput=null
StandardOutput=file:$run/out
StandardError=file:$run/err
EOF
cat "$run/out" &
out_pid=$!
cat "$run/err" >&2 &
err_pid=$!
in_sd systemctl daemon-reload
in_sd systemctl start --no-block nsbox-vm-cmd.service
wait "$out_pid" "$err_pid"
rc=$(cat "$run/status" 2>/dev/null || true)
case $rc in
    ''|*[!0-9]*)
        echo "vm-systemd: the command's service ended without an exit status (${rc:-none}):" >&2
        in_sd systemctl status --no-pager nsbox-vm-cmd.service >&2 || true
        exit 125
        ;;
esac
exit "$rc"
