//! OOM kills counted as they happen (cgroup v2). A systemd scope's cgroup
//! goes as soon as its last process has (systemd stops an empty scope and
//! removes it), which can be before the shim has recorded the stop: its
//! memory.events would be gone by then. The kernel notifies a change of
//! memory.events as an exceptional condition (POLLPRI) on an open copy,
//! re-armed by reading it, so the shim's loop polls one and keeps the
//! count.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use protocol::CgroupPaths;

pub struct OomWatch {
    file: File,
    /// The last oom_kill count read.
    pub kills: u64,
}

impl OomWatch {
    /// A watch on the container's memory.events; None on v1, or where the
    /// memory controller gives the cgroup none.
    pub fn open(paths: &CgroupPaths) -> Option<OomWatch> {
        if !paths.unified {
            return None;
        }
        let path = Path::new(&paths.dirs.first()?.dir).join("memory.events");
        let mut watch = OomWatch {
            file: File::open(path).ok()?,
            kills: 0,
        };
        watch.read();
        Some(watch)
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Read the count again (which re-arms the notification); false once
    /// the cgroup is gone.
    pub fn read(&mut self) -> bool {
        let mut buf = [0u8; 512];
        match nix::sys::uio::pread(&self.file, &mut buf, 0) {
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                let kills = text.lines().find_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    (k == "oom_kill").then(|| v.trim().parse::<u64>().ok())?
                });
                self.kills = self.kills.max(kills.unwrap_or(0));
                true
            }
            Err(_) => false,
        }
    }
}
