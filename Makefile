# nsbox: `make help` lists the targets. On a fresh Debian 12 machine, as root:
#   make demo    # install what is missing, build, and watch the namespaces work
#   make test    # lint, build and run every test (real containers need root)
#   make bench   # nsbox beside runc and crun: time, memory, sizes (root)

SHELL        := /bin/bash
.SHELLFLAGS  := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO        ?= cargo
PREFIX       ?= /usr/local
BINDIR       ?= $(PREFIX)/bin
# .cargo/config.toml sets build.target, so cargo puts binaries under the
# target triple's directory.
TARGET       := x86_64-unknown-linux-gnu
# The shim and tiny-init, alive beside every container, link musl, and
# scripts/build.sh puts them next to the runtime (it says why).
MUSL_TARGET  := x86_64-unknown-linux-musl
RELEASE_DIR  := target/$(TARGET)/release
BINARIES     := runtime shim tiny-init

ROOTFS       := demo/rootfs
ROOTFS_STAMP := demo/.rootfs.stamp

# Debian packages the project needs (busybox for the rootfs, pstree, ip, ps;
# libseccomp-dev for the libseccomp.a the static runtime links; nft, with which
# people and the tests read the nftables rules nsbox writes; newuidmap for rootless
# containers, and slirp4netns and catatonit for rootless Podman's; containerd,
# runc, podman, conmon and docker.io for the end-to-end tests,
# containernetworking-plugins for the pods of the CRI tests, and protoc
# (protobuf-compiler) to build their CRI gRPC client; tmux, the terminal the
# terminal tests type into).
DEB_PACKAGES := busybox-static psmisc iproute2 procps libc6-dev libseccomp-dev nftables uidmap slirp4netns catatonit containerd runc podman conmon docker.io containernetworking-plugins protobuf-compiler tmux
# What `make bench` compares nsbox with, its reaper (tini), and perf for the
# breakdown of a run. Installed without recommends (runc would bring criu).
BENCH_PACKAGES := runc crun conmon catatonit tini linux-perf
# What scripts/vm-run.sh needs to boot the virtual machines of `make
# test-cgroup2`: QEMU, Debian's kernel (booted in the VM, not here),
# a static busybox for its initramfs, and the tools that build it.
VM_PACKAGES  := qemu-system-x86 linux-image-amd64 busybox-static cpio xz-utils kmod
# Where the integration tests record a test that could not run here
# (tests/tests/common/mod.rs `skip`), for the summary to count.
TEST_ENV     := NSBOX_TEST_SKIPS=$(CURDIR)/target/test-skips.txt
# Arguments for nsbox-bench (`target/x86_64-unknown-linux-gnu/release/nsbox-bench --help`).
BENCH_ARGS   ?=

.PHONY: help deps bench-deps vm-deps build rootfs demo lint test test-cgroup2 bench fuzz install clean

help: ## list the targets
	@echo "nsbox: a Linux container runtime in Rust"
	@echo
	@echo "usage: make TARGET   (PREFIX=$(PREFIX) for install)"
	@echo
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

deps: ## install the Debian packages nsbox needs (as root; no apt-get when all are there)
	@missing=""; \
	for pkg in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q 'ok installed' \
			|| missing="$$missing $$pkg"; \
	done; \
	for cmd in busybox pstree ip ps nft newuidmap tmux dockerd protoc; do \
		command -v "$$cmd" >/dev/null 2>&1 || missing="$$missing (command $$cmd)"; \
	done; \
	if [ -z "$$missing" ]; then \
		echo "deps: all present: $(DEB_PACKAGES)"; \
	elif [ "$$(id -u)" -ne 0 ]; then \
		echo "deps: missing:$$missing" >&2; \
		echo "deps: must run as root to install them (sudo make deps)" >&2; \
		exit 1; \
	else \
		echo "deps: installing:$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update; \
		apt-get install -y $(DEB_PACKAGES) </dev/null; \
	fi; \
	if ! command -v $(CARGO) >/dev/null 2>&1; then \
		echo "deps: $(CARGO) not found: install Rust >= 1.87 with rustup (https://rustup.rs)" >&2; \
		exit 1; \
	fi; \
	if ! rustup target list --installed 2>/dev/null | grep -qx $(MUSL_TARGET); then \
		echo "deps: adding Rust's $(MUSL_TARGET) target (the shim and tiny-init link musl: scripts/build.sh)"; \
		rustup target add $(MUSL_TARGET) </dev/null || { \
			echo "deps: rustup target add $(MUSL_TARGET) failed: the shim and tiny-init cannot be built" >&2; \
			exit 1; }; \
	fi

# $(call install-missing,TARGET,PACKAGES): apt-get install, without
# recommends, whichever of PACKAGES is not installed yet (as root).
define install-missing
	@missing=""; \
	for pkg in $(2); do \
		dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q 'ok installed' \
			|| missing="$$missing $$pkg"; \
	done; \
	if [ -z "$$missing" ]; then \
		echo "$(1): all present: $(2)"; \
	elif [ "$$(id -u)" -ne 0 ]; then \
		echo "$(1): missing:$$missing" >&2; \
		echo "$(1): must run as root to install them (sudo make $(1))" >&2; \
		exit 1; \
	else \
		echo "$(1): installing:$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update; \
		apt-get install -y --no-install-recommends $$missing </dev/null; \
	fi
endef

bench-deps: ## install what `make bench` compares with: runc crun conmon catatonit tini, and perf (root)
	$(call install-missing,bench-deps,$(BENCH_PACKAGES))

vm-deps: ## install what test-cgroup2's virtual machines need: qemu, Debian's kernel, busybox (root)
	$(call install-missing,vm-deps,$(VM_PACKAGES))

build: ## build the release binaries (runtime, shim, tiny-init) into target/x86_64-unknown-linux-gnu/release
	CARGO=$(CARGO) scripts/build.sh --release

rootfs: ## build the busybox root filesystem demo/rootfs (once; again after mkrootfs.sh changes)
	@if [ -f $(ROOTFS_STAMP) ] && [ -x $(ROOTFS)/bin/busybox ] && \
	    [ ! scripts/mkrootfs.sh -nt $(ROOTFS_STAMP) ]; then \
		echo "rootfs: $(ROOTFS) is up to date"; \
	else \
		echo "scripts/mkrootfs.sh $(ROOTFS)"; \
		scripts/mkrootfs.sh $(ROOTFS); \
		touch $(ROOTFS_STAMP); \
	fi

demo: deps build rootfs ## run the narrated demo: each namespace, host view beside container view (root)
	scripts/demo.sh

lint: ## check formatting and run clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --target $(MUSL_TARGET) -p shim -p tiny-init --all-targets -- -D warnings

test: deps lint ## lint, build and run all tests (containers need root: skipped without, failed under CI=true)
	CARGO=$(CARGO) scripts/build.sh
	@mkdir -p target
	@rm -f target/test-skips.txt
	@# Every binary runs (--no-fail-fast), so that the summary counts them all.
	@# cargo ends with the doc-tests' "0 passed": the summary sums every
	@# binary's counts into one closing line, skips taken out of "passed",
	@# so the total is what a reader (or CI) sees last.
	@# Then the cgroup tests again inside the VMs of test-cgroup2, which
	@# append their counts (and skips) to the same log.
	@echo "$(TEST_ENV) $(CARGO) test --workspace --no-fail-fast 2>&1 | tee target/test.log"
	@echo "$(TEST_ENV) scripts/test-cgroup2.sh 2>&1 | tee -a target/test.log"
	@status=0; vm=0; \
	$(TEST_ENV) $(CARGO) test --workspace --no-fail-fast 2>&1 | tee target/test.log || status=$$?; \
	$(TEST_ENV) scripts/test-cgroup2.sh 2>&1 | tee -a target/test.log || vm=$$?; \
	[ "$$status" -ne 0 ] || status=$$vm; \
	scripts/test-summary.sh target/test.log target/test-skips.txt $$status

test-cgroup2: deps ## the cgroup tests inside a cgroup-v2-only VM and a v1 one (root, qemu: make vm-deps; ~8 min; make test runs it)
	@mkdir -p target
	@rm -f target/test-skips.txt
	@status=0; \
	$(TEST_ENV) scripts/test-cgroup2.sh 2>&1 | tee target/test-cgroup2.log || status=$$?; \
	scripts/test-summary.sh target/test-cgroup2.log target/test-skips.txt $$status

bench: deps bench-deps build ## time and memory of nsbox beside runc and crun (root, ~8 min; table and JSON in target/bench/)
	scripts/bench.sh $(BENCH_ARGS)

fuzz: ## run the cargo-fuzz targets (protocol decoder, config.json validation) for FUZZ_SECONDS each (default 60; nightly; installs cargo-fuzz)
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz
	cd fuzz && for t in protocol_decode config_plan; do \
		$(CARGO) +nightly fuzz run --target $(TARGET) $$t -- -max_total_time=$${FUZZ_SECONDS:-60} || exit 1; \
	done

install: ## install runtime, shim and tiny-init into PREFIX/bin (PREFIX=/usr/local; run `make build` first)
	@for bin in $(BINARIES); do \
		[ -x "$(RELEASE_DIR)/$$bin" ] || { echo "install: $(RELEASE_DIR)/$$bin missing; run 'make build' first" >&2; exit 1; }; \
	done
	install -d $(DESTDIR)$(BINDIR)
	install -m 0755 $(addprefix $(RELEASE_DIR)/,$(BINARIES)) $(DESTDIR)$(BINDIR)/

clean: ## remove build output and the generated demo/ directory
	$(CARGO) clean
	rm -rf demo
