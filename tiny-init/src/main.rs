//! tiny-init: PID 1 of an nsbox container.
//!
//! The shim clones it into the container's new namespaces and execs it from
//! a read-only bind of its binary, or a sealed memfd when the container may
//! hold CAP_SYS_ADMIN, so that nothing written through `/proc/1/exe` reaches
//! a host file (CVE-2019-5736).
//! fd 3 is its socketpair with the shim. It then:
//!
//! 1. learns everything from the shim (`Config`): it never reads config.json;
//! 2. builds the inside: mounts, pivot_root, /dev, masked paths, hostname;
//! 3. reports `Ready` and waits for `Start` (or a signal, or the shim's end),
//!    unless its config says to start at once (a `run`);
//! 4. forks and execs the workload, forwards every signal it can catch to it,
//!    and reaps every zombie in the PID namespace;
//! 5. when the workload ends, reports `Exited` and exits with the same code.
//!
//! Once the workload runs, tiny-init never exits early: a shim that goes
//! away is logged, not fatal, because the container is the user's.

// MS_* and friends are c_ulong: u64 here, but u32 on 32-bit targets.
#![allow(clippy::unnecessary_cast)]
// unsafe only where nix has no safe call, each allowed where it stands.
#![deny(unsafe_code)]

mod mounts;
mod signals;
mod supervise;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nsbox_process as workload;
use protocol::{Failure, InitChannel, InitToShim, ShimToInit, PROTOCOL_VERSION};

/// Where the shim puts our end of the socketpair.
const SHIM_FD: i32 = 3;

/// dlmalloc rather than musl's mallocng, as in the shim (see its
/// main.rs): no page mapped and unmapped at each allocation. tiny-init is
/// single-threaded, so no lock of it is held when it forks the workload.
#[cfg(not(test))]
#[global_allocator]
static ALLOC: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

fn main() {
    // For `pstree -p`; a name is a nicety, not worth failing for.
    let _ = nix::sys::prctl::set_name(c"tiny-init");
    // SAFETY: fd 3 is ours by contract with the shim, and nothing else owns it.
    #[allow(unsafe_code)]
    let channel = InitChannel::new(unsafe { OwnedFd::from_raw_fd(SHIM_FD) });
    // Block first, so that no signal sent during set-up is lost: blocked
    // signals stay pending even for a PID namespace's init, which the kernel
    // otherwise shields from every signal it has no handler for.
    let signals = match signals::Signals::block_all() {
        Ok(s) => s,
        Err(e) => fail(&channel, "block signals", e, 1),
    };
    if let Err(e) = channel.send(
        &InitToShim::Hello {
            version: PROTOCOL_VERSION,
        },
        &[],
    ) {
        quit("send hello", e);
    }
    let (config, fds) = match channel
        .wait_for_hello()
        .and_then(|_| channel.wait_for_config())
    {
        Ok(c) => c,
        Err(e) => quit("receive config", e),
    };
    let mut fds = fds.into_iter();
    let root = if config.idmapped { fds.next() } else { None };
    let idmapped_mounts = config.mounts.iter().filter(|m| m.idmap.is_some()).count();
    let mount_fds: Vec<OwnedFd> = fds.by_ref().take(idmapped_mounts).collect();
    let preserved: Vec<std::os::fd::OwnedFd> = fds.take(config.preserve_fds as usize).collect();
    if config.new_cgroupns {
        if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP) {
            fail(&channel, "unshare the cgroup namespace", e, 1);
        }
    }
    if let Some(name) = &config.session_keyring {
        if let Err(e) = workload::join_session_keyring(name) {
            fail(&channel, "join a new session keyring", e, 1);
        }
    }
    let hook_point = || -> Result<(), Failure> {
        if !config.hook_pause {
            return Ok(());
        }
        let step = "wait for the createRuntime and createContainer hooks";
        // A closed channel is the shim giving up on us (a hook failed): it
        // tells the caller why, so we leave without a second line.
        let lost = |e: protocol::ChannelError| match e {
            protocol::ChannelError::Closed => quit(step, e),
            e => Failure {
                step: step.into(),
                message: e.to_string(),
                exit_code: 1,
            },
        };
        channel.send(&InitToShim::HookPoint, &[]).map_err(lost)?;
        channel.wait_for_continue().map_err(lost)
    };
    if let Err(f) = mounts::build_rootfs(&config, root, mount_fds, hook_point) {
        report_failure(&channel, f);
        std::process::exit(1);
    }
    // A terminal is made inside, from the container's own devpts.
    let pty = if config.process.terminal {
        match workload::open_pty() {
            Ok(p) => Some(p),
            Err(r) => {
                report_failure(&channel, r.failure());
                std::process::exit(1);
            }
        }
    } else {
        None
    };
    if pty.is_some() {
        if let Err(e) = let_go_of_the_callers_stdio() {
            fail(&channel, "point tiny-init's stdio at /dev/null", e, 1);
        }
    }
    let prepared = match workload::Prepared::new(&config.process) {
        Ok(p) => p,
        Err(r) => {
            let f = workload::describe(&config.process, r);
            let code = f.exit_code;
            report_failure(&channel, f);
            std::process::exit(code);
        }
    };
    // Nothing in the container may read our memory or open our fds through
    // /proc/1 (the shim's socket in particular).
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        fail(&channel, "make tiny-init undumpable", e, 1);
    }
    let (master, slave) = match pty {
        Some((m, s)) => (Some(m), Some(s)),
        None => (None, None),
    };
    let stdio = match &slave {
        Some(s) => workload::Stdio::Terminal(s),
        None => workload::Stdio::Inherit,
    };
    // A seccomp listener exists only once the workload has loaded its
    // filter, and must reach its agent during `create`: such a workload
    // is forked now and held there until `start`.
    let listens = config.process.seccomp.as_ref().is_some_and(|s| s.listener);
    let (prepared, listener) = if listens {
        match prepared.spawn_held(stdio, &preserved) {
            Ok(mut held) => {
                let fd = held.take_listener();
                (Workload::Held(held), fd)
            }
            Err(f) => {
                let code = f.exit_code;
                report_failure(&channel, f);
                std::process::exit(code);
            }
        }
    } else {
        (Workload::Prepared(prepared), None)
    };
    // The terminal's master first, then the listener, as the shim takes them.
    let fds: Vec<i32> = master
        .iter()
        .chain(listener.iter())
        .map(|f| f.as_raw_fd())
        .collect();
    if channel.send(&InitToShim::Ready, &fds).is_err() {
        std::process::exit(1);
    }
    drop((master, listener));
    let workload = if config.start_at_once {
        start(&channel, prepared, stdio, &preserved, &config)
    } else {
        wait_for_start(&channel, &signals, prepared, stdio, preserved, &config)
    };
    // The workload holds its terminal; our copy would keep it from hanging
    // up when the workload's session ends.
    drop(slave);
    supervise::supervise(channel, signals, workload, config.hold_exit)
}

/// With a terminal, the workload's stdio is the terminal, and the stdio we
/// were started with (the caller's: `runtime create`'s) is nobody's. We let
/// go of it, as runc's init does: containerd's shim runs `create` with a
/// console socket and its stdout and stderr on a pipe, and reads that pipe
/// to its end before it goes on to `start`, so `docker run -it` and `ctr
/// run -t` waited for ever while we held it.
fn let_go_of_the_callers_stdio() -> nix::Result<()> {
    use nix::fcntl::{open, OFlag};
    let null = open(
        "/dev/null",
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    for fd in 0..=2 {
        nix::unistd::dup2(null, fd)?;
    }
    nix::unistd::close(null)
}

/// The created state: wait for `Start`. A terminating signal ends the
/// container as it would end a started one; the shim's end closing means
/// nobody will ever start us.
fn wait_for_start(
    channel: &InitChannel,
    signals: &signals::Signals,
    prepared: Workload,
    stdio: workload::Stdio,
    preserved: Vec<std::os::fd::OwnedFd>,
    config: &protocol::InitConfig,
) -> i32 {
    loop {
        match signals::wait_readable(channel, signals) {
            signals::Ready::Channel => match channel.recv() {
                Ok((ShimToInit::Start, _)) => {
                    return start(channel, prepared, stdio, &preserved, config)
                }
                Ok((other, _)) => {
                    let _ = channel.send(
                        &InitToShim::Failed(Failure {
                            step: "wait for start".into(),
                            message: format!("expected Start, got {other:?}"),
                            exit_code: 1,
                        }),
                        &[],
                    );
                }
                Err(_) => std::process::exit(1),
            },
            signals::Ready::Signal => {
                for sig in signals.drain() {
                    if signals::terminates(sig) {
                        let code = 128 + sig;
                        let _ = channel.send(&InitToShim::Exited { code }, &[]);
                        std::process::exit(code);
                    }
                    // SIGCHLD before start: nothing of ours to reap yet, but
                    // reap anyway so that nothing lingers.
                    signals::reap_all(|_, _| ());
                }
            }
        }
    }
}

/// startContainer hooks, then the workload; `Started` with its pid, or
/// the failure and our exit with its code.
/// The workload to start: to fork, or forked and held at its seccomp
/// filter.
enum Workload {
    Prepared(workload::Prepared),
    Held(workload::Held),
}

fn start(
    channel: &InitChannel,
    prepared: Workload,
    stdio: workload::Stdio,
    preserved: &[OwnedFd],
    config: &protocol::InitConfig,
) -> i32 {
    // A hook without an env of its own runs with the container process's,
    // as runc's (its init has taken that environment by then): tiny-init's
    // own is empty.
    let hooks: Vec<protocol::Hook> = config
        .start_hooks
        .iter()
        .map(|h| protocol::Hook {
            env: h.env.clone().or_else(|| Some(config.process.env.clone())),
            ..h.clone()
        })
        .collect();
    let started = workload::hooks::run_all("startContainer", &hooks, &config.hook_state, &[])
        .map_err(|e| Failure::from_error("run hooks", &e))
        .and_then(|_| match prepared {
            Workload::Prepared(p) => p.spawn(stdio, preserved),
            Workload::Held(h) => h.release(),
        });
    match started {
        Ok(pid) => {
            let _ = channel.send(&InitToShim::Started { pid }, &[]);
            pid
        }
        Err(f) => {
            let code = f.exit_code;
            report_failure(channel, f);
            std::process::exit(code);
        }
    }
}

fn report_failure(channel: &InitChannel, f: Failure) {
    if channel.send(&InitToShim::Failed(f.clone()), &[]).is_err() {
        eprintln!("tiny-init: {f}");
    }
}

fn fail(channel: &InitChannel, step: &str, e: nix::Error, code: i32) -> ! {
    report_failure(
        channel,
        Failure {
            step: step.into(),
            message: e.desc().into(),
            exit_code: code,
        },
    );
    std::process::exit(code)
}

/// Before the container is made, the shim is the only one to tell. If it
/// went away, the caller hears the runtime's own one-line error, and a line
/// of ours on the container's stderr (the caller's) would be a second one:
/// leave quietly then; say anything else.
fn quit(step: &str, e: protocol::ChannelError) -> ! {
    if !matches!(e, protocol::ChannelError::Closed) {
        eprintln!("tiny-init: {step}: {e}");
    }
    std::process::exit(1)
}
