//! The shim's command line, as `runtime create` writes it.

use std::path::PathBuf;

use nsbox_host::logger::Format;

pub struct Args {
    pub state_dir: PathBuf,
    pub log: Option<PathBuf>,
    pub log_format: Format,
    pub debug: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    #[error("{0} needs a value")]
    NoValue(&'static str),
    #[error("--log-format: {0}")]
    LogFormat(String),
    #[error("unknown argument {0:?}")]
    Unknown(String),
    #[error("--state-dir is required (the shim is started by `runtime create`)")]
    NoStateDir,
}

pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, ArgsError> {
    let mut out = Args {
        state_dir: PathBuf::new(),
        log: None,
        log_format: Format::Text,
        debug: false,
    };
    while let Some(a) = args.next() {
        let mut value = |name| args.next().ok_or(ArgsError::NoValue(name));
        match a.as_str() {
            "--state-dir" => out.state_dir = value("--state-dir")?.into(),
            "--log" => out.log = Some(value("--log")?.into()),
            "--log-format" => {
                out.log_format = value("--log-format")?
                    .parse()
                    .map_err(ArgsError::LogFormat)?
            }
            "--debug" => out.debug = true,
            _ => return Err(ArgsError::Unknown(a)),
        }
    }
    if out.state_dir.as_os_str().is_empty() {
        return Err(ArgsError::NoStateDir);
    }
    Ok(out)
}
