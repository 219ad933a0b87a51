//! The cgroup step: where the container's cgroup goes and which limits it
//! gets, for root, a rootless caller and a systemd scope.

use super::*;

/// The container's cgroup, with linux.resources as its limits: for a
/// rootless caller only in a subtree delegated to it, and none otherwise
/// (limits it cannot have are refused rather than ignored); made by nsbox
/// in cgroupfs, or by systemd as a scope (`driver`).
pub(super) fn cgroup(
    linux: &Linux,
    devices: &[Device],
    dir: &ContainerDir,
    id: &str,
    rootless: bool,
    driver: CgroupDriver,
) -> Result<Option<Cgroup>> {
    let mut resources = match linux.resources() {
        Some(r) => crate::resources::from_oci(r)?,
        None => Default::default(),
    };
    allow_listed_devices(&mut resources, devices);
    let layout = Layout::detect().map_err(SpecError::CgroupLayout)?;
    layout
        .check(&resources)
        .map_err(SpecError::CgroupResources)?;
    let cgroups_path = linux.cgroups_path().as_ref();
    if cgroups_path.is_some_and(|p| p.to_str().is_none()) {
        refuse!("cgroupsPath is not UTF-8");
    }
    let cgroups_path = cgroups_path.and_then(|p| p.to_str());
    let paths = match driver {
        CgroupDriver::Systemd => layout.systemd_paths(cgroups_path, id),
        CgroupDriver::Cgroupfs => {
            // IDs are unique within one state root only: a root other
            // than the default names the cgroup too.
            let root = dir.path.parent().unwrap_or(Path::new("/"));
            let scope = (root != Path::new(nsbox_host::state::DEFAULT_ROOT))
                .then(|| root.to_string_lossy());
            layout.paths(cgroups_path, id, scope.as_deref())
        }
    }
    .map_err(SpecError::CgroupPath)?;
    if rootless && driver == CgroupDriver::Systemd {
        refuse!("--systemd-cgroup for a rootless caller (through systemd's user instance) is not supported; without it, a rootless container gets a cgroup where a subtree is delegated to the caller");
    }
    if rootless && !delegated(&paths) {
        if resources.memory.is_some()
            || resources.cpu.is_some()
            || resources.pids_limit.is_some()
            || !resources.unified.is_empty()
            || resources.block_io.is_some()
            || !resources.hugepage_limits.is_empty()
            || !resources.rdma.is_empty()
            || resources.network.is_some()
        {
            refuse!(
                "linux.resources sets limits, and this rootless caller may not write the cgroup \
                 that enforces them ({}: no subtree delegated to it there)",
                paths.path
            );
        }
        return Ok(None);
    }
    if rootless {
        // Attaching a device program needs privilege on the host, and a
        // user namespace cannot reach device nodes it was not given.
        resources.devices.clear();
    }
    Ok(Some(Cgroup { paths, resources }))
}

/// Is the cgroup's nearest existing ancestor (in every hierarchy) one this
/// caller may make cgroups in and move processes into?
pub(super) fn delegated(paths: &protocol::CgroupPaths) -> bool {
    paths.dirs.iter().all(|d| {
        Path::new(&d.dir)
            .ancestors()
            .find(|a| a.is_dir())
            .is_some_and(can_write_cgroup)
    })
}

/// linux.devices "MUST be available in the container": a device list
/// (one that denies all, as runtime-tools' and Docker's do) allows them
/// after its own rules, as runc does, or their mknod would be refused.
/// Without a list, nothing is restricted and nothing need be added.
pub(super) fn allow_listed_devices(resources: &mut protocol::Resources, devices: &[Device]) {
    if resources.devices.is_empty() {
        return;
    }
    for d in devices.iter().filter(|d| d.kind != 'p') {
        resources.devices.push(protocol::DeviceRule {
            allow: true,
            kind: d.kind,
            major: Some(d.major),
            minor: Some(d.minor),
            access: "rwm".into(),
        });
    }
}
