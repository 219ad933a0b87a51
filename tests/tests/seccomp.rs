//! The workload's seccomp filter, sysctls, oomScoreAdj and ioPriority, and
//! the OCI hooks in their order with the state on stdin.

mod common;

use common::*;
use std::fs;
use std::path::Path;

fn podman_seccomp() -> Value {
    let text = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/podman-run-config.json"),
    )
    .unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["linux"]["seccomp"].clone()
}

#[test]
fn seccomp_errno_rule_makes_mkdir_fail() {
    let Some(t) = Test::new("seccomp_errno_rule_makes_mkdir_fail") else {
        return;
    };
    let b = t.bundle_with(
        "b",
        &["sh", "-c", "grep Seccomp: /proc/self/status; mkdir /tmp/d"],
        |c| {
            c["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "syscalls": [
                    { "names": ["mkdir", "mkdirat", "no_such_call"], "action": "SCMP_ACT_ERRNO" }
                ]
            });
        },
    );
    let out = t.run(&b, "sc");
    out.code_is(1);
    assert!(out.stdout.contains("Seccomp:\t2"), "no filter: {out:?}");
    assert!(
        out.stderr.contains("Operation not permitted"),
        "mkdir was not refused: {out:?}"
    );
}

#[test]
fn podman_profile_lets_busybox_run() {
    let Some(t) = Test::new("podman_profile_lets_busybox_run") else {
        return;
    };
    // Podman sets no noNewPrivileges: the filter then goes on before the
    // capability changes, and its rules must allow them.
    let b = t.bundle_with(
        "b",
        &[
            "sh",
            "-c",
            "mkdir /tmp/d && ls / > /dev/null && grep Seccomp: /proc/self/status && echo fine",
        ],
        |c| {
            c["linux"]["seccomp"] = podman_seccomp();
            c["process"]["noNewPrivileges"] = json!(false);
            c["process"]["user"] = json!({ "uid": 1000, "gid": 1000 });
        },
    );
    let out = t.run(&b, "pod");
    out.ok();
    assert_eq!(out.stdout_lines(), ["Seccomp:\t2", "fine"], "{out:?}");
}

#[test]
fn sysctls_inside_and_host_ones_refused() {
    let Some(t) = Test::new("sysctls_inside_and_host_ones_refused") else {
        return;
    };
    let host_forward = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let host_shmmax = fs::read_to_string("/proc/sys/kernel/shmmax").unwrap();
    let want_forward = if host_forward.trim() == "1" { "0" } else { "1" };
    let b = t.bundle_with(
        "b",
        &[
            "cat",
            "/proc/sys/net/ipv4/ip_forward",
            "/proc/sys/kernel/shmmax",
            "/proc/sys/net/ipv4/ping_group_range",
        ],
        |c| {
            c["linux"]["sysctl"] = json!({
                "net.ipv4.ip_forward": want_forward,
                "kernel.shmmax": "123456789",
                "net.ipv4.ping_group_range": "0 0"
            });
        },
    );
    let out = t.run(&b, "sys");
    out.ok();
    let lines = out.stdout_lines();
    assert_eq!(lines[0], want_forward, "{out:?}");
    assert_eq!(lines[1], "123456789", "{out:?}");
    assert_eq!(lines[2].split_whitespace().collect::<Vec<_>>(), ["0", "0"]);
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_forward
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/shmmax").unwrap(),
        host_shmmax
    );

    let b = t.bundle_with("b2", &["true"], |c| {
        c["linux"]["sysctl"] = json!({ "kernel.pid_max": "100000" });
    });
    t.create(&b, "host")
        .fails_with("host", &["kernel.pid_max", "not namespaced"]);
    let b = t.bundle_with("b3", &["true"], |c| {
        c["linux"]["sysctl"] = json!({ "net.ipv4.ip_forward": "1" });
        c["linux"]["namespaces"] =
            json!([{ "type": "pid" }, { "type": "mount" }, { "type": "uts" }]);
    });
    t.create(&b, "nonet")
        .fails_with("nonet", &["network namespace"]);
}

#[test]
fn oom_score_adj_and_io_priority() {
    let Some(t) = Test::new("oom_score_adj_and_io_priority") else {
        return;
    };
    let b = t.bundle_with(
        "b",
        &["sh", "-c", "cat /proc/self/oom_score_adj; ionice"],
        |c| {
            c["process"]["oomScoreAdj"] = json!(500);
            c["process"]["ioPriority"] = json!({ "class": "IOPRIO_CLASS_IDLE", "priority": 0 });
        },
    );
    let out = t.run(&b, "adj");
    out.ok();
    assert_eq!(out.stdout_lines(), ["500", "idle"], "{out:?}");
}

/// A hook that appends its name to `log`'s order file and keeps its stdin.
fn hook(name: &str, dir: &str) -> Value {
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c",
                 format!("cat > {dir}/{name}.json; echo {name} >> {dir}/order; \
                          readlink /proc/self/ns/mnt > {dir}/{name}.mnt")],
        "env": ["HOOK=1"],
        "timeout": 10
    })
}

#[test]
fn hooks_run_in_order_with_the_state() {
    let Some(t) = Test::new("hooks_run_in_order_with_the_state") else {
        return;
    };
    let log = t.work.join("hooklog");
    fs::create_dir_all(&log).unwrap();
    let host = log.to_str().unwrap().to_string();
    let b = t.bundle_with("b", &["true"], |c| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "destination": "/hooklog", "type": "bind", "source": host, "options": ["rbind"] }));
        c["hooks"] = json!({
            "prestart": [hook("prestart", &host)],
            "createRuntime": [hook("createRuntime", &host)],
            "createContainer": [hook("createContainer", &host)],
            // Inside the container: its paths, its /proc.
            "startContainer": [hook("startContainer", "/hooklog")],
            "poststart": [hook("poststart", &host)],
            "poststop": [hook("poststop", &host)]
        });
        // More state than a pipe holds: each hook must still read it whole.
        c["annotations"] = json!({ "nsbox.test/big": "x".repeat(80 * 1024) });
    });
    t.create(&b, "hk").ok();
    let pid = t.state("hk")["pid"].as_i64().unwrap();
    let order = || read_lossy(&log.join("order"));
    assert_eq!(order(), "prestart\ncreateRuntime\ncreateContainer\n");
    let ctr_mnt = fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap();
    let host_mnt = fs::read_link("/proc/self/ns/mnt").unwrap();
    let mnt = |n: &str| read_lossy(&log.join(format!("{n}.mnt"))).trim().to_string();
    assert_eq!(mnt("createRuntime"), host_mnt.to_string_lossy());
    assert_eq!(mnt("createContainer"), ctr_mnt.to_string_lossy());
    let st = |n: &str| -> Value {
        let s: Value = serde_json::from_str(&read_lossy(&log.join(format!("{n}.json"))))
            .unwrap_or_else(|e| panic!("{n}'s stdin is not the state ({e})"));
        assert_eq!(
            s["annotations"]["nsbox.test/big"].as_str().map(str::len),
            Some(80 * 1024)
        );
        s
    };
    for n in ["prestart", "createRuntime", "createContainer"] {
        let s = st(n);
        assert_eq!(s["id"], "hk", "{n}: {s}");
        assert_eq!(s["pid"], pid, "{n}: {s}");
        assert_eq!(s["status"], "created", "{n}: {s}");
    }

    t.rt(&["start", "hk"]).ok();
    t.wait_status("hk", "stopped");
    assert_eq!(
        order(),
        "prestart\ncreateRuntime\ncreateContainer\nstartContainer\npoststart\n"
    );
    assert_eq!(mnt("startContainer"), ctr_mnt.to_string_lossy());
    assert_eq!(st("startContainer")["pid"], pid);
    assert_eq!(st("startContainer")["status"], "created");
    assert_eq!(st("poststart")["status"], "running");
    t.rt(&["delete", "hk"]).ok();
    assert!(order().ends_with("poststart\npoststop\n"), "{}", order());
    assert_eq!(st("poststop")["status"], "stopped");
    assert_eq!(st("poststop")["pid"], 0);

    // `run`, where tiny-init starts the workload without waiting for a
    // Start: the same hooks, in the same order.
    fs::write(log.join("order"), "").unwrap();
    t.rt(&["run", "-b", b.path(), "hk2"]).ok();
    assert_eq!(
        order(),
        "prestart\ncreateRuntime\ncreateContainer\nstartContainer\npoststart\npoststop\n"
    );
}

/// Two hooks at every point, each appending its name to one file (the
/// startContainer ones through a bind of it): each point's hooks in their
/// listed order, the points in the lifecycle's order (youki's `hooks`).
#[test]
fn the_hooks_of_each_point_run_in_their_listed_order() {
    let Some(t) = Test::new("hooks_listed_order") else {
        return;
    };
    let log = t.work.join("order");
    fs::create_dir_all(&log).unwrap();
    let host = log.to_str().unwrap().to_string();
    let append = |name: &str, dir: &str| json!({ "path": "/bin/sh", "args": ["sh", "-c", format!("echo {name} >> {dir}/log")] });
    let b = t.bundle_with("b", &["true"], |c| {
        c["mounts"].as_array_mut().unwrap().push(
            json!({ "destination": "/hooklog", "type": "bind", "source": host, "options": ["rbind"] }),
        );
        let mut hooks = serde_json::Map::new();
        for point in [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop",
        ] {
            let dir = if point == "startContainer" { "/hooklog" } else { &host };
            hooks.insert(
                point.into(),
                json!([append(&format!("{point}1"), dir), append(&format!("{point}2"), dir)]),
            );
        }
        c["hooks"] = Value::Object(hooks);
    });
    t.create(&b, "ord").ok();
    t.rt(&["start", "ord"]).ok();
    t.wait_status("ord", "stopped");
    t.rt(&["delete", "ord"]).ok();
    assert_eq!(
        read_lossy(&log.join("log")),
        "prestart1\nprestart2\ncreateRuntime1\ncreateRuntime2\ncreateContainer1\n\
         createContainer2\nstartContainer1\nstartContainer2\npoststart1\npoststart2\n\
         poststop1\npoststop2\n"
    );
}

/// A startContainer hook without `env` has the container process's
/// environment; one with `env`, exactly that (youki's
/// start_container_env tests: the container runs only if the check holds).
#[test]
fn a_start_container_hook_gets_the_process_environment() {
    let Some(t) = Test::new("start_container_hook_env") else {
        return;
    };
    for (n, check, env) in [
        (0, r#"test "$ONE" = two && test "$FOO" = bar"#, None),
        (
            1,
            r#"test "$HOOK_VAR" = hook_value && test -z "$ONE""#,
            Some(json!(["HOOK_VAR=hook_value"])),
        ),
    ] {
        let b = t.bundle_with(&format!("b{n}"), &[MT, "sleep", "30"], |c| {
            c["process"]["env"]
                .as_array_mut()
                .unwrap()
                .extend([json!("ONE=two"), json!("FOO=bar")]);
            let mut hook = json!({ "path": "/bin/sh", "args": ["sh", "-c", check] });
            if let Some(env) = env {
                hook["env"] = env;
            }
            c["hooks"] = json!({ "startContainer": [hook] });
        });
        let id = format!("env{n}");
        t.create(&b, &id).ok();
        t.rt(&["start", &id]).ok();
        let state = t.state(&id);
        assert_eq!(state["status"], "running", "{check}: {state}");
        t.rt(&["delete", "--force", &id]).ok();
    }
}

#[test]
fn a_failing_hook_fails_create_and_rolls_back() {
    let Some(t) = Test::new("a_failing_hook_fails_create_and_rolls_back") else {
        return;
    };
    let b = t.bundle_with("b", &["true"], |c| {
        c["hooks"] = json!({ "createRuntime": [{
            "path": "/bin/sh", "args": ["sh", "-c", "echo no network for you >&2; exit 3"]
        }] });
    });
    t.create(&b, "fail").fails_with(
        "fail",
        &["createRuntime", "exited with 3", "no network for you"],
    );

    let b = t.bundle_with("b2", &["true"], |c| {
        c["hooks"] = json!({ "createContainer": [{
            "path": "/bin/sleep", "args": ["sleep", "10"], "timeout": 1
        }] });
    });
    t.create(&b, "slow")
        .fails_with("slow", &["createContainer", "timed out"]);

    // A failing startContainer hook fails `start`.
    let b = t.bundle_with("b3", &[MT, "sleep", "10"], |c| {
        c["hooks"] = json!({ "startContainer": [{ "path": "/bin/false" }] });
    });
    t.create(&b, "st").ok();
    t.rt(&["start", "st"]).fails_with("st", &["startContainer"]);
    t.wait_status("st", "stopped");
    t.rt(&["delete", "st"]).ok();
    // The same through `run`, where tiny-init starts unasked: the step is
    // named, and nothing is left (the harness checks).
    t.rt(&["run", "-b", b.path(), "st2"])
        .fails_with("st2", &["startContainer"]);

    // A failing poststart hook is a warning; the container runs on.
    let b = t.bundle_with("b4", &[MT, "sleep", "10"], |c| {
        c["hooks"] = json!({ "poststart": [{ "path": "/bin/false" }] });
    });
    t.create(&b, "ps").ok();
    let out = t.rt(&["start", "ps"]);
    out.ok();
    assert!(out.stderr.contains("poststart"), "{out:?}");
    assert_eq!(t.status("ps"), "running");
    t.rt(&["delete", "--force", "ps"]).ok();
}
