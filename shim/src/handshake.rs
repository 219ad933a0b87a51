//! The exchange with tiny-init from its clone to `Ready`: its maps (in a
//! new user namespace), `Hello`, its `Config`, the create-time hooks while
//! it waits before pivot_root, and `Ready` with the terminal's master.

use std::os::fd::{AsRawFd, OwnedFd};

use nsbox_host::hooks;
use nsbox_host::proc::pidfd_send_signal;
use nsbox_host::state::{State, Status};
use protocol::{
    ChannelError, CreateRequest, Failure, NamespaceKind, ShimInitChannel, ShimToInit,
    PROTOCOL_VERSION,
};

use crate::{failure, idmap, seccomp_agent, spawn};

pub struct Handshake<'a> {
    pub req: &'a CreateRequest,
    pub state: &'a State,
    pub init: &'a spawn::Child,
    /// Where the clone child says why it died before `Hello`.
    pub early: &'a spawn::EarlyReport,
    pub channel: &'a ShimInitChannel,
}

/// When tiny-init starts the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartWhen {
    /// On the runtime's `start` (`create`).
    OnStart,
    /// Right after `Ready`, by itself: a `run` with nothing to wait for.
    AtOnce,
    /// On the `Start` the shim sends once its own part (`meanwhile`) is
    /// done: a `run` whose workload must find its network plugged in.
    AfterMeanwhile,
}

impl Handshake<'_> {
    /// Up to `Ready`: the terminal's master, when the container has one.
    /// `userns_sync`: the write end of the pipe the clone child waits on
    /// in a new user namespace; `preserved`: the fds for the workload;
    /// `meanwhile`: the shim's own part, done once tiny-init has its config
    /// and sets up the container (plugging the network in); `start`: when
    /// the workload starts.
    pub fn run(
        &self,
        userns_sync: Option<OwnedFd>,
        preserved: Vec<OwnedFd>,
        start: StartWhen,
        meanwhile: impl FnOnce() -> Result<(), Failure>,
    ) -> Result<Option<OwnedFd>, Failure> {
        let root_fd = match userns_sync {
            Some(go_on) => self.make_root(go_on)?,
            None => None,
        };
        self.channel
            .send(
                &ShimToInit::Hello {
                    version: PROTOCOL_VERSION,
                },
                &[],
            )
            .map_err(|e| self.init_error(e))?;
        let mut mount_fds = Vec::new();
        for m in &self.req.init.mounts {
            if let Some(maps) = &m.idmap {
                // MS_* are c_ulong: u64 here, but u32 on 32-bit targets.
                #[allow(clippy::unnecessary_cast)]
                let recursive = m.flags & libc::MS_REC as u64 != 0;
                let fd = idmap::idmapped_mount(&m.source, recursive, maps).map_err(|e| {
                    Failure::from_error(format!("idmapped mount on {}", m.destination), &e)
                })?;
                mount_fds.push(fd);
            }
        }
        // The config follows our Hello at once, without a round trip:
        // tiny-init decodes it only once our Hello has passed its version
        // check, and its own Hello, checked here, comes before anything
        // else it sends.
        self.send_config(root_fd, mount_fds, preserved, start == StartWhen::AtOnce)?;
        self.channel
            .wait_for_hello()
            .map_err(|e| self.init_error(e))?;
        meanwhile()?;
        if self.req.init.hook_pause {
            self.channel
                .wait_for_hook_point()
                .map_err(|e| self.init_error(e))?;
            self.run_create_hooks()?;
            self.channel
                .send(&ShimToInit::Continue, &[])
                .map_err(|e| self.init_error(e))?;
        }
        if start == StartWhen::AfterMeanwhile {
            // Read by tiny-init after it sends `Ready`: queued by then when
            // our part was done first, so it costs no round trip.
            self.channel
                .send(&ShimToInit::Start, &[])
                .map_err(|e| self.init_error(e))?;
        }
        let mut fds = self
            .channel
            .wait_for_ready()
            .map_err(|e| self.init_error(e))?
            .into_iter();
        // The terminal's master first, then the seccomp listener.
        let pty = if self.req.init.process.terminal {
            fds.next()
        } else {
            None
        };
        if let Some(listener) = &self.req.seccomp_listener {
            let Some(fd) = fds.next() else {
                return Err(failure(
                    "send the seccomp listener",
                    "tiny-init sent none".into(),
                ));
            };
            let pid = self.init.pid;
            let state = self.state.oci_state_as(Status::Creating, pid);
            seccomp_agent::send(listener, &fd, state, pid)
                .map_err(|e| Failure::from_error("send the seccomp listener", &e))?;
        }
        Ok(pty)
    }

    /// A new user namespace: the clone child waits, nobody, until its maps
    /// are written; then it may become the namespace's root and exec. The
    /// idmapped root (when asked for) needs the maps, and tiny-init needs
    /// it before it mounts anything.
    fn make_root(&self, go_on: OwnedFd) -> Result<Option<OwnedFd>, Failure> {
        let (req, pid) = (self.req, self.init.pid);
        idmap::write_maps(pid, &req.uid_mappings, &req.gid_mappings)
            .map_err(|e| Failure::from_error("write the id maps", &e))?;
        let root_fd = match &req.idmap_source {
            Some(src) => Some(
                idmap::idmapped_tree(src, pid)
                    .map_err(|e| Failure::from_error("idmapped root", &e))?,
            ),
            None => None,
        };
        nix::unistd::write(&go_on, &[1u8])
            .map_err(|e| failure("let tiny-init go on", e.desc().into()))?;
        Ok(root_fd)
    }

    /// tiny-init's config, with the idmapped root, the idmapped mounts (in
    /// the order of their mounts) and the preserved fds.
    fn send_config(
        &self,
        root_fd: Option<OwnedFd>,
        mount_fds: Vec<OwnedFd>,
        preserved: Vec<OwnedFd>,
        start_at_once: bool,
    ) -> Result<(), Failure> {
        let mut config = self.req.init.clone();
        config.start_at_once = start_at_once;
        if !config.start_hooks.is_empty() {
            config.hook_state = self
                .state
                .oci_state_as(Status::Created, self.init.pid)
                .to_string();
        }
        let fds: Vec<i32> = root_fd
            .iter()
            .chain(mount_fds.iter())
            .chain(preserved.iter())
            .map(|f| f.as_raw_fd())
            .collect();
        self.channel
            .send(&ShimToInit::Config(Box::new(config)), &fds)
            .map_err(|e| self.init_error(e))
    }

    /// prestart and createRuntime in the host's namespaces, then
    /// createContainer in the container's, while tiny-init waits before
    /// pivot_root: the host's root is still that mount namespace's root,
    /// so hook paths resolve as on the host, as with runc.
    fn run_create_hooks(&self) -> Result<(), Failure> {
        let (req, init_pid) = (self.req, self.init.pid);
        // runtime-spec's lifecycle runs these hooks at its steps 3 to 5,
        // once the environment is made (step 2, "creating"), and calls that
        // "created"; crun passes it, and runtime-tools checks it (runc
        // 1.1 passes "creating").
        let st = self
            .state
            .oci_state_as(Status::Created, init_pid)
            .to_string();
        let hook_failure = |e: hooks::HookError| Failure::from_error("run hooks", &e);
        hooks::run_all("prestart", &req.hooks.prestart, &st, &[]).map_err(hook_failure)?;
        hooks::run_all("createRuntime", &req.hooks.create_runtime, &st, &[])
            .map_err(hook_failure)?;
        if req.hooks.create_container.is_empty() {
            return Ok(());
        }
        // The container's own namespaces, in NamespaceKind::ALL's order
        // (the mount namespace last: after it, /proc may no longer be the
        // host's); not its user or PID namespace, as runc joins them.
        let kinds = NamespaceKind::ALL.into_iter().filter(|&k| {
            k == NamespaceKind::Mount
                || (k != NamespaceKind::User
                    && k != NamespaceKind::Pid
                    && req.namespaces.iter().any(|n| n.kind == k))
        });
        let mut join = Vec::new();
        for k in kinds {
            let p = format!("/proc/{init_pid}/ns/{}", k.proc_name());
            let f = std::fs::File::open(&p)
                .map_err(|e| failure("run hooks", format!("open {p}: {e}")))?;
            join.push(OwnedFd::from(f));
        }
        hooks::run_all("createContainer", &req.hooks.create_container, &st, &join)
            .map_err(hook_failure)
    }

    /// What a failed exchange with tiny-init means. A closed channel is
    /// tiny-init's early death: its clone child's report says at which step.
    fn init_error(&self, e: ChannelError) -> Failure {
        match e {
            ChannelError::Failed(f) => f,
            ChannelError::Closed => {
                let _ = pidfd_send_signal(&self.init.pidfd, libc::SIGKILL);
                let code = spawn::reap(&self.init.pidfd, true);
                self.early.failure(code)
            }
            other => failure("set up the container", other.to_string()),
        }
    }
}
