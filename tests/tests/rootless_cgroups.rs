//! A rootless container's cgroup: none unless the caller has a subtree of
//! its own, delegated by root (as systemd delegates user@UID.service): then
//! its limits hold there, read back from the files. Run on this host and in
//! `make test-cgroup2`'s v2 VM, where the delegation is made.

mod common;

use common::*;
use std::fs;
use std::path::Path;
use std::process::Command;

/// Delegates the v2 cgroup `rel` to `user` as systemd does: the directory
/// and the three files a delegatee writes (cgroup.procs,
/// cgroup.subtree_control, cgroup.threads), the memory and pids
/// controllers passed on to it.
fn delegate(rel: &str, user: &TestUser) -> std::path::PathBuf {
    let dir = v2_root().join(rel.trim_start_matches('/'));
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("cgroup.subtree_control"), "+memory +pids").unwrap();
    for p in [
        dir.clone(),
        dir.join("cgroup.procs"),
        dir.join("cgroup.subtree_control"),
        dir.join("cgroup.threads"),
    ] {
        std::os::unix::fs::chown(&p, Some(user.uid), Some(user.gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
    }
    dir
}

#[test]
fn rootless_limits_only_in_a_delegated_subtree() {
    let Some(t) = Test::new("rootless_limits_only_in_a_delegated_subtree") else {
        return;
    };
    let Some(user) = TestUser::new() else {
        return;
    };
    chown_tree(&t.root, user.uid, user.gid);
    let image = t.work.join("image");
    build_rootfs(&image);
    chown_tree(&image, user.uid, user.gid);
    let bundle = t.empty_bundle("b");
    chown_tree(&bundle.dir, user.uid, user.gid);
    let deleg = format!("/nsbox-deleg-{}", t.cgroup_scope());
    let leaf = format!("{deleg}/ctr");
    t.track_cgroup(&leaf);
    t.track_cgroup(&format!("{deleg}/shell"));
    t.track_cgroup(&deleg);
    // The runtime as the user, from `cgroup` (v2) when given: a process may
    // move another only within a subtree both sides' writer may write.
    let as_user = |cgroup: Option<&Path>, args: &[&str]| {
        let mut cmd = Command::new("sh");
        let join = match cgroup {
            Some(c) => format!("echo $$ > {}/cgroup.procs && ", c.display()),
            None => String::new(),
        };
        cmd.arg("-c")
            .arg(format!(
                "{join}exec setpriv --reuid={} --regid={} --clear-groups \"$@\"",
                user.uid, user.gid
            ))
            .arg("sh")
            .arg(&bins().runtime)
            .arg("--root")
            .arg(&t.root)
            .args(args)
            .env_remove("XDG_RUNTIME_DIR");
        t.rt_cmd(cmd)
    };
    as_user(
        None,
        &[
            "spec",
            "-b",
            bundle.path(),
            "--rootless",
            "--rootfs",
            image.to_str().unwrap(),
            "--",
            MT,
            "sleep",
            "60",
        ],
    )
    .ok();
    let mut config = bundle.read_config();
    config["linux"]["cgroupsPath"] = json!(leaf);
    config["linux"]["resources"] = json!({
        "memory": { "limit": 48u64 << 20 },
        "pids": { "limit": 17 },
    });
    bundle.write_config(&config);

    // Nothing delegated: the limits cannot hold, and say where.
    let out = as_user(None, &["create", "-b", bundle.path(), "nodeleg"]);
    out.fails_with("nodeleg", &["rootless", "delegated", &leaf]);
    assert!(!t.root.join("nodeleg").exists());
    if !is_v2() {
        // v1 delegation (a directory per hierarchy, cpuset's values
        // copied down) is not made here; the v2 VM runs the rest.
        return;
    }

    let dir = delegate(&deleg, &user);
    let shell = dir.join("shell");
    fs::create_dir(&shell).unwrap();
    std::os::unix::fs::chown(shell.join("cgroup.procs"), Some(user.uid), Some(user.gid)).unwrap();
    as_user(Some(&shell), &["run", "-d", "-b", bundle.path(), "c1"]).ok();
    let init = t.state("c1")["pid"].as_i64().unwrap() as i32;
    let cgroup = fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap();
    assert_eq!(cgroup.trim(), format!("0::{leaf}"), "tiny-init's cgroup");
    assert_eq!(
        read_cgroup_file("memory", &leaf, "memory.max"),
        (48u64 << 20).to_string()
    );
    assert_eq!(read_cgroup_file("pids", &leaf, "pids.max"), "17");
    let owner = fs::metadata(controller_dir("pids", &leaf)).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&owner), user.uid);
    as_user(None, &["delete", "--force", "c1"]).ok();
    assert!(
        !controller_dir("pids", &leaf).exists(),
        "the container's cgroup is left"
    );
    // The test's own: the shell's cgroup, once the shim that started in
    // it is gone, and the delegated one.
    wait_for(
        "the shim to leave",
        std::time::Duration::from_secs(10),
        || fs::remove_dir(&shell).ok(),
    );
    fs::remove_dir(&dir).unwrap();
}
