//! `create` and `run`: validate, make the state directory, start the shim,
//! and wait for it to report the container created. Any failure undoes what
//! was made: the shim and tiny-init are gone and the directory removed
//! before the error is printed.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use nsbox_host::cgroups::{CgroupDriver, CgroupError};
use nsbox_host::proc::ProcessId;
use nsbox_host::state::{now_rfc3339, ContainerDir, State, StateError, Status};
use nsbox_host::teardown::HostSide;
use nsbox_host::testhooks::fault;
use protocol::{ChannelError, Failure, RuntimeChannel, RuntimeToShim};

use crate::handover::{connect_console, send_console, write_pid_file};
use crate::options::GlobalOptions;
use crate::shim_client::channel_error;

/// How long the shim may take to build a container. Mounts over a slow
/// filesystem can take a while; a shim that dies answers at once (EOF).
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Created {
    pub id: String,
    pub channel: RuntimeChannel,
    pub dir: ContainerDir,
    pub shim: Pid,
    pub init: ProcessId,
    /// The terminal's master, kept by a foreground `run` to relay.
    pub pty: Option<OwnedFd>,
    /// config.json has poststart hooks (which `run` runs once started).
    pub poststart: bool,
    /// config.json has poststop hooks (which a foreground `run` runs once
    /// the container is gone, with the state the shim left).
    pub poststop: bool,
    /// The cgroup as state.json names it: a foreground `run` removes it.
    pub cgroup: Option<protocol::CgroupPaths>,
}

/// The shim and tiny-init live next to the runtime binary.
fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("find the runtime's own path")?;
    let p = exe.with_file_name(name);
    if !p.exists() {
        return Err(anyhow!(
            "{name} not found at {} (install the runtime, shim and tiny-init together)",
            p.display()
        ));
    }
    Ok(p)
}

/// What `create` and `run` are told besides the ID.
#[derive(Clone)]
pub struct CreateOpts {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    /// Where to send the terminal's master (process.terminal).
    pub console_socket: Option<PathBuf>,
    /// Pass our fds 3..3+N to the workload.
    pub preserve_fds: u32,
    /// `-t`: a terminal for the workload, whatever config.json says.
    pub tty: bool,
    /// A foreground `run`: a terminal without a console socket is the
    /// person's, relayed by the runtime.
    pub foreground: bool,
    /// `--log-output`: keep a detached container's output in its log even
    /// when our stdout is a file or a pipe.
    pub log_output: bool,
    /// `--no-pivot`: MS_MOVE and chroot instead of pivot_root.
    pub no_pivot: bool,
    /// `--no-new-keyring`: the container keeps the caller's session keyring.
    pub no_new_keyring: bool,
    /// `run`: the shim starts the container once it is created, without
    /// waiting for a `Start` (a round trip less); `Started` follows `Created`.
    pub start: bool,
}

/// Where a detached container's output goes. Docker always logs a
/// detached container; an OCI runtime hands its stdio to the container, and
/// orchestrators (conmon, containerd) depend on that. Both hold here: the
/// output is logged when nobody is there to read it otherwise (our stdout
/// is a terminal, where it would scribble over the person's prompt long
/// after we returned, or /dev/null), or when asked; a file, a pipe or a
/// socket gets it as runc would give it.
fn wants_log(o: &CreateOpts) -> bool {
    o.log_output
        || nix::unistd::isatty(1).unwrap_or(false)
        || nix::sys::stat::fstat(1).is_ok_and(|st| {
            st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == libc::makedev(1, 3)
        })
}

pub fn create(g: &GlobalOptions, id: &str, o: &CreateOpts) -> Result<Created> {
    let dir = ContainerDir::new(&g.root, id);
    // The shim first: its exec and start-up can then overlap with reading
    // and checking config.json (where the scheduler lets a new child run
    // beside its parent: docs/performance.md, run F). Until it gets
    // Create it touches nothing; if we give up before, `undo` kills and
    // reaps it. The rest of what `undo` removes is named once it exists.
    let shim_path = sibling("shim")?;
    let (ours, theirs) = protocol::seqpacket_pair().context("socketpair")?;
    let shim = spawn_shim(g, &shim_path, &dir, &theirs)?;
    drop(theirs);
    let mut undo = Undo {
        shim: Some(shim),
        host: None,
        dir: None,
    };
    let bundle = std::fs::canonicalize(&o.bundle)
        .with_context(|| format!("bundle {}", o.bundle.display()))?;
    let config = crate::spec::load(&bundle)?;
    let driver = if g.systemd_cgroup {
        CgroupDriver::Systemd
    } else {
        CgroupDriver::Cgroupfs
    };
    let mut plan = crate::spec::plan_with(&config, &bundle, &dir, id, driver)?;
    plan.request.tiny_init = sibling("tiny-init")?.to_string_lossy().into_owned();
    plan.request.caller_reaps = g.caller_reaps;
    plan.request.init.preserve_fds = o.preserve_fds;
    plan.request.init.process.terminal |= o.tty;
    plan.request.start = o.start;
    if o.no_pivot && plan.request.init.root_switch == protocol::RootSwitch::PivotRoot {
        plan.request.init.root_switch = protocol::RootSwitch::MoveRoot;
    }
    if !o.no_new_keyring {
        plan.request.init.session_keyring = Some(format!("_ses.{id}"));
    }
    plan.request.caller_removes_cgroup = o.start && o.foreground;
    let poststart = !plan.request.hooks.poststart.is_empty();
    let poststop = !plan.request.hooks.poststop.is_empty();
    let terminal = plan.request.init.process.terminal;
    let relay = terminal && o.console_socket.is_none() && o.foreground;
    // A detached terminal without a console socket stays with the shim,
    // which logs it and lets `attach` in.
    plan.request.log_output = !o.foreground
        && !g.caller_reaps
        && o.console_socket.is_none()
        && (terminal || wants_log(o));
    if terminal && o.console_socket.is_none() && !relay && !plan.request.log_output {
        bail!(
            "process.terminal is true: give --console-socket, where the terminal's master is sent"
        );
    }
    let console = o
        .console_socket
        .as_deref()
        .filter(|_| plan.request.init.process.terminal)
        .map(connect_console)
        .transpose()?;
    if let Some(net) = &plan.request.network {
        nsbox_host::network::precheck(net, id).context("network")?;
    }

    match dir.create() {
        Ok(()) => {}
        Err(StateError::Exists) => return Err(anyhow!("container already exists")),
        Err(e) => return Err(e.into()),
    }
    fault("create", "after-mkdir");
    // From here on, a failure removes what was made.
    undo.dir = Some(dir.clone());
    undo.host = Some(HostSide {
        id: id.to_string(),
        network_root: plan
            .request
            .network
            .as_ref()
            .map(|n| PathBuf::from(&n.root)),
        // Ours to undo once we have made it (below), or systemd its scope
        // (make_scope): until then, one of that name is another
        // container's.
        cgroup: None,
        stop_scope: Some(crate::systemd::stop_scope),
    });
    if plan.request.init.overlay.is_some() {
        for d in [dir.upper(), dir.work(), dir.merged()] {
            std::fs::create_dir(&d).with_context(|| format!("make {}", d.display()))?;
        }
        if plan.request.init.idmapped {
            std::fs::create_dir(dir.path.join("lower")).context("make lower")?;
            // The container's root writes the upper layer: it must own it.
            let uid = crate::spec::map_id(&plan.request.uid_mappings, 0);
            let gid = crate::spec::map_id(&plan.request.gid_mappings, 0);
            for d in [dir.upper(), dir.work()] {
                std::os::unix::fs::chown(&d, uid, gid)
                    .with_context(|| format!("chown {}", d.display()))?;
            }
        }
    }
    rootfs_in_joined_mount_namespace(&plan.request)?;
    fault("create", "after-fork");

    let state = State {
        id: id.to_string(),
        bundle: bundle.to_string_lossy().into_owned(),
        rootfs: plan.rootfs.clone(),
        created: now_rfc3339(),
        recorded_status: Status::Creating,
        shim: ProcessId::of(shim.as_raw()),
        init: None,
        exit_code: None,
        annotations: plan.annotations.clone(),
        command: plan.command.clone(),
        owner: nix::unistd::getuid().as_raw(),
        network: None,
        cgroup: plan.request.cgroup.as_ref().map(|c| c.paths.clone()),
        hooks: plan.request.hooks.clone(),
        oom_kills: 0,
        finished: None,
    };
    dir.save(&state).context("write state")?;
    fault("create", "after-state");
    // A cgroupfs cgroup is ours to make once the shim has Create; a
    // systemd scope the shim asks for (MakeScope), once it has tiny-init's
    // pid.
    let (scope, cgroupfs) = match plan.request.cgroup.clone() {
        Some(c) if c.paths.systemd.is_some() => (Some(c), None),
        other => (None, other),
    };
    let mut channel = RuntimeChannel::new(ours);
    channel.set_timeout(Some(CREATE_TIMEOUT))?;
    channel.send_hello().context("talk to shim")?;
    let preserved: Vec<i32> = (3..3 + o.preserve_fds as i32).collect();
    for &fd in &preserved {
        if nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_err() {
            bail!("--preserve-fds {}: fd {fd} is not open", o.preserve_fds);
        }
    }
    channel
        .send(&RuntimeToShim::Create(Box::new(plan.request)), &preserved)
        .map_err(|e| match e {
            ChannelError::TooLarge(n) => anyhow!("config.json is too large ({n} bytes encoded)"),
            other => anyhow!("send config to shim: {other}"),
        })?;
    fault("create", "after-send");
    // Made while the shim prepares tiny-init's clone (a v1 cgroup is a
    // directory in each of a dozen hierarchies, 0.4 ms and more), or on v1
    // clones it: tiny-init is born in it (v2), or its clone child waits
    // for our word and moves itself in (v1), before anything else. A
    // systemd scope cannot be made empty: the shim asks for it with
    // tiny-init in it (MakeScope below).
    if let Some(cg) = cgroupfs {
        let made = nsbox_host::cgroups::create(&cg.paths, &cg.resources);
        // Made, or half made (a value the kernel refused): ours to remove
        // should the create fail. One that holds processes is another
        // container's.
        if !matches!(made, Err(CgroupError::Busy(_))) {
            if let Some(host) = undo.host.as_mut() {
                host.cgroup = Some(cg.paths.clone());
            }
        }
        let word = made
            .as_ref()
            .err()
            .map(|e| Failure::from_error("cgroup", e));
        let told = channel.send(&RuntimeToShim::CgroupMade(word), &[]);
        if let Err(e) = made {
            // The shim undoes its part (a network reservation) and says
            // so before we undo ours.
            if told.is_ok() {
                let _ = channel.wait_for_created(|_| Err(no_scope()));
            }
            return Err(anyhow::Error::new(e).context("cgroup"));
        }
        told.map_err(|e| anyhow!("send to shim: {e}"))?;
    }
    let make_scope = |pid: i32| {
        let Some(cg) = &scope else {
            return Err(no_scope());
        };
        crate::systemd::start_scope(&cg.paths, pid, &cg.resources)
            .map_err(|e| Failure::from_error("cgroup", &e))?;
        if let Some(host) = undo.host.as_mut() {
            host.cgroup = Some(cg.paths.clone());
        }
        Ok(())
    };
    let (created, pty) = channel.wait_for_created(make_scope).map_err(|e| match e {
        // Its log went with the state directory; `--log` keeps one.
        ChannelError::Closed => anyhow!("the shim exited before it answered"),
        other => channel_error(other),
    })?;
    fault("create", "after-created");
    let init = ProcessId {
        pid: created.init_pid,
        start_time: created.init_start_time,
    };
    if !o.start && !init.is_alive() {
        bail!("tiny-init (pid {}) ended during create", created.init_pid);
    }
    if let (Some(sock), Some(master)) = (&console, pty.first()) {
        send_console(sock, master)?;
    }
    let pty = if relay {
        Some(
            pty.into_iter()
                .next()
                .ok_or_else(|| anyhow!("the shim sent no terminal"))?,
        )
    } else {
        None
    };
    fault("create", "before-pidfile");
    if let Some(p) = &o.pid_file {
        write_pid_file(p, created.init_pid)?;
    }
    undo.disarm();
    Ok(Created {
        id: id.to_string(),
        channel,
        dir,
        shim,
        init,
        pty,
        poststart,
        poststop,
        cgroup: state.cgroup,
    })
}

/// What a failed `create` removes (see nsbox_host::teardown): the shim
/// (killed and reaped), and, once they exist, its host side (a shim that
/// failed released it, one killed here could not) and the state directory
/// (None until we made it: it may be another container's).
/// nsbox sets the rootfs up inside a mount namespace given by path and
/// pivots into it, as runc does: that namespace must show the rootfs at
/// its host path. One that does not (a running container's, pivoted
/// already) is refused here, rather than fail later on a missing path, or
/// let pivot_root(2) move every process rooted in that namespace into our
/// rootfs. A namespace we may not enter is the shim's to report.
fn rootfs_in_joined_mount_namespace(request: &protocol::CreateRequest) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Some(ns) = request
        .namespaces
        .iter()
        .find(|n| n.kind == protocol::NamespaceKind::Mount)
        .and_then(|n| n.path.as_deref())
    else {
        return Ok(());
    };
    let rootfs = &request.init.rootfs;
    let id = |m: std::fs::Metadata| (m.dev(), m.ino());
    let ours = std::fs::metadata(rootfs).map(id).ok();
    let theirs = std::fs::File::open(ns).with_context(|| format!("open mount namespace {ns}"))?;
    // SAFETY: fork in a single-threaded process (the runtime starts no
    // thread): the child may call anything its parent could.
    #[allow(unsafe_code)]
    let forked = unsafe { nix::unistd::fork() }.context("fork")?;
    let seen = match forked {
        nix::unistd::ForkResult::Child => {
            let code = match nix::sched::setns(&theirs, nix::sched::CloneFlags::CLONE_NEWNS) {
                Err(_) => 0,
                Ok(()) => match std::fs::metadata(rootfs).map(id) {
                    Ok(there) if Some(there) == ours => 0,
                    Ok(_) => 2,
                    Err(_) => 1,
                },
            };
            // SAFETY: _exit leaves at once, running none of the parent's
            // atexit handlers or destructors.
            #[allow(unsafe_code)]
            unsafe {
                libc::_exit(code)
            }
        }
        nix::unistd::ForkResult::Parent { child } => nix::sys::wait::waitpid(child, None)?,
    };
    let why = "nsbox sets the rootfs up and pivots inside a mount namespace given by path, \
               as runc does, so it must show the host's paths; a running container's does not";
    match seen {
        nix::sys::wait::WaitStatus::Exited(_, 0) => Ok(()),
        nix::sys::wait::WaitStatus::Exited(_, 1) => {
            bail!("linux.namespaces: mount namespace {ns} has no {rootfs}, the rootfs ({why})")
        }
        nix::sys::wait::WaitStatus::Exited(_, 2) => bail!(
            "linux.namespaces: mount namespace {ns} has another directory at {rootfs} than the rootfs ({why})"
        ),
        other => bail!("check the rootfs in mount namespace {ns}: {other:?}"),
    }
}

/// The answer to a MakeScope from a shim whose container has no
/// systemd scope.
fn no_scope() -> Failure {
    Failure {
        step: "cgroup".into(),
        message: "the shim asked for a systemd scope, and this container has none".into(),
        exit_code: 1,
    }
}

struct Undo {
    shim: Option<Pid>,
    host: Option<HostSide>,
    dir: Option<ContainerDir>,
}

impl Undo {
    fn disarm(&mut self) {
        self.shim = None;
        self.host = None;
        self.dir = None;
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        if let Some(shim) = self.shim {
            // The shim kills its tiny-init before it reports a failure; one
            // that has not reported is killed here, and reaped: it is our child.
            let _ = nix::sys::signal::kill(shim, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(shim, None);
        }
        if let Some(host) = &self.host {
            host.release_logged();
        }
        if let Some(dir) = &self.dir {
            let _ = dir.remove();
        }
    }
}

/// Start the shim in a session of its own, with `socket` as fd 3
/// and our stdio as the container's.
fn spawn_shim(g: &GlobalOptions, shim: &Path, dir: &ContainerDir, socket: &OwnedFd) -> Result<Pid> {
    let mut args = vec![
        "shim".to_string(),
        "--state-dir".into(),
        dir.path.to_string_lossy().into_owned(),
    ];
    if let Some(log) = &g.log {
        args.push("--log".into());
        args.push(log.to_string_lossy().into_owned());
        args.push("--log-format".into());
        args.push(g.log_format.clone());
    }
    if g.debug {
        args.push("--debug".into());
    }
    let argv: Vec<CString> = args
        .into_iter()
        .map(CString::new)
        .collect::<Result<_, _>>()
        .context("shim arguments")?;
    let path = CString::new(shim.as_os_str().as_encoded_bytes()).context("shim path")?;
    let ptrs: Vec<*mut libc::c_char> = argv
        .iter()
        .map(|a| a.as_ptr() as *mut libc::c_char)
        .chain(std::iter::once(std::ptr::null_mut()))
        .collect();
    spawn_detached(&path, &ptrs, socket.as_raw_fd())
        .map_err(|e| anyhow!("start the shim {}: {e}", shim.display()))
}

/// What the child of [`spawn_detached`] reads, and where it leaves
/// execve's error.
struct SpawnArgs {
    path: *const libc::c_char,
    argv: *const *mut libc::c_char,
    envp: *const *const libc::c_char,
    socket: libc::c_int,
    mask: libc::sigset_t,
    errno: libc::c_int,
}

/// Our own posix_spawn: clone with CLONE_VM|CLONE_VFORK (neither the copy
/// of our page tables nor the copy-on-write faults of a fork), `socket` as
/// the child's fd 3 and nothing above it, a session of its own, then
/// execve. glibc's posix_spawn also asks and resets each of the 64
/// signals' dispositions in the child, 128 system calls while we wait;
/// here only the handlers Rust's runtime installs are reset (SIGSEGV,
/// SIGBUS: the runtime installs none of its own), which is all that could
/// run our code in the child, and exec resets the rest.
#[allow(unsafe_code)]
fn spawn_detached(
    path: &std::ffi::CStr,
    argv: &[*mut libc::c_char],
    socket: libc::c_int,
) -> std::io::Result<Pid> {
    extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the parent's SpawnArgs, alive while the parent
        // waits for our exec or exit (CLONE_VFORK); we share its memory,
        // so only async-signal-safe calls below, each a system call.
        unsafe {
            let a = &mut *(arg as *mut SpawnArgs);
            libc::signal(libc::SIGSEGV, libc::SIG_DFL);
            libc::signal(libc::SIGBUS, libc::SIG_DFL);
            let fd3 = if a.socket == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(a.socket, 3)
            };
            // containerd, for one, leaves a stray socket on our fd 3 and
            // others above it: none of them is the shim's business.
            if fd3 >= 0 && nsbox_process::close_range(4, u32::MAX, 0) == 0 && libc::setsid() >= 0 {
                libc::sigprocmask(libc::SIG_SETMASK, &a.mask, std::ptr::null_mut());
                libc::execve(a.path, a.argv as *const *const libc::c_char, a.envp);
            }
            a.errno = *libc::__errno_location();
            libc::_exit(127)
        }
    }
    // As glibc's: a few calls deep, nothing on it but their frames.
    const STACK: usize = 32 * 1024;
    let mut stack: Vec<u8> = Vec::with_capacity(STACK);
    // SAFETY: environ is the process's NULL-terminated environment; argv
    // is NULL-terminated and, like `path`, outlives the call; the child
    // runs on `stack` (the top of it: stacks grow down) until it execs or
    // exits, and we are suspended meanwhile (CLONE_VFORK); every signal
    // stays blocked until the child restores our mask.
    unsafe {
        extern "C" {
            static environ: *const *const libc::c_char;
        }
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        let mut args = SpawnArgs {
            path: path.as_ptr(),
            argv: argv.as_ptr(),
            envp: environ,
            socket,
            mask: std::mem::zeroed(),
            errno: 0,
        };
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut args.mask);
        // malloc's 16-byte alignment, as the ABI wants the stack's.
        let top = stack.as_mut_ptr().add(STACK) as *mut libc::c_void;
        let pid = libc::clone(
            child,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &mut args as *mut SpawnArgs as *mut libc::c_void,
        );
        let cloned = std::io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &args.mask, std::ptr::null_mut());
        if pid < 0 {
            return Err(cloned);
        }
        if args.errno != 0 {
            let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
            return Err(std::io::Error::from_raw_os_error(args.errno));
        }
        Ok(Pid::from_raw(pid))
    }
}
