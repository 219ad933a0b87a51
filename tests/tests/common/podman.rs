//! Podman as the tests run it: a storage root, run root and temporary
//! directory of the test's own, file events, and the cgroup manager the
//! test names (cgroupfs on this development host, systemd in the systemd
//! VM). Everything it made goes on drop.

use super::daemon::try_run_bounded;
use super::Test;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// How long one podman command may take: a `run` under the VM's
/// emulation, or beside a full test suite, takes seconds, not minutes.
const TIMEOUT: Duration = Duration::from_secs(300);

/// The test rootfs, as [`Podman::with_test_image`] imports it.
pub const IMAGE: &str = "localhost/nsbox-test:latest";

pub struct Podman {
    pub dir: PathBuf,
    cgroup_manager: &'static str,
}

impl Podman {
    /// `cgroup_manager`: "cgroupfs" or "systemd", as `--cgroup-manager`.
    pub fn new(t: &Test, cgroup_manager: &'static str) -> Podman {
        let dir = t.work.join("podman");
        fs::create_dir_all(&dir).unwrap();
        Podman {
            dir,
            cgroup_manager,
        }
    }

    /// A Podman (with conmon and runc there: `make deps`) whose storage
    /// holds the test rootfs as [`IMAGE`].
    pub fn with_test_image(t: &Test, cgroup_manager: &'static str) -> Podman {
        super::require_tools(
            &["podman", "conmon", "runc"],
            "`make deps` installs podman, conmon and runc",
        );
        let p = Podman::new(t, cgroup_manager);
        let tar = t.work.join("rootfs.tar");
        super::images::rootfs_tar(super::rootfs(), &tar);
        let o = p.run(&["import", tar.to_str().unwrap(), IMAGE]);
        assert!(o.status.success(), "podman import: {o:?}");
        p
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args(["--cgroup-manager", self.cgroup_manager])
            .args(["--events-backend", "file"])
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// The command's output; a command that does not end within
    /// `TIMEOUT` is killed (by pid) and fails the test.
    #[track_caller]
    pub fn run(&self, args: &[&str]) -> Output {
        super::daemon::run_bounded(self.cmd(args), TIMEOUT)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Never a panic here: the test may be panicking already.
        let _ = try_run_bounded(self.cmd(&["rm", "-af", "-t", "0"]), TIMEOUT);
        let _ = try_run_bounded(self.cmd(&["system", "reset", "-f"]), TIMEOUT);
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.join("root"))
            .stderr(Stdio::null())
            .status();
        if self.cgroup_manager == "cgroupfs" {
            // conmon's cgroups under Podman's parent, which Podman leaves
            // behind with runc too: removed once empty.
            for h in fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
            {
                let parent = h.path().join("libpod_parent");
                let _ = fs::remove_dir(parent.join("conmon"));
                let _ = fs::remove_dir(&parent);
            }
        }
    }
}
