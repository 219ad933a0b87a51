//! Timing commands, waiting for processes, and summarising samples.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// Set by SIGINT, SIGTERM or SIGHUP: the loops stop and the clean-up runs.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

pub fn catch_stop_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

/// Err once a stop signal has come.
pub fn check_stop() -> Result<()> {
    if STOP.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Runs the commands under test: stdin and stdout on /dev/null, stderr
/// appended to one log file, so that a detached container that keeps our
/// stdio never holds a pipe that we would wait on.
pub struct Runner {
    log: File,
    log_path: PathBuf,
    /// What each runtime printed on stderr while it succeeded: count and
    /// the first few distinct lines.
    pub warnings: BTreeMap<String, (usize, Vec<String>)>,
}

impl Runner {
    pub fn new(log_path: &Path) -> Result<Runner> {
        // One run's messages only.
        std::fs::write(log_path, "").with_context(|| format!("truncate {}", log_path.display()))?;
        let log = File::options()
            .create(true)
            .append(true)
            .read(true)
            .open(log_path)
            .with_context(|| format!("open {}", log_path.display()))?;
        Ok(Runner {
            log,
            log_path: log_path.to_path_buf(),
            warnings: BTreeMap::new(),
        })
    }

    pub fn stderr(&self) -> Result<Stdio> {
        Ok(Stdio::from(self.log.try_clone()?))
    }

    fn log_len(&self) -> u64 {
        self.log.metadata().map(|m| m.len()).unwrap_or(0)
    }

    fn log_since(&self, from: u64) -> String {
        let mut f = match File::open(&self.log_path) {
            Ok(f) => f,
            Err(_) => return String::new(),
        };
        let mut s = String::new();
        if f.seek(SeekFrom::Start(from)).is_ok() {
            let _ = f.take(64 * 1024).read_to_string(&mut s);
        }
        s
    }

    /// Runs `cmd` to its end and returns the wall time from spawn to reap.
    /// A non-zero exit is an error that quotes what it printed.
    pub fn time(&mut self, who: &str, cmd: &mut Command) -> Result<Duration> {
        check_stop()?;
        let before = self.log_len();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.stderr()?);
        let t = Instant::now();
        let status = cmd
            .status()
            .with_context(|| format!("{who}: spawn {:?}", cmd.get_program()))?;
        let took = t.elapsed();
        let printed = self.log_since(before);
        if !status.success() {
            bail!(
                "{who}: {} exited with {status}: {}",
                describe(cmd),
                printed.trim()
            );
        }
        if !printed.trim().is_empty() {
            let entry = self.warnings.entry(who.to_string()).or_default();
            entry.0 += 1;
            for line in printed.lines().map(str::trim).filter(|l| !l.is_empty()) {
                let line = without_ids(line);
                if entry.1.len() < 5 && !entry.1.contains(&line) {
                    entry.1.push(line);
                }
            }
        }
        Ok(took)
    }

    /// Runs `cmd` without timing it; failures are errors as in `time`.
    pub fn run(&mut self, who: &str, cmd: &mut Command) -> Result<()> {
        self.time(who, cmd).map(drop)
    }
}

/// A line with our container IDs (`bench-...`) replaced by `ID`, so that
/// the same message about different containers counts once.
fn without_ids(line: &str) -> String {
    line.split(' ')
        .map(|w| {
            if w.starts_with("bench-") {
                let tail: String = w
                    .chars()
                    .rev()
                    .take_while(|c| !c.is_alphanumeric())
                    .collect();
                format!("ID{}", tail.chars().rev().collect::<String>())
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A pid file as the runtimes write it: decimal, maybe a newline. Some
/// write it in place, so an empty or partial read is retried.
pub fn read_pid_file(path: &Path) -> Result<i32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if let Ok(pid) = s.trim().parse::<i32>() {
                if pid > 0 {
                    return Ok(pid);
                }
            }
        }
        if Instant::now() > deadline {
            bail!("no pid in {}", path.display());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

pub fn pidfd_open(pid: i32) -> Result<OwnedFd> {
    // SAFETY: pidfd_open returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(anyhow!(
            "pidfd_open {pid}: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: the kernel gave us this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Waits until the process behind `fd` has ended (a zombie has ended).
pub fn wait_pidfd(fd: &OwnedFd, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd on the stack.
        let r = unsafe { libc::poll(&mut p, 1, left.as_millis().min(1000) as i32) };
        if r > 0 {
            return true;
        }
        if Instant::now() >= deadline || check_stop().is_err() {
            return false;
        }
    }
}

/// Median, min, max and mean of samples in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
}

impl Stats {
    pub fn of(samples: &[f64]) -> Option<Stats> {
        if samples.is_empty() {
            return None;
        }
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Stats {
            n,
            median,
            min: v[0],
            max: v[n - 1],
            mean: v.iter().sum::<f64>() / n as f64,
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "n": self.n,
            "median": round3(self.median),
            "min": round3(self.min),
            "max": round3(self.max),
            "mean": round3(self.mean),
        })
    }
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The order in which the runtimes go in iteration `i`: rotated each time,
/// so that none is always first (after a pause) or last.
pub fn rotation(n: usize, i: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |k| (k + i) % n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_odd_and_even_counts() {
        let s = Stats::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!(
            (s.n, s.median, s.min, s.max, s.mean),
            (3, 2.0, 1.0, 3.0, 2.0)
        );
        let s = Stats::of(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert!(Stats::of(&[]).is_none());
    }

    #[test]
    fn container_ids_are_taken_out_of_messages() {
        assert_eq!(
            without_ids("runtime: warning: bench-nsbox-468: wait for the exit"),
            "runtime: warning: ID: wait for the exit"
        );
    }

    #[test]
    fn rotation_visits_each_runtime_once_and_moves_the_first() {
        assert_eq!(rotation(3, 0).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(rotation(3, 1).collect::<Vec<_>>(), vec![1, 2, 0]);
        assert_eq!(rotation(3, 5).collect::<Vec<_>>(), vec![2, 0, 1]);
    }
}
