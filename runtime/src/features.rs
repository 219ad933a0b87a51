//! `features`: the OCI runtime features document, stating what this build
//! of nsbox really does with a config.json.

use serde_json::json;

/// Mount options that nsbox turns into mount flags (any other option is
/// passed to the filesystem as data).
pub const MOUNT_OPTIONS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "idmap",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "nosymfollow",
    "private",
    "rbind",
    "ridmap",
    "relatime",
    "remount",
    "ro",
    "rprivate",
    "rshared",
    "rslave",
    "runbindable",
    "rw",
    "shared",
    "slave",
    "strictatime",
    "suid",
    "symfollow",
    "sync",
    "unbindable",
];

/// linux.namespaces' types, each one created or joined.
const NAMESPACES: [&str; 8] = [
    "cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts",
];

/// The plain options and the recursive ones, sorted as runc lists them.
fn mount_options() -> Vec<&'static str> {
    let mut all: Vec<&str> = MOUNT_OPTIONS
        .iter()
        .copied()
        .chain(crate::spec::recursive_options())
        .collect();
    all.sort_unstable();
    all
}

pub fn features() -> serde_json::Value {
    let caps: Vec<String> = caps::all()
        .iter()
        .map(|c| c.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    json!({
        "ociVersionMin": "1.0.0",
        // The runtime-spec whose config.json this build takes (the state
        // it prints says its own version).
        "ociVersionMax": "1.2.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": mount_options(),
        "linux": {
            "namespaces": NAMESPACES,
            "capabilities": caps,
            "cgroup": { "v1": true, "v2": true, "systemd": true, "systemdUser": false },
            "seccomp": {
                "enabled": true,
                "actions": crate::seccomp::ACTIONS,
                "operators": crate::seccomp::OPERATORS,
                "archs": crate::seccomp::ARCHS,
                "knownFlags": crate::seccomp::FLAGS,
                "supportedFlags": crate::seccomp::FLAGS
            },
            // Applied where the host has the module, refused where not.
            "apparmor": { "enabled": true },
            "selinux": { "enabled": true },
            "intelRdt": { "enabled": false },
            "mountExtensions": { "idmap": { "enabled": true } }
        },
        "annotations": {
            "org.nsbox.version": env!("CARGO_PKG_VERSION"),
            "org.nsbox.shim-modes": "own,caller"
        }
    })
}

#[cfg(test)]
mod tests {
    /// The document has runc's shape (every key runc's has, at its two top
    /// levels; its annotations name runc's own builds), and what it lists
    /// is what this build takes.
    #[test]
    fn shaped_as_runcs_and_true_to_this_build() {
        let runc: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/runc-features.json")).unwrap();
        let ours = super::features();
        for (key, value) in runc.as_object().unwrap() {
            assert!(ours.get(key).is_some(), "no {key}");
            if key == "annotations" {
                continue;
            }
            for sub in value.as_object().into_iter().flat_map(|o| o.keys()) {
                assert!(ours[key].get(sub).is_some(), "no {key}.{sub}");
            }
        }
        for ns in super::NAMESPACES {
            let parsed = serde_json::from_value::<oci_spec::runtime::LinuxNamespaceType>(ns.into());
            assert!(parsed.is_ok(), "config.json cannot name {ns}");
            assert!(protocol::NamespaceKind::from_oci_name(ns).is_some(), "{ns}");
        }
        for action in crate::seccomp::ACTIONS {
            let profile = serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "listenerPath": "/run/agent.sock",
                "syscalls": [{ "names": ["getcwd"], "action": action }]
            });
            let s = serde_json::from_value(profile).unwrap();
            assert!(crate::seccomp::compile(&s).is_ok(), "{action}");
        }
    }

    #[test]
    fn every_listed_mount_option_is_one_the_parser_knows() {
        for o in super::mount_options() {
            let parsed = crate::spec::parse_mount_options(&[o.to_string()]);
            assert!(parsed.data.is_empty(), "{o} would be passed as data");
        }
    }
}
