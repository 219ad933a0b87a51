//! A logged container's output: its stdout and stderr (or its terminal),
//! read by the shim from pipes it made (or from the pty master) into
//! `container.log`, never blocking on the container.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nsbox_host::output_log::{Lines, Writer};

use crate::attach::Terminal;

/// One read. conmon's size: the buffer is on the stack, and every page of
/// it stays in the shim once touched (32 KiB here took the shim's stack
/// from 36 to 60 KiB after a container's first output); a turn of
/// `TURN` reads still takes a full pipe (64 KiB).
const READ: usize = 8 * 1024;
/// How much of a stream one turn of the server loop reads, so that a
/// chatty container does not starve the rest.
const TURN: usize = 8;
/// How much of a stream is read at the container's end: bounded too, since
/// without a PID namespace of its own a container's process can outlive
/// tiny-init and write on for ever.
const LAST_WORDS: usize = 1024;

struct Stream {
    fd: OwnedFd,
    name: &'static str,
    lines: Lines,
}

/// The streams, and the log they go to (nothing for a container that is
/// not logged: its output goes where the runtime's stdio went).
#[derive(Default)]
pub struct Output {
    streams: Vec<Stream>,
    log: Option<Writer>,
}

impl Output {
    /// Log `streams` (read ends, by name) into `dir`'s container.log.
    pub fn logged(dir: &Path, streams: Vec<(OwnedFd, &'static str)>) -> std::io::Result<Output> {
        let log = Writer::create(dir)?;
        Ok(Output {
            streams: streams
                .into_iter()
                .map(|(fd, name)| {
                    set_nonblocking(fd.as_raw_fd());
                    Stream {
                        fd,
                        name,
                        lines: Lines::default(),
                    }
                })
                .collect(),
            log: Some(log),
        })
    }

    pub fn fds(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.streams.iter().map(|s| s.fd.as_fd())
    }

    /// A turn's worth of stream `i`: logged, and passed on to the attached
    /// runtimes when it is the terminal. Closed once it has ended.
    pub fn read(&mut self, i: usize, terminal: Option<&mut Terminal>) {
        if !self.read_some(i, TURN, terminal) {
            self.close(i);
        }
    }

    /// The container has ended: everything its streams still hold, before
    /// the stop is recorded (`logs -f` ends once it sees the container
    /// stopped, and must have read everything by then).
    pub fn drain(&mut self, mut terminal: Option<&mut Terminal>) {
        for i in (0..self.streams.len()).rev() {
            self.read_some(i, LAST_WORDS, terminal.as_deref_mut());
            self.close(i);
        }
    }

    /// Up to `reads` reads of stream `i`; false once it has ended.
    fn read_some(&mut self, i: usize, reads: usize, mut terminal: Option<&mut Terminal>) -> bool {
        let mut buf = [0u8; READ];
        for _ in 0..reads {
            let n = match nix::unistd::read(self.streams[i].fd.as_raw_fd(), &mut buf) {
                Ok(0) => return false,
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return true,
                // EIO: a terminal whose every slave is closed.
                Err(_) => return false,
            };
            let stream = &mut self.streams[i];
            if let Some(log) = &mut self.log {
                let name = stream.name;
                stream.lines.feed(&buf[..n], |l| {
                    if let Err(e) = log.line(name, l) {
                        log::warn!("write container.log: {e}");
                    }
                });
            }
            if let Some(t) = terminal.as_deref_mut() {
                t.broadcast(&buf[..n]);
            }
        }
        true
    }

    fn close(&mut self, i: usize) {
        let mut stream = self.streams.remove(i);
        if let Some(log) = &mut self.log {
            stream.lines.finish(|l| {
                let _ = log.line(stream.name, l);
            });
        }
    }
}

/// Our stdio becomes what tiny-init inherits: /dev/null in, and pipes out
/// (or /dev/null too, for a terminal, whose output comes from its master);
/// the read ends are returned, by stream name.
pub fn pipes(terminal: bool) -> Result<Vec<(OwnedFd, &'static str)>, std::io::Error> {
    let null = dev_null()?;
    nix::unistd::dup2(null.as_raw_fd(), 0)?;
    if terminal {
        nix::unistd::dup2(null.as_raw_fd(), 1)?;
        nix::unistd::dup2(null.as_raw_fd(), 2)?;
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (fd, stream) in [(1, "stdout"), (2, "stderr")] {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        // dup2 leaves the copy without CLOEXEC: tiny-init inherits it, and
        // ours goes when detach_stdio replaces our stdio.
        nix::unistd::dup2(w.as_raw_fd(), fd)?;
        out.push((r, stream));
    }
    Ok(out)
}

/// The container's stdio belongs to tiny-init now; the shim keeps none of
/// it, so that a reader of the container's output sees EOF when the
/// container ends.
pub fn detach_stdio() {
    if let Ok(null) = dev_null() {
        for fd in 0..3 {
            let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
        }
    }
}

fn dev_null() -> std::io::Result<OwnedFd> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/null")
        .map(OwnedFd::from)
}

pub fn set_nonblocking(fd: RawFd) {
    if let Ok(flags) = fcntl(fd, FcntlArg::F_GETFL) {
        let _ = fcntl(
            fd,
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        );
    }
}
