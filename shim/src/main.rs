//! shim: one per container, the container's host side.
//!
//! `runtime create` starts it (a clone and exec of its own, see the
//! runtime's spawn_detached) with a SEQPACKET socket on fd 3 and the
//! container's stdio on 0, 1 and 2, in a session of its own.
//! The shim then, still single-threaded:
//!
//! 1. receives the validated `CreateRequest` (startup.rs);
//! 2. for a bridged container, reserves its address and host ports, and
//!    writes /etc/hosts and friends, for tiny-init to mount;
//! 3. clones tiny-init into the new namespaces and its cgroup, from a
//!    read-only bind of its binary or a sealed memfd copy (spawn.rs,
//!    exe.rs);
//! 4. forwards tiny-init its `InitConfig`, runs the create-time hooks, and
//!    waits for `Ready` (handshake.rs);
//! 5. for a bridged container, plugs it into its bridge;
//! 6. listens on `shim.sock` in the state directory, records the init's
//!    pid and start time in state.json, and answers `Created`; until then
//!    a failure undoes everything made so far (rollback.rs);
//! 7. serves `start`, `wait`, `exec` and `attach` until the container stops
//!    (server.rs, exec.rs, attach.rs), logging a detached container's
//!    output (output.rs);
//! 8. records the exit status, answers, releases the host side, and exits
//!    (stop.rs).
//!
//! The shim watches tiny-init through a pidfd, and takes the exit code from
//! tiny-init's `Exited` message when it cannot reap it itself, so that the
//! caller's-shim mode (where tiny-init is not our child) fits the same loop.
//!
//! # The order of a stop
//!
//! What a runtime reading the state directory may rely on. Once tiny-init
//! has ended (its pidfd is readable, or it reported `Exited`), the shim
//! first reads the container's last output into container.log, then
//! writes state.json with `status: stopped`, `exit_code` and `finished`,
//! fsync'd and renamed into place. Only after that does it, in order:
//!
//! 1. answer any request that arrived with the end, as a stopped
//!    container's (`start`, `exec` and `attach` are refused);
//! 2. close its listening socket and remove shim.sock (connections not yet
//!    accepted are reset; new ones are refused);
//! 3. close every attach stream;
//! 4. release the network (and record that in state.json);
//! 5. send `Exited` to every connection that said `Hello`, waiters or not;
//! 6. wait for tiny-init to be gone, remove the cgroup (unless a
//!    foreground `run` heard `Exited` and removes it), and exit: 0 when
//!    the host side is all gone, 3 when some of it is left.
//!
//! So the exit code is durable before anything of the shim's can say the
//! container stopped: an answer, a closed connection, a missing socket, an
//! attach stream's end, or the shim's own exit. The one thing that can
//! show the stop earlier is tiny-init's death itself (its pid gone from
//! /proc, or a zombie). A reader that finds tiny-init dead and no
//! `exit_code` in state.json is in that window, and:
//!
//! - if the shim named in state.json is alive, the code is in state.json
//!   once any one of these has happened: a `Wait` sent on shim.sock is
//!   answered (`Exited`), or its connection ends (closed or reset);
//!   connecting to shim.sock fails with ENOENT or ECONNREFUSED; the shim's
//!   pidfd is readable. One blocking wait, then one re-read, is enough: no
//!   polling. Should the code still be missing, the shim died (killed) in
//!   between, and no code will come. Bound the wait as for any shim: one
//!   stopped by SIGSTOP answers nothing.
//! - if the shim is dead, no code will come: the container stopped with
//!   its exit code unknown.
//! - `attach`: the shim ends an attach stream only once the code is on
//!   disk, or when the stream itself fails: at its end, one re-read.

#![deny(unsafe_code)]

mod args;
mod attach;
mod exe;
mod exec;
mod handshake;
mod idmap;
mod oom;
mod output;
mod rollback;
mod seccomp_agent;
mod server;
mod spawn;
mod startup;
mod stop;

use std::os::fd::{FromRawFd, OwnedFd};

use nsbox_host::state::ContainerDir;
use protocol::{Failure, ShimRuntimeChannel};

/// fd the runtime hands us our end of the create socketpair on.
const RUNTIME_FD: i32 = 3;

/// dlmalloc rather than musl's mallocng: mallocng maps and unmaps single
/// pages as the shim allocates and frees (13 mmap and 7 munmap on a run's
/// way, each with a page fault or a TLB flush); dlmalloc carves from one
/// 64 KiB mapping and keeps what is freed. A run took 0.7 ms less, and the
/// shim holds 123 KiB a container instead of 129 (docs/performance.md, run
/// H). The shim is single-threaded, so no lock of it is held across a fork
/// or clone; the unit tests, run by a threaded harness, keep musl's.
#[cfg(not(test))]
#[global_allocator]
static ALLOC: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

fn main() {
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("shim: {e}");
            std::process::exit(2);
        }
    };
    let dir = ContainerDir {
        path: args.state_dir.clone(),
    };
    // The caller's working directory may be a mount it wants to unmount.
    let _ = std::env::set_current_dir("/");
    // Processes that `exec` puts in the container and that outlive their
    // parent come back to us, not to the host's init.
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let runtime = runtime_channel();
    let (request, preserved) = startup::receive(&runtime, &args, &dir);
    let (container, pty) = match startup::create(&dir, &request, preserved, &runtime) {
        Ok(c) => c,
        Err(f) => {
            // Everything made is undone by now: the runtime may retry.
            log::error!("{}: {f}", request.id);
            let _ = runtime.send_error(f);
            std::process::exit(1);
        }
    };
    let mut container = container.announce(&runtime, pty);
    if request.start {
        container.start_for_run(&runtime);
    }
    output::detach_stdio();
    container.serve(Some(runtime));
}

#[allow(unsafe_code)]
fn runtime_channel() -> ShimRuntimeChannel {
    // SAFETY: fd 3 is ours by contract with `runtime create`, and nothing
    // else in this process owns it.
    ShimRuntimeChannel::new(unsafe { OwnedFd::from_raw_fd(RUNTIME_FD) })
}

/// A failure of `step` that goes to the runtime, which prints it.
pub fn failure(step: &str, message: String) -> Failure {
    Failure {
        step: step.into(),
        message,
        exit_code: 1,
    }
}
