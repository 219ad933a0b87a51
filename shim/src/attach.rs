//! attach: the terminal of a detached container, kept by the shim and lent
//! to the runtimes that attach. The shim reads the terminal's output (see
//! output.rs, which logs it) and passes it on to each of them as it is;
//! their keys go to the terminal.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use nsbox_host::state::Status;
use protocol::Failure;

use crate::failure;
use crate::output::set_nonblocking;

pub struct Terminal {
    /// A dup of the pty master, for input (output.rs reads the master).
    master: OwnedFd,
    /// Attached runtimes: the shim's ends of their stream sockets.
    attached: Vec<OwnedFd>,
}

impl Terminal {
    pub fn new(master: OwnedFd) -> Terminal {
        Terminal {
            master,
            attached: Vec::new(),
        }
    }

    /// A new attachment to a container in `status`: the runtime's end of a
    /// stream socket carrying the terminal's bytes both ways, and a dup of
    /// the master for the window size.
    pub fn attach(&mut self, status: Status) -> Result<[OwnedFd; 2], Failure> {
        status
            .can_attach()
            .map_err(|e| failure("attach", e.to_string()))?;
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| failure("attach", e.desc().into()))?;
        let dup = self
            .master
            .try_clone()
            .map_err(|e| failure("attach", e.to_string()))?;
        set_nonblocking(ours.as_raw_fd());
        self.attached.push(ours);
        Ok([theirs, dup])
    }

    pub fn attached(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.attached.iter().map(|a| a.as_fd())
    }

    /// Keys from attached runtime `i`, for the terminal.
    pub fn input(&mut self, i: usize) {
        let mut buf = [0u8; 4096];
        match nix::unistd::read(self.attached[i].as_raw_fd(), &mut buf) {
            Ok(0) => {
                self.attached.remove(i);
            }
            Ok(n) => {
                // The terminal's input queue holds 4 KiB: a person typing
                // never fills it; a paste that does loses the rest rather
                // than stop the shim.
                let _ = nix::unistd::write(&self.master, &buf[..n]);
            }
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
            Err(_) => {
                self.attached.remove(i);
            }
        }
    }

    /// The terminal's output, to every attached runtime; one that does not
    /// keep up loses it rather than stop the shim.
    pub fn broadcast(&mut self, bytes: &[u8]) {
        self.attached.retain(|a| {
            match send(
                a.as_raw_fd(),
                bytes,
                MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(_) | Err(Errno::EAGAIN) => true,
                Err(_) => false,
            }
        });
    }

    /// The end of every attachment: their streams close, and each attached
    /// runtime reads the exit code, already on disk (see the crate's doc).
    pub fn detach_all(&mut self) {
        self.attached.clear();
    }
}

/// The answer to `Attach` when the shim keeps no terminal.
pub fn no_terminal() -> Failure {
    failure(
        "attach",
        "the container has no terminal kept by its shim (attach needs one run \
         detached with a terminal: `spec --tty` or `run -d -t`); see `runtime logs`"
            .into(),
    )
}
