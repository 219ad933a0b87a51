//! config.json: loaded with oci-spec's types, validated before anything is
//! made, and turned into the plain `CreateRequest` that the shim and
//! tiny-init work from. Everything a bad bundle can get wrong is caught
//! here, so that a failed `create` has as little as possible to undo.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use anyhow::{anyhow, bail, Result};
use nsbox_host::network::{self, config as netcfg, Mode};
use nsbox_host::state::ContainerDir;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use protocol::{
    BridgeNetwork, Capabilities, Cgroup, CreateRequest, Device, Hook, Hooks, IdMap, InitConfig,
    IoPriority, Mount, Namespace, NamespaceKind, Overlay, Process, Rlimit,
};

/// The annotation that gives a container a copy-on-write root over an image.
pub const IMAGE_ANNOTATION: &str = "nsbox.image";

#[derive(Debug)]
pub struct Plan {
    pub request: CreateRequest,
    /// What `state` shows as the rootfs.
    pub rootfs: String,
    pub annotations: BTreeMap<String, String>,
    pub command: Vec<String>,
}

pub fn load(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|e| anyhow!("read {}: {e}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| anyhow!("parse {}: {e}", path.display()))?;
    serde_json::from_value(value).map_err(|e| anyhow!("config.json: {e}"))
}

fn absolute_in_container(what: &str, p: &Path) -> Result<String> {
    if !p.is_absolute() {
        bail!("{what} {}: must be an absolute path", p.display());
    }
    if p.components().any(|c| c == Component::ParentDir) {
        bail!("{what} {}: must not contain '..'", p.display());
    }
    let s = p
        .to_str()
        .ok_or_else(|| anyhow!("{what} {}: not UTF-8", p.display()))?;
    Ok(s.to_string())
}

/// Paths that end up in overlayfs' option string, where ',' and ':'
/// separate options and layers.
fn overlay_safe(what: &str, p: &Path) -> Result<String> {
    let s = p
        .to_str()
        .ok_or_else(|| anyhow!("{what} {}: not UTF-8", p.display()))?;
    if s.contains([',', ':', '\\', '\n']) {
        bail!("{what} {s}: overlayfs cannot take a path with ',', ':' or '\\'");
    }
    Ok(s.to_string())
}

pub fn plan(spec: &Spec, bundle: &Path, dir: &ContainerDir, id: &str) -> Result<Plan> {
    let version = spec.version();
    if !version.starts_with("1.") {
        bail!("config.json: ociVersion {version:?} is not 1.x");
    }
    let annotations: BTreeMap<String, String> = spec
        .annotations()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();

    // Root filesystem: the bundle's rootfs, or an overlay over an image.
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
            let root = spec
                .root()
                .as_ref()
                .ok_or_else(|| anyhow!("config.json has no root"))?;
            let p = root.path();
            let abs = resolve_dir("rootfs", bundle, p)?;
            (
                abs.to_str()
                    .ok_or_else(|| anyhow!("rootfs is not UTF-8"))?
                    .to_string(),
                None,
            )
        }
    };
    let readonly_root = spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false);

    let linux = spec.linux().as_ref().ok_or_else(|| {
        anyhow!("config.json has no linux section: nsbox needs at least a mount namespace")
    })?;

    // Namespaces.
    let mut namespaces = Vec::new();
    for ns in linux.namespaces().clone().unwrap_or_default() {
        let kind = match ns.typ() {
            LinuxNamespaceType::Pid => NamespaceKind::Pid,
            LinuxNamespaceType::Mount => NamespaceKind::Mount,
            LinuxNamespaceType::Ipc => NamespaceKind::Ipc,
            LinuxNamespaceType::Uts => NamespaceKind::Uts,
            LinuxNamespaceType::Network => NamespaceKind::Network,
            LinuxNamespaceType::Cgroup => NamespaceKind::Cgroup,
            LinuxNamespaceType::User => NamespaceKind::User,
            LinuxNamespaceType::Time => bail!("time namespaces are not supported"),
        };
        if namespaces.iter().any(|n: &Namespace| n.kind == kind) {
            bail!("namespace {} is listed twice", ns.typ());
        }
        let path = match ns.path() {
            None => None,
            Some(p) => {
                if matches!(
                    kind,
                    NamespaceKind::Pid | NamespaceKind::Mount | NamespaceKind::User
                ) {
                    bail!(
                        "joining an existing {} namespace by path is not supported",
                        ns.typ()
                    );
                }
                if !p.exists() {
                    bail!(
                        "namespace {} path {}: No such file or directory",
                        ns.typ(),
                        p.display()
                    );
                }
                Some(p.to_string_lossy().into_owned())
            }
        };
        namespaces.push(Namespace { kind, path });
    }
    let new = |k: NamespaceKind| namespaces.iter().any(|n| n.kind == k && n.path.is_none());
    if !new(NamespaceKind::Mount) {
        bail!("a new mount namespace is required (linux.namespaces has no \"mount\")");
    }
    if spec.hostname().is_some() && !new(NamespaceKind::Uts) {
        bail!("hostname is set, but there is no new uts namespace to set it in");
    }
    if spec.domainname().is_some() && !new(NamespaceKind::Uts) {
        bail!("domainname is set, but there is no new uts namespace to set it in");
    }

    // What this version does not do yet is refused, not silently ignored.
    let uid_mappings = id_maps("uidMappings", linux.uid_mappings())?;
    let gid_mappings = id_maps("gidMappings", linux.gid_mappings())?;
    let userns = new(NamespaceKind::User);
    match (userns, uid_mappings.is_empty(), gid_mappings.is_empty()) {
        (true, false, false) | (false, true, true) => {}
        (true, _, _) => bail!("a new user namespace needs both linux.uidMappings and linux.gidMappings"),
        (false, _, _) => bail!("linux.uidMappings/gidMappings are set, but there is no new user namespace (add {{\"type\": \"user\"}} to linux.namespaces)"),
    }
    let sysctl = sysctls(linux.sysctl().as_ref(), &new, &namespaces)?;
    let hooks = hooks(spec)?;
    let seccomp = match linux.seccomp() {
        Some(s) => Some(crate::seccomp::compile(s)?),
        None => None,
    };
    let resources = match linux.resources() {
        Some(r) => crate::resources::from_oci(r)?,
        None => Default::default(),
    };
    // An unprivileged user may not write the host's cgroups: a rootless
    // container has none of its own, and limits it cannot have are refused
    // rather than ignored (the device list goes: a user namespace cannot
    // reach device nodes it was not given anyway).
    let cgroup_wanted = nix::unistd::geteuid().is_root();
    if !cgroup_wanted
        && (resources.memory.is_some()
            || resources.cpu.is_some()
            || resources.pids_limit.is_some()
            || !resources.unified.is_empty())
    {
        bail!("linux.resources sets limits, and an unprivileged user cannot write the cgroups that enforce them");
    }
    let layout = nsbox_host::cgroups::Layout::detect().map_err(|e| anyhow!("cgroups: {e}"))?;
    if !resources.unified.is_empty() && !matches!(layout, nsbox_host::cgroups::Layout::V2 { .. }) {
        bail!(
            "linux.resources.unified needs cgroup v2; this host's cgroups are {}",
            layout.name()
        );
    }
    let root = dir.path.parent().unwrap_or(Path::new("/"));
    let scope =
        (root != Path::new(nsbox_host::state::DEFAULT_ROOT)).then(|| root.to_string_lossy());
    let cgroup_paths = layout
        .paths(
            linux.cgroups_path().as_ref().and_then(|p| p.to_str()),
            id,
            scope.as_deref(),
        )
        .map_err(|e| anyhow!("{e}"))?;
    if linux
        .cgroups_path()
        .as_ref()
        .is_some_and(|p| p.to_str().is_none())
    {
        bail!("cgroupsPath is not UTF-8");
    }

    let rootfs_propagation = match linux.rootfs_propagation().as_deref() {
        None | Some("") | Some("rslave") => libc::MS_SLAVE | libc::MS_REC,
        Some("slave") => libc::MS_SLAVE,
        Some("private") => libc::MS_PRIVATE,
        Some("rprivate") => libc::MS_PRIVATE | libc::MS_REC,
        Some("shared") => libc::MS_SHARED,
        Some("rshared") => libc::MS_SHARED | libc::MS_REC,
        Some("unbindable") => libc::MS_UNBINDABLE,
        Some("runbindable") => libc::MS_UNBINDABLE | libc::MS_REC,
        Some(other) => bail!("linux.rootfsPropagation {other:?} is not a propagation mode"),
    } as u64;

    let mut mounts = Vec::new();
    for m in spec.mounts().clone().unwrap_or_default() {
        let destination = absolute_in_container("mount destination", m.destination())?;
        let fstype = m.typ().clone().unwrap_or_default();
        let options = parse_mount_options(m.options().as_deref().unwrap_or(&[]));
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
            if let Err(e) = std::fs::metadata(&abs) {
                bail!("mount {} on {destination}: source: {e}", abs.display());
            }
            source = abs.to_string_lossy().into_owned();
        } else if fstype.is_empty() {
            bail!("mount on {destination}: no type given");
        }
        mounts.push(Mount {
            destination,
            fstype: if is_bind { "bind".into() } else { fstype },
            source,
            flags,
            propagation: options.propagation,
            data: options.data,
        });
    }

    let mut devices = Vec::new();
    for d in linux.devices().clone().unwrap_or_default() {
        let path = absolute_in_container("device", d.path())?;
        let kind = match d.typ() {
            oci_spec::runtime::LinuxDeviceType::C | oci_spec::runtime::LinuxDeviceType::U => 'c',
            oci_spec::runtime::LinuxDeviceType::B => 'b',
            oci_spec::runtime::LinuxDeviceType::P => 'p',
            oci_spec::runtime::LinuxDeviceType::A => {
                bail!("device {path}: type \"a\" is not a device node")
            }
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
    let paths = |what: &str, list: &Option<Vec<String>>| -> Result<Vec<String>> {
        list.clone()
            .unwrap_or_default()
            .iter()
            .map(|p| absolute_in_container(what, Path::new(p)))
            .collect()
    };
    let masked_paths = paths("masked path", linux.masked_paths())?;
    let readonly_paths = paths("read-only path", linux.readonly_paths())?;

    let loopback_up = new(NamespaceKind::Network);
    let mut process = process(spec)?;
    process.seccomp = seccomp;
    if userns {
        for (what, id, maps) in [
            ("uid", process.uid, &uid_mappings),
            ("gid", process.gid, &gid_mappings),
        ] {
            if map_id(maps, id).is_none() {
                bail!("process {what} {id} is not mapped by linux.{what}Mappings");
            }
        }
        for &g in &process.additional_gids {
            if map_id(&gid_mappings, g).is_none() {
                bail!("additional gid {g} is not mapped by linux.gidMappings");
            }
        }
    }
    // With a user namespace, the rootfs (or the image under the overlay)
    // is presented through an idmapped mount that the shim makes; the
    // overlay then takes it from a directory of its own.
    // Idmapped mounts need host privilege: a rootless container's files are
    // the user's own, and the user is the container's root.
    let rootless = !nix::unistd::geteuid().is_root();
    if rootless {
        if !userns {
            bail!("an unprivileged user needs a user namespace (write one with `runtime spec --rootless`)");
        }
        check_subordinate(
            "uid",
            &uid_mappings,
            nix::unistd::getuid().as_raw(),
            "/etc/subuid",
        )?;
        check_subordinate(
            "gid",
            &gid_mappings,
            nix::unistd::getgid().as_raw(),
            "/etc/subgid",
        )?;
    }
    let idmapped = userns && !rootless;
    let idmap_source = match (&overlay, idmapped) {
        (_, false) => None,
        (Some(o), true) => Some(o.lower.clone()),
        (None, true) => Some(rootfs.clone()),
    };
    let overlay = match (overlay, idmapped) {
        (Some(o), true) => Some(Overlay {
            lower: overlay_safe("state directory", &dir.path.join("lower"))?,
            ..o
        }),
        (o, _) => o,
    };
    let command = process.args.clone();
    let hook_pause = !(hooks.prestart.is_empty()
        && hooks.create_runtime.is_empty()
        && hooks.create_container.is_empty());

    let network = bridge_network(spec, &annotations, &namespaces, dir, id)?;
    if network.is_some() && rootless {
        bail!("bridge networking needs root (veths, addresses and nftables rules on the host); a rootless container can have --net none or host");
    }
    if network.is_some() {
        etc_mounts(&mut mounts, &rootfs, overlay.is_some(), dir);
    }

    Ok(Plan {
        request: CreateRequest {
            id: id.to_string(),
            state_dir: dir.path.to_string_lossy().into_owned(),
            tiny_init: String::new(),
            uid_mappings,
            gid_mappings,
            idmap_source,
            caller_reaps: false,
            log_output: false,
            start: false,
            caller_removes_cgroup: false,
            init: InitConfig {
                rootfs: rootfs.clone(),
                overlay,
                idmapped,
                readonly_root,
                rootfs_propagation,
                mounts,
                devices,
                masked_paths,
                readonly_paths,
                hostname: spec.hostname().clone(),
                domainname: spec.domainname().clone(),
                loopback_up,
                preserve_fds: 0,
                cgroup_path: cgroup_wanted.then(|| cgroup_paths.path.clone()),
                new_cgroupns: new(NamespaceKind::Cgroup),
                sysctl,
                hook_pause,
                start_at_once: false,
                start_hooks: hooks.start_container.clone(),
                hook_state: String::new(),
                process,
            },
            namespaces,
            cgroup: cgroup_wanted.then_some(Cgroup {
                paths: cgroup_paths,
                resources,
            }),
            hooks,
            network,
        },
        rootfs,
        annotations,
        command,
    })
}

/// The host id that container id `id` maps to.
pub fn map_id(maps: &[IdMap], id: u32) -> Option<u32> {
    maps.iter()
        .find(|m| id >= m.container && (id - m.container) < m.size)
        .map(|m| m.host + (id - m.container))
}

/// Mappings as the kernel will take them: non-empty ranges that fit in 32
/// bits and overlap neither on the container side nor on the host side.
fn id_maps(
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
        bail!(
            "linux.{what} has {} ranges, the kernel takes at most 340",
            maps.len()
        );
    }
    for m in &maps {
        if m.size == 0 {
            bail!("linux.{what}: range at {} has size 0", m.container);
        }
        if m.container as u64 + m.size as u64 > 1 << 32 || m.host as u64 + m.size as u64 > 1 << 32 {
            bail!(
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
                bail!(
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

/// The network mode: `nsbox.network` if given (and consistent with
/// linux.namespaces), else what linux.namespaces says (a new namespace:
/// none; one by path: path; no entry: host). For bridge mode, the settings
/// the shim needs.
fn bridge_network(
    spec: &Spec,
    annotations: &BTreeMap<String, String>,
    namespaces: &[Namespace],
    dir: &ContainerDir,
    id: &str,
) -> Result<Option<BridgeNetwork>> {
    let derived = match namespaces.iter().find(|n| n.kind == NamespaceKind::Network) {
        None => Mode::Host,
        Some(n) if n.path.is_some() => Mode::Path,
        Some(_) => Mode::None,
    };
    let key = netcfg::NETWORK_ANNOTATION;
    let mode = match annotations.get(key) {
        None => derived,
        Some(m) => {
            let m: Mode = m.parse().map_err(|e| anyhow!("annotation {key}: {e}"))?;
            match (m, derived) {
                (Mode::Bridge | Mode::None, Mode::None) | (Mode::Host, Mode::Host) => m,
                (Mode::Host, _) => bail!(
                    "annotation {key} is host, but linux.namespaces has a network namespace"
                ),
                (_, Mode::Host) => bail!(
                    "annotation {key} is {m}, but linux.namespaces has no network namespace"
                ),
                (_, _) => bail!(
                    "annotation {key} is {m}, but linux.namespaces joins a network namespace by path"
                ),
            }
        }
    };
    let Some(settings) = netcfg::bridge_settings(mode, annotations).map_err(|e| anyhow!(e))? else {
        return Ok(None);
    };
    // A hostname config.json sets must fit /etc/hosts; without one, the
    // container's ID stands in, made fit.
    let hostname = match spec.hostname() {
        Some(h) => {
            netcfg::validate_hostname(h).map_err(|e| anyhow!(e))?;
            h.clone()
        }
        None => netcfg::hostname_from_id(id),
    };
    // The shim works from / and names the root in the bridge's alias: an
    // absolute path, the same whoever asks.
    let root = dir
        .path
        .parent()
        .ok_or_else(|| anyhow!("state directory {} has no parent", dir.path.display()))?;
    let root =
        std::path::absolute(root).map_err(|e| anyhow!("state root {}: {e}", root.display()))?;
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
            data: String::new(),
        });
    }
}

fn resolve_dir(what: &str, bundle: &Path, p: &Path) -> Result<PathBuf> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        bundle.join(p)
    };
    let abs = std::fs::canonicalize(&abs).map_err(|e| anyhow!("{what} {}: {e}", abs.display()))?;
    if !abs.is_dir() {
        bail!("{what} {}: not a directory", abs.display());
    }
    Ok(abs)
}

pub struct MountOptions {
    pub flags: u64,
    pub propagation: u64,
    pub data: String,
}

/// OCI mount options: the ones mount(8) turns into MS_* flags become flags,
/// propagation is kept apart (it is a second mount call), and the rest is
/// the filesystem's own data string.
pub fn parse_mount_options(options: &[String]) -> MountOptions {
    let mut flags: u64 = 0;
    let mut propagation: u64 = 0;
    let mut data = Vec::new();
    for o in options {
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
        data: data.join(","),
    }
}

fn rlimit_resource(name: &str) -> Option<u32> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    } as u32)
}

fn cap_numbers(set: &Option<oci_spec::runtime::Capabilities>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for c in set.iter().flatten() {
        // oci-spec's names serialize as "CAP_CHOWN", which is what caps parses.
        let name = serde_json::to_value(c)?
            .as_str()
            .unwrap_or_default()
            .to_string();
        let cap = caps::Capability::from_str(&name)
            .map_err(|_| anyhow!("capability {name} is unknown"))?;
        out.push(cap.index());
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn process(spec: &Spec) -> Result<Process> {
    let p = spec
        .process()
        .as_ref()
        .ok_or_else(|| anyhow!("config.json has no process"))?;
    convert_process(p)
}

/// An OCI process (config.json's, or an exec's process.json) as tiny-init
/// takes it.
pub fn convert_process(p: &oci_spec::runtime::Process) -> Result<Process> {
    let args = p.args().clone().unwrap_or_default();
    if args.is_empty() || args[0].is_empty() {
        bail!("process.args is empty: nothing to run");
    }
    let cwd = p.cwd().to_string_lossy().into_owned();
    if !cwd.starts_with('/') {
        bail!("process.cwd {cwd:?} must be an absolute path");
    }
    let mut rlimits = Vec::new();
    for r in p.rlimits().clone().unwrap_or_default() {
        let name = serde_json::to_value(r.typ())?
            .as_str()
            .unwrap_or_default()
            .to_string();
        let resource = rlimit_resource(&name).ok_or_else(|| anyhow!("rlimit {name} is unknown"))?;
        if r.soft() > r.hard() {
            bail!(
                "rlimit {name}: soft limit {} is above hard limit {}",
                r.soft(),
                r.hard()
            );
        }
        rlimits.push(Rlimit {
            resource,
            soft: r.soft(),
            hard: r.hard(),
        });
    }
    let capabilities = match p.capabilities() {
        None => None,
        Some(c) => Some(Capabilities {
            bounding: cap_numbers(c.bounding())?,
            effective: cap_numbers(c.effective())?,
            permitted: cap_numbers(c.permitted())?,
            inheritable: cap_numbers(c.inheritable())?,
            ambient: cap_numbers(c.ambient())?,
        }),
    };
    let io_priority = match p.io_priority() {
        None => None,
        Some(io) => {
            let class = match serde_json::to_value(io.class())?
                .as_str()
                .unwrap_or_default()
            {
                "IOPRIO_CLASS_RT" => 1,
                "IOPRIO_CLASS_BE" => 2,
                "IOPRIO_CLASS_IDLE" => 3,
                other => bail!("process.ioPriority class {other:?} is unknown"),
            };
            if !(0..=7).contains(&io.priority()) {
                bail!(
                    "process.ioPriority priority {} is not within 0..7",
                    io.priority()
                );
            }
            Some(IoPriority {
                class,
                level: io.priority() as u8,
            })
        }
    };
    if let Some(adj) = p.oom_score_adj() {
        if !(-1000..=1000).contains(&adj) {
            bail!("process.oomScoreAdj {adj} is not within -1000..1000");
        }
    }
    let user = p.user();
    Ok(Process {
        args,
        env: p.env().clone().unwrap_or_default(),
        cwd,
        uid: user.uid(),
        gid: user.gid(),
        additional_gids: user.additional_gids().clone().unwrap_or_default(),
        umask: user.umask(),
        rlimits,
        capabilities,
        no_new_privileges: p.no_new_privileges().unwrap_or(false),
        terminal: p.terminal().unwrap_or(false),
        oom_score_adj: p.oom_score_adj(),
        io_priority,
        seccomp: None,
    })
}

/// Sysctls that belong to a namespace the container has of its own, as
/// runc allows them; any other would change the host, and is refused.
fn sysctls(
    map: Option<&std::collections::HashMap<String, String>>,
    new: &dyn Fn(NamespaceKind) -> bool,
    namespaces: &[Namespace],
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
    let has = |k: NamespaceKind| namespaces.iter().any(|n| n.kind == k);
    let mut out = Vec::new();
    let mut keys: Vec<(&String, &String)> = map.into_iter().flatten().collect();
    keys.sort();
    for (key, value) in keys {
        let dotted = key.replace('/', ".");
        let (ns, ok) = if IPC.contains(&dotted.as_str()) || dotted.starts_with("fs.mqueue.") {
            ("ipc", new(NamespaceKind::Ipc))
        } else if dotted.starts_with("net.") {
            // A network namespace joined by path is the container's too.
            ("network", has(NamespaceKind::Network))
        } else if dotted == "kernel.hostname" || dotted == "kernel.domainname" {
            ("uts", new(NamespaceKind::Uts))
        } else {
            bail!(
                "sysctl {key:?} is not namespaced: setting it would change the host \
                 (allowed: net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*, \
                 kernel.hostname, kernel.domainname)"
            );
        };
        if !ok {
            bail!("sysctl {key:?} needs a {ns} namespace of the container's own");
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
            bail!("sysctl {key:?} = {value:?} is malformed");
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
            bail!("{what} hook {path:?}: path must be absolute");
        }
        let timeout = match h.timeout() {
            None => None,
            Some(t) if t > 0 => Some(t.min(u32::MAX as i64) as u32),
            Some(t) => bail!("{what} hook {path}: timeout {t} must be above 0"),
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

fn hooks(spec: &Spec) -> Result<Hooks> {
    let Some(h) = spec.hooks() else {
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

/// Docker's default capability set: what people expect a container's root
/// to be able to do.
const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

pub struct SpecOptions {
    /// CONTAINER:HOST:SIZE for both uids and gids.
    pub userns: Option<IdMap>,
    /// (uid maps, gid maps) for a rootless container.
    pub rootless: Option<(Vec<IdMap>, Vec<IdMap>)>,
    pub rootfs: String,
    pub image: Option<String>,
    pub hostname: String,
    pub args: Vec<String>,
    pub net: Mode,
    pub publish: Vec<String>,
    pub bridge: Option<String>,
    pub subnet: Option<String>,
    /// process.terminal: `run` then gives the workload this terminal.
    pub tty: bool,
}

/// Check `runtime spec`'s network options as `create` will, so that a
/// mistake shows before a bundle is written.
pub fn check_spec_options(o: &SpecOptions) -> Result<()> {
    if o.net != Mode::Bridge {
        if !o.publish.is_empty() {
            bail!("--publish needs --net bridge");
        }
        if o.bridge.is_some() || o.subnet.is_some() {
            bail!("--bridge and --subnet need --net bridge");
        }
    }
    netcfg::parse_ports(&o.publish.join(",")).map_err(|e| anyhow!(e))?;
    if let Some(b) = &o.bridge {
        netcfg::validate_bridge(b).map_err(|e| anyhow!(e))?;
    }
    if let Some(s) = &o.subnet {
        netcfg::parse_subnet(s).map_err(|e| anyhow!(e))?;
    }
    if o.net == Mode::Bridge {
        netcfg::validate_hostname(&o.hostname).map_err(|e| anyhow!(e))?;
    }
    Ok(())
}

/// The config.json `runtime spec` writes: runc's defaults, with Docker's
/// capabilities, a /tmp tmpfs, and a terminal only with `--tty`. The root is read-only
/// unless the container has its own copy-on-write layer over an image.
pub fn default_spec(o: &SpecOptions) -> serde_json::Value {
    let args = if o.args.is_empty() {
        vec!["sh".to_string()]
    } else {
        o.args.clone()
    };
    let (root_path, readonly) = match &o.image {
        Some(image) => (image.clone(), false),
        None => (o.rootfs.clone(), true),
    };
    let mut spec = serde_json::json!({
        "ociVersion": nsbox_host::state::OCI_VERSION,
        "process": {
            "terminal": o.tty,
            "user": { "uid": 0, "gid": 0 },
            "args": args,
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": DEFAULT_CAPS,
                "effective": DEFAULT_CAPS,
                "permitted": DEFAULT_CAPS
            },
            "rlimits": [ { "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 } ],
            "noNewPrivileges": true
        },
        "root": { "path": root_path, "readonly": readonly },
        "hostname": o.hostname,
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
              "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
              "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] },
            { "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "nodev", "mode=1777"] }
        ],
        "linux": {
            "namespaces": [
                { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                { "type": "uts" }, { "type": "mount" }
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ],
            // As runc's template: no device but the standard ones, which
            // the runtime adds to a list that denies all.
            "resources": { "devices": [ { "allow": false, "access": "rwm" } ] }
        }
    });
    let mut annotations = serde_json::Map::new();
    if let Some(image) = &o.image {
        annotations.insert(IMAGE_ANNOTATION.into(), image.clone().into());
    }
    match o.net {
        // A namespace of its own with lo only: the namespace list has it.
        Mode::None | Mode::Path => {
            annotations.insert(netcfg::NETWORK_ANNOTATION.into(), "none".into());
        }
        Mode::Host => {
            if let Some(list) = spec["linux"]["namespaces"].as_array_mut() {
                list.retain(|n| n["type"] != "network");
            }
            annotations.insert(netcfg::NETWORK_ANNOTATION.into(), "host".into());
        }
        Mode::Bridge => {
            annotations.insert(netcfg::NETWORK_ANNOTATION.into(), "bridge".into());
            if !o.publish.is_empty() {
                annotations.insert(netcfg::PORTS_ANNOTATION.into(), o.publish.join(",").into());
            }
            if let Some(b) = &o.bridge {
                annotations.insert(netcfg::BRIDGE_ANNOTATION.into(), b.clone().into());
            }
            if let Some(s) = &o.subnet {
                annotations.insert(netcfg::SUBNET_ANNOTATION.into(), s.clone().into());
            }
        }
    }
    if !annotations.is_empty() {
        spec["annotations"] = annotations.into();
    }
    let maps = match (&o.userns, &o.rootless) {
        (Some(m), _) => Some((vec![*m], vec![*m])),
        (None, Some((u, g))) => Some((u.clone(), g.clone())),
        (None, None) => None,
    };
    if let Some((uids, gids)) = maps {
        let json = |maps: &[IdMap]| -> serde_json::Value {
            maps.iter()
                .map(|m| serde_json::json!({ "containerID": m.container, "hostID": m.host, "size": m.size }))
                .collect()
        };
        spec["linux"]["uidMappings"] = json(&uids);
        spec["linux"]["gidMappings"] = json(&gids);
        if let Some(ns) = spec["linux"]["namespaces"].as_array_mut() {
            ns.push(serde_json::json!({ "type": "user" }));
        }
        // devpts' gid=5 (tty) must exist in the container's map.
        if map_id(&gids, 5).is_none() {
            if let Some(mounts) = spec["mounts"].as_array_mut() {
                for m in mounts {
                    if let Some(opts) = m["options"].as_array_mut() {
                        opts.retain(|o| o != "gid=5");
                    }
                }
            }
        }
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `spec`'s options with nothing asked for: rootfs "rootfs", hostname
    /// `hostname`, no network.
    pub(super) fn opts(hostname: &str) -> SpecOptions {
        SpecOptions {
            userns: None,
            rootless: None,
            rootfs: "rootfs".into(),
            image: None,
            hostname: hostname.into(),
            args: vec![],
            net: Mode::None,
            publish: vec![],
            bridge: None,
            subnet: None,
            tty: false,
        }
    }

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
    fn default_spec_parses_and_plans() {
        let tmp = std::env::temp_dir().join(format!("nsbox-spec-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("rootfs")).unwrap();
        let v = default_spec(&opts("h"));
        std::fs::write(tmp.join("config.json"), v.to_string()).unwrap();
        let spec = load(&tmp).unwrap();
        let dir = ContainerDir::new(Path::new("/run/nsbox-unit"), "c");
        let plan = plan(&spec, &tmp, &dir, "c").unwrap();
        assert_eq!(plan.command, vec!["sh"]);
        assert!(plan.request.init.readonly_root);
        let cg = plan.request.cgroup.as_ref().unwrap();
        assert_eq!(cg.paths.path, "/nsbox@run-nsbox-unit@c");
        assert_eq!(
            cg.resources.devices.len(),
            9,
            "deny all, then the standard 8"
        );
        assert!(plan.request.init.loopback_up);
        assert_eq!(plan.request.init.mounts.len(), 7);
        let caps = plan.request.init.process.capabilities.unwrap();
        assert_eq!(caps.bounding.len(), 14);
        assert!(caps
            .bounding
            .contains(&caps::Capability::CAP_NET_RAW.index()));
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    fn spec_with(
        net: Mode,
        publish: &[&str],
        tweak: impl FnOnce(&mut serde_json::Value),
    ) -> Result<Plan> {
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
        check_spec_options(&o)?;
        let mut v = default_spec(&o);
        tweak(&mut v);
        std::fs::write(tmp.join("config.json"), v.to_string()).unwrap();
        let spec = load(&tmp).unwrap();
        let dir = ContainerDir::new(Path::new("/run/nsbox-unit"), "c");
        let plan = plan(&spec, &tmp, &dir, "c");
        std::fs::remove_dir_all(&tmp).unwrap();
        plan
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
            .to_string()
            .contains("--publish needs --net bridge"));
        let e = spec_with(Mode::Bridge, &[], |v| {
            v["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .retain(|n| n["type"] != "network");
        })
        .unwrap_err();
        assert!(e.to_string().contains("no network namespace"), "{e}");
        let e = spec_with(Mode::None, &[], |v| {
            v["annotations"] = serde_json::json!({ "nsbox.network": "bridged" });
        })
        .unwrap_err();
        assert!(e.to_string().contains("\"bridged\" is unknown"), "{e}");
    }

    #[test]
    fn destinations_with_dotdot_are_refused() {
        assert!(absolute_in_container("mount destination", Path::new("/a/../../etc")).is_err());
        assert!(absolute_in_container("mount destination", Path::new("relative")).is_err());
        assert!(absolute_in_container("mount destination", Path::new("/a/b")).is_ok());
    }
}

/// `--userns 0:100000:65536`.
pub fn parse_userns(s: &str) -> Result<IdMap> {
    let parts: Vec<&str> = s.split(':').collect();
    let [c, h, n] = parts[..] else {
        bail!("--userns {s:?}: expected CONTAINER:HOST:SIZE, e.g. 0:100000:65536");
    };
    let num = |x: &str| {
        x.parse::<u32>()
            .map_err(|_| anyhow!("--userns {s:?}: {x:?} is not a number"))
    };
    Ok(IdMap {
        container: num(c)?,
        host: num(h)?,
        size: num(n)?,
    })
}

#[cfg(test)]
mod idmap_tests {
    use super::*;

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

    #[test]
    fn userns_option() {
        let m = parse_userns("0:100000:65536").unwrap();
        assert_eq!((m.container, m.host, m.size), (0, 100000, 65536));
        assert!(parse_userns("0:100000").is_err());
        assert!(parse_userns("a:b:c").is_err());
    }
}

/// The caller's entries in /etc/subuid or /etc/subgid ("name:start:count",
/// or "uid:start:count"), as (start, count).
pub fn subordinate_ranges(file: &str, id: u32, name: Option<&str>) -> Vec<(u32, u32)> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            let mine = who == id.to_string() || Some(who) == name;
            if !mine {
                return None;
            }
            Some((start.parse().ok()?, count.parse().ok()?))
        })
        .collect()
}

fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// newuidmap/newgidmap let a user map their own id and the ranges that
/// /etc/subuid and /etc/subgid give them, nothing else: refuse anything
/// beyond that here, where the error can say why.
fn check_subordinate(what: &str, maps: &[IdMap], own: u32, file: &str) -> Result<()> {
    let uid = nix::unistd::getuid().as_raw();
    let name = user_name(uid);
    let ranges = subordinate_ranges(file, uid, name.as_deref());
    for m in maps {
        if m.host == own && m.size == 1 {
            continue;
        }
        let inside = ranges.iter().any(|&(start, count)| {
            m.host >= start && m.host as u64 + m.size as u64 <= start as u64 + count as u64
        });
        if !inside {
            let have: Vec<String> = ranges
                .iter()
                .map(|(s, c)| format!("{s}-{}", *s as u64 + *c as u64 - 1))
                .collect();
            bail!(
                "{what} mapping {}:{}:{} is beyond your own {what} {own} and your subordinate {what}s in {file} ({})",
                m.container,
                m.host,
                m.size,
                if have.is_empty() { "none".to_string() } else { have.join(", ") }
            );
        }
    }
    Ok(())
}

/// `runtime spec --rootless`: container 0 is the caller; 1 and up are the
/// caller's first subordinate range, where there is one.
pub fn rootless_maps() -> Result<(Vec<IdMap>, Vec<IdMap>)> {
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    let name = user_name(uid);
    let build = |own: u32, file: &str| {
        let mut maps = vec![IdMap {
            container: 0,
            host: own,
            size: 1,
        }];
        if let Some(&(start, count)) = subordinate_ranges(file, uid, name.as_deref()).first() {
            maps.push(IdMap {
                container: 1,
                host: start,
                size: count.min(u32::MAX - 1),
            });
        }
        maps
    };
    Ok((build(uid, "/etc/subuid"), build(gid, "/etc/subgid")))
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
            ..tests::opts("h")
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
