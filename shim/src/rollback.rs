//! What the shim has made of a container until the runtime knows of it,
//! undone on drop: a failed step of create, or a runtime that never heard
//! `Created`, leaves nothing behind (the runtime's `Undo` does the same on
//! its side; every step of it is idempotent).

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nsbox_host::proc::{pidfd_send_signal, wait_pidfd};
use nsbox_host::teardown::{HostSide, CGROUP_TIMEOUT};
use protocol::CreateRequest;

use crate::spawn;

pub struct Rollback {
    /// tiny-init's pidfd (a dup of the one the container keeps), once cloned.
    init: Option<OwnedFd>,
    host: HostSide,
    armed: bool,
}

impl Rollback {
    /// From the start the cgroup is ours to remove: the runtime made it
    /// before it sent `Create`.
    pub fn new(req: &CreateRequest) -> Rollback {
        Rollback {
            init: None,
            host: HostSide {
                id: req.id.clone(),
                network_root: None,
                cgroup: req.cgroup.as_ref().map(|c| c.paths.clone()),
            },
            armed: true,
        }
    }

    /// The network is reserved under `root`.
    pub fn network_reserved(&mut self, root: PathBuf) {
        self.host.network_root = Some(root);
    }

    /// tiny-init is cloned: it is killed and reaped first.
    pub fn init_cloned(&mut self, child: &spawn::Child) -> std::io::Result<()> {
        self.init = Some(child.pidfd.try_clone()?);
        Ok(())
    }

    /// The runtime knows of the container: its stop, or `delete`, removes
    /// it from now on (see nsbox_host::teardown).
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Rollback {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(pidfd) = &self.init {
            // Gone before the cgroup goes (the caller's child, in the
            // caller's-shim mode, is not ours to reap: its end is enough).
            let _ = pidfd_send_signal(pidfd, libc::SIGKILL);
            wait_pidfd(pidfd, CGROUP_TIMEOUT);
            let _ = spawn::reap(pidfd, false);
        }
        self.host.release_logged();
    }
}
