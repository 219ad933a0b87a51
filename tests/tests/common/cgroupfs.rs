//! The host's cgroups as a test reads them back: v1 (this development
//! machine, whose cgroup2 mount beside the v1 hierarchies nsbox leaves
//! alone, as runc does) or v2 alone (`make test-cgroup2`'s virtual
//! machine). A test that checks a cgroup file checks the file of the layout
//! it runs on, so that the same test means the same on both.

use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

use super::{cgroup_dir, mountinfo};

/// Is this host's only cgroup hierarchy a cgroup2 one?
pub fn is_v2() -> bool {
    static V2: OnceLock<bool> = OnceLock::new();
    *V2.get_or_init(|| {
        let types: Vec<String> = mountinfo()
            .iter()
            .filter_map(|l| l.split_once(" - ")?.1.split(' ').next().map(String::from))
            .collect();
        !types.iter().any(|t| t == "cgroup") && types.iter().any(|t| t == "cgroup2")
    })
}

/// The mount point of the v2 hierarchy (on a v2 host).
pub fn v2_root() -> PathBuf {
    mountinfo()
        .iter()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            if right.split(' ').next()? != "cgroup2" {
                return None;
            }
            left.split(' ').nth(4).map(PathBuf::from)
        })
        .expect("no cgroup2 mount")
}

/// The directory of cgroup `rel` that holds `controller`'s files: its
/// hierarchy's on v1, the one hierarchy's on v2.
pub fn controller_dir(controller: &str, rel: &str) -> PathBuf {
    if is_v2() {
        v2_root().join(rel.trim_start_matches('/'))
    } else {
        cgroup_dir(controller, rel)
    }
}

/// A cgroup file of `rel`, trimmed; fails the test when it cannot be read.
#[track_caller]
pub fn read_cgroup_file(controller: &str, rel: &str, file: &str) -> String {
    let p = controller_dir(controller, rel).join(file);
    fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

/// Does this host have `controller` where nsbox can use it: a v1
/// hierarchy of its own, or (v2) in the root's cgroup.controllers?
pub fn has_controller(controller: &str) -> bool {
    if is_v2() {
        fs::read_to_string(v2_root().join("cgroup.controllers"))
            .unwrap_or_default()
            .split_whitespace()
            .any(|c| c == controller)
    } else {
        mountinfo().iter().any(|l| {
            let Some((_, right)) = l.split_once(" - ") else {
                return false;
            };
            let r: Vec<&str> = right.split(' ').collect();
            r.first() == Some(&"cgroup")
                && r.get(2)
                    .is_some_and(|o| o.split(',').any(|o| o == controller))
        })
    }
}

/// The cgroup of process `pid` that holds `controller`, from
/// /proc/PID/cgroup ("0::PATH" on v2).
pub fn proc_cgroup(pid: i32, controller: &str) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
        let ours = if is_v2() {
            names.is_empty()
        } else {
            names.split(',').any(|n| n == controller)
        };
        ours.then(|| path.to_string())
    })
}

impl super::Test {
    /// The cgroup path the runtime gives container `id` of this test when
    /// config.json names none: /nsbox@SCOPE@ID.
    pub fn default_cgroup(&self, id: &str) -> String {
        format!("/nsbox@{}@{id}", self.cgroup_scope())
    }
}
