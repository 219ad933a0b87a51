//! runtime: nsbox's command line, the OCI runtime commands as runc has them.
//!
//! It holds no state of its own: the state directory and the shims are the
//! truth. Every error is one line, `runtime: VERB ID: STEP: CAUSE`, on
//! stderr and (with `--log`) in the log, and a non-zero exit.

// MS_* and friends are c_ulong: u64 here, but u32 on 32-bit targets.
#![allow(clippy::unnecessary_cast)]
// Unsafe only where nix lacks the call or for fork, each allowed by name.
#![deny(unsafe_code)]

// Verbs, each importing only the shared modules below them.
mod attach;
mod commands;
mod create;
mod exec;
mod features;
mod logs;
mod run;
// Shared by several verbs.
mod handover;
mod hooks;
mod options;
mod output;
mod reported;
mod shim_client;
mod signals;
mod systemd;
mod tty;

use runtime::{resources, seccomp, spec};
use std::path::PathBuf;

use options::GlobalOptions;

use anyhow::Context;
use clap::{Parser, Subcommand};
use nsbox_host::state::validate_id;

/// The global options go before the command, as runc's and crun's do and
/// as every orchestrator sends them (`runtime --root R create ...`). They
/// are not clap's `global` arguments: clap copies each of those into all
/// 16 subcommands on every call, which cost a run 33 page faults and about
/// 0.4 ms (docs/performance.md, run H).
#[derive(Parser)]
#[command(
    name = "runtime",
    version,
    about = "nsbox: a Linux container runtime (OCI runtime commands)"
)]
struct Cli {
    /// Directory holding the containers' state [default: /run/nsbox; for
    /// an unprivileged user $XDG_RUNTIME_DIR/nsbox or /tmp/nsbox-UID].
    #[arg(long)]
    root: Option<PathBuf>,
    /// Append log lines to FILE.
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Format of the log file: text or json.
    #[arg(long = "log-format", default_value = "text")]
    log_format: String,
    /// Log debug lines too.
    #[arg(long)]
    debug: bool,
    /// Who reaps the container's processes: `own` (nsbox's shim is
    /// tiny-init's parent, pstree shows shim───tiny-init───workload),
    /// `caller` (tiny-init and `exec -d` processes become the caller's
    /// children, for conmon and containerd's shim, which reap them), or
    /// `auto`: `caller` when the runtime runs with a parent-death signal, as
    /// orchestrators run it and shells never do.
    #[arg(long = "shim-mode", default_value = "auto", value_parser = ["auto", "own", "caller"])]
    shim_mode: String,
    /// Have systemd make the container's cgroup, as a transient scope
    /// unit (cgroupsPath is then slice:prefix:name; cgroup v2 only).
    #[arg(long = "systemd-cgroup")]
    systemd_cgroup: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a container from a bundle; it waits for `start`.
    Create {
        #[command(flatten)]
        opts: CreateArgs,
        id: String,
    },
    /// Start the workload of a created container.
    Start { id: String },
    /// Create, start and wait; the exit code is the workload's.
    Run {
        #[command(flatten)]
        opts: CreateArgs,
        /// Return once the workload has started.
        #[arg(short, long)]
        detach: bool,
        /// Give the workload a terminal (process.terminal); in the
        /// foreground, it is this one, in raw mode until the workload ends.
        #[arg(short, long)]
        tty: bool,
        /// Keep stdin open for the workload (it always gets the caller's
        /// stdin, EOF included, as with runc; accepted for `docker run -i`
        /// habits).
        #[arg(short, long)]
        interactive: bool,
        id: String,
    },
    /// Run a process in a running container.
    Exec(exec::ExecArgs),
    /// Print a detached container's output (kept in its state directory).
    Logs {
        /// Go on printing as it comes, until the container stops.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(short = 'n', long, value_name = "N")]
        tail: Option<usize>,
        /// Each line with the time it was written (RFC 3339).
        #[arg(short, long)]
        timestamps: bool,
        id: String,
    },
    /// Connect this terminal to a detached container's terminal; the
    /// detach keys leave it running.
    Attach {
        /// Keys that detach, Docker's notation.
        #[arg(long, default_value = "ctrl-p,ctrl-q", value_name = "KEYS")]
        detach_keys: String,
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
    /// Print what this runtime supports (the OCI features document).
    Features,
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
        /// Run in a new user namespace: CONTAINER:HOST:SIZE (uids and gids),
        /// e.g. 0:100000:65536 makes the container's root host uid 100000.
        #[arg(long, value_name = "MAP", conflicts_with = "rootless")]
        userns: Option<String>,
        /// For an unprivileged user: the container's root is you, and the
        /// ids above it come from your ranges in /etc/subuid and /etc/subgid.
        #[arg(long)]
        rootless: bool,
        /// Network: none (a namespace with lo only), host (the host's), or
        /// bridge (a veth on a bridge, with an address and published ports).
        #[arg(long, default_value = "none", value_name = "MODE")]
        net: String,
        /// Publish a container port on the host (bridge only; repeatable):
        /// [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp].
        #[arg(short, long, value_name = "PORTS")]
        publish: Vec<String>,
        /// The bridge to join (bridge only; default nsbox0).
        #[arg(long, value_name = "NAME")]
        bridge: Option<String>,
        /// The bridge's subnet (bridge only; default 10.89.0.0/16).
        #[arg(long, value_name = "CIDR")]
        subnet: Option<String>,
        /// process.terminal: `run` gives the workload this terminal (and
        /// `run -d` a terminal the shim keeps, for `attach`).
        #[arg(short, long)]
        tty: bool,
        /// The command to run (default: sh).
        #[arg(last = true)]
        args: Vec<String>,
    },
}

#[derive(clap::Args)]
struct CreateArgs {
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Write the container's init pid (on the host) to FILE.
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// With process.terminal: send the terminal's master to this unix socket.
    #[arg(long, value_name = "PATH")]
    console_socket: Option<PathBuf>,
    /// Pass fds 3 to 3+N-1 on to the workload.
    #[arg(long, default_value_t = 0, value_name = "N")]
    preserve_fds: u32,
    /// Detached: keep the container's stdout and stderr in its log (for
    /// `runtime logs`), even when ours is a file or a pipe. Without it, the
    /// log is kept when our stdout is a terminal or /dev/null.
    #[arg(long)]
    log_output: bool,
    /// Move the rootfs onto / and chroot into it instead of pivot_root (for
    /// a root on a ramdisk, which pivot_root refuses); the old root then
    /// stays reachable to a process with CAP_SYS_CHROOT.
    #[arg(long)]
    no_pivot: bool,
    /// Keep the caller's session keyring instead of a new one of the
    /// container's own.
    #[arg(long)]
    no_new_keyring: bool,
}

impl CreateArgs {
    fn opts(self) -> create::CreateOpts {
        create::CreateOpts {
            bundle: self.bundle,
            pid_file: self.pid_file,
            console_socket: self.console_socket,
            preserve_fds: self.preserve_fds,
            tty: false,
            foreground: false,
            log_output: self.log_output,
            no_pivot: self.no_pivot,
            no_new_keyring: self.no_new_keyring,
            start: false,
        }
    }
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match misplaced_global(&e) {
            Some(name) => {
                eprintln!(
                    "runtime: {name} goes before the command: runtime {name} ... COMMAND (as runc and crun take it)"
                );
                std::process::exit(2);
            }
            None => e.exit(),
        },
    };
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
    let g = GlobalOptions {
        root: cli.root.unwrap_or_else(nsbox_host::state::default_root),
        caller_reaps: match cli.shim_mode.as_str() {
            "own" => false,
            "caller" => true,
            _ => has_parent_death_signal(),
        },
        log: cli.log,
        log_format: cli.log_format,
        debug: cli.debug,
        // The other verbs find the scope in state.json.
        systemd_cgroup: cli.systemd_cgroup,
    };
    let (verb, id) = match &cli.cmd {
        Cmd::Create { id, .. } => ("create", Some(id.clone())),
        Cmd::Start { id } => ("start", Some(id.clone())),
        Cmd::Run { id, .. } => ("run", Some(id.clone())),
        Cmd::State { id } => ("state", Some(id.clone())),
        Cmd::Logs { id, .. } => ("logs", Some(id.clone())),
        Cmd::Attach { id, .. } => ("attach", Some(id.clone())),
        Cmd::Exec(a) => ("exec", Some(a.id.clone())),
        Cmd::List { .. } => ("list", None),
        Cmd::Ps { id, .. } => ("ps", Some(id.clone())),
        Cmd::Kill { id, .. } => ("kill", Some(id.clone())),
        Cmd::Delete { id, .. } => ("delete", Some(id.clone())),
        Cmd::Pause { id } => ("pause", Some(id.clone())),
        Cmd::Resume { id } => ("resume", Some(id.clone())),
        Cmd::Update { id, .. } => ("update", Some(id.clone())),
        Cmd::Spec { .. } => ("spec", None),
        Cmd::Features => ("features", None),
    };
    // Docker's convenience: a unique prefix names a container. `create` and
    // `run` name a new one, literally; `kill` and `delete` take theirs
    // literally too (id_of says why).
    let mut cmd = cli.cmd;
    let resolved = match id_of(&mut cmd) {
        Some(slot) if validate_id(slot).is_ok() => {
            match nsbox_host::state::resolve_prefix(&g.root, slot) {
                Ok(full) => {
                    *slot = full;
                    Ok(Some(slot.clone()))
                }
                Err(e) => Err(e),
            }
        }
        _ => Ok(id.clone()),
    };
    let id = match &resolved {
        Ok(Some(full)) => Some(full.clone()),
        _ => id,
    };
    let id = id.as_deref();
    let result = match id.map(validate_id) {
        _ if resolved.is_err() => Err(anyhow::anyhow!(resolved.clone().unwrap_err())),
        Some(Err(e)) => Err(anyhow::anyhow!(e)),
        _ => dispatch(&g, cmd),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let who = match id {
                Some(i) if validate_id(i).is_ok() => format!("{verb} {i}"),
                Some(i) => format!("{verb} {i:?}"),
                None => verb.to_string(),
            };
            // Each cause once, though some of the host's errors say their
            // source in their own text too.
            let cause = without_os_error(&protocol::error_chain(e.as_ref()));
            let line = format!("runtime: {who}: {cause}");
            if nsbox_host::logger::has_file() {
                log::error!("{who}: {cause}");
            }
            eprintln!("{line}");
            std::process::exit(reported::exit_code_of(&e));
        }
    }
}

/// The ID of a verb that acts on an existing container and takes a
/// prefix of it. Not `kill` nor `delete`: runtime-spec says both MUST fail,
/// changing nothing, for a container that does not exist, and containerd
/// deletes a task twice (`delete`, then `delete --force` of the deleted
/// one), which a prefix would turn on another container whose ID begins
/// with the same letters.
fn id_of(cmd: &mut Cmd) -> Option<&mut String> {
    match cmd {
        Cmd::Start { id }
        | Cmd::State { id }
        | Cmd::Ps { id, .. }
        | Cmd::Pause { id }
        | Cmd::Resume { id }
        | Cmd::Update { id, .. }
        | Cmd::Logs { id, .. }
        | Cmd::Attach { id, .. } => Some(id),
        Cmd::Exec(a) => Some(&mut a.id),
        Cmd::Create { .. }
        | Cmd::Run { .. }
        | Cmd::Kill { .. }
        | Cmd::Delete { .. }
        | Cmd::List { .. }
        | Cmd::Spec { .. }
        | Cmd::Features => None,
    }
}

/// The global option (`--root`, `--log`, ...) that clap found after the
/// command, where it is not one of the command's own.
fn misplaced_global(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    use clap::CommandFactory;
    if e.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let name = arg.split('=').next()?;
    Cli::command()
        .get_arguments()
        .filter_map(|a| a.get_long())
        .map(|long| format!("--{long}"))
        .find(|long| long == name)
}

/// conmon and containerd's shim run the runtime with PR_SET_PDEATHSIG set;
/// a person's shell never does.
fn has_parent_death_signal() -> bool {
    matches!(nix::sys::prctl::get_pdeathsig(), Ok(Some(_)))
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

fn dispatch(g: &GlobalOptions, cmd: Cmd) -> anyhow::Result<i32> {
    match cmd {
        Cmd::Create { opts, id } => create::create(g, &id, &opts.opts()).map(|_| 0),
        Cmd::Start { id } => commands::start(g, &id),
        Cmd::Run {
            opts,
            detach,
            tty,
            interactive: _,
            id,
        } => {
            let mut o = opts.opts();
            o.tty = tty;
            o.foreground = !detach;
            run::run(g, &id, &o, detach)
        }
        Cmd::State { id } => commands::state(g, &id),
        Cmd::Logs {
            follow,
            tail,
            timestamps,
            id,
        } => logs::logs(
            g,
            &id,
            &logs::LogsArgs {
                follow,
                tail,
                timestamps,
            },
        ),
        Cmd::Attach { detach_keys, id } => attach::attach(g, &id, &detach_keys),
        Cmd::Exec(a) => exec::exec(g, &a),
        Cmd::List { format, quiet } => commands::list(g, &format, quiet),
        Cmd::Ps {
            format,
            id,
            ps_args,
        } => commands::ps(g, &id, &format, &ps_args),
        Cmd::Kill { all, id, signal } => commands::kill(g, &id, signal.as_deref(), all),
        Cmd::Delete { force, id } => commands::delete(g, &id, force),
        Cmd::Features => {
            output::println(serde_json::to_string_pretty(&features::features())?)?;
            Ok(0)
        }
        Cmd::Pause { id } => commands::pause(g, &id),
        Cmd::Resume { id } => commands::resume(g, &id),
        Cmd::Update { resources, id } => commands::update(g, &id, &resources),
        Cmd::Spec {
            bundle,
            rootfs,
            image,
            hostname,
            userns,
            rootless,
            args,
            net,
            publish,
            bridge,
            subnet,
            tty,
        } => {
            let userns = userns.as_deref().map(spec::parse_userns).transpose()?;
            let rootless = rootless.then(spec::rootless_maps);
            let net: nsbox_host::network::Mode = net.parse()?;
            let image = match image {
                Some(i) => Some(
                    std::fs::canonicalize(&i)
                        .with_context(|| format!("image {}", i.display()))?
                        .to_string_lossy()
                        .into_owned(),
                ),
                None => None,
            };
            commands::spec(
                &bundle,
                spec::SpecOptions {
                    userns,
                    rootless,
                    rootfs,
                    image,
                    hostname,
                    args,
                    net,
                    publish,
                    bridge,
                    subnet,
                    tty,
                },
            )
        }
    }
}
