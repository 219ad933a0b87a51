//! The shim's socket in a container's state directory: SOCK_SEQPACKET, at
//! a path that may be longer than the 108 bytes of `sun_path` (a deep
//! `--root`, a long container ID). Such a path is reached through
//! `/proc/self/fd/N/NAME`, N an fd of its directory, as conmon does.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::socket::{
    bind, connect, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    UnixAddr,
};

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("create a unix socket")]
    Create(#[source] Errno),
    #[error("open {} to reach the socket in it", .0.display())]
    OpenDir(PathBuf, #[source] std::io::Error),
    #[error("socket path {}", .0.display())]
    Address(PathBuf, #[source] Errno),
    #[error("bind {}", .0.display())]
    Bind(PathBuf, #[source] Errno),
    #[error("listen on {}", .0.display())]
    Listen(PathBuf, #[source] Errno),
    #[error("connect to {}", .0.display())]
    Connect(PathBuf, #[source] Errno),
}

/// The address of `path`, and the directory fd that a shortened address
/// goes through (to be kept open until bind or connect is done).
fn address(path: &Path) -> Result<(UnixAddr, Option<File>), SocketError> {
    if let Ok(addr) = UnixAddr::new(path) {
        return Ok((addr, None));
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    let dir_fd = File::open(dir).map_err(|e| SocketError::OpenDir(dir.to_owned(), e))?;
    let mut short = PathBuf::from(format!("/proc/self/fd/{}", dir_fd.as_raw_fd()));
    short.push(path.file_name().unwrap_or_default());
    let addr = UnixAddr::new(&short).map_err(|e| SocketError::Address(path.to_owned(), e))?;
    Ok((addr, Some(dir_fd)))
}

fn seqpacket(flags: SockFlag) -> Result<OwnedFd, SocketError> {
    socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC | flags,
        None,
    )
    .map_err(SocketError::Create)
}

/// A non-blocking listener at `path` (the shim serves it from its poll
/// loop and must never block in accept).
pub fn listen_seqpacket(path: &Path) -> Result<OwnedFd, SocketError> {
    let sock = seqpacket(SockFlag::SOCK_NONBLOCK)?;
    let (addr, _dir_fd) = address(path)?;
    bind(sock.as_raw_fd(), &addr).map_err(|e| SocketError::Bind(path.to_owned(), e))?;
    listen(&sock, Backlog::new(16).unwrap_or(Backlog::MAXCONN))
        .map_err(|e| SocketError::Listen(path.to_owned(), e))?;
    Ok(sock)
}

/// A blocking connection to the listener at `path`. connect(2) itself is
/// bounded as the runtime's other waits for a shim are
/// ([`crate::testhooks::runtime_start_timeout`]): a shim that is stopped
/// (SIGSTOP, a frozen cgroup) with a full backlog would block it for ever,
/// and a unix connect honours SO_SNDTIMEO.
pub fn connect_seqpacket(path: &Path) -> Result<OwnedFd, SocketError> {
    let sock = seqpacket(SockFlag::empty())?;
    let (addr, _dir_fd) = address(path)?;
    let bound = crate::testhooks::runtime_start_timeout();
    let tv = nix::sys::time::TimeVal::new(bound.as_secs() as _, 0);
    setsockopt(&sock, sockopt::SendTimeout, &tv)
        .map_err(|e| SocketError::Connect(path.to_owned(), e))?;
    connect(sock.as_raw_fd(), &addr).map_err(|e| SocketError::Connect(path.to_owned(), e))?;
    Ok(sock)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nsbox-socket-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn greet(path: &Path) {
        let listener = listen_seqpacket(path).unwrap();
        let client = connect_seqpacket(path).unwrap();
        let server = nix::sys::socket::accept(listener.as_raw_fd()).unwrap();
        nix::unistd::write(&client, b"hi").unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(nix::unistd::read(server, &mut buf).unwrap(), 2);
        nix::unistd::close(server).unwrap();
    }

    #[test]
    fn a_short_path_is_bound_as_it_is() {
        let dir = temp_dir("short");
        let path = dir.join("s.sock");
        greet(&path);
        assert!(path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_path_beyond_sun_path_goes_through_its_directory() {
        let dir = temp_dir("long");
        let deep = dir.join("d".repeat(100)).join("e".repeat(100));
        std::fs::create_dir_all(&deep).unwrap();
        let path = deep.join("shim.sock");
        assert!(UnixAddr::new(&path).is_err(), "the path must be too long");
        greet(&path);
        assert!(path.exists(), "bound at the real path");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_listener_does_not_block() {
        let dir = temp_dir("nonblock");
        let listener = listen_seqpacket(&dir.join("s.sock")).unwrap();
        assert_eq!(
            nix::sys::socket::accept(listener.as_raw_fd()),
            Err(Errno::EAGAIN)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn nothing_listening_is_an_error_naming_the_path() {
        let dir = temp_dir("refused");
        let path = dir.join("none.sock");
        let e = connect_seqpacket(&path).unwrap_err();
        assert!(matches!(e, SocketError::Connect(_, Errno::ENOENT)), "{e}");
        assert_eq!(e.to_string(), format!("connect to {}", path.display()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
