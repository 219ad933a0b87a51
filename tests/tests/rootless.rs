//! Rootless: `runtime` run by an ordinary user, the container's root mapped
//! to that user and the ids above it to the user's subordinate ranges.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// An ordinary user made for the test, with subordinate ids, removed again
/// (with its /etc/subuid and /etc/subgid lines) when the test ends.
struct TestUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl TestUser {
    fn new() -> Option<TestUser> {
        let name = format!("nsbrl{}", std::process::id());
        let ok = |c: &mut Command| c.status().map(|s| s.success()).unwrap_or(false);
        if !ok(Command::new("useradd").args([
            "-M",
            "-s",
            "/bin/sh",
            "-K",
            "SUB_UID_COUNT=0",
            "-K",
            "SUB_GID_COUNT=0",
            &name,
        ])) {
            skip("rootless", "useradd failed");
            return None;
        }
        let user = TestUser {
            uid: id_of(&name, "-u"),
            gid: id_of(&name, "-g"),
            name,
        };
        assert!(
            ok(Command::new("usermod").args([
                "--add-subuids",
                "600000-665535",
                "--add-subgids",
                "600000-665535",
                &user.name
            ])),
            "usermod --add-subuids"
        );
        Some(user)
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
        for file in ["/etc/subuid", "/etc/subgid"] {
            if let Ok(text) = fs::read_to_string(file) {
                let kept: String = text
                    .lines()
                    .filter(|l| !l.starts_with(&format!("{}:", self.name)))
                    .map(|l| format!("{l}\n"))
                    .collect();
                if kept != text {
                    let _ = fs::write(file, kept);
                }
            }
        }
    }
}

fn id_of(name: &str, flag: &str) -> u32 {
    let out = Command::new("id").args([flag, name]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    let st = Command::new("chown")
        .args(["-hR", &format!("{uid}:{gid}"), path.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success(), "chown -R {}", path.display());
}

#[test]
fn rootless_container_end_to_end() {
    let Some(t) = Test::new("rootless") else {
        return;
    };
    if !Path::new("/usr/bin/newuidmap").exists() {
        panic!("newuidmap is missing: install Debian's uidmap package (make deps)");
    }
    let Some(user) = TestUser::new() else {
        return;
    };
    // The user's own state root and image, as a user would have them.
    chown_tree(&t.root, user.uid, user.gid);
    let image = t.work.join("image");
    build_rootfs(&image);
    let shared = t.work.join("shared");
    fs::create_dir(&shared).unwrap();
    for p in [&image, &shared] {
        chown_tree(p, user.uid, user.gid);
    }
    let bundle = t.empty_bundle("b");
    chown_tree(&bundle.dir, user.uid, user.gid);
    let as_user = |args: &[&str]| {
        let mut cmd = t.command(args);
        cmd.uid(user.uid)
            .gid(user.gid)
            .env_remove("XDG_RUNTIME_DIR");
        t.rt_cmd(cmd)
    };

    as_user(&[
        "spec",
        "-b",
        bundle.path(),
        "--rootless",
        "--rootfs",
        image.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "id -u; stat -c %u /bin/busybox; tr -s ' ' </proc/self/uid_map; touch /shared/made; hostname",
    ])
    .ok();
    let mut config = bundle.read_config();
    config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "destination": "/shared", "type": "bind", "source": shared, "options": ["rbind", "rw"]
        }));
    bundle.write_config(&config);

    let out = as_user(&["run", "-b", bundle.path(), "rl"]);
    out.ok();
    let lines = out.stdout_lines();
    assert_eq!(lines[0], "0", "root inside:\n{out:?}");
    assert_eq!(lines[1], "0", "the user's image is root's inside:\n{out:?}");
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["0", &user.uid.to_string(), "1"],
        "{out:?}"
    );
    assert_eq!(
        lines[3].split_whitespace().collect::<Vec<_>>(),
        ["1", "600000", "65536"],
        "{out:?}"
    );
    let made = fs::metadata(shared.join("made")).unwrap();
    assert_eq!(
        made.uid(),
        user.uid,
        "a file made by root inside belongs to the user"
    );

    // A mapping beyond what /etc/subuid gives the user is refused, clearly.
    let mut config = bundle.read_config();
    config["linux"]["uidMappings"] =
        serde_json::json!([{ "containerID": 0, "hostID": 0, "size": 1 }]);
    bundle.write_config(&config);
    let out = as_user(&["create", "-b", bundle.path(), "beyond"]);
    out.fails_with("beyond", &["beyond", "/etc/subuid"]);
    assert!(!t.root.join("beyond").exists());

    // Without a user namespace an unprivileged user gets a clear refusal.
    let mut config = bundle.read_config();
    config["linux"]
        .as_object_mut()
        .unwrap()
        .remove("uidMappings");
    config["linux"]
        .as_object_mut()
        .unwrap()
        .remove("gidMappings");
    config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "user");
    bundle.write_config(&config);
    let out = as_user(&["create", "-b", bundle.path(), "nouserns"]);
    out.fails_with("nouserns", &["user namespace"]);

    // Bridge networking needs host privilege: refused, clearly.
    let bridged = t.empty_bundle("bridged");
    chown_tree(&bridged.dir, user.uid, user.gid);
    as_user(&[
        "spec",
        "-b",
        bridged.path(),
        "--rootless",
        "--net",
        "bridge",
        "--rootfs",
        image.to_str().unwrap(),
    ])
    .ok();
    let out = as_user(&["create", "-b", bridged.path(), "bridged"]);
    out.fails_with("bridged", &["bridge networking needs root"]);
    assert!(!t.root.join("bridged").exists());
}

#[test]
fn default_root_of_an_unprivileged_user() {
    let Some(_t) = Test::new("rootless_default_root") else {
        return;
    };
    // `list` with no --root only reads the default root: as nobody, with no
    // XDG_RUNTIME_DIR, that is /tmp/nsbox-65534, which need not exist.
    let out = Command::new(&bins().runtime)
        .args(["list", "-q"])
        .uid(65534)
        .gid(65534)
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = Command::new(&bins().runtime)
        .args(["--debug", "state", "x"])
        .uid(65534)
        .gid(65534)
        .env("XDG_RUNTIME_DIR", "/nonexistent")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not exist"),
        "{out:?}"
    );
}
