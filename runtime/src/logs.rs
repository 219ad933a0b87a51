//! `logs` and `attach`: what a detached container said, and its terminal.

use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use nsbox_host::output_log::{self, Record};
use nsbox_host::state::Status;
use protocol::RuntimeToShim;

use crate::Global;

/// How often `logs -f` looks for more.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(100);

pub struct LogsArgs {
    pub follow: bool,
    pub tail: Option<usize>,
    pub timestamps: bool,
}

pub fn logs(g: &Global, id: &str, a: &LogsArgs) -> Result<i32> {
    let (dir, _) = crate::commands::load(g, id)?;
    if !output_log::current(&dir.path).exists() && !output_log::rotated(&dir.path).exists() {
        bail!(
            "no log: the container's output went to the stdout of the `runtime` that made it \
             (a detached container's output is logged when that stdout is a terminal or \
             /dev/null, or with --log-output)"
        );
    }
    // Where following starts, taken before the first read: a line written
    // in between is printed twice rather than lost.
    let mut follower = a.follow.then(|| output_log::Follower::at_end(&dir.path));
    let all = output_log::read_all(&dir.path);
    let skip = a.tail.map_or(0, |n| all.len().saturating_sub(n));
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    for r in &all[skip..] {
        print_record(&mut out, &mut err, r, a.timestamps);
    }
    let Some(follower) = &mut follower else {
        return Ok(0);
    };
    loop {
        // The shim logs the container's last words before it records the
        // stop: once stopped, one more read has everything.
        let stopped = dir
            .load()
            .map_or(true, |s| s.current_status() == Status::Stopped);
        for r in follower.poll() {
            print_record(&mut out, &mut err, &r, a.timestamps);
        }
        let _ = out.flush();
        if stopped {
            return Ok(0);
        }
        std::thread::sleep(FOLLOW_INTERVAL);
    }
}

fn print_record(out: &mut impl Write, err: &mut impl Write, r: &Record, timestamps: bool) {
    let w: &mut dyn Write = if r.stream == "stderr" { err } else { out };
    let _ = if timestamps {
        writeln!(w, "{} {}", r.time, r.text)
    } else {
        writeln!(w, "{}", r.text)
    };
}

pub fn attach(g: &Global, id: &str, detach_keys: &str) -> Result<i32> {
    let keys = parse_detach_keys(detach_keys)?;
    let (dir, st) = crate::commands::load(g, id)?;
    st.can_attach()?;
    let ch = crate::commands::connect_shim(&dir)?;
    ch.send(&RuntimeToShim::Attach, &[])?;
    let mut fds = ch
        .wait_for_attached()
        .map_err(crate::create::channel_error)?
        .into_iter();
    let (Some(stream), Some(master)) = (fds.next(), fds.next()) else {
        bail!("the shim sent no terminal");
    };
    drop(ch);
    match crate::tty::relay(
        &stream,
        Some(&master),
        crate::tty::Ending::Detachable { detach_keys: keys },
    )? {
        crate::tty::Outcome::Detached => {
            eprintln!(
                "\r\nruntime: detached from {id}; it runs on (runtime attach {id} to come back)\r"
            );
            Ok(0)
        }
        // The container stopped: its exit code, once the shim has recorded it.
        _ => {
            for _ in 0..50 {
                if let Ok(s) = dir.load() {
                    if let (Status::Stopped, Some(code)) = (s.current_status(), s.exit_code) {
                        return Ok(code);
                    }
                }
                std::thread::sleep(FOLLOW_INTERVAL);
            }
            Ok(0)
        }
    }
}

/// Docker's notation: "ctrl-p,ctrl-q", "ctrl-a,d"; ctrl-@ to ctrl-_ and
/// single characters.
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>> {
    let mut keys = Vec::new();
    for k in s.split(',') {
        let k = k.trim();
        let lower = k.to_ascii_lowercase();
        if let Some(c) = lower.strip_prefix("ctrl-") {
            let c = c.as_bytes();
            match c {
                [b @ b'a'..=b'z'] => keys.push(b - b'a' + 1),
                [b'@'] => keys.push(0),
                [b @ (b'[' | b'\\' | b']' | b'^' | b'_')] => keys.push(b - b'@'),
                _ => bail!("--detach-keys {s:?}: unknown key {k:?}"),
            }
        } else if k.len() == 1 {
            keys.push(k.as_bytes()[0]);
        } else {
            return Err(anyhow!("--detach-keys {s:?}: unknown key {k:?}"));
        }
    }
    if keys.is_empty() {
        bail!("--detach-keys is empty");
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    #[test]
    fn detach_keys_as_docker_writes_them() {
        assert_eq!(
            super::parse_detach_keys("ctrl-p,ctrl-q").unwrap(),
            crate::tty::DETACH_KEYS
        );
        assert_eq!(super::parse_detach_keys("ctrl-a,d").unwrap(), [1, b'd']);
        assert!(super::parse_detach_keys("ctrl-ü").is_err());
    }
}
