//! `--log FILE --log-format text|json` and `--debug`, for runtime and shim.
//!
//! Orchestrators read the last `"level":"error"` line of the json log and
//! show its `msg` to their user, so every error the runtime prints also goes
//! there, in one line.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

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

struct Logger {
    file: Option<Mutex<std::fs::File>>,
    format: Format,
    prefix: &'static str,
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

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let msg = record.args().to_string();
        match &self.file {
            Some(f) => {
                let line = match self.format {
                    Format::Json => {
                        let mut v = serde_json::json!({
                            "level": level_name(record.level()),
                            "msg": msg,
                            "time": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
                        });
                        v["component"] = self.prefix.into();
                        format!("{v}\n")
                    }
                    Format::Text => format!(
                        "{} {} {}[{}]: {}\n",
                        humantime::format_rfc3339_millis(std::time::SystemTime::now()),
                        level_name(record.level()),
                        self.prefix,
                        std::process::id(),
                        msg
                    ),
                };
                if let Ok(mut f) = f.lock() {
                    // One write per line: lines from runtime and shim interleave whole.
                    let _ = f.write_all(line.as_bytes());
                }
            }
            None => {
                // Errors are printed by the caller in their final form.
                if record.level() != Level::Error {
                    eprintln!("{}: {}: {}", self.prefix, level_name(record.level()), msg);
                }
            }
        }
    }

    fn flush(&self) {}
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
        Some(p) => Some(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        )),
        None => None,
    };
    HAS_FILE.store(file.is_some(), Ordering::Relaxed);
    let logger = Logger {
        file,
        format,
        prefix,
    };
    let _ = log::set_boxed_logger(Box::new(logger));
    log::set_max_level(if debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Warn
    });
    Ok(())
}

/// True when log lines go to a file rather than stderr.
pub fn has_file() -> bool {
    HAS_FILE.load(Ordering::Relaxed)
}
