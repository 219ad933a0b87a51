//! Checks of single fields of config.json, each refusing a wrong value by
//! the field's name: paths inside the container, id mappings, mount
//! options, sysctls and hooks.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use protocol::{Hook, Hooks, IdMap, Namespace, NamespaceKind};

use super::{io_error, Result};

/// An absolute path in the container's view, without '..'.
pub(super) fn absolute_in_container(what: &str, p: &Path) -> Result<String> {
    if !p.is_absolute() {
        refuse!("{what} {}: must be an absolute path", p.display());
    }
    if p.components().any(|c| c == Component::ParentDir) {
        refuse!("{what} {}: must not contain '..'", p.display());
    }
    match p.to_str() {
        Some(s) => Ok(s.to_string()),
        None => refuse!("{what} {}: not UTF-8", p.display()),
    }
}

/// Paths that end up in overlayfs' option string, where ',' and ':'
/// separate options and layers.
pub(super) fn overlay_safe(what: &str, p: &Path) -> Result<String> {
    let Some(s) = p.to_str() else {
        refuse!("{what} {}: not UTF-8", p.display());
    };
    if s.contains([',', ':', '\\', '\n']) {
        refuse!("{what} {s}: overlayfs cannot take a path with ',', ':' or '\\'");
    }
    Ok(s.to_string())
}

/// A directory on the host, relative to the bundle unless absolute.
pub(super) fn resolve_dir(what: &str, bundle: &Path, p: &Path) -> Result<PathBuf> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        bundle.join(p)
    };
    let abs = std::fs::canonicalize(&abs).map_err(io_error(format!("{what} {}", abs.display())))?;
    if !abs.is_dir() {
        refuse!("{what} {}: not a directory", abs.display());
    }
    Ok(abs)
}

/// The host id that container id `id` maps to.
pub fn map_id(maps: &[IdMap], id: u32) -> Option<u32> {
    maps.iter()
        .find(|m| id >= m.container && (id - m.container) < m.size)
        .map(|m| m.host + (id - m.container))
}

/// Mappings as the kernel will take them: non-empty ranges that fit in 32
/// bits and overlap neither on the container side nor on the host side.
pub(super) fn id_maps(
    what: &str,
    maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>,
) -> Result<Vec<IdMap>> {
    let maps: Vec<IdMap> = maps
        .iter()
        .flatten()
        .map(|m| IdMap {
            container: m.container_id(),
            host: m.host_id(),
            size: m.size(),
        })
        .collect();
    if maps.len() > 340 {
        refuse!(
            "linux.{what} has {} ranges, the kernel takes at most 340",
            maps.len()
        );
    }
    for m in &maps {
        if m.size == 0 {
            refuse!("linux.{what}: range at {} has size 0", m.container);
        }
        if m.container as u64 + m.size as u64 > 1 << 32 || m.host as u64 + m.size as u64 > 1 << 32 {
            refuse!(
                "linux.{what}: range {}:{}:{} goes past 2^32",
                m.container,
                m.host,
                m.size
            );
        }
    }
    for side in ["container", "host"] {
        let start = |m: &IdMap| if side == "container" { m.container } else { m.host } as u64;
        let mut sorted = maps.clone();
        sorted.sort_by_key(start);
        for w in sorted.windows(2) {
            if start(&w[0]) + w[0].size as u64 > start(&w[1]) {
                refuse!(
                    "linux.{what}: ranges {}:{}:{} and {}:{}:{} overlap on the {side} side",
                    w[0].container,
                    w[0].host,
                    w[0].size,
                    w[1].container,
                    w[1].host,
                    w[1].size
                );
            }
        }
    }
    Ok(maps)
}

pub struct MountOptions {
    pub flags: u64,
    pub propagation: u64,
    /// MOUNT_ATTR_* set and cleared on the whole tree (`rro`, `rnosuid`...).
    pub recursive: protocol::MountAttrs,
    /// runtime-spec 1.2's `idmap` or `ridmap` (which is recursive too): an
    /// idmapped mount, of the mount's maps or the container's.
    pub idmap: bool,
    pub data: String,
}

/// runtime-spec 1.1's recursive options: the MOUNT_ATTR_* flag each sets
/// (or, for the second list, clears) on the mount and everything below it,
/// with mount_setattr(2) and AT_RECURSIVE, as runc takes them.
const RECURSIVE_SET: [(&str, u64); 9] = {
    use nsbox_process::mount_api::*;
    [
        ("rro", MOUNT_ATTR_RDONLY),
        ("rnosuid", MOUNT_ATTR_NOSUID),
        ("rnodev", MOUNT_ATTR_NODEV),
        ("rnoexec", MOUNT_ATTR_NOEXEC),
        ("rnodiratime", MOUNT_ATTR_NODIRATIME),
        ("rrelatime", MOUNT_ATTR_RELATIME),
        ("rnoatime", MOUNT_ATTR_NOATIME),
        ("rstrictatime", MOUNT_ATTR_STRICTATIME),
        ("rnosymfollow", MOUNT_ATTR_NOSYMFOLLOW),
    ]
};
const RECURSIVE_CLEAR: [(&str, u64); 9] = {
    use nsbox_process::mount_api::*;
    [
        ("rrw", MOUNT_ATTR_RDONLY),
        ("rsuid", MOUNT_ATTR_NOSUID),
        ("rdev", MOUNT_ATTR_NODEV),
        ("rexec", MOUNT_ATTR_NOEXEC),
        ("rdiratime", MOUNT_ATTR_NODIRATIME),
        ("rnorelatime", MOUNT_ATTR_RELATIME),
        ("ratime", MOUNT_ATTR_NOATIME),
        ("rnostrictatime", MOUNT_ATTR_STRICTATIME),
        ("rsymfollow", MOUNT_ATTR_NOSYMFOLLOW),
    ]
};

/// Every recursive option's name, for `features`.
pub fn recursive_options() -> impl Iterator<Item = &'static str> {
    RECURSIVE_SET
        .iter()
        .chain(&RECURSIVE_CLEAR)
        .map(|(n, _)| *n)
}

/// OCI mount options: the ones mount(8) turns into MS_* flags become flags,
/// propagation is kept apart (it is a second mount call), the recursive
/// ones too (a mount_setattr(2) on the tree), and the rest is the
/// filesystem's own data string.
pub fn parse_mount_options(options: &[String]) -> MountOptions {
    let mut flags: u64 = 0;
    let mut propagation: u64 = 0;
    let mut recursive = protocol::MountAttrs::default();
    let mut idmap = false;
    let mut data = Vec::new();
    for o in options {
        if o == "idmap" || o == "ridmap" {
            idmap = true;
            if o == "ridmap" {
                flags |= libc::MS_REC as u64;
            }
            continue;
        }
        if let Some(&(_, attr)) = RECURSIVE_SET.iter().find(|(n, _)| n == o) {
            recursive.set |= attr;
            recursive.clear &= !attr;
            // mount_setattr(2): an access-time value is set with the whole
            // access-time field cleared.
            if attr & nsbox_process::mount_api::MOUNT_ATTR_ATIME == attr {
                recursive.clear |= nsbox_process::mount_api::MOUNT_ATTR_ATIME;
            }
            continue;
        }
        if let Some(&(_, attr)) = RECURSIVE_CLEAR.iter().find(|(n, _)| n == o) {
            recursive.clear |= attr;
            recursive.set &= !attr;
            continue;
        }
        let (set, clear): (u64, u64) = match o.as_str() {
            "ro" => (libc::MS_RDONLY as u64, 0),
            "rw" => (0, libc::MS_RDONLY as u64),
            "nosuid" => (libc::MS_NOSUID as u64, 0),
            "suid" => (0, libc::MS_NOSUID as u64),
            "nodev" => (libc::MS_NODEV as u64, 0),
            "dev" => (0, libc::MS_NODEV as u64),
            "noexec" => (libc::MS_NOEXEC as u64, 0),
            "exec" => (0, libc::MS_NOEXEC as u64),
            "sync" => (libc::MS_SYNCHRONOUS as u64, 0),
            "async" => (0, libc::MS_SYNCHRONOUS as u64),
            "dirsync" => (libc::MS_DIRSYNC as u64, 0),
            "remount" => (libc::MS_REMOUNT as u64, 0),
            "mand" => (libc::MS_MANDLOCK as u64, 0),
            "nomand" => (0, libc::MS_MANDLOCK as u64),
            "atime" => (0, libc::MS_NOATIME as u64),
            "noatime" => (libc::MS_NOATIME as u64, 0),
            "diratime" => (0, libc::MS_NODIRATIME as u64),
            "nodiratime" => (libc::MS_NODIRATIME as u64, 0),
            "relatime" => (libc::MS_RELATIME as u64, 0),
            "norelatime" => (0, libc::MS_RELATIME as u64),
            "strictatime" => (libc::MS_STRICTATIME as u64, 0),
            "nostrictatime" => (0, libc::MS_STRICTATIME as u64),
            "nosymfollow" => (libc::MS_NOSYMFOLLOW as u64, 0),
            "symfollow" => (0, libc::MS_NOSYMFOLLOW as u64),
            "bind" => (libc::MS_BIND as u64, 0),
            "rbind" => ((libc::MS_BIND | libc::MS_REC) as u64, 0),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                let rec = if o.starts_with('r') { libc::MS_REC } else { 0 };
                propagation = (rec
                    | match o.trim_start_matches('r') {
                        "private" => libc::MS_PRIVATE,
                        "shared" => libc::MS_SHARED,
                        "slave" => libc::MS_SLAVE,
                        _ => libc::MS_UNBINDABLE,
                    }) as u64;
                continue;
            }
            _ => {
                data.push(o.clone());
                continue;
            }
        };
        flags = (flags | set) & !clear;
    }
    MountOptions {
        flags,
        propagation,
        recursive,
        idmap,
        data: data.join(","),
    }
}

/// The namespaces the container has: new ones, and ones joined by path.
pub(super) struct Namespaces(pub Vec<Namespace>);

impl Namespaces {
    /// A new namespace of this kind, the container's alone.
    pub fn own(&self, kind: NamespaceKind) -> bool {
        self.0.iter().any(|n| n.kind == kind && n.path.is_none())
    }

    /// One of this kind other than the host's: new, or joined by path.
    pub fn has(&self, kind: NamespaceKind) -> bool {
        self.0.iter().any(|n| n.kind == kind)
    }
}

/// Sysctls that belong to a namespace the container has of its own, as
/// runc allows them; any other would change the host, and is refused.
pub(super) fn sysctls(
    map: Option<&HashMap<String, String>>,
    namespaces: &Namespaces,
) -> Result<Vec<(String, String)>> {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let mut out = Vec::new();
    let mut keys: Vec<(&String, &String)> = map.into_iter().flatten().collect();
    keys.sort();
    for (key, value) in keys {
        let dotted = key.replace('/', ".");
        let (ns, ok) = if IPC.contains(&dotted.as_str()) || dotted.starts_with("fs.mqueue.") {
            ("ipc", namespaces.own(NamespaceKind::Ipc))
        } else if dotted.starts_with("net.") {
            // A network namespace joined by path is the container's too.
            ("network", namespaces.has(NamespaceKind::Network))
        } else if dotted == "kernel.hostname" || dotted == "kernel.domainname" {
            ("uts", namespaces.own(NamespaceKind::Uts))
        } else {
            refuse!(
                "sysctl {key:?} is not namespaced: setting it would change the host \
                 (allowed: net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*, \
                 kernel.hostname, kernel.domainname)"
            );
        };
        if !ok {
            refuse!("sysctl {key:?} needs a {ns} namespace of the container's own");
        }
        // "net.ipv4.ip_forward" or "net/ipv4/conf/eth0.100/forwarding".
        let rel = if key.contains('/') {
            key.clone()
        } else {
            key.replace('.', "/")
        };
        if rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
            || value.contains('\n')
        {
            refuse!("sysctl {key:?} = {value:?} is malformed");
        }
        out.push((rel, value.clone()));
    }
    Ok(out)
}

fn hook_list(what: &str, list: &Option<Vec<oci_spec::runtime::Hook>>) -> Result<Vec<Hook>> {
    let mut out = Vec::new();
    for h in list.iter().flatten() {
        let path = h.path().to_string_lossy().into_owned();
        if !path.starts_with('/') {
            refuse!("{what} hook {path:?}: path must be absolute");
        }
        let timeout = match h.timeout() {
            None => None,
            Some(t) if t > 0 => Some(t.min(u32::MAX as i64) as u32),
            Some(t) => refuse!("{what} hook {path}: timeout {t} must be above 0"),
        };
        out.push(Hook {
            args: h.args().clone().unwrap_or_else(|| vec![path.clone()]),
            env: h.env().clone(),
            path,
            timeout,
        });
    }
    Ok(out)
}

/// config.json's hooks, each with an absolute path and a positive timeout.
pub(super) fn hooks(h: Option<&oci_spec::runtime::Hooks>) -> Result<Hooks> {
    let Some(h) = h else {
        return Ok(Hooks::default());
    };
    Ok(Hooks {
        prestart: hook_list("prestart", h.prestart())?,
        create_runtime: hook_list("createRuntime", h.create_runtime())?,
        create_container: hook_list("createContainer", h.create_container())?,
        start_container: hook_list("startContainer", h.start_container())?,
        poststart: hook_list("poststart", h.poststart())?,
        poststop: hook_list("poststop", h.poststop())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_options_split_into_flags_propagation_and_data() {
        let o = parse_mount_options(&[
            "nosuid".into(),
            "ro".into(),
            "mode=755".into(),
            "rslave".into(),
            "size=64k".into(),
        ]);
        assert_eq!(o.flags, (libc::MS_NOSUID | libc::MS_RDONLY) as u64);
        assert_eq!(o.propagation, (libc::MS_SLAVE | libc::MS_REC) as u64);
        assert_eq!(o.data, "mode=755,size=64k");
        let o = parse_mount_options(&["ro".into(), "rw".into()]);
        assert_eq!(o.flags, 0);
    }

    #[test]
    fn recursive_options_become_mount_attributes() {
        use nsbox_process::mount_api::*;
        let o = parse_mount_options(&[
            "rbind".into(),
            "rro".into(),
            "rnosuid".into(),
            "rnoatime".into(),
            "rnosymfollow".into(),
        ]);
        assert_eq!(o.flags, (libc::MS_BIND | libc::MS_REC) as u64);
        assert_eq!(
            o.recursive.set,
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOATIME | MOUNT_ATTR_NOSYMFOLLOW
        );
        assert_eq!(o.recursive.clear, MOUNT_ATTR_ATIME);
        assert!(o.data.is_empty());
        // The last word wins, as for the plain options.
        let o = parse_mount_options(&["rro".into(), "rrw".into()]);
        assert_eq!((o.recursive.set, o.recursive.clear), (0, MOUNT_ATTR_RDONLY));
    }

    #[test]
    fn destinations_with_dotdot_are_refused() {
        assert!(absolute_in_container("mount destination", Path::new("/a/../../etc")).is_err());
        assert!(absolute_in_container("mount destination", Path::new("relative")).is_err());
        assert!(absolute_in_container("mount destination", Path::new("/a/b")).is_ok());
    }

    fn m(c: u32, h: u32, n: u32) -> oci_spec::runtime::LinuxIdMapping {
        oci_spec::runtime::LinuxIdMappingBuilder::default()
            .container_id(c)
            .host_id(h)
            .size(n)
            .build()
            .unwrap()
    }

    #[test]
    fn overlapping_and_empty_ranges_are_refused() {
        assert!(id_maps("uidMappings", &Some(vec![m(0, 100000, 65536)])).is_ok());
        let e = id_maps(
            "uidMappings",
            &Some(vec![m(0, 100000, 10), m(5, 200000, 10)]),
        );
        assert!(e.unwrap_err().to_string().contains("container side"));
        let e = id_maps(
            "uidMappings",
            &Some(vec![m(0, 100000, 10), m(20, 100005, 10)]),
        );
        assert!(e.unwrap_err().to_string().contains("host side"));
        assert!(id_maps("uidMappings", &Some(vec![m(0, 1, 0)])).is_err());
        assert!(id_maps("uidMappings", &Some(vec![m(0, u32::MAX, 2)])).is_err());
    }

    #[test]
    fn map_id_finds_the_host_id() {
        let maps = id_maps(
            "uidMappings",
            &Some(vec![m(0, 100000, 1000), m(1000, 300000, 10)]),
        )
        .unwrap();
        assert_eq!(map_id(&maps, 0), Some(100000));
        assert_eq!(map_id(&maps, 1005), Some(300005));
        assert_eq!(map_id(&maps, 1010), None);
    }
}
