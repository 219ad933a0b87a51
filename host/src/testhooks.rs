//! Hooks for the fault tests (tests/tests/faults.rs). They do nothing unless
//! their environment variable is set, and no user needs to set them.
//!
//! - `NSBOX_FAULT=create:POINT`: `runtime create` kills itself with SIGKILL
//!   at POINT (see [`CREATE_FAULT_POINTS`]). Timing cannot hit each step of
//!   `create` reliably; this does, so that the tests can show that a runtime
//!   killed anywhere leaves nothing that `delete --force` cannot clear.
//! - `NSBOX_FAULT=shim:POINT`: the shim does the same while it makes the
//!   container (see [`SHIM_FAULT_POINTS`]): `create` must then fail and
//!   roll back everything, tiny-init, cgroup and network included.
//! - `NSBOX_START_TIMEOUT_MS=N`: how long the shim waits for tiny-init to
//!   answer `Start` (the runtime waits 5 s longer, so that the shim's own,
//!   more precise error arrives first). The default, 30 s, is too long for a
//!   test that proves the wait is bounded.

use std::time::Duration;

/// Where `runtime create` can be made to die, in the order it gets there.
pub const CREATE_FAULT_POINTS: &[&str] = &[
    "after-mkdir",
    "after-fork",
    "after-state",
    "after-send",
    "after-created",
    "before-pidfile",
];

/// Where the shim can be made to die while it makes a container (it gets
/// `NSBOX_FAULT=shim:POINT` from the runtime's environment).
pub const SHIM_FAULT_POINTS: &[&str] =
    &["after-clone", "after-ready", "after-network", "after-save"];

/// SIGKILL ourselves if `NSBOX_FAULT` names `verb:point`.
pub fn fault(verb: &str, point: &str) {
    let Some(want) = std::env::var_os("NSBOX_FAULT") else {
        return;
    };
    if want.to_str() == Some(&format!("{verb}:{point}")) {
        log::debug!("NSBOX_FAULT: killing ourselves at {verb}:{point}");
        // SAFETY: kill(2) of our own pid.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}

const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);
/// The runtime's margin over the shim's bound.
const RUNTIME_MARGIN: Duration = Duration::from_secs(5);

/// How long the shim waits for tiny-init's answer to `Start`.
pub fn shim_start_timeout() -> Duration {
    std::env::var("NSBOX_START_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_START_TIMEOUT)
}

/// How long the runtime waits for the shim's answer to `Start` (or `Exec`).
pub fn runtime_start_timeout() -> Duration {
    shim_start_timeout() + RUNTIME_MARGIN
}
