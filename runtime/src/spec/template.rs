//! The config.json `runtime spec` writes for a person: runc's template
//! with Docker's capabilities, and nsbox's own options (an image, a
//! network, published ports, a user namespace) said in it.

use nsbox_host::network::config::{self as netcfg, Mode};
use protocol::IdMap;

use super::{map_id, Result, SpecError, IMAGE_ANNOTATION};

/// Docker's default capability set: what people expect a container's root
/// to be able to do.
pub(super) const DEFAULT_CAPS: [&str; 14] = [
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
            refuse!("--publish needs --net bridge");
        }
        if o.bridge.is_some() || o.subnet.is_some() {
            refuse!("--bridge and --subnet need --net bridge");
        }
    }
    netcfg::parse_ports(&o.publish.join(",")).map_err(SpecError::network)?;
    if let Some(b) = &o.bridge {
        netcfg::validate_bridge(b).map_err(SpecError::network)?;
    }
    if let Some(s) = &o.subnet {
        netcfg::parse_subnet(s).map_err(SpecError::network)?;
    }
    if o.net == Mode::Bridge {
        netcfg::validate_hostname(&o.hostname).map_err(SpecError::network)?;
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

/// `--userns 0:100000:65536`.
pub fn parse_userns(s: &str) -> Result<IdMap> {
    let parts: Vec<&str> = s.split(':').collect();
    let [c, h, n] = parts[..] else {
        refuse!("--userns {s:?}: expected CONTAINER:HOST:SIZE, e.g. 0:100000:65536");
    };
    let num = |x: &str| {
        x.parse::<u32>()
            .map_err(|_| SpecError::Invalid(format!("--userns {s:?}: {x:?} is not a number")))
    };
    Ok(IdMap {
        container: num(c)?,
        host: num(h)?,
        size: num(n)?,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use std::path::Path;
    use std::str::FromStr;

    use nsbox_host::state::ContainerDir;

    use super::*;
    use crate::spec::{load, plan};

    /// `spec`'s options with nothing asked for: rootfs "rootfs", hostname
    /// `hostname`, no network.
    pub(in crate::spec) fn opts(hostname: &str) -> SpecOptions {
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
        let mut docker: Vec<u8> = DEFAULT_CAPS
            .iter()
            .map(|c| caps::Capability::from_str(c).unwrap().index())
            .collect();
        docker.sort_unstable();
        assert_eq!(caps.bounding, docker);
        assert_eq!(caps.effective, docker);
        assert_eq!(caps.permitted, docker);
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn userns_option() {
        let m = parse_userns("0:100000:65536").unwrap();
        assert_eq!((m.container, m.host, m.size), (0, 100000, 65536));
        assert!(parse_userns("0:100000").is_err());
        assert!(parse_userns("a:b:c").is_err());
    }
}
