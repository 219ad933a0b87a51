//! Framing: one bincode message per SOCK_SEQPACKET datagram, fds beside it.

use std::io::{IoSlice, IoSliceMut};
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
};
use nix::sys::time::TimeVal;
use serde::{de::DeserializeOwned, Serialize};

use crate::messages::Failure;

/// The largest datagram accepted. A config.json that does not fit is refused
/// by the runtime before anything is made.
pub const MAX_MESSAGE: usize = 192 * 1024;
/// The most file descriptors one message may carry.
pub const MAX_FDS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("the peer closed the connection")]
    Closed,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("message too large ({0} bytes, at most {MAX_MESSAGE})")]
    TooLarge(usize),
    #[error("malformed message: {0}")]
    Decode(String),
    #[error("expected {expected}, got {got}")]
    Unexpected { expected: &'static str, got: String },
    #[error("protocol version mismatch: ours is {ours}, the peer's is {theirs}")]
    Version { ours: u32, theirs: u32 },
    #[error("{0}")]
    Failed(Failure),
    /// The container's init ended instead of answering, with this code.
    #[error("the container exited with {0} before it started")]
    Exited(i32),
    #[error("{0}")]
    Io(#[from] Errno),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_MESSAGE>()
}

/// A typed end of a SOCK_SEQPACKET socket: sends `S`, receives `R`.
#[derive(Debug)]
pub struct Channel<S, R> {
    fd: OwnedFd,
    timeout: Option<Duration>,
    _types: PhantomData<fn(S) -> R>,
}

impl<S: Serialize, R: DeserializeOwned> Channel<S, R> {
    pub fn new(fd: OwnedFd) -> Self {
        Channel {
            fd,
            timeout: None,
            _types: PhantomData,
        }
    }

    /// Bound every later `recv` (None: wait as long as the peer lives).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), ChannelError> {
        let tv = match timeout {
            Some(d) => TimeVal::new(d.as_secs() as _, d.subsec_micros() as _),
            None => TimeVal::new(0, 0),
        };
        setsockopt(&self.fd, sockopt::ReceiveTimeout, &tv)?;
        self.timeout = timeout;
        Ok(())
    }

    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    pub fn send(&self, msg: &S, fds: &[RawFd]) -> Result<(), ChannelError> {
        let buf = bincode::serde::encode_to_vec(msg, config())
            .map_err(|e| ChannelError::Decode(e.to_string()))?;
        if buf.len() > MAX_MESSAGE {
            return Err(ChannelError::TooLarge(buf.len()));
        }
        let iov = [IoSlice::new(&buf)];
        let cmsg = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
        loop {
            match sendmsg::<()>(
                self.fd.as_raw_fd(),
                &iov,
                cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(Errno::EPIPE) | Err(Errno::ECONNRESET) => return Err(ChannelError::Closed),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// One message and the descriptors that came with it.
    pub fn recv(&self) -> Result<(R, Vec<OwnedFd>), ChannelError> {
        // A peer that closes with our earlier message still unread in its
        // queue leaves us ECONNRESET, reported *before* the messages it sent
        // us first: those are still there, so read on once.
        let mut reset_seen = false;
        // The datagram's real size first (MSG_PEEK|MSG_TRUNC), so that the
        // buffer is what the message needs: a zeroed MAX_MESSAGE buffer on
        // every receive cost each shim and tiny-init ~200 KiB and 50 page
        // faults a message.
        let want = loop {
            match nix::sys::socket::recv(
                self.fd.as_raw_fd(),
                &mut [],
                MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC,
            ) {
                Ok(0) => return Err(ChannelError::Closed),
                Ok(n) => break n,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => {
                    return Err(ChannelError::Timeout(self.timeout.unwrap_or_default()))
                }
                Err(Errno::ECONNRESET) if !reset_seen => reset_seen = true,
                Err(Errno::ECONNRESET) => return Err(ChannelError::Closed),
                Err(e) => return Err(e.into()),
            }
        };
        // One byte more than the limit, so that an oversized datagram shows
        // as truncated (and is consumed) rather than read in part.
        let mut buf = vec![0u8; want.min(MAX_MESSAGE + 1)];
        let mut cmsg_space = nix::cmsg_space!([RawFd; MAX_FDS]);
        let (len, fds) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg_space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(msg) => {
                    let mut fds = Vec::new();
                    for c in msg.cmsgs().map_err(ChannelError::Io)? {
                        if let ControlMessageOwned::ScmRights(raw) = c {
                            fds.extend(raw.into_iter().map(received_fd));
                        }
                    }
                    if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
                        return Err(ChannelError::Decode("too many file descriptors".into()));
                    }
                    if msg.flags.contains(MsgFlags::MSG_TRUNC) {
                        return Err(ChannelError::TooLarge(msg.bytes));
                    }
                    break (msg.bytes, fds);
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => {
                    return Err(ChannelError::Timeout(self.timeout.unwrap_or_default()))
                }
                Err(Errno::ECONNRESET) if !reset_seen => reset_seen = true,
                Err(Errno::ECONNRESET) => return Err(ChannelError::Closed),
                Err(e) => return Err(e.into()),
            }
        };
        if len == 0 {
            return Err(ChannelError::Closed);
        }
        let msg = decode(&buf[..len])?;
        Ok((msg, fds))
    }
}

impl<S, R> AsFd for Channel<S, R> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl<S, R> AsRawFd for Channel<S, R> {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// One message from the bytes of one datagram: bounded by MAX_MESSAGE (a
/// length prefix in it cannot make the decoder allocate more), and every
/// byte accounted for. What `recv` does with what it read; public for the
/// fuzz targets.
pub fn decode<M: DeserializeOwned>(buf: &[u8]) -> Result<M, ChannelError> {
    if buf.len() > MAX_MESSAGE {
        return Err(ChannelError::TooLarge(buf.len()));
    }
    let (msg, used) = bincode::serde::decode_from_slice(buf, config())
        .map_err(|e| ChannelError::Decode(e.to_string()))?;
    if used != buf.len() {
        return Err(ChannelError::Decode(format!(
            "{} trailing bytes",
            buf.len() - used
        )));
    }
    Ok(msg)
}

/// A connected pair of CLOEXEC SOCK_SEQPACKET sockets.
pub fn seqpacket_pair() -> Result<(OwnedFd, OwnedFd), Errno> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
}

/// An fd that came with SCM_RIGHTS (nix 0.29 hands them out raw).
#[allow(unsafe_code)]
fn received_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: the kernel has just installed it in our table for this
    // message, and nothing else holds it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
