//! The person's terminal given to a container: `run -t`, `exec -t` and
//! `attach`. The runtime holds the pty master and copies between it and its
//! own stdio in one poll loop, with its terminal in raw mode, so that the
//! keys a person types (Ctrl-C, Ctrl-Z, Ctrl-D) reach the container's
//! terminal as bytes and its line discipline turns them into signals for
//! the container's foreground process group, as `docker run -it` does.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use anyhow::Result;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::termios::{self, SetArg, Termios};
use nsbox_host::proc::pidfd_open;
use protocol::RuntimeChannel;

use crate::shim_client::channel_error;
use crate::signals::{self, Forwarder};

/// Docker's default detach keys, Ctrl-P Ctrl-Q.
#[cfg(test)]
pub const DETACH_KEYS: [u8; 2] = [0x10, 0x11];

/// Our terminal in raw mode for as long as this lives; put back as it was
/// on every way out (the relay loop turns SIGINT, SIGTERM and SIGHUP into
/// a return, so this drop runs for them too).
pub struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    /// Raw mode on stdin when it is a terminal; nothing otherwise (input
    /// from a pipe or a file is passed on as it is).
    pub fn enter() -> Result<RawMode> {
        let stdin = std::io::stdin();
        if !nix::unistd::isatty(stdin.as_raw_fd()).unwrap_or(false) {
            return Ok(RawMode { saved: None });
        }
        let saved = termios::tcgetattr(stdin.as_fd())?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSADRAIN, &raw)?;
        Ok(RawMode { saved: Some(saved) })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, saved);
        }
    }
}

/// Give `master` our terminal's window size (nothing when stdin is not a
/// terminal).
#[allow(unsafe_code)]
pub fn copy_window_size(master: BorrowedFd) {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: nix 0.29 has no call for these two ioctls; TIOCGWINSZ writes
    // one winsize into `ws`, TIOCSWINSZ reads one from it.
    unsafe {
        if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_row > 0 {
            libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

/// How long the container's side of the terminal must have been quiet
/// before the end of piped input is typed as ^D, and before it is typed
/// again while the container runs on; and how many times in all.
const EOF_FIRST_QUIET: std::time::Duration = std::time::Duration::from_millis(100);
const EOF_AGAIN_QUIET: std::time::Duration = std::time::Duration::from_millis(500);
const EOF_TRIES: u8 = 3;

/// Where the end of the session comes from.
pub enum Ending<'a> {
    /// The shim's `Exited` on this channel, after a `Wait` (run -t) or an
    /// exec (exec -t); signals go to `pid` (a host pid).
    Exit {
        channel: &'a mut RuntimeChannel,
        pid: i32,
    },
    /// attach: the stream to the shim closes when the container stops, or
    /// the person types the detach keys.
    Detachable { detach_keys: Vec<u8> },
}

/// How a session ended.
pub enum Outcome {
    Exited(i32),
    Detached,
    /// The container's side closed (attach: the container stopped).
    Closed,
}

/// Copy stdin to `master` and `master` to stdout until the session ends.
/// `winsize` is the fd whose window size follows ours (the master itself,
/// or for attach a dup of it that came from the shim).
pub fn relay(master: &OwnedFd, winsize: Option<&OwnedFd>, ending: Ending) -> Result<Outcome> {
    let set = signals::block(&[Signal::SIGWINCH])?;
    if let Some(w) = winsize {
        copy_window_size(w.as_fd());
    }
    set_nonblocking(master.as_raw_fd());
    let _raw = RawMode::enter()?;
    // attach has no one to pass signals to: a signal to us ends the
    // session, not the container (Docker's --sig-proxy=false).
    let (mut channel, target, detach_keys) = match ending {
        Ending::Exit { channel, pid } => {
            channel.set_timeout(None)?;
            (Some(channel), pidfd_open(pid).ok(), Vec::new())
        }
        Ending::Detachable { detach_keys } => (None, None, detach_keys),
    };
    let signals = Forwarder::new(&set, target)?;
    let mut stdin_open = true;
    // Input the container has not taken yet: we never block on its
    // terminal, so that its output keeps flowing meanwhile.
    let mut pending: Vec<u8> = Vec::new();
    // How much of the detach sequence the last keys matched.
    let mut matched = 0usize;
    let mut master_open = true;
    let mut buf = vec![0u8; 16 * 1024];
    // Piped input's end becomes the terminal's EOF character, typed once
    // the container's side has been quiet a moment, and again (at most
    // EOF_TRIES in all) while it runs on: a ^D that reaches the terminal
    // before the program reading it has set it up (an interactive shell
    // turning off canonical mode) is turned into a NUL and lost, as the
    // first Ctrl-D a person types too early would be.
    let mut eofs_left = 0u8;
    let mut quiet_since = std::time::Instant::now();
    let mut eof_gap = EOF_FIRST_QUIET;
    loop {
        let stdin = std::io::stdin();
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        let master_events = if pending.is_empty() {
            PollFlags::POLLIN
        } else {
            PollFlags::POLLIN | PollFlags::POLLOUT
        };
        let master_at = master_open.then(|| {
            fds.push(PollFd::new(master.as_fd(), master_events));
            fds.len() - 1
        });
        let stdin_at = (stdin_open && pending.is_empty() && master_open).then(|| {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        let channel_at = channel.as_ref().map(|c| {
            fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        let timeout = if eofs_left > 0 && pending.is_empty() {
            let left = eof_gap.saturating_sub(quiet_since.elapsed());
            PollTimeout::try_from(left.as_millis() as u32).unwrap_or(PollTimeout::ZERO)
        } else {
            PollTimeout::NONE
        };
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        let revents = |i: Option<usize>| {
            i.and_then(|i| fds[i].revents())
                .unwrap_or(PollFlags::empty())
        };
        let (sig_ev, master_ev, stdin_ev, channel_ev) = (
            revents(Some(0)),
            revents(master_at),
            revents(stdin_at),
            revents(channel_at),
        );
        drop(fds);
        if !sig_ev.is_empty() {
            for sig in signals.received() {
                if sig == libc::SIGWINCH {
                    if let Some(w) = winsize {
                        copy_window_size(w.as_fd());
                    }
                } else if !signals.forward(sig) {
                    return Ok(Outcome::Detached);
                }
            }
        }
        if master_ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            quiet_since = std::time::Instant::now();
            master_open = drain(master.as_raw_fd(), &mut buf);
            if !master_open && channel.is_none() {
                return Ok(Outcome::Closed);
            }
        }
        if master_ev.contains(PollFlags::POLLOUT) && !pending.is_empty() {
            match nix::unistd::write(master, &pending) {
                Ok(n) => {
                    pending.drain(..n);
                }
                Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
                Err(_) => pending.clear(),
            }
        }
        if !stdin_ev.is_empty() {
            match nix::unistd::read(0, &mut buf) {
                Ok(0) => {
                    stdin_open = false;
                    // Input from a pipe has ended: the terminal's EOF
                    // character tells the container so, as a person's
                    // Ctrl-D would.
                    if !nix::unistd::isatty(0).unwrap_or(false) && detach_keys.is_empty() {
                        eofs_left = EOF_TRIES;
                    }
                }
                Ok(n) => {
                    for &b in &buf[..n] {
                        if !detach_keys.is_empty() {
                            if b == detach_keys[matched] {
                                matched += 1;
                                if matched == detach_keys.len() {
                                    return Ok(Outcome::Detached);
                                }
                                continue;
                            }
                            // Not the sequence after all: what was held
                            // back goes on too.
                            pending.extend_from_slice(&detach_keys[..matched]);
                            matched = 0;
                        }
                        pending.push(b);
                    }
                }
                Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
                Err(_) => stdin_open = false,
            }
        }
        if eofs_left > 0 && pending.is_empty() && quiet_since.elapsed() >= eof_gap {
            pending.push(0x04);
            eofs_left -= 1;
            quiet_since = std::time::Instant::now();
            eof_gap = EOF_AGAIN_QUIET;
        }
        if !channel_ev.is_empty() {
            if let Some(ch) = channel.take() {
                let code = ch.wait_for_exit().map_err(channel_error)?;
                // What it wrote last is still in the terminal's buffer.
                if master_open {
                    drain(master.as_raw_fd(), &mut buf);
                }
                return Ok(Outcome::Exited(code));
            }
        }
    }
}

/// Copy what the master has to stdout; false once the other side has
/// closed (EIO: no process holds the terminal any more).
fn drain(master: i32, buf: &mut [u8]) -> bool {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    loop {
        match nix::unistd::read(master, buf) {
            Ok(0) => return false,
            Ok(n) => {
                let _ = out.write_all(&buf[..n]);
                let _ = out.flush();
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return true,
            Err(_) => return false,
        }
    }
}

pub fn set_nonblocking(fd: i32) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    if let Ok(flags) = fcntl(fd, FcntlArg::F_GETFL) {
        let _ = fcntl(
            fd,
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        );
    }
}
