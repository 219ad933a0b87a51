//! The PID 1 signal loop, as tini and catatonit have it: block every signal
//! (the fault signals aside), read them from a signalfd, forward each to the
//! workload, and on SIGCHLD reap until nothing is left, checking for the
//! workload *inside* that loop (one SIGCHLD may stand for many exits).

use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// Synchronous faults must kill us, not queue up.
const NEVER_BLOCKED: [Signal; 6] = [
    Signal::SIGSEGV,
    Signal::SIGBUS,
    Signal::SIGFPE,
    Signal::SIGILL,
    Signal::SIGABRT,
    Signal::SIGSYS,
];

pub struct Signals {
    fd: SignalFd,
}

pub enum Ready {
    Channel,
    Signal,
}

impl Signals {
    pub fn block_all() -> Result<Signals, Errno> {
        let mut set = SigSet::all();
        for s in NEVER_BLOCKED {
            set.remove(s);
        }
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(Signals { fd })
    }

    /// Every signal pending now.
    pub fn drain(&self) -> Vec<i32> {
        let mut out = Vec::new();
        while let Ok(Some(info)) = self.fd.read_signal() {
            out.push(info.ssi_signo as i32);
        }
        out
    }

    /// Block until at least one signal is pending, then drain.
    pub fn wait_and_drain(&self) -> Vec<i32> {
        loop {
            let got = self.drain();
            if !got.is_empty() {
                return got;
            }
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::NONE);
        }
    }
}

/// Wait until the channel or the signalfd has something.
pub fn wait_readable(channel: &impl AsFd, signals: &Signals) -> Ready {
    loop {
        let mut fds = [
            PollFd::new(signals.fd.as_fd(), PollFlags::POLLIN),
            PollFd::new(channel.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {
                if fds[0].any().unwrap_or(false) {
                    return Ready::Signal;
                }
                if fds[1].any().unwrap_or(false) {
                    return Ready::Channel;
                }
            }
            Err(Errno::EINTR) => continue,
            // Should not happen; keep serving signals rather than spin.
            Err(_) => return Ready::Signal,
        }
    }
}

/// Reap every child that has ended; `f(pid, exit_code)` for each, with
/// 128+N for a child killed by signal N.
pub fn reap_all(mut f: impl FnMut(i32, i32)) {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            // Children remain but none has ended.
            Ok(WaitStatus::StillAlive) => return,
            Ok(status) => match status.pid() {
                Some(pid) => f(pid.as_raw(), nsbox_process::exit_code(status)),
                None => return,
            },
            // ECHILD: none left (EINTR: the next SIGCHLD retries).
            Err(_) => return,
        }
    }
}

/// Signals whose default action ends a process. Before the workload exists,
/// these end the container the same way.
pub fn terminates(sig: i32) -> bool {
    !matches!(
        sig,
        libc::SIGCHLD
            | libc::SIGCONT
            | libc::SIGURG
            | libc::SIGWINCH
            | libc::SIGSTOP
            | libc::SIGTSTP
            | libc::SIGTTIN
            | libc::SIGTTOU
    )
}
