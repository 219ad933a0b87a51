//! The container's filesystem: read-only root, masked and read-only paths,
//! bind mounts, /dev, the host's mount table, the copy-on-write root and
//! `runtime spec`.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

/// Every capability we can give, so that a refused write is refused by the
/// mount and not for want of privilege.
fn all_caps(c: &mut Value) {
    c["process"]["capabilities"] = caps_json(&host_caps());
}

const EROFS: &str = "error: Read-only file system (os error 30)";

#[test]
fn readonly_root() {
    let Some(t) = Test::new("readonly_root") else {
        return;
    };
    let b = t.bundle_with(
        "b",
        &[
            "sh",
            "-c",
            "nsbox-multitool try-write /x; nsbox-multitool try-write /tmp/x",
        ],
        all_caps,
    );
    let out = t.run(&b, "ro");
    out.ok();
    assert_eq!(out.stdout_lines(), [EROFS, "ok"], "{out:?}");
    assert!(
        !rootfs().join("x").exists(),
        "a file appeared in the shared rootfs"
    );

    let b = t.bundle_with("b2", &["touch", "/x"], all_caps);
    let out = t.run(&b, "touch");
    assert_ne!(
        out.code,
        Some(0),
        "touch /x succeeded on a read-only root:\n{out:?}"
    );
    assert!(
        !rootfs().join("x").exists(),
        "a file appeared in the shared rootfs"
    );
}

#[test]
fn masked_paths() {
    let Some(t) = Test::new("masked_paths") else {
        return;
    };
    let script = "head -c 64 /proc/timer_list | wc -c; ls -A /sys/firmware | wc -l";
    let b = t.bundle_with("b", &["sh", "-c", script], all_caps);
    let out = t.run(&b, "masked");
    out.ok();
    assert_eq!(
        out.stdout_lines(),
        ["0", "0"],
        "masked file, masked dir:\n{out:?}"
    );

    // The control: without maskedPaths both have content here.
    let b = t.bundle_with("b2", &["sh", "-c", script], |c| {
        all_caps(c);
        c["linux"]["maskedPaths"] = json!([]);
    });
    let out = t.run(&b, "unmasked");
    out.ok();
    assert_eq!(
        out.stdout_lines(),
        [
            "64",
            &fs::read_dir("/sys/firmware").unwrap().count().to_string()
        ],
        "{out:?}"
    );
}

#[test]
fn readonly_paths() {
    let Some(t) = Test::new("readonly_paths") else {
        return;
    };
    // /proc/sys/kernel/hostname is per UTS namespace: writing it is harmless.
    let b = t.bundle_with(
        "b",
        &[MT, "try-write", "/proc/sys/kernel/hostname"],
        all_caps,
    );
    let out = t.run(&b, "ro");
    assert_eq!(out.stdout.trim(), EROFS, "{out:?}");

    // The control: without readonlyPaths the write works.
    let b = t.bundle_with(
        "b2",
        &[
            "sh",
            "-c",
            "nsbox-multitool try-write /proc/sys/kernel/hostname && hostname",
        ],
        |c| {
            all_caps(c);
            c["linux"]["readonlyPaths"] = json!([]);
        },
    );
    let out = t.run(&b, "rw");
    out.ok();
    assert_eq!(out.stdout_lines(), ["ok", "x"], "{out:?}");
}

#[test]
fn bind_mounts_from_config() {
    let Some(t) = Test::new("bind_mounts_from_config") else {
        return;
    };
    let rw = t.work.join("share-rw");
    let ro = t.work.join("share-ro");
    fs::create_dir_all(&rw).unwrap();
    fs::create_dir_all(&ro).unwrap();
    fs::write(rw.join("hello"), "hello from the host\n").unwrap();
    fs::write(ro.join("hello"), "read-only hello\n").unwrap();
    let script = "cat /mnt/hello /srv/hello; echo from-the-container > /mnt/back; \
                  nsbox-multitool try-write /srv/nope || true";
    let b = t.bundle_with("b", &["sh", "-c", script], |c| {
        all_caps(c);
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(json!({ "destination": "/mnt", "type": "bind", "source": rw,
                            "options": ["rbind", "rw"] }));
        mounts.push(json!({ "destination": "/srv", "type": "bind", "source": ro,
                            "options": ["rbind", "ro"] }));
    });
    let out = t.run(&b, "bind");
    out.ok();
    assert_eq!(
        out.stdout_lines(),
        ["hello from the host", "read-only hello", EROFS],
        "{out:?}"
    );
    assert_eq!(read_lossy(&rw.join("back")), "from-the-container\n");
    assert!(!ro.join("nope").exists());
}

#[test]
fn dev_has_the_standard_devices() {
    let Some(t) = Test::new("dev_has_the_standard_devices") else {
        return;
    };
    let script = "for d in null zero full random urandom tty; do \
                    [ -c /dev/$d ] && echo dev-$d; done; \
                  [ -d /dev/pts ] && echo dir-pts; [ -e /dev/ptmx ] && echo ptmx; \
                  [ -d /dev/shm ] && echo dir-shm; [ -d /dev/mqueue ] && echo dir-mqueue; \
                  echo discard > /dev/null && echo null-writes; \
                  head -c 8 /dev/zero | wc -c; head -c 8 /dev/urandom | wc -c";
    let b = t.bundle("b", &["sh", "-c", script]);
    let out = t.run(&b, "dev");
    out.ok();
    assert_eq!(
        out.stdout_lines(),
        [
            "dev-null",
            "dev-zero",
            "dev-full",
            "dev-random",
            "dev-urandom",
            "dev-tty",
            "dir-pts",
            "ptmx",
            "dir-shm",
            "dir-mqueue",
            "null-writes",
            "8",
            "8",
        ],
        "{out:?}"
    );
}

#[test]
fn dev_has_the_standard_symlinks() {
    let Some(t) = Test::new("dev_has_the_standard_symlinks") else {
        return;
    };
    let b = t.bundle(
        "b",
        &[
            "sh",
            "-c",
            "for l in fd stdin stdout stderr; do readlink /dev/$l; done",
        ],
    );
    let out = t.run(&b, "links");
    out.ok();
    assert_eq!(
        out.stdout_lines(),
        [
            "/proc/self/fd",
            "/proc/self/fd/0",
            "/proc/self/fd/1",
            "/proc/self/fd/2"
        ],
        "{out:?}"
    );
}

#[test]
fn container_mounts_are_as_configured() {
    let Some(t) = Test::new("container_mounts_are_as_configured") else {
        return;
    };
    let b = t.bundle("b", &["cat", "/proc/self/mountinfo"]);
    let out = t.run(&b, "mi");
    out.ok();
    // In mount order: the last entry for a mount point is the visible one.
    let mut points: Vec<(String, String)> = Vec::new();
    for l in out.stdout.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        // mount point, per-mount options
        points.push((f[4].to_string(), f[5].to_string()));
    }
    let opts = |p: &str| {
        points
            .iter()
            .rev()
            .find(|(m, _)| m == p)
            .map(|(_, o)| o.clone())
            .unwrap_or_else(|| panic!("{p} is not mounted in the container:\n{}", out.stdout))
    };
    assert!(
        opts("/").split(',').any(|o| o == "ro"),
        "/ is not read-only"
    );
    for p in [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/tmp",
    ] {
        opts(p);
    }
    assert!(
        opts("/sys").split(',').any(|o| o == "ro"),
        "/sys is not read-only"
    );
    assert!(
        opts("/proc/sys").split(',').any(|o| o == "ro"),
        "/proc/sys is not read-only"
    );
    // Nothing of the host's mount table beyond what was asked for.
    for (m, _) in &points {
        assert!(
            !m.starts_with("/run") && !m.starts_with("/home") && !m.starts_with("/boot"),
            "a host mount is visible in the container: {m}\n{}",
            out.stdout
        );
    }
}

#[test]
fn host_mount_table_is_unchanged() {
    let Some(t) = Test::new("host_mount_table_is_unchanged") else {
        return;
    };
    // Other tests of this binary run in parallel: leave out their roots and
    // work directories, keep ours.
    let mine = |p: &String| {
        let other =
            |base: &str, own: &Path| p.starts_with(&format!("{base}/")) && !mentions(p, own);
        !other(STATE_BASE, &t.root) && !other(WORK_BASE, &t.work)
    };
    let points = || -> BTreeSet<String> { mount_points().into_iter().filter(mine).collect() };
    let before = points();

    let share = t.work.join("share");
    fs::create_dir_all(&share).unwrap();
    let b = t.bundle_with("b", &["sh", "-c", "echo ready; sleep 30"], |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/mnt", "type": "bind", "source": share, "options": ["rbind", "ro"]
        }));
    });
    t.run_detached(&b, "mt").ok();
    wait_for_text(&t.ctr_stdout("mt"), "ready");
    let during = points();
    t.rt(&["delete", "--force", "mt"]).ok();
    let after = points();
    assert_eq!(
        before.symmetric_difference(&during).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "the host's mount table changed while the container ran"
    );
    assert_eq!(
        before.symmetric_difference(&after).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "the host's mount table changed after the container was deleted"
    );
}

/// Finds a regular file named `name` holding `text` under `dir`.
fn find_file(dir: &Path, name: &str, text: &str) -> Option<std::path::PathBuf> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() && e.file_name() == name && read_lossy(&p) == text {
                return Some(p);
            }
        }
    }
    None
}

#[test]
fn copy_on_write_root() {
    let Some(t) = Test::new("copy_on_write_root") else {
        return;
    };
    let image = t.work.join("image");
    build_rootfs(&image);
    let image_before = snapshot(&image);
    let image_str = image.to_str().unwrap();

    let a = t.empty_bundle("a");
    t.rt(&[
        "spec",
        "-b",
        a.path(),
        "--image",
        image_str,
        "--",
        "sh",
        "-c",
        "echo from-a > /file && cat /file && echo done && sleep 30",
    ])
    .ok();
    let b = t.empty_bundle("b");
    t.rt(&[
        "spec",
        "-b",
        b.path(),
        "--image",
        image_str,
        "--",
        "sh",
        "-c",
        "if [ -e /file ]; then echo seen; else echo absent; fi; echo other > /other; cat /other",
    ])
    .ok();
    for bundle in [&a, &b] {
        assert_eq!(
            bundle.read_config()["annotations"]["nsbox.image"],
            image_str,
            "spec --image did not record the image"
        );
    }

    t.run_detached(&a, "cow-a").ok();
    let text = wait_for_text(&t.ctr_stdout("cow-a"), "done");
    assert_eq!(
        text, "from-a\ndone\n",
        "container A could not write its root"
    );
    // A's write went to an upper directory under the state root.
    let upper_file = find_file(&t.root, "file", "from-a\n");
    assert!(
        upper_file.is_some(),
        "A's /file is nowhere under the state root {}",
        t.root.display()
    );

    let out = t.run(&b, "cow-b");
    out.ok();
    assert_eq!(out.stdout_lines(), ["absent", "other"], "{out:?}");

    t.rt(&["delete", "--force", "cow-a"]).ok();
    assert!(
        !t.root.join("cow-a").exists(),
        "A's state dir outlived delete"
    );
    assert!(
        !upper_file.unwrap().exists(),
        "A's upper dir outlived delete"
    );
    assert_eq!(snapshot(&image), image_before, "the image changed");
}

#[test]
fn spec_writes_config_and_refuses_to_overwrite() {
    let Some(t) = Test::new("spec_writes_config_and_refuses_to_overwrite") else {
        return;
    };
    let b = t.empty_bundle("b");
    t.rt(&["spec", "-b", b.path()]).ok();
    let c = b.read_config();
    assert_eq!(c["process"]["args"], json!(["sh"]), "{c}");
    assert_eq!(c["process"]["terminal"], json!(false), "{c}");
    let ns: BTreeSet<&str> = c["linux"]["namespaces"]
        .as_array()
        .unwrap_or_else(|| panic!("no namespaces: {c}"))
        .iter()
        .filter_map(|n| n["type"].as_str())
        .collect();
    for want in ["pid", "ipc", "uts", "mount", "network"] {
        assert!(ns.contains(want), "no {want} namespace: {c}");
    }
    let dests: BTreeSet<&str> = c["mounts"]
        .as_array()
        .unwrap_or_else(|| panic!("no mounts: {c}"))
        .iter()
        .filter_map(|m| m["destination"].as_str())
        .collect();
    for want in ["/proc", "/dev", "/dev/pts", "/sys"] {
        assert!(dests.contains(want), "no {want} mount: {c}");
    }

    let before = fs::read(b.config_path()).unwrap();
    let out = t.rt(&["spec", "-b", b.path(), "--hostname", "other"]);
    assert_ne!(out.code, Some(0), "spec overwrote config.json:\n{out:?}");
    assert_eq!(
        fs::read(b.config_path()).unwrap(),
        before,
        "config.json changed"
    );
}

#[test]
fn spec_bundle_runs() {
    let Some(t) = Test::new("spec_bundle_runs") else {
        return;
    };
    let b = t.empty_bundle("b");
    t.rt(&[
        "spec",
        "-b",
        b.path(),
        "--rootfs",
        rootfs().to_str().unwrap(),
        "--hostname",
        "from-spec",
        "--",
        "sh",
        "-c",
        "hostname; cat /etc/issue",
    ])
    .ok();
    let out = t.run(&b, "spec");
    out.ok();
    assert_eq!(
        out.stdout_lines(),
        ["from-spec", "nsbox test rootfs"],
        "{out:?}"
    );
}

/// CVE-2019-5736: root in the container must not be able to write the
/// binary behind /proc/1/exe, whichever way tiny-init got there: a
/// read-only bind of the host's binary (no CAP_SYS_ADMIN), or a sealed
/// memfd (CAP_SYS_ADMIN, which could lift a read-only mount). A write
/// while tiny-init runs fails with ETXTBSY whatever guards it, so the
/// guard itself is checked too: what a write would meet once tiny-init has
/// exited (runc's attacker kept an fd for that moment).
#[test]
fn tiny_init_binary_cannot_be_written_from_inside() {
    let Some(t) = Test::new("proc1_exe") else {
        return;
    };
    let before = fs::read(&bins().tiny_init).unwrap();
    for (name, with_admin, guard) in [
        ("bind", false, ["mount ro", "not sealed"]),
        ("memfd", true, ["mount rw", "sealed"]),
    ] {
        let caps: Vec<&str> = host_caps()
            .into_iter()
            .filter(|c| with_admin || *c != "CAP_SYS_ADMIN")
            .collect();
        let b = t.bundle_with(
            name,
            &[
                "sh",
                "-c",
                "nsbox-multitool write-guard /proc/1/exe; \
                 nsbox-multitool try-write /proc/1/exe; \
                 mount -o remount,rw /proc/1/exe 2>/dev/null && echo remounted; \
                 nsbox-multitool write-guard /proc/1/exe; \
                 nsbox-multitool try-write /proc/1/exe",
            ],
            |c| {
                c["process"]["capabilities"] = caps_json(&caps);
                c["process"]["noNewPrivileges"] = false.into();
            },
        );
        let out = t.run(&b, name);
        let lines = out.stdout_lines();
        let remounted = lines.contains(&"remounted");
        let tried: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| *l != "remounted")
            .collect();
        assert_eq!(tried.len(), 6, "{name}: {out:?}");
        assert_eq!(tried[..2], guard, "{name}: {out:?}");
        assert!(tried[2].starts_with("error: "), "{name}: writable: {out:?}");
        // After a remount (which CAP_SYS_ADMIN may do), still no way in.
        if !remounted {
            assert_eq!(tried[3..5], guard, "{name}: {out:?}");
        }
        assert_ne!(tried[3..5], ["mount rw", "not sealed"], "{name}: {out:?}");
        assert!(tried[5].starts_with("error: "), "{name}: writable: {out:?}");
    }
    assert!(
        fs::read(&bins().tiny_init).unwrap() == before,
        "the host's tiny-init changed"
    );
}
