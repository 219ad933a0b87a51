//! `exec`: run another process in a running container. The shim passes the
//! request to tiny-init, which forks it beside the workload, with the
//! process settings given and the caller's stdio; a foreground exec waits
//! for it and ends with its exit code.

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{SigSet, SigmaskHow};
use protocol::RuntimeToShim;

use crate::Global;

#[derive(clap::Args)]
pub struct ExecArgs {
    /// The process to run, as an OCI process JSON (what containerd and
    /// conmon pass); without it, the container's own process with CMD.
    #[arg(short, long, value_name = "FILE")]
    pub process: Option<PathBuf>,
    /// Return once the process has started.
    #[arg(short, long)]
    pub detach: bool,
    /// Write the process's host pid to FILE.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Working directory inside the container.
    #[arg(long)]
    pub cwd: Option<String>,
    /// Add or replace an environment variable (KEY=VALUE).
    #[arg(short, long)]
    pub env: Vec<String>,
    /// UID[:GID] to run as.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Allocate a terminal (not supported yet).
    #[arg(short, long)]
    pub tty: bool,
    pub id: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

fn process(g: &Global, a: &ExecArgs) -> Result<protocol::Process> {
    if let Some(file) = &a.process {
        let text = std::fs::read(file).map_err(|e| anyhow!("read {}: {e}", file.display()))?;
        let p: oci_spec::runtime::Process =
            serde_json::from_slice(&text).map_err(|e| anyhow!("parse {}: {e}", file.display()))?;
        if !a.args.is_empty() {
            bail!("give the command in --process or on the command line, not both");
        }
        return crate::spec::convert_process(&p);
    }
    if a.args.is_empty() {
        bail!("no command given (runtime exec ID CMD [ARGS...], or --process FILE)");
    }
    // As runc does: the container's own process, with this command.
    let (_, st) = crate::commands::load(g, &a.id)?;
    let spec = crate::spec::load(std::path::Path::new(&st.bundle))?;
    let base = spec
        .process()
        .as_ref()
        .ok_or_else(|| anyhow!("config.json has no process"))?;
    let mut p = crate::spec::convert_process(base)?;
    p.args = a.args.clone();
    for kv in &a.env {
        let key = kv.split('=').next().unwrap_or_default();
        if key.is_empty() || !kv.contains('=') {
            bail!("--env {kv:?}: expected KEY=VALUE");
        }
        p.env.retain(|e| e.split('=').next() != Some(key));
        p.env.push(kv.clone());
    }
    if let Some(cwd) = &a.cwd {
        if !cwd.starts_with('/') {
            bail!("--cwd {cwd:?} must be an absolute path");
        }
        p.cwd = cwd.clone();
    }
    if let Some(user) = &a.user {
        let (u, g) = user.split_once(':').unwrap_or((user, ""));
        p.uid = u
            .parse()
            .map_err(|_| anyhow!("--user {user:?}: expected UID[:GID]"))?;
        if !g.is_empty() {
            p.gid = g
                .parse()
                .map_err(|_| anyhow!("--user {user:?}: expected UID[:GID]"))?;
        }
        p.additional_gids.clear();
    }
    Ok(p)
}

pub fn exec(g: &Global, a: &ExecArgs) -> Result<i32> {
    if a.tty {
        bail!("--tty: terminals are not supported yet");
    }
    let process = process(g, a)?;
    let mut set = SigSet::empty();
    if !a.detach {
        for s in crate::create::FORWARDED {
            set.add(s);
        }
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    }
    let (dir, st) = crate::commands::load(g, &a.id)?;
    let status = st.status();
    if status != nsbox_host::state::Status::Running {
        bail!("cannot exec in a {status} container");
    }
    let mut ch = crate::commands::connect_shim(&dir)?;
    ch.set_timeout(Some(Duration::from_secs(35)))?;
    let stdio = [
        std::io::stdin().as_raw_fd(),
        std::io::stdout().as_raw_fd(),
        std::io::stderr().as_raw_fd(),
    ];
    ch.send(
        &RuntimeToShim::Exec {
            process: Box::new(process),
            wait: !a.detach,
        },
        &stdio,
    )
    .context("send the exec request to the shim")?;
    let pid = ch
        .wait_for_exec_started()
        .map_err(crate::create::channel_error)?;
    if let Some(f) = &a.pid_file {
        crate::create::write_pid_file(f, pid)?;
    }
    if a.detach {
        return Ok(0);
    }
    crate::create::wait_for_exit_forwarding(&mut ch, &set, pid)
}
