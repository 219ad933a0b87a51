//! `logs`: what a detached container said, kept in its state directory.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Result};
use nsbox_host::output_log::{self, Record};
use nsbox_host::state::Status;

use crate::options::GlobalOptions;
use crate::output;

/// How often `logs -f` looks for more.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(100);

pub struct LogsArgs {
    pub follow: bool,
    pub tail: Option<usize>,
    pub timestamps: bool,
}

pub fn logs(g: &GlobalOptions, id: &str, a: &LogsArgs) -> Result<i32> {
    let (dir, _) = g.container(id)?;
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
        output::checked(print_record(&mut out, &mut err, r, a.timestamps))?;
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
            output::checked(print_record(&mut out, &mut err, &r, a.timestamps))?;
        }
        output::checked(out.flush())?;
        if stopped {
            return Ok(0);
        }
        std::thread::sleep(FOLLOW_INTERVAL);
    }
}

fn print_record(
    out: &mut impl Write,
    err: &mut impl Write,
    r: &Record,
    timestamps: bool,
) -> std::io::Result<()> {
    let w: &mut dyn Write = if r.stream == "stderr" { err } else { out };
    if timestamps {
        writeln!(w, "{} {}", r.time, r.text)
    } else {
        writeln!(w, "{}", r.text)
    }
}
