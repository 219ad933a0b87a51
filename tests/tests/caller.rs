//! The caller's-shim mode: under conmon or containerd's shim, tiny-init and
//! `exec -d` processes become the caller's children, so that it reaps them
//! and sees their exact exit codes. The multitool's `reaper` plays the
//! caller: a child subreaper running `runtime` with a parent-death signal.

mod common;

use common::*;
use std::fs;

fn reaper_cmd(t: &Test, pid_file: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(&bins().multitool);
    cmd.arg("reaper")
        .arg(pid_file)
        .arg("--")
        .arg(&bins().runtime)
        .arg("--root")
        .arg(&t.root)
        .args(args)
        .stdin(std::process::Stdio::null());
    cmd
}

#[test]
fn create_under_a_caller_hands_tiny_init_to_it() {
    let Some(t) = Test::new("caller_create") else {
        return;
    };
    let b = t.bundle("b", &["sh", "-c", "read x < /dev/null; exit 42"]);
    let pid_file = t.work.join("init.pid");
    let mut cmd = reaper_cmd(
        &t,
        &pid_file,
        &[
            "create",
            "--pid-file",
            pid_file.to_str().unwrap(),
            "-b",
            b.path(),
            "c",
        ],
    );
    let (o, e) = (t.work.join("reaper.out"), t.work.join("reaper.err"));
    let reaper = t.spawn_to(&mut cmd, &o, &e);
    let text = wait_for_text(&o, "parent of");
    let init: i32 = fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert_eq!(
        text.trim(),
        format!("parent of {init} is {}", reaper.pid()),
        "tiny-init is the caller's child once create has returned"
    );
    t.track_state("c");
    t.rt(&["start", "c"]).ok();
    let out = reaper.wait(TIMEOUT);
    assert!(out.stdout.contains(&format!("reaped {init} 42")), "{out:?}");
    let st = t.stopped_with_code("c");
    assert_eq!(st["exitCode"], 42);
    t.rt(&["delete", "c"]).ok();
}

#[test]
fn exec_detached_under_a_caller_is_its_child() {
    let Some(t) = Test::new("caller_exec") else {
        return;
    };
    let b = t.bundle("b", &["sh", "-c", "echo ready; exec sleep 60"]);
    t.run_detached(&b, "c").ok();
    wait_for_text(&t.ctr_stdout("c"), "ready");
    let pid_file = t.work.join("exec.pid");
    let mut cmd = reaper_cmd(
        &t,
        &pid_file,
        &[
            "exec",
            "-d",
            "--pid-file",
            pid_file.to_str().unwrap(),
            "c",
            "sh",
            "-c",
            "exit 7",
        ],
    );
    let (o, e) = (t.work.join("reaper.out"), t.work.join("reaper.err"));
    let reaper = t.spawn_to(&mut cmd, &o, &e);
    let reaper_pid = reaper.pid();
    let out = reaper.wait(TIMEOUT);
    let pid: i32 = fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert!(
        out.stdout
            .contains(&format!("parent of {pid} is {reaper_pid}")),
        "{out:?}"
    );
    assert!(out.stdout.contains(&format!("reaped {pid} 7")), "{out:?}");
    // A foreground exec in this mode ends with the process's code too.
    t.rt(&["--shim-mode", "caller", "exec", "c", "sh", "-c", "exit 3"])
        .code_is(3);
    t.rt(&["--shim-mode", "caller", "exec", "c", "/nope"])
        .code_is(127);
    // It joined the container's cgroup (by moving itself, before the
    // container's mount namespace): it sees the same cgroups as a process
    // tiny-init starts.
    let theirs = t.rt(&[
        "--shim-mode",
        "own",
        "exec",
        "c",
        "cat",
        "/proc/self/cgroup",
    ]);
    theirs.ok();
    let ours = t.rt(&[
        "--shim-mode",
        "caller",
        "exec",
        "c",
        "cat",
        "/proc/self/cgroup",
    ]);
    ours.ok();
    let line = if is_v2() { "0::/" } else { ":pids:" };
    assert!(theirs.stdout.contains(line), "{theirs:?}");
    assert_eq!(ours.stdout, theirs.stdout);
    t.rt(&["delete", "-f", "c"]).ok();
}

#[test]
fn own_mode_can_be_forced_under_a_caller() {
    let Some(t) = Test::new("caller_forced_own") else {
        return;
    };
    let b = t.bundle("b", &["sh", "-c", "echo ready; exec sleep 60"]);
    let pid_file = t.work.join("init.pid");
    // The reaper waits for the pid in the file; with the shim as parent it
    // never sees it end, so it is ended by pid below.
    let mut cmd = reaper_cmd(
        &t,
        &pid_file,
        &[
            "--shim-mode",
            "own",
            "create",
            "--pid-file",
            pid_file.to_str().unwrap(),
            "-b",
            b.path(),
            "c",
        ],
    );
    let (o, e) = (t.work.join("reaper.out"), t.work.join("reaper.err"));
    let reaper = t.spawn_to(&mut cmd, &o, &e);
    wait_for_text(&o, "parent of");
    t.track_state("c");
    let init: i32 = fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert_eq!(comm(ppid(init).unwrap()).as_deref(), Some("shim"));
    t.rt(&["delete", "-f", "c"]).ok();
    // SAFETY: ending the reaper we started, by pid.
    unsafe { libc::kill(reaper.pid(), libc::SIGKILL) };
    let _ = reaper.try_wait(TIMEOUT);
}
