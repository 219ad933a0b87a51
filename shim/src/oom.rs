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
    /// None once the cgroup is gone: the file then reports an error
    /// forever, and polling it would spin.
    file: Option<File>,
    /// The last oom_kill count read, kept after the cgroup has gone: with
    /// a systemd scope that is the common case at the container's stop.
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
            file: Some(File::open(path).ok()?),
            kills: 0,
        };
        watch.read();
        Some(watch)
    }

    /// What to poll, while the cgroup is there.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.file.as_ref().map(|f| f.as_fd())
    }

    /// Read the count again (which re-arms the notification); once the
    /// cgroup is gone, the count read before it went stays.
    pub fn read(&mut self) {
        let Some(file) = &self.file else {
            return;
        };
        let mut buf = [0u8; 512];
        let read = nix::sys::uio::pread(file, &mut buf, 0)
            .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned());
        self.update(read);
    }

    fn update(&mut self, read: nix::Result<String>) {
        match read {
            Ok(text) => {
                let kills = text.lines().find_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    (k == "oom_kill").then(|| v.trim().parse::<u64>().ok())?
                });
                self.kills = self.kills.max(kills.unwrap_or(0));
            }
            Err(_) => self.file = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::errno::Errno;

    fn watch() -> OomWatch {
        OomWatch {
            file: Some(File::open("/dev/null").unwrap()),
            kills: 0,
        }
    }

    #[test]
    fn the_count_outlives_the_cgroup() {
        let mut w = watch();
        w.update(Ok("low 0\nhigh 0\nmax 18\noom 1\noom_kill 0\n".into()));
        assert_eq!(w.kills, 0);
        w.update(Ok("low 0\nhigh 0\nmax 18\noom 1\noom_kill 1\n".into()));
        assert_eq!(w.kills, 1);
        // systemd removed the scope: the kernel answers ENODEV from now on.
        w.update(Err(Errno::ENODEV));
        assert_eq!(w.kills, 1);
        assert!(w.fd().is_none(), "a gone cgroup's file is polled no more");
        w.read();
        assert_eq!(w.kills, 1);
    }

    #[test]
    fn the_count_never_goes_back() {
        let mut w = watch();
        w.update(Ok("oom_kill 2\n".into()));
        w.update(Ok("oom 0\n".into()));
        assert_eq!(w.kills, 2);
        assert!(w.fd().is_some());
    }
}
