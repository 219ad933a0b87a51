//! create / start / state / kill / delete, list and ps, and logging.

mod common;

use common::*;
use std::fs;
use std::time::Duration;

#[test]
fn state_transitions() {
    let Some(t) = Test::new("state_transitions") else {
        return;
    };
    let b = t.bundle("b", &[MT, "sleep", "3"]);
    let pid_file = t.work.join("init.pid");
    let out = t.exec_to(
        t.command(&[
            "create",
            "--bundle",
            b.path(),
            "--pid-file",
            pid_file.to_str().unwrap(),
            "st",
        ]),
        &t.ctr_stdout("st"),
        &t.ctr_stderr("st"),
        TIMEOUT,
    );
    out.ok();

    let s = t.state("st");
    assert_eq!(s["status"], "created", "{s}");
    assert_eq!(s["id"], "st", "{s}");
    assert!(s["ociVersion"].is_string(), "no ociVersion: {s}");
    assert!(s["created"].is_string(), "no created: {s}");
    let bundle = fs::canonicalize(&b.dir).unwrap();
    assert_eq!(
        s["bundle"].as_str().map(|p| fs::canonicalize(p).ok()),
        Some(Some(bundle)),
        "bundle: {s}"
    );
    let pid = s["pid"].as_i64().unwrap_or(0) as i32;
    assert!(pid > 0, "created container without a pid: {s}");
    assert!(
        proc_stat(pid).is_some(),
        "state pid {pid} does not exist: {s}"
    );
    let from_file: i32 = fs::read_to_string(&pid_file)
        .unwrap_or_else(|e| panic!("--pid-file {}: {e}", pid_file.display()))
        .trim()
        .parse()
        .expect("pid file holds a number");
    assert_eq!(from_file, pid, "--pid-file and state disagree");

    t.rt(&["start", "st"]).ok();
    let s = t.state("st");
    assert_eq!(s["status"], "running", "{s}");
    assert_eq!(
        s["pid"].as_i64(),
        Some(pid as i64),
        "the init pid changed: {s}"
    );

    let s = t.wait_status("st", "stopped");
    assert_eq!(
        s["pid"].as_i64(),
        Some(0),
        "a stopped container has pid 0: {s}"
    );

    // start of a stopped container is refused.
    t.rt(&["start", "st"])
        .fails_with("st", &["cannot start a stopped container"]);

    t.rt(&["delete", "st"]).ok();
    t.rt(&["state", "st"])
        .fails_with("st", &["container does not exist"]);
}

#[test]
fn created_container_does_not_run_the_workload_before_start() {
    let Some(t) = Test::new("created_container_does_not_run_the_workload_before_start") else {
        return;
    };
    let b = t.bundle("b", &["sh", "-c", "echo started"]);
    t.create(&b, "lazy").ok();
    let init = t.state("lazy")["pid"].as_i64().unwrap() as i32;
    // The test is about something not happening: it gives a workload
    // started too early time to show.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        children(init),
        Vec::<i32>::new(),
        "tiny-init forked before start"
    );
    assert_eq!(
        read_lossy(&t.ctr_stdout("lazy")),
        "",
        "the workload ran before start"
    );
    assert_eq!(t.status("lazy"), "created");
    t.rt(&["start", "lazy"]).ok();
    wait_for_text(&t.ctr_stdout("lazy"), "started");
    t.wait_status("lazy", "stopped");
    t.rt(&["delete", "lazy"]).ok();
}

#[test]
fn delete_of_a_created_container() {
    let Some(t) = Test::new("delete_of_a_created_container") else {
        return;
    };
    let b = t.bundle("b", &["true"]);
    t.create(&b, "c").ok();
    let pid = t.state("c")["pid"].as_i64().unwrap() as i32;
    let start = proc_stat(pid).unwrap().2;
    t.rt(&["delete", "c"]).ok();
    assert!(!alive(pid, start), "tiny-init {pid} outlived delete");
    t.rt(&["state", "c"])
        .fails_with("c", &["container does not exist"]);
}

/// runtime-spec's MUST-errors of `kill` and `delete`, each failing and
/// changing nothing, as runtime-tools' and youki's suites check them; and
/// the forced delete of a deleted container, which containerd relies on.
#[test]
fn kill_and_delete_fail_where_the_spec_says_and_change_nothing() {
    let Some(t) = Test::new("kill_delete_must_errors") else {
        return;
    };
    t.rt(&["delete", "nosuch"])
        .fails_with("nosuch", &["does not exist"]);
    t.rt(&["kill", "nosuch", "KILL"])
        .fails_with("nosuch", &["does not exist"]);
    t.rt(&["kill", "", "KILL"])
        .fails_with("", &["container ID is empty"]);
    t.rt(&["delete", ""])
        .fails_with("", &["container ID is empty"]);

    let b = t.bundle("b", &[MT, "sleep", "30"]);
    t.run_detached(&b, "up").ok();
    let pid = t.state("up")["pid"].as_i64().unwrap() as i32;
    let start = proc_stat(pid).unwrap().2;
    t.rt(&["delete", "up"])
        .fails_with("up", &["cannot delete a running container"]);
    assert_eq!(t.status("up"), "running");
    assert!(alive(pid, start), "delete of a running container killed it");
    t.rt(&["kill", "up", "KILL"]).ok();
    let st = t.stopped_with_code("up");
    t.rt(&["kill", "up", "KILL"])
        .fails_with("up", &["container not running"]);
    assert_eq!(t.state("up"), st, "kill of a stopped container changed it");
    t.rt(&["delete", "up"]).ok();
    t.rt(&["delete", "--force", "up"]).ok();
    t.rt(&["kill", "up", "KILL"])
        .fails_with("up", &["does not exist"]);
}

#[test]
fn nothing_is_left_once_delete_returns() {
    let Some(t) = Test::new("nothing_is_left_once_delete_returns") else {
        return;
    };
    let b = t.bundle("b", &[MT, "sleep", "30"]);
    t.run_detached(&b, "gone").ok();
    // The harness's leak check sees a live container...
    let live = t.leaks();
    assert!(
        live.iter().any(|l| l.starts_with("state root entry")),
        "the leak check does not see the state dir: {live:?}"
    );
    assert!(
        live.iter().any(|l| l.starts_with("process ")),
        "the leak check does not see the container's processes: {live:?}"
    );
    t.rt(&["kill", "gone", "KILL"]).ok();
    t.wait_status("gone", "stopped");
    t.rt(&["delete", "gone"]).ok();
    // ...and nothing at all the moment delete has returned.
    assert_eq!(
        t.leaks(),
        Vec::<String>::new(),
        "left after delete returned"
    );
}

/// Runs `wait-signal USR1 TERM` detached and returns the file it writes to.
fn signal_waiter(t: &Test, id: &str) -> std::path::PathBuf {
    let b = t.bundle(&format!("b-{id}"), &[MT, "wait-signal", "USR1", "TERM"]);
    t.run_detached(&b, id).ok();
    let out = t.ctr_stdout(id);
    wait_for_text(&out, "ready");
    out
}

fn count(path: &std::path::Path, line: &str) -> usize {
    read_lossy(path).lines().filter(|l| *l == line).count()
}

#[test]
fn kill_forwards_signals_to_the_workload() {
    let Some(t) = Test::new("kill_forwards_signals_to_the_workload") else {
        return;
    };
    let out = signal_waiter(&t, "sig");
    for (n, spelling) in ["USR1", "10", "SIGUSR1"].into_iter().enumerate() {
        t.rt(&["kill", "sig", spelling]).ok();
        wait_for(
            &format!("caught SIGUSR1 #{} after `kill sig {spelling}`", n + 1),
            Duration::from_secs(10),
            || (count(&out, "caught SIGUSR1") == n + 1).then_some(()),
        );
    }
    assert_eq!(t.status("sig"), "running");
    t.rt(&["kill", "sig", "TERM"]).ok();
    wait_for_text(&out, "caught SIGTERM");
    let s = t.wait_status("sig", "stopped");
    assert_eq!(s["pid"].as_i64(), Some(0), "{s}");
    assert_eq!(
        read_lossy(&out),
        "ready\ncaught SIGUSR1\ncaught SIGUSR1\ncaught SIGUSR1\ncaught SIGTERM\n"
    );
    t.rt(&["delete", "sig"]).ok();
}

#[test]
fn kill_without_signal_sends_term() {
    let Some(t) = Test::new("kill_without_signal_sends_term") else {
        return;
    };
    let out = signal_waiter(&t, "dflt");
    t.rt(&["kill", "dflt"]).ok();
    wait_for_text(&out, "caught SIGTERM");
    t.wait_status("dflt", "stopped");
    t.rt(&["delete", "dflt"]).ok();
}

#[test]
fn signalled_foreground_run_returns_workload_exit_code() {
    let Some(t) = Test::new("signalled_foreground_run_returns_workload_exit_code") else {
        return;
    };
    let b = t.bundle("b", &[MT, "wait-signal", "USR2", "--then-exit", "7"]);
    let run = t.spawn(&["run", "-b", b.path(), "fg"]);
    wait_for_text(&run.stdout, "ready");
    t.rt(&["kill", "fg", "USR2"]).ok();
    let out = run.wait(TIMEOUT);
    out.code_is(7);
    assert_eq!(out.stdout, "ready\ncaught SIGUSR2\n", "{out:?}");
}

#[test]
fn kill_term_of_a_workload_without_handler_gives_143() {
    let Some(t) = Test::new("kill_term_of_a_workload_without_handler_gives_143") else {
        return;
    };
    let b = t.bundle("b", &["sh", "-c", "echo ready; exec sleep 30"]);
    let run = t.spawn(&["run", "-b", b.path(), "term"]);
    wait_for_text(&run.stdout, "ready");
    // Until sh has exec'd sleep, which has no handler for TERM.
    let init = t.state("term")["pid"].as_i64().unwrap() as i32;
    wait_for("the workload to be sleep", Duration::from_secs(5), || {
        children(init)
            .into_iter()
            .find(|&p| comm(p).as_deref() == Some("sleep"))
    });
    t.rt(&["kill", "term", "TERM"]).ok();
    run.wait(TIMEOUT).code_is(143);
}

#[test]
fn kill_all_reaches_every_process() {
    let Some(t) = Test::new("kill_all_reaches_every_process") else {
        return;
    };
    // sh survives TERM (it has a handler); its background sleep does not
    // (handlers are reset by exec). Only if `kill --all` reaches the sleep
    // too does the second `wait` return before 30 s.
    let b = t.bundle(
        "b",
        &[
            "sh",
            "-c",
            "trap 'echo sh-got-term' TERM; sleep 30 & echo ready; wait; wait; echo all-done",
        ],
    );
    t.run_detached(&b, "all").ok();
    let out = t.ctr_stdout("all");
    wait_for_text(&out, "ready");
    t.rt(&["kill", "--all", "all", "TERM"]).ok();
    let text = wait_for_text(&out, "all-done");
    assert!(
        text.contains("sh-got-term"),
        "sh did not get TERM: {text:?}"
    );
    t.wait_status("all", "stopped");
    t.rt(&["delete", "all"]).ok();
}

#[test]
fn list_shows_containers() {
    let Some(t) = Test::new("list_shows_containers") else {
        return;
    };
    let out = t.rt(&["list", "-q"]);
    out.ok();
    assert_eq!(
        out.stdout.trim(),
        "",
        "an empty root lists nothing: {out:?}"
    );

    let b = t.bundle("b", &["true"]);
    t.create(&b, "alpha").ok();
    t.create(&b, "beta").ok();

    let table = t.rt(&["list"]);
    table.ok();
    for id in ["alpha", "beta"] {
        let row = table
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("no row for {id}:\n{table:?}"));
        assert!(
            // Docker's word, capitalised: "Created".
            row.split_whitespace()
                .any(|w| w.eq_ignore_ascii_case("created")),
            "row for {id} does not say created: {row:?}"
        );
    }
    assert!(
        table
            .stdout
            .lines()
            .next()
            .is_some_and(|h| h.contains("ID")),
        "the table has no header line:\n{table:?}"
    );

    let json = t.rt(&["list", "--format", "json"]);
    json.ok();
    let v = json.json();
    let arr = v
        .as_array()
        .unwrap_or_else(|| panic!("not an array:\n{json:?}"));
    let mut ids: Vec<&str> = arr.iter().filter_map(|c| c["id"].as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["alpha", "beta"], "{json:?}");
    for c in arr {
        assert_eq!(c["status"], "created", "{c}");
        assert!(c["pid"].as_i64().unwrap_or(0) > 0, "{c}");
    }

    let q = t.rt(&["list", "-q"]);
    q.ok();
    let mut lines = q.stdout_lines();
    lines.sort_unstable();
    assert_eq!(lines, ["alpha", "beta"], "{q:?}");

    t.rt(&["delete", "alpha"]).ok();
    t.rt(&["delete", "beta"]).ok();
}

#[test]
fn ps_lists_the_workload() {
    let Some(t) = Test::new("ps_lists_the_workload") else {
        return;
    };
    let b = t.bundle("b", &[MT, "sleep", "30"]);
    t.run_detached(&b, "ps").ok();
    let init = t.state("ps")["pid"].as_i64().unwrap() as i32;
    let workload = wait_for(
        "the workload under tiny-init",
        Duration::from_secs(5),
        || children(init).first().copied(),
    );
    assert_eq!(comm(workload).as_deref(), Some("nsbox-multitool"));

    let json = t.rt(&["ps", "--format", "json", "ps"]);
    json.ok();
    let v = json.json();
    let pids: Vec<i64> = v
        .as_array()
        .unwrap_or_else(|| panic!("not an array:\n{json:?}"))
        .iter()
        .map(|p| {
            p.as_i64()
                .unwrap_or_else(|| panic!("not a pid: {p} in\n{json:?}"))
        })
        .collect();
    assert!(
        pids.contains(&(workload as i64)),
        "ps does not list the workload's host pid {workload}:\n{json:?}"
    );
    assert!(pids.iter().all(|&p| p > 0), "{json:?}");

    let table = t.rt(&["ps", "ps"]);
    table.ok();
    assert!(
        table
            .stdout
            .split_whitespace()
            .any(|w| w == workload.to_string()),
        "the ps table does not show pid {workload}:\n{table:?}"
    );

    t.rt(&["delete", "--force", "ps"]).ok();
    t.rt(&["state", "ps"])
        .fails_with("ps", &["container does not exist"]);
}

#[test]
fn json_log_of_a_failing_create() {
    let Some(t) = Test::new("json_log_of_a_failing_create") else {
        return;
    };
    let log = t.work.join("runtime.log");
    let missing = t.work.join("no-such-bundle");
    let out = t.rt(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "create",
        "-b",
        missing.to_str().unwrap(),
        "logged",
    ]);
    out.fails_with(
        "logged",
        &[
            "bundle",
            missing.to_str().unwrap(),
            "no such file or directory",
        ],
    );
    let text = read_lossy(&log);
    let errors: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l:?}"))
        })
        .filter(|v| v["level"] == "error")
        .collect();
    assert!(
        !errors.is_empty(),
        "no \"level\":\"error\" line in the log:\n{text}"
    );
    assert!(
        errors
            .iter()
            .any(|v| v["msg"].as_str().is_some_and(|m| m.contains("logged"))),
        "no error line has a msg naming the container:\n{text}"
    );
}

/// A reader that goes away (`runtime list | head -1`, `runtime logs -f ID
/// | grep -m1 ready`) ends every printing command as it ends runc's and
/// crun's: killed by SIGPIPE, with nothing on stderr. Not a panic with a
/// backtrace, and not a `logs -f` that follows on for nobody.
#[test]
fn a_reader_gone_away_ends_the_output_by_sigpipe() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let Some(t) = Test::new("reader_gone_away") else {
        return;
    };
    let b = t.bundle("b", &["sh", "-c", "echo hello; sleep 30"]);
    t.rt_cmd(t.command(&["run", "-d", "--log-output", "-b", b.path(), "pp"]))
        .ok();
    t.track_state("pp");
    wait_for("the log's first line", TIMEOUT, || {
        t.rt(&["logs", "pp"]).stdout.contains("hello").then_some(())
    });
    for args in [
        &["list"][..],
        &["list", "-q"],
        &["list", "--format", "json"],
        &["state", "pp"],
        &["ps", "pp"],
        &["ps", "--format", "json", "pp"],
        &["features"],
        &["logs", "pp"],
        &["logs", "-f", "pp"],
    ] {
        let (read, write) = nix::unistd::pipe().unwrap();
        drop(read);
        let mut cmd = t.command(args);
        cmd.stdout(Stdio::from(write)).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        drop(cmd);
        let status = wait_timeout(&mut child, Duration::from_secs(10));
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert_eq!(
            status.and_then(|s| s.signal()),
            Some(libc::SIGPIPE),
            "runtime {}: {status:?}, stderr: {err}",
            args.join(" ")
        );
        assert_eq!(err, "", "runtime {}", args.join(" "));
    }
    t.rt(&["delete", "--force", "pp"]).ok();
}
