//! A client of a container's shim, on the socket in the container's state
//! directory: connect and greet it, and turn what the channel says into
//! the error the user sees.

use std::os::fd::{AsRawFd, OwnedFd};

use anyhow::{anyhow, Result};
use nix::sys::socket::{
    connect as connect_socket, socket, AddressFamily, SockFlag, SockType, UnixAddr,
};
use nsbox_host::state::ContainerDir;
use protocol::{ChannelError, RuntimeChannel};

use crate::reported::ReportedFailure;

/// Connect to the shim's socket, through /proc/self/fd when the path is
/// longer than sun_path allows, and say hello.
pub fn connect(dir: &ContainerDir) -> Result<RuntimeChannel> {
    let sock: OwnedFd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let path = dir.socket();
    let _dir_fd;
    let addr = match UnixAddr::new(&path) {
        Ok(a) => a,
        Err(_) => {
            let f = std::fs::File::open(&dir.path)?;
            let short = format!("/proc/self/fd/{}/shim.sock", f.as_raw_fd());
            _dir_fd = f;
            UnixAddr::new(short.as_str())?
        }
    };
    // A shim that is stopped (SIGSTOP, a frozen cgroup) with a full backlog
    // would block connect(2) for ever; a unix connect honours SO_SNDTIMEO.
    let bound = nix::sys::time::TimeVal::new(
        nsbox_host::testhooks::runtime_start_timeout().as_secs() as _,
        0,
    );
    nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::SendTimeout, &bound)?;
    connect_socket(sock.as_raw_fd(), &addr)
        .map_err(|e| anyhow!("connect to the shim: {}", e.desc()))?;
    let ch = RuntimeChannel::new(sock);
    ch.send_hello()?;
    Ok(ch)
}

/// Turns a protocol error into the error the user sees, keeping the exit
/// code that a failure reported across the channel chose.
pub fn channel_error(e: ChannelError) -> anyhow::Error {
    match e {
        ChannelError::Failed(f) => ReportedFailure(f).into(),
        other => other.into(),
    }
}
