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
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "private",
    "rbind",
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
    "sync",
    "unbindable",
];

pub fn features() -> serde_json::Value {
    let caps: Vec<String> = caps::all()
        .iter()
        .map(|c| c.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": nsbox_host::state::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": MOUNT_OPTIONS,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": caps,
            "cgroup": { "v1": true, "v2": true, "systemd": true, "systemdUser": false },
            "seccomp": {
                "enabled": true,
                "actions": crate::seccomp::ACTIONS,
                "operators": crate::seccomp::OPERATORS,
                "archs": crate::seccomp::ARCHS
            },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false },
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
    #[test]
    fn every_listed_mount_option_is_one_the_parser_knows() {
        for o in super::MOUNT_OPTIONS {
            let parsed = crate::spec::parse_mount_options(&[o.to_string()]);
            assert!(parsed.data.is_empty(), "{o} would be passed as data");
        }
    }
}
