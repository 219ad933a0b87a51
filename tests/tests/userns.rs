//! User namespaces: root in the container is an unprivileged uid on the host.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

/// A change made to a default config.json.
type Tweak = Box<dyn Fn(&mut Value)>;

fn map(c: u32, h: u32, n: u32) -> Value {
    serde_json::json!([{ "containerID": c, "hostID": h, "size": n }])
}

/// A new user namespace mapping container 0..65536 to host `base`...
fn userns(c: &mut Value, base: u32) {
    c["linux"]["uidMappings"] = map(0, base, 65536);
    c["linux"]["gidMappings"] = map(0, base, 65536);
    c["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({ "type": "user" }));
}

fn host_uid(pid: i32) -> u32 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn maps_as_configured_and_root_is_unprivileged_on_the_host() {
    let Some(t) = Test::new("userns_maps") else {
        return;
    };
    let b = t.bundle_with(
        "b",
        &[
            "sh",
            "-c",
            "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; echo ready; sleep 30",
        ],
        |c| userns(c, 100000),
    );
    t.run_detached(&b, "u").ok();
    let text = wait_for_text(&t.ctr_stdout("u"), "ready");
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["0"], "{text}");
    assert_eq!(lines[1], ["0"], "{text}");
    assert_eq!(lines[2], ["0", "100000", "65536"], "uid_map: {text}");
    assert_eq!(lines[3], ["0", "100000", "65536"], "gid_map: {text}");
    let pid = t.state("u")["pid"].as_i64().unwrap() as i32;
    assert_eq!(host_uid(pid), 100000, "tiny-init runs as host uid 100000");
    let workload = children(pid);
    assert!(!workload.is_empty(), "tiny-init has no child");
    for child in workload {
        assert_eq!(
            host_uid(child),
            100000,
            "the workload runs as host uid 100000"
        );
    }
    t.rt(&["delete", "-f", "u"]).ok();
}

#[test]
fn files_of_the_image_need_no_chown_and_new_files_are_owned_by_the_mapped_uid() {
    let Some(t) = Test::new("userns_files") else {
        return;
    };
    let shared = t.work.join("shared");
    fs::create_dir(&shared).unwrap();
    std::os::unix::fs::chown(&shared, Some(100000), Some(100000)).unwrap();
    let b = t.bundle_with(
        "b",
        &[
            "sh",
            "-c",
            "stat -c '%u %g' /bin/busybox /etc/passwd; touch /shared/made-inside",
        ],
        |c| {
            userns(c, 100000);
            c["mounts"].as_array_mut().unwrap().push(serde_json::json!({
                "destination": "/shared", "type": "bind",
                "source": shared, "options": ["rbind", "rw"]
            }));
        },
    );
    let out = t.run(&b, "f");
    out.ok();
    // The image is owned by host root: through the idmapped mount it is the
    // container's root's, with no chown of the image.
    assert_eq!(out.stdout_lines(), ["0 0", "0 0"], "{out:?}");
    assert_eq!(fs::metadata(rootfs().join("bin/busybox")).unwrap().uid(), 0);
    let made = fs::metadata(shared.join("made-inside")).unwrap();
    assert_eq!((made.uid(), made.gid()), (100000, 100000));
}

#[test]
fn root_in_the_container_cannot_do_what_needs_host_root() {
    let Some(t) = Test::new("userns_limits") else {
        return;
    };
    let ro = t.work.join("ro");
    fs::create_dir(&ro).unwrap();
    fs::write(ro.join("keep"), "host data\n").unwrap();
    let host_name = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let script = "nsbox-multitool try-init-module; \
                  mknod /tmp/disk b 8 0 2>/dev/null && echo made-device || echo no-device; \
                  mount -o remount,rw /ro 2>/dev/null && echo remounted || echo no-remount; \
                  mount -t tmpfs tmpfs /ro 2>/dev/null && echo over-mounted-ro; \
                  nsbox-multitool try-write /ro/keep; \
                  hostname changed-inside && hostname";
    let b = t.bundle_with("b", &["sh", "-c", script], |c| {
        userns(c, 100000);
        c["process"]["capabilities"] = caps_json(&host_caps());
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!({
            "destination": "/ro", "type": "bind",
            "source": ro, "options": ["rbind", "ro"]
        }));
    });
    let out = t.run(&b, "l");
    out.ok();
    let lines = out.stdout_lines();
    // Every capability inside, CAP_SYS_MODULE included, and still no module
    // (ENOSYS where the kernel has no module support at all).
    assert!(matches!(lines[0], "EPERM" | "ENOSYS"), "{out:?}");
    // CAP_MKNOD inside, and still no device node.
    assert_eq!(lines[1], "no-device", "{out:?}");
    assert_eq!(lines[2], "no-remount", "{out:?}");
    // Mounting over /ro inside changes only the container's view: the host
    // file must stay as it was whatever the container did.
    assert_eq!(fs::read_to_string(ro.join("keep")).unwrap(), "host data\n");
    assert!(lines.contains(&"changed-inside"), "{out:?}");
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host_name,
        "the host's hostname changed"
    );
}

/// The control of the test above: without a user namespace the same
/// capabilities do reach the kernel.
#[test]
fn without_a_user_namespace_cap_sys_module_reaches_the_kernel() {
    let Some(t) = Test::new("userns_control") else {
        return;
    };
    if !host_caps().contains(&"CAP_SYS_MODULE") {
        skip(&t.name, "this host's bounding set lacks CAP_SYS_MODULE");
        return;
    }
    let b = t.bundle_with("root", &["nsbox-multitool", "try-init-module"], |c| {
        c["process"]["capabilities"] = caps_json(&host_caps());
        c["process"]["noNewPrivileges"] = false.into();
    });
    let out = t.run(&b, "r");
    out.ok();
    assert!(
        matches!(out.stdout_lines()[..], ["EBADF"] | ["ENOSYS"]),
        "{out:?}"
    );
}

#[test]
fn same_inside_user_in_two_containers_cannot_touch_each_others_files() {
    let Some(t) = Test::new("userns_two") else {
        return;
    };
    let shared = t.work.join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    let app = |c: &mut Value, base: u32| {
        userns(c, base);
        c["process"]["user"] = serde_json::json!({ "uid": 1000, "gid": 1000 });
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!({
            "destination": "/shared", "type": "bind",
            "source": shared, "options": ["rbind", "rw"]
        }));
    };
    let a = t.bundle_with(
        "a",
        &[
            "sh",
            "-c",
            "umask 077; id -un; echo secret > /shared/a-file",
        ],
        |c| app(c, 100000),
    );
    let out = t.run(&a, "a");
    out.ok();
    assert_eq!(out.stdout_lines(), ["app"], "{out:?}");
    let meta = fs::metadata(shared.join("a-file")).unwrap();
    assert_eq!(meta.uid(), 101000, "A's app is host uid 101000");

    let b = t.bundle_with(
        "b",
        &[
            "sh",
            "-c",
            "id -un; cat /shared/a-file 2>&1; rm -f /shared/a-file 2>&1 || true; echo x >> /shared/a-file 2>&1; true",
        ],
        |c| app(c, 200000),
    );
    let out = t.run(&b, "b");
    out.ok();
    let text = out.stdout.clone();
    assert!(text.starts_with("app\n"), "{text}");
    assert!(!text.contains("secret"), "B read A's file:\n{text}");
    assert!(
        text.contains("Permission denied") || text.contains("Operation not permitted"),
        "{text}"
    );
    assert_eq!(
        fs::read_to_string(shared.join("a-file")).unwrap(),
        "secret\n"
    );
}

#[test]
fn copy_on_write_root_in_a_user_namespace() {
    let Some(t) = Test::new("userns_cow") else {
        return;
    };
    let image = t.work.join("image");
    build_rootfs(&image);
    let before = snapshot(&image);
    let b = t.empty_bundle("b");
    t.rt(&[
        "spec",
        "-b",
        b.path(),
        "--image",
        image.to_str().unwrap(),
        "--userns",
        "0:300000:65536",
        "--",
        "sh",
        "-c",
        "stat -c '%u' /etc/passwd; echo new > /etc/new && stat -c '%u' /etc/new && echo ready && sleep 30",
    ])
    .ok();
    t.run_detached(&b, "cow").ok();
    let text = wait_for_text(&t.ctr_stdout("cow"), "ready");
    assert_eq!(text, "0\n0\nready\n");
    let pid = t.state("cow")["pid"].as_i64().unwrap() as i32;
    assert_eq!(host_uid(pid), 300000);
    let upper = t.root.join("cow/upper/etc/new");
    assert_eq!(
        fs::metadata(&upper).unwrap().uid(),
        300000,
        "{}",
        upper.display()
    );
    t.rt(&["delete", "-f", "cow"]).ok();
    assert_eq!(snapshot(&image), before, "the image changed");
}

#[test]
fn bad_mappings_are_refused_and_leave_nothing() {
    let Some(t) = Test::new("userns_bad") else {
        return;
    };
    let cases: Vec<(&str, Tweak, &str)> = vec![
        (
            "overlap",
            Box::new(|c: &mut Value| {
                userns(c, 100000);
                c["linux"]["uidMappings"] = serde_json::json!([
                    { "containerID": 0, "hostID": 100000, "size": 100 },
                    { "containerID": 50, "hostID": 200000, "size": 100 }
                ]);
            }),
            "overlap",
        ),
        (
            "unmapped-root",
            Box::new(|c: &mut Value| {
                userns(c, 100000);
                c["linux"]["uidMappings"] = map(1000, 100000, 10);
            }),
            "uid 0 is not mapped",
        ),
        (
            "no-userns",
            Box::new(|c: &mut Value| {
                c["linux"]["uidMappings"] = map(0, 100000, 65536);
                c["linux"]["gidMappings"] = map(0, 100000, 65536);
            }),
            "no new user namespace",
        ),
        (
            "empty",
            Box::new(|c: &mut Value| {
                userns(c, 100000);
                c["linux"]["gidMappings"] = map(0, 100000, 0);
            }),
            "size 0",
        ),
    ];
    for (id, tweak, needle) in cases {
        let b = t.bundle_with(id, &["true"], |c| tweak(c));
        let out = t.create(&b, id);
        out.fails_with(id, &[needle]);
        assert!(!t.root.join(id).exists(), "{id}: state left behind");
    }
}
