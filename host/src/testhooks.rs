//! Hooks for the fault tests (tests/tests/faults.rs). They do nothing unless
//! their environment variable is set, and no user needs to set them.
//!
//! - `NSBOX_FAULT=create:POINT`: `runtime create` kills itself with SIGKILL
//!   at POINT (see [`POINTS`]). Timing cannot hit each step of `create`
//!   reliably; this does, so that the tests can show that a runtime killed
//!   anywhere leaves nothing that `delete --force` cannot clear.
//! - `NSBOX_FAULT=shim:POINT`: the shim does the same while it makes the
//!   container: `create` must then fail and roll back everything,
//!   tiny-init, cgroup and network included.
//! - `NSBOX_START_TIMEOUT_MS=N`: how long the shim waits for tiny-init to
//!   answer `Start` (the runtime waits 5 s longer, so that the shim's own,
//!   more precise error arrives first). The default, 30 s, is too long for a
//!   test that proves the wait is bounded.
//! - `NSBOX_NETWORK_DELAY_MS=N`: the shim waits N ms before it plugs a
//!   bridged container in, beside tiny-init's set-up, so that a test can
//!   show the workload never starts before its network is there, however
//!   the two race.

use std::time::Duration;

/// Every `(verb, point)` that [`fault`] is called with, in the order each
/// verb gets there: `runtime create`'s, then the shim's while it makes a
/// container (it gets `NSBOX_FAULT=shim:POINT` from the runtime's
/// environment). tests/tests/faults.rs kills nsbox at each of them; a call
/// of [`fault`] with a point not listed here panics in a debug build, so
/// that a new point cannot go untested.
pub const POINTS: &[(&str, &str)] = &[
    ("create", "after-mkdir"),
    ("create", "after-fork"),
    ("create", "after-state"),
    ("create", "after-send"),
    ("create", "after-created"),
    ("create", "before-pidfile"),
    ("shim", "after-clone"),
    ("shim", "after-network"),
    ("shim", "after-ready"),
    ("shim", "after-save"),
];

/// SIGKILL ourselves if `NSBOX_FAULT` names `verb:point`.
pub fn fault(verb: &str, point: &str) {
    debug_assert!(
        POINTS.contains(&(verb, point)),
        "fault point {verb}:{point} is not in nsbox_host::testhooks::POINTS"
    );
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

/// Sleep `NSBOX_NETWORK_DELAY_MS`, if set (tests only).
pub fn network_delay() {
    if let Some(ms) = std::env::var("NSBOX_NETWORK_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

/// How long the runtime waits for the shim's answer to `Start` (or `Exec`).
pub fn runtime_start_timeout() -> Duration {
    shim_start_timeout() + RUNTIME_MARGIN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "fault point create:no-such-point is not in")]
    fn a_point_not_listed_is_refused() {
        fault("create", "no-such-point");
    }
}
