//! The plan: a loaded config.json turned, step by step, into the
//! `CreateRequest` that the shim and tiny-init work from. Each step decides
//! one thing (the root, the namespaces, the id maps, the cgroup, the
//! mounts, the process, the network...) and refuses what nsbox cannot do,
//! by name, rather than ignore it. The steps run in the order `plan` lists
//! them, which is the order a config with several faults is reported in.
//!
//! The larger steps have a file each: `namespaces`, `ids` (the user
//! namespace's maps), `cgroup`, `mounts` (with devices, masked paths and
//! the idmapped root) and `net`; the root and the process are here.

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

mod cgroup;
mod ids;
mod mounts;
mod namespaces;
mod net;

use cgroup::cgroup;
use ids::{rootless_id_maps, IdMappings};
use mounts::{
    container_paths, devices, mounts, needs_no_mount, owned_by_container_root, rootfs_propagation,
    IdmappedRoot,
};
use namespaces::{namespaces, time_offsets};
use net::{etc_mounts, network};

use crate::spec::subordinate::check_subordinate;
use crate::spec::validate::{
    absolute_in_container, hooks, id_maps, map_id, overlay_safe, parse_mount_options, resolve_dir,
    sysctls, Namespaces,
};
use crate::spec::{
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
