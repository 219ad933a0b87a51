//! From the runtime's `Create` to a created container. Each step below
//! decides one thing; what the steps make (tiny-init, the network
//! reservation, and the cgroup the runtime made) is owned by a
//! [`Rollback`] until the runtime has heard `Created`.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nsbox_host::cgroups;
use nsbox_host::network::{self, Endpoint, Reserved};
use nsbox_host::proc::ProcessId;
use nsbox_host::state::{ContainerDir, Status};
use nsbox_host::teardown::HostSide;
use nsbox_host::testhooks::{fault, network_delay, shim_start_timeout};
use protocol::{
    BridgeNetwork, ChannelError, CreateRequest, Failure, NamespaceKind, ShimInitChannel,
    ShimRuntimeChannel,
};

use crate::args::Args;
use crate::attach::Terminal;
use crate::exe::Exe;
use crate::failure;
use crate::handshake::{Handshake, StartWhen};
use crate::output::{self, Output};
use crate::rollback::Rollback;
use crate::server::{Container, Network};
use crate::spawn::{self, CgroupEntry};

/// The runtime's `Hello` and `Create`, with the fds to preserve for the
/// workload. Logging starts here: until `Create` comes, the state
/// directory may not exist, or be another container's, and is not ours to
/// touch (our log is there). Exits when there is nothing to create.
pub fn receive(
    runtime: &ShimRuntimeChannel,
    args: &Args,
    dir: &ContainerDir,
) -> (Box<CreateRequest>, Vec<OwnedFd>) {
    let received = runtime
        .wait_for_hello()
        .and_then(|_| runtime.wait_for_create());
    let log_file = args.log.clone().unwrap_or_else(|| dir.shim_log());
    match received {
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
            std::process::exit(1)
        }
    }
}

/// The container, armed to roll back until the runtime has heard
/// `Created`, and its terminal's master for the runtime when the shim
/// does not keep it.
pub fn create(
    dir: &ContainerDir,
    req: &CreateRequest,
    preserved: Vec<OwnedFd>,
    runtime: &ShimRuntimeChannel,
) -> Result<(Container, Option<OwnedFd>), Failure> {
    check_preserved(req, &preserved)?;
    let mut state = dir
        .load()
        .map_err(|e| failure("read state", e.to_string()))?;
    let mut rollback = Rollback::new(&req.id);
    let reserved = reserve_network(req, dir, &mut rollback)?;
    let exe = Exe::for_container(req).map_err(|e| Failure::from_error("prepare tiny-init", &e))?;
    let (ours, theirs) =
        protocol::seqpacket_pair().map_err(|e| failure("socketpair", e.desc().into()))?;
    let argv = init_argv(req)?;
    let userns_sync = userns_sync(req)?;
    // A logged container writes into pipes we read (a terminal's output
    // comes from its master instead); the runtime's stdio is not its.
    let pipes = if req.log_output {
        output::pipes(req.init.process.terminal)
            .map_err(|e| failure("make the output pipes", e.to_string()))?
    } else {
        Vec::new()
    };
    // A v1 cgroup is a directory in each of a dozen hierarchies, which
    // the runtime makes after `Create` (0.3 ms and more): the clone, which
    // makes the namespaces (the network's alone 0.45 ms), goes on
    // meanwhile, and its child joins the cgroup once it exists, before
    // anything else (the namespaces' own kernel memory is then charged to
    // our cgroup, not the container's). Not with a user namespace: in a
    // new one the child is born nobody, and the `tasks` files are opened
    // for it before the clone, with our credentials; in one joined by
    // path, a new PID namespace has the child fork tiny-init into it, and
    // the clone returns only with tiny-init's pid. v2's child is born in
    // the cgroup (clone3).
    let user_ns = req.namespaces.iter().any(|n| n.kind == NamespaceKind::User);
    let cgroup_go = match &req.cgroup {
        Some(cg) if !cg.paths.unified && cg.paths.systemd.is_none() && !user_ns => Some(
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| failure("pipe", e.desc().into()))?,
        ),
        _ => {
            wait_for_cgroup(req, runtime, &mut rollback)?;
            None
        }
    };
    let (init, early) = clone_init(
        req,
        &theirs,
        &exe,
        &argv,
        userns_sync.as_ref().map(|p| &p.0),
        cgroup_go
            .as_ref()
            .map(|(rd, wr)| (rd.as_raw_fd(), wr.as_raw_fd())),
    )?;
    rollback
        .init_cloned(&init)
        .map_err(|e| failure("keep tiny-init's pidfd", e.to_string()))?;
    if let Some((_, go)) = cgroup_go {
        // Not made: the rollback kills the child, which waits still.
        wait_for_cgroup(req, runtime, &mut rollback)?;
        nix::unistd::write(&go, &[1])
            .map_err(|e| failure("let tiny-init join its cgroup", e.desc().into()))?;
    }
    fault("shim", "after-clone");
    enter_scope(req, &init, runtime, &mut rollback)?;
    drop(theirs);
    drop(exe);
    let mut channel = ShimInitChannel::new(ours);
    let start = when_to_start(req);
    let handshake = Handshake {
        req,
        state: &state,
        init: &init,
        early: &early,
        channel: &channel,
    };
    // The bridge is plugged in while tiny-init, which has its config, sets
    // up its mounts (its network namespace exists from the clone on): off
    // the critical path.
    let mut reserved = reserved;
    let mut plugged = None;
    let pty = handshake.run(userns_sync.map(|p| p.1), preserved, start, || {
        if let (Some(r), Some(net)) = (reserved.take(), &req.network) {
            plugged = Some(plug_network(net, r, &init)?);
        }
        Ok(())
    })?;
    fault("shim", "after-ready");
    let network = plugged.map(|(network, endpoint)| {
        state.network = Some(endpoint);
        network
    });
    let _ = channel.set_timeout(Some(shim_start_timeout()));
    let listener = nsbox_host::socket::listen_seqpacket(&dir.socket())
        .map_err(|e| Failure::from_error("listen on shim.sock", &e))?;
    let init_id = ProcessId::of(init.pid)
        .ok_or_else(|| failure("read tiny-init's start time", "it has ended".into()))?;
    let (output, terminal, pty) = keep_output(dir, req, pipes, pty)?;
    state.recorded_status = Status::Created;
    state.init = Some(init_id);
    dir.save(&state)
        .map_err(|e| failure("write state", e.to_string()))?;
    fault("shim", "after-save");
    let container = Container {
        dir: dir.clone(),
        host: HostSide {
            id: req.id.clone(),
            network_root: req.network.as_ref().map(|n| PathBuf::from(&n.root)),
            cgroup: state.cgroup.clone(),
            stop_scope: None,
        },
        state,
        init,
        init_channel: Some(channel),
        listener: Some(listener),
        reported_exit: None,
        exec_waiters: Vec::new(),
        network,
        output,
        terminal,
        init_started_at_once: start != StartWhen::OnStart,
        caller_removes_cgroup: req.caller_removes_cgroup,
        rollback,
        oom: req
            .cgroup
            .as_ref()
            .and_then(|c| crate::oom::OomWatch::open(&c.paths)),
    };
    Ok((container, pty))
}

fn check_preserved(req: &CreateRequest, preserved: &[OwnedFd]) -> Result<(), Failure> {
    if preserved.len() == req.init.preserve_fds as usize {
        return Ok(());
    }
    Err(failure(
        "receive preserved fds",
        format!(
            "expected {}, got {}",
            req.init.preserve_fds,
            preserved.len()
        ),
    ))
}

/// A bridged container's address and host ports, reserved before the
/// clone: tiny-init bind-mounts the /etc files this writes.
fn reserve_network(
    req: &CreateRequest,
    dir: &ContainerDir,
    rollback: &mut Rollback,
) -> Result<Option<Reserved>, Failure> {
    let Some(net) = &req.network else {
        return Ok(None);
    };
    let reserved =
        network::reserve(net, &req.id, &dir.path).map_err(|e| failure("network", e.to_string()))?;
    rollback.network_reserved(PathBuf::from(&net.root));
    Ok(Some(reserved))
}

fn init_argv(req: &CreateRequest) -> Result<[CString; 2], Failure> {
    let state_dir =
        CString::new(req.state_dir.as_str()).map_err(|_| failure("state dir", "NUL".into()))?;
    Ok([c"tiny-init".to_owned(), state_dir])
}

/// In a new user namespace the clone child waits on a pipe until its maps
/// are written: (read end, the child's; write end, ours).
fn userns_sync(req: &CreateRequest) -> Result<Option<(OwnedFd, OwnedFd)>, Failure> {
    let new_userns = req
        .namespaces
        .iter()
        .any(|n| n.kind == NamespaceKind::User && n.path.is_none());
    if !new_userns {
        return Ok(None);
    }
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map(Some)
        .map_err(|e| failure("pipe", e.desc().into()))
}

/// A `run` goes straight on to the workload after `Ready`, except that a
/// bridged container's must wait for its network: tiny-init's set-up and
/// the shim's plugging in race, and a workload started first found no
/// route (`wget: ... Network is unreachable`, once in a CI run).
fn when_to_start(req: &CreateRequest) -> StartWhen {
    match (req.start, &req.network) {
        (false, _) => StartWhen::OnStart,
        (true, None) => StartWhen::AtOnce,
        (true, Some(_)) => StartWhen::AfterMeanwhile,
    }
}

/// Clone tiny-init into the cgroup the runtime makes: on v1 the clone child
/// moves itself in before anything else (once the cgroup exists, when
/// `cgroup_go` is given: see `create`); on v2 it is born there
/// (cgroups::self_join_files says why it is never moved there by us).
fn clone_init(
    req: &CreateRequest,
    socket: &OwnedFd,
    exe: &Exe,
    argv: &[CString],
    userns_sync: Option<&OwnedFd>,
    cgroup_go: Option<(RawFd, RawFd)>,
) -> Result<(spawn::Child, spawn::EarlyReport), Failure> {
    let cgroup_failure = |e: cgroups::CgroupError| failure("cgroup", e.to_string());
    // What the entry borrows, kept here until the clone is done.
    let tasks: Vec<CString>;
    let files: Vec<std::fs::File>;
    let join: Vec<RawFd>;
    let dir: OwnedFd;
    let entry = match (&req.cgroup, cgroup_go) {
        // systemd moves tiny-init into its scope once cloned (enter_scope).
        (Some(cg), _) if cg.paths.systemd.is_some() => CgroupEntry::None,
        (Some(cg), Some(go)) => {
            tasks = cgroups::self_join_paths(&cg.paths)
                .into_iter()
                .map(|p| CString::new(p.into_os_string().into_encoded_bytes()))
                .collect::<Result<_, _>>()
                .map_err(|e| failure("cgroup", e.to_string()))?;
            CgroupEntry::JoinWhenMade { tasks: &tasks, go }
        }
        (Some(cg), None) if cg.paths.unified => {
            dir = cgroups::open_dir(&cg.paths).map_err(cgroup_failure)?;
            CgroupEntry::Into(dir.as_raw_fd())
        }
        (Some(cg), None) => {
            files = cgroups::self_join_files(&cg.paths).map_err(cgroup_failure)?;
            join = files.iter().map(|f| f.as_raw_fd()).collect();
            CgroupEntry::Join(&join)
        }
        (None, _) => CgroupEntry::None,
    };
    spawn::clone_init(
        req.caller_reaps,
        &req.namespaces,
        socket,
        exe,
        argv,
        userns_sync,
        entry,
        req.time_offsets.as_bytes(),
    )
    .map_err(|e| Failure::from_error("start tiny-init", &e))
}

/// The runtime makes a cgroupfs cgroup while we prepare the clone, and
/// says when it exists (or why it does not): ours to remove from then on.
fn wait_for_cgroup(
    req: &CreateRequest,
    runtime: &ShimRuntimeChannel,
    rollback: &mut Rollback,
) -> Result<(), Failure> {
    let Some(cg) = req.cgroup.as_ref().filter(|c| c.paths.systemd.is_none()) else {
        return Ok(());
    };
    runtime.wait_for_cgroup().map_err(|e| match e {
        ChannelError::Failed(f) => f,
        other => Failure::from_error("cgroup: wait for the runtime to make it", &other),
    })?;
    rollback.cgroup_made(cg.paths.clone());
    Ok(())
}

/// `--systemd-cgroup`: systemd makes the scope with tiny-init in it (a
/// scope cannot be made empty, so not before the clone), while tiny-init
/// execs and waits for our `Hello`; then the limits go into its files, as
/// on any v2 cgroup. The runtime asks systemd, on our word (`MakeScope`):
/// it has the D-Bus client, which a shim, living as long as its
/// container, should not carry.
fn enter_scope(
    req: &CreateRequest,
    init: &spawn::Child,
    runtime: &ShimRuntimeChannel,
    rollback: &mut Rollback,
) -> Result<(), Failure> {
    let Some(cg) = req.cgroup.as_ref().filter(|c| c.paths.systemd.is_some()) else {
        return Ok(());
    };
    runtime.make_scope(init.pid).map_err(|e| match e {
        ChannelError::Failed(f) => f,
        other => Failure::from_error("cgroup: ask the runtime for a systemd scope", &other),
    })?;
    rollback.cgroup_made(cg.paths.clone());
    cgroups::apply(&cg.paths, &cg.resources, true).map_err(|e| Failure::from_error("cgroup", &e))
}

/// Plug the container into its bridge, through tiny-init's network
/// namespace (tiny-init is our unreaped child: its pid names it until we
/// reap); its place, for the state.
fn plug_network(
    net: &BridgeNetwork,
    reserved: Reserved,
    init: &spawn::Child,
) -> Result<(Network, Endpoint), Failure> {
    network_delay();
    let ns = std::fs::File::open(format!("/proc/{}/ns/net", init.pid))
        .map_err(|e| failure("network", e.to_string()))?;
    network::attach(
        Path::new(&net.root),
        &reserved.endpoint,
        std::os::fd::AsFd::as_fd(&ns),
    )
    .map_err(|e| failure("network", e.to_string()))?;
    fault("shim", "after-network");
    Ok((
        Network {
            _port_holds: reserved.port_holds,
        },
        reserved.endpoint,
    ))
}

/// What becomes of the container's output: a logged container's streams
/// go to container.log, and its terminal stays here for `attach`; else the
/// terminal's master goes to the runtime (returned third).
fn keep_output(
    dir: &ContainerDir,
    req: &CreateRequest,
    mut pipes: Vec<(OwnedFd, &'static str)>,
    pty: Option<OwnedFd>,
) -> Result<(Output, Option<Terminal>, Option<OwnedFd>), Failure> {
    if !req.log_output {
        return Ok((Output::default(), None, pty));
    }
    let mut terminal = None;
    if let Some(master) = pty {
        let dup = master
            .try_clone()
            .map_err(|e| failure("keep the terminal", e.to_string()))?;
        terminal = Some(Terminal::new(dup));
        pipes.push((master, "stdout"));
    }
    let output = Output::logged(&dir.path, pipes)
        .map_err(|e| failure("open container.log", e.to_string()))?;
    Ok((output, terminal, None))
}
