//! Bad input, hostile peers and escape attempts (issue 7). Each config in
//! tests/fixtures/bad-configs/ (@ROOTFS@ stands for the test rootfs), and a
//! few generated ones too big to keep, must get one clear error line: no
//! panic, no mount outside the container, nothing left.

mod common;

use common::*;
use std::path::Path;

fn host_mounts() -> Vec<String> {
    // Mount ids and the peer-group tags change with unrelated activity;
    // the mount point and source are what matter.
    mountinfo()
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            format!("{} {}", f.get(4).unwrap_or(&""), f.get(3).unwrap_or(&""))
        })
        .filter(|l| !l.contains("/nsbox-t/") && !l.contains("/run/nsbox-t"))
        .collect()
}

/// What each bad config is refused for: the step and the cause its error
/// line must name. Every config in the corpus needs an entry, and every
/// entry a config.
const CAUSES: &[(&str, &[&str])] = &[
    (
        "args-wrong-type",
        &[
            "config.json",
            "invalid type: string \"sh\", expected a sequence",
        ],
    ),
    (
        "array-at-top",
        &[
            "config.json",
            "invalid type: integer `1`, expected a string",
        ],
    ),
    ("bogus-capability", &["config.json", "CAP_NOPE"]),
    (
        "bounding-empty",
        &[
            "process.capabilities.bounding is empty",
            "effective names CAP_KILL",
        ],
    ),
    ("bogus-device-type", &["config.json", "unknown variant `z`"]),
    (
        "bogus-namespace",
        &["config.json", "unknown variant `nosuchns`"],
    ),
    (
        "bogus-rlimit",
        &["config.json", "unknown variant `RLIMIT_NOPE`"],
    ),
    ("deep-nesting", &["config.json", "recursion limit exceeded"]),
    ("empty-args", &["process.args is empty"]),
    ("empty", &["config.json", "EOF while parsing"]),
    (
        "host-sysctl",
        &["sysctl \"kernel.core_pattern\"", "not namespaced"],
    ),
    (
        "mount-dotdot",
        &[
            "mount destination ../../../../etc/nsbox-escape",
            "must be an absolute path",
        ],
    ),
    (
        "mount-relative",
        &[
            "mount destination relative/path",
            "must be an absolute path",
        ],
    ),
    (
        "negative-uid",
        &["config.json", "invalid value: integer `-1`, expected u32"],
    ),
    ("no-process", &["config.json has no process"]),
    ("no-root", &["config.json has no root"]),
    ("not-json", &["config.json", "EOF while parsing"]),
    // root.path resolves to the host's /, which pivot_root refuses.
    (
        "rlimit-above-nr-open",
        &["rlimit RLIMIT_NOFILE", "above the kernel's fs.nr_open"],
    ),
    (
        "rlimit-soft-above-hard",
        &[
            "rlimit RLIMIT_NOFILE",
            "soft limit 20 is above hard limit 10",
        ],
    ),
    ("root-dotdot", &["pivot_root", "device or resource busy"]),
    (
        "version-wrong-type",
        &[
            "config.json",
            "invalid type: integer `12`, expected a string",
        ],
    ),
    ("ten-megabytes", &["config.json is too large"]),
    ("huge-env", &["config.json is too large"]),
    ("huge-mounts", &["config.json is too large"]),
];

#[track_caller]
fn refused(t: &Test, name: &str, text: &str) {
    let dir = t.work.join(name.replace('.', "_"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        text.replace("@ROOTFS@", rootfs().to_str().unwrap()),
    )
    .unwrap();
    let stem = name.trim_end_matches(".json");
    let cause = CAUSES
        .iter()
        .find(|(n, _)| *n == stem)
        .map(|(_, c)| *c)
        .unwrap_or_else(|| panic!("{name}: no entry in CAUSES says what it is refused for"));
    let id = format!("bad-{stem}");
    let before = host_mounts();
    let out = t.rt(&["create", "-b", dir.to_str().unwrap(), &id]);
    assert!(
        !out.stderr.contains("panicked") && !matches!(out.code, Some(101) | Some(134)),
        "{name}: the runtime panicked: {out:?}"
    );
    out.fails_with(&id, cause);
    let after = host_mounts();
    let new: Vec<_> = after.iter().filter(|m| !before.contains(m)).collect();
    assert!(new.is_empty(), "{name}: host mounts appeared: {new:?}");
}

#[test]
fn every_bad_config_gets_one_clear_error() {
    let Some(t) = Test::new("every_bad_config_gets_one_clear_error") else {
        return;
    };
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/bad-configs");
    let mut names: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 15, "corpus too small: {names:?}");
    for (stem, _) in CAUSES {
        assert!(
            names.contains(&format!("{stem}.json"))
                || ["ten-megabytes", "huge-env", "huge-mounts"].contains(stem),
            "CAUSES names {stem}, which is not in the corpus"
        );
    }
    for name in &names {
        let text = std::fs::read_to_string(corpus.join(name)).unwrap();
        refused(&t, name, &text);
    }
    // Too big to keep in the repository.
    let mut big = default_config(&["/bin/true"]);
    big["process"]["args"] = json!(["/bin/true", "x".repeat(10 << 20)]);
    refused(&t, "ten-megabytes", &big.to_string());
    let mut big = default_config(&["/bin/true"]);
    big["process"]["env"] = json!(vec!["X=y"; 200_000]);
    refused(&t, "huge-env", &big.to_string());
    let mut big = default_config(&["/bin/true"]);
    big["mounts"] = json!(vec![
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"});
        50_000
    ]);
    refused(&t, "huge-mounts", &big.to_string());
}

#[test]
fn mount_destinations_through_symlinks_stay_inside() {
    let Some(t) = Test::new("mount_destinations_through_symlinks") else {
        return;
    };
    // A rootfs of our own whose symlinks point out of it (CVE-2021-30465).
    let root = t.work.join("evil-rootfs");
    build_rootfs(&root);
    std::os::unix::fs::symlink("/etc", root.join("etc-link")).unwrap();
    std::os::unix::fs::symlink("../../../../../../tmp", root.join("up-link")).unwrap();
    let before = host_mounts();
    // Each destination is resolved in the container's root, as runc does:
    // where its tmpfs lands, and how many tmpfs mounts are then there (the
    // config has one on /tmp already).
    for (n, (dest, lands, tmpfs_there)) in [
        ("/etc-link/nsbox-x", "/etc/nsbox-x", 1),
        ("/up-link", "/tmp", 2),
        ("/etc-link", "/etc", 1),
    ]
    .into_iter()
    .enumerate()
    {
        let b = t.bundle_with(
            &format!("sl{n}"),
            &["sh", "-c", "cat /proc/self/mountinfo"],
            |c| {
                c["root"]["path"] = json!(root);
                c["mounts"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"destination": dest, "type": "tmpfs", "source": "tmpfs"}));
            },
        );
        let id = format!("sl{n}");
        let out = t.run(&b, &id);
        assert!(!out.stderr.contains("panicked"), "{out:?}");
        out.ok();
        let there = out
            .stdout
            .lines()
            .filter(|l| l.split(' ').nth(4) == Some(lands) && l.contains(" - tmpfs tmpfs "))
            .count();
        assert_eq!(
            there, tmpfs_there,
            "{dest} did not land on {lands}: {out:?}"
        );
        let new: Vec<_> = host_mounts()
            .into_iter()
            .filter(|m| !before.contains(m))
            .collect();
        assert!(new.is_empty(), "{dest}: host mounts appeared: {new:?}");
        assert!(
            !Path::new("/etc/nsbox-x").exists(),
            "{dest}: made /etc/nsbox-x on the host"
        );
        let _ = t.rt(&["delete", "--force", &id]);
    }
}

#[test]
fn proc_and_sys_through_a_symlink_are_refused_by_the_rule() {
    let Some(t) = Test::new("proc_sys_symlink") else {
        return;
    };
    let before = host_mounts();
    for (what, dest, target) in [("proc", "proc", "/tmp"), ("sysfs", "sys", "/etc/issue")] {
        let root = t.work.join(format!("rootfs-{what}"));
        build_rootfs(&root);
        std::fs::remove_dir(root.join(dest)).unwrap();
        std::os::unix::fs::symlink(target, root.join(dest)).unwrap();
        let b = t.bundle_with(&format!("b-{what}"), &["true"], |c| {
            c["root"]["path"] = json!(root);
        });
        let id = format!("{what}-link");
        t.create(&b, &id).fails_with(
            &id,
            &[
                &format!("mount {what} on /{dest}"),
                &format!("/{dest} is a symlink in the image"),
                &format!("{what} is mounted only on an ordinary directory"),
            ],
        );
        assert_eq!(host_mounts(), before, "{what}: the host's mounts changed");
    }
}

#[test]
fn relative_masked_and_read_only_paths_are_taken_from_the_root() {
    let Some(t) = Test::new("relative_masked_readonly") else {
        return;
    };
    let b = t.bundle_with(
        "b",
        &[
            "sh",
            "-c",
            "cat /proc/version | wc -c; touch /tmp/x && echo tmp-writable; \
             grep -c ' /home ro,' /proc/self/mountinfo",
        ],
        |c| {
            c["root"]["readonly"] = json!(false);
            c["linux"]["maskedPaths"] = json!(["proc/version"]);
            c["linux"]["readonlyPaths"] = json!(["home"]);
        },
    );
    let out = t.run(&b, "rel");
    out.ok();
    // The masked /proc/version reads as /dev/null; /home is a read-only bind.
    assert_eq!(out.stdout_lines(), ["0", "tmp-writable", "1"], "{out:?}");
}

#[test]
fn a_hostile_workload_writing_garbage_everywhere_changes_nothing() {
    let Some(t) = Test::new("hostile_workload_garbage") else {
        return;
    };
    let script = format!("{MT} garbage-fds; {MT} garbage-fds; exec {MT} sleep 60");
    let b = t.bundle("gb", &["sh", "-c", &script]);
    t.run_detached(&b, "gb").ok();
    wait_for_text(&t.ctr_stdout("gb"), "garbage wrote");
    // A round trip through the shim and tiny-init: both still answer.
    let out = t.rt(&["exec", "gb", "echo", "still-here"]);
    assert_eq!(out.ok().stdout, "still-here\n", "{out:?}");
    assert_eq!(t.status("gb"), "running");
    t.rt(&["kill", "gb", "TERM"]).ok();
    let st = t.wait_status("gb", "stopped");
    assert_eq!(st["exitCode"], json!(143), "{st}");
    t.rt(&["delete", "gb"]).ok();
}

#[test]
fn escape_attempts_fail() {
    let Some(t) = Test::new("escape_attempts_fail") else {
        return;
    };
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host_runtime = std::fs::read(&bins().runtime).unwrap().len();
    // Everything the default config gives (all caps but the defaults
    // dropped), tried from inside; each line must report a failure.
    let script = format!(
        "{MT} try-write /proc/1/exe; {MT} try-write /proc/self/exe; \
         {MT} try-write /proc/sys/kernel/hostname; {MT} try-write /proc/sysrq-trigger; \
         {MT} try-write /sys/kernel/profiling; {MT} try-write /proc/kcore; \
         ls /proc/1/fd/ /proc/self/fd/ 2>&1; ls -l /proc/self/cwd; \
         hostname evil 2>&1; echo hostname=$(hostname); \
         echo procs=$(ls -d /proc/[0-9]* | wc -l); ip -o link 2>&1 | cut -d: -f2"
    );
    let b = t.bundle_with("esc", &["sh", "-c", &script], |c| {
        c["annotations"] = json!({"nsbox.network": "none"});
        c["process"]["capabilities"] = caps_json(&host_caps());
        c["process"]["noNewPrivileges"] = json!(false);
    });
    let out = t.run(&b, "esc");
    let text = &out.stdout;
    let refused = text.lines().filter(|l| l.starts_with("error: ")).count();
    assert_eq!(refused, 6, "not every write was refused:\n{out:?}");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host_name,
        "the host's hostname changed"
    );
    assert_eq!(std::fs::read(&bins().runtime).unwrap().len(), host_runtime);
    // Only the container's own processes: sh, the multitool's children, ls.
    let procs: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("procs="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no process count:\n{out:?}"));
    assert!(procs <= 5, "sees {procs} processes:\n{out:?}");
    assert!(
        !text.contains("eth0"),
        "a network device besides lo:\n{out:?}"
    );
    assert!(text.contains(" lo"), "no lo:\n{out:?}");
    assert!(
        text.contains("/proc/self/cwd -> /"),
        "cwd is not inside:\n{out:?}"
    );
}
