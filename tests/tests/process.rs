//! config.json's `process`: user and groups, umask, cwd, env, rlimits,
//! capabilities, noNewPrivileges.

mod common;

use common::*;

/// The value part of a /proc/self/status line ("Key:\tvalue").
fn field<'a>(out: &'a Out, key: &str) -> &'a str {
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} line:\n{out:?}"))
}

#[test]
fn user_group_and_additional_gids() {
    let Some(t) = Test::new("user_group_and_additional_gids") else {
        return;
    };
    let b = t.bundle_with("b", &["sh", "-c", "id -u; id -g; id -un"], |c| {
        c["process"]["user"] = json!({ "uid": 1000, "gid": 1000, "additionalGids": [50, 100] });
    });
    let out = t.run(&b, "ids");
    out.ok();
    assert_eq!(out.stdout_lines(), ["1000", "1000", "app"], "{out:?}");

    let b = t.bundle_with("b2", &[MT, "status", "Uid", "Gid", "Groups"], |c| {
        c["process"]["user"] = json!({ "uid": 1000, "gid": 1000, "additionalGids": [50, 100] });
    });
    let out = t.run(&b, "status");
    out.ok();
    let ids = |k| field(&out, k).split_whitespace().collect::<Vec<_>>();
    assert_eq!(
        ids("Uid"),
        ["1000"; 4],
        "real, effective, saved, fs uid:\n{out:?}"
    );
    assert_eq!(
        ids("Gid"),
        ["1000"; 4],
        "real, effective, saved, fs gid:\n{out:?}"
    );
    let mut groups = ids("Groups");
    groups.sort_unstable();
    assert_eq!(groups, ["100", "50"], "supplementary groups:\n{out:?}");
}

#[test]
fn root_user_has_no_stray_supplementary_groups() {
    let Some(t) = Test::new("root_user_has_no_stray_supplementary_groups") else {
        return;
    };
    let b = t.bundle("b", &[MT, "status", "Uid", "Gid", "Groups"]);
    let out = t.run(&b, "root");
    out.ok();
    assert_eq!(
        field(&out, "Uid").split_whitespace().collect::<Vec<_>>(),
        ["0"; 4]
    );
    assert_eq!(
        field(&out, "Groups"),
        "",
        "root inherited the caller's groups:\n{out:?}"
    );
}

#[test]
fn umask() {
    let Some(t) = Test::new("umask") else {
        return;
    };
    let b = t.bundle_with("b", &["sh", "-c", "umask"], |c| {
        c["process"]["user"]["umask"] = json!(0o027);
    });
    let out = t.run(&b, "umask");
    out.ok();
    assert_eq!(out.stdout.trim(), "0027", "{out:?}");

    // Without one, the runc default.
    let b = t.bundle("b2", &["sh", "-c", "umask"]);
    let out = t.run(&b, "default");
    out.ok();
    assert_eq!(out.stdout.trim(), "0022", "{out:?}");
}

#[test]
fn cwd() {
    let Some(t) = Test::new("cwd") else {
        return;
    };
    let b = t.bundle_with("b", &["pwd"], |c| {
        c["process"]["cwd"] = json!("/etc");
    });
    let out = t.run(&b, "cwd");
    out.ok();
    assert_eq!(out.stdout.trim(), "/etc", "{out:?}");
}

#[test]
fn env_is_exactly_the_configs() {
    let Some(t) = Test::new("env_is_exactly_the_configs") else {
        return;
    };
    let b = t.bundle_with("b", &["env"], |c| {
        c["process"]["env"] = json!(["PATH=/bin:/usr/bin", "FOO=bar baz", "EMPTY="]);
    });
    let mut cmd = t.command(&["run", "-b", b.path(), "env"]);
    cmd.env("NSBOX_TEST_HOST_ONLY", "leaked");
    let out = t.rt_cmd(cmd);
    out.ok();
    let lines = out.stdout_lines();
    for want in ["PATH=/bin:/usr/bin", "FOO=bar baz", "EMPTY="] {
        assert!(lines.contains(&want), "{want:?} missing:\n{out:?}");
    }
    assert!(
        !out.stdout.contains("NSBOX_TEST_HOST_ONLY"),
        "the runtime's environment leaked into the container:\n{out:?}"
    );
}

#[test]
fn rlimit_nofile() {
    let Some(t) = Test::new("rlimit_nofile") else {
        return;
    };
    let b = t.bundle_with(
        "b",
        &[
            "sh",
            "-c",
            "ulimit -n; grep 'Max open files' /proc/self/limits",
        ],
        |c| {
            c["process"]["rlimits"] =
                json!([{ "type": "RLIMIT_NOFILE", "soft": 123, "hard": 456 }]);
        },
    );
    let out = t.run(&b, "nofile");
    out.ok();
    let lines = out.stdout_lines();
    assert_eq!(lines.first().copied(), Some("123"), "{out:?}");
    let limits: Vec<&str> = lines
        .get(1)
        .unwrap_or_else(|| panic!("no limits line:\n{out:?}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        limits,
        ["Max", "open", "files", "123", "456", "files"],
        "{out:?}"
    );
}

#[test]
fn capabilities_reduced_set() {
    let Some(t) = Test::new("capabilities_reduced_set") else {
        return;
    };
    let fields = [
        MT, "status", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
    ];
    let b = t.bundle_with("b", &fields, |c| {
        c["process"]["capabilities"] = caps_json(&["CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    });
    let out = t.run(&b, "reduced");
    out.ok();
    // CAP_KILL = 5, CAP_NET_BIND_SERVICE = 10.
    for k in ["CapPrm", "CapEff", "CapBnd"] {
        assert_eq!(field(&out, k), "0000000000000420", "{k}:\n{out:?}");
    }
    assert_eq!(field(&out, "CapAmb"), "0000000000000000", "{out:?}");

    let b = t.bundle("b2", &fields);
    let out2 = t.run(&b, "default");
    out2.ok();
    // + CAP_AUDIT_WRITE = 29.
    assert_eq!(field(&out2, "CapEff"), "0000000020000420", "{out2:?}");

    let b = t.bundle_with("b3", &fields, |c| {
        c["process"]["capabilities"] = caps_json(&host_caps());
    });
    let out3 = t.run(&b, "all");
    out3.ok();
    assert_ne!(field(&out3, "CapEff"), field(&out, "CapEff"), "{out3:?}");
    // Everything the host's bounding set allows.
    assert_eq!(
        field(&out3, "CapEff"),
        own_status_field("CapBnd"),
        "{out3:?}"
    );
}

#[test]
fn capabilities_for_a_non_root_user() {
    let Some(t) = Test::new("capabilities_for_a_non_root_user") else {
        return;
    };
    let fields = [MT, "status", "Uid", "CapPrm", "CapEff", "CapBnd", "CapAmb"];
    let two = ["CAP_KILL", "CAP_NET_BIND_SERVICE"];
    // Without ambient capabilities, exec as a non-root uid clears the
    // permitted and effective sets (as with runc and Docker); the bounding
    // set stays as configured.
    let b = t.bundle_with("b", &fields, |c| {
        c["process"]["user"] = json!({ "uid": 1000, "gid": 1000 });
        c["process"]["capabilities"] = caps_json(&two);
    });
    let out = t.run(&b, "app");
    out.ok();
    assert_eq!(field(&out, "Uid").split_whitespace().next(), Some("1000"));
    assert_eq!(field(&out, "CapEff"), "0000000000000000", "{out:?}");
    assert_eq!(field(&out, "CapPrm"), "0000000000000000", "{out:?}");
    assert_eq!(field(&out, "CapBnd"), "0000000000000420", "{out:?}");

    // With them (and inheritable, which ambient needs) they survive exec.
    let b = t.bundle_with("b2", &fields, |c| {
        c["process"]["user"] = json!({ "uid": 1000, "gid": 1000 });
        c["process"]["capabilities"] = json!({
            "bounding": two, "effective": two, "permitted": two,
            "inheritable": two, "ambient": two
        });
    });
    let out = t.run(&b, "ambient");
    out.ok();
    for k in ["CapEff", "CapPrm", "CapAmb", "CapBnd"] {
        assert_eq!(field(&out, k), "0000000000000420", "{k}:\n{out:?}");
    }
}

#[test]
fn no_new_privileges() {
    let Some(t) = Test::new("no_new_privileges") else {
        return;
    };
    let b = t.bundle("b", &[MT, "status", "NoNewPrivs"]);
    let out = t.run(&b, "nnp");
    out.ok();
    assert_eq!(field(&out, "NoNewPrivs"), "1", "{out:?}");

    let b = t.bundle_with("b2", &[MT, "status", "NoNewPrivs"], |c| {
        c["process"]["noNewPrivileges"] = json!(false);
    });
    let out = t.run(&b, "nonnp");
    out.ok();
    assert_eq!(field(&out, "NoNewPrivs"), "0", "{out:?}");
}

#[test]
fn workload_gets_default_signal_mask_and_dispositions() {
    let Some(t) = Test::new("workload_gets_default_signal_mask_and_dispositions") else {
        return;
    };
    // busybox grep, not the multitool: Rust's std ignores SIGPIPE in every
    // Rust program, so the multitool would report its own SIGPIPE.
    let grep = ["grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"];
    // What any child of this test inherits (e.g. glibc's posix_spawn leaves
    // its internal signals 32 and 33 ignored, and a shell may have ignored
    // SIGINT/SIGQUIT): the runtime may pass that on, but add nothing.
    let control = std::process::Command::new("/usr/bin/busybox")
        .args(grep)
        .output()
        .unwrap();
    let control = String::from_utf8_lossy(&control.stdout).into_owned();
    let mask = |text: &str, key: &str| {
        let v = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}:")))
            .unwrap_or_else(|| panic!("no {key} in {text:?}"));
        u64::from_str_radix(v.trim(), 16).unwrap()
    };
    let inherited = mask(&control, "SigIgn");

    let b = t.bundle("b", &grep);
    let out = t.run(&b, "mask");
    out.ok();
    assert_eq!(mask(&out.stdout, "SigBlk"), 0, "blocked signals:\n{out:?}");
    let ignored = mask(&out.stdout, "SigIgn");
    assert_eq!(
        ignored & !inherited,
        0,
        "the workload ignores signals ({ignored:#x}) beyond what the runtime's caller \
         ignored ({inherited:#x}); SIGPIPE is bit 12 (0x1000):\n{out:?}"
    );
}

/// runc's own `runc spec` lists ambient capabilities without inheritable
/// ones (the kernel refuses to raise those); runc and crun run it, and so
/// must nsbox: the ambient ones are raised, as inheritable too.
#[test]
fn ambient_capabilities_without_inheritable_ones() {
    let Some(t) = Test::new("ambient_alone") else {
        return;
    };
    let b = t.bundle_with("b", &["grep", "CapAmb", "/proc/self/status"], |c| {
        let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
        c["process"]["capabilities"] = serde_json::json!({
            "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps
        });
    });
    let out = t.run(&b, "amb");
    out.ok();
    assert_eq!(out.stdout_lines(), ["CapAmb:\t0000000020000420"], "{out:?}");
}
