//! The signals a foreground `run` or `exec` passes on to the container, as
//! runc's signal proxy does: blocked before the container exists, so that
//! none is lost in between, then read from a signalfd in the loop that
//! waits for the end.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use anyhow::Result;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nsbox_host::proc::{pidfd_open, pidfd_send_signal};
use protocol::RuntimeChannel;

/// What a person sends a foreground container: its end (INT, TERM, HUP,
/// QUIT) and the two left to applications (USR1, USR2).
pub const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Block the forwarded signals and `extra`; the set blocked.
pub fn block(extra: &[Signal]) -> Result<SigSet> {
    let mut set = SigSet::empty();
    for s in FORWARDED.iter().chain(extra) {
        set.add(*s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    Ok(set)
}

/// The blocked signals of a set, read from a signalfd, and the process
/// (a pidfd) they go to.
pub struct Forwarder {
    sigfd: SignalFd,
    target: Option<OwnedFd>,
}

impl Forwarder {
    /// `set` must be blocked already (see [`block`]). Without a target
    /// (it had ended before we had its pidfd) signals are read and dropped.
    pub fn new(set: &SigSet, target: Option<OwnedFd>) -> Result<Forwarder> {
        let sigfd = SignalFd::with_flags(set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
        Ok(Forwarder { sigfd, target })
    }

    /// The signals received since the last call; none if there are none.
    pub fn received(&self) -> Vec<i32> {
        let mut out = Vec::new();
        while let Ok(Some(info)) = self.sigfd.read_signal() {
            out.push(info.ssi_signo as i32);
        }
        out
    }

    /// Pass `sig` on; false if there is no one to pass it to.
    pub fn forward(&self, sig: i32) -> bool {
        match &self.target {
            Some(fd) => {
                // A target that has just ended is no error: its end is
                // what the caller waits for.
                let _ = pidfd_send_signal(fd, sig);
                true
            }
            None => false,
        }
    }

    /// Pass every signal on until `done` is readable.
    pub fn forward_until(&self, done: BorrowedFd) -> Result<()> {
        loop {
            let mut fds = [
                PollFd::new(done, PollFlags::POLLIN),
                PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            let (done_ready, signalled) =
                (fds[0].any().unwrap_or(false), fds[1].any().unwrap_or(false));
            if signalled {
                for sig in self.received() {
                    self.forward(sig);
                }
            }
            if done_ready {
                return Ok(());
            }
        }
    }
}

impl AsFd for Forwarder {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sigfd.as_fd()
    }
}

/// Wait for `Exited` on `channel`, passing the signals in `set` on to the
/// host process `pid`. No `Wait` is needed on the channel `run` created
/// the container with, nor after an exec: the shim tells them unasked.
pub fn forward_until_exited(channel: &mut RuntimeChannel, set: &SigSet, pid: i32) -> Result<i32> {
    channel.set_timeout(None)?;
    let forwarder = Forwarder::new(set, pidfd_open(pid).ok())?;
    forwarder.forward_until(channel.as_fd())?;
    Ok(channel.wait_for_exit()?)
}
