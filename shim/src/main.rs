//! shim: one per container, the container's host side.
//!
//! `runtime create` forks and execs it with a SEQPACKET socket on fd 3 and
//! the container's stdio on 0, 1 and 2, in a session of its own. The shim
//! then, still single-threaded:
//!
//! 1. receives the validated `CreateRequest`;
//! 2. clones tiny-init into the new namespaces, from a read-only bind of its
//!    binary (or a sealed memfd copy, for containers with CAP_SYS_ADMIN);
//! 3. forwards tiny-init its `InitConfig` and waits for `Ready`;
//! 4. for a bridged container, plugs it into its bridge (the address and
//!    host ports were reserved, and /etc/hosts and friends written, before
//!    step 2, so that tiny-init could mount them);
//! 5. records the init's pid and start time in state.json, listens on
//!    `shim.sock` in the state directory, and answers `Created`;
//! 6. serves `start` and `wait` requests until the container stops, records
//!    the exit status durably, releases the network, answers every waiter,
//!    and exits.
//!
//! The shim watches tiny-init through a pidfd, and takes the exit code from
//! tiny-init's `Exited` message when it cannot reap it itself, so that the
//! caller's-shim mode (where tiny-init is not our child) fits the same loop.

mod spawn;

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    accept4, bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
};
use nsbox_host::proc::{pidfd_send_signal, ProcessId};
use nsbox_host::state::{ContainerDir, State, Status};
use nsbox_host::testhooks::fault;
use nsbox_host::{cgroups, hooks};
use protocol::{
    ChannelError, Created, Failure, InitToShim, NamespaceKind, RuntimeToShim, ShimInitChannel,
    ShimRuntimeChannel, ShimToInit, ShimToRuntime, PROTOCOL_VERSION,
};

/// fd the runtime hands us our end of the create socketpair on.
const RUNTIME_FD: i32 = 3;
/// The shim's exit status when the container stopped but some of its host
/// side (cgroup, network) could not be removed: the runtime retries then.
const EXIT_LEFT_SOMETHING: i32 = 3;
/// capability(7)'s number, which libc does not export.
const CAP_SYS_ADMIN: u8 = 21;
/// How long the processes of a stopped container may take to leave its
/// cgroup before rmdir gives up.
const CGROUP_TIMEOUT: Duration = Duration::from_secs(5);

struct Args {
    state_dir: PathBuf,
    log: Option<PathBuf>,
    log_format: nsbox_host::logger::Format,
    debug: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut out = Args {
        state_dir: PathBuf::new(),
        log: None,
        log_format: nsbox_host::logger::Format::Text,
        debug: false,
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--state-dir" => out.state_dir = args.next().ok_or("--state-dir needs a value")?.into(),
            "--log" => out.log = Some(args.next().ok_or("--log needs a value")?.into()),
            "--log-format" => {
                out.log_format = args.next().ok_or("--log-format needs a value")?.parse()?
            }
            "--debug" => out.debug = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if out.state_dir.as_os_str().is_empty() {
        return Err("--state-dir is required (the shim is started by `runtime create`)".into());
    }
    Ok(out)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("shim: {e}");
            std::process::exit(2);
        }
    };
    let dir = ContainerDir {
        path: args.state_dir.clone(),
    };
    // The caller's working directory may be a mount it wants to unmount.
    let _ = std::env::set_current_dir("/");
    // Processes that `exec` puts in the container and that outlive their
    // parent come back to us, not to the host's init.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };

    // SAFETY: fd 3 is ours by contract with `runtime create`.
    let runtime = ShimRuntimeChannel::new(unsafe { OwnedFd::from_raw_fd(RUNTIME_FD) });
    // `runtime create` starts us before it has read config.json, so that
    // our start-up overlaps its checks: until Create comes, the state
    // directory may not exist, or be another container's, and is not ours
    // to touch (our log is there).
    let received = runtime
        .wait_for_hello()
        .and_then(|_| runtime.wait_for_create());
    let log_file = args.log.clone().unwrap_or_else(|| dir.shim_log());
    let (request, preserved) = match received {
        Ok(r) => {
            let _ = nsbox_host::logger::init("shim", Some(&log_file), args.log_format, args.debug);
            r
        }
        // The runtime found something wrong before it asked for anything:
        // it says what, not us.
        Err(ChannelError::Closed) => std::process::exit(1),
        Err(e) => {
            let _ =
                nsbox_host::logger::init("shim", args.log.as_deref(), args.log_format, args.debug);
            log::error!("receive create request: {e}");
            let _ = runtime.send_error(failure("receive create request", e.to_string()));
            std::process::exit(1);
        }
    };
    let id = request.id.clone();
    match create(&dir, &request, preserved) {
        Ok((mut container, pty)) => {
            let pty: Vec<i32> = pty.iter().map(|f| f.as_raw_fd()).collect();
            if let Err(e) = runtime.send(
                &ShimToRuntime::Created(Created {
                    init_pid: container.init.pid,
                    init_start_time: container.state.init.map_or(0, |i| i.start_time),
                }),
                &pty,
            ) {
                // The runtime died before it heard us: nobody knows of this
                // container but its state directory, which `delete` cleans.
                log::error!("{id}: tell runtime the container is created: {e}");
                container.kill_init();
                let _ = container.release_network();
                if let Some(cg) = &container.state.cgroup {
                    let _ = cgroups::destroy(cg, CGROUP_TIMEOUT);
                }
                std::process::exit(1);
            }
            if request.start {
                // `run`: no Start to wait for; the runtime meanwhile sends
                // the terminal on and writes the pid file.
                let ask = !container.init_started_at_once;
                let reply = match container.start(ask) {
                    Ok(pid) => ShimToRuntime::Started { pid },
                    Err(f) => ShimToRuntime::Error(f),
                };
                let _ = runtime.send(&reply, &[]);
            }
            detach_stdio();
            container.serve(Some(runtime));
        }
        Err(f) => {
            log::error!("{id}: {f}");
            let _ = runtime.send_error(f);
            std::process::exit(1);
        }
    }
}

fn failure(step: &str, message: String) -> Failure {
    Failure {
        step: step.into(),
        message,
        exit_code: 1,
    }
}

/// The container's stdio belongs to tiny-init now; the shim keeps none of
/// it, so that a reader of the container's output sees EOF when the
/// container ends.
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: dup2 onto stdio.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}

struct Container {
    dir: ContainerDir,
    state: State,
    init: spawn::Child,
    init_channel: Option<ShimInitChannel>,
    listener: OwnedFd,
    /// The exit code tiny-init reported, for when we cannot reap it.
    reported_exit: Option<i32>,
    /// Runtimes waiting for an exec'd process (by its pid in the container).
    exec_waiters: Vec<(i32, ShimRuntimeChannel)>,
    network: Option<Network>,
    /// A logged container's output streams (non-blocking: the shim never
    /// waits on the container).
    outputs: Vec<Output>,
    log: Option<nsbox_host::output_log::Writer>,
    /// A logged container's terminal, for `attach`.
    tty: Option<OwnedFd>,
    /// Attached runtimes: the shim's ends of their stream sockets.
    attached: Vec<OwnedFd>,
    /// tiny-init was told to start the workload right after Ready.
    init_started_at_once: bool,
    /// See CreateRequest::caller_removes_cgroup.
    caller_removes_cgroup: bool,
}

struct Output {
    fd: OwnedFd,
    stream: &'static str,
    lines: nsbox_host::output_log::Lines,
}

/// A bridged container's reservation, and the sockets that hold its host
/// ports for as long as this shim lives.
struct Network {
    root: PathBuf,
    _port_holds: Vec<OwnedFd>,
}

/// The container, and its terminal's master when it has one.
fn create(
    dir: &ContainerDir,
    req: &protocol::CreateRequest,
    preserved: Vec<OwnedFd>,
) -> Result<(Container, Option<OwnedFd>), Failure> {
    if preserved.len() != req.init.preserve_fds as usize {
        return Err(failure(
            "receive preserved fds",
            format!(
                "expected {}, got {}",
                req.init.preserve_fds,
                preserved.len()
            ),
        ));
    }
    let state = dir
        .load()
        .map_err(|e| failure("read state", e.to_string()))?;
    // Before the clone: tiny-init bind-mounts the /etc files this writes.
    let reserved = match &req.network {
        Some(net) => Some(
            nsbox_host::network::reserve(net, &req.id, &dir.path)
                .map_err(|e| failure("network", e.to_string()))?,
        ),
        None => None,
    };
    let release = |why: &str| {
        if let Some(net) = &req.network {
            if let Err(e) = nsbox_host::network::release(std::path::Path::new(&net.root), &req.id) {
                log::error!("{}: release the network after {why}: {e}", req.id);
            }
        }
    };
    match clone_and_attach(dir, req, state, reserved, preserved) {
        Ok(c) => Ok(c),
        Err(f) => {
            release(&f.step);
            Err(f)
        }
    }
}

fn clone_and_attach(
    dir: &ContainerDir,
    req: &protocol::CreateRequest,
    mut state: State,
    reserved: Option<nsbox_host::network::Reserved>,
    preserved: Vec<OwnedFd>,
) -> Result<(Container, Option<OwnedFd>), Failure> {
    // A container whose processes may hold CAP_SYS_ADMIN on the host could
    // lift a read-only mount: it gets a private sealed copy instead.
    let userns = req
        .namespaces
        .iter()
        .any(|n| n.kind == protocol::NamespaceKind::User && n.path.is_none());
    let host_admin = !userns
        && match &req.init.process.capabilities {
            None => true,
            Some(c) => c.bounding.contains(&CAP_SYS_ADMIN),
        };
    let exe = if host_admin {
        spawn::sealed_copy(&req.tiny_init).map(spawn::Exe::Memfd)
    } else {
        spawn::Exe::read_only_bind(&req.tiny_init)
    }
    .map_err(|m| failure("prepare tiny-init", m))?;
    let (ours, theirs) =
        protocol::seqpacket_pair().map_err(|e| failure("socketpair", e.desc().into()))?;
    let argv = [
        CString::new("tiny-init").unwrap(),
        CString::new(req.state_dir.as_str()).map_err(|_| failure("state dir", "NUL".into()))?,
    ];
    let userns = req
        .namespaces
        .iter()
        .any(|n| n.kind == protocol::NamespaceKind::User && n.path.is_none());
    let sync = if userns {
        Some(
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| failure("pipe", e.desc().into()))?,
        )
    } else {
        None
    };
    // A logged container writes into pipes we read (a terminal's output
    // comes from its master instead); the runtime's stdio is not its.
    let outputs = if req.log_output {
        output_pipes(req.init.process.terminal)
            .map_err(|e| failure("make the output pipes", e.desc().into()))?
    } else {
        Vec::new()
    };
    // The runtime has made the cgroup. v1: the clone child moves itself in
    // before anything else; v2: it is born there (cgroups::self_join_files
    // says why it is never moved there by us).
    let cgroup_failure = |e: cgroups::CgroupError| failure("cgroup", e.to_string());
    let (join, into) = match &req.cgroup {
        Some(cg) if cg.paths.unified => (
            Vec::new(),
            Some(cgroups::open_dir(&cg.paths).map_err(cgroup_failure)?),
        ),
        Some(cg) => (
            cgroups::self_join_files(&cg.paths).map_err(cgroup_failure)?,
            None,
        ),
        None => (Vec::new(), None),
    };
    let join: Vec<i32> = join.iter().map(|f| f.as_raw_fd()).collect();
    let entry = match (&into, join.is_empty()) {
        (Some(dir), _) => spawn::CgroupEntry::Into(dir.as_raw_fd()),
        (None, false) => spawn::CgroupEntry::Join(&join),
        (None, true) => spawn::CgroupEntry::None,
    };
    let init = spawn::clone_init(
        req.caller_reaps,
        &req.namespaces,
        &theirs,
        &exe,
        &argv,
        sync.as_ref().map(|(r, _)| r),
        entry,
    )
    .map_err(|m| failure("start tiny-init", m))?;
    fault("shim", "after-clone");
    drop(theirs);
    drop(exe);
    let mut channel = ShimInitChannel::new(ours);
    let mut root_fd = None;
    // A bridged container's workload must wait until the shim has plugged
    // it in after Ready; any other run goes straight on.
    let start_at_once = req.start && req.network.is_none();
    // tiny-init waits for `Config` before it does anything of the
    // container's (and, in a new user namespace, for its maps before it
    // execs).
    let handshake = (|| {
        if let Some((rd, wr)) = sync {
            drop(rd);
            spawn::write_maps(init.pid, &req.uid_mappings, &req.gid_mappings)
                .map_err(|m| failure("write the id maps", m))?;
            if let Some(src) = &req.idmap_source {
                root_fd = Some(
                    spawn::idmapped_tree(src, init.pid).map_err(|m| failure("idmapped root", m))?,
                );
            }
            nix::unistd::write(&wr, &[1u8])
                .map_err(|e| failure("let tiny-init go on", e.desc().into()))?;
        }
        let mut config = req.init.clone();
        config.start_at_once = start_at_once;
        if !config.start_hooks.is_empty() {
            config.hook_state = state.oci_state_as(Status::Created, init.pid).to_string();
        }
        let talk = |e: ChannelError| init_error(e, &init);
        channel
            .send(
                &ShimToInit::Hello {
                    version: PROTOCOL_VERSION,
                },
                &[],
            )
            .map_err(talk)?;
        channel.wait_for_hello().map_err(talk)?;
        let fds: Vec<i32> = root_fd
            .iter()
            .chain(preserved.iter())
            .map(|f| f.as_raw_fd())
            .collect();
        channel
            .send(&ShimToInit::Config(Box::new(config)), &fds)
            .map_err(talk)?;
        if req.init.hook_pause {
            channel.wait_for_hook_point().map_err(talk)?;
            run_create_hooks(req, &state, init.pid)?;
            channel.send(&ShimToInit::Continue, &[]).map_err(talk)?;
        }
        channel.wait_for_ready().map_err(talk)
    })();
    drop(root_fd);
    drop(preserved);
    let remove_cgroup = || {
        if let Some(cg) = &req.cgroup {
            if let Err(e) = cgroups::destroy(&cg.paths, CGROUP_TIMEOUT) {
                log::warn!("{}: remove cgroup: {e}", req.id);
            }
        }
    };
    let pty = match handshake {
        Ok(fds) => {
            fault("shim", "after-ready");
            fds.into_iter().next()
        }
        Err(f) => {
            let _ = pidfd_send_signal(&init.pidfd, libc::SIGKILL);
            spawn::reap(&init.pidfd, true);
            remove_cgroup();
            return Err(f);
        }
    };
    let mut network = None;
    if let (Some(r), Some(net)) = (reserved, &req.network) {
        // tiny-init is our unreaped child: its pid names it until we reap.
        let attached = std::fs::File::open(format!("/proc/{}/ns/net", init.pid))
            .map_err(|e| e.to_string())
            .and_then(|ns| {
                nsbox_host::network::attach(
                    std::path::Path::new(&net.root),
                    &r.endpoint,
                    std::os::fd::AsFd::as_fd(&ns),
                )
                .map_err(|e| e.to_string())
            });
        if let Err(e) = attached {
            let _ = pidfd_send_signal(&init.pidfd, libc::SIGKILL);
            spawn::reap(&init.pidfd, true);
            remove_cgroup();
            return Err(failure("network", e));
        }
        state.network = Some(r.endpoint);
        network = Some(Network {
            root: PathBuf::from(&net.root),
            _port_holds: r.port_holds,
        });
        fault("shim", "after-network");
    }
    let _ = channel.set_timeout(Some(nsbox_host::testhooks::shim_start_timeout()));
    let listener = match listen_on(&dir.socket()) {
        Ok(l) => l,
        Err(e) => {
            let _ = pidfd_send_signal(&init.pidfd, libc::SIGKILL);
            spawn::reap(&init.pidfd, true);
            return Err(failure("listen on shim.sock", e));
        }
    };
    let init_id = ProcessId::of(init.pid)
        .ok_or_else(|| failure("read tiny-init's start time", "it has ended".into()))?;
    state.status = Status::Created;
    state.init = Some(init_id);
    let mut container = Container {
        dir: dir.clone(),
        state,
        init,
        init_channel: Some(channel),
        listener,
        reported_exit: None,
        exec_waiters: Vec::new(),
        network,
        outputs: Vec::new(),
        log: None,
        tty: None,
        attached: Vec::new(),
        init_started_at_once: start_at_once,
        caller_removes_cgroup: req.caller_removes_cgroup,
    };
    let mut pty = pty;
    if req.log_output {
        let mut outputs = outputs;
        // The terminal stays here: logged, and for `attach`.
        if let Some(master) = pty.take() {
            let dup = master
                .try_clone()
                .map_err(|e| failure("keep the terminal", e.to_string()));
            match dup {
                Ok(d) => container.tty = Some(d),
                Err(f) => {
                    container.kill_init();
                    return Err(f);
                }
            }
            outputs.push((master, "stdout"));
        }
        match nsbox_host::output_log::Writer::create(&dir.path) {
            Ok(w) => container.log = Some(w),
            Err(e) => {
                container.kill_init();
                return Err(failure("open container.log", e.to_string()));
            }
        }
        for (fd, stream) in outputs {
            set_nonblocking(fd.as_raw_fd());
            container.outputs.push(Output {
                fd,
                stream,
                lines: Default::default(),
            });
        }
    }
    if let Err(e) = container.dir.save(&container.state) {
        container.kill_init();
        return Err(failure("write state", e.to_string()));
    }
    fault("shim", "after-save");
    Ok((container, pty))
}

/// Our stdio becomes what tiny-init inherits: /dev/null in, and pipes out
/// (or /dev/null too, for a terminal); the read ends are returned.
fn output_pipes(terminal: bool) -> Result<Vec<(OwnedFd, &'static str)>, Errno> {
    use nix::fcntl::OFlag;
    let null = nix::fcntl::open(
        "/dev/null",
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    // SAFETY: open returned a new fd.
    let null = unsafe { OwnedFd::from_raw_fd(null) };
    nix::unistd::dup2(null.as_raw_fd(), 0)?;
    if terminal {
        nix::unistd::dup2(null.as_raw_fd(), 1)?;
        nix::unistd::dup2(null.as_raw_fd(), 2)?;
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (fd, stream) in [(1, "stdout"), (2, "stderr")] {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        // dup2 leaves the copy without CLOEXEC: tiny-init inherits it, and
        // ours goes when detach_stdio replaces our stdio.
        nix::unistd::dup2(w.as_raw_fd(), fd)?;
        out.push((r, stream));
    }
    Ok(out)
}

fn set_nonblocking(fd: i32) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    if let Ok(flags) = fcntl(fd, FcntlArg::F_GETFL) {
        let _ = fcntl(
            fd,
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        );
    }
}

/// What a failed exchange with tiny-init means. A closed channel is
/// tiny-init's early death: its exit code says at which step.
fn init_error(e: ChannelError, init: &spawn::Child) -> Failure {
    match e {
        ChannelError::Failed(f) => f,
        ChannelError::Closed => {
            let _ = pidfd_send_signal(&init.pidfd, libc::SIGKILL);
            let code = spawn::reap(&init.pidfd, true);
            failure(
                "start tiny-init",
                format!(
                    "tiny-init {} (exit status {})",
                    spawn::describe_early_exit(code.unwrap_or(-1)),
                    code.unwrap_or(-1)
                ),
            )
        }
        other => failure("set up the container", other.to_string()),
    }
}

/// prestart and createRuntime in the host's namespaces, then
/// createContainer in the container's, while tiny-init waits before
/// pivot_root: the host's root is still that mount namespace's root, so
/// hook paths resolve as on the host, as with runc.
fn run_create_hooks(
    req: &protocol::CreateRequest,
    state: &State,
    init_pid: i32,
) -> Result<(), Failure> {
    let st = state.oci_state_as(Status::Creating, init_pid).to_string();
    let hook_failure = |e: hooks::HookError| Failure::from_error("run hooks", &e);
    hooks::run_all("prestart", &req.hooks.prestart, &st, &[]).map_err(hook_failure)?;
    hooks::run_all("createRuntime", &req.hooks.create_runtime, &st, &[]).map_err(hook_failure)?;
    if req.hooks.create_container.is_empty() {
        return Ok(());
    }
    let mut kinds: Vec<&str> = req
        .namespaces
        .iter()
        .filter_map(|n| match n.kind {
            NamespaceKind::Ipc => Some("ipc"),
            NamespaceKind::Uts => Some("uts"),
            NamespaceKind::Network => Some("net"),
            NamespaceKind::Cgroup => Some("cgroup"),
            _ => None,
        })
        .collect();
    // The mount namespace last: after it, /proc may no longer be the host's.
    kinds.push("mnt");
    let mut join = Vec::new();
    for k in kinds {
        let p = format!("/proc/{init_pid}/ns/{k}");
        let f =
            std::fs::File::open(&p).map_err(|e| failure("run hooks", format!("open {p}: {e}")))?;
        join.push(OwnedFd::from(f));
    }
    hooks::run_all("createContainer", &req.hooks.create_container, &st, &join).map_err(hook_failure)
}

/// A listening SEQPACKET socket at `path`. Paths longer than sun_path
/// allows are reached through /proc/self/fd/N of their directory.
fn listen_on(path: &std::path::Path) -> Result<OwnedFd, String> {
    let sock = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|e| e.desc().to_string())?;
    let _dir_fd;
    let addr = match UnixAddr::new(path) {
        Ok(a) => a,
        Err(_) => {
            let parent = path.parent().unwrap_or(std::path::Path::new("/"));
            let f = std::fs::File::open(parent).map_err(|e| e.to_string())?;
            let short = format!(
                "/proc/self/fd/{}/{}",
                f.as_raw_fd(),
                path.file_name().unwrap_or_default().to_string_lossy()
            );
            _dir_fd = f;
            UnixAddr::new(short.as_str()).map_err(|e| e.desc().to_string())?
        }
    };
    bind(sock.as_raw_fd(), &addr).map_err(|e| e.desc().to_string())?;
    listen(&sock, Backlog::new(16).unwrap_or(Backlog::MAXCONN))
        .map_err(|e| e.desc().to_string())?;
    Ok(sock)
}

struct Client {
    channel: ShimRuntimeChannel,
    greeted: bool,
    /// The `runtime run` that created us.
    creator: bool,
}

enum Action {
    Keep,
    /// Waits for the container to stop.
    Park,
    /// Waits for the exec'd process with this pid (in the container) to end.
    ParkExec(i32),
    Drop,
}

impl Container {
    fn kill_init(&mut self) {
        let _ = pidfd_send_signal(&self.init.pidfd, libc::SIGKILL);
        let _ = spawn::reap(&self.init.pidfd, true);
    }

    /// Give back the address, the veth, the rules and the host ports.
    /// False if something of the network could not be released.
    fn release_network(&mut self) -> bool {
        if let Some(net) = self.network.take() {
            self.state.network = None;
            if let Err(e) = nsbox_host::network::release(&net.root, &self.state.id) {
                log::error!("{}: release the network: {e}", self.state.id);
                return false;
            }
        }
        true
    }

    /// The event loop, until the container stops.
    fn serve(mut self, creator: Option<ShimRuntimeChannel>) -> ! {
        // The `runtime run` that created us keeps its connection for start
        // and wait; it has already said hello.
        let mut clients: Vec<Client> = creator
            .into_iter()
            .map(|channel| Client {
                channel,
                greeted: true,
                creator: true,
            })
            .collect();
        let mut waiters: Vec<Client> = Vec::new();
        loop {
            let (
                init_ready,
                pidfd_ready,
                listener_ready,
                client_ready,
                output_ready,
                attached_ready,
            ) = {
                let mut fds = vec![
                    PollFd::new(self.init.pidfd.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.listener.as_fd(), PollFlags::POLLIN),
                ];
                if let Some(ch) = &self.init_channel {
                    fds.push(PollFd::new(ch.as_fd(), PollFlags::POLLIN));
                }
                let first_output = fds.len();
                for o in &self.outputs {
                    fds.push(PollFd::new(o.fd.as_fd(), PollFlags::POLLIN));
                }
                let first_attached = fds.len();
                for a in &self.attached {
                    fds.push(PollFd::new(a.as_fd(), PollFlags::POLLIN));
                }
                let first_client = fds.len();
                for c in &clients {
                    fds.push(PollFd::new(c.channel.as_fd(), PollFlags::POLLIN));
                }
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(e) => {
                        log::error!("poll: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
                let ready = |f: &PollFd| f.any().unwrap_or(false);
                (
                    self.init_channel.is_some() && ready(&fds[2]),
                    ready(&fds[0]),
                    ready(&fds[1]),
                    fds[first_client..].iter().map(ready).collect::<Vec<_>>(),
                    fds[first_output..first_attached]
                        .iter()
                        .map(ready)
                        .collect::<Vec<_>>(),
                    fds[first_attached..first_client]
                        .iter()
                        .map(ready)
                        .collect::<Vec<_>>(),
                )
            };
            // Backwards, so that removing one leaves the others' indices.
            for i in (0..output_ready.len()).rev() {
                if output_ready[i] && !self.read_output(i, false) {
                    self.close_output(i);
                }
            }
            for i in (0..attached_ready.len()).rev() {
                if attached_ready[i] {
                    self.attached_input(i);
                }
            }
            if init_ready {
                self.read_init();
            }
            if listener_ready {
                while let Ok(fd) = accept4(self.listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
                    clients.push(Client {
                        // SAFETY: accept4 returned a new fd.
                        channel: ShimRuntimeChannel::new(unsafe { OwnedFd::from_raw_fd(fd) }),
                        greeted: false,
                        creator: false,
                    });
                }
            }
            // Serve clients that have spoken; newest accepted have no entry yet.
            let mut keep = Vec::with_capacity(clients.len());
            for (i, mut c) in clients.into_iter().enumerate() {
                if !client_ready.get(i).copied().unwrap_or(false) {
                    keep.push(c);
                    continue;
                }
                match self.handle(&mut c) {
                    Action::Keep => keep.push(c),
                    Action::Park => waiters.push(c),
                    Action::ParkExec(pid) => self.exec_waiters.push((pid, c.channel)),
                    Action::Drop => {}
                }
            }
            clients = keep;
            // tiny-init reports the exit before it exits, and its exit
            // (tearing down the container's namespaces) takes a while: the
            // code is final once reported, so the waiters need not wait.
            if pidfd_ready || self.reported_exit.is_some() {
                // Everyone still connected hears the exit, not only those
                // whose `Wait` has arrived: the `run` that created us sends
                // none, and hears it on the connection it created us with.
                waiters.extend(clients.into_iter().filter(|c| c.greeted));
                self.stopped(waiters);
            }
        }
    }

    /// Log what output `i` has (all of it with `all`, else a bounded
    /// amount, so that a chatty container does not starve the rest); false
    /// once it has ended.
    fn read_output(&mut self, i: usize, all: bool) -> bool {
        let mut buf = [0u8; 32 * 1024];
        // Even "all" is bounded: without a PID namespace of its own, a
        // container's process can outlive tiny-init and write on forever.
        for _ in 0..if all { 1024 } else { 8 } {
            let n = match nix::unistd::read(self.outputs[i].fd.as_raw_fd(), &mut buf) {
                Ok(0) => return false,
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return true,
                // EIO: a terminal whose every slave is closed.
                Err(_) => return false,
            };
            let out = &mut self.outputs[i];
            if let Some(log) = &mut self.log {
                let stream = out.stream;
                out.lines.feed(&buf[..n], |l| {
                    if let Err(e) = log.line(stream, l) {
                        log::warn!("write container.log: {e}");
                    }
                });
            }
            if self.tty.is_some() {
                // Attached runtimes get the terminal's bytes as they are; one
                // that does not keep up loses them rather than stop us.
                self.attached.retain(|a| {
                    match nix::sys::socket::send(
                        a.as_raw_fd(),
                        &buf[..n],
                        nix::sys::socket::MsgFlags::MSG_NOSIGNAL
                            | nix::sys::socket::MsgFlags::MSG_DONTWAIT,
                    ) {
                        Ok(_) | Err(Errno::EAGAIN) => true,
                        Err(_) => false,
                    }
                });
            }
        }
        true
    }

    fn close_output(&mut self, i: usize) {
        let mut out = self.outputs.remove(i);
        if let Some(log) = &mut self.log {
            out.lines.finish(|l| {
                let _ = log.line(out.stream, l);
            });
        }
    }

    /// Keys from an attached runtime, for the terminal.
    fn attached_input(&mut self, i: usize) {
        let mut buf = [0u8; 4096];
        match nix::unistd::read(self.attached[i].as_raw_fd(), &mut buf) {
            Ok(0) => {
                self.attached.remove(i);
            }
            Ok(n) => {
                if let Some(master) = &self.tty {
                    // The terminal's input queue holds 4 KiB: a person
                    // typing never fills it; a paste that does loses the rest
                    // rather than stop the shim.
                    let _ = nix::unistd::write(master, &buf[..n]);
                }
            }
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
            Err(_) => {
                self.attached.remove(i);
            }
        }
    }

    fn attach(&mut self) -> Result<[OwnedFd; 2], Failure> {
        let Some(master) = &self.tty else {
            return Err(failure(
                "attach",
                "the container has no terminal kept by its shim (attach needs one run \
                 detached with a terminal: `spec --tty` or `run -d -t`); see `runtime logs`"
                    .into(),
            ));
        };
        if self.state.status != Status::Running {
            return Err(failure(
                "attach",
                format!("the container is {}, not running", self.state.status),
            ));
        }
        let (ours, theirs) = nix::sys::socket::socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| failure("attach", e.desc().into()))?;
        let dup = master
            .try_clone()
            .map_err(|e| failure("attach", e.to_string()))?;
        set_nonblocking(ours.as_raw_fd());
        self.attached.push(ours);
        Ok([theirs, dup])
    }

    fn read_init(&mut self) {
        let Some(ch) = &self.init_channel else { return };
        match ch.recv() {
            Ok((msg, _)) => self.init_event(msg),
            // Closed: tiny-init is ending; the pidfd tells when.
            Err(_) => self.init_channel = None,
        }
    }

    /// What tiny-init says unasked: the workload's or an exec's end.
    fn init_event(&mut self, msg: InitToShim) {
        match msg {
            InitToShim::Exited { code } => self.reported_exit = Some(code),
            InitToShim::ExecExited { pid, code } => {
                let (done, rest) = std::mem::take(&mut self.exec_waiters)
                    .into_iter()
                    .partition(|(p, _)| *p == pid);
                self.exec_waiters = rest;
                for (_, w) in done {
                    let _ = w.send(&ShimToRuntime::Exited { code }, &[]);
                }
            }
            InitToShim::Failed(f) => {
                self.reported_exit = Some(f.exit_code);
                log::warn!("{}: {f}", self.state.id);
            }
            other => log::warn!("{}: unexpected from tiny-init: {other:?}", self.state.id),
        }
    }

    /// Ask tiny-init to run `process`; (its pid in the container, on the host).
    fn exec(
        &mut self,
        process: Box<protocol::Process>,
        stdio: Vec<OwnedFd>,
    ) -> Result<(i32, i32, Option<OwnedFd>), Failure> {
        if self.state.status != Status::Running {
            return Err(failure(
                "exec",
                format!("the container is {}, not running", self.state.status),
            ));
        }
        if stdio.len() != 3 {
            return Err(failure(
                "exec",
                format!("expected 3 stdio descriptors, got {}", stdio.len()),
            ));
        }
        let Some(ch) = &self.init_channel else {
            return Err(failure("exec", "tiny-init has gone".into()));
        };
        let fds: Vec<i32> = stdio.iter().map(|f| f.as_raw_fd()).collect();
        ch.send(&ShimToInit::Exec(process), &fds)
            .map_err(|e| failure("exec", format!("tell tiny-init: {e}")))?;
        drop(stdio);
        loop {
            let Some(ch) = &self.init_channel else {
                return Err(failure("exec", "tiny-init has gone".into()));
            };
            match ch.recv() {
                Ok((InitToShim::ExecStarted { pid }, pty)) => {
                    // A process that has already ended (and been reaped by
                    // tiny-init) has no host pid any more: 0, and its exit
                    // still comes.
                    let host = self.host_pid_of(pid).unwrap_or(0);
                    return Ok((pid, host, pty.into_iter().next()));
                }
                Ok((InitToShim::Failed(f), _)) => return Err(f),
                Ok((other, _)) => self.init_event(other),
                Err(e) => {
                    self.init_channel = None;
                    return Err(failure("exec", format!("tiny-init: {e}")));
                }
            }
        }
    }

    /// The host pid of tiny-init's child with pid `pid` in the container.
    fn host_pid_of(&self, pid: i32) -> Option<i32> {
        let init = self.init.pid;
        let children =
            std::fs::read_to_string(format!("/proc/{init}/task/{init}/children")).ok()?;
        children
            .split_whitespace()
            .filter_map(|c| c.parse::<i32>().ok())
            .find(|host| {
                std::fs::read_to_string(format!("/proc/{host}/status"))
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find(|l| l.starts_with("NSpid:"))
                            .and_then(|l| l.split_whitespace().last())
                            .and_then(|p| p.parse::<i32>().ok())
                    })
                    == Some(pid)
            })
    }

    fn handle(&mut self, c: &mut Client) -> Action {
        let (msg, fds) = match c.channel.recv() {
            Ok(m) => m,
            Err(ChannelError::Closed) => return Action::Drop,
            Err(e) => {
                let _ = c.channel.send_error(failure("read request", e.to_string()));
                return Action::Drop;
            }
        };
        if !c.greeted {
            return match msg {
                RuntimeToShim::Hello {
                    version: PROTOCOL_VERSION,
                } => {
                    c.greeted = true;
                    Action::Keep
                }
                other => {
                    let _ = c.channel.send_error(failure(
                        "handshake",
                        format!("expected Hello with protocol version {PROTOCOL_VERSION}, got {other:?}"),
                    ));
                    Action::Drop
                }
            };
        }
        match msg {
            RuntimeToShim::Start => {
                let reply = match self.start(true) {
                    Ok(pid) => ShimToRuntime::Started { pid },
                    Err(f) => ShimToRuntime::Error(f),
                };
                let _ = c.channel.send(&reply, &[]);
                Action::Keep
            }
            RuntimeToShim::Wait => Action::Park,
            RuntimeToShim::Attach => {
                match self.attach() {
                    Ok(fds) => {
                        let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
                        let _ = c.channel.send(&ShimToRuntime::Attached, &raw);
                    }
                    Err(f) => {
                        let _ = c.channel.send_error(f);
                    }
                }
                Action::Drop
            }
            RuntimeToShim::Exec { process, wait } => match self.exec(process, fds) {
                Ok((container_pid, host_pid, pty)) => {
                    let pty: Vec<i32> = pty.iter().map(|f| f.as_raw_fd()).collect();
                    let _ = c
                        .channel
                        .send(&ShimToRuntime::ExecStarted { pid: host_pid }, &pty);
                    if wait {
                        Action::ParkExec(container_pid)
                    } else {
                        Action::Drop
                    }
                }
                Err(f) => {
                    let _ = c.channel.send_error(f);
                    Action::Drop
                }
            },
            other => {
                let _ = c.channel.send_error(failure(
                    "request",
                    format!("{other:?} is not a request a running shim takes"),
                ));
                Action::Drop
            }
        }
    }

    /// Start the workload (`ask`: tell tiny-init to; else it has been told
    /// in its config) and wait until it runs.
    fn start(&mut self, ask: bool) -> Result<i32, Failure> {
        if self.state.status != Status::Created {
            return Err(failure(
                "start",
                format!("the container is {}, not created", self.state.status),
            ));
        }
        let Some(ch) = &self.init_channel else {
            return Err(failure("start", "tiny-init has gone".into()));
        };
        if ask {
            ch.send(&ShimToInit::Start, &[])
                .map_err(|e| failure("start", format!("tell tiny-init: {e}")))?;
        }
        match ch.recv() {
            Ok((InitToShim::Started { pid }, _)) => {
                self.state.status = Status::Running;
                if let Err(e) = self.dir.save(&self.state) {
                    log::error!("{}: record running: {e}", self.state.id);
                }
                Ok(pid)
            }
            Ok((InitToShim::Failed(f), _)) => {
                self.reported_exit = Some(f.exit_code);
                Err(f)
            }
            Ok((InitToShim::Exited { code }, _)) => {
                self.reported_exit = Some(code);
                Err(failure(
                    "start",
                    format!("the container exited with {code} before it started"),
                ))
            }
            Ok((other, _)) => Err(failure("start", format!("expected Started, got {other:?}"))),
            Err(e) => Err(failure("start", format!("tiny-init: {e}"))),
        }
    }

    /// tiny-init has ended: record the exit status durably, then tell every
    /// waiter, then go.
    fn stopped(mut self, waiters: Vec<Client>) -> ! {
        // Woken by the pidfd: drain a last `Exited` that may sit unread
        // beside it (tiny-init is gone, so the channel ends at once). Woken
        // by `Exited`: not a read more, since the channel's end comes only
        // once tiny-init's exit has torn down the container's namespaces
        // (its last fput runs late in exit), 0.6 ms here.
        while self.reported_exit.is_none() && self.init_channel.is_some() {
            self.read_init();
        }
        self.init_channel = None;
        // Our own child we reap; the caller's we cannot, and tiny-init told
        // us its code unless it was killed before it could: by SIGKILL then.
        let code = spawn::reap(&self.init.pidfd, false)
            .or(self.reported_exit)
            .unwrap_or(128 + libc::SIGKILL);
        // The last output first: `logs -f` ends once it sees the
        // container stopped, and must have read everything by then.
        for i in (0..self.outputs.len()).rev() {
            self.read_output(i, true);
            self.close_output(i);
        }
        self.state.status = Status::Stopped;
        self.state.exit_code = Some(code);
        self.state.finished = Some(nsbox_host::state::now_rfc3339());
        let cgroup = self.state.cgroup.clone();
        if let Some(kills) = cgroup.as_ref().and_then(cgroups::oom_kills) {
            if kills > 0 {
                self.state.oom_kills = kills;
                log::warn!(
                    "{}: the OOM killer killed {kills} process(es) of the container; it exited with {code}",
                    self.state.id
                );
            }
        }
        if let Err(e) = self.dir.save_durable(&self.state) {
            log::error!("{}: record exit status {code}: {e}", self.state.id);
        }
        // Our exit status says whether everything of the host side went: a
        // `runtime run` that sees 0 has nothing left to clean after us.
        let mut clean = true;
        if self.network.is_some() {
            clean &= self.release_network();
            if let Err(e) = self.dir.save(&self.state) {
                log::error!("{}: record the network released: {e}", self.state.id);
            }
        }
        let _ = std::fs::remove_file(self.dir.socket());
        let mut creator_told = false;
        for w in waiters {
            // A waiter's unread `Wait` makes the kernel report ECONNRESET
            // ahead of this `Exited` once we exit; the channel reads on past
            // it (protocol::Channel::recv), so nothing is drained here.
            let told = w.channel.send(&ShimToRuntime::Exited { code }, &[]);
            creator_told |= w.creator && told.is_ok();
        }
        // Exec'd processes still running died with the PID namespace, by
        // SIGKILL.
        for (_, w) in std::mem::take(&mut self.exec_waiters) {
            let _ = w.send(
                &ShimToRuntime::Exited {
                    code: 128 + libc::SIGKILL,
                },
                &[],
            );
        }
        // Whatever is left in the cgroup (a container without a PID
        // namespace of its own) goes with it, once tiny-init has left it;
        // by the foreground `run` that created us if it has our answer.
        // After the answers: a `run` removes the state directory meanwhile
        // (nothing here touches it any more), and waits for our exit status.
        if !nsbox_host::proc::wait_pidfd(&self.init.pidfd, CGROUP_TIMEOUT) {
            log::warn!("{}: tiny-init is still exiting", self.state.id);
        }
        let _ = spawn::reap(&self.init.pidfd, false);
        if self.caller_removes_cgroup && creator_told {
            log::debug!("{}: the cgroup is left to `run`", self.state.id);
        } else if let Some(cg) = &cgroup {
            if let Err(e) = cgroups::destroy(cg, CGROUP_TIMEOUT) {
                log::error!("{}: remove cgroup: {e}", self.state.id);
                clean = false;
            }
        }
        log::debug!("{}: stopped with {code}", self.state.id);
        std::process::exit(if clean { 0 } else { EXIT_LEFT_SOMETHING })
    }
}
