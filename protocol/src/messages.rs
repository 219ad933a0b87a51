//! The message enums, one per direction and role, and the plain data they
//! carry. tiny-init learns everything it does from [`InitConfig`]: it never
//! reads config.json, so the container's inside does not depend on how the
//! host parsed it.

use serde::{Deserialize, Serialize};

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

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.step, self.message)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NamespaceKind {
    Pid,
    Mount,
    Ipc,
    Uts,
    Network,
    User,
    Cgroup,
}

/// A namespace to create (no path) or to join (path).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    pub kind: NamespaceKind,
    pub path: Option<String>,
}

/// What `runtime create` hands to the shim. The runtime has validated it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRequest {
    pub id: String,
    /// The container's directory under the state root; state.json is there.
    pub state_dir: String,
    /// The tiny-init binary, copied into a sealed memfd before it runs.
    pub tiny_init: String,
    pub namespaces: Vec<Namespace>,
    /// The cgroup the shim makes and puts tiny-init in before it sends
    /// `Config`, so that nothing of the container's runs outside it.
    pub cgroup: Option<Cgroup>,
    /// prestart, createRuntime and createContainer run while tiny-init
    /// waits before pivot_root (see `InitConfig::hook_pause`).
    pub hooks: Hooks,
    pub init: InitConfig,
}

/// Where a container's cgroup is: the same relative path in every v1
/// hierarchy, or in the one v2 hierarchy. Recorded in state.json so that
/// `delete --force` after a crashed shim can still remove it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupPaths {
    /// Relative to each hierarchy's root, starting with '/': "/nsbox/ID".
    pub path: String,
    /// cgroup v2 (unified): one directory, `dirs[0]`, controller "".
    pub unified: bool,
    pub dirs: Vec<CgroupDir>,
    /// Parent directories nsbox owns (its default "/nsbox"), removed once
    /// empty; a caller's own parents (Podman's /libpod_parent) are left.
    pub owned_parents: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupDir {
    /// The v1 hierarchy's name as mounted ("memory", "cpu,cpuacct",
    /// "name=systemd"); "" on v2.
    pub controller: String,
    /// Absolute host path of the container's directory in it.
    pub dir: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    pub paths: CgroupPaths,
    pub resources: Resources,
}

/// linux.resources, as nsbox applies them. Values keep the OCI meaning
/// (-1 is "unlimited"; memory.swap is memory plus swap).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub memory: Option<MemoryResources>,
    pub cpu: Option<CpuResources>,
    pub pids_limit: Option<i64>,
    /// In order; a later rule overrides an earlier one.
    pub devices: Vec<DeviceRule>,
    /// cgroup v2 files written as they are (linux.resources.unified).
    pub unified: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryResources {
    pub limit: Option<i64>,
    pub reservation: Option<i64>,
    pub swap: Option<i64>,
    pub swappiness: Option<u64>,
    pub disable_oom_killer: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuResources {
    pub shares: Option<u64>,
    pub quota: Option<i64>,
    pub period: Option<u64>,
    pub cpus: Option<String>,
    pub mems: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRule {
    pub allow: bool,
    /// 'a' (all), 'c' or 'b'.
    pub kind: char,
    /// None: any.
    pub major: Option<i64>,
    pub minor: Option<i64>,
    /// Some of "rwm".
    pub access: String,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitConfig {
    /// Host path of the directory that becomes `/`; with `overlay`, the
    /// (empty) directory the overlay is mounted on.
    pub rootfs: String,
    pub overlay: Option<Overlay>,
    pub readonly_root: bool,
    /// Propagation flags applied to `/` before anything is mounted.
    pub rootfs_propagation: u64,
    pub mounts: Vec<Mount>,
    pub devices: Vec<Device>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    /// A new network namespace: bring `lo` up.
    pub loopback_up: bool,
    /// The container's cgroup ("/nsbox/ID"), the same in every hierarchy:
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
    /// startContainer hooks, run inside the container on `Start`, before
    /// the workload, with `hook_state` on their stdin.
    pub start_hooks: Vec<Hook>,
    pub hook_state: String,
    pub process: Process,
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
    /// Options the filesystem interprets itself ("mode=755,size=65536k").
    pub data: String,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    pub oom_score_adj: Option<i32>,
    pub io_priority: Option<IoPriority>,
    pub seccomp: Option<Seccomp>,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    pub init_pid: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuntimeToShim {
    Hello {
        version: u32,
    },
    Create(Box<CreateRequest>),
    Start,
    /// Reply with `Exited` when the container has stopped.
    Wait,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShimToRuntime {
    Created(Created),
    Started { pid: i32 },
    Exited { code: i32 },
    Error(Failure),
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
    Failed(Failure),
}
