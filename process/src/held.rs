//! A workload held at its seccomp filter: forked at `create`, set up as
//! far as loading a filter with SCMP_ACT_NOTIFY rules, which hands back a
//! listener fd (SECCOMP_FILTER_FLAG_NEW_LISTENER), and waiting there for
//! `start`. The listener must reach linux.seccomp.listenerPath while the
//! container is created, as runc sends it (an agent waits for it before it
//! starts the container), and only the filtered process itself can make
//! it: so the process exists from `create` on, as runc's init does.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::unistd::Pid;
use protocol::report::{self, Report, Step};
use protocol::Failure;

use crate::{describe, fail, place_fds, report_and_exit, sys, Prepared, Stdio};

/// The child's ends: where it hands over the listener fd, and where it
/// waits for the word to go on.
pub(crate) struct HoldPoint {
    socket: RawFd,
    go: RawFd,
}

impl HoldPoint {
    /// Send the listener fd to tiny-init, then wait for `start` (one
    /// byte; EOF is tiny-init giving up on us).
    pub(crate) fn hand_over_and_wait(&self, listener: OwnedFd) -> Result<(), Errno> {
        let fds = [listener.as_raw_fd()];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        sendmsg::<()>(
            self.socket,
            &[IoSlice::new(&[0])],
            &cmsg,
            MsgFlags::empty(),
            None,
        )?;
        drop(listener);
        let mut b = [0u8; 1];
        match nix::unistd::read(self.go, &mut b) {
            Ok(1) => Ok(()),
            Ok(_) => Err(Errno::EPIPE),
            Err(e) => Err(e),
        }
    }
}

/// A workload waiting at its seccomp filter for `start`.
pub struct Held {
    pid: Pid,
    listener: Option<OwnedFd>,
    go: OwnedFd,
    report: OwnedFd,
    process: protocol::Process,
}

impl Prepared {
    /// Fork the workload and let it set itself up as far as its seccomp
    /// filter, whose listener fd comes back in the [`Held`].
    pub fn spawn_held(&self, stdio: Stdio, preserved: &[OwnedFd]) -> Result<Held, Failure> {
        use nix::fcntl::OFlag;
        let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| fail("create a pipe", e, 1));
        let (report_rd, report_wr) = pipe()?;
        let (go_rd, go_wr) = pipe()?;
        let (sock_ours, sock_theirs) = protocol::seqpacket_pair()
            .map_err(|e| fail("create the listener's socketpair", e, 1))?;
        match sys::fork() {
            Err(e) => Err(fail("fork workload", e, 1)),
            Ok(nix::unistd::ForkResult::Child) => {
                drop((report_rd, go_wr, sock_ours));
                // Above where place_fds puts stdio and the preserved fds.
                let high = |fd: &OwnedFd| {
                    nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(1100))
                        .unwrap_or(-1)
                };
                let hold = HoldPoint {
                    socket: high(&sock_theirs),
                    go: high(&go_rd),
                };
                let terminal = place_fds(&stdio, preserved);
                // As spawn's: where tiny-init is not PID 1, the process
                // dies with it.
                let die_with_us = nix::unistd::getpid().as_raw() != 1;
                let failed =
                    self.child_held(terminal, preserved.len() as u32, die_with_us, Some(&hold));
                report_and_exit(report_wr.as_fd(), failed)
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => {
                drop((report_wr, go_rd, sock_theirs));
                let held = Held {
                    pid: child,
                    listener: None,
                    go: go_wr,
                    report: report_rd,
                    process: self.process.clone(),
                };
                let channel: protocol::Channel<u8, u8> = protocol::Channel::new(sock_ours);
                match channel.recv() {
                    Ok((_, fds)) if fds.len() == 1 => Ok(Held {
                        listener: fds.into_iter().next(),
                        ..held
                    }),
                    // It failed before its filter: its report says where.
                    _ => Err(held.failure()),
                }
            }
        }
    }
}

impl Held {
    /// The seccomp listener fd, once.
    pub fn take_listener(&mut self) -> Option<OwnedFd> {
        self.listener.take()
    }

    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// Let it go on to exec: its pid once exec has succeeded, or why not.
    pub fn release(self) -> Result<i32, Failure> {
        if let Err(e) = nix::unistd::write(&self.go, &[1]) {
            return Err(fail("start the held workload", e, 1));
        }
        match report::receive_report(&self.report) {
            Ok(None) => Ok(self.pid.as_raw()),
            _ => Err(self.failure()),
        }
    }

    /// Why it ended: its report, reaped.
    fn failure(&self) -> Failure {
        let failed = match report::receive_report(&self.report) {
            Ok(Some(r)) => describe(&self.process, r),
            Ok(None) => fail("start the process", Errno::EPIPE, 1),
            Err(e) => Failure {
                step: "start the process".into(),
                message: e.to_string(),
                exit_code: 1,
            },
        };
        let _ = nix::sys::wait::waitpid(self.pid, None);
        failed
    }
}

/// The listener fd of a filter loaded with SECCOMP_FILTER_FLAG_NEW_LISTENER
/// reaches tiny-init: a report of the step if not.
pub(crate) fn load_and_hold(hold: &HoldPoint, s: &protocol::Seccomp) -> Result<(), Report> {
    let listener = sys::load_seccomp_listener(s).map_err(|e| Report::new(Step::Seccomp, e))?;
    hold.hand_over_and_wait(listener)
        .map_err(|e| Report::new(Step::Seccomp, e))
}
