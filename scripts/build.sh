#!/usr/bin/env bash
# build.sh [--release]
#
# Builds the workspace the way nsbox ships: the runtime (and the tests'
# binaries) against glibc, and the two binaries that stay alive beside every
# container, the shim and tiny-init, against musl. Both kinds are static;
# the musl ones are copied next to the runtime, where it looks for them, so
# target/x86_64-unknown-linux-gnu/{debug,release} holds one set that runs
# together. `make build` and `make test` (and scripts/test-cgroup2.sh) build
# through here.
#
# Why musl for those two: a static glibc program carries glibc's start-up
# state in every process (its relocated tables, stdio, malloc arena and TLS
# set-up), about 40 KiB of private memory a process, 80 a container; with
# musl the shim and tiny-init hold 194 KiB a container at 200 alive instead
# of 279 (docs/performance.md, "Memory per container"). The runtime stays on
# glibc: it links Debian's libseccomp.a, which is built against glibc.
#
# The shim and tiny-init are left out of the glibc build, so that no glibc
# copy of them is ever put in their place.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CARGO=${CARGO:-cargo}
GNU=x86_64-unknown-linux-gnu
MUSL=x86_64-unknown-linux-musl
LONG_LIVED=(shim tiny-init)

profile=()
dir=debug
case "${1:-}" in
    --release) profile=(--release); dir=release ;;
    "") ;;
    *) echo "build.sh: unknown argument $1 (only --release)" >&2; exit 2 ;;
esac

if command -v rustup >/dev/null 2>&1 &&
    ! rustup target list --installed 2>/dev/null | grep -qx "$MUSL"; then
    echo "build.sh: Rust's $MUSL target is missing: make deps adds it (rustup target add $MUSL)" >&2
    exit 1
fi

excluded=()
for b in "${LONG_LIVED[@]}"; do
    excluded+=(--exclude "$b")
done
$CARGO build "${profile[@]}" --workspace "${excluded[@]}"
packages=()
for b in "${LONG_LIVED[@]}"; do
    packages+=(-p "$b")
done
# Built for size (opt-level "s", for these two and their dependencies):
# a run execs both, and their code is read in page by page; smaller
# binaries (shim 2.5 to 1.8 MiB, tiny-init 0.85 to 0.68) made a full run
# 0.4 to 0.5 ms faster, and the little they compute does not notice
# (docs/performance.md, run H). The runtime gained nothing from it.
small=()
if [ "$dir" = release ]; then
    small=(--config 'profile.release.opt-level="s"')
fi
$CARGO build "${profile[@]}" "${small[@]}" --target "$MUSL" "${packages[@]}"
for b in "${LONG_LIVED[@]}"; do
    # A new file, not a write through cargo's hard link into deps/.
    cp --remove-destination "target/$MUSL/$dir/$b" "target/$GNU/$dir/$b"
done
