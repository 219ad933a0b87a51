#!/usr/bin/env bash
# bench.sh [ARGS...]
#
# Runs nsbox-bench (`make bench`) the only way it runs: under `tini -s`,
# which reaps the orphans that detached containers leave behind, in a
# private mount namespace in which the cgroup2 mount at
# /sys/fs/cgroup/unified is hidden, because crun 1.8 refuses this hybrid
# cgroup layout. Every runtime runs in that same namespace, so the
# comparison stays fair. An empty tmpfs takes the cgroup2 mount's place
# (rather than a bare unmount): crun, seeing no cgroup2 there, still
# writes a directory per container under it, and those writes must land on
# something that goes away with the namespace, not on the host's
# /sys/fs/cgroup tmpfs. ARGS go to nsbox-bench (--help lists them).
#
# It runs at nice -10 (BENCH_NICE=N to change, 0 for none): on a machine
# that others use too, their work then disturbs the figures less. Every
# runtime gets the same priority, so the comparison stays fair.
set -euo pipefail

bin=${NSBOX_BENCH:-target/x86_64-unknown-linux-gnu/release/nsbox-bench}
nice_level=${BENCH_NICE:--10}

if [ "${1:-}" != "--in-namespace" ]; then
    for cmd in tini unshare mountpoint; do
        if ! command -v "$cmd" >/dev/null 2>&1; then
            echo "bench.sh: $cmd not found (make bench-deps installs tini)" >&2
            exit 1
        fi
    done
    if [ ! -x "$bin" ]; then
        echo "bench.sh: $bin not found; run 'make build' first" >&2
        exit 1
    fi
    exec nice -n "$nice_level" tini -s -- \
        unshare --mount --propagation private -- "$0" --in-namespace "$@"
fi
shift

if mountpoint -q /sys/fs/cgroup/unified; then
    umount /sys/fs/cgroup/unified
    mount -t tmpfs -o size=64m,mode=0755 nsbox-bench-cgroup2 /sys/fs/cgroup/unified
fi
exec "$bin" "$@"
