#!/usr/bin/env bash
# The closing line of `make test`: every test binary's counts summed, with
# the tests that reported a skip taken out of "passed" (libtest has no skip
# of its own and counts them passed; tests/tests/common/mod.rs `skip`).
#
#   scripts/test-summary.sh LOG SKIPS STATUS
#
# LOG: the output of `cargo test` (and of scripts/test-cgroup2.sh); SKIPS:
# the file the skips were appended to, one `BINARY::TEST: REASON` line
# each, or `RUN: REASON` for a run that could not start at all (may be
# missing: none); STATUS: their exit status. Prints the skips by reason,
# then
#   summary: N passed, M skipped, F failed[; not run at all: RUN]
# as its last line, and exits non-zero if the tests did, or if anything
# was skipped under CI=true (the harness fails those itself; this is the
# net under it).
set -euo pipefail

log=$1 skips=$2 status=$3

# A line BINARY::TEST: REASON is a test that libtest counted passed; a
# line RUN: REASON (no "::") is a whole run that could not start, such as
# make test-cgroup2's VMs, whose tests were never counted.
skipped=0 runs=""
if [ -s "$skips" ]; then
    skipped=$(grep -c '::' "$skips" || true)
    runs=$(grep -v '::' "$skips" | cut -d: -f1 | sort -u | tr '\n' ' ' || true)
    # "  12 skipped: needs root", one line per reason.
    sed 's/^[^ ]*: //' "$skips" | sort | uniq -c | sed 's/^ *\([0-9]*\) /  \1 skipped: /'
    echo "  (each skipped test is listed in $skips)"
fi

read -r passed failed < <(awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }' "$log")
if [ "$skipped" -gt "$passed" ]; then
    echo "test-summary: $skipped skips but only $passed tests passed: $skips is stale" >&2
    exit 1
fi
note=""
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
    # A test binary that crashed or did not build has no "test result" line.
    note="; cargo test exited $status (see $log)"
fi
[ -z "$runs" ] || note="$note; not run at all: ${runs% }"
echo "summary: $((passed - skipped)) passed, $skipped skipped, $failed failed$note"
if [ "$status" -ne 0 ]; then
    exit "$status"
fi
if { [ "$skipped" -gt 0 ] || [ -n "$runs" ]; } && [ "${CI:-}" = "true" ]; then
    exit 1
fi
