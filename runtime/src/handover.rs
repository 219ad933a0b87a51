//! What `create`, `run` and `exec` hand their caller besides an exit code:
//! the terminal's master on `--console-socket`, and the pid in `--pid-file`.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{anyhow, Context, Result};

/// Connect to the caller's console socket (before anything is made, so that
/// a wrong path fails early).
pub fn connect_console(path: &Path) -> Result<UnixStream> {
    UnixStream::connect(path).with_context(|| format!("console socket {}", path.display()))
}

/// Hand the terminal's master to the caller, as runc does: one message
/// naming the terminal, the fd in SCM_RIGHTS.
pub fn send_console(sock: &UnixStream, master: &OwnedFd) -> Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let fds = [master.as_raw_fd()];
    let name = b"/dev/ptmx";
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[std::io::IoSlice::new(name)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| anyhow!("send the terminal to the console socket: {}", e.desc()))?;
    Ok(())
}

/// The decimal pid, no newline, written to a temporary file and renamed:
/// conmon reads it once we exit, and must never see half of it.
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    std::fs::write(&tmp, pid.to_string())
        .and_then(|_| std::fs::rename(&tmp, path))
        .with_context(|| format!("write pid file {}", path.display()))
}
