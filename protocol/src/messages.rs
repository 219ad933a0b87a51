//! The message enums, one per direction and role, and the plain data they
//! carry. tiny-init learns everything it does from [`InitConfig`]: it never
//! reads config.json, so the container's inside does not depend on how the
//! host parsed it.

use serde::{Deserialize, Serialize};

use crate::resources::Cgroup;

/// Why a step failed, carried across processes so that `runtime` prints the
/// real cause instead of "child exited 1".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// What was being done: "mount /proc", "exec /bin/foo".
    pub step: String,
    /// The cause, as a person reads it: "No such file or directory".
    pub message: String,
    /// The exit code the runtime should end with: 127 for a command that is
    /// not found, 126 for one that cannot be executed, 1 otherwise.
    pub exit_code: i32,
}

impl Failure {
    /// `step` failed because of `error`: its whole chain of causes, as
    /// [`error_chain`] words it, is the message.
    pub fn from_error(
        step: impl Into<String>,
        error: &(dyn std::error::Error + 'static),
    ) -> Failure {
        Failure {
            step: step.into(),
            message: error_chain(error),
            exit_code: 1,
        }
    }
}

/// An error and its causes on one line, "a: b: c": the one way nsbox words
/// an error for a person, in a log line, on stderr, or in a [`Failure`]
/// that crosses to another process. An errno is worded by its description
/// alone ("No such file or directory"), and a cause that an error already
/// ends with is not said twice.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = match c.downcast_ref::<nix::errno::Errno>() {
            Some(errno) => errno.desc().to_string(),
            None => c.to_string(),
        };
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.step, self.message)
    }
}

/// A kind of Linux namespace. The one table of their names and clone
/// flags: everything that creates, joins or names a namespace asks it here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NamespaceKind {
    Pid,
    Mount,
    Ipc,
    Uts,
    Network,
    User,
    Cgroup,
    /// Added last: bincode numbers variants in the order they are declared.
    Time,
}

impl NamespaceKind {
    /// Every kind, in the order to join them: the user namespace first,
    /// because joining it gives the capabilities that joining the others
    /// needs; the mount namespace last, because after it /proc (where the
    /// others are opened) may no longer be the host's.
    pub const ALL: [NamespaceKind; 8] = [
        NamespaceKind::User,
        NamespaceKind::Cgroup,
        NamespaceKind::Ipc,
        NamespaceKind::Uts,
        NamespaceKind::Network,
        NamespaceKind::Pid,
        NamespaceKind::Time,
        NamespaceKind::Mount,
    ];

    /// The CLONE_NEW* flag of clone(2), unshare(2) and setns(2).
    pub fn clone_flag(self) -> nix::libc::c_int {
        use nix::libc;
        match self {
            NamespaceKind::Pid => libc::CLONE_NEWPID,
            NamespaceKind::Mount => libc::CLONE_NEWNS,
            NamespaceKind::Ipc => libc::CLONE_NEWIPC,
            NamespaceKind::Uts => libc::CLONE_NEWUTS,
            NamespaceKind::Network => libc::CLONE_NEWNET,
            NamespaceKind::User => libc::CLONE_NEWUSER,
            NamespaceKind::Cgroup => libc::CLONE_NEWCGROUP,
            NamespaceKind::Time => libc::CLONE_NEWTIME,
        }
    }

    /// Its file under /proc/PID/ns.
    pub fn proc_name(self) -> &'static str {
        match self {
            NamespaceKind::Pid => "pid",
            NamespaceKind::Mount => "mnt",
            NamespaceKind::Ipc => "ipc",
            NamespaceKind::Uts => "uts",
            NamespaceKind::Network => "net",
            NamespaceKind::User => "user",
            NamespaceKind::Cgroup => "cgroup",
            NamespaceKind::Time => "time",
        }
    }

    /// Its `type` in config.json's linux.namespaces.
    pub fn oci_name(self) -> &'static str {
        match self {
            NamespaceKind::Pid => "pid",
            NamespaceKind::Mount => "mount",
            NamespaceKind::Ipc => "ipc",
            NamespaceKind::Uts => "uts",
            NamespaceKind::Network => "network",
            NamespaceKind::User => "user",
            NamespaceKind::Cgroup => "cgroup",
            NamespaceKind::Time => "time",
        }
    }

    pub fn from_oci_name(name: &str) -> Option<NamespaceKind> {
        Self::ALL.into_iter().find(|k| k.oci_name() == name)
    }
}

impl std::fmt::Display for NamespaceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.oci_name())
    }
}

/// A namespace to create (no path) or to join (path).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    pub kind: NamespaceKind,
    pub path: Option<String>,
}

/// One line of a uid_map or gid_map: `size` ids from `container` up map to
/// `host` up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

/// What `runtime create` hands to the shim. The runtime has validated it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRequest {
    pub id: String,
    /// The container's directory under the state root; state.json is there.
    pub state_dir: String,
    /// The tiny-init binary on the host. The shim runs it from a read-only
    /// bind of itself in the container's mount namespace, or from a sealed
    /// memfd copy for a container that may hold CAP_SYS_ADMIN, so that
    /// nothing written through /proc/1/exe reaches this file.
    pub tiny_init: String,
    pub namespaces: Vec<Namespace>,
    /// With a new user namespace: the maps the shim writes before tiny-init
    /// goes on.
    pub uid_mappings: Vec<IdMap>,
    pub gid_mappings: Vec<IdMap>,
    /// linux.seccomp's listenerPath and listenerMetadata: the shim sends
    /// the workload's seccomp listener fd there once tiny-init is ready.
    pub seccomp_listener: Option<SeccompListener>,
    /// With a new time namespace: linux.timeOffsets as the lines of
    /// /proc/PID/timens_offsets ("monotonic 10 0\n"), written before
    /// anything enters it.
    pub time_offsets: String,
    /// With a new user namespace: the directory the shim presents to the
    /// container through an idmapped mount (the rootfs, or the image under
    /// an overlay), so that the image needs no chown.
    pub idmap_source: Option<String>,
    /// The caller's-shim mode: tiny-init is cloned as the caller's child
    /// (CLONE_PARENT) so that the caller reaps it.
    pub caller_reaps: bool,
    /// The container's cgroup, so that nothing of the container's runs
    /// outside it: made by the runtime after `Create` (`CgroupMade`), and
    /// tiny-init born in it (v2) or its clone child moving itself in
    /// before anything else (v1); or a systemd scope, made on the shim's
    /// `MakeScope` with tiny-init in it.
    pub cgroup: Option<Cgroup>,
    /// prestart, createRuntime and createContainer run while tiny-init
    /// waits before pivot_root (see `InitConfig::hook_pause`).
    pub hooks: Hooks,
    pub init: InitConfig,
    /// Bridge networking: the shim reserves an address, writes /etc/hosts,
    /// /etc/hostname and /etc/resolv.conf into the state directory before it
    /// clones tiny-init, and plugs the container into the bridge after
    /// tiny-init is ready. None: whatever `namespaces` says (none, host, or
    /// a namespace joined by path) and nothing more.
    pub network: Option<BridgeNetwork>,
    /// A detached container's output goes to `container.log` in the state
    /// directory, read by the shim from pipes (or from the terminal, which
    /// the shim then keeps for `attach`); its stdin is /dev/null. False: the
    /// container has the runtime's stdio as it is.
    pub log_output: bool,
    /// `runtime run`: start the container as soon as it is created. The
    /// shim answers `Created`, then `Started` (or `Error`) unasked.
    pub start: bool,
    /// A foreground `run`, waiting for the exit anyway, removes the cgroup
    /// itself once it has heard `Exited`: the shim leaves it then, and its
    /// own exit does not stand between the container's end and the run's.
    pub caller_removes_cgroup: bool,
}

/// Where the seccomp listener fd goes: a unix socket on the host, sent
/// the container process state (runtime-spec) with the fd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompListener {
    pub path: String,
    pub metadata: String,
}

/// A container on a Linux bridge, as the runtime validated it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeNetwork {
    /// The runtime's state root: address and port reservations live under it.
    pub root: String,
    /// The bridge's name (at most 15 bytes, IFNAMSIZ).
    pub bridge: String,
    pub subnet: Subnet,
    pub ports: Vec<PortMapping>,
    /// The name /etc/hosts gives the container's address.
    pub hostname: String,
}

/// An IPv4 network: the address with its host bits clear, and the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Subnet {
    pub addr: std::net::Ipv4Addr,
    pub prefix: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PortProtocol {
    Tcp,
    Udp,
}

/// `[HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    /// None: every address of the host (and 127.0.0.1).
    pub host_ip: Option<std::net::Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: PortProtocol,
}

/// One OCI hook: `path` executed with `args` (argv[0] included) and
/// exactly `env` (None: the runner's own, as runc does), the container's
/// state JSON on stdin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    pub path: String,
    pub args: Vec<String>,
    pub env: Option<Vec<String>>,
    /// Seconds; None waits as long as the hook runs.
    pub timeout: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hooks {
    pub prestart: Vec<Hook>,
    pub create_runtime: Vec<Hook>,
    pub create_container: Vec<Hook>,
    pub start_container: Vec<Hook>,
    pub poststart: Vec<Hook>,
    pub poststop: Vec<Hook>,
}

impl Hooks {
    pub fn is_empty(&self) -> bool {
        self.prestart.is_empty()
            && self.create_runtime.is_empty()
            && self.create_container.is_empty()
            && self.start_container.is_empty()
            && self.poststart.is_empty()
            && self.poststop.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overlay {
    pub lower: String,
    pub upper: String,
    pub work: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitConfig {
    /// Host path of the directory that becomes `/`; with `overlay`, the
    /// (empty) directory the overlay is mounted on.
    pub rootfs: String,
    pub overlay: Option<Overlay>,
    /// The `Config` message carries an idmapped mount (a detached mount fd)
    /// to put at `rootfs`, or at the overlay's lower directory.
    pub idmapped: bool,
    pub readonly_root: bool,
    /// How the rootfs becomes the container's `/`.
    pub root_switch: RootSwitch,
    /// A new session keyring of this name, joined first thing, so that the
    /// container shares no keys with its caller (None: `--no-new-keyring`).
    pub session_keyring: Option<String>,
    /// linux.rootfsPropagation: the MS_* flags applied to the container's
    /// `/` once it is built (0: not set, an rslave root as everywhere
    /// before). Until then everything is a slave of the host's mounts, so
    /// that nothing mounted in the container reaches the host.
    pub rootfs_propagation: u64,
    pub mounts: Vec<Mount>,
    pub devices: Vec<Device>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    /// A new network namespace: bring `lo` up.
    pub loopback_up: bool,
    /// How many descriptors (after the idmapped root, if any) the `Config`
    /// message carries for the workload's fds 3 and up (`--preserve-fds`).
    pub preserve_fds: u32,
    /// The container's cgroup ("/nsbox@ID"), the same in every hierarchy:
    /// a `cgroup` mount shows the container this one, not the host's tree.
    pub cgroup_path: Option<String>,
    /// unshare a new cgroup namespace first thing: tiny-init is in the
    /// container's cgroup by then, so that cgroup becomes the namespace's
    /// root (cloned with it, the root would be the shim's).
    pub new_cgroupns: bool,
    /// linux.sysctl, validated as namespaced: written under /proc/sys once
    /// the container's /proc is mounted.
    pub sysctl: Vec<(String, String)>,
    /// Stop before pivot_root, send `HookPoint` and wait for `Continue`:
    /// the shim runs the createRuntime and createContainer hooks there,
    /// while the host's root is still this mount namespace's root.
    pub hook_pause: bool,
    /// Start the workload right after `Ready`, without waiting for `Start`
    /// (set by the shim for a `run` that has nothing to do in between):
    /// `Started` (or `Failed`) follows `Ready` unasked.
    pub start_at_once: bool,
    /// startContainer hooks, run inside the container on `Start`, before
    /// the workload, with `hook_state` on their stdin.
    pub start_hooks: Vec<Hook>,
    pub hook_state: String,
    /// After `Exited`, stay until the shim closes the channel: systemd
    /// removes a scope (and its memory.events, with the OOM kill count)
    /// as soon as its last process is gone, which tiny-init would
    /// otherwise be before the shim has read it.
    pub hold_exit: bool,
    pub process: Process,
}

/// How the rootfs becomes the container's `/`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RootSwitch {
    /// pivot_root(2), the old root detached: the default.
    #[default]
    PivotRoot,
    /// `--no-pivot`: MS_MOVE onto `/` and chroot(2), for a root that
    /// pivot_root refuses (an initramfs).
    MoveRoot,
    /// No mount namespace of the container's own: chroot(2) only, and no
    /// mount at all (any would be the host's).
    Chroot,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Absolute path inside the container.
    pub destination: String,
    pub fstype: String,
    pub source: String,
    /// MS_* flags to set (MS_BIND, MS_REC, MS_RDONLY, ...).
    pub flags: u64,
    /// MS_PRIVATE/MS_SLAVE/... (with MS_REC), applied after the mount.
    pub propagation: u64,
    /// The recursive options (`rro`, `rnosuid`...): set on the mount and
    /// everything below it, last.
    pub recursive: MountAttrs,
    /// An idmapped bind mount: the shim makes it (open_tree, then
    /// mount_setattr with a user namespace of these maps) and sends it with
    /// the `Config`, after the idmapped root; tiny-init attaches it.
    pub idmap: Option<MountIdmap>,
    /// Options the filesystem interprets itself ("mode=755,size=65536k").
    pub data: String,
}

/// The maps of an idmapped mount: container id to host id, as a user
/// namespace's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountIdmap {
    pub uid_mappings: Vec<IdMap>,
    pub gid_mappings: Vec<IdMap>,
}

/// MOUNT_ATTR_* flags that mount_setattr(2) sets and clears.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountAttrs {
    pub set: u64,
    pub clear: u64,
}

impl MountAttrs {
    pub fn is_empty(&self) -> bool {
        self.set == 0 && self.clear == 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub path: String,
    /// 'c', 'b' or 'p'.
    pub kind: char,
    pub major: i64,
    pub minor: i64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    pub resource: u32,
    pub soft: u64,
    pub hard: u64,
}

/// Capability sets as capability numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub bounding: Vec<u8>,
    pub effective: Vec<u8>,
    pub permitted: Vec<u8>,
    pub inheritable: Vec<u8>,
    pub ambient: Vec<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: Option<u32>,
    pub rlimits: Vec<Rlimit>,
    /// None: keep every capability tiny-init has.
    pub capabilities: Option<Capabilities>,
    pub no_new_privileges: bool,
    /// A pseudo-terminal made inside the container as its stdio; the master
    /// goes back to the caller (`--console-socket`).
    pub terminal: bool,
    pub oom_score_adj: Option<i32>,
    pub io_priority: Option<IoPriority>,
    pub seccomp: Option<Seccomp>,
    /// linux.personality: personality(2)'s persona (PER_LINUX32...).
    pub personality: Option<u32>,
    /// process.scheduler, for sched_setattr(2).
    pub scheduler: Option<Scheduler>,
    /// process.execCPUAffinity (an exec'd process only).
    pub cpu_affinity: Option<CpuAffinity>,
    /// process.apparmorProfile, for the exec (the runtime has checked that
    /// the host has AppArmor).
    pub apparmor_profile: Option<String>,
    /// process.selinuxLabel, for the exec (likewise SELinux).
    pub selinux_label: Option<String>,
}

/// struct sched_attr's settings, as sched_setattr(2) takes them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scheduler {
    /// SCHED_OTHER 0, FIFO 1, RR 2, BATCH 3, ISO 4, IDLE 5, DEADLINE 6.
    pub policy: u32,
    pub flags: u64,
    pub nice: i32,
    pub priority: u32,
    /// SCHED_DEADLINE's, in nanoseconds.
    pub runtime: u64,
    pub deadline: u64,
    pub period: u64,
}

/// CPUs by number: where an exec'd process starts (`initial`, before it
/// is in the container's cgroup) and where it runs (`last`; None: the
/// container's own CPUs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuAffinity {
    pub initial: Option<Vec<u16>>,
    pub last: Option<Vec<u16>>,
}

/// ioprio_set(2)'s class (1 realtime, 2 best-effort, 3 idle) and level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoPriority {
    pub class: u8,
    pub level: u8,
}

/// A seccomp filter compiled by the runtime (libseccomp links there only):
/// the workload loads it with seccomp(2), no parsing inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seccomp {
    /// `struct sock_filter` array, native byte order.
    pub bpf: Vec<u8>,
    /// SECCOMP_FILTER_FLAG_* for seccomp(2).
    pub flags: u32,
    /// It has SCMP_ACT_NOTIFY rules and a listenerPath: the workload loads
    /// it with a new listener, whose fd goes to that path at `create`.
    pub listener: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    pub init_pid: i32,
    /// Its start time (/proc/PID/stat field 22), read by the shim while
    /// tiny-init was surely alive: after a `run`'s fast workload it may be
    /// gone by the time the runtime reads this.
    pub init_start_time: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuntimeToShim {
    Hello {
        version: u32,
    },
    Create(Box<CreateRequest>),
    /// After `Create`, for a cgroup the runtime makes (not a systemd
    /// scope): it exists now (None), or why it could not be made. The
    /// runtime makes it while the shim prepares the clone (v2, where the
    /// clone waits for this) or clones (v1, where the clone child does).
    CgroupMade(Option<Failure>),
    Start,
    /// Reply with `Exited` when the container has stopped.
    Wait,
    /// Run a process in the running container, with the descriptors that
    /// come with the message as its stdin, stdout and stderr. Replied to
    /// with `ExecStarted`, then (if `wait`) `Exited` when it ends.
    Exec {
        process: Box<Process>,
        wait: bool,
    },
    /// Connect to the terminal of a container whose shim keeps it.
    Attach,
    /// The reply to `MakeScope`: the scope holds tiny-init (None), or why
    /// systemd did not make it.
    ScopeMade(Option<Failure>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShimToRuntime {
    Created(Created),
    Started {
        pid: i32,
    },
    Exited {
        code: i32,
    },
    /// The exec'd process runs, with this host pid.
    ExecStarted {
        pid: i32,
    },
    /// With two fds: a stream socket carrying the terminal's output (and
    /// taking input for it), and a dup of the pty master, used only to set
    /// the window size.
    Attached,
    Error(Failure),
    /// During create, with `--systemd-cgroup`: tiny-init is cloned, as
    /// this pid; have systemd make the container's scope with it in it.
    /// The runtime asks systemd (the D-Bus client stays out of the shim,
    /// which lives as long as the container) and replies `ScopeMade`.
    MakeScope {
        pid: i32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShimToInit {
    Hello {
        version: u32,
    },
    Config(Box<InitConfig>),
    /// The hooks at `HookPoint` ran: go on to pivot_root.
    Continue,
    Start,
    /// Fork and exec a process beside the workload; its stdio comes with
    /// the message.
    Exec(Box<Process>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InitToShim {
    Hello {
        version: u32,
    },
    /// Mounts are made, pivot_root waits (only with `hook_pause`).
    HookPoint,
    /// The inside is built; waiting for `Start`.
    Ready,
    /// The workload runs, with this pid in the container's PID namespace.
    Started {
        pid: i32,
    },
    /// The workload ended; tiny-init exits with the same code.
    Exited {
        code: i32,
    },
    /// An exec'd process runs, with this pid in the container.
    ExecStarted {
        pid: i32,
    },
    /// An exec'd process ended.
    ExecExited {
        pid: i32,
        code: i32,
    },
    Failed(Failure),
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl std::fmt::Display for PortProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PortProtocol::Tcp => "tcp",
            PortProtocol::Udp => "udp",
        })
    }
}

/// The form `--publish` takes: `[HOST_IP:]HOST_PORT:CONTAINER_PORT/PROTO`.
impl std::fmt::Display for PortMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(ip) = self.host_ip {
            write!(f, "{ip}:")?;
        }
        write!(
            f,
            "{}:{}/{}",
            self.host_port, self.container_port, self.protocol
        )
    }
}
