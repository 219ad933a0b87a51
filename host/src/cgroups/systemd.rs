//! `--systemd-cgroup`: the container's cgroup as a transient scope unit
//! that systemd makes and owns, asked for over D-Bus, as runc and crun do
//! on hosts where systemd manages the cgroup tree (Podman's, Docker's and
//! kubelet's default there).
//!
//! - Names, as runc gives them: linux.cgroupsPath is `slice:prefix:name`,
//!   the unit `prefix-name.scope` in `slice` (system.slice when empty);
//!   without a cgroupsPath, `nsbox-ID.scope` in system.slice. A slice's
//!   name is its place: `a-b.slice` is /a.slice/a-b.slice.
//! - Making it: StartTransientUnit with tiny-init's pid (a scope cannot be
//!   made empty), Delegate=yes, accounting on, and the limits systemd has
//!   properties for; then the shim writes every limit into the scope's
//!   files (the rest, such as the device program and io throttles, only
//!   exist there). systemd writes its properties again whenever it
//!   re-applies a unit's settings (daemon-reload): they must agree.
//! - Removing it: StopUnit and ResetFailedUnit; systemd removes the cgroup.
//!
//! Everything else (freeze, ps, OOM kills, exec's join) works on the
//! scope's directory as on any v2 cgroup.
//!
//! The calls run on a tokio current-thread runtime made for the call and
//! dropped after it, so no thread outlives a call: the shim calls this
//! after its clone of tiny-init and the runtime before it exits, and
//! neither may have stray threads when it forks.

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use protocol::{CgroupDir, CgroupPaths, Resources, SystemdUnit};
use zbus::message::Type as MessageType;
use zbus::zvariant::{OwnedObjectPath, Value};
use zbus::{Connection, MatchRule, MessageStream};

use super::{CgroupError, Layout};

/// The slice of a container whose cgroupsPath names none.
pub const DEFAULT_SLICE: &str = "system.slice";
/// The unit prefix of a container whose cgroupsPath names none.
pub const DEFAULT_PREFIX: &str = "nsbox";
/// How long systemd may take to start or stop a unit (runc waits as long).
const JOB_TIMEOUT: Duration = Duration::from_secs(30);

const DESTINATION: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";

#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    /// `/run/systemd/system` is missing: systemd does not run this host
    /// (sd_booted(3)'s test).
    #[error("--systemd-cgroup: systemd is not running on this host (no /run/systemd/system); use cgroupfs (no --systemd-cgroup)")]
    NotRunning,
    #[error("--systemd-cgroup needs cgroup v2; this host's cgroups are {0}")]
    NotUnified(&'static str),
    #[error("cgroupsPath {path:?}: {why} (with --systemd-cgroup it is slice:prefix:name, as \"system.slice:nsbox:ID\")")]
    Path { path: String, why: &'static str },
    #[error("connect to systemd through the system D-Bus (is dbus-daemon running?)")]
    Connect(#[source] Box<zbus::Error>),
    #[error("systemd: {call} {unit}")]
    Call {
        call: &'static str,
        unit: String,
        #[source]
        source: Box<zbus::Error>,
    },
    #[error(
        "systemd already has a unit {0} (the scope of another container, or a unit of the host's)"
    )]
    Exists(String),
    #[error("systemd: {call} {unit}: the job ended with {result:?}")]
    Job {
        call: &'static str,
        unit: String,
        result: String,
    },
    #[error("systemd: {call} {unit}: no answer within {}s", JOB_TIMEOUT.as_secs())]
    Timeout { call: &'static str, unit: String },
    #[error("systemd put the scope's pid {pid} in {found:?}, not in {expected:?} (does systemd manage this cgroup tree from another root?)")]
    Elsewhere {
        pid: i32,
        found: String,
        expected: String,
    },
    #[error("start a runtime for the D-Bus call")]
    Runtime(#[source] std::io::Error),
}

impl From<SystemdError> for CgroupError {
    fn from(e: SystemdError) -> CgroupError {
        CgroupError::Systemd(Box::new(e))
    }
}

type Result<T> = std::result::Result<T, SystemdError>;

/// Does systemd run this host? As sd_booted(3) and runc tell.
pub fn is_running() -> bool {
    std::fs::symlink_metadata("/run/systemd/system").is_ok_and(|m| m.is_dir())
}

impl Layout {
    /// The container's cgroup as systemd's scope for `cgroups_path`
    /// (`slice:prefix:name`; None or "" for `nsbox-ID.scope` in
    /// system.slice). Refused where systemd does not run, and on v1.
    pub fn systemd_paths(
        &self,
        cgroups_path: Option<&str>,
        id: &str,
    ) -> std::result::Result<CgroupPaths, CgroupError> {
        let unit = unit_of(cgroups_path, id)?;
        if !is_running() {
            return Err(SystemdError::NotRunning.into());
        }
        let Layout::V2 { root } = self else {
            return Err(SystemdError::NotUnified(self.name()).into());
        };
        let path = format!("{}/{}", expand_slice(&unit.slice)?, unit.unit);
        let path = path.replacen("//", "/", 1);
        Ok(CgroupPaths {
            dirs: vec![CgroupDir {
                controller: String::new(),
                dir: root
                    .join(path.trim_start_matches('/'))
                    .to_string_lossy()
                    .into_owned(),
            }],
            path,
            unified: true,
            systemd: Some(unit),
        })
    }
}

/// The slice and the scope's name for a cgroupsPath, as runc reads it.
pub fn unit_of(cgroups_path: Option<&str>, id: &str) -> Result<SystemdUnit> {
    let bad = |why| SystemdError::Path {
        path: cgroups_path.unwrap_or_default().to_string(),
        why,
    };
    let (slice, prefix, name) = match cgroups_path {
        None | Some("") => ("", DEFAULT_PREFIX, id),
        Some(p) => match p.split(':').collect::<Vec<_>>().as_slice() {
            [slice, prefix, name] => (*slice, *prefix, *name),
            _ => return Err(bad("not of the form slice:prefix:name")),
        },
    };
    if name.is_empty() {
        return Err(bad("the name is empty"));
    }
    if name.ends_with(".slice") {
        // runc makes a slice then (kubelet once asked for that); nsbox
        // runs containers in scopes only.
        return Err(bad(
            "a name ending in .slice asks for a slice unit; nsbox makes scopes only",
        ));
    }
    let unit = if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    if !is_unit_name(&unit) {
        return Err(bad(
            "the unit name it gives has characters systemd does not allow in one",
        ));
    }
    let slice = if slice.is_empty() {
        DEFAULT_SLICE
    } else {
        slice
    };
    expand_slice(slice).map_err(|_| bad("the slice is not a slice's name (NAME.slice, no '/')"))?;
    Ok(SystemdUnit {
        slice: slice.to_string(),
        unit,
    })
}

/// What systemd takes as a unit name: ASCII letters, digits and
/// ":-_.\\", at most 255 bytes.
fn is_unit_name(s: &str) -> bool {
    s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":-_.\\@".contains(&b))
}

/// A slice's cgroup path: each '-' is a level, `a-b.slice` being
/// /a.slice/a-b.slice; `-.slice` is the root.
pub fn expand_slice(slice: &str) -> Result<String> {
    let bad = || SystemdError::Path {
        path: slice.to_string(),
        why: "not a slice's name",
    };
    let base = slice.strip_suffix(".slice").ok_or_else(bad)?;
    if base.is_empty() || slice.contains('/') || !is_unit_name(slice) {
        return Err(bad());
    }
    if base == "-" {
        return Ok("/".into());
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for part in base.split('-') {
        if part.is_empty() {
            return Err(bad());
        }
        path.push('/');
        path.push_str(&prefix);
        path.push_str(part);
        path.push_str(".slice");
        prefix.push_str(part);
        prefix.push('-');
    }
    Ok(path)
}

/// The unit properties for `r`, where systemd has them (the values
/// agree with what cgroups::v2 writes into the files).
fn resource_properties(r: &Resources) -> Vec<(&'static str, Value<'static>)> {
    let max_or = |v: i64| if v < 0 { u64::MAX } else { v as u64 };
    let mut props: Vec<(&'static str, Value<'static>)> = Vec::new();
    if let Some(m) = &r.memory {
        if let Some(v) = m.limit.filter(|&v| v != 0) {
            props.push(("MemoryMax", Value::from(max_or(v))));
        }
        if let Some(v) = m.reservation.filter(|&v| v != 0) {
            props.push(("MemoryLow", Value::from(max_or(v))));
        }
        // OCI's swap is memory plus swap; systemd's is swap alone. What
        // does not convert is the files' to refuse, clearly.
        match (m.swap, m.limit) {
            (Some(s), _) if s < 0 => props.push(("MemorySwapMax", Value::from(u64::MAX))),
            (Some(s), Some(l)) if l > 0 && s >= l => {
                props.push(("MemorySwapMax", Value::from((s - l) as u64)))
            }
            _ => {}
        }
    }
    if let Some(c) = &r.cpu {
        if let Some(s) = c.shares.filter(|&s| s != 0) {
            props.push(("CPUWeight", Value::from(super::v2::shares_to_weight(s))));
        }
        let period = c.period.unwrap_or(0);
        if period != 0 {
            props.push(("CPUQuotaPeriodUSec", Value::from(period)));
        }
        if c.quota.is_some() || period != 0 {
            props.push((
                "CPUQuotaPerSecUSec",
                Value::from(quota_per_sec(c.quota, period)),
            ));
        }
        if let Some(bits) = c.cpus.as_deref().and_then(range_to_bits) {
            props.push(("AllowedCPUs", Value::from(bits)));
        }
        if let Some(bits) = c.mems.as_deref().and_then(range_to_bits) {
            props.push(("AllowedMemoryNodes", Value::from(bits)));
        }
    }
    if let Some(v) = r.pids_limit.filter(|&v| v > 0 || v == -1) {
        props.push(("TasksMax", Value::from(max_or(v))));
    }
    for (key, value) in &r.unified {
        let value = value.trim();
        let num = || -> Option<u64> {
            if value == "max" {
                Some(u64::MAX)
            } else {
                value.parse().ok()
            }
        };
        let name = match key.as_str() {
            "memory.max" => "MemoryMax",
            "memory.high" => "MemoryHigh",
            "memory.low" => "MemoryLow",
            "memory.min" => "MemoryMin",
            "memory.swap.max" => "MemorySwapMax",
            "pids.max" => "TasksMax",
            "cpu.weight" => "CPUWeight",
            _ => continue,
        };
        if let Some(n) = num() {
            props.push((name, Value::from(n)));
        }
    }
    props
}

/// systemd keeps a CPU quota as microseconds per second, in whole
/// percents: a fractional one is rounded up, so that what the kernel gets
/// is never below what was asked (runc's rule).
fn quota_per_sec(quota: Option<i64>, period: u64) -> u64 {
    match quota {
        Some(q) if q > 0 => {
            let period = if period == 0 { 100_000 } else { period };
            let per_sec = q as u64 * 1_000_000 / period;
            per_sec.div_ceil(10_000) * 10_000
        }
        _ => u64::MAX,
    }
}

/// "0-2,7" as systemd's CPU (or NUMA node) mask: bit n of byte n/8.
fn range_to_bits(list: &str) -> Option<Vec<u8>> {
    let mut bits: Vec<u8> = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (
                a.trim().parse::<usize>().ok()?,
                b.trim().parse::<usize>().ok()?,
            ),
            None => {
                let n = part.trim().parse::<usize>().ok()?;
                (n, n)
            }
        };
        if lo > hi || hi >= 1 << 16 {
            return None;
        }
        for n in lo..=hi {
            if bits.len() <= n / 8 {
                bits.resize(n / 8 + 1, 0);
            }
            bits[n / 8] |= 1 << (n % 8);
        }
    }
    (!bits.is_empty()).then_some(bits)
}

/// Run one exchange with systemd on a runtime of its own, dropped (with
/// the connection) before this returns: no thread is left behind.
fn block_on<T>(f: impl Future<Output = Result<T>>) -> Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(SystemdError::Runtime)?;
    rt.block_on(f)
}

/// The system bus, as go-systemd (runc's) tries first. systemd's own
/// socket (/run/systemd/private, no bus daemon) is no way for zbus, which
/// refuses the messages there: systemd signs them with its well-known name
/// where the specification has a unique one.
async fn connect() -> Result<Connection> {
    Connection::system()
        .await
        .map_err(|e| SystemdError::Connect(Box::new(e)))
}

/// A call to the manager, with its reply's body.
async fn call<B, R>(conn: &Connection, method: &'static str, unit: &str, body: &B) -> Result<R>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
    R: for<'d> zbus::zvariant::DynamicDeserialize<'d>,
{
    let err = |source| SystemdError::Call {
        call: method,
        unit: unit.to_string(),
        source: Box::new(source),
    };
    let reply = tokio::time::timeout(
        JOB_TIMEOUT,
        conn.call_method(Some(DESTINATION), MANAGER_PATH, Some(MANAGER), method, body),
    )
    .await
    .map_err(|_| SystemdError::Timeout {
        call: method,
        unit: unit.to_string(),
    })?
    .map_err(err)?;
    reply.body().deserialize().map_err(err)
}

/// JobRemoved signals, listened to before the job is asked for, so that
/// none is missed.
async fn job_events(conn: &Connection) -> Result<MessageStream> {
    let rule = MatchRule::builder()
        .msg_type(MessageType::Signal)
        .interface(MANAGER)
        .and_then(|b| b.member("JobRemoved"))
        .and_then(|b| b.path(MANAGER_PATH))
        .map(|b| b.build())
        .map_err(|e| SystemdError::Connect(Box::new(e)))?;
    MessageStream::for_match_rule(rule, conn, None)
        .await
        .map_err(|e| SystemdError::Connect(Box::new(e)))
}

/// How the job `job` ended ("done", "failed", "canceled", ...).
async fn job_result(
    events: &mut MessageStream,
    job: &OwnedObjectPath,
    call: &'static str,
    unit: &str,
) -> Result<String> {
    let wait = async {
        while let Some(msg) = events.next().await {
            let Ok(msg) = msg else { continue };
            let body = msg.body();
            let Ok((_, path, _, result)) =
                body.deserialize::<(u32, OwnedObjectPath, String, String)>()
            else {
                continue;
            };
            if path == *job {
                return Some(result);
            }
        }
        None
    };
    match tokio::time::timeout(JOB_TIMEOUT, wait).await {
        Ok(Some(result)) => Ok(result),
        Ok(None) => Err(SystemdError::Call {
            call,
            unit: unit.to_string(),
            source: Box::new(zbus::Error::InputOutput(std::sync::Arc::new(
                std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
            ))),
        }),
        Err(_) => Err(SystemdError::Timeout {
            call,
            unit: unit.to_string(),
        }),
    }
}

const UNIT_EXISTS: &str = "org.freedesktop.systemd1.UnitExists";

fn is_dbus_error(e: &SystemdError, name: &str) -> bool {
    match e {
        SystemdError::Call { source, .. } => {
            matches!(&**source, zbus::Error::MethodError(n, _, _) if n.as_str() == name)
        }
        _ => false,
    }
}

/// Make the container's scope with `pid` (tiny-init) in it, its limits as
/// properties, and wait until systemd has it running. A scope of the same
/// name left failed by an earlier container is reset and tried again once,
/// as runc does; a live one is another container's, and refused.
pub fn start_scope(paths: &CgroupPaths, pid: i32, resources: &Resources) -> Result<()> {
    let Some(unit) = &paths.systemd else {
        return Ok(());
    };
    block_on(async {
        let conn = connect().await?;
        let mut events = job_events(&conn).await?;
        let mut props: Vec<(&str, Value)> = vec![
            (
                "Description",
                Value::from(format!("nsbox container {}", unit.unit)),
            ),
            ("Slice", Value::from(unit.slice.clone())),
            ("PIDs", Value::from(vec![pid as u32])),
            ("Delegate", Value::from(true)),
            ("MemoryAccounting", Value::from(true)),
            ("CPUAccounting", Value::from(true)),
            ("IOAccounting", Value::from(true)),
            ("TasksAccounting", Value::from(true)),
            ("DefaultDependencies", Value::from(false)),
        ];
        props.extend(resource_properties(resources));
        let aux: Vec<(&str, Vec<(&str, Value)>)> = Vec::new();
        let body = (unit.unit.as_str(), "replace", props, aux);
        let job: OwnedObjectPath = match call(&conn, "StartTransientUnit", &unit.unit, &body).await
        {
            Err(e) if is_dbus_error(&e, UNIT_EXISTS) => {
                let exists = || SystemdError::Exists(unit.unit.clone());
                let _: () = call(&conn, "ResetFailedUnit", &unit.unit, &(&unit.unit,))
                    .await
                    .map_err(|_| exists())?;
                match call(&conn, "StartTransientUnit", &unit.unit, &body).await {
                    Err(e) if is_dbus_error(&e, UNIT_EXISTS) => return Err(exists()),
                    other => other?,
                }
            }
            other => other?,
        };
        let result = job_result(&mut events, &job, "StartTransientUnit", &unit.unit).await?;
        if result != "done" {
            let _: Result<()> = call(&conn, "ResetFailedUnit", &unit.unit, &(&unit.unit,)).await;
            return Err(SystemdError::Job {
                call: "StartTransientUnit",
                unit: unit.unit.clone(),
                result,
            });
        }
        Ok(())
    })?;
    check_placed(paths, pid)
}

/// systemd names the scope's cgroup from its own root: make sure that is
/// the path we computed (and record), rather than write limits elsewhere.
fn check_placed(paths: &CgroupPaths, pid: i32) -> Result<()> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let found = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_default()
        .to_string();
    if found == paths.path {
        return Ok(());
    }
    Err(SystemdError::Elsewhere {
        pid,
        found,
        expected: paths.path.clone(),
    })
}

/// Stop the container's scope (systemd kills what is left in it and
/// removes its cgroup) and forget it; a scope systemd has already stopped
/// and collected is no error.
pub fn stop_scope(unit: &SystemdUnit) -> Result<()> {
    block_on(async {
        let conn = connect().await?;
        let mut events = job_events(&conn).await?;
        let stopped = match call::<_, OwnedObjectPath>(
            &conn,
            "StopUnit",
            &unit.unit,
            &(&unit.unit, "replace"),
        )
        .await
        {
            Err(e) if is_dbus_error(&e, "org.freedesktop.systemd1.NoSuchUnit") => Ok(()),
            Err(e) => Err(e),
            Ok(job) => {
                let result = job_result(&mut events, &job, "StopUnit", &unit.unit).await?;
                if result == "done" {
                    Ok(())
                } else {
                    Err(SystemdError::Job {
                        call: "StopUnit",
                        unit: unit.unit.clone(),
                        result,
                    })
                }
            }
        };
        // A scope that failed (its processes OOM-killed, say) stays loaded
        // until reset, and its name taken.
        let _: Result<()> = call(&conn, "ResetFailedUnit", &unit.unit, &(&unit.unit,)).await;
        stopped
    })
}

/// `update`: the new limits as the scope's properties too, so that systemd
/// does not put back the old ones when it next applies the unit's settings.
pub fn set_properties(unit: &SystemdUnit, resources: &Resources) -> Result<()> {
    let props = resource_properties(resources);
    if props.is_empty() {
        return Ok(());
    }
    block_on(async {
        let conn = connect().await?;
        call(
            &conn,
            "SetUnitProperties",
            &unit.unit,
            &(unit.unit.as_str(), true, props),
        )
        .await
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{CpuResources, MemoryResources};

    #[test]
    fn names_are_runcs() {
        let u = unit_of(None, "web1").unwrap();
        assert_eq!(
            (u.slice.as_str(), u.unit.as_str()),
            ("system.slice", "nsbox-web1.scope")
        );
        let u = unit_of(Some("machine.slice:libpod:abc"), "x").unwrap();
        assert_eq!(
            (u.slice.as_str(), u.unit.as_str()),
            ("machine.slice", "libpod-abc.scope")
        );
        let u = unit_of(Some(":docker:abc"), "x").unwrap();
        assert_eq!(
            (u.slice.as_str(), u.unit.as_str()),
            ("system.slice", "docker-abc.scope")
        );
        let u = unit_of(
            Some("kubepods-besteffort-pod1.slice:cri-containerd:c1"),
            "x",
        )
        .unwrap();
        assert_eq!(u.unit, "cri-containerd-c1.scope");
    }

    #[test]
    fn bad_paths_are_refused_by_name() {
        for p in [
            "a:b",
            "/x/y",
            "a.slice:p:",
            "a:p:n",
            "a.slice:p:pod.slice",
            "a/b.slice:p:n",
            "s.slice:p:n/m",
        ] {
            let e = unit_of(Some(p), "x").unwrap_err().to_string();
            assert!(e.contains(p), "{p}: {e}");
        }
    }

    #[test]
    fn slices_expand_to_their_place() {
        assert_eq!(expand_slice("system.slice").unwrap(), "/system.slice");
        assert_eq!(
            expand_slice("kubepods-besteffort-pod1.slice").unwrap(),
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice"
        );
        assert_eq!(expand_slice("-.slice").unwrap(), "/");
        for bad in [
            "",
            ".slice",
            "a--b.slice",
            "-a.slice",
            "a.scope",
            "a/b.slice",
        ] {
            assert!(expand_slice(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_on_v2_with_systemd_only() {
        let v1 = Layout::V1 {
            hierarchies: vec![("memory".into(), "/sys/fs/cgroup/memory".into())],
            hybrid: true,
        };
        let e = v1.systemd_paths(None, "c").unwrap_err().to_string();
        if is_running() {
            assert!(e.contains("cgroup v2") && e.contains("hybrid"), "{e}");
        } else {
            assert!(e.contains("systemd is not running"), "{e}");
        }
    }

    #[test]
    fn limits_become_properties() {
        let r = Resources {
            memory: Some(MemoryResources {
                limit: Some(64 << 20),
                swap: Some(96 << 20),
                ..Default::default()
            }),
            cpu: Some(CpuResources {
                shares: Some(1024),
                quota: Some(50_000),
                period: Some(100_000),
                cpus: Some("0-1,9".into()),
                mems: None,
            }),
            pids_limit: Some(-1),
            ..Default::default()
        };
        let props = resource_properties(&r);
        let get = |k: &str| props.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        assert_eq!(get("MemoryMax"), Some(Value::from(64u64 << 20)));
        assert_eq!(get("MemorySwapMax"), Some(Value::from(32u64 << 20)));
        assert_eq!(get("CPUWeight"), Some(Value::from(39u64)));
        assert_eq!(get("CPUQuotaPerSecUSec"), Some(Value::from(500_000u64)));
        assert_eq!(get("CPUQuotaPeriodUSec"), Some(Value::from(100_000u64)));
        assert_eq!(get("AllowedCPUs"), Some(Value::from(vec![0b11u8, 0b10])));
        assert_eq!(get("TasksMax"), Some(Value::from(u64::MAX)));
    }

    #[test]
    fn fractional_quotas_round_up_to_a_percent() {
        assert_eq!(quota_per_sec(Some(33_333), 100_000), 340_000);
        assert_eq!(quota_per_sec(Some(-1), 100_000), u64::MAX);
        assert_eq!(quota_per_sec(None, 0), u64::MAX);
    }
}
