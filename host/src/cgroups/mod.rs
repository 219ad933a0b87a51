//! The container's cgroup: where it goes (the layout of this host's
//! cgroupfs, found in /proc/self/mountinfo), making it, putting tiny-init
//! in it, applying linux.resources, freezing it for `pause`, reading its
//! processes and OOM kills, and removing it.
//!
//! Three layouts exist. v1 has one hierarchy per controller (or group of
//! controllers: "cpu,cpuacct"), each mounted on its own; hybrid is v1 plus a
//! cgroup2 mount (at /sys/fs/cgroup/unified) that holds whatever controllers
//! v1 does not (here only hugetlb, so nothing nsbox limits): nsbox treats it
//! as v1 and leaves the cgroup2 part alone, as runc does. v2 (unified) has a
//! single hierarchy whose controllers are enabled per level through
//! cgroup.subtree_control.
//!
//! Every path here comes from mountinfo and the container's validated
//! cgroupsPath; `CgroupPaths` records them in state.json, so that `delete
//! --force` after a crashed shim removes exactly what the shim made.

mod blkio;
mod hugetlb_rdma;
// bpf(2), which nix 0.29 lacks.
#[allow(unsafe_code)]
mod bpf;
pub mod systemd;
mod v1;
mod v2;

use std::io::Write;

use nsbox_process::mountinfo::unescape;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use protocol::{CgroupDir, CgroupPaths, Resources};

pub use hugetlb_rdma::hugepage_sizes;
#[cfg(test)]
use hugetlb_rdma::page_size_name;
use hugetlb_rdma::{write_hugetlb, write_rdma};
pub use v2::shares_to_weight;

/// What the name of a container's cgroup starts with when config.json
/// names no cgroupsPath (see [`Layout::paths`]).
pub const DEFAULT_PREFIX: &str = "nsbox@";

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Systemd(Box<systemd::SystemdError>),
    /// The cgroup holds processes already: another's, not ours to remove.
    #[error("{0}")]
    Busy(String),
}

pub type Result<T> = std::result::Result<T, CgroupError>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Who makes a container's cgroup: nsbox in cgroupfs, or systemd as a
/// scope unit (`--systemd-cgroup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupDriver {
    Cgroupfs,
    Systemd,
}

/// This host's cgroupfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// One mount per hierarchy: (its name, from the mount options, and its
    /// mount point). `hybrid`: a cgroup2 mount exists beside them.
    V1 {
        hierarchies: Vec<(String, PathBuf)>,
        hybrid: bool,
    },
    /// One hierarchy, mounted at `root`.
    V2 { root: PathBuf },
}

/// v1 controllers a hierarchy's mount options may name.
const V1_CONTROLLERS: [&str; 14] = [
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

impl Layout {
    pub fn detect() -> Result<Layout> {
        let text = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(io_err(Path::new("/proc/self/mountinfo")))?;
        Layout::from_mountinfo(&text)
    }

    /// From the text of a mountinfo file. Only mounts of a hierarchy's root
    /// count: a bind of a sub-tree (as a container sees) is not a place to
    /// make cgroups of our own.
    pub fn from_mountinfo(text: &str) -> Result<Layout> {
        let (hierarchies, unified) = cgroup_mounts(text);
        match (hierarchies.is_empty(), unified) {
            (false, u) => Ok(Layout::V1 {
                hierarchies,
                hybrid: u.is_some(),
            }),
            (true, Some(root)) => Ok(Layout::V2 { root }),
            (true, None) => Err(CgroupError::Unsupported(
                "no cgroup filesystem is mounted (see /proc/self/mountinfo)".into(),
            )),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Layout::V1 { hybrid: false, .. } => "v1",
            Layout::V1 { hybrid: true, .. } => "hybrid",
            Layout::V2 { .. } => "v2",
        }
    }

    /// The container's directories for `cgroups_path` (config.json's
    /// linux.cgroupsPath). Without one: /nsbox@ID, or /nsbox@SCOPE@ID where
    /// `scope` names a state root other than the default, because IDs are
    /// unique within one root only. One level, with no parent of nsbox's
    /// own: making and removing a container's cgroup is then one mkdir and
    /// one rmdir per hierarchy (shared /nsbox and /nsbox/ROOT parents would
    /// be made and removed again with a root's first and last container,
    /// which is every lone `run`). '@' is in neither an ID nor a scope
    /// name, so no two roots' names meet.
    pub fn paths(
        &self,
        cgroups_path: Option<&str>,
        id: &str,
        scope: Option<&str>,
    ) -> Result<CgroupPaths> {
        let path = match (cgroups_path, scope) {
            (None | Some(""), None) => format!("/{DEFAULT_PREFIX}{id}"),
            (None | Some(""), Some(scope)) => {
                format!("/{DEFAULT_PREFIX}{}@{id}", scope_name(scope))
            }
            (Some(p), _) => validate_path(p)?,
        };
        let rel = path.trim_start_matches('/');
        let dirs = match self {
            Layout::V1 { hierarchies, .. } => hierarchies
                .iter()
                .map(|(name, mount)| CgroupDir {
                    controller: name.clone(),
                    dir: mount.join(rel).to_string_lossy().into_owned(),
                })
                .collect(),
            Layout::V2 { root } => vec![CgroupDir {
                controller: String::new(),
                dir: root.join(rel).to_string_lossy().into_owned(),
            }],
        };
        Ok(CgroupPaths {
            path,
            unified: matches!(self, Layout::V2 { .. }),
            dirs,
            systemd: None,
        })
    }
}

impl Layout {
    /// Refuse, before anything is made, what `r` asks of a controller this
    /// host does not have: the error names the field and the controller.
    pub fn check(&self, r: &Resources) -> Result<()> {
        let v2 = matches!(self, Layout::V2 { .. });
        if !r.unified.is_empty() && !v2 {
            return Err(CgroupError::Unsupported(format!(
                "linux.resources.unified needs cgroup v2; this host's cgroups are {}",
                self.name()
            )));
        }
        if !r.hugepage_limits.is_empty() {
            let sizes = hugepage_sizes();
            for h in &r.hugepage_limits {
                if !sizes.contains(&h.page_size) {
                    return Err(CgroupError::Invalid(format!(
                        "linux.resources.hugepageLimits: pageSize {:?} is not a huge page size \
                         of this kernel ({})",
                        h.page_size,
                        if sizes.is_empty() {
                            "it has none".to_string()
                        } else {
                            sizes.join(", ")
                        }
                    )));
                }
            }
            self.need("hugetlb", "linux.resources.hugepageLimits")?;
        }
        if !r.rdma.is_empty() {
            self.need("rdma", "linux.resources.rdma")?;
        }
        if let Some(n) = &r.network {
            if v2 {
                return Err(CgroupError::Unsupported(
                    "linux.resources.network (classID, priorities) needs cgroup v1's net_cls \
                     and net_prio controllers, which cgroup v2 does not have"
                        .into(),
                ));
            }
            if n.class_id.is_some() {
                self.need("net_cls", "linux.resources.network.classID")?;
            }
            if !n.priorities.is_empty() {
                self.need("net_prio", "linux.resources.network.priorities")?;
            }
        }
        if v2 && r.memory.as_ref().is_some_and(|m| m.kernel_tcp.is_some()) {
            return Err(CgroupError::Unsupported(
                "linux.resources.memory.kernelTCP needs cgroup v1 \
                 (memory.kmem.tcp.limit_in_bytes): cgroup v2 has no limit of TCP memory alone"
                    .into(),
            ));
        }
        Ok(())
    }

    /// `field` needs `controller`: a v1 hierarchy of its own, or in v2's
    /// root cgroup.controllers.
    fn need(&self, controller: &str, field: &str) -> Result<()> {
        match self {
            Layout::V1 { hierarchies, .. } => {
                if hierarchies
                    .iter()
                    .any(|(name, _)| name.split(',').any(|c| c == controller))
                {
                    return Ok(());
                }
                // A hybrid host may hold it in its cgroup2 mount, which
                // nsbox leaves alone beside the v1 hierarchies (runc too).
                let in_v2 = cgroup2_mount()
                    .and_then(|m| read_file(&m, "cgroup.controllers").ok())
                    .is_some_and(|c| c.split_whitespace().any(|c| c == controller));
                Err(CgroupError::Unsupported(format!(
                    "{field} needs the {controller} controller, which this host has not mounted \
                     as a cgroup v1 hierarchy{}",
                    if in_v2 {
                        " (only in its cgroup2 mount, which nsbox leaves alone beside v1)"
                    } else {
                        ""
                    }
                )))
            }
            Layout::V2 { root } => {
                let has = read_file(root, "cgroup.controllers")
                    .is_ok_and(|c| c.split_whitespace().any(|c| c == controller));
                if has {
                    Ok(())
                } else {
                    Err(CgroupError::Unsupported(format!(
                        "{field} needs the {controller} controller, which this host's cgroup v2 \
                         ({}) does not have",
                        root.display()
                    )))
                }
            }
        }
    }
}

/// The v1 hierarchies (name from the mount options, mount point) and the
/// cgroup2 mount, of a hierarchy's root each, in the text of a mountinfo
/// file.
fn cgroup_mounts(text: &str) -> (Vec<(String, PathBuf)>, Option<PathBuf>) {
    let mut hierarchies: Vec<(String, PathBuf)> = Vec::new();
    let mut unified: Option<PathBuf> = None;
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.len() < 3 || l[3] != "/" {
            continue;
        }
        let mount_point = PathBuf::from(unescape(l[4]));
        match r[0] {
            "cgroup" => {
                let name: Vec<&str> = r[2]
                    .split(',')
                    .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                    .collect();
                if name.is_empty() {
                    continue;
                }
                let name = name.join(",");
                if !hierarchies.iter().any(|(n, _)| *n == name) {
                    hierarchies.push((name, mount_point));
                }
            }
            // The standard place wins over any other mount of it.
            "cgroup2" if unified.is_none() || mount_point == Path::new("/sys/fs/cgroup") => {
                unified = Some(mount_point);
            }
            _ => {}
        }
    }
    (hierarchies, unified)
}

/// This host's cgroup2 mount (v2's, or hybrid's beside v1), if any.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    cgroup_mounts(&text).1
}

/// A state root as one directory name: "/run/nsbox-t/12-3" becomes
/// "run-nsbox-t-12-3".
pub fn scope_name(root: &str) -> String {
    let s: String = root
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches('-');
    let s = &s[s.len().saturating_sub(64)..];
    match s {
        "" | "." | ".." => "root".into(),
        s => s.to_string(),
    }
}

/// mkdir -p: a cgroupsPath may name parents (Podman's /libpod_parent).
pub(crate) fn mkdir_p(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .create(dir)
        .map_err(io_err(dir))
}

/// cgroupsPath as nsbox takes it: a cgroupfs path ("/libpod_parent/x" or
/// "default/x"), relative to each hierarchy's root. A systemd-style
/// "slice:prefix:name" is for `--systemd-cgroup` (systemd.rs).
pub fn validate_path(p: &str) -> Result<String> {
    if p.contains(':') {
        return Err(CgroupError::Unsupported(format!(
            "cgroupsPath {p:?} is in systemd's slice:prefix:name form, which needs \
             --systemd-cgroup (a cgroupfs path has no ':')"
        )));
    }
    let path = Path::new(p);
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => {
                let n = n.to_str().ok_or_else(|| {
                    CgroupError::Invalid(format!("cgroupsPath {p:?} is not UTF-8"))
                })?;
                parts.push(n.to_string());
            }
            Component::ParentDir | Component::Prefix(_) => {
                return Err(CgroupError::Invalid(format!(
                    "cgroupsPath {p:?} must not contain '..'"
                )))
            }
        }
    }
    if parts.is_empty() {
        return Err(CgroupError::Invalid(format!(
            "cgroupsPath {p:?} names the root cgroup"
        )));
    }
    if p.contains('\n') {
        return Err(CgroupError::Invalid(format!(
            "cgroupsPath {p:?} holds a newline"
        )));
    }
    Ok(format!("/{}", parts.join("/")))
}

/// Append `value` to a cgroup file: one write(2), as the kernel wants it.
/// (Append, not truncate: a test's fake tree then keeps every write.)
pub(crate) fn write_file(dir: &Path, file: &str, value: &str) -> Result<()> {
    let path = dir.join(file);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(io_err(&path))?;
    f.write_all(value.as_bytes()).map_err(io_err(&path))
}

pub(crate) fn read_file(dir: &Path, file: &str) -> Result<String> {
    let path = dir.join(file);
    std::fs::read_to_string(&path).map_err(io_err(&path))
}

/// "key value" lines (memory.events, memory.oom_control, cgroup.events).
pub(crate) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn dir_of<'a>(paths: &'a CgroupPaths, controller: &str) -> Option<&'a Path> {
    paths
        .dirs
        .iter()
        .find(|d| {
            if paths.unified {
                true
            } else {
                d.controller.split(',').any(|c| c == controller)
            }
        })
        .map(|d| Path::new(d.dir.as_str()))
}

/// Make the container's cgroup and apply `resources`. A cgroup that exists
/// already is taken over only while it has no process (another container
/// may be using it).
pub fn create(paths: &CgroupPaths, resources: &Resources) -> Result<()> {
    let mut existed = false;
    if paths.unified {
        existed = v2::create(paths, resources)?;
    } else {
        for d in &paths.dirs {
            existed |= v1::create(paths, Path::new(&d.dir), &d.controller)?;
        }
    }
    // A cgroup we have just made holds nothing yet.
    let busy = if existed { procs(paths) } else { Vec::new() };
    if !busy.is_empty() {
        return Err(CgroupError::Busy(format!(
            "cgroup {} already holds processes ({}): is cgroupsPath another container's?",
            paths.path,
            busy.iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        )));
    }
    apply(paths, resources, true)
}

/// Write `resources` into the cgroup. `devices`: also the device rules
/// (at create; `update` leaves them, as runc's does, since rewriting them
/// denies every device for a moment).
pub fn apply(paths: &CgroupPaths, resources: &Resources, devices: bool) -> Result<()> {
    if paths.unified {
        v2::apply(paths, resources, devices)
    } else {
        v1::apply(paths, resources, devices)
    }
}

/// The files through which a process moves itself into the container's
/// cgroup by writing "0": each v1 hierarchy's `tasks`, or v2's
/// cgroup.procs. Opened here by the caller for a child that has not exec'd
/// yet; the kernel checks the opener's credentials, so a child already in
/// a new user namespace (and nobody there yet) may still write.
///
/// Why a process moves itself rather than being moved: writing a pid into
/// cgroup.procs write-locks the kernel's cgroup_threadgroup_rwsem, and the
/// first such lock after a quiet spell waits for an RCU grace period: on
/// every `run` typed at a shell (runc and crun pay it; `make bench` shows
/// what it costs them). A single thread that moves itself through v1's
/// `tasks` takes no such lock. (v2 has no per-thread file outside threaded
/// subtrees; "0" into cgroup.procs there takes the lock, so a child is
/// cloned into a v2 cgroup instead: [`open_dir`].)
pub fn self_join_files(paths: &CgroupPaths) -> Result<Vec<std::fs::File>> {
    self_join_paths(paths)
        .into_iter()
        .map(|p| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .map_err(io_err(&p))
        })
        .collect()
}

/// The paths of [`self_join_files`], for a child that opens them itself,
/// once the cgroup exists: the shim clones tiny-init while the runtime
/// still makes a v1 cgroup.
pub fn self_join_paths(paths: &CgroupPaths) -> Vec<PathBuf> {
    let file = if paths.unified {
        "cgroup.procs"
    } else {
        "tasks"
    };
    paths
        .dirs
        .iter()
        .map(|d| Path::new(&d.dir).join(file))
        .collect()
}

/// The container's cgroup directory (v2), for clone3's CLONE_INTO_CGROUP:
/// the child is born there, and nothing is moved at all.
pub fn open_dir(paths: &CgroupPaths) -> Result<std::os::fd::OwnedFd> {
    let dir = Path::new(&paths.dirs[0].dir);
    std::fs::File::open(dir)
        .map(std::os::fd::OwnedFd::from)
        .map_err(io_err(dir))
}

/// Move the calling thread into the container's cgroup for good (a freshly
/// forked, single-threaded child about to exec): see [`self_join_files`].
pub fn join_self(paths: &CgroupPaths) -> Result<()> {
    for (mut f, d) in self_join_files(paths)?.into_iter().zip(&paths.dirs) {
        f.write_all(b"0").map_err(io_err(Path::new(&d.dir)))?;
    }
    Ok(())
}

/// Every process in the cgroup and below it, sorted, as host pids.
pub fn procs(paths: &CgroupPaths) -> Vec<i32> {
    let dir = ["pids", "freezer", "memory", "cpu", "devices"]
        .iter()
        .find_map(|c| dir_of(paths, c))
        .or_else(|| paths.dirs.first().map(|d| Path::new(d.dir.as_str())));
    let mut pids = Vec::new();
    if let Some(dir) = dir {
        collect_procs(dir, &mut pids, 0);
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

fn collect_procs(dir: &Path, pids: &mut Vec<i32>, depth: usize) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if depth > 16 {
        return;
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            collect_procs(&e.path(), pids, depth + 1);
        }
    }
}

/// How many times the kernel's OOM killer has killed a process of the
/// cgroup; None when the memory controller does not say.
pub fn oom_kills(paths: &CgroupPaths) -> Option<u64> {
    if paths.unified {
        let dir = Path::new(&paths.dirs[0].dir);
        keyed(&read_file(dir, "memory.events").ok()?, "oom_kill")
    } else {
        let dir = dir_of(paths, "memory")?;
        keyed(&read_file(dir, "memory.oom_control").ok()?, "oom_kill")
    }
}

/// Freeze every process of the cgroup (`pause`), and wait until the kernel
/// says they are.
pub fn freeze(paths: &CgroupPaths) -> Result<()> {
    set_frozen(paths, true)
}

pub fn thaw(paths: &CgroupPaths) -> Result<()> {
    set_frozen(paths, false)
}

fn freezer_dir(paths: &CgroupPaths) -> Result<&Path> {
    dir_of(paths, "freezer").ok_or_else(|| {
        CgroupError::Unsupported("the freezer controller is not mounted on this host".into())
    })
}

fn set_frozen(paths: &CgroupPaths, frozen: bool) -> Result<()> {
    let dir = freezer_dir(paths)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    if paths.unified {
        write_file(dir, "cgroup.freeze", if frozen { "1" } else { "0" })?;
        loop {
            let events = read_file(dir, "cgroup.events")?;
            if keyed(&events, "frozen") == Some(frozen as u64) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    } else {
        let want = if frozen { "FROZEN" } else { "THAWED" };
        loop {
            // v1 may stay FREEZING when a task is busy in the kernel: ask again.
            write_file(dir, "freezer.state", want)?;
            if read_file(dir, "freezer.state")?.trim() == want {
                return Ok(());
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    if frozen {
        let _ = set_frozen(paths, false);
        return Err(CgroupError::Invalid(format!(
            "cgroup {} did not freeze within 5 s (thawed it again)",
            paths.path
        )));
    }
    Err(CgroupError::Invalid(format!(
        "cgroup {} did not thaw within 5 s",
        paths.path
    )))
}

/// Is the cgroup frozen (or freezing)? False when it is gone.
pub fn is_frozen(paths: &CgroupPaths) -> bool {
    let Ok(dir) = freezer_dir(paths) else {
        return false;
    };
    if paths.unified {
        read_file(dir, "cgroup.freeze").is_ok_and(|s| s.trim() == "1")
    } else {
        read_file(dir, "freezer.state").is_ok_and(|s| s.trim() != "THAWED")
    }
}

/// SIGKILL every process of the cgroup and below at once, through v2's
/// cgroup.kill (Linux 5.14): frozen ones too, and none can fork past it,
/// as a signal sent pid by pid could. False, and nothing done, where there
/// is no such file (v1, older kernels).
pub fn kill_all(paths: &CgroupPaths) -> Result<bool> {
    if !paths.unified {
        return Ok(false);
    }
    let dir = Path::new(&paths.dirs[0].dir);
    if !dir.join("cgroup.kill").exists() {
        return Ok(false);
    }
    write_file(dir, "cgroup.kill", "1")?;
    Ok(true)
}

/// Kill whatever is left in the cgroup, and remove it. rmdir fails while a
/// process is still exiting, so it is retried for up to `timeout`. A
/// systemd scope is stopped (and its name freed) once it is empty, by
/// `stop_scope` where the caller has one (the runtime); without it (the
/// shim) systemd collects the empty scope itself.
pub fn destroy(
    paths: &CgroupPaths,
    timeout: Duration,
    stop_scope: Option<systemd::StopScope>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    if let Some(dir) = dir_of(paths, "rdma") {
        hugetlb_rdma::release_rdma(dir);
    }
    // Mostly the processes are gone by now (a run's, a stopped
    // container's): rmdir first, and look for processes only when it is
    // refused (the kernel never removes a cgroup that has any).
    if paths.systemd.is_none() && remove_if_empty(paths) {
        return Ok(());
    }
    let frozen = is_frozen(paths);
    loop {
        let pids = procs(paths);
        if !pids.is_empty() && kill_all(paths).unwrap_or(false) {
            // The kernel has it; rmdir waits below until they are gone.
        } else {
            kill_each(&pids);
        }
        // A frozen task dies of SIGKILL only once thawed (v1).
        if frozen || !pids.is_empty() && is_frozen(paths) {
            let _ = thaw(paths);
        }
        if let (Some(unit), Some(stop), true) = (&paths.systemd, stop_scope, pids.is_empty()) {
            stop(unit)?;
        }
        match remove_dirs(paths) {
            Ok(()) => break,
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    Ok(())
}

fn kill_each(pids: &[i32]) {
    for &pid in pids {
        // Gone already, or not ours to kill: either way not in the way.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// rmdir each of the cgroup's directories, until one is refused (a
/// process, or a sub-cgroup, in it): true when none is left.
fn remove_if_empty(paths: &CgroupPaths) -> bool {
    paths
        .dirs
        .iter()
        .all(|d| match std::fs::remove_dir(&d.dir) {
            Ok(()) => true,
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        })
}

fn remove_dirs(paths: &CgroupPaths) -> Result<()> {
    let mut first_err = None;
    for d in &paths.dirs {
        if let Err(e) = remove_tree(Path::new(&d.dir)) {
            first_err.get_or_insert(e);
        }
    }
    match first_err {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

/// rmdir a cgroup and the sub-cgroups a container may have made in it,
/// deepest first. cgroupfs directories hold only control files, which
/// rmdir takes with them.
fn remove_tree(dir: &Path) -> Result<()> {
    // Most containers make no sub-cgroups: try the plain rmdir first.
    match std::fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    let subdirs: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .map(|e| e.path())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for s in subdirs {
        remove_tree(&s)?;
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(dir)(e)),
    }
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests;
