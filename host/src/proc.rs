//! Host processes named by pid *and* start time, so that a pid the kernel
//! has reused is never mistaken for one of ours.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: i32,
    /// Field 22 of /proc/PID/stat: clock ticks after boot.
    pub start_time: u64,
}

/// What /proc/PID/stat tells of a process: its state letter, parent and
/// start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub state: char,
    pub ppid: i32,
    pub start_time: u64,
}

pub fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// The command name may hold spaces and parentheses: split after the last ')'.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    // After state and ppid, the start time is the 20th field of `rest`.
    let start_time = fields.nth(17)?.parse().ok()?;
    Some(Stat {
        state,
        ppid,
        start_time,
    })
}

/// How long ago `pid` started, in seconds: its start time against the
/// system's uptime.
pub fn age_secs(pid: i32) -> Option<u64> {
    let start = stat(pid)?.start_time;
    use nix::unistd::{sysconf, SysconfVar};
    let hz = match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(hz)) if hz > 0 => hz as u64,
        _ => 100,
    };
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((uptime - start as f64 / hz as f64).max(0.0) as u64)
}

impl ProcessId {
    pub fn of(pid: i32) -> Option<ProcessId> {
        stat(pid).map(|s| ProcessId {
            pid,
            start_time: s.start_time,
        })
    }

    /// Still running (a zombie has ended: only its exit status is left).
    pub fn is_alive(&self) -> bool {
        match stat(self.pid) {
            Some(s) => s.start_time == self.start_time && s.state != 'Z' && s.state != 'X',
            None => false,
        }
    }

    /// A pidfd for this very process, or None if it has ended. The start time
    /// is checked after the pidfd is open, so the pidfd cannot name a
    /// successor that took the pid.
    pub fn pidfd(&self) -> Option<OwnedFd> {
        let fd = pidfd_open(self.pid).ok()?;
        if self.is_alive() {
            Some(fd)
        } else {
            None
        }
    }
}

pub use nsbox_process::pidfd_open;

/// nix 0.29 has no pidfd_send_signal.
#[allow(unsafe_code)]
pub fn pidfd_send_signal(pidfd: &OwnedFd, signal: i32) -> Result<(), Errno> {
    // SAFETY: pidfd_send_signal reads nothing of ours (no siginfo) and
    // signals the process of a pidfd we hold.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Wait until the process behind `pidfd` has ended, at most `timeout`.
/// True if it has.
pub fn wait_pidfd(pidfd: &OwnedFd, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms =
            PollTimeout::try_from(left.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(
            std::os::fd::AsFd::as_fd(pidfd),
            PollFlags::POLLIN,
        )];
        match poll(&mut fds, ms) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
}

/// Send `signal` to the process if it is still the one we started.
/// Ok(false) if it has already ended.
pub fn signal(id: &ProcessId, signal: i32) -> Result<bool, Errno> {
    match id.pidfd() {
        Some(fd) => match pidfd_send_signal(&fd, signal) {
            Ok(()) => Ok(true),
            Err(Errno::ESRCH) => Ok(false),
            Err(e) => Err(e),
        },
        None => Ok(false),
    }
}

/// SIGKILL the process and wait for it to end. False if it outlived `timeout`.
pub fn kill_and_wait(id: &ProcessId, timeout: Duration) -> bool {
    match id.pidfd() {
        Some(fd) => {
            let _ = pidfd_send_signal(&fd, libc::SIGKILL);
            wait_pidfd(&fd, timeout)
        }
        None => true,
    }
}

/// The inode of a process's namespace of `kind` ("pid", "mnt", ...).
pub fn namespace_inode(pid: i32, kind: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/ns/{kind}"))
        .ok()
        .map(|m| m.ino())
}

/// Every host pid whose PID namespace is `ns_inode`, sorted.
pub fn pids_in_pid_namespace(ns_inode: u64) -> Vec<i32> {
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&pid| namespace_inode(pid, "pid") == Some(ns_inode))
        .collect();
    pids.sort_unstable();
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_hostile_comm() {
        let line = "42 (a) b (c)) S 7 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 123456 1000 10";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 7);
        assert_eq!(s.start_time, 123456);
    }

    #[test]
    fn our_own_process_is_alive_and_a_changed_start_time_is_not() {
        let me = ProcessId::of(std::process::id() as i32).unwrap();
        assert!(me.is_alive());
        let other = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!other.is_alive());
        assert!(other.pidfd().is_none());
    }
}
