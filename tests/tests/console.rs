//! Terminals made inside the container and handed to the caller over
//! `--console-socket`, `--preserve-fds`, and `features`.

mod common;

use common::*;
use std::fs;

/// Starts the multitool's console listener on a socket in the work dir;
/// returns (socket path, listener, its stdout file).
fn listener(
    t: &Test,
    name: &str,
    input: &str,
) -> (std::path::PathBuf, Spawned, std::path::PathBuf) {
    let sock = t.work.join(format!("{name}.sock"));
    let out = t.work.join(format!("{name}.out"));
    let err = t.work.join(format!("{name}.err"));
    let mut cmd = std::process::Command::new(&bins().multitool);
    cmd.arg("console").arg(&sock).arg(input);
    let child = t.spawn_to(&mut cmd, &out, &err);
    wait_for_text(&out, "listening");
    (sock, child, out)
}

#[test]
fn create_with_a_terminal_sends_its_master_to_the_console_socket() {
    let Some(t) = Test::new("console_create") else {
        return;
    };
    let b = t.bundle_with(
        "b",
        &["sh", "-c", "tty; read line; echo \"got $line\"; exit 3"],
        |c| c["process"]["terminal"] = true.into(),
    );
    // Under an orchestrator, without a console socket there is nowhere for
    // the terminal to go (as with runc); in the own-shim mode the shim
    // keeps it for `attach` (tests/terminal.rs).
    t.rt(&["--shim-mode", "caller", "create", "-b", b.path(), "none"])
        .fails_with("none", &["console-socket"]);
    let (sock, console, _) = listener(&t, "c", "hello");
    let out = t.exec_to(
        t.command(&[
            "create",
            "--console-socket",
            sock.to_str().unwrap(),
            "-b",
            b.path(),
            "c",
        ]),
        &t.ctr_stdout("c"),
        &t.ctr_stderr("c"),
        TIMEOUT,
    );
    out.ok();
    t.track_state("c");
    t.rt(&["start", "c"]).ok();
    let seen = console.wait(TIMEOUT);
    let lines: Vec<&str> = seen
        .stdout
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .collect();
    assert!(
        lines.contains(&"/dev/pts/0"),
        "the workload's stdin is the terminal:\n{seen:?}"
    );
    assert!(
        lines.contains(&"got hello"),
        "input typed on the master reached it:\n{seen:?}"
    );
    assert_eq!(t.stopped_with_code("c")["exitCode"], 3);
    t.rt(&["delete", "c"]).ok();
}

#[test]
fn exec_with_a_terminal_in_both_modes() {
    let Some(t) = Test::new("console_exec") else {
        return;
    };
    let b = t.bundle("b", &["sh", "-c", "echo ready; exec sleep 60"]);
    t.run_detached(&b, "c").ok();
    wait_for_text(&t.ctr_stdout("c"), "ready");
    for mode in ["own", "caller"] {
        let (sock, console, _) = listener(&t, mode, "typed");
        let out = t.rt(&[
            "--shim-mode",
            mode,
            "exec",
            "-t",
            "--console-socket",
            sock.to_str().unwrap(),
            "c",
            "sh",
            "-c",
            "tty; read x; echo \"[$x]\"; exit 4",
        ]);
        out.code_is(4);
        let seen = console.wait(TIMEOUT);
        assert!(seen.stdout.contains("/dev/pts/"), "{mode}: {seen:?}");
        assert!(seen.stdout.contains("[typed]"), "{mode}: {seen:?}");
    }
    t.rt(&["delete", "-f", "c"]).ok();
}

#[test]
fn preserve_fds_reach_the_workload_and_nothing_else_does() {
    let Some(t) = Test::new("preserve_fds") else {
        return;
    };
    let data = t.work.join("data");
    fs::write(&data, "passed on\n").unwrap();
    let b = t.bundle(
        "b",
        &["sh", "-c", "cat /proc/self/fd/3; nsbox-multitool fds"],
    );
    // The runtime gets the file as fd 3 and an extra one as fd 4; only 3 is
    // to be passed on.
    let script = format!(
        "exec 3<{} 4</dev/null; exec {} --root {} run --preserve-fds 1 -b {} p",
        data.display(),
        bins().runtime.display(),
        t.root.display(),
        b.path()
    );
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", &script]).stdin(std::process::Stdio::null());
    let out = t.rt_cmd(cmd);
    out.ok();
    assert_eq!(out.stdout_lines(), ["passed on", "fds 0 1 2 3"], "{out:?}");
}

#[test]
fn features_are_valid_json_and_truthful() {
    let Some(t) = Test::new("features") else {
        return;
    };
    let out = t.rt(&["features"]);
    out.ok();
    let f = out.json();
    assert_eq!(f["ociVersionMin"], "1.0.0");
    let ns = f["linux"]["namespaces"].as_array().unwrap();
    for n in ["mount", "pid", "ipc", "uts", "network", "user"] {
        assert!(ns.iter().any(|v| v == n), "{n} missing from {ns:?}");
    }
    assert!(f["mountOptions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o == "rbind"));
}
