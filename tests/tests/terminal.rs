//! A person at a terminal: `run -t` and `exec -t` driven through a real
//! pseudo-terminal (tmux, on a private server), stdin through a pipe, ID
//! prefixes and the `list` table.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux server of our own (`-L`), killed when dropped: never anyone
/// else's.
struct Tmux {
    socket: String,
    /// The test's state root: its runtimes, shims and inits mention it.
    root: PathBuf,
}

impl Tmux {
    /// None when tmux is not installed, after reporting the test skipped
    /// (`make deps` installs it).
    fn new(t: &Test) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            skip(&t.name, "tmux is not installed");
            return None;
        }
        Some(Tmux {
            socket: format!("nsbox-test-{}-{}", std::process::id(), t.name),
            root: t.root.clone(),
        })
    }

    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// A detached 80x24 session running `script` under sh.
    fn start(&self, script: &str) {
        let out = self.cmd(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "80",
            "-y",
            "24",
            "sh",
            "-c",
            script,
        ]);
        assert!(out.status.success(), "tmux new-session: {out:?}");
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        assert!(self.cmd(&args).status.success(), "tmux send-keys {keys:?}");
    }

    /// Type a line and Enter.
    fn line(&self, text: &str) {
        self.keys(&["-l", text]);
        self.keys(&["Enter"]);
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "t"]).stdout).into_owned()
    }

    /// Waits (at most 15 s) for the screen to show `needle` at least `n`
    /// times.
    #[track_caller]
    fn wait_screen(&self, needle: &str, n: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let s = self.screen();
            if s.matches(needle).count() >= n {
                return s;
            }
            if Instant::now() > deadline {
                panic!("the screen never showed {needle:?} {n} time(s):\n{s}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
        // The pane's hangup ends a runtime still running in it, and its
        // container with it: let them go before the leak check looks.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && all_pids().into_iter().any(|p| {
                cmdline(p).is_some_and(|c| mentions(&c, &self.root) || c.contains(&self.socket))
            })
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The script tmux runs: the terminal's settings before and after, the
/// runtime's exit code, then it waits (so the pane stays readable).
fn session_script(t: &Test, args: &[&str], files: &Files) -> String {
    let mut cmd = vec![
        shell_quote(bins().runtime.to_str().unwrap()),
        "--root".into(),
        shell_quote(t.root_str()),
    ];
    cmd.extend(args.iter().map(|a| shell_quote(a)));
    format!(
        "stty -g > {before}; {cmd} 2>{err}; echo \"rc=$?\" > {rc}; stty -g > {after}; sleep 60",
        before = shell_quote(files.before.to_str().unwrap()),
        after = shell_quote(files.after.to_str().unwrap()),
        rc = shell_quote(files.rc.to_str().unwrap()),
        err = shell_quote(files.err.to_str().unwrap()),
        cmd = cmd.join(" "),
    )
}

struct Files {
    before: PathBuf,
    after: PathBuf,
    rc: PathBuf,
    err: PathBuf,
}

impl Files {
    fn new(dir: &Path) -> Files {
        Files {
            before: dir.join("stty.before"),
            after: dir.join("stty.after"),
            rc: dir.join("rc"),
            err: dir.join("runtime.err"),
        }
    }

    #[track_caller]
    fn wait_rc(&self) -> String {
        let rc = wait_for_text(&self.rc, "rc=");
        rc.trim().to_string()
    }

    #[track_caller]
    fn assert_terminal_restored(&self) {
        wait_for_text(&self.after, ":");
        assert_eq!(
            fs::read_to_string(&self.before).unwrap(),
            fs::read_to_string(&self.after).unwrap(),
            "the caller's terminal settings changed"
        );
    }
}

/// Running (not stopped) in the foreground process group of its terminal:
/// where a Ctrl-C or Ctrl-Z typed now goes.
fn in_the_foreground(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    // state ppid pgrp session tty_nr tpgid
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.len() > 5 && f[0] != "T" && f[2] == f[5]
}

/// Waits until a process of container `id` whose command line is `cmd`
/// runs in the foreground of its terminal.
#[track_caller]
fn wait_foreground(t: &Test, id: &str, cmd: &str) {
    let init = t.state(id)["pid"].as_i64().unwrap() as i32;
    wait_for(
        &format!("{cmd:?} in the foreground of {id}'s terminal"),
        Duration::from_secs(10),
        || {
            let mut todo = children(init);
            while let Some(p) = todo.pop() {
                if cmdline(p).as_deref() == Some(cmd) && in_the_foreground(p) {
                    return Some(());
                }
                todo.extend(children(p));
            }
            None
        },
    );
}

/// Prompt, a typed command, a resize, Ctrl-C and Ctrl-Z into a `sleep`,
/// `exit 3`, in the shell of container `id`.
fn drive_a_shell(t: &Test, id: &str, tmux: &Tmux) {
    tmux.wait_screen("/ #", 1);
    tmux.line("echo hello $((6*7))");
    tmux.wait_screen("hello 42", 1);
    tmux.line("stty size");
    tmux.wait_screen("24 80", 1);
    assert!(tmux
        .cmd(&["resize-window", "-t", "t", "-x", "100", "-y", "30"])
        .status
        .success());
    // The resize may land while the shell reads the next line: ask until
    // it shows (every 200 ms: the time an answer gets before asking again).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tmux.line("stty size");
        std::thread::sleep(Duration::from_millis(200));
        if tmux.screen().contains("30 100") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stty size never followed the resize:\n{}",
            tmux.screen()
        );
    }
    tmux.line("sleep 30; echo slept");
    wait_foreground(t, id, "sleep 30");
    tmux.keys(&["C-c"]);
    tmux.line("echo survived-$((1+1))");
    let s = tmux.wait_screen("survived-2", 1);
    assert!(
        !s.lines().any(|l| l.trim() == "slept"),
        "Ctrl-C did not interrupt the sleep:\n{s}"
    );
    // Ctrl-Z stops the job inside (the shell's job control), not us.
    tmux.line("sleep 30");
    wait_foreground(t, id, "sleep 30");
    tmux.keys(&["C-z"]);
    tmux.wait_screen("Stopped", 1);
    // Back to the foreground, and Ctrl-C ends it there.
    tmux.line("fg");
    wait_foreground(t, id, "sleep 30");
    tmux.keys(&["C-c"]);
    tmux.line("echo z$((1))done");
    tmux.wait_screen("z1done", 1);
    tmux.line("exit 3");
}

#[test]
fn run_t_gives_the_terminal_to_the_container() {
    let Some(t) = Test::new("tty_run") else {
        return;
    };
    let Some(tmux) = Tmux::new(&t) else { return };
    let b = t.bundle("b", &["sh"]);
    let files = Files::new(&t.work);
    tmux.start(&session_script(
        &t,
        &["run", "-t", "-b", b.path(), "tt"],
        &files,
    ));
    drive_a_shell(&t, "tt", &tmux);
    assert_eq!(files.wait_rc(), "rc=3", "{}", read_lossy(&files.err));
    files.assert_terminal_restored();
}

#[test]
fn exec_t_gives_the_terminal_to_the_process() {
    let Some(t) = Test::new("tty_exec") else {
        return;
    };
    let Some(tmux) = Tmux::new(&t) else { return };
    let b = t.bundle("b", &["sleep", "60"]);
    t.run_detached(&b, "ex").ok();
    let files = Files::new(&t.work);
    tmux.start(&session_script(&t, &["exec", "-t", "ex", "sh"], &files));
    drive_a_shell(&t, "ex", &tmux);

    assert_eq!(files.wait_rc(), "rc=3", "{}", read_lossy(&files.err));
    files.assert_terminal_restored();
    // The container lives on after the exec'd shell.
    assert_eq!(t.status("ex"), "running");
    t.rt(&["delete", "-f", "ex"]).ok();
}

#[test]
fn a_signal_to_the_runtime_restores_the_terminal() {
    let Some(t) = Test::new("tty_signal") else {
        return;
    };
    let Some(tmux) = Tmux::new(&t) else { return };
    let b = t.bundle("b", &["sh"]);
    let files = Files::new(&t.work);
    tmux.start(&session_script(
        &t,
        &["run", "-t", "-b", b.path(), "sig"],
        &files,
    ));
    tmux.wait_screen("/ #", 1);
    // The runtime passes the signal on (an interactive shell ignores
    // SIGTERM but dies of SIGHUP), and its terminal comes back as it was.
    let pid = wait_for("the runtime's pid", TIMEOUT, || {
        all_pids().into_iter().find(|&p| {
            cmdline(p)
                .is_some_and(|c| c.contains("run") && c.contains(" sig") && mentions(&c, &t.root))
        })
    });
    // SAFETY: a pid we just found as ours.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let rc = files.wait_rc();
    assert_eq!(
        rc,
        format!("rc={}", 128 + libc::SIGHUP),
        "{}",
        read_lossy(&files.err)
    );
    files.assert_terminal_restored();
}

#[test]
fn stdin_is_forwarded_through_a_pipe_with_its_eof() {
    let Some(t) = Test::new("stdin_pipe") else {
        return;
    };
    let b = t.bundle(
        "b",
        &[
            "sh",
            "-c",
            "n=0; while read l; do n=$((n+1)); done; echo lines=$n",
        ],
    );
    let input = t.work.join("input");
    fs::write(&input, "a\nb\nc\n").unwrap();
    let mut cmd = t.command(&["run", "-i", "-b", b.path(), "in"]);
    cmd.stdin(fs::File::open(&input).unwrap());
    let out = t.rt_cmd(cmd);
    out.ok();
    assert_eq!(out.stdout.trim(), "lines=3");
    // -t with input from a file: its end is the terminal's EOF, so the
    // shell in there ends too.
    let bt = t.bundle("bt", &["sh"]);
    fs::write(&input, "echo piped $((1+1))\n").unwrap();
    let mut cmd = t.command(&["run", "-t", "-b", bt.path(), "tin"]);
    cmd.stdin(fs::File::open(&input).unwrap());
    let out = t.rt_cmd(cmd);
    out.ok();
    assert!(out.stdout.contains("piped 2"), "{out:?}");
    fs::write(&input, "a\nb\nc\n").unwrap();
    // exec -i the same way, in a running container.
    let b2 = t.bundle("b2", &["sleep", "60"]);
    t.run_detached(&b2, "in2").ok();
    let mut cmd = t.command(&["exec", "-i", "in2", "sh", "-c", "wc -l"]);
    cmd.stdin(fs::File::open(&input).unwrap());
    let out = t.rt_cmd(cmd);
    out.ok();
    assert_eq!(out.stdout.trim(), "3");
    t.rt(&["delete", "-f", "in2"]).ok();
}

#[test]
fn a_unique_prefix_names_a_container() {
    let Some(t) = Test::new("prefix") else {
        return;
    };
    let b = t.bundle("b", &["sleep", "60"]);
    for id in ["web1", "web2", "db"] {
        t.create(&b, id).ok();
    }
    assert_eq!(t.rt(&["state", "d"]).ok().json()["id"], "db");
    let err = t.rt(&["state", "web"]).fails_with("web", &["ambiguous"]);
    assert!(err.contains("web1") && err.contains("web2"), "{err}");
    t.rt(&["start", "web2"]).ok();
    assert_eq!(t.rt(&["state", "web2"]).ok().json()["status"], "running");
    t.rt(&["kill", "web2", "KILL"]).ok();
    t.wait_status("web2", "stopped");
    // `create` takes its ID literally: "we" is a new container, and an exact
    // match then wins over the longer IDs.
    t.create(&b, "we").ok();
    assert_eq!(t.rt(&["state", "we"]).ok().json()["id"], "we");
    t.rt(&["state", "nothing"])
        .fails_with("nothing", &["does not exist"]);
    // `kill` and `delete` take an ID literally: "d" is not "db", and the
    // forced delete of a container that does not exist changes nothing.
    t.rt(&["kill", "d", "KILL"])
        .fails_with("d", &["does not exist"]);
    t.rt(&["delete", "d"]).fails_with("d", &["does not exist"]);
    t.rt(&["delete", "-f", "d"]).ok();
    assert_eq!(t.status("db"), "created");
    for id in ["web1", "web2", "db", "we"] {
        t.rt(&["delete", "-f", id]).ok();
    }
    assert!(t.rt(&["list", "-q"]).ok().stdout.trim().is_empty());
}

#[test]
fn list_is_a_table_for_people_and_json_for_scripts() {
    let Some(t) = Test::new("list_table") else {
        return;
    };
    let b = t.bundle("b", &["sleep", "60"]);
    t.run_detached(&b, "up").ok();
    let b3 = t.bundle("b3", &["sh", "-c", "exit 3"]);
    t.run_detached(&b3, "ended").ok();
    t.wait_status("ended", "stopped");
    let out = t.rt(&["list"]).ok().stdout.clone();
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("ID")
            && lines[0].contains("COMMAND")
            && lines[0].contains("CREATED")
            && lines[0].contains("STATUS")
            && lines[0].contains("PID"),
        "{out}"
    );
    let up = lines.iter().find(|l| l.starts_with("up ")).expect(&out);
    assert!(up.contains("\"sleep 60\"") && up.contains("Up "), "{out}");
    assert!(up.contains(&t.state("up")["pid"].to_string()), "{out}");
    assert!(up.contains("ago"), "created, relative: {out}");
    let ended = lines.iter().find(|l| l.starts_with("ended ")).expect(&out);
    assert!(
        ended.contains("Exited (3) ") && ended.contains(" ago"),
        "{out}"
    );
    let json = t.rt(&["list", "--format", "json"]).ok().json();
    let ids: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ended", "up"]);
    assert_eq!(t.rt(&["list", "-q"]).ok().stdout, "ended\nup\n");
    t.rt(&["delete", "-f", "up"]).ok();
    t.rt(&["delete", "ended"]).ok();
}

/// `run -d --log-output`: the container's output goes to its log.
#[track_caller]
fn run_logged(t: &Test, b: &Bundle, id: &str) {
    let out = t.rt_cmd(t.command(&["run", "-d", "--log-output", "-b", b.path(), id]));
    out.ok();
    t.track_state(id);
}

#[test]
fn logs_keep_both_streams_with_tail_and_timestamps() {
    let Some(t) = Test::new("logs_streams") else {
        return;
    };
    // Two batches apart in time, so that the shim reads (and logs) them
    // in two goes; the last line has no newline.
    let b = t.bundle(
        "b",
        &[
            "sh",
            "-c",
            "echo out1; echo err1 >&2; sleep 0.3; echo out2; printf partial",
        ],
    );
    run_logged(&t, &b, "lg");
    t.wait_status("lg", "stopped");
    let out = t.rt(&["logs", "lg"]);
    out.ok();
    assert_eq!(out.stdout, "out1\nout2\npartial\n");
    assert_eq!(out.stderr, "err1\n");
    assert_eq!(
        t.rt(&["logs", "--tail", "2", "lg"]).ok().stdout,
        "out2\npartial\n"
    );
    let ts = t.rt(&["logs", "-t", "-n", "1", "lg"]).stdout;
    let (time, text) = ts.trim_end().split_once(' ').expect(&ts);
    assert_eq!(text, "partial");
    assert!(
        time.starts_with("20") && time.contains('T') && time.ends_with('Z'),
        "{ts}"
    );
    // A container whose output went to its caller has no log to show.
    let b2 = t.bundle("b2", &["true"]);
    t.run_detached(&b2, "nolog").ok();
    t.rt(&["logs", "nolog"]).fails_with("nolog", &["no log"]);
    t.rt(&["delete", "lg"]).ok();
    t.rt(&["delete", "-f", "nolog"]).ok();
}

#[test]
fn logs_follow_ends_when_the_container_stops() {
    let Some(t) = Test::new("logs_follow") else {
        return;
    };
    // Output that comes over time: -f follows it as it comes, and ends
    // when the container stops.
    let b = t.bundle(
        "b",
        &["sh", "-c", "echo a; sleep 1; echo b >&2; sleep 1; echo c"],
    );
    run_logged(&t, &b, "fl");
    let follow = t.spawn(&["logs", "-f", "fl"]);
    let out = follow.wait(Duration::from_secs(20));
    out.ok();
    assert_eq!(out.stdout, "a\nc\n");
    assert_eq!(out.stderr, "b\n");
    assert_eq!(t.status("fl"), "stopped");
    t.rt(&["delete", "fl"]).ok();
}

#[test]
fn a_log_past_its_bound_is_rotated_not_lost() {
    let Some(t) = Test::new("logs_rotate") else {
        return;
    };
    // 30000 records of ~44 bytes: past the 1 MiB bound once.
    let b = t.bundle("b", &["seq", "1", "30000"]);
    run_logged(&t, &b, "rot");
    t.wait_status("rot", "stopped");
    let dir = t.root.join("rot");
    assert!(dir.join("container.log.1").exists(), "rotated");
    assert!(fs::metadata(dir.join("container.log.1")).unwrap().len() <= 1024 * 1024);
    let out = t.rt(&["logs", "rot"]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 30000, "every line kept");
    assert_eq!((lines[0], lines[29999]), ("1", "30000"));
    t.rt(&["delete", "rot"]).ok();
}

#[test]
fn attach_and_detach_with_the_detach_keys() {
    let Some(t) = Test::new("attach") else {
        return;
    };
    let Some(tmux) = Tmux::new(&t) else { return };
    let b = t.bundle("b", &["sh"]);
    // A terminal without a console socket, detached: the shim keeps it.
    t.rt(&["run", "-d", "-t", "-b", b.path(), "at"]).ok();
    t.track_state("at");
    let files = Files::new(&t.work);
    tmux.start(&session_script(&t, &["attach", "at"], &files));
    tmux.line("echo hi $((2+3))");
    tmux.wait_screen("hi 5", 1);
    tmux.keys(&["C-p", "C-q"]);
    assert_eq!(files.wait_rc(), "rc=0", "{}", read_lossy(&files.err));
    assert!(read_lossy(&files.err).contains("detached"));
    files.assert_terminal_restored();
    assert_eq!(t.status("at"), "running", "detaching leaves it running");
    // What was typed and shown is in its log too.
    assert!(t.rt(&["logs", "at"]).ok().stdout.contains("hi 5"));
    drop(tmux);
    // Again, with other keys, and this time the shell ends: its code.
    let tmux = Tmux::new(&t).unwrap();
    let files = Files::new(&t.work.join("calls"));
    tmux.start(&session_script(
        &t,
        &["attach", "--detach-keys", "ctrl-a,d", "at"],
        &files,
    ));
    tmux.line("echo again $((3+4))");
    tmux.wait_screen("again 7", 1);
    tmux.line("exit 7");
    assert_eq!(files.wait_rc(), "rc=7", "{}", read_lossy(&files.err));
    files.assert_terminal_restored();
    t.wait_status("at", "stopped");
    t.rt(&["attach", "at"]).fails_with("at", &["stopped"]);
    t.rt(&["delete", "at"]).ok();
}
