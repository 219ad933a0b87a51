//! The namespaces step: each kind new or joined by path, and the time
//! namespace's offsets.

use super::*;

/// The kind nsbox knows for an OCI namespace type.
pub(super) fn namespace_kind(t: LinuxNamespaceType) -> Result<NamespaceKind> {
    Ok(match t {
        LinuxNamespaceType::Pid => NamespaceKind::Pid,
        LinuxNamespaceType::Mount => NamespaceKind::Mount,
        LinuxNamespaceType::Ipc => NamespaceKind::Ipc,
        LinuxNamespaceType::Uts => NamespaceKind::Uts,
        LinuxNamespaceType::Network => NamespaceKind::Network,
        LinuxNamespaceType::Cgroup => NamespaceKind::Cgroup,
        LinuxNamespaceType::User => NamespaceKind::User,
        LinuxNamespaceType::Time => NamespaceKind::Time,
    })
}

/// linux.namespaces: each kind once, new or joined by path (every kind);
/// a new uts namespace, or one joined by path, for a hostname or
/// domainname to go in; and no mount namespace joined by path beside a
/// new user namespace (see below). Without a mount namespace the
/// container shares the host's (see `needs_no_mount`).
pub(super) fn namespaces(spec: &Spec, linux: &Linux) -> Result<Namespaces> {
    let mut list: Vec<Namespace> = Vec::new();
    for ns in linux.namespaces().clone().unwrap_or_default() {
        let kind = namespace_kind(ns.typ())?;
        if list.iter().any(|n| n.kind == kind) {
            refuse!("namespace {kind} is listed twice");
        }
        let path = match ns.path() {
            None => None,
            Some(p) => {
                if !p.exists() {
                    refuse!(
                        "namespace {kind} path {}: No such file or directory",
                        p.display()
                    );
                }
                Some(p.to_string_lossy().into_owned())
            }
        };
        list.push(Namespace { kind, path });
    }
    let namespaces = Namespaces(list);
    let joined = |kind| {
        namespaces
            .0
            .iter()
            .any(|n| n.kind == kind && n.path.is_some())
    };
    // The root of a new user namespace holds no privilege over a mount
    // namespace of another user namespace: tiny-init could mount nothing
    // in it (runc fails there at the first mount).
    if joined(NamespaceKind::Mount) && namespaces.own(NamespaceKind::User) {
        refuse!(
            "a mount namespace joined by path beside a new user namespace is not supported \
             (the new namespace's root could not mount in it)"
        );
    }
    for (what, set) in [
        ("hostname", spec.hostname().is_some()),
        ("domainname", spec.domainname().is_some()),
    ] {
        if set {
            uts_of_the_container(what, &namespaces)?;
        }
    }
    Ok(namespaces)
}

/// A hostname or domainname is set in the container's uts namespace, new
/// or joined by path (runc sets it in a joined one too); never in the
/// host's own, which no entry, or a path to the runtime's own, would be.
pub(super) fn uts_of_the_container(what: &str, namespaces: &Namespaces) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Some(uts) = namespaces.0.iter().find(|n| n.kind == NamespaceKind::Uts) else {
        refuse!(
            "{what} is set, but linux.namespaces has no uts namespace: it would change the host's"
        );
    };
    let Some(path) = &uts.path else {
        return Ok(());
    };
    let id = |p: &str| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
    let joined = id(path).map_err(io_error(format!("namespace uts path {path}")))?;
    if id("/proc/self/ns/uts").is_ok_and(|host| host == joined) {
        refuse!("{what} is set, but the uts namespace at {path} is the host's own: it would change the host's");
    }
    Ok(())
}

/// linux.timeOffsets, as the lines of /proc/PID/timens_offsets: the
/// monotonic and boottime clocks only (the others are not namespaced),
/// and only for a new time namespace (a joined one has its offsets).
pub(super) fn time_offsets(
    extras: &crate::spec::Extras,
    namespaces: &Namespaces,
) -> Result<String> {
    let offsets = extras.linux.as_ref().and_then(|l| l.time_offsets.as_ref());
    let Some(offsets) = offsets.filter(|o| !o.is_empty()) else {
        return Ok(String::new());
    };
    if !namespaces.own(NamespaceKind::Time) {
        refuse!("linux.timeOffsets is set, but linux.namespaces has no new time namespace to give them to");
    }
    let mut lines = String::new();
    for (clock, o) in offsets {
        if clock != "monotonic" && clock != "boottime" {
            refuse!(
                "linux.timeOffsets: clock {clock:?} is not namespaced (monotonic and boottime are)"
            );
        }
        if o.nanosecs >= 1_000_000_000 {
            refuse!(
                "linux.timeOffsets.{clock}.nanosecs {} is a second or more",
                o.nanosecs
            );
        }
        lines.push_str(&format!("{clock} {} {}\n", o.secs, o.nanosecs));
    }
    Ok(lines)
}
