//! The container's shape seen from inside and from the host: namespaces,
//! hostname, PID 1, exit codes, reaping, the process tree, leaked fds.

mod common;

use common::*;
use std::fs;
use std::time::Duration;

#[test]
fn namespaces_differ_from_host() {
    let Some(t) = Test::new("namespaces_differ_from_host") else {
        return;
    };
    let b = t.bundle("b", &[MT, "print-ns"]);
    let out = t.run(&b, "ns");
    out.ok();
    for name in ["ipc", "mnt", "net", "pid", "uts"] {
        let inside = out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} line in print-ns output:\n{out:?}"));
        assert_ne!(
            inside,
            own_ns(name),
            "the container's {name} namespace is the host's:\n{out:?}"
        );
    }
}

#[test]
fn two_containers_do_not_share_namespaces() {
    let Some(t) = Test::new("two_containers_do_not_share_namespaces") else {
        return;
    };
    // Both alive at once: the kernel reuses the inode number of a namespace
    // that is gone, so two containers run one after the other may show the
    // same numbers.
    let b = t.bundle(
        "b1",
        &["sh", "-c", "nsbox-multitool print-ns; echo ready; sleep 30"],
    );
    t.run_detached(&b, "one").ok();
    let one = wait_for_text(&t.ctr_stdout("one"), "ready");
    let b = t.bundle("b2", &[MT, "print-ns"]);
    let two = t.run(&b, "two");
    two.ok();
    let one: Vec<&str> = one.lines().take_while(|l| *l != "ready").collect();
    assert_eq!(one.len(), 5, "{one:?}");
    assert_eq!(two.stdout.lines().count(), 5, "{two:?}");
    for (l1, l2) in one.iter().zip(two.stdout.lines()) {
        assert_ne!(
            *l1, l2,
            "two containers share a namespace:\n{one:?}\n{two:?}"
        );
    }
    t.rt(&["delete", "--force", "one"]).ok();
}

#[test]
fn hostname_from_config() {
    let Some(t) = Test::new("hostname_from_config") else {
        return;
    };
    let host_before = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let b = t.bundle_with("b", &["hostname"], |c| {
        c["hostname"] = json!("box-from-config");
    });
    let out = t.run(&b, "host");
    out.ok();
    assert_eq!(out.stdout.trim(), "box-from-config", "{out:?}");
    let host_after = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(host_before, host_after, "the host's hostname changed");
}

#[test]
fn pid1_is_tiny_init_and_workload_is_pid2() {
    let Some(t) = Test::new("pid1_is_tiny_init_and_workload_is_pid2") else {
        return;
    };
    let b = t.bundle("b", &["cat", "/proc/1/comm"]);
    let out = t.run(&b, "comm");
    out.ok();
    assert_eq!(out.stdout.trim(), "tiny-init", "PID 1's comm:\n{out:?}");

    let b = t.bundle("b2", &[MT, "pids"]);
    let out = t.run(&b, "pids");
    out.ok();
    assert_eq!(out.stdout.trim(), "pid=2 ppid=1", "{out:?}");
}

#[test]
fn exit_codes_plain() {
    let Some(t) = Test::new("exit_codes_plain") else {
        return;
    };
    for code in [0, 1, 42, 255] {
        let b = t.bundle(&format!("b{code}"), &[MT, "exit", &code.to_string()]);
        let out = t.run(&b, &format!("exit{code}"));
        out.code_is(code);
    }
    let b = t.bundle("sh", &["sh", "-c", "exit 3"]);
    t.run(&b, "sh3").code_is(3);
}

#[test]
fn exit_codes_signals() {
    let Some(t) = Test::new("exit_codes_signals") else {
        return;
    };
    for (sig, code) in [("KILL", 137), ("TERM", 143), ("USR1", 138), ("HUP", 129)] {
        let b = t.bundle(&format!("b{sig}"), &[MT, "kill-self", sig]);
        let out = t.run(&b, &format!("sig{}", sig.to_lowercase()));
        out.code_is(code);
    }
}

#[test]
fn orphaned_zombies_are_reaped() {
    let Some(t) = Test::new("orphaned_zombies_are_reaped") else {
        return;
    };
    let b = t.bundle("b", &[MT, "orphans", "100"]);
    let out = t.run(&b, "orphans");
    out.ok();
    assert!(out.stdout.contains("zombies 0"), "{out:?}");
}

#[test]
fn host_process_tree_is_shim_init_workload() {
    let Some(t) = Test::new("host_process_tree_is_shim_init_workload") else {
        return;
    };
    let b = t.bundle("b", &["sh", "-c", "sleep 30; true"]);
    t.run_detached(&b, "tree").ok();
    let state = t.state("tree");
    assert_eq!(state["status"], "running", "{state}");
    let init = state["pid"].as_i64().expect("state pid") as i32;
    assert!(init > 0, "{state}");

    let pstree = || {
        std::process::Command::new("pstree")
            .args(["-p", &ppid(init).unwrap_or(init).to_string()])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    assert_eq!(
        comm(init).as_deref(),
        Some("tiny-init"),
        "the state pid is not tiny-init:\n{}",
        pstree()
    );
    let shim = ppid(init).unwrap();
    assert_eq!(
        comm(shim).as_deref(),
        Some("shim"),
        "tiny-init's parent is not the shim:\n{}",
        pstree()
    );
    // The workload may take a moment to fork sleep.
    let (sh, sleep) = wait_for(
        "sh and sleep under tiny-init",
        Duration::from_secs(5),
        || {
            let kids = children(init);
            let [sh] = kids[..] else { return None };
            let grandkids = children(sh);
            let [sleep] = grandkids[..] else { return None };
            Some((sh, sleep))
        },
    );
    assert_eq!(comm(sh).as_deref(), Some("sh"), "{}", pstree());
    assert_eq!(comm(sleep).as_deref(), Some("sleep"), "{}", pstree());
    // The shim is not a child of the runtime call that made it: it detached.
    assert!(
        comm(ppid(shim).unwrap()).as_deref() != Some("runtime"),
        "the shim's parent is still a runtime process:\n{}",
        pstree()
    );

    t.rt(&["kill", "tree", "KILL"]).ok();
    t.wait_status("tree", "stopped");
    t.rt(&["delete", "tree"]).ok();
}

#[test]
fn no_host_fd_reaches_the_workload() {
    let Some(t) = Test::new("no_host_fd_reaches_the_workload") else {
        return;
    };
    let b = t.bundle("b", &[MT, "fds"]);
    let file = fs::File::create(t.work.join("leak-me")).unwrap();
    let dir = fs::File::open(&t.work).unwrap();
    use std::os::fd::AsRawFd;
    let extra = vec![(file.as_raw_fd(), 42), (dir.as_raw_fd(), 43)];
    // The control: a host process started the same way has them.
    let mut control = std::process::Command::new(&bins().multitool);
    control.arg("fds");
    with_inherited_fds(&mut control, extra.clone());
    let control = control.output().unwrap();
    let control = String::from_utf8_lossy(&control.stdout).into_owned();
    let listed: Vec<&str> = control.split_whitespace().collect();
    assert!(
        listed.contains(&"42") && listed.contains(&"43"),
        "the fds to leak were not installed: {control:?}"
    );

    let mut cmd = t.command(&["run", "-b", b.path(), "fds"]);
    with_inherited_fds(&mut cmd, extra);
    let out = t.rt_cmd(cmd);
    out.ok();
    assert_eq!(out.stdout.trim(), "fds 0 1 2", "{out:?}");
}

/// The runtime starts the shim itself (clone and exec, not glibc's
/// posix_spawn): in a session of its own, with the socket as fd 3 and
/// none of the caller's other fds, and with the signal mask the runtime
/// had (nothing more blocked).
#[test]
fn the_shim_starts_in_its_own_session_with_the_runtimes_mask_and_no_stray_fd() {
    let Some(t) = Test::new("shim_spawn") else {
        return;
    };
    let b = t.bundle("b", &["sleep", "30"]);
    let file = fs::File::create(t.work.join("leak-me")).unwrap();
    use std::os::fd::AsRawFd;
    let mut cmd = t.command(&["run", "-d", "-b", b.path(), "spawned"]);
    with_inherited_fds(&mut cmd, vec![(file.as_raw_fd(), 42)]);
    // The caller blocks SIGUSR2: a `run -d` passes its mask on unchanged.
    // SAFETY: sigprocmask is async-signal-safe, as pre_exec needs.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR2);
            if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    t.rt_cmd(cmd).ok();
    t.track_state("spawned");
    let shim = t.shim_pid("spawned");
    assert_eq!(comm(shim).as_deref(), Some("shim"), "pid {shim}");

    assert_eq!(
        session(shim),
        Some(shim),
        "the shim leads no session (pid {shim})"
    );

    let mask = |pid: &str| {
        let v = status_field(pid, "SigBlk").unwrap_or_else(|| panic!("no SigBlk of {pid}"));
        u64::from_str_radix(&v, 16).unwrap()
    };
    let usr2 = 1u64 << (libc::SIGUSR2 - 1);
    assert_eq!(
        mask(&shim.to_string()),
        mask("self") | usr2,
        "the shim's blocked signals"
    );

    let leak = t.work.join("leak-me");
    for fd in fs::read_dir(format!("/proc/{shim}/fd")).unwrap() {
        let fd = fd.unwrap();
        let target = fs::read_link(fd.path()).unwrap_or_default();
        assert_ne!(
            target,
            leak,
            "the shim holds the caller's fd 42 as {:?}",
            fd.file_name()
        );
    }

    t.rt(&["kill", "spawned", "KILL"]).ok();
    t.wait_status("spawned", "stopped");
    t.rt(&["delete", "spawned"]).ok();
}

/// A shim that cannot be exec'd: the create fails with execve's reason
/// and leaves no state behind.
#[test]
fn a_shim_that_cannot_be_executed_fails_the_create_with_the_reason() {
    let Some(t) = Test::new("shim_not_executable") else {
        return;
    };
    use std::os::unix::fs::PermissionsExt;
    let dir = t.work.join("bin");
    fs::create_dir_all(&dir).unwrap();
    for (from, name) in [
        (&bins().runtime, "runtime"),
        (&bins().shim, "shim"),
        (&bins().tiny_init, "tiny-init"),
    ] {
        fs::copy(from, dir.join(name)).unwrap();
    }
    fs::set_permissions(dir.join("shim"), fs::Permissions::from_mode(0o644)).unwrap();
    let b = t.bundle("b", &["true"]);
    let mut cmd = std::process::Command::new(dir.join("runtime"));
    cmd.arg("--root")
        .arg(&t.root)
        .args(["run", "-b", b.path(), "noexec"])
        .stdin(std::process::Stdio::null());
    let out = t.rt_cmd(cmd);
    out.fails_with("noexec", &["start the shim", "Permission denied"]);
    assert!(
        !t.root.join("noexec").exists(),
        "the failed create left {}",
        t.root.join("noexec").display()
    );
}

#[test]
fn stdout_and_stderr_reach_the_caller() {
    let Some(t) = Test::new("stdout_and_stderr_reach_the_caller") else {
        return;
    };
    let b = t.bundle(
        "b",
        &["sh", "-c", "echo to-out; echo to-err >&2; cat /etc/issue"],
    );
    let out = t.run(&b, "stdio");
    out.ok();
    assert_eq!(out.stdout, "to-out\nnsbox test rootfs\n", "{out:?}");
    assert_eq!(out.stderr, "to-err\n", "{out:?}");
}

#[test]
fn many_fast_foreground_runs_in_parallel() {
    let Some(t) = Test::new("many_fast_foreground_runs_in_parallel") else {
        return;
    };
    // A workload that exits at once races the runtime's "wait" request and
    // the shim's SIGCHLD handling; do it often and concurrently.
    let b = t.bundle("b", &["true"]);
    let failures: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let (t, b) = (&t, &b);
                s.spawn(move || {
                    (0..15)
                        .filter_map(|i| {
                            let out = t.run(b, &format!("fast-{w}-{i}"));
                            (!out.success()).then(|| format!("{out:?}"))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of 60 runs of `true` failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
