//! AppArmor and SELinux: a profile or label that config.json (or `exec
//! --apparmor`, `--process-label`) names is applied where the host has the
//! module, and refused, by name, where it has not: running the workload
//! unconfined without a word is what runc and crun refuse too.

use std::path::Path;

use super::Result;

/// AppArmor is on: the module says so (runc's check).
fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
        && Path::new("/sys/kernel/security/apparmor").is_dir()
}

/// SELinux is on: selinuxfs is mounted and this process has a context.
fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").is_file()
        && std::fs::read_to_string("/proc/self/attr/current")
            .is_ok_and(|c| !c.trim_end_matches('\0').trim().is_empty() && c.trim() != "kernel")
}

/// process.apparmorProfile (or `exec --apparmor`): None when unset or
/// empty, the profile when the host can apply it.
pub fn apparmor_profile(what: &str, profile: Option<&str>) -> Result<Option<String>> {
    let Some(p) = profile.filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    if p.contains(['\0', '\n']) {
        refuse!("{what} {p:?} is malformed");
    }
    if !apparmor_enabled() {
        refuse!("{what} {p:?}: this host has no AppArmor to apply it (the module is not enabled)");
    }
    Ok(Some(p.to_string()))
}

/// process.selinuxLabel or linux.mountLabel (or `exec --process-label`).
pub fn selinux_label(what: &str, label: Option<&str>) -> Result<Option<String>> {
    let Some(l) = label.filter(|l| !l.is_empty()) else {
        return Ok(None);
    };
    if l.contains(['\0', '\n', '"', ',']) {
        refuse!("{what} {l:?} is malformed");
    }
    if !selinux_enabled() {
        refuse!("{what} {l:?}: this host has no SELinux to apply it (selinuxfs is not mounted)");
    }
    Ok(Some(l.to_string()))
}

/// The mount label as the filesystems that take one take it: a
/// `context=` option, as runc adds it (not to bind mounts, proc, sysfs
/// and cgroup, which keep their own).
pub fn with_mount_label(fstype: &str, data: &str, label: &str) -> String {
    if matches!(fstype, "bind" | "proc" | "sysfs" | "cgroup" | "cgroup2") {
        return data.to_string();
    }
    let context = format!("context=\"{label}\"");
    if data.is_empty() {
        context
    } else {
        format!("{data},{context}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mount_label_is_a_context_option_where_it_applies() {
        let l = "system_u:object_r:container_file_t:s0:c1,c2";
        assert_eq!(
            with_mount_label("tmpfs", "mode=755", "x"),
            "mode=755,context=\"x\""
        );
        assert_eq!(with_mount_label("mqueue", "", "x"), "context=\"x\"");
        assert_eq!(with_mount_label("bind", "", l), "");
        assert_eq!(with_mount_label("proc", "", l), "");
    }

    #[test]
    fn unset_or_empty_asks_for_nothing() {
        assert_eq!(apparmor_profile("p", None).unwrap(), None);
        assert_eq!(apparmor_profile("p", Some("")).unwrap(), None);
        assert_eq!(selinux_label("l", Some("")).unwrap(), None);
    }

    /// This host has neither module: a profile or label is refused by
    /// name (where one has it, it is applied instead: untested here).
    #[test]
    fn without_the_module_a_profile_or_label_is_refused() {
        if apparmor_enabled() || selinux_enabled() {
            return;
        }
        let e = apparmor_profile("process.apparmorProfile", Some("docker-default")).unwrap_err();
        assert!(
            e.to_string()
                .contains("\"docker-default\": this host has no AppArmor"),
            "{e}"
        );
        let e = selinux_label("linux.mountLabel", Some("a:b:c:s0")).unwrap_err();
        assert!(
            e.to_string()
                .contains("linux.mountLabel \"a:b:c:s0\": this host has no SELinux"),
            "{e}"
        );
    }
}
