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
//! Here the names and places, which the runtime's plan and the shim's
//! teardown need; the D-Bus calls are the runtime's (runtime/src/systemd.rs),
//! so that no shim, which lives as long as its container, carries a D-Bus
//! client: its relocated data alone would cost every container ~30 KiB.

use std::time::Duration;

use protocol::{CgroupDir, CgroupPaths, SystemdUnit};

use super::{CgroupError, Layout};

/// Stops a container's scope: the runtime's D-Bus call, given to
/// [`super::destroy`] by those who have it.
pub type StopScope = fn(&SystemdUnit) -> Result<()>;

/// The slice of a container whose cgroupsPath names none.
pub const DEFAULT_SLICE: &str = "system.slice";
/// The unit prefix of a container whose cgroupsPath names none.
pub const DEFAULT_PREFIX: &str = "nsbox";
/// How long systemd may take to start or stop a unit (runc waits as long).
pub const JOB_TIMEOUT: Duration = Duration::from_secs(30);

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
    Connect(#[source] BoxedError),
    #[error("systemd: {call} {unit}")]
    Call {
        call: &'static str,
        unit: String,
        #[source]
        source: BoxedError,
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

/// The D-Bus client's error (zbus's, in the runtime).
pub type BoxedError = Box<dyn std::error::Error + Send + Sync>;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
