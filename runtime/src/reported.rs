//! Failures that another process met and reported (tiny-init, the shim, a
//! forked exec child): the runtime ends with the exit code that process
//! chose, 127 for a command not found and 126 for one that cannot be
//! executed, as a shell would.

use protocol::Failure;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReportedFailure(pub Failure);

/// The exit code `e` asks the runtime to end with: a reported failure's,
/// else 1.
pub fn exit_code_of(e: &anyhow::Error) -> i32 {
    match e
        .chain()
        .find_map(|c| c.downcast_ref::<ReportedFailure>())
        .map(|r| r.0.exit_code)
    {
        Some(code) if code != 0 => code,
        _ => 1,
    }
}
