//! config.json: loaded with oci-spec's types, validated before anything is
//! made, and turned into the plain `CreateRequest` that the shim and
//! tiny-init work from. Everything a bad bundle can get wrong is caught
//! here, so that a failed `create` has as little as possible to undo.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use anyhow::{anyhow, bail, Result};
use nsbox_host::state::ContainerDir;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use protocol::{
    Capabilities, Cgroup, CreateRequest, Device, Hook, Hooks, InitConfig, IoPriority, Mount,
    Namespace, NamespaceKind, Overlay, Process, Rlimit,
};

/// The annotation that gives a container a copy-on-write root over an image.
pub const IMAGE_ANNOTATION: &str = "nsbox.image";

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
            LinuxNamespaceType::User => bail!("user namespaces are not supported yet"),
            LinuxNamespaceType::Time => bail!("time namespaces are not supported"),
        };
        if namespaces.iter().any(|n: &Namespace| n.kind == kind) {
            bail!("namespace {} is listed twice", ns.typ());
        }
        let path = match ns.path() {
            None => None,
            Some(p) => {
                if matches!(kind, NamespaceKind::Pid | NamespaceKind::Mount) {
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
    if linux.uid_mappings().is_some() || linux.gid_mappings().is_some() {
        bail!("uid/gid mappings (user namespaces) are not supported yet");
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
    let command = process.args.clone();
    let hook_pause = !(hooks.prestart.is_empty()
        && hooks.create_runtime.is_empty()
        && hooks.create_container.is_empty());

    Ok(Plan {
        request: CreateRequest {
            id: id.to_string(),
            state_dir: dir.path.to_string_lossy().into_owned(),
            tiny_init: String::new(),
            init: InitConfig {
                rootfs: rootfs.clone(),
                overlay,
                readonly_root,
                rootfs_propagation,
                mounts,
                devices,
                masked_paths,
                readonly_paths,
                hostname: spec.hostname().clone(),
                domainname: spec.domainname().clone(),
                loopback_up,
                cgroup_path: Some(cgroup_paths.path.clone()),
                new_cgroupns: new(NamespaceKind::Cgroup),
                sysctl,
                hook_pause,
                start_hooks: hooks.start_container.clone(),
                hook_state: String::new(),
                process,
            },
            namespaces,
            cgroup: Some(Cgroup {
                paths: cgroup_paths,
                resources,
            }),
            hooks,
        },
        rootfs,
        annotations,
        command,
    })
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
    let args = p.args().clone().unwrap_or_default();
    if args.is_empty() || args[0].is_empty() {
        bail!("process.args is empty: nothing to run");
    }
    if p.terminal().unwrap_or(false) {
        bail!("process.terminal is true, and terminals are not supported yet");
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
    pub rootfs: String,
    pub image: Option<String>,
    pub hostname: String,
    pub args: Vec<String>,
}

/// The config.json `runtime spec` writes: runc's defaults, with Docker's
/// capabilities, a /tmp tmpfs, and no terminal. The root is read-only
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
            "terminal": false,
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
    if let Some(image) = &o.image {
        spec["annotations"] = serde_json::json!({ IMAGE_ANNOTATION: image });
    }
    spec
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
    fn default_spec_parses_and_plans() {
        let tmp = std::env::temp_dir().join(format!("nsbox-spec-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("rootfs")).unwrap();
        let v = default_spec(&SpecOptions {
            rootfs: "rootfs".into(),
            image: None,
            hostname: "h".into(),
            args: vec![],
        });
        std::fs::write(tmp.join("config.json"), v.to_string()).unwrap();
        let spec = load(&tmp).unwrap();
        let dir = ContainerDir::new(Path::new("/run/nsbox-unit"), "c");
        let plan = plan(&spec, &tmp, &dir, "c").unwrap();
        assert_eq!(plan.command, vec!["sh"]);
        assert!(plan.request.init.readonly_root);
        let cg = plan.request.cgroup.as_ref().unwrap();
        assert_eq!(cg.paths.path, "/nsbox/run-nsbox-unit/c");
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

    #[test]
    fn destinations_with_dotdot_are_refused() {
        assert!(absolute_in_container("mount destination", Path::new("/a/../../etc")).is_err());
        assert!(absolute_in_container("mount destination", Path::new("relative")).is_err());
        assert!(absolute_in_container("mount destination", Path::new("/a/b")).is_ok());
    }
}
