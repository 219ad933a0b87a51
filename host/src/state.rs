//! The state directory: one directory per container under the root, holding
//! `state.json` (written to a temporary file and renamed, so a reader sees
//! the old or the new state, never half of one), the shim's socket, and the
//! overlay directories of a copy-on-write root.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::network::{config as netcfg, Endpoint};
use crate::proc::ProcessId;

pub const DEFAULT_ROOT: &str = "/run/nsbox";

/// The state root when `--root` is not given: /run/nsbox for root; for a
/// rootless caller (an ordinary user, or root in a user namespace of its
/// own, as rootless Podman calls us) $XDG_RUNTIME_DIR/nsbox, or
/// /tmp/nsbox-UID (the host uid) where no XDG_RUNTIME_DIR is set, as runc
/// does for rootless containers.
pub fn default_root() -> PathBuf {
    if !crate::rootless::Privilege::of_self().is_rootless() {
        return PathBuf::from(DEFAULT_ROOT);
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if Path::new(&d).is_dir() => Path::new(&d).join("nsbox"),
        _ => PathBuf::from(format!("/tmp/nsbox-{}", crate::rootless::host_uid())),
    }
}
pub const OCI_VERSION: &str = "1.0.2";
/// In `state` once the OOM killer has killed a process of the container:
/// how many it killed.
pub const OOM_ANNOTATION: &str = "nsbox.oom-kills";
/// Longer IDs would make the shim's socket path hard to reach.
pub const MAX_ID_LEN: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// The verbs a container's status gates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Start,
    Kill,
    Exec,
    Attach,
    Pause,
    Resume,
    Update,
    Delete,
}

/// A verb refused because of the container's status; it names both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct WrongStatus {
    pub verb: Verb,
    pub status: Status,
}

impl WrongStatus {
    fn describe(&self) -> String {
        let s = self.status;
        match self.verb {
            Verb::Start => format!("cannot start a {s} container"),
            // runc's words: containerd recognises them and takes the kill
            // of a stopped container as done.
            Verb::Kill => format!("container not running (it is {s})"),
            Verb::Exec => format!("cannot exec in a {s} container"),
            Verb::Attach => format!("cannot attach to a {s} container"),
            Verb::Pause if s == Status::Paused => "container is already paused".into(),
            Verb::Pause => format!("cannot pause a {s} container"),
            Verb::Resume => format!("cannot resume a {s} container (it is not paused)"),
            Verb::Update => format!("cannot update a {s} container"),
            Verb::Delete => {
                format!("cannot delete a {s} container (stop it first, or use --force)")
            }
        }
    }
}

/// Which verb each status allows, in one place. Asked of
/// [`State::current_status`] by the runtime; the shim, which records the
/// status, may ask it of the recorded one.
impl Status {
    fn allows(self, verb: Verb, ok: bool) -> Result<(), WrongStatus> {
        if ok {
            Ok(())
        } else {
            Err(WrongStatus { verb, status: self })
        }
    }

    /// The init runs (it may be frozen): there is a process to signal.
    fn has_init(self) -> bool {
        matches!(self, Status::Created | Status::Running | Status::Paused)
    }

    pub fn can_start(self) -> Result<(), WrongStatus> {
        self.allows(Verb::Start, self == Status::Created)
    }

    pub fn can_kill(self) -> Result<(), WrongStatus> {
        self.allows(Verb::Kill, self.has_init())
    }

    pub fn can_exec(self) -> Result<(), WrongStatus> {
        self.allows(Verb::Exec, self == Status::Running)
    }

    pub fn can_attach(self) -> Result<(), WrongStatus> {
        self.allows(Verb::Attach, self == Status::Running)
    }

    pub fn can_pause(self) -> Result<(), WrongStatus> {
        self.allows(
            Verb::Pause,
            matches!(self, Status::Created | Status::Running),
        )
    }

    pub fn can_resume(self) -> Result<(), WrongStatus> {
        self.allows(Verb::Resume, self == Status::Paused)
    }

    pub fn can_update(self) -> Result<(), WrongStatus> {
        self.allows(Verb::Update, self.has_init())
    }

    /// Without --force: nothing of the container may still run.
    pub fn can_delete(self) -> Result<(), WrongStatus> {
        self.allows(
            Verb::Delete,
            matches!(self, Status::Created | Status::Stopped),
        )
    }
}

/// What `state.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub id: String,
    pub bundle: String,
    pub rootfs: String,
    /// RFC 3339.
    pub created: String,
    /// The status as `create` or the shim last recorded it; what is true
    /// now is [`State::current_status`].
    #[serde(rename = "status")]
    pub recorded_status: Status,
    pub shim: Option<ProcessId>,
    pub init: Option<ProcessId>,
    pub exit_code: Option<i32>,
    pub annotations: BTreeMap<String, String>,
    pub command: Vec<String>,
    pub owner: u32,
    /// A bridged container's address, veth and ports, while it has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Endpoint>,
    /// The container's cgroup, written before it is made, so that
    /// `delete --force` finds it even when the shim died making it.
    #[serde(default)]
    pub cgroup: Option<protocol::CgroupPaths>,
    /// poststart runs at `start`, poststop at `delete`, long after
    /// config.json may have changed.
    #[serde(default)]
    pub hooks: protocol::Hooks,
    /// Processes the kernel's OOM killer killed in the container, counted
    /// when it stopped.
    #[serde(default)]
    pub oom_kills: u64,
    /// RFC 3339: when the shim saw the container stop, for `list`'s
    /// "Exited (3) 2 minutes ago".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("container does not exist")]
    NotFound,
    #[error("container already exists")]
    Exists,
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("state.json is damaged: {0}")]
    Damaged(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StateError {
    let what = what.into();
    move |source| StateError::Io { what, source }
}

/// An ID names a directory and appears in socket paths: keep it to the
/// characters runc allows, and short.
pub fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("container ID is empty".into());
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!(
            "container ID is {} characters long, at most {MAX_ID_LEN}",
            id.len()
        ));
    }
    if id == "." || id == ".." {
        return Err(format!("container ID {id:?} is not a name"));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+')))
    {
        return Err(format!(
            "container ID has {c:?}: only letters, digits, '_', '-', '.' and '+' are allowed"
        ));
    }
    Ok(())
}

/// A container's directory under the state root.
#[derive(Debug, Clone)]
pub struct ContainerDir {
    pub path: PathBuf,
}

impl ContainerDir {
    pub fn new(root: &Path, id: &str) -> ContainerDir {
        ContainerDir {
            path: root.join(id),
        }
    }

    pub fn state_file(&self) -> PathBuf {
        self.path.join("state.json")
    }

    pub fn socket(&self) -> PathBuf {
        self.path.join("shim.sock")
    }

    pub fn shim_log(&self) -> PathBuf {
        self.path.join("shim.log")
    }

    /// Where a bridged container's /etc/hosts (or hostname, resolv.conf)
    /// is written, to be bind-mounted over the image's.
    pub fn etc_file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Overlay directories of a copy-on-write root.
    pub fn upper(&self) -> PathBuf {
        self.path.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.path.join("work")
    }
    pub fn merged(&self) -> PathBuf {
        self.path.join("merged")
    }

    /// Make the directory; exactly one of several concurrent callers wins
    /// (mkdir is atomic), the others get `Exists`.
    pub fn create(&self) -> Result<(), StateError> {
        if let Some(root) = self.path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o711)
                .create(root)
                .map_err(io(format!("state root {}", root.display())))?;
        }
        match std::fs::DirBuilder::new().mode(0o711).create(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(StateError::Exists),
            Err(e) => Err(io(format!("state directory {}", self.path.display()))(e)),
        }
    }

    pub fn exists(&self) -> bool {
        self.path.is_dir()
    }

    pub fn load(&self) -> Result<State, StateError> {
        let text = match std::fs::read(self.state_file()) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(if self.exists() {
                    StateError::Damaged("state.json is missing".into())
                } else {
                    StateError::NotFound
                })
            }
            Err(e) => return Err(io("read state.json")(e)),
        };
        serde_json::from_slice(&text).map_err(|e| StateError::Damaged(e.to_string()))
    }

    /// Write state.json atomically: a temporary file, then rename, so a
    /// reader sees the old state or the new one, never half of one.
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        self.write(state, false)
    }

    /// As `save`, and on disk before it returns (fsync): for the exit
    /// status, which must outlive a crash of the host. The other states
    /// are not worth an fsync each (on a disk-backed /run each cost a
    /// millisecond or more on every run).
    pub fn save_durable(&self, state: &State) -> Result<(), StateError> {
        self.write(state, true)
    }

    fn write(&self, state: &State, durable: bool) -> Result<(), StateError> {
        let tmp = self.path.join(".state.json.tmp");
        let data = serde_json::to_vec(state).map_err(|e| StateError::Damaged(e.to_string()))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(io("write state.json"))?;
        f.write_all(&data).map_err(io("write state.json"))?;
        if durable {
            f.sync_all().map_err(io("sync state.json"))?;
        }
        std::fs::rename(&tmp, self.state_file()).map_err(io("rename state.json"))
    }

    /// Remove the directory and everything in it (the overlay's upper layer
    /// included). Nothing may still be mounted below it.
    pub fn remove(&self) -> Result<(), StateError> {
        match std::fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(format!("remove {}", self.path.display()))(e)),
        }
    }
}

impl State {
    /// The status now: the recorded one, corrected by whether the processes
    /// it names are still alive.
    ///
    /// A stop is derived from a dead init only once no shim can record it:
    /// the shim records "stopped" and the exit code in one durable write, so
    /// a container read as stopped has its exit code in `exit_code`, unless
    /// its shim died without writing it. Until then (see
    /// [`State::stop_unrecorded`]) the container is still what was recorded.
    pub fn current_status(&self) -> Status {
        match self.recorded_status {
            Status::Creating => match self.shim {
                Some(shim) if shim.is_alive() => Status::Creating,
                _ => Status::Stopped,
            },
            // Paused is the freezer's word, not ours: `pause` writes no state.
            Status::Created | Status::Running | Status::Paused => match self.init {
                Some(init) if init.is_alive() => match &self.cgroup {
                    Some(cg) if crate::cgroups::is_frozen(cg) => Status::Paused,
                    _ if self.recorded_status == Status::Paused => Status::Running,
                    _ => self.recorded_status,
                },
                _ if self.shim_alive() => match self.recorded_status {
                    Status::Paused => Status::Running,
                    recorded => recorded,
                },
                _ => Status::Stopped,
            },
            Status::Stopped => Status::Stopped,
        }
    }

    fn shim_alive(&self) -> bool {
        self.shim.is_some_and(|s| s.is_alive())
    }

    /// The init has ended and its shim, alive, has not recorded the stop
    /// yet (it is about to: it is woken by the init's end). A verb that
    /// must see the stop asks the shim to `Wait`, which it answers once the
    /// exit code is on disk.
    pub fn stop_unrecorded(&self) -> bool {
        matches!(
            self.recorded_status,
            Status::Created | Status::Running | Status::Paused
        ) && !self.init.is_some_and(|i| i.is_alive())
            && self.shim_alive()
    }

    /// `start`, asked of the status now.
    pub fn can_start(&self) -> Result<(), WrongStatus> {
        self.current_status().can_start()
    }

    /// `kill` (and `ps`): the init to signal, of a container that has one.
    pub fn can_kill(&self) -> Result<ProcessId, WrongStatus> {
        let status = self.current_status();
        status.can_kill()?;
        self.init.ok_or(WrongStatus {
            verb: Verb::Kill,
            status,
        })
    }

    pub fn can_exec(&self) -> Result<(), WrongStatus> {
        self.current_status().can_exec()
    }

    pub fn can_attach(&self) -> Result<(), WrongStatus> {
        self.current_status().can_attach()
    }

    pub fn can_pause(&self) -> Result<(), WrongStatus> {
        self.current_status().can_pause()
    }

    pub fn can_resume(&self) -> Result<(), WrongStatus> {
        self.current_status().can_resume()
    }

    pub fn can_update(&self) -> Result<(), WrongStatus> {
        self.current_status().can_update()
    }

    /// `delete` without --force.
    pub fn can_delete(&self) -> Result<(), WrongStatus> {
        self.current_status().can_delete()
    }

    /// The OCI state document (runtime-spec "State"), with runc's extras.
    pub fn oci_state(&self) -> serde_json::Value {
        let status = self.current_status();
        let pid = match (status, self.init) {
            (Status::Created | Status::Running | Status::Paused, Some(init)) => init.pid,
            _ => 0,
        };
        self.oci_state_as(status, pid)
    }

    /// The state document as hooks get it: the status and pid of the
    /// moment they run at.
    pub fn oci_state_as(&self, status: Status, pid: i32) -> serde_json::Value {
        let mut annotations = self.annotations.clone();
        if self.oom_kills > 0 {
            annotations.insert(OOM_ANNOTATION.into(), self.oom_kills.to_string());
        }
        let mut v = serde_json::json!({
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "status": status.to_string(),
            "pid": pid,
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": "",
            "annotations": annotations,
        });
        // A stopped container's network is gone, or going: the shim
        // releases it right after it records the exit.
        if let (Some(n), false) = (&self.network, status == Status::Stopped) {
            let a = &mut v["annotations"];
            a[netcfg::IP_ANNOTATION] = n.ip.to_string().into();
            a[netcfg::GATEWAY_ANNOTATION] = n.gateway.to_string().into();
            a[netcfg::BRIDGE_ANNOTATION] = n.bridge.clone().into();
            a[netcfg::SUBNET_ANNOTATION] = n.subnet.to_string().into();
            a[netcfg::VETH_ANNOTATION] = n.veth.clone().into();
            if !n.ports.is_empty() {
                let ports: Vec<String> = n.ports.iter().map(|p| p.to_string()).collect();
                a[netcfg::PORTS_ANNOTATION] = ports.join(",").into();
            }
        }
        if let (Status::Stopped, Some(code)) = (status, self.exit_code) {
            v["exitCode"] = code.into();
        }
        v
    }
}

/// Every container directory under `root`, by ID.
pub fn list(root: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|id| validate_id(id).is_ok())
        .collect();
    ids.sort();
    ids
}

/// The container whose ID is `id`, or else the only one whose ID starts
/// with it, as Docker resolves IDs. An exact match always wins; no match at
/// all gives `id` back, so that the verb reports it as it always has.
pub fn resolve_prefix(root: &Path, id: &str) -> Result<String, String> {
    if id.is_empty() || ContainerDir::new(root, id).exists() {
        return Ok(id.to_string());
    }
    let matches: Vec<String> = list(root)
        .into_iter()
        .filter(|c| c.starts_with(id))
        .collect();
    match matches.len() {
        0 => Ok(id.to_string()),
        1 => Ok(matches.into_iter().next().unwrap_or_default()),
        _ => Err(format!(
            "the prefix {id:?} is ambiguous: it matches {}",
            matches.join(", ")
        )),
    }
}

/// "5 minutes ago", "About an hour ago", as `docker ps` words it; "" for a
/// time that does not parse.
pub fn ago(rfc3339: &str) -> String {
    let Ok(t) = humantime::parse_rfc3339_weak(rfc3339) else {
        return String::new();
    };
    let secs = std::time::SystemTime::now()
        .duration_since(t)
        .map_or(0, |d| d.as_secs());
    format!("{} ago", duration_words(secs))
}

/// A duration as a person says it: "Less than a second", "10 seconds",
/// "About a minute", "5 minutes", "2 hours", "3 days".
pub fn duration_words(secs: u64) -> String {
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s @ 2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        s @ 120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        s @ 7200..=172_799 => format!("{} hours", s / 3600),
        s => format!("{} days", s / 86400),
    }
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(validate_id("web1").is_ok());
        assert!(validate_id("a.b_c-d+e").is_ok());
        assert!(validate_id("").is_err());
        assert!(validate_id("..").is_err());
        assert!(validate_id("a/b").is_err());
        assert!(validate_id(&"x".repeat(MAX_ID_LEN + 1)).is_err());
        assert!(validate_id(&"x".repeat(MAX_ID_LEN)).is_ok());
    }

    #[test]
    fn save_load_and_exclusive_create() {
        let root = std::env::temp_dir().join(format!("nsbox-state-test-{}", std::process::id()));
        let dir = ContainerDir::new(&root, "c1");
        dir.create().unwrap();
        assert!(matches!(dir.create(), Err(StateError::Exists)));
        let st = State {
            id: "c1".into(),
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: now_rfc3339(),
            recorded_status: Status::Stopped,
            shim: None,
            init: None,
            exit_code: Some(3),
            annotations: BTreeMap::new(),
            command: vec!["sh".into()],
            owner: 0,
            network: None,
            cgroup: None,
            hooks: Default::default(),
            oom_kills: 2,
            finished: Some(now_rfc3339()),
        };
        dir.save(&st).unwrap();
        assert_eq!(dir.load().unwrap(), st);
        assert_eq!(st.oci_state()["pid"], 0);
        assert_eq!(st.oci_state()["status"], "stopped");
        assert_eq!(st.oci_state()["annotations"][OOM_ANNOTATION], "2");
        dir.remove().unwrap();
        assert!(matches!(dir.load(), Err(StateError::NotFound)));
        std::fs::remove_dir(&root).unwrap();
    }

    #[test]
    fn prefixes_resolve_to_one_container() {
        let root = std::env::temp_dir().join(format!("nsbox-prefix-test-{}", std::process::id()));
        for id in ["web1", "web2", "db", "d"] {
            ContainerDir::new(&root, id).create().unwrap();
        }
        assert_eq!(resolve_prefix(&root, "db").unwrap(), "db");
        // An exact match wins over the longer IDs it is a prefix of.
        assert_eq!(resolve_prefix(&root, "d").unwrap(), "d");
        assert_eq!(resolve_prefix(&root, "web2").unwrap(), "web2");
        let err = resolve_prefix(&root, "we").unwrap_err();
        assert!(
            err.contains("ambiguous") && err.contains("web1, web2"),
            "{err}"
        );
        assert_eq!(resolve_prefix(&root, "zz").unwrap(), "zz");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn durations_read_as_docker_words_them() {
        assert_eq!(duration_words(0), "Less than a second");
        assert_eq!(duration_words(10), "10 seconds");
        assert_eq!(duration_words(90), "About a minute");
        assert_eq!(duration_words(300), "5 minutes");
        assert_eq!(duration_words(4000), "About an hour");
        assert_eq!(duration_words(3 * 86400), "3 days");
    }

    #[test]
    fn each_verb_is_refused_naming_the_status() {
        use Status::*;
        let all = [Creating, Created, Running, Paused, Stopped];
        let allowed = |q: fn(Status) -> Result<(), WrongStatus>| -> Vec<Status> {
            all.into_iter().filter(|s| q(*s).is_ok()).collect()
        };
        assert_eq!(allowed(Status::can_start), [Created]);
        assert_eq!(allowed(Status::can_kill), [Created, Running, Paused]);
        assert_eq!(allowed(Status::can_exec), [Running]);
        assert_eq!(allowed(Status::can_attach), [Running]);
        assert_eq!(allowed(Status::can_pause), [Created, Running]);
        assert_eq!(allowed(Status::can_resume), [Paused]);
        assert_eq!(allowed(Status::can_update), [Created, Running, Paused]);
        assert_eq!(allowed(Status::can_delete), [Created, Stopped]);
        let e = |r: Result<(), WrongStatus>| r.unwrap_err().to_string();
        assert_eq!(e(Running.can_start()), "cannot start a running container");
        assert_eq!(
            e(Stopped.can_kill()),
            "container not running (it is stopped)"
        );
        assert_eq!(e(Paused.can_pause()), "container is already paused");
        assert_eq!(
            e(Running.can_resume()),
            "cannot resume a running container (it is not paused)"
        );
        assert_eq!(
            e(Paused.can_delete()),
            "cannot delete a paused container (stop it first, or use --force)"
        );
    }

    #[test]
    fn a_dead_init_means_stopped() {
        let st = State {
            id: "c1".into(),
            bundle: String::new(),
            rootfs: String::new(),
            created: String::new(),
            recorded_status: Status::Running,
            shim: None,
            init: Some(ProcessId {
                pid: i32::MAX - 1,
                start_time: 1,
            }),
            exit_code: None,
            annotations: BTreeMap::new(),
            command: vec![],
            owner: 0,
            network: None,
            cgroup: None,
            hooks: Default::default(),
            oom_kills: 0,
            finished: None,
        };
        assert_eq!(st.current_status(), Status::Stopped);
        assert!(!st.stop_unrecorded());
        // While a live shim has yet to record the stop (and its exit code),
        // the container is what was recorded.
        let shim = ProcessId::of(std::process::id() as i32);
        let st = State { shim, ..st };
        assert_eq!(st.current_status(), Status::Running);
        assert!(st.stop_unrecorded());
        let st = State {
            recorded_status: Status::Stopped,
            exit_code: Some(0),
            ..st
        };
        assert_eq!(st.current_status(), Status::Stopped);
        assert!(!st.stop_unrecorded());
    }
}
