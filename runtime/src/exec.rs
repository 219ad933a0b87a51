//! `exec`: run another process in a running container. The shim passes the
//! request to tiny-init, which forks it beside the workload, with the
//! process settings given and the caller's stdio; a foreground exec waits
//! for it and ends with its exit code.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::SigSet;
use nix::unistd::ForkResult;
use protocol::report::{Report, Step};
use protocol::{NamespaceKind, RuntimeToShim};

use crate::handover::{connect_console, send_console, write_pid_file};
use crate::options::GlobalOptions;
use crate::reported::ReportedFailure;
use crate::signals::{self, Forwarder};
use crate::{shim_client, tty};

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
    /// Run it on a new terminal made in the container: this one, in raw
    /// mode until it ends, or the one whose master goes to --console-socket.
    #[arg(short, long)]
    pub tty: bool,
    /// Keep stdin open (it always gets the caller's stdin, as with runc;
    /// accepted for `docker exec -i` habits).
    #[arg(short, long)]
    pub interactive: bool,
    /// Where to send the terminal's master.
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Pass fds 3 to 3+N-1 on to the process.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub preserve_fds: u32,
    pub id: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

fn process(g: &GlobalOptions, a: &ExecArgs) -> Result<protocol::Process> {
    let (_, st) = g.container(&a.id)?;
    let spec = crate::spec::load(std::path::Path::new(&st.bundle))?;
    // The container's seccomp profile binds what is exec'd in it too, as
    // with runc.
    let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Some(crate::seccomp::compile(s)?),
        None => None,
    };
    if let Some(file) = &a.process {
        let text = std::fs::read(file).with_context(|| format!("read {}", file.display()))?;
        let p: oci_spec::runtime::Process =
            serde_json::from_slice(&text).with_context(|| format!("parse {}", file.display()))?;
        if !a.args.is_empty() {
            bail!("give the command in --process or on the command line, not both");
        }
        let mut p = crate::spec::convert_process(&p)?;
        p.seccomp = seccomp;
        return Ok(p);
    }
    if a.args.is_empty() {
        bail!("no command given (runtime exec ID CMD [ARGS...], or --process FILE)");
    }
    // As runc does: the container's own process, with this command.
    let base = spec
        .process()
        .as_ref()
        .ok_or_else(|| anyhow!("config.json has no process"))?;
    let mut p = crate::spec::convert_process(base)?;
    p.seccomp = seccomp;
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

pub fn exec(g: &GlobalOptions, a: &ExecArgs) -> Result<i32> {
    let mut process = process(g, a)?;
    process.terminal |= a.tty;
    // Own-shim mode, in the foreground, without a console socket: the
    // terminal is the person's, relayed by us.
    let relay = process.terminal && a.console_socket.is_none() && !a.detach && !g.caller_reaps;
    let console = match (&a.console_socket, process.terminal) {
        (Some(p), true) => Some(connect_console(p)?),
        (None, true) if relay => None,
        (None, true) => bail!(
            "a terminal needs --console-socket, where its master is sent (a foreground \
             `exec -t` without it uses this terminal, in the own-shim mode)"
        ),
        (_, false) => None,
    };
    let set = if a.detach {
        SigSet::empty()
    } else {
        signals::block(&[])?
    };
    let (dir, st) = g.container(&a.id)?;
    st.can_exec()?;
    if g.caller_reaps {
        let init = st
            .init
            .ok_or_else(|| anyhow!("the container has no init"))?;
        return exec_as_our_child(
            init.pid,
            st.cgroup.as_ref(),
            &process,
            a,
            console.as_ref(),
            &set,
        );
    }
    if a.preserve_fds > 0 {
        bail!("--preserve-fds is supported in the caller's-shim mode only (--shim-mode caller)");
    }
    let mut ch = shim_client::connect(&dir)?;
    ch.set_timeout(Some(nsbox_host::testhooks::runtime_start_timeout()))?;
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
    let (pid, pty) = ch
        .wait_for_exec_started()
        .map_err(shim_client::channel_error)?;
    if let (Some(sock), Some(master)) = (&console, pty.first()) {
        send_console(sock, master)?;
    }
    let master = if relay { pty.into_iter().next() } else { None };
    if let Some(f) = &a.pid_file {
        if pid > 0 {
            write_pid_file(f, pid)?;
        } else {
            log::warn!(
                "{}: the exec'd process ended before its pid was known; no pid file",
                a.id
            );
        }
    }
    if a.detach {
        return Ok(0);
    }
    if let Some(master) = master {
        return match tty::relay(
            &master,
            Some(&master),
            tty::Ending::Exit {
                channel: &mut ch,
                pid,
            },
        )? {
            tty::Outcome::Exited(code) => Ok(code),
            _ => Ok(255),
        };
    }
    signals::forward_until_exited(&mut ch, &set, pid)
}

/// The caller's-shim mode: the process must be the caller's to reap, so the
/// runtime itself joins the container's namespaces and forks it; once the
/// runtime exits, it is the caller's child (conmon and containerd's shim
/// are subreapers).
pub fn exec_as_our_child(
    init_pid: i32,
    cgroup: Option<&protocol::CgroupPaths>,
    process: &protocol::Process,
    a: &ExecArgs,
    console: Option<&std::os::unix::net::UnixStream>,
    set: &SigSet,
) -> Result<i32> {
    let (detach, pid_file) = (a.detach, a.pid_file.as_deref());
    // Every namespace of the container's that is not ours, opened while
    // /proc is still the host's, in the order they must be joined.
    let mut join: Vec<(OwnedFd, NamespaceKind)> = Vec::new();
    for kind in NamespaceKind::ALL {
        let name = kind.proc_name();
        let theirs = nsbox_host::proc::namespace_inode(init_pid, name);
        if theirs.is_none()
            || theirs == nsbox_host::proc::namespace_inode(std::process::id() as i32, name)
        {
            continue;
        }
        let f = std::fs::File::open(format!("/proc/{init_pid}/ns/{name}"))
            .with_context(|| format!("open the container's {name} namespace"))?;
        join.push((OwnedFd::from(f), kind));
    }
    // Our own PID namespace stays; our children are born in theirs.
    if let Some((fd, _)) = join.iter().find(|(_, k)| *k == NamespaceKind::Pid) {
        nix::sched::setns(fd, CloneFlags::CLONE_NEWPID)
            .map_err(|e| anyhow!("join the container's pid namespace: {}", e.desc()))?;
    }
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // The terminal is made by the child, inside; its master comes back here.
    let (pty_ours, pty_theirs) = protocol::seqpacket_pair()?;
    let pty_ours: protocol::Channel<u8, u8> = protocol::Channel::new(pty_ours);
    // SAFETY: fork in a single-threaded process (the runtime starts no
    // thread): the child may call anything its parent could.
    #[allow(unsafe_code)]
    let forked = unsafe { nix::unistd::fork() }?;
    match forked {
        ForkResult::Child => {
            drop(rd);
            let pty = protocol::Channel::new(pty_theirs);
            let failed = join_and_exec(cgroup, &join, &pty, process, a.preserve_fds);
            nsbox_process::report_and_exit(wr.as_fd(), failed)
        }
        ForkResult::Parent { child } => {
            drop(wr);
            drop(pty_theirs);
            if process.terminal {
                if let (Ok((_, fds)), Some(sock)) = (pty_ours.recv(), console) {
                    if let Some(master) = fds.first() {
                        send_console(sock, master)?;
                    }
                }
            }
            // EOF without a report: exec succeeded (the pipe was CLOEXEC).
            if let Some(report) = protocol::report::receive_report(&rd)? {
                let _ = nix::sys::wait::waitpid(child, None);
                return Err(ReportedFailure(nsbox_process::describe(process, report)).into());
            }
            if let Some(f) = pid_file {
                write_pid_file(f, child.as_raw())?;
            }
            if detach {
                return Ok(0);
            }
            wait_child_forwarding(child, set)
        }
    }
}

/// The forked child, up to its exec: into the container's cgroup and
/// namespaces, onto a terminal of its own if asked, then the process.
/// What failed, if it comes back.
fn join_and_exec(
    cgroup: Option<&protocol::CgroupPaths>,
    join: &[(OwnedFd, NamespaceKind)],
    pty: &protocol::Channel<u8, u8>,
    process: &protocol::Process,
    preserve_fds: u32,
) -> Report {
    // Into the container's cgroup by moving ourselves, before the mount
    // namespace hides the host's cgroupfs (cheaper than being moved: see
    // cgroups::enter).
    if let Some(cg) = cgroup {
        if let Err(e) = nsbox_host::cgroups::join_self(cg) {
            return Report::new(Step::JoinCgroup, errno_of(&e));
        }
    }
    // The user namespace after the others that we may enter before it
    // (the host's root may enter any; from inside a user namespace, only
    // its own), then those that needed it (a rootless container's): a
    // container whose new user namespace sits beside namespaces joined
    // from another user namespace has both kinds.
    let setns = |fd: &OwnedFd, kind: NamespaceKind| {
        nix::sched::setns(fd, CloneFlags::from_bits_retain(kind.clone_flag()))
    };
    let mut after_user = Vec::new();
    let mut user = None;
    for (fd, kind) in join {
        match kind {
            NamespaceKind::Pid => {}
            NamespaceKind::User => user = Some(fd),
            _ => match setns(fd, *kind) {
                Err(Errno::EPERM) => after_user.push((fd, *kind)),
                Err(e) => return Report::new(Step::JoinNamespace(*kind), e),
                Ok(()) => {}
            },
        }
    }
    let user = user.map(|fd| (fd, NamespaceKind::User));
    for (fd, kind) in user.into_iter().chain(after_user) {
        if let Err(e) = setns(fd, kind) {
            return Report::new(Step::JoinNamespace(kind), e);
        }
    }
    if process.terminal {
        let (master, slave) = match nsbox_process::open_pty() {
            Ok(pair) => pair,
            Err(r) => return r,
        };
        let _ = pty.send(&1, &[master.as_raw_fd()]);
        for fd in 0..3 {
            if let Err(e) = nix::unistd::dup2(slave.as_raw_fd(), fd) {
                return Report::new(Step::OpenPtySlave, e);
            }
        }
    }
    match nsbox_process::Prepared::new(process) {
        Ok(p) => p.exec_in_place(process.terminal, preserve_fds),
        Err(r) => r,
    }
}

/// The errno of a cgroup error, for a report (EINVAL when it has none).
fn errno_of(e: &nsbox_host::cgroups::CgroupError) -> Errno {
    match e {
        nsbox_host::cgroups::CgroupError::Io { source, .. } => {
            Errno::from_raw(source.raw_os_error().unwrap_or(libc::EINVAL))
        }
        _ => Errno::EINVAL,
    }
}

/// Wait for our child, passing on the signals in `set`.
fn wait_child_forwarding(child: nix::unistd::Pid, set: &SigSet) -> Result<i32> {
    let pidfd = nsbox_host::proc::pidfd_open(child.as_raw())?;
    Forwarder::new(set, Some(pidfd.try_clone()?))?.forward_until(pidfd.as_fd())?;
    Ok(nsbox_process::exit_code(nix::sys::wait::waitpid(
        child, None,
    )?))
}
