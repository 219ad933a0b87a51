//! The plan: a loaded config.json turned, step by step, into the
//! `CreateRequest` that the shim and tiny-init work from. Each step decides
//! one thing (the root, the namespaces, the id maps, the cgroup, the
//! mounts, the process, the network...) and refuses what nsbox cannot do,
//! by name, rather than ignore it. The steps run in the order `plan` lists
//! them, which is the order a config with several faults is reported in.

use std::collections::BTreeMap;
use std::path::Path;

use nsbox_host::cgroups::{CgroupDriver, Layout};
use nsbox_host::network::{self, config as netcfg, Mode};
use nsbox_host::rootless::{can_write_cgroup, Privilege};
use nsbox_host::state::ContainerDir;
use oci_spec::runtime::{Linux, LinuxDeviceType, LinuxNamespaceType, Spec};
use protocol::{
    BridgeNetwork, Cgroup, CreateRequest, Device, IdMap, InitConfig, Mount, Namespace,
    NamespaceKind, Overlay, Process, RootSwitch,
};

use super::subordinate::check_subordinate;
use super::validate::{
    absolute_in_container, hooks, id_maps, map_id, overlay_safe, parse_mount_options, resolve_dir,
    sysctls, Namespaces,
};
use super::{
    convert_process, io_error, personality, Config, ProcessExtras, Result, SpecError,
    IMAGE_ANNOTATION,
};

#[derive(Debug)]
pub struct Plan {
    pub request: CreateRequest,
    /// What `state` shows as the rootfs.
    pub rootfs: String,
    pub annotations: BTreeMap<String, String>,
    pub command: Vec<String>,
}

pub fn plan(config: &Config, bundle: &Path, dir: &ContainerDir, id: &str) -> Result<Plan> {
    plan_with(config, bundle, dir, id, CgroupDriver::Cgroupfs)
}

/// `plan`, with the container's cgroup made by `driver`.
pub fn plan_with(
    config: &Config,
    bundle: &Path,
    dir: &ContainerDir,
    id: &str,
    driver: CgroupDriver,
) -> Result<Plan> {
    let (spec, extras) = (&config.spec, &config.extras);
    oci_version(spec)?;
    intel_rdt(extras)?;
    let annotations: BTreeMap<String, String> = spec
        .annotations()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let root = root(spec, &annotations, bundle, dir)?;
    let Some(linux) = spec.linux() else {
        refuse!("config.json has no linux section: nsbox needs at least a mount namespace");
    };
    let namespaces = namespaces(spec, linux)?;
    let ids = IdMappings::of(linux, &namespaces)?;
    let sysctl = sysctls(linux.sysctl().as_ref(), &namespaces)?;
    let hooks = hooks(spec.hooks().as_ref())?;
    let seccomp = match linux.seccomp() {
        Some(s) => Some(crate::seccomp::compile(s)?),
        None => None,
    };
    // A rootless caller may write neither the host's cgroups (but for a
    // subtree delegated to it) nor its network, nor make idmapped mounts.
    let privilege = Privilege::of_self();
    let rootless = privilege.is_rootless();
    let devices = devices(linux)?;
    let cgroup = cgroup(linux, &devices, dir, id, rootless, driver)?;
    let rootfs_propagation = rootfs_propagation(linux)?;
    let mut mounts = mounts(spec, extras, bundle, &ids)?;
    if let Some(label) = super::selinux_label("linux.mountLabel", linux.mount_label().as_deref())? {
        for m in &mut mounts {
            m.data = super::lsm::with_mount_label(&m.fstype, &m.data, &label);
        }
    }
    let masked_paths = container_paths("masked path", linux.masked_paths())?;
    let readonly_paths = container_paths("read-only path", linux.readonly_paths())?;
    let mut process = process(spec, &extras.process(), &ids)?;
    process.seccomp = seccomp;
    process.personality = linux.personality().as_ref().map(personality).transpose()?;
    // "Not applicable to the container's init process" (runtime-spec):
    // an exec'd process's only.
    process.cpu_affinity = None;
    // Root in a user namespace of its own (rootless Podman) is root over
    // its namespaces: it needs no new one, and writes the maps itself.
    if privilege == Privilege::Unprivileged {
        rootless_id_maps(&ids)?;
    }
    // Without a mount namespace of its own the container is in the host's:
    // no mount at all, and so no idmapped root.
    let shares_host_mounts = !namespaces.has(NamespaceKind::Mount);
    if shares_host_mounts {
        needs_no_mount(spec, linux, &annotations)?;
    }
    let idmapped = ids.userns
        && !rootless
        && !shares_host_mounts
        && !owned_by_container_root(&root.rootfs, &ids.uid);
    let idmap = IdmappedRoot::of(root.overlay, &root.rootfs, idmapped, dir)?;
    let network = network(spec, &annotations, &namespaces, dir, id)?;
    if network.is_some() && rootless {
        refuse!("bridge networking needs root (veths, addresses and nftables rules on the host); a rootless container can have --net none or host");
    }
    if network.is_some() && shares_host_mounts {
        refuse!("bridge networking mounts the container's /etc/hosts, hostname and resolv.conf, which needs a mount namespace of its own (linux.namespaces has no \"mount\")");
    }
    if network.is_some() {
        etc_mounts(&mut mounts, &root.rootfs, idmap.overlay.is_some(), dir);
    }
    // The shim pauses tiny-init between its steps for these hooks.
    let hook_pause = !(hooks.prestart.is_empty()
        && hooks.create_runtime.is_empty()
        && hooks.create_container.is_empty());
    let command = process.args.clone();

    Ok(Plan {
        request: CreateRequest {
            id: id.to_string(),
            state_dir: dir.path.to_string_lossy().into_owned(),
            tiny_init: String::new(),
            time_offsets: time_offsets(extras, &namespaces)?,
            seccomp_listener: seccomp_listener(linux, &process),
            uid_mappings: ids.uid,
            gid_mappings: ids.gid,
            idmap_source: idmap.source,
            caller_reaps: false,
            log_output: false,
            start: false,
            caller_removes_cgroup: false,
            init: InitConfig {
                rootfs: root.rootfs.clone(),
                overlay: idmap.overlay,
                idmapped: idmap.idmapped,
                readonly_root: root.readonly,
                root_switch: if shares_host_mounts {
                    RootSwitch::Chroot
                } else {
                    RootSwitch::PivotRoot
                },
                rootfs_propagation,
                session_keyring: None,
                mounts,
                devices,
                masked_paths,
                readonly_paths,
                hostname: spec.hostname().clone(),
                domainname: spec.domainname().clone(),
                loopback_up: namespaces.own(NamespaceKind::Network),
                preserve_fds: 0,
                cgroup_path: cgroup.as_ref().map(|c| c.paths.path.clone()),
                new_cgroupns: namespaces.own(NamespaceKind::Cgroup),
                sysctl,
                hook_pause,
                start_at_once: false,
                start_hooks: hooks.start_container.clone(),
                hook_state: String::new(),
                hold_exit: cgroup.as_ref().is_some_and(|c| c.paths.systemd.is_some()),
                process,
            },
            namespaces: namespaces.0,
            cgroup,
            hooks,
            network,
        },
        rootfs: root.rootfs,
        annotations,
        command,
    })
}

/// linux.intelRdt (cache and memory bandwidth allocation) is refused:
/// this build does not set it up, and where the host has no resctrl
/// filesystem nothing could.
fn intel_rdt(extras: &super::Extras) -> Result<()> {
    let rdt = extras.linux.as_ref().and_then(|l| l.intel_rdt.as_ref());
    if rdt.is_none_or(|v| v.is_null() || v.as_object().is_some_and(|o| o.is_empty())) {
        return Ok(());
    }
    let resctrl = std::fs::read_to_string("/proc/self/mountinfo")
        .is_ok_and(|m| m.lines().any(|l| l.contains(" - resctrl ")));
    if resctrl {
        refuse!("linux.intelRdt is set: nsbox does not support Intel RDT (resctrl)");
    }
    refuse!(
        "linux.intelRdt is set, but this host has no resctrl filesystem (Intel RDT) to apply it"
    );
}

/// ociVersion: any 1.x.
fn oci_version(spec: &Spec) -> Result<()> {
    let version = spec.version();
    if !version.starts_with("1.") {
        refuse!("config.json: ociVersion {version:?} is not 1.x");
    }
    Ok(())
}

/// The root filesystem: the bundle's rootfs, or an overlay over an image.
struct Root {
    /// Where the container's root is on the host (an overlay's: its
    /// mount point in the state directory).
    rootfs: String,
    overlay: Option<Overlay>,
    readonly: bool,
}

fn root(
    spec: &Spec,
    annotations: &BTreeMap<String, String>,
    bundle: &Path,
    dir: &ContainerDir,
) -> Result<Root> {
    let (rootfs, overlay) = match annotations.get(IMAGE_ANNOTATION) {
        Some(image) => {
            let image = resolve_dir("image", bundle, Path::new(image))?;
            let lower = overlay_safe("image", &image)?;
            let upper = overlay_safe("state directory", &dir.upper())?;
            let work = overlay_safe("state directory", &dir.work())?;
            (
                dir.merged().to_string_lossy().into_owned(),
                Some(Overlay { lower, upper, work }),
            )
        }
        None => {
            let Some(root) = spec.root() else {
                refuse!("config.json has no root");
            };
            let abs = resolve_dir("rootfs", bundle, root.path())?;
            let Some(abs) = abs.to_str() else {
                refuse!("rootfs is not UTF-8");
            };
            (abs.to_string(), None)
        }
    };
    let readonly = spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false);
    Ok(Root {
        rootfs,
        overlay,
        readonly,
    })
}

/// The kind nsbox knows for an OCI namespace type.
fn namespace_kind(t: LinuxNamespaceType) -> Result<NamespaceKind> {
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
fn namespaces(spec: &Spec, linux: &Linux) -> Result<Namespaces> {
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
fn uts_of_the_container(what: &str, namespaces: &Namespaces) -> Result<()> {
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

/// No mount namespace in linux.namespaces: the container shares the
/// runtime's, the host's, and tiny-init makes no mount there (runc makes
/// them, on the host, and leaves them behind). What would need one is
/// refused, by name.
fn needs_no_mount(
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

/// Where the workload's seccomp listener goes, when its filter has one.
fn seccomp_listener(linux: &Linux, process: &Process) -> Option<protocol::SeccompListener> {
    let s = linux.seccomp().as_ref()?;
    if !process.seccomp.as_ref().is_some_and(|f| f.listener) {
        return None;
    }
    Some(protocol::SeccompListener {
        path: s.listener_path().as_ref()?.to_string_lossy().into_owned(),
        metadata: s.listener_metadata().clone().unwrap_or_default(),
    })
}

/// linux.timeOffsets, as the lines of /proc/PID/timens_offsets: the
/// monotonic and boottime clocks only (the others are not namespaced),
/// and only for a new time namespace (a joined one has its offsets).
fn time_offsets(extras: &super::Extras, namespaces: &Namespaces) -> Result<String> {
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

/// linux.uidMappings and gidMappings: both, and only, with a new user
/// namespace.
struct IdMappings {
    uid: Vec<IdMap>,
    gid: Vec<IdMap>,
    userns: bool,
}

impl IdMappings {
    fn of(linux: &Linux, namespaces: &Namespaces) -> Result<IdMappings> {
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
fn joined_maps_are(path: &str, uid: &[IdMap], gid: &[IdMap]) -> Result<()> {
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

/// The container's cgroup, with linux.resources as its limits: for a
/// rootless caller only in a subtree delegated to it, and none otherwise
/// (limits it cannot have are refused rather than ignored); made by nsbox
/// in cgroupfs, or by systemd as a scope (`driver`).
fn cgroup(
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
fn delegated(paths: &protocol::CgroupPaths) -> bool {
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
fn allow_listed_devices(resources: &mut protocol::Resources, devices: &[Device]) {
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

/// linux.rootfsPropagation, as mount flags (0: not set).
fn rootfs_propagation(linux: &Linux) -> Result<u64> {
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
fn mounts(
    spec: &Spec,
    extras: &super::Extras,
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
fn mount_idmap(
    destination: &str,
    extras: Option<&super::extras::MountExtras>,
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
fn devices(linux: &Linux) -> Result<Vec<Device>> {
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
fn container_paths(what: &str, list: &Option<Vec<String>>) -> Result<Vec<String>> {
    list.iter()
        .flatten()
        .map(|p| absolute_in_container(what, &Path::new("/").join(p)))
        .collect()
}

/// The container's process; with a user namespace, its ids must be mapped.
fn process(spec: &Spec, extras: &ProcessExtras, ids: &IdMappings) -> Result<Process> {
    let Some(p) = spec.process() else {
        refuse!("config.json has no process");
    };
    let process = convert_process(p, extras)?;
    if ids.userns {
        for (what, id, maps) in [
            ("uid", process.uid, &ids.uid),
            ("gid", process.gid, &ids.gid),
        ] {
            if map_id(maps, id).is_none() {
                refuse!("process {what} {id} is not mapped by linux.{what}Mappings");
            }
        }
        for &g in &process.additional_gids {
            if map_id(&ids.gid, g).is_none() {
                refuse!("additional gid {g} is not mapped by linux.gidMappings");
            }
        }
    }
    Ok(process)
}

/// A rootless container: a user namespace of its own, whose maps use only
/// what newuidmap and newgidmap give the caller.
fn rootless_id_maps(ids: &IdMappings) -> Result<()> {
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

/// Is the rootfs owned already by the host uid the container's root maps
/// to? Then it needs no idmapped mount: the image was made for this
/// mapping (Docker's userns-remap chowns its layers so, and an overlay, as
/// Docker's rootfs is, cannot be idmapped anyway).
fn owned_by_container_root(rootfs: &str, uid_map: &[IdMap]) -> bool {
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
struct IdmappedRoot {
    idmapped: bool,
    /// What the shim idmaps.
    source: Option<String>,
    overlay: Option<Overlay>,
}

impl IdmappedRoot {
    fn of(
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

/// The network mode: `nsbox.network` if given (and consistent with
/// linux.namespaces), else what linux.namespaces says (a new namespace:
/// none; one by path: path; no entry: host). For bridge mode, the settings
/// the shim needs.
fn network(
    spec: &Spec,
    annotations: &BTreeMap<String, String>,
    namespaces: &Namespaces,
    dir: &ContainerDir,
    id: &str,
) -> Result<Option<BridgeNetwork>> {
    let derived = match namespaces
        .0
        .iter()
        .find(|n| n.kind == NamespaceKind::Network)
    {
        None => Mode::Host,
        Some(n) if n.path.is_some() => Mode::Path,
        Some(_) => Mode::None,
    };
    let key = netcfg::NETWORK_ANNOTATION;
    let mode = match annotations.get(key) {
        None => derived,
        Some(m) => {
            let m: Mode = m.parse().map_err(|e| SpecError::Annotation {
                key,
                source: Box::<dyn std::error::Error + Send + Sync>::from(e),
            })?;
            match (m, derived) {
                (Mode::Bridge | Mode::None, Mode::None) | (Mode::Host, Mode::Host) => m,
                (Mode::Host, _) => refuse!(
                    "annotation {key} is host, but linux.namespaces has a network namespace"
                ),
                (_, Mode::Host) => refuse!(
                    "annotation {key} is {m}, but linux.namespaces has no network namespace"
                ),
                (_, _) => refuse!(
                    "annotation {key} is {m}, but linux.namespaces joins a network namespace by path"
                ),
            }
        }
    };
    let Some(settings) = netcfg::bridge_settings(mode, annotations).map_err(SpecError::network)?
    else {
        return Ok(None);
    };
    // A hostname config.json sets must fit /etc/hosts; without one, the
    // container's ID stands in, made fit.
    let hostname = match spec.hostname() {
        Some(h) => {
            netcfg::validate_hostname(h).map_err(SpecError::network)?;
            h.clone()
        }
        None => netcfg::hostname_from_id(id),
    };
    // The shim works from / and names the root in the bridge's alias: an
    // absolute path, the same whoever asks.
    let Some(root) = dir.path.parent() else {
        refuse!("state directory {} has no parent", dir.path.display());
    };
    let root =
        std::path::absolute(root).map_err(io_error(format!("state root {}", root.display())))?;
    Ok(Some(BridgeNetwork {
        root: root.to_string_lossy().into_owned(),
        bridge: settings.bridge,
        subnet: settings.subnet,
        ports: settings.ports,
        hostname,
    }))
}

/// Bind mounts of the /etc files the shim writes into the state directory,
/// as Podman adds them: not over a mount config.json makes itself, and not
/// where the image has no such file (the mount point would have to be made
/// in the image, which nsbox never writes; an overlay's upper layer is the
/// container's own).
fn etc_mounts(mounts: &mut Vec<Mount>, rootfs: &str, overlay: bool, dir: &ContainerDir) {
    for (name, destination) in network::FILES {
        if mounts.iter().any(|m| m.destination == destination) {
            continue;
        }
        let in_image = Path::new(rootfs).join(destination.trim_start_matches('/'));
        let is_file = std::fs::symlink_metadata(&in_image)
            .map(|m| m.is_file())
            .unwrap_or(false);
        if !overlay && !is_file {
            log::debug!(
                "{destination}: not a file in the image, so not mounted over ({})",
                in_image.display()
            );
            continue;
        }
        mounts.push(Mount {
            destination: destination.to_string(),
            fstype: "bind".into(),
            source: dir.etc_file(name).to_string_lossy().into_owned(),
            flags: libc::MS_BIND as u64,
            propagation: 0,
            recursive: Default::default(),
            idmap: None,
            data: String::new(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::template::tests::opts;
    use crate::spec::{check_spec_options, default_spec, load, SpecOptions};

    fn spec_with(
        net: Mode,
        publish: &[&str],
        tweak: impl FnOnce(&mut serde_json::Value),
    ) -> std::result::Result<Plan, String> {
        let tmp = std::env::temp_dir().join(format!(
            "nsbox-spec-net-{}-{net}-{}",
            std::process::id(),
            publish.len()
        ));
        std::fs::create_dir_all(tmp.join("rootfs/etc")).unwrap();
        std::fs::write(tmp.join("rootfs/etc/hosts"), "").unwrap();
        let o = SpecOptions {
            net,
            publish: publish.iter().map(|p| p.to_string()).collect(),
            ..opts("web")
        };
        check_spec_options(&o).map_err(|e| e.to_string())?;
        let mut v = default_spec(&o);
        tweak(&mut v);
        std::fs::write(tmp.join("config.json"), v.to_string()).unwrap();
        let spec = load(&tmp).unwrap();
        let dir = ContainerDir::new(Path::new("/run/nsbox-unit"), "c");
        let plan = plan(&spec, &tmp, &dir, "c");
        std::fs::remove_dir_all(&tmp).unwrap();
        plan.map_err(|e| protocol::error_chain(&e))
    }

    #[test]
    fn network_modes_plan_as_asked() {
        let p = spec_with(Mode::Bridge, &["8080:80", "127.0.0.1:53:53/udp"], |_| {}).unwrap();
        let net = p.request.network.unwrap();
        assert_eq!(net.bridge, netcfg::DEFAULT_BRIDGE);
        assert_eq!(net.subnet, netcfg::DEFAULT_SUBNET);
        assert_eq!(net.ports.len(), 2);
        assert_eq!(net.root, "/run/nsbox-unit");
        assert_eq!(net.hostname, "web");
        // Only /etc/hosts is in that image: only it is mounted over.
        let etc: Vec<&str> = p
            .request
            .init
            .mounts
            .iter()
            .filter(|m| m.destination.starts_with("/etc/"))
            .map(|m| m.destination.as_str())
            .collect();
        assert_eq!(etc, ["/etc/hosts"]);
        assert!(p
            .request
            .init
            .mounts
            .last()
            .unwrap()
            .source
            .ends_with("/c/hosts"));

        let p = spec_with(Mode::Host, &[], |_| {}).unwrap();
        assert!(p.request.network.is_none());
        assert!(!p.request.init.loopback_up);
        assert!(!p
            .request
            .namespaces
            .iter()
            .any(|n| n.kind == NamespaceKind::Network));

        let p = spec_with(Mode::None, &[], |_| {}).unwrap();
        assert!(p.request.network.is_none());
        assert!(p.request.init.loopback_up);

        assert!(spec_with(Mode::None, &["80:80"], |_| {})
            .unwrap_err()
            .contains("--publish needs --net bridge"));
        let e = spec_with(Mode::Bridge, &[], |v| {
            v["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .retain(|n| n["type"] != "network");
        })
        .unwrap_err();
        assert!(e.contains("no network namespace"), "{e}");
        let e = spec_with(Mode::None, &[], |v| {
            v["annotations"] = serde_json::json!({ "nsbox.network": "bridged" });
        })
        .unwrap_err();
        assert!(e.contains("\"bridged\" is unknown"), "{e}");
    }
}

/// Config validation fuzzed, on stable Rust: a fixed-seed generator mutates
/// runc-style configs (a node replaced by a value of another type, a huge
/// string or array, hostile paths) and every result must come back from
/// load + plan as Ok or Err, never as a panic. Deterministic, so a failure
/// reproduces; a config that ever panicked belongs in
/// tests/fixtures/bad-configs/ as a regression.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::spec::{default_spec, load, SpecOptions};
    use serde_json::Value;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    fn any_value(r: &mut Rng) -> Value {
        match r.below(12) {
            0 => Value::Null,
            1 => Value::Bool(r.below(2) == 0),
            2 => Value::from(r.next() as i64),
            3 => Value::from(-1),
            4 => Value::from(u64::MAX),
            5 => Value::from("../../../../etc"),
            6 => Value::from("/proc/self/fd/0"),
            7 => Value::from("x".repeat(r.below(70_000))),
            8 => Value::Array((0..r.below(2000)).map(|i| Value::from(i as u64)).collect()),
            9 => serde_json::json!({ "type": "bogus", "path": "\u{0}" }),
            10 => Value::from(""),
            _ => serde_json::json!([{}, null, "CAP_NOPE", {"destination": "relative"}]),
        }
    }

    /// Every node of `v`, as a JSON pointer.
    fn pointers(v: &Value, here: String, out: &mut Vec<String>) {
        out.push(here.clone());
        match v {
            Value::Object(m) => {
                for (k, c) in m {
                    pointers(
                        c,
                        format!("{here}/{}", k.replace('~', "~0").replace('/', "~1")),
                        out,
                    );
                }
            }
            Value::Array(a) => {
                for (i, c) in a.iter().enumerate() {
                    pointers(c, format!("{here}/{i}"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn mutated_configs_never_panic() {
        let tmp = std::env::temp_dir().join(format!("nsbox-spec-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("rootfs")).unwrap();
        let base = default_spec(&SpecOptions {
            userns: Some(IdMap {
                container: 0,
                host: 100_000,
                size: 65536,
            }),
            ..crate::spec::template::tests::opts("h")
        });
        let dir = ContainerDir::new(Path::new("/run/nsbox-unit"), "c");
        let mut rng = Rng(0x6e73_626f_7846_757a);
        for round in 0..1500 {
            let mut v = base.clone();
            for _ in 0..=rng.below(3) {
                let mut ptrs = Vec::new();
                pointers(&v, String::new(), &mut ptrs);
                let p = ptrs[rng.below(ptrs.len())].clone();
                let new = any_value(&mut rng);
                if p.is_empty() {
                    v = new;
                } else if let Some(slot) = v.pointer_mut(&p) {
                    *slot = new;
                }
            }
            std::fs::write(tmp.join("config.json"), v.to_string()).unwrap();
            let outcome = std::panic::catch_unwind(|| {
                load(&tmp).and_then(|spec| plan(&spec, &tmp, &dir, "c").map(drop))
            });
            assert!(outcome.is_ok(), "round {round}: plan panicked on {v}");
        }
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
