//! Rootless: `runtime` run by an ordinary user, the container's root mapped
//! to that user and the ids above it to the user's subordinate ranges; and
//! rootless Podman, which runs the runtime as root of a user namespace of
//! its own.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

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

/// One scenario of rootless Podman (run by `user`, with its storage,
/// runtime directory and home under `dir`) with the runtime `rt`: what it
/// printed and the exit codes, to compare.
fn rootless_podman_scenario(user: &TestUser, dir: &Path, rt: &str) -> Vec<String> {
    let podman = |args: &[&str]| {
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(dir.join("storage"))
            .arg("--runroot")
            .arg(dir.join("runroot"))
            .args(["--events-backend", "file", "--runtime", rt])
            .args(args)
            .current_dir(dir)
            .env("HOME", dir.join("home"))
            .env("XDG_RUNTIME_DIR", dir.join("xdg"))
            .env_remove("XDG_CONFIG_HOME")
            .uid(user.uid)
            .gid(user.gid)
            .stdin(std::process::Stdio::null());
        let out = cmd.output().expect("podman");
        let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let image = "localhost/nsbox-rootless:latest";
    let mut seen = Vec::new();
    let (code, out, err) = podman(&[
        "run",
        "--rm",
        image,
        "sh",
        "-c",
        "id -u; tr -s ' ' </proc/self/uid_map; exit 3",
    ]);
    let words: Vec<&str> = out.split_whitespace().collect();
    seen.push(format!("run --rm: {code:?} {}", words.join(" ")));
    assert_eq!(code, Some(3), "{rt}: {err}");
    let (code, _, err) = podman(&[
        "run",
        "-d",
        "--name",
        "d1",
        image,
        "sh",
        "-c",
        "trap 'exit 7' TERM; sleep 60 & wait",
    ]);
    assert_eq!(code, Some(0), "{rt}: run -d: {err}");
    seen.push(format!("run -d: {code:?}"));
    let (code, out, err) = podman(&["exec", "d1", "sh", "-c", "echo from-exec; id -u"]);
    seen.push(format!("exec: {code:?} {out:?}"));
    assert_eq!(code, Some(0), "{rt}: exec: {err}");
    let (code, _, err) = podman(&["stop", "-t", "10", "d1"]);
    assert_eq!(code, Some(0), "{rt}: stop: {err}");
    let (code, out, _) = podman(&["inspect", "-f", "{{.State.ExitCode}}", "d1"]);
    seen.push(format!("stopped: {code:?} {out:?}"));
    let (code, _, err) = podman(&["rm", "d1"]);
    assert_eq!(code, Some(0), "{rt}: rm: {err}");
    seen
}

#[test]
fn rootless_podman_runs_nsbox_as_it_runs_runc() {
    let Some(t) = Test::new("rootless_podman") else {
        return;
    };
    require_tools(
        &["podman", "conmon", "runc", "newuidmap", "slirp4netns"],
        "make deps",
    );
    let Some(user) = TestUser::new() else {
        return;
    };
    let dir = t.work.join("podman");
    for d in ["home", "xdg", "storage", "runroot"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::set_permissions(dir.join("xdg"), fs::Permissions::from_mode(0o700)).unwrap();
    let tar = dir.join("rootfs.tar");
    common::images::rootfs_tar(rootfs(), &tar);
    chown_tree(&dir, user.uid, user.gid);
    let cleanup = RootlessPodman {
        dir: dir.clone(),
        uid: user.uid,
        gid: user.gid,
    };
    let import = Command::new("podman")
        .arg("--root")
        .arg(dir.join("storage"))
        .arg("--runroot")
        .arg(dir.join("runroot"))
        .args(["--events-backend", "file", "import"])
        .arg(&tar)
        .arg("localhost/nsbox-rootless:latest")
        .env("HOME", dir.join("home"))
        .env("XDG_RUNTIME_DIR", dir.join("xdg"))
        .current_dir(&dir)
        .uid(user.uid)
        .gid(user.gid)
        .output()
        .unwrap();
    assert!(import.status.success(), "podman import: {import:?}");

    let runc = rootless_podman_scenario(&user, &dir, "runc");
    let ours = rootless_podman_scenario(&user, &dir, bins().runtime.to_str().unwrap());
    assert_eq!(ours, runc, "nsbox under rootless Podman differs from runc");
    // Root in Podman's user namespace, mapped to the user; the user's
    // subordinate ids above it.
    assert!(
        ours[0].ends_with(&format!(" 0 0 {} 1 1 600000 65536", user.uid)),
        "{ours:?}"
    );
    // nsbox kept its state under the user's XDG_RUNTIME_DIR, and left none.
    let state = dir.join("xdg/nsbox");
    assert!(state.is_dir(), "no state root in XDG_RUNTIME_DIR");
    assert_eq!(fs::read_dir(&state).unwrap().count(), 0, "state left");
    drop(cleanup);
}

/// What rootless Podman leaves running and on disk: its pause process
/// (which holds its user namespace) and storage owned by subordinate ids.
struct RootlessPodman {
    dir: PathBuf,
    uid: u32,
    gid: u32,
}

impl Drop for RootlessPodman {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .arg("--root")
            .arg(self.dir.join("storage"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .args(["--events-backend", "file", "rm", "-af", "-t", "0"])
            .env("HOME", self.dir.join("home"))
            .env("XDG_RUNTIME_DIR", self.dir.join("xdg"))
            .current_dir(&self.dir)
            .uid(self.uid)
            .gid(self.gid)
            .output();
        let pause = self.dir.join("xdg/libpod/tmp/pause.pid");
        if let Some(pid) = fs::read_to_string(pause)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            // SAFETY: kill(2) of the pause process the test's Podman started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            wait_for(
                "Podman's pause process to end",
                Duration::from_secs(10),
                || proc_stat(pid).is_none_or(|s| s.0 == "Z").then_some(()),
            );
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
