//! The network step: the mode, the bridge and its published ports, and
//! the /etc files the shim writes for them.

use super::*;

/// The network mode: `nsbox.network` if given (and consistent with
/// linux.namespaces), else what linux.namespaces says (a new namespace:
/// none; one by path: path; no entry: host). For bridge mode, the settings
/// the shim needs.
pub(super) fn network(
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
pub(super) fn etc_mounts(mounts: &mut Vec<Mount>, rootfs: &str, overlay: bool, dir: &ContainerDir) {
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
