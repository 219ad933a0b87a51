//! The seccomp agent's end: the workload's seccomp listener fd, sent to
//! linux.seccomp.listenerPath with the container process state, as
//! runtime-spec lays it out (and runc sends it) while the container is
//! created.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use protocol::SeccompListener;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the fd from tiny-init is not a seccomp listener ({0})")]
    NotAListener(String),
    #[error("connect to {path}")]
    Connect {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("send to {path}")]
    Send {
        path: String,
        #[source]
        source: nix::Error,
    },
}

/// Send `fd` to the agent at `listener.path` with the container process
/// state: the OCI `state`, the container's pid and the listener's
/// metadata, and "seccompFd" naming the one fd.
pub fn send(
    listener: &SeccompListener,
    fd: &OwnedFd,
    state: serde_json::Value,
    pid: i32,
) -> Result<(), AgentError> {
    // It came from inside the container: it must be what it claims before
    // it goes to an agent that will act on it.
    let what = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    if what != "anon_inode:seccomp notify" {
        return Err(AgentError::NotAListener(what));
    }
    let message = serde_json::json!({
        "ociVersion": nsbox_host::state::OCI_VERSION,
        "fds": ["seccompFd"],
        "pid": pid,
        "metadata": listener.metadata,
        "state": state,
    })
    .to_string();
    let path = listener.path.clone();
    let stream = UnixStream::connect(&listener.path).map_err(|source| AgentError::Connect {
        path: path.clone(),
        source,
    })?;
    let fds = [fd.as_raw_fd()];
    sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(message.as_bytes())],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(|source| AgentError::Send { path, source })?;
    Ok(())
}
