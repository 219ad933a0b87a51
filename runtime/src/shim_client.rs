//! A client of a container's shim, on the socket in the container's state
//! directory: connect and greet it, turn what the channel says into the
//! error the user sees, and wait for its record of a stop.

use std::time::Duration;

use anyhow::{Context, Result};
use nsbox_host::state::{ContainerDir, State};
use protocol::{ChannelError, RuntimeChannel, RuntimeToShim};

use crate::reported::ReportedFailure;

/// How long a live shim may take to record a stop it has been woken for
/// (it takes a millisecond or so); one slower than this is stuck.
const RECORD_TIMEOUT: Duration = Duration::from_secs(10);

/// Connect to the shim's socket and say hello.
pub fn connect(dir: &ContainerDir) -> Result<RuntimeChannel> {
    let sock = nsbox_host::socket::connect_seqpacket(&dir.socket()).context("reach the shim")?;
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

/// `st` once its shim has recorded the stop of its ended init (see
/// `State::stop_unrecorded`): the shim answers `Wait` once the exit code is
/// on disk, and a shim past its loop closes the connection after writing
/// it, so either way state.json then has it. Anything else is returned as
/// it is.
pub fn recorded_stop(dir: &ContainerDir, st: State) -> Result<State> {
    if !st.stop_unrecorded() {
        return Ok(st);
    }
    // A shim that removed its socket has recorded the stop already. What
    // the shim answers does not matter (`Exited`, or the connection closed
    // by a shim that wrote the code and went): state.json is the truth,
    // and the caller looks at it again.
    if let Ok(mut ch) = connect(dir) {
        let _ = ch.set_timeout(Some(RECORD_TIMEOUT));
        if ch.send(&RuntimeToShim::Wait, &[]).is_ok() {
            let _ = ch.wait_for_exit();
        }
    }
    Ok(dir.load()?)
}
