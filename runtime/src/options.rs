//! The options every verb takes (`--root`, `--shim-mode`, `--log`, ...),
//! and the container an ID names under the state root.

use std::path::PathBuf;

use anyhow::{anyhow, Result};
use nsbox_host::state::{ContainerDir, State, StateError};

pub struct GlobalOptions {
    pub root: PathBuf,
    /// The caller's-shim mode: the caller reaps tiny-init and exec'd processes.
    pub caller_reaps: bool,
    pub log: Option<PathBuf>,
    pub log_format: String,
    pub debug: bool,
    /// `--systemd-cgroup`: a new container's cgroup is a systemd scope.
    pub systemd_cgroup: bool,
}

impl GlobalOptions {
    /// The container `id`: its directory and what its state.json says.
    pub fn container(&self, id: &str) -> Result<(ContainerDir, State)> {
        let dir = ContainerDir::new(&self.root, id);
        match dir.load() {
            Ok(s) => Ok((dir, s)),
            Err(StateError::NotFound) => Err(anyhow!("container does not exist")),
            Err(e) => Err(e.into()),
        }
    }
}
