//! Who the runtime runs as. Real root may write the host's cgroups, its
//! network and idmapped mounts; a rootless caller may not, and keeps its
//! state under $XDG_RUNTIME_DIR. Rootless comes in two kinds, as runc
//! tells them apart: an ordinary user (euid not 0), and uid 0 in a user
//! namespace that is not the initial one, which is how rootless Podman
//! runs the runtime (its namespace maps 0 to the user, and 1.. to the
//! user's subordinate ids; XDG_RUNTIME_DIR is set; no `--root`).

use std::path::Path;
use std::sync::OnceLock;

/// What the runtime may do on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    /// uid 0 in the initial user namespace.
    Root,
    /// uid 0 in a user namespace of its own (rootless Podman, `unshare
    /// -r`): root over its namespaces, nobody on the host.
    NamespacedRoot,
    /// An ordinary user.
    Unprivileged,
}

impl Privilege {
    pub fn of_self() -> Privilege {
        if !nix::unistd::geteuid().is_root() {
            Privilege::Unprivileged
        } else if in_initial_userns() {
            Privilege::Root
        } else {
            Privilege::NamespacedRoot
        }
    }

    pub fn is_rootless(self) -> bool {
        self != Privilege::Root
    }
}

/// Is this process in the initial user namespace? Its uid_map then maps
/// every id onto itself ("0 0 4294967295"), which no other namespace can
/// have (runc's userns.RunningInUserNS reads it the same way). A kernel
/// without user namespaces has no uid_map: the initial one, then.
pub fn in_initial_userns() -> bool {
    static INITIAL: OnceLock<bool> = OnceLock::new();
    *INITIAL.get_or_init(|| match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(text) => is_identity_map(&text),
        Err(_) => true,
    })
}

fn is_identity_map(text: &str) -> bool {
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .filter(|f: &Vec<&str>| !f.is_empty())
        .collect();
    matches!(lines.as_slice(), [f] if f.as_slice() == ["0", "0", "4294967295"])
}

/// The host uid our euid stands for: the euid itself in the initial user
/// namespace, else what the uid_map says it maps to (for a name that stays
/// apart from the host's root's and other users').
pub fn host_uid() -> u32 {
    let euid = nix::unistd::geteuid().as_raw();
    let Ok(text) = std::fs::read_to_string("/proc/self/uid_map") else {
        return euid;
    };
    outer_id(&text, euid).unwrap_or(euid)
}

fn outer_id(map: &str, id: u32) -> Option<u32> {
    map.lines().find_map(|l| {
        let f: Vec<u64> = l
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        let [inner, outer, count] = f.as_slice() else {
            return None;
        };
        let id = u64::from(id);
        (id >= *inner && id < inner + count)
            .then(|| u32::try_from(outer + (id - inner)).ok())
            .flatten()
    })
}

/// May this process make cgroups under `dir` (a cgroup directory that
/// exists)? A rootless caller may where the subtree was delegated to it:
/// the directory is writable by it, as systemd leaves user@UID.service,
/// or root's chown of a directory and its cgroup.procs,
/// cgroup.subtree_control and cgroup.threads.
pub fn can_write_cgroup(dir: &Path) -> bool {
    nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_ok()
        && nix::unistd::access(&dir.join("cgroup.procs"), nix::unistd::AccessFlags::W_OK).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_identity_map_is_the_initial_namespace() {
        assert!(is_identity_map("         0          0 4294967295\n"));
        // rootless Podman's namespace.
        assert!(!is_identity_map(
            "         0       1001          1\n         1     700000      65536\n"
        ));
        assert!(!is_identity_map("0 0 1000\n"));
        assert!(!is_identity_map(""));
    }

    #[test]
    fn outer_ids_come_from_the_map() {
        let map = "0 1001 1\n1 700000 65536\n";
        assert_eq!(outer_id(map, 0), Some(1001));
        assert_eq!(outer_id(map, 1), Some(700000));
        assert_eq!(outer_id(map, 65536), Some(765535));
        assert_eq!(outer_id(map, 65537), None);
        assert_eq!(outer_id("0 0 4294967295\n", 0), Some(0));
    }
}
