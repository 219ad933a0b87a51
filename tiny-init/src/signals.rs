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
    /// Our own pid as the signals' senders are numbered (1 in the
    /// container's pid namespace).
    me: u32,
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
        Ok(Signals {
            fd,
            me: std::process::id(),
        })
    }

    /// Every signal pending now, but those we raised ourselves: SIGPIPE
    /// from a write of ours to a pipe nobody reads any more (a hook's, a
    /// caller's stderr), SIGXFSZ from a file grown past its limit. The
    /// kernel names us as their sender. They are about our own writes,
    /// which see the error too, and were never meant for the workload; a
    /// blocked signal cannot be ignored, so they wait here like any other.
    pub fn drain(&self) -> Vec<i32> {
        let mut out = Vec::new();
        while let Ok(Some(info)) = self.fd.read_signal() {
            if info.ssi_pid != self.me {
                out.push(info.ssi_signo as i32);
            }
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

#[cfg(test)]
// tgkill, to signal this thread, and fork, to signal it from another
// process: nix has no safe form of either.
#[allow(unsafe_code)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_we_raised_ourselves_is_not_passed_on() {
        let signals = Signals::block_all().unwrap();
        let me = std::process::id() as libc::pid_t;
        // SAFETY: gettid takes nothing.
        let tid = unsafe { libc::gettid() };
        // Sent to this thread, the one that blocked it, as the kernel's
        // SIGPIPE is sent to the writer.
        // SAFETY: tgkill takes integers only.
        assert_eq!(
            unsafe { libc::syscall(libc::SYS_tgkill, me, tid, libc::SIGPIPE) },
            0
        );
        // (Other tests of this process run beside it: the signals they
        // leave pending for the whole process may come too. Only SIGPIPE
        // is ours to look at.)
        let pipes = |got: Vec<i32>| got.into_iter().filter(|&s| s == libc::SIGPIPE).count();
        assert_eq!(pipes(signals.drain()), 0, "our own SIGPIPE");

        // The same signal from another process is one to pass on.
        // SAFETY: the child makes only async-signal-safe calls.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                // SAFETY: tgkill takes integers only; _exit is what a
                // forked child of a threaded process ends with.
                unsafe {
                    libc::syscall(libc::SYS_tgkill, me, tid, libc::SIGPIPE);
                    libc::_exit(0)
                }
            }
            nix::unistd::ForkResult::Parent { child } => {
                nix::sys::wait::waitpid(child, None).unwrap();
            }
        }
        assert_eq!(pipes(signals.drain()), 1, "another process's SIGPIPE");
    }
}
