//! `runtime exec`: a process beside the workload, in all its namespaces.

mod common;

use common::*;
use std::fs;

fn running(t: &Test) -> Bundle {
    let b = t.bundle("b", &["sh", "-c", "echo ready; exec sleep 60"]);
    t.run_detached(&b, "c").ok();
    wait_for_text(&t.ctr_stdout("c"), "ready");
    b
}

#[test]
fn exec_runs_in_the_container_and_passes_the_exit_code() {
    let Some(t) = Test::new("exec_code") else {
        return;
    };
    running(&t);
    let out = t.rt(&[
        "exec",
        "c",
        "sh",
        "-c",
        "hostname; cat /proc/1/comm; exit 42",
    ]);
    out.code_is(42);
    assert_eq!(out.stdout_lines(), ["nsbox-test", "tiny-init"], "{out:?}");
    // Its namespaces are the workload's.
    let pid = t.state("c")["pid"].as_i64().unwrap() as i32;
    let out = t.rt(&[
        "exec", "c", MT, "print-ns", "mnt", "pid", "uts", "ipc", "net",
    ]);
    out.ok();
    assert_eq!(out.stdout_lines().len(), 5, "{out:?}");
    for line in out.stdout_lines() {
        let mut f = line.split_whitespace();
        let (name, inode) = (f.next().unwrap(), f.next().unwrap());
        let init = fs::read_link(format!("/proc/{pid}/ns/{name}")).unwrap();
        assert!(
            init.to_string_lossy().contains(inode),
            "{name}: exec's {inode} vs tiny-init's {}",
            init.display()
        );
    }
    t.rt(&["delete", "-f", "c"]).ok();
}

#[test]
fn exec_detached_is_a_child_of_tiny_init_and_its_pid_file_names_it() {
    let Some(t) = Test::new("exec_detach") else {
        return;
    };
    running(&t);
    let pid_file = t.work.join("exec.pid");
    t.rt(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "c",
        "sleep",
        "50",
    ])
    .ok();
    let pid: i32 = fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let init = t.state("c")["pid"].as_i64().unwrap() as i32;
    assert_eq!(comm(pid).as_deref(), Some("sleep"));
    assert_eq!(
        ppid(pid),
        Some(init),
        "the exec'd process hangs off tiny-init"
    );
    t.rt(&["delete", "-f", "c"]).ok();
    wait_for("the exec'd process to end", TIMEOUT, || {
        (!alive_pid(pid)).then_some(())
    });
}

fn alive_pid(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|(state, _, _)| state != "Z")
}

#[test]
fn exec_with_a_process_json_and_its_errors() {
    let Some(t) = Test::new("exec_process") else {
        return;
    };
    running(&t);
    let p = t.work.join("process.json");
    fs::write(
        &p,
        serde_json::json!({
            "args": ["sh", "-c", "id -u; echo $FOO; pwd"],
            "env": ["PATH=/bin", "FOO=bar"],
            "cwd": "/etc",
            "user": { "uid": 1000, "gid": 1000 }
        })
        .to_string(),
    )
    .unwrap();
    let out = t.rt(&["exec", "--process", p.to_str().unwrap(), "c"]);
    out.ok();
    assert_eq!(out.stdout_lines(), ["1000", "bar", "/etc"], "{out:?}");

    t.rt(&["exec", "c", "/nope"]).fails_with("c", &["/nope"]);
    t.rt(&["exec", "c", "/nope"]).code_is(127);
    t.rt(&["exec", "c", "/etc/passwd"]).code_is(126);
    t.rt(&["exec", "nosuch", "true"])
        .fails_with("nosuch", &["does not exist"]);
    t.rt(&["delete", "-f", "c"]).ok();
    let b = t.bundle("stopped", &["true"]);
    t.create(&b, "s").ok();
    t.rt(&["exec", "s", "true"]).fails_with("s", &["created"]);
    t.rt(&["delete", "s"]).ok();
}

/// runc exec's flags: --cap (bounding, effective and permitted), -g,
/// --no-new-privs, as /proc/self/status shows them inside; --apparmor
/// refused on a host without AppArmor.
#[test]
fn exec_flags_change_the_process_as_runc_does() {
    let Some(t) = Test::new("exec_flags") else {
        return;
    };
    let b = t.bundle_with("b", &[MT, "sleep", "30"], |c| {
        c["process"]["noNewPrivileges"] = json!(false);
    });
    t.run_detached(&b, "flags").ok();
    let status = |extra: &[&str]| {
        let mut args = vec!["exec"];
        args.extend(extra);
        args.extend([
            "flags",
            MT,
            "status",
            "CapBnd",
            "CapEff",
            "Groups",
            "NoNewPrivs",
        ]);
        let out = t.rt(&args);
        out.ok();
        out.stdout.clone()
    };
    let plain = status(&[]);
    assert!(plain.contains("CapBnd:\t0000000020000420"), "{plain}");
    assert!(plain.contains("NoNewPrivs:\t0"), "{plain}");
    let with = status(&[
        "--cap",
        "CAP_SYS_ADMIN",
        "-c",
        "net_raw",
        "-g",
        "50,100",
        "--no-new-privs",
    ]);
    // CAP_SYS_ADMIN is 21, CAP_NET_RAW 13.
    assert!(with.contains("CapBnd:\t0000000020202420"), "{with}");
    assert!(with.contains("CapEff:\t0000000020202420"), "{with}");
    assert!(with.contains("Groups:\t50 100"), "{with}");
    assert!(with.contains("NoNewPrivs:\t1"), "{with}");
    let apparmor = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y");
    if !apparmor {
        t.rt(&["exec", "--apparmor", "docker-default", "flags", "true"])
            .fails_with("flags", &["--apparmor \"docker-default\"", "no AppArmor"]);
    }
    t.rt(&["delete", "-f", "flags"]).ok();
}

/// `exec --ignore-paused` in a paused container: the process runs once
/// the container is resumed; without it, the exec is refused.
#[test]
fn exec_ignore_paused_runs_once_resumed() {
    let Some(t) = Test::new("exec_ignore_paused") else {
        return;
    };
    let b = t.bundle("b", &[MT, "sleep", "30"]);
    t.run_detached(&b, "paused").ok();
    t.rt(&["pause", "paused"]).ok();
    t.rt(&["exec", "paused", "echo", "hi"])
        .fails_with("paused", &["cannot exec in a paused container"]);
    for mode in ["own", "caller"] {
        let exec = t.spawn(&[
            "--shim-mode",
            mode,
            "exec",
            "--ignore-paused",
            "paused",
            "echo",
            "ran",
        ]);
        std::thread::sleep(std::time::Duration::from_millis(500));
        t.rt(&["resume", "paused"]).ok();
        let out = exec.wait(TIMEOUT);
        assert_eq!(out.ok().stdout, "ran\n", "{mode}: {out:?}");
        t.rt(&["pause", "paused"]).ok();
    }
    t.rt(&["delete", "-f", "paused"]).ok();
}

/// `exec --cgroup [CONTROLLER:]PATH` (caller's-shim mode): the process
/// runs in an existing sub-cgroup of the container's.
#[test]
fn exec_in_a_sub_cgroup() {
    let Some(t) = Test::new("exec_sub_cgroup") else {
        return;
    };
    let b = t.bundle("b", &[MT, "sleep", "30"]);
    t.run_detached(&b, "subcg").ok();
    let rel = format!("nsbox@{}@subcg", t.cgroup_scope());
    let sub = cgroup_dir("pids", &rel).join("sub");
    std::fs::create_dir(&sub).unwrap();
    let out = t.rt(&[
        "--shim-mode",
        "caller",
        "exec",
        "--cgroup",
        "pids:sub",
        "subcg",
        "cat",
        "/proc/self/cgroup",
    ]);
    let _ = std::fs::remove_dir(&sub);
    let line = out
        .ok()
        .stdout
        .lines()
        .find(|l| l.contains(":pids:"))
        .unwrap_or("")
        .to_string();
    assert!(line.ends_with(&format!("{rel}/sub")), "{out:?}");
    t.rt(&["exec", "--cgroup", "pids:sub", "subcg", "true"])
        .fails_with("subcg", &["--cgroup", "caller's-shim mode only"]);
    t.rt(&["delete", "-f", "subcg"]).ok();
}
