#!/bin/bash
# scripts/test-cgroup2.sh [TEST...]      (make test-cgroup2; make test runs it)
#
# Runs the integration tests that touch cgroups on a pure cgroup v2 host: a
# virtual machine booted by scripts/vm-run.sh (Debian's kernel with
# cgroup_no_v1=all); then the resource tests again on a pure cgroup v1 VM
# with every v1 controller; then the --systemd-cgroup tests on a v2 VM
# whose tests run as a service of systemd (scripts/vm-systemd.sh). The
# tests are built here first (cargo build, cargo test --no-run) and run
# inside from this checkout's target/
# directory, which the VM sees through 9p (the tests find the nsbox
# binaries next to them); the harness keeps its state roots, bundles and
# rootfs on the VM's tmpfs (/run/nsbox-t, /tmp/nsbox-t).
#
# TEST: names of files in tests/tests/, run in each VM (default: the lists
# below). NSBOX_VM_LAYOUTS="v2 v1 systemd" chooses the VMs. The output is cargo
# test's, one "test result:" line per file, so that make test's summary
# counts these runs beside the host's; each VM's files and skips are left
# in target/test-cgroup2/LAYOUT/.
#
# Where the machine cannot boot the VM (not root, packages missing: `make
# vm-deps`), it says why and records the skip in $NSBOX_TEST_SKIPS; under
# CI=true that is a failure. NSBOX_VM_* variables (scripts/vm-run.sh) are
# passed on; NSBOX_VM_CPUS defaults to 2, and each VM is killed after
# NSBOX_VM_TIMEOUT seconds (default 2400). The VMs load loop and bfq (before
# NSBOX_VM_MODULES): the blockIO test throttles and weighs a loop device of
# its own there (their root is no block device), which it puts under BFQ
# for per-device weights.
set -euo pipefail

# The test files that make, change, read or remove a container's cgroup,
# run on cgroup v2; and those that read resources back, run again on a v1
# host with every controller, which this development machine is not (its
# hugetlb is in a cgroup2 mount, and it has no net_cls, net_prio or rdma
# hierarchy).
DEFAULT_V2_TESTS="cgroups resources lifecycle caller faults orchestrator_configs rootless_cgroups"
DEFAULT_V1_TESTS="cgroups resources"
# Run on cgroup v2 with systemd managing the tree (scripts/vm-systemd.sh):
# --systemd-cgroup, and the orchestrators with systemd as their cgroup manager.
DEFAULT_SYSTEMD_TESTS="systemd systemd_orchestrators systemd_cri"

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

if [ "${1:-}" = --guest ]; then
    # Inside the VM: each test executable in turn, all of them even when
    # one fails.
    shift
    export NSBOX_TEST_SKIPS=$NSBOX_VM_OUT/skips
    if [ -d /run/systemd/system ]; then
        layout=systemd
        echo "test-cgroup2: in the VM: kernel $(uname -r), $(nproc) CPUs, cgroup v2 managed by systemd $(systemctl --version | head -1 | cut -d' ' -f2)"
    elif [ -f /sys/fs/cgroup/cgroup.controllers ]; then
        layout=v2
        echo "test-cgroup2: in the VM: kernel $(uname -r), $(nproc) CPUs, cgroup v2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
    else
        layout=v1
        echo "test-cgroup2: in the VM: kernel $(uname -r), $(nproc) CPUs, cgroup v1 hierarchies: $(ls /sys/fs/cgroup | tr '\n' ' ')"
    fi
    failed=""
    for exe in "$@"; do
        name=$(basename "$exe"); name=${name%-*}
        echo "     Running tests/$name.rs in the cgroup $layout VM"
        start=$(date +%s)
        "$exe" --test-threads=2 || failed="$failed $name"
        echo "test-cgroup2: tests/$name.rs took $(($(date +%s) - start)) s"
    done
    if [ -n "$failed" ]; then
        echo "test-cgroup2: failed in the cgroup $layout VM:$failed"
        exit 1
    fi
    exit 0
fi

for t in "$@"; do
    [ -f "tests/tests/$t.rs" ] || { echo "test-cgroup2: no tests/tests/$t.rs" >&2; exit 2; }
done
V2_TESTS=${*:-$DEFAULT_V2_TESTS}
V1_TESTS=${*:-$DEFAULT_V1_TESTS}
SYSTEMD_TESTS=${*:-$DEFAULT_SYSTEMD_TESTS}
LAYOUTS=${NSBOX_VM_LAYOUTS:-v2 v1 systemd}

if ! why=$(scripts/vm-run.sh --check); then
    echo "test-cgroup2: ================================================================"
    echo "test-cgroup2: SKIPPED: cannot boot the test VMs here: $why"
    echo "test-cgroup2: not run on cgroup v2: $V2_TESTS"
    echo "test-cgroup2: ================================================================"
    if [ -n "${NSBOX_TEST_SKIPS:-}" ]; then
        echo "test-cgroup2: $why" >>"$NSBOX_TEST_SKIPS"
    fi
    [ "${CI:-}" = true ] && { echo "test-cgroup2: a skip fails under CI=true" >&2; exit 1; }
    exit 0
fi

CARGO=${CARGO:-cargo}
CARGO=$CARGO scripts/build.sh
# The executables cargo built for the test files, from its JSON messages
# (the same build as `cargo test --workspace`'s).
json=$($CARGO test --workspace --no-run --message-format=json)
executable() {
    local exe
    exe=$(printf '%s\n' "$json" |
        grep -F '"kind":["test"]' |
        grep -F "\"name\":\"$1\"" |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
    [ -n "$exe" ] || { echo "test-cgroup2: cargo built no executable for tests/$1.rs" >&2; exit 2; }
    echo "$exe"
}

status=0
for layout in $LAYOUTS; do
    case $layout in
        v2) tests=$V2_TESTS ;;
        v1) tests=$V1_TESTS ;;
        systemd) tests=$SYSTEMD_TESTS ;;
        *) echo "test-cgroup2: NSBOX_VM_LAYOUTS: v1, v2 or systemd, not $layout" >&2; exit 2 ;;
    esac
    # The systemd VM is a v2 one whose command runs as a service of a
    # systemd started inside it.
    vm_layout=$layout
    wrap=()
    if [ "$layout" = systemd ]; then
        vm_layout=v2
        wrap=(scripts/vm-systemd.sh)
    fi
    exes=()
    for t in $tests; do
        exes+=("$(executable "$t")")
    done
    out=$REPO/target/test-cgroup2/$layout
    rm -rf "$out"
    mkdir -p "$out"
    start=$(date +%s)
    # A boot whose kernel locked up before any test ran (vm-run's 75) is
    # booted once more; nothing of the tests ran in it, so nothing counts
    # twice.
    for attempt in 1 2; do
        rc=0
        echo "test-cgroup2: booting a cgroup $layout VM for: $tests"
        NSBOX_VM_CGROUPS=$vm_layout NSBOX_VM_OUT=$out NSBOX_VM_CPUS=${NSBOX_VM_CPUS:-2} \
            NSBOX_VM_MODULES="loop bfq ${NSBOX_VM_MODULES:-}" \
            NSBOX_VM_TIMEOUT=${NSBOX_VM_TIMEOUT:-2400} \
            scripts/vm-run.sh "${wrap[@]}" scripts/test-cgroup2.sh --guest "${exes[@]}" || rc=$?
        [ "$rc" = 75 ] && [ "$attempt" = 1 ] || break
        echo "test-cgroup2: the $layout VM's kernel locked up before any test ran; booting it again"
    done
    echo "test-cgroup2: the cgroup $layout VM ran $(($(date +%s) - start)) s, exit $rc"
    if [ -s "$out/skips" ]; then
        # Whatever a test skipped in a VM is a skip of the whole run too.
        sed "s/^/cgroup-$layout-vm:/" "$out/skips" >>"${NSBOX_TEST_SKIPS:-/dev/null}"
    fi
    [ "$rc" = 0 ] || status=$rc
done
exit "$status"
