//! `--log FILE --log-format text|json` and `--debug`, for runtime and shim,
//! on env_logger: RUST_LOG, when set, chooses the levels (`--debug` or
//! warnings only otherwise).
//!
//! Orchestrators read the last `"level":"error"` line of the json log and
//! show its `msg` to their user, so every error the runtime prints also goes
//! there, in one line.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use log::{Level, LevelFilter};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            other => Err(format!("unknown log format {other:?} (text or json)")),
        }
    }
}

static HAS_FILE: AtomicBool = AtomicBool::new(false);

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warning",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

/// One line of the log file, as runc writes them in json (plus the
/// component, runtime or shim).
fn file_line(format: Format, prefix: &str, level: Level, msg: &str, now: SystemTime) -> String {
    match format {
        Format::Json => {
            let v = serde_json::json!({
                "level": level_name(level),
                "msg": msg,
                "time": humantime::format_rfc3339_seconds(now).to_string(),
                "component": prefix,
            });
            format!("{v}\n")
        }
        Format::Text => format!(
            "{} {} {prefix}[{}]: {msg}\n",
            humantime::format_rfc3339_millis(now),
            level_name(level),
            std::process::id(),
        ),
    }
}

/// A line for stderr, or none: without a file, errors are printed by the
/// caller in their final form.
fn stderr_line(prefix: &str, level: Level, msg: &str) -> Option<String> {
    (level != Level::Error).then(|| format!("{prefix}: {}: {msg}\n", level_name(level)))
}

/// Install the logger. Without a file, warnings (and with `debug`, debug
/// lines) go to stderr.
pub fn init(
    prefix: &'static str,
    file: Option<&std::path::Path>,
    format: Format,
    debug: bool,
) -> std::io::Result<()> {
    let file = match file {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        ),
        None => None,
    };
    let to_file = file.is_some();
    HAS_FILE.store(to_file, Ordering::Relaxed);
    let mut builder = env_logger::Builder::new();
    builder.filter_level(if debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Warn
    });
    builder.parse_env(env_logger::Env::default());
    builder.format(move |buf, record| {
        let msg = record.args().to_string();
        let line = if to_file {
            Some(file_line(
                format,
                prefix,
                record.level(),
                &msg,
                SystemTime::now(),
            ))
        } else {
            stderr_line(prefix, record.level(), &msg)
        };
        // env_logger writes a record with one write_all: lines from the
        // runtime and the shim interleave whole in an O_APPEND file.
        line.map_or(Ok(()), |l| buf.write_all(l.as_bytes()))
    });
    builder.target(match file {
        Some(f) => env_logger::Target::Pipe(Box::new(f)),
        None => env_logger::Target::Stderr,
    });
    // A second init (the shim's, after its first) keeps the first logger.
    let _ = builder.try_init();
    Ok(())
}

/// True when log lines go to a file rather than stderr.
pub fn has_file() -> bool {
    HAS_FILE.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)
    }

    #[test]
    fn a_json_line_is_runcs() {
        let line = file_line(
            Format::Json,
            "runtime",
            Level::Error,
            "create c: \"x\"",
            at(),
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(line.ends_with("}\n") && line.lines().count() == 1, "{line}");
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "create c: \"x\"");
        assert_eq!(v["time"], "2023-11-14T22:13:20Z");
        assert_eq!(v["component"], "runtime");
    }

    #[test]
    fn a_text_line_has_time_level_component_and_pid() {
        let line = file_line(Format::Text, "shim", Level::Warn, "slow", at());
        let pid = std::process::id();
        assert_eq!(
            line,
            format!("2023-11-14T22:13:20.123Z warning shim[{pid}]: slow\n")
        );
    }

    #[test]
    fn errors_are_left_to_the_caller_on_stderr() {
        assert_eq!(stderr_line("runtime", Level::Error, "x"), None);
        assert_eq!(
            stderr_line("runtime", Level::Debug, "x").as_deref(),
            Some("runtime: debug: x\n")
        );
    }
}
