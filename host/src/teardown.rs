//! Who releases a container's host side, and when: the one place that says
//! it. The host side is what outlives the container's processes unless
//! someone removes it: its network (the address and port reservation under
//! the state root, the veth, the bridge's rules) and its cgroup. The state
//! directory is listed too, since its removal is ordered against theirs.
//!
//! | who                          | when                                        | network                      | cgroup                                   | state directory |
//! |------------------------------|---------------------------------------------|------------------------------|------------------------------------------|-----------------|
//! | shim                         | the container stopped, after the exit code is on disk and the waiters are told | releases | removes, unless a foreground `run` heard `Exited` (it removes it then) | never |
//! | shim                         | a step of create failed, or the runtime never heard `Created` | releases its reservation | removes | never |
//! | `runtime create`/`run`       | create failed, the shim killed or not        | releases                     | removes                                  | removes, last   |
//! | `runtime run` (foreground)   | after `Exited`                              | only if the shim did not exit 0 | removes, before the state directory   | removes         |
//! | `runtime delete [--force]`   | once the shim has ended (or been killed)    | releases                     | removes                                  | removes, last   |
//!
//! Every release is idempotent, so that two of these may run for the same
//! container (a shim and a `delete --force` racing it, a shim that failed
//! and the runtime that rolls back after it) and a crash at any point
//! leaves something the next one finishes: the state directory names the
//! cgroup (`State::cgroup`), and the network's reservations live under the
//! state root by ID, so the directory goes last.

use std::path::PathBuf;
use std::time::Duration;

use protocol::CgroupPaths;

use crate::cgroups::systemd::StopScope;
use crate::cgroups::{self, CgroupError};
use crate::network::{self, NetworkError};

/// How long the processes of a stopped container may take to leave its
/// cgroup (they are SIGKILLed first) before its removal gives up.
pub const CGROUP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    #[error("release the network")]
    Network(#[source] NetworkError),
    #[error("remove cgroup {path}")]
    Cgroup {
        path: String,
        #[source]
        source: CgroupError,
    },
}

/// A container's host side, as far as it is known to whoever releases it.
#[derive(Debug, Clone)]
pub struct HostSide {
    pub id: String,
    /// The state root that holds the container's network reservation; None
    /// when it has none to release (no bridge network).
    pub network_root: Option<PathBuf>,
    pub cgroup: Option<CgroupPaths>,
    /// How a systemd scope is stopped: the runtime's D-Bus call; None in
    /// the shim, which has no D-Bus client (systemd collects an empty
    /// scope, and `delete` resets a failed one).
    pub stop_scope: Option<StopScope>,
}

impl HostSide {
    /// Give back the address, the veth, the rules and the host ports (the
    /// sockets that hold the ports are their owner's to close).
    pub fn release_network(&self) -> Result<(), TeardownError> {
        match &self.network_root {
            Some(root) => network::release(root, &self.id).map_err(TeardownError::Network),
            None => Ok(()),
        }
    }

    /// Kill what is left in the cgroup, and remove it.
    pub fn remove_cgroup(&self) -> Result<(), TeardownError> {
        match &self.cgroup {
            Some(cg) => cgroups::destroy(cg, CGROUP_TIMEOUT, self.stop_scope).map_err(|source| {
                TeardownError::Cgroup {
                    path: cg.path.clone(),
                    source,
                }
            }),
            None => Ok(()),
        }
    }

    /// Both: the network first (it holds nothing the cgroup's processes
    /// need), then the cgroup. Both are tried; the first error is returned.
    pub fn release(&self) -> Result<(), TeardownError> {
        let network = self.release_network();
        let cgroup = self.remove_cgroup();
        network.and(cgroup)
    }

    /// As `release`, for the paths that have no one to tell: each error is
    /// logged as a warning. True if everything went.
    pub fn release_logged(&self) -> bool {
        let mut clean = true;
        for r in [self.release_network(), self.remove_cgroup()] {
            if let Err(e) = r {
                log::warn!("{}: {}", self.id, protocol::error_chain(&e));
                clean = false;
            }
        }
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_release_is_no_error() {
        let host = HostSide {
            id: "c1".into(),
            network_root: None,
            cgroup: None,
            stop_scope: None,
        };
        assert!(host.release().is_ok());
        assert!(host.release_logged());
    }

    #[test]
    fn a_chain_says_each_cause_once() {
        let io = std::io::Error::from_raw_os_error(libc::EBUSY);
        let e = TeardownError::Cgroup {
            path: "/nsbox@c1".into(),
            source: CgroupError::Io {
                path: "/sys/fs/cgroup/pids/nsbox@c1".into(),
                source: io,
            },
        };
        let text = protocol::error_chain(&e);
        assert!(
            text.starts_with("remove cgroup /nsbox@c1: /sys/fs/cgroup/pids/nsbox@c1: "),
            "{text}"
        );
        assert_eq!(text.matches("busy").count(), 1, "{text}");
    }
}
