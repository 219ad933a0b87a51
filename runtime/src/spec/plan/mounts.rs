//! The mounts step: config.json's mounts, the devices, masked and
//! read-only paths, the rootfs' propagation and its idmapped mount, and
//! what a container without a mount namespace of its own must not ask for.

use super::*;

/// No mount namespace in linux.namespaces: the container shares the
/// runtime's, the host's, and tiny-init makes no mount there (runc makes
/// them, on the host, and leaves them behind). What would need one is
/// refused, by name.
pub(super) fn needs_no_mount(
    spec: &Spec,
    linux: &Linux,
    annotations: &BTreeMap<String, String>,
) -> Result<()> {
    let first = |list: &Option<Vec<String>>| list.as_ref().and_then(|l| l.first().cloned());
    let what = if let Some(m) = spec.mounts().as_ref().and_then(|m| m.first()) {
        format!("mounts ({} ...)", m.destination().display())
    } else if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        "root.readonly (a read-only remount of the root)".into()
    } else if let Some(p) = first(linux.masked_paths()) {
        format!("linux.maskedPaths ({p} ...)")
    } else if let Some(p) = first(linux.readonly_paths()) {
        format!("linux.readonlyPaths ({p} ...)")
    } else if let Some(d) = linux.devices().as_ref().and_then(|d| d.first()) {
        format!(
            "linux.devices ({} ...: a node in the host's image)",
            d.path().display()
        )
    } else if let Some(p) = linux
        .rootfs_propagation()
        .as_ref()
        .filter(|p| !p.is_empty())
    {
        format!("linux.rootfsPropagation {p:?}")
    } else if annotations.contains_key(IMAGE_ANNOTATION) {
        format!("annotation {IMAGE_ANNOTATION} (an overlay root)")
    } else {
        return Ok(());
    };
    refuse!(
        "linux.namespaces has no mount namespace, so the container would share the host's, where {what} would change the host's mounts: add {{\"type\": \"mount\"}} to linux.namespaces, or leave it out"
    )
}

/// linux.rootfsPropagation, as mount flags (0: not set).
pub(super) fn rootfs_propagation(linux: &Linux) -> Result<u64> {
    Ok((match linux.rootfs_propagation().as_deref() {
        None | Some("") => 0,
        Some("rslave") => libc::MS_SLAVE | libc::MS_REC,
        Some("slave") => libc::MS_SLAVE,
        Some("private") => libc::MS_PRIVATE,
        Some("rprivate") => libc::MS_PRIVATE | libc::MS_REC,
        Some("shared") => libc::MS_SHARED,
        Some("rshared") => libc::MS_SHARED | libc::MS_REC,
        Some("unbindable") => libc::MS_UNBINDABLE,
        Some("runbindable") => libc::MS_UNBINDABLE | libc::MS_REC,
        Some(other) => refuse!("linux.rootfsPropagation {other:?} is not a propagation mode"),
    }) as u64)
}

/// config.json's mounts: a destination inside the container, a type, and
/// for a bind mount a source that exists (relative to the bundle unless
/// absolute).
pub(super) fn mounts(
    spec: &Spec,
    extras: &crate::spec::Extras,
    bundle: &Path,
    ids: &IdMappings,
) -> Result<Vec<Mount>> {
    let mut mounts = Vec::new();
    for (i, m) in spec
        .mounts()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let destination = absolute_in_container("mount destination", m.destination())?;
        let fstype = m.typ().clone().unwrap_or_default();
        let options = parse_mount_options(m.options().as_deref().unwrap_or(&[]));
        let idmap = mount_idmap(&destination, extras.mount(i), options.idmap, ids)?;
        let is_bind = fstype == "bind" || options.flags & libc::MS_BIND as u64 != 0;
        let mut source = m
            .source()
            .as_ref()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut flags = options.flags;
        if is_bind {
            flags |= libc::MS_BIND as u64;
            let src = Path::new(&source);
            let abs = if src.is_absolute() {
                src.to_path_buf()
            } else {
                bundle.join(src)
            };
            std::fs::metadata(&abs).map_err(io_error(format!(
                "mount {} on {destination}: source",
                abs.display()
            )))?;
            source = abs.to_string_lossy().into_owned();
        } else if fstype.is_empty() {
            refuse!("mount on {destination}: no type given");
        }
        if idmap.is_some() && !is_bind {
            refuse!("mount on {destination}: uidMappings and gidMappings are for bind mounts");
        }
        mounts.push(Mount {
            destination,
            fstype: if is_bind { "bind".into() } else { fstype },
            source,
            flags,
            propagation: options.propagation,
            recursive: options.recursive,
            idmap,
            data: options.data,
        });
    }
    Ok(mounts)
}

/// A mount's uidMappings and gidMappings (both, checked as the user
/// namespace's are), or with the `idmap`/`ridmap` option alone the
/// container's own maps.
pub(super) fn mount_idmap(
    destination: &str,
    extras: Option<&crate::spec::extras::MountExtras>,
    idmap_word: bool,
    ids: &IdMappings,
) -> Result<Option<protocol::MountIdmap>> {
    let what = |side: &str| format!("mount on {destination}: {side}");
    let uid = id_maps(
        &what("uidMappings"),
        &extras.and_then(|e| e.uid_mappings.clone()),
    )?;
    let gid = id_maps(
        &what("gidMappings"),
        &extras.and_then(|e| e.gid_mappings.clone()),
    )?;
    match (uid.is_empty(), gid.is_empty()) {
        (false, false) => Ok(Some(protocol::MountIdmap {
            uid_mappings: uid,
            gid_mappings: gid,
        })),
        (true, true) if !idmap_word => Ok(None),
        (true, true) if ids.userns => Ok(Some(protocol::MountIdmap {
            uid_mappings: ids.uid.clone(),
            gid_mappings: ids.gid.clone(),
        })),
        (true, true) => refuse!("mount on {destination}: idmap without uidMappings and gidMappings needs a user namespace, whose maps it would take"),
        _ => refuse!("mount on {destination}: an idmapped mount needs both uidMappings and gidMappings"),
    }
}

/// linux.devices: the nodes tiny-init makes in the container's /dev.
pub(super) fn devices(linux: &Linux) -> Result<Vec<Device>> {
    let mut devices = Vec::new();
    for d in linux.devices().clone().unwrap_or_default() {
        let path = absolute_in_container("device", d.path())?;
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => 'c',
            LinuxDeviceType::B => 'b',
            LinuxDeviceType::P => 'p',
            LinuxDeviceType::A => refuse!("device {path}: type \"a\" is not a device node"),
        };
        devices.push(Device {
            path,
            kind,
            major: d.major(),
            minor: d.minor(),
            mode: d.file_mode().unwrap_or(0o666),
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        });
    }
    Ok(devices)
}

/// linux.maskedPaths or readonlyPaths: paths in the container, a relative
/// one taken from the container's root, as runc takes it (it masks them
/// from "/" after pivot_root).
pub(super) fn container_paths(what: &str, list: &Option<Vec<String>>) -> Result<Vec<String>> {
    list.iter()
        .flatten()
        .map(|p| absolute_in_container(what, &Path::new("/").join(p)))
        .collect()
}

/// Is the rootfs owned already by the host uid the container's root maps
/// to? Then it needs no idmapped mount: the image was made for this
/// mapping (Docker's userns-remap chowns its layers so, and an overlay, as
/// Docker's rootfs is, cannot be idmapped anyway).
pub(super) fn owned_by_container_root(rootfs: &str, uid_map: &[IdMap]) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(root) = uid_map.iter().find(|m| m.container == 0 && m.size > 0) else {
        return false;
    };
    std::fs::metadata(rootfs).is_ok_and(|m| m.uid() == root.host)
}

/// With a user namespace (and host privilege), the rootfs, or the image
/// under the overlay, is presented through an idmapped mount that the
/// shim makes, so that the image needs no chown; the overlay then takes
/// its lower layer from a directory of its own. A rootless container's
/// files are the user's own, and the user is the container's root: no
/// idmapped mount.
pub(super) struct IdmappedRoot {
    pub(super) idmapped: bool,
    /// What the shim idmaps.
    pub(super) source: Option<String>,
    pub(super) overlay: Option<Overlay>,
}

impl IdmappedRoot {
    pub(super) fn of(
        overlay: Option<Overlay>,
        rootfs: &str,
        idmapped: bool,
        dir: &ContainerDir,
    ) -> Result<IdmappedRoot> {
        if !idmapped {
            return Ok(IdmappedRoot {
                idmapped,
                source: None,
                overlay,
            });
        }
        Ok(match overlay {
            Some(o) => IdmappedRoot {
                idmapped,
                source: Some(o.lower.clone()),
                overlay: Some(Overlay {
                    lower: overlay_safe("state directory", &dir.path.join("lower"))?,
                    ..o
                }),
            },
            None => IdmappedRoot {
                idmapped,
                source: Some(rootfs.to_string()),
                overlay: None,
            },
        })
    }
}
