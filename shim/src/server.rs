//! The server loop: from `Created` until the container stops, the shim
//! polls tiny-init (its pidfd and its channel), the container's output,
//! the attached terminals, its listening socket and the runtimes connected
//! to it, and answers `start`, `wait`, `exec` and `attach`.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{accept4, SockFlag};
use nsbox_host::state::{ContainerDir, State, Status};
use nsbox_host::teardown::HostSide;
use protocol::{
    ChannelError, Created, Failure, InitToShim, RuntimeToShim, ShimInitChannel, ShimRuntimeChannel,
    ShimToInit, ShimToRuntime, PROTOCOL_VERSION,
};

use crate::attach::{self, Terminal};
use crate::oom::OomWatch;
use crate::output::Output;
use crate::rollback::Rollback;
use crate::{failure, spawn};

pub struct Container {
    pub dir: ContainerDir,
    pub state: State,
    /// What the stop releases (see nsbox_host::teardown).
    pub host: HostSide,
    pub init: spawn::Child,
    /// None once tiny-init's end has closed it.
    pub init_channel: Option<ShimInitChannel>,
    /// None once the stop is recorded.
    pub listener: Option<OwnedFd>,
    /// The exit code tiny-init reported, for when we cannot reap it.
    pub reported_exit: Option<i32>,
    /// Runtimes waiting for an exec'd process (by its pid in the container).
    pub exec_waiters: Vec<(i32, ShimRuntimeChannel)>,
    pub network: Option<Network>,
    /// A logged container's streams.
    pub output: Output,
    /// A logged container's terminal, for `attach`.
    pub terminal: Option<Terminal>,
    /// tiny-init was told to start the workload right after Ready.
    pub init_started_at_once: bool,
    /// See CreateRequest::caller_removes_cgroup.
    pub caller_removes_cgroup: bool,
    /// Armed until the runtime has heard `Created`.
    pub rollback: Rollback,
    /// OOM kills as they happen (v2); None once the cgroup is gone.
    pub oom: Option<OomWatch>,
}

/// A bridged container's host ports, held by these sockets for as long as
/// this shim lives.
pub struct Network {
    pub _port_holds: Vec<OwnedFd>,
}

/// A runtime connected to our socket (or the one that created us).
pub struct Client {
    pub channel: ShimRuntimeChannel,
    greeted: bool,
    /// The `runtime run` that created us.
    pub creator: bool,
}

/// What becomes of a client after its request.
enum Action {
    Keep,
    /// Waits for the container to stop.
    Park,
    /// Waits for the exec'd process with this pid (in the container) to end.
    ParkExec(i32),
    Drop,
}

/// What one poll found ready, by what it is.
struct Ready {
    pidfd: bool,
    oom: bool,
    init: bool,
    listener: bool,
    outputs: Vec<bool>,
    attached: Vec<bool>,
    clients: Vec<bool>,
}

impl Container {
    /// Tell the runtime the container is created (with the terminal's
    /// master, when the runtime keeps it): from then on the container is
    /// the runtime's to know of, and nothing is rolled back. A runtime that
    /// died before it heard us knows nothing of it: everything goes.
    pub fn announce(mut self, runtime: &ShimRuntimeChannel, pty: Option<OwnedFd>) -> Container {
        let pty: Vec<i32> = pty.iter().map(|f| f.as_raw_fd()).collect();
        let created = ShimToRuntime::Created(Created {
            init_pid: self.init.pid,
            init_start_time: self.state.init.map_or(0, |i| i.start_time),
        });
        if let Err(e) = runtime.send(&created, &pty) {
            log::error!(
                "{}: tell runtime the container is created: {e}",
                self.state.id
            );
            drop(self);
            std::process::exit(1);
        }
        self.rollback.disarm();
        self
    }

    /// `run`: no `Start` to wait for from the runtime (tiny-init has been
    /// told, in its config or, for a bridged container, by the handshake);
    /// the runtime meanwhile sends the terminal on and writes the pid
    /// file.
    pub fn start_for_run(&mut self, runtime: &ShimRuntimeChannel) {
        let ask = !self.init_started_at_once;
        let reply = match self.start(ask) {
            Ok(pid) => ShimToRuntime::Started { pid },
            Err(f) => ShimToRuntime::Error(f),
        };
        let _ = runtime.send(&reply, &[]);
    }

    /// The event loop, until the container stops.
    pub fn serve(mut self, creator: Option<ShimRuntimeChannel>) -> ! {
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
            let ready = self.poll(&clients);
            // Before the stop is recorded: the count goes with the cgroup.
            if ready.oom {
                self.read_oom();
            }
            // Backwards, so that removing one leaves the others' indices.
            for i in (0..ready.outputs.len()).rev() {
                if ready.outputs[i] {
                    self.output.read(i, self.terminal.as_mut());
                }
            }
            if let Some(t) = &mut self.terminal {
                for i in (0..ready.attached.len()).rev() {
                    if ready.attached[i] {
                        t.input(i);
                    }
                }
            }
            if ready.init {
                self.read_init();
            }
            // tiny-init reports the exit before it exits, and its exit
            // (tearing down the container's namespaces) takes a while: the
            // code is final once reported, so nobody need wait for it. It is
            // recorded before anything else is answered (crate doc: "The
            // order of a stop").
            let stopped = ready.pidfd || self.reported_exit.is_some();
            if stopped {
                self.record_exit();
            }
            if ready.listener {
                self.accept(&mut clients);
            }
            clients = self.serve_clients(clients, &ready.clients, &mut waiters);
            if stopped {
                // Everyone still connected hears the exit, not only those
                // whose `Wait` has arrived: the `run` that created us sends
                // none, and hears it on the connection it created us with.
                waiters.extend(clients.into_iter().filter(|c| c.greeted));
                self.finish(waiters);
            }
        }
    }

    fn poll(&self, clients: &[Client]) -> Ready {
        let mut fds = vec![PollFd::new(self.init.pidfd.as_fd(), PollFlags::POLLIN)];
        let at = |fds: &Vec<PollFd>| fds.len();
        let listener_at = self.listener.as_ref().map(|l| {
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
            at(&fds) - 1
        });
        let init_at = self.init_channel.as_ref().map(|ch| {
            fds.push(PollFd::new(ch.as_fd(), PollFlags::POLLIN));
            at(&fds) - 1
        });
        let oom_at = self.oom.as_ref().and_then(|w| w.fd()).map(|fd| {
            fds.push(PollFd::new(fd, PollFlags::POLLPRI));
            at(&fds) - 1
        });
        let first_output = at(&fds);
        fds.extend(self.output.fds().map(|f| PollFd::new(f, PollFlags::POLLIN)));
        let first_attached = at(&fds);
        if let Some(t) = &self.terminal {
            fds.extend(t.attached().map(|f| PollFd::new(f, PollFlags::POLLIN)));
        }
        let first_client = at(&fds);
        fds.extend(
            clients
                .iter()
                .map(|c| PollFd::new(c.channel.as_fd(), PollFlags::POLLIN)),
        );
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                log::error!("poll: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let ready = |f: &PollFd| f.any().unwrap_or(false);
        let ready_at = |i: Option<usize>| i.is_some_and(|i| ready(&fds[i]));
        Ready {
            pidfd: ready(&fds[0]),
            oom: ready_at(oom_at),
            init: ready_at(init_at),
            listener: ready_at(listener_at),
            outputs: fds[first_output..first_attached]
                .iter()
                .map(ready)
                .collect(),
            attached: fds[first_attached..first_client]
                .iter()
                .map(ready)
                .collect(),
            clients: fds[first_client..].iter().map(ready).collect(),
        }
    }

    /// memory.events changed: the count again (kept once the cgroup is
    /// gone).
    pub fn read_oom(&mut self) {
        if let Some(w) = &mut self.oom {
            w.read();
        }
    }

    #[allow(unsafe_code)]
    fn accept(&self, clients: &mut Vec<Client>) {
        let Some(listener) = &self.listener else {
            return;
        };
        while let Ok(fd) = accept4(listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
            // SAFETY: accept4 returned a new fd that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            clients.push(Client {
                channel: ShimRuntimeChannel::new(fd),
                greeted: false,
                creator: false,
            });
        }
    }

    /// Serve the clients that have spoken (`ready`; those accepted since
    /// the poll have no entry yet); the ones still connected are returned.
    fn serve_clients(
        &mut self,
        clients: Vec<Client>,
        ready: &[bool],
        waiters: &mut Vec<Client>,
    ) -> Vec<Client> {
        let mut keep = Vec::with_capacity(clients.len());
        for (i, mut c) in clients.into_iter().enumerate() {
            if !ready.get(i).copied().unwrap_or(false) {
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
        keep
    }

    /// One request of client `c`.
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
                let status = self.state.recorded_status;
                let attached = match &mut self.terminal {
                    Some(t) => t.attach(status),
                    None => Err(attach::no_terminal()),
                };
                match attached {
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
        self.state
            .recorded_status
            .can_start()
            .map_err(|e| failure("start", e.to_string()))?;
        let Some(ch) = &self.init_channel else {
            return Err(failure("start", "tiny-init has gone".into()));
        };
        if ask {
            ch.send(&ShimToInit::Start, &[])
                .map_err(|e| failure("start", format!("tell tiny-init: {e}")))?;
        }
        match ch.wait_for_started() {
            Ok(pid) => {
                self.state.recorded_status = Status::Running;
                if let Err(e) = self.dir.save(&self.state) {
                    log::error!("{}: record running: {e}", self.state.id);
                }
                Ok(pid)
            }
            Err(ChannelError::Failed(f)) => {
                self.reported_exit = Some(f.exit_code);
                Err(f)
            }
            Err(e @ ChannelError::Exited(code)) => {
                self.reported_exit = Some(code);
                Err(Failure::from_error("start", &e))
            }
            Err(e) => Err(failure("start", format!("tiny-init: {e}"))),
        }
    }

    pub fn read_init(&mut self) {
        let Some(ch) = &self.init_channel else { return };
        match ch.recv() {
            Ok((msg, _)) => self.init_event(msg),
            // Closed: tiny-init is ending; the pidfd tells when.
            Err(_) => self.init_channel = None,
        }
    }

    /// What tiny-init says unasked: the workload's or an exec's end.
    pub fn init_event(&mut self, msg: InitToShim) {
        match msg {
            InitToShim::Exited { code } => self.reported_exit = Some(code),
            InitToShim::ExecExited { pid, code } => self.exec_exited(pid, code),
            InitToShim::Failed(f) => {
                self.reported_exit = Some(f.exit_code);
                log::warn!("{}: {f}", self.state.id);
            }
            other => log::warn!("{}: unexpected from tiny-init: {other:?}", self.state.id),
        }
    }
}
