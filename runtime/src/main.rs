//! runtime: nsbox's command line, the OCI runtime commands as runc has them.
//!
//! It holds no state of its own: the state directory and the shims are the
//! truth. Every error is one line, `runtime: VERB ID: STEP: CAUSE`, on
//! stderr and (with `--log`) in the log, and a non-zero exit.

// MS_* and friends are c_ulong: u64 here, but u32 on 32-bit targets.
#![allow(clippy::unnecessary_cast)]

mod commands;
mod create;
mod resources;
mod seccomp;
mod spec;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use nsbox_host::state::{validate_id, DEFAULT_ROOT};

#[derive(Parser)]
#[command(
    name = "runtime",
    version,
    about = "nsbox: a Linux container runtime (OCI runtime commands)"
)]
struct Cli {
    /// Directory holding the containers' state.
    #[arg(long, global = true, default_value = DEFAULT_ROOT)]
    root: PathBuf,
    /// Append log lines to FILE.
    #[arg(long, global = true, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Format of the log file: text or json.
    #[arg(long = "log-format", global = true, default_value = "text")]
    log_format: String,
    /// Log debug lines too.
    #[arg(long, global = true)]
    debug: bool,
    /// Manage cgroups through systemd: not supported (nsbox writes
    /// cgroupfs itself); `create`, `run` and `update` refuse it.
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a container from a bundle; it waits for `start`.
    Create {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// Write the container's init pid (on the host) to FILE.
        #[arg(long, value_name = "FILE")]
        pid_file: Option<PathBuf>,
        id: String,
    },
    /// Start the workload of a created container.
    Start { id: String },
    /// Create, start and wait; the exit code is the workload's.
    Run {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        #[arg(long, value_name = "FILE")]
        pid_file: Option<PathBuf>,
        /// Return once the workload has started.
        #[arg(short, long)]
        detach: bool,
        id: String,
    },
    /// Print the OCI state of a container as JSON.
    State { id: String },
    /// List containers.
    #[command(alias = "ls")]
    List {
        /// table or json.
        #[arg(short, long, default_value = "table")]
        format: String,
        /// IDs only.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show the processes of a container.
    Ps {
        /// table or json.
        #[arg(short, long, default_value = "table")]
        format: String,
        id: String,
        /// Options for ps(1) (default -ef).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Send a signal (name or number, default TERM) to the container.
    Kill {
        /// To every process of the container, not only its init.
        #[arg(short, long)]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Remove a container that is created or stopped (any, with --force).
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Freeze every process of the container (cgroup freezer).
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Apply new linux.resources to a running container.
    Update {
        /// JSON of linux.resources ("-": standard input).
        #[arg(short, long, value_name = "FILE")]
        resources: PathBuf,
        id: String,
    },
    /// Write a config.json for a busybox-like rootfs.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// root.path: the rootfs, absolute or relative to the bundle.
        #[arg(long, default_value = "rootfs")]
        rootfs: String,
        /// A read-only image directory: the container gets its own
        /// copy-on-write overlay over it (the `nsbox.image` annotation).
        #[arg(long, value_name = "DIR")]
        image: Option<PathBuf>,
        #[arg(long, default_value = "nsbox")]
        hostname: String,
        /// The command to run (default: sh).
        #[arg(last = true)]
        args: Vec<String>,
    },
}

pub struct Global {
    pub root: PathBuf,
    pub log: Option<PathBuf>,
    pub log_format: String,
    pub debug: bool,
}

/// An error with the exit code it should end the runtime with.
#[derive(Debug)]
pub struct Coded(pub i32, pub String);

impl std::fmt::Display for Coded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for Coded {}

fn main() {
    let cli = Cli::parse();
    let format = match cli.log_format.parse() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = nsbox_host::logger::init("runtime", cli.log.as_deref(), format, cli.debug) {
        eprintln!(
            "runtime: open log file {}: {e}",
            cli.log
                .as_deref()
                .unwrap_or(std::path::Path::new(""))
                .display()
        );
        std::process::exit(1);
    }
    let g = Global {
        root: cli.root,
        log: cli.log,
        log_format: cli.log_format,
        debug: cli.debug,
    };
    let (verb, id) = match &cli.cmd {
        Cmd::Create { id, .. } => ("create", Some(id.clone())),
        Cmd::Start { id } => ("start", Some(id.clone())),
        Cmd::Run { id, .. } => ("run", Some(id.clone())),
        Cmd::State { id } => ("state", Some(id.clone())),
        Cmd::List { .. } => ("list", None),
        Cmd::Ps { id, .. } => ("ps", Some(id.clone())),
        Cmd::Kill { id, .. } => ("kill", Some(id.clone())),
        Cmd::Delete { id, .. } => ("delete", Some(id.clone())),
        Cmd::Pause { id } => ("pause", Some(id.clone())),
        Cmd::Resume { id } => ("resume", Some(id.clone())),
        Cmd::Update { id, .. } => ("update", Some(id.clone())),
        Cmd::Spec { .. } => ("spec", None),
    };
    let id = id.as_deref();
    let result = match id.map(validate_id) {
        Some(Err(e)) => Err(anyhow::anyhow!(e)),
        // Podman passes it with its systemd cgroup manager; the other verbs
        // take it and carry on, so that cleaning up still works.
        _ if cli.systemd_cgroup && matches!(verb, "create" | "run" | "update") => {
            Err(anyhow::anyhow!(
                "--systemd-cgroup: nsbox manages cgroups through cgroupfs only, not through \
                 systemd (with Podman, use --cgroup-manager cgroupfs)"
            ))
        }
        _ => dispatch(&g, cli.cmd),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let who = match id {
                Some(i) if validate_id(i).is_ok() => format!("{verb} {i}"),
                Some(i) => format!("{verb} {i:?}"),
                None => verb.to_string(),
            };
            let cause = without_os_error(&format!("{e:#}"));
            let line = format!("runtime: {who}: {cause}");
            if nsbox_host::logger::has_file() {
                log::error!("{who}: {cause}");
            }
            eprintln!("{line}");
            let code = e
                .chain()
                .find_map(|c| c.downcast_ref::<Coded>())
                .map_or(1, |c| c.0);
            std::process::exit(if code == 0 { 1 } else { code });
        }
    }
}

/// std's io errors end in " (os error N)": noise to a person reading the line.
fn without_os_error(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(" (os error ") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + " (os error ".len()..];
        match tail.find(')') {
            Some(j) if tail[..j].chars().all(|c| c.is_ascii_digit()) => rest = &tail[j + 1..],
            _ => {
                out.push_str(" (os error ");
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

fn dispatch(g: &Global, cmd: Cmd) -> anyhow::Result<i32> {
    match cmd {
        Cmd::Create {
            bundle,
            pid_file,
            id,
        } => create::create(g, &id, &bundle, pid_file.as_deref()).map(|_| 0),
        Cmd::Start { id } => commands::start(g, &id),
        Cmd::Run {
            bundle,
            pid_file,
            detach,
            id,
        } => create::run(g, &id, &bundle, pid_file.as_deref(), detach),
        Cmd::State { id } => commands::state(g, &id),
        Cmd::List { format, quiet } => commands::list(g, &format, quiet),
        Cmd::Ps {
            format,
            id,
            ps_args,
        } => commands::ps(g, &id, &format, &ps_args),
        Cmd::Kill { all, id, signal } => commands::kill(g, &id, signal.as_deref(), all),
        Cmd::Delete { force, id } => commands::delete(g, &id, force),
        Cmd::Pause { id } => commands::pause(g, &id),
        Cmd::Resume { id } => commands::resume(g, &id),
        Cmd::Update { resources, id } => commands::update(g, &id, &resources),
        Cmd::Spec {
            bundle,
            rootfs,
            image,
            hostname,
            args,
        } => {
            let image = match image {
                Some(i) => Some(
                    std::fs::canonicalize(&i)
                        .map_err(|e| anyhow::anyhow!("image {}: {e}", i.display()))?
                        .to_string_lossy()
                        .into_owned(),
                ),
                None => None,
            };
            commands::spec(
                &bundle,
                spec::SpecOptions {
                    rootfs,
                    image,
                    hostname,
                    args,
                },
            )
        }
    }
}
