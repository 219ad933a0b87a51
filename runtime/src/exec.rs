//! `exec`: run another process in a running container. The shim passes the
//! request to tiny-init, which forks it beside the workload, with the
//! process settings given and the caller's stdio; a foreground exec waits
//! for it and ends with its exit code.

use std::os::fd::AsRawFd;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::SigSet;
use protocol::RuntimeToShim;

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
        let text = std::fs::read(file).map_err(|e| anyhow!("read {}: {e}", file.display()))?;
        let p: oci_spec::runtime::Process =
            serde_json::from_slice(&text).map_err(|e| anyhow!("parse {}: {e}", file.display()))?;
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
    use std::io::Read;
    use std::os::fd::OwnedFd;
    // The user namespace first: joining it gives the capabilities that
    // joining the others then needs.
    const KINDS: [(&str, libc::c_int); 7] = [
        ("user", libc::CLONE_NEWUSER),
        ("cgroup", libc::CLONE_NEWCGROUP),
        ("ipc", libc::CLONE_NEWIPC),
        ("uts", libc::CLONE_NEWUTS),
        ("net", libc::CLONE_NEWNET),
        ("pid", libc::CLONE_NEWPID),
        ("mnt", libc::CLONE_NEWNS),
    ];
    let mut join: Vec<(OwnedFd, libc::c_int, &str)> = Vec::new();
    for (name, kind) in KINDS {
        let theirs = nsbox_host::proc::namespace_inode(init_pid, name);
        if theirs.is_none()
            || theirs == nsbox_host::proc::namespace_inode(std::process::id() as i32, name)
        {
            continue;
        }
        let f = std::fs::File::open(format!("/proc/{init_pid}/ns/{name}"))
            .map_err(|e| anyhow!("open the container's {name} namespace: {e}"))?;
        join.push((OwnedFd::from(f), kind, name));
    }
    // Our own PID namespace stays; our children are born in theirs.
    if let Some((fd, _, _)) = join.iter().find(|(_, k, _)| *k == libc::CLONE_NEWPID) {
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWPID)
            .map_err(|e| anyhow!("join the container's pid namespace: {}", e.desc()))?;
    }
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // The terminal is made by the child, inside; its master comes back here.
    let (pty_ours, pty_theirs) = protocol::seqpacket_pair()?;
    let pty_ours: protocol::Channel<u8, u8> = protocol::Channel::new(pty_ours);
    // SAFETY: the runtime is single-threaded.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            drop(rd);
            let report = |code: i32, msg: String| -> ! {
                let _ = nix::unistd::write(&wr, format!("{code}\n{msg}").as_bytes());
                // SAFETY: leave without running the parent's destructors.
                unsafe { libc::_exit(code) }
            };
            // Into the container's cgroup by moving ourselves, before the
            // mount namespace hides the host's cgroupfs (cheaper than being
            // moved: see cgroups::enter).
            if let Some(cg) = cgroup {
                if let Err(e) = nsbox_host::cgroups::join_self(cg) {
                    report(1, format!("join the container's cgroup: {e}"));
                }
            }
            for (fd, kind, name) in &join {
                if *kind == libc::CLONE_NEWPID {
                    continue;
                }
                if let Err(e) =
                    nix::sched::setns(fd, nix::sched::CloneFlags::from_bits_retain(*kind))
                {
                    report(
                        1,
                        format!("join the container's {name} namespace: {}", e.desc()),
                    );
                }
            }
            if process.terminal {
                match nsbox_process::open_pty() {
                    Ok((master, slave)) => {
                        let theirs: protocol::Channel<u8, u8> = protocol::Channel::new(pty_theirs);
                        let _ = theirs.send(&1, &[master.as_raw_fd()]);
                        for fd in 0..3 {
                            // SAFETY: dup2 onto our own stdio.
                            unsafe { libc::dup2(slave.as_raw_fd(), fd) };
                        }
                    }
                    Err(f) => report(1, f.to_string()),
                }
            }
            let f = match nsbox_process::Prepared::new(process) {
                Ok(p) => p.exec_in_place(process.terminal, a.preserve_fds),
                Err(f) => f,
            };
            let f = nsbox_process::describe(process, f);
            report(f.exit_code, f.to_string())
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(wr);
            drop(pty_theirs);
            if process.terminal {
                if let (Ok((_, fds)), Some(sock)) = (pty_ours.recv(), console) {
                    if let Some(master) = fds.first() {
                        send_console(sock, master)?;
                    }
                }
            }
            // EOF without a word: exec succeeded (the pipe was CLOEXEC).
            let mut text = String::new();
            let _ = std::fs::File::from(rd).read_to_string(&mut text);
            if let Some((code, msg)) = text.split_once('\n') {
                let _ = nix::sys::wait::waitpid(child, None);
                let (step, message) = msg.split_once(": ").unwrap_or((msg, ""));
                return Err(ReportedFailure(protocol::Failure {
                    step: step.into(),
                    message: message.into(),
                    exit_code: code.parse().unwrap_or(1),
                })
                .into());
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

/// Wait for our child, passing on the signals in `set`.
fn wait_child_forwarding(child: nix::unistd::Pid, set: &SigSet) -> Result<i32> {
    use std::os::fd::AsFd;
    let pidfd = nsbox_host::proc::pidfd_open(child.as_raw())?;
    Forwarder::new(set, Some(pidfd.try_clone()?))?.forward_until(pidfd.as_fd())?;
    Ok(match nix::sys::wait::waitpid(child, None)? {
        nix::sys::wait::WaitStatus::Exited(_, code) => code,
        nix::sys::wait::WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
        _ => 255,
    })
}
