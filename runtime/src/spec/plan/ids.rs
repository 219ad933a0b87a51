//! The id maps step: the container's uid and gid maps, checked against a
//! user namespace joined by path and, for a rootless caller, against its
//! own ids and subordinate ranges.

use super::*;

/// linux.uidMappings and gidMappings: both, and only, with a new user
/// namespace.
pub(super) struct IdMappings {
    pub(super) uid: Vec<IdMap>,
    pub(super) gid: Vec<IdMap>,
    pub(super) userns: bool,
}

impl IdMappings {
    pub(super) fn of(linux: &Linux, namespaces: &Namespaces) -> Result<IdMappings> {
        let uid = id_maps("uidMappings", linux.uid_mappings())?;
        let gid = id_maps("gidMappings", linux.gid_mappings())?;
        let userns = namespaces.own(NamespaceKind::User);
        let joined = namespaces
            .0
            .iter()
            .find(|n| n.kind == NamespaceKind::User)
            .and_then(|n| n.path.as_deref());
        match (userns, uid.is_empty(), gid.is_empty()) {
            (true, false, false) | (false, true, true) => {}
            (true, _, _) => refuse!("a new user namespace needs both linux.uidMappings and linux.gidMappings"),
            (false, _, _) => match joined {
                Some(path) => joined_maps_are(path, &uid, &gid)?,
                None => refuse!("linux.uidMappings/gidMappings are set, but there is no new user namespace (add {{\"type\": \"user\"}} to linux.namespaces)"),
            },
        }
        Ok(IdMappings { uid, gid, userns })
    }
}

/// Mappings beside a user namespace joined by path (Docker writes them so
/// for `--pid container:X` under userns-remap) ask for nothing when they
/// are that namespace's own, and are accepted then, as runc 1.2 accepts
/// them; any other is refused. The namespace's maps are read from a
/// process in it: the one its path names (/proc/PID/ns/user), else any.
pub(super) fn joined_maps_are(path: &str, uid: &[IdMap], gid: &[IdMap]) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let ns = id(Path::new(path));
    let named = Path::new(path)
        .strip_prefix("/proc")
        .ok()
        .and_then(|p| p.components().next())
        .map(|c| Path::new("/proc").join(c));
    let dirs = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().parse::<u32>().is_ok())
        });
    let Some(proc_dir) = named
        .into_iter()
        .chain(dirs)
        .find(|d| ns.is_some() && id(&d.join("ns/user")) == ns)
    else {
        refuse!("linux.uidMappings/gidMappings are set beside user namespace {path}, which no process is in to read its own maps from (leave them out)");
    };
    for (what, want, file) in [
        ("uidMappings", uid, "uid_map"),
        ("gidMappings", gid, "gid_map"),
    ] {
        let text = std::fs::read_to_string(proc_dir.join(file)).unwrap_or_default();
        let mut theirs: Vec<IdMap> = text
            .lines()
            .filter_map(|l| {
                let v: Vec<u32> = l
                    .split_whitespace()
                    .filter_map(|w| w.parse().ok())
                    .collect();
                (v.len() == 3).then(|| IdMap {
                    container: v[0],
                    host: v[1],
                    size: v[2],
                })
            })
            .collect();
        let mut want = want.to_vec();
        theirs.sort_by_key(|m| m.container);
        want.sort_by_key(|m| m.container);
        if want != theirs {
            let shown: Vec<String> = theirs
                .iter()
                .map(|m| format!("{}:{}:{}", m.container, m.host, m.size))
                .collect();
            refuse!(
                "linux.{what} differ from the maps of user namespace {path}, which the container joins ({})",
                shown.join(" ")
            );
        }
    }
    Ok(())
}

/// A rootless container: a user namespace of its own, whose maps use only
/// what newuidmap and newgidmap give the caller.
pub(super) fn rootless_id_maps(ids: &IdMappings) -> Result<()> {
    if !ids.userns {
        refuse!("an unprivileged user needs a user namespace (write one with `runtime spec --rootless`)");
    }
    check_subordinate(
        "uid",
        &ids.uid,
        nix::unistd::getuid().as_raw(),
        "/etc/subuid",
    )?;
    check_subordinate(
        "gid",
        &ids.gid,
        nix::unistd::getgid().as_raw(),
        "/etc/subgid",
    )
}
