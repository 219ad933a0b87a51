//! What the shim has made of a container until the runtime knows of it,
//! undone on drop: a failed step of create, or a runtime that never heard
//! `Created`, leaves nothing behind (the runtime's `Undo` does the same on
//! its side; every step of it is idempotent).

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nsbox_host::proc::{pidfd_send_signal, wait_pidfd};
use nsbox_host::teardown::{HostSide, CGROUP_TIMEOUT};
use protocol::CgroupPaths;

use crate::spawn;

pub struct Rollback {
    /// tiny-init's pidfd (a dup of the one the container keeps), once cloned.
    init: Option<OwnedFd>,
    host: HostSide,
    armed: bool,
}

impl Rollback {
    /// For container `id`. Its cgroup is ours to remove once it is made
    /// ([`Rollback::cgroup_made`]): one of that name that exists already
    /// is another container's.
    pub fn new(id: &str) -> Rollback {
        Rollback {
            init: None,
            host: HostSide {
                id: id.to_string(),
                network_root: None,
                cgroup: None,
                stop_scope: None,
            },
            armed: true,
        }
    }

    /// The cgroup is ours from now on: the runtime made it, or systemd
    /// made its scope, for us.
    pub fn cgroup_made(&mut self, cgroup: CgroupPaths) {
        self.host.cgroup = Some(cgroup);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spawn::tests::{cgroup2_root, clone_a_sleeper};
    use protocol::CgroupDir;

    fn v2_paths(dir: &std::path::Path) -> CgroupPaths {
        CgroupPaths {
            path: format!("/{}", dir.file_name().unwrap().to_str().unwrap()),
            unified: true,
            dirs: vec![CgroupDir {
                controller: String::new(),
                dir: dir.to_str().unwrap().into(),
            }],
            systemd: None,
        }
    }

    /// A sleeper cloned into a cgroup of its own, as tiny-init is, with a
    /// rollback that knows it; `ours`: the cgroup was made for us. None
    /// (skipped) without root or a cgroup2 mount.
    fn rollback_of_a_sleeper(
        name: &str,
        ours: bool,
    ) -> Option<(Rollback, spawn::Child, std::path::PathBuf)> {
        let root = cgroup2_root()?;
        let (child, dir) = clone_a_sleeper(&root, name);
        let mut rollback = Rollback::new("c1");
        if ours {
            rollback.cgroup_made(v2_paths(&dir));
        }
        rollback.init_cloned(&child).unwrap();
        Some((rollback, child, dir))
    }

    /// A failed create: tiny-init killed and reaped, its cgroup removed.
    #[test]
    fn an_armed_rollback_undoes_tiny_init_and_the_cgroup() {
        let Some((rollback, child, dir)) = rollback_of_a_sleeper("rollback-armed", true) else {
            return;
        };
        drop(rollback);
        let left = std::fs::read_to_string(format!("/proc/{}/stat", child.pid));
        let dir_left = dir.exists();
        if dir_left {
            let _ = pidfd_send_signal(&child.pidfd, libc::SIGKILL);
            let _ = spawn::reap(&child.pidfd, true);
            let _ = std::fs::remove_dir(&dir);
        }
        assert!(left.is_err(), "tiny-init is still there: {left:?}");
        assert!(!dir_left, "the cgroup is still there");
    }

    /// The runtime never said it made the cgroup (it could not, or one
    /// of that name was another container's): a failed create leaves it.
    #[test]
    fn a_cgroup_never_made_for_us_is_left() {
        let Some((rollback, _child, dir)) = rollback_of_a_sleeper("rollback-not-ours", false)
        else {
            return;
        };
        drop(rollback);
        let dir_left = dir.exists();
        let _ = std::fs::remove_dir(&dir);
        assert!(dir_left, "another container's cgroup was removed");
    }

    /// The runtime heard `Created`: nothing is undone.
    #[test]
    fn a_disarmed_rollback_leaves_everything() {
        let Some((mut rollback, child, dir)) = rollback_of_a_sleeper("rollback-disarmed", true)
        else {
            return;
        };
        rollback.disarm();
        drop(rollback);
        let alive = spawn::reap(&child.pidfd, false).is_none();
        let dir_left = dir.exists();
        let _ = pidfd_send_signal(&child.pidfd, libc::SIGKILL);
        let _ = spawn::reap(&child.pidfd, true);
        let _ = std::fs::remove_dir(&dir);
        assert!(alive, "tiny-init was killed");
        assert!(dir_left, "the cgroup was removed");
    }
}
