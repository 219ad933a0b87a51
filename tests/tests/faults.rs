//! Faults survived (issue 7): a runtime killed at every step of `create`, a
//! shim or tiny-init killed under a running container, a shim or tiny-init
//! that stops answering, a full or read-only state root, a vanished bundle,
//! a mount that fails. Each scenario ends with the harness's leak check:
//! no process, mount, cgroup, veth, rule or state directory is left.

mod common;

use common::*;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use nsbox_host::testhooks::POINTS;

/// The fault points of one verb, in the order it gets there, as the code
/// lists them (a `fault()` call the list lacks panics in a debug build).
fn points(verb: &str) -> Vec<&'static str> {
    let points: Vec<_> = POINTS
        .iter()
        .filter(|(v, _)| *v == verb)
        .map(|(_, p)| *p)
        .collect();
    assert!(!points.is_empty(), "no fault point for {verb}");
    points
}

/// Every verb with fault points has its scenario below: a new one cannot
/// go untested either.
#[test]
fn every_fault_point_has_a_scenario() {
    for (verb, point) in POINTS {
        assert!(
            ["create", "shim"].contains(verb),
            "fault point {verb}:{point} has no scenario in tests/faults.rs"
        );
    }
}

fn bridged(t: &Test, name: &str, args: &[&str]) -> Bundle {
    t.bundle_with(name, args, |c| {
        c["annotations"] = json!({
            "nsbox.network": "bridge",
            "nsbox.bridge": t.bridge(),
            "nsbox.subnet": t.subnet(),
        });
    })
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) of a process this test started.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill {pid} {sig}");
}

/// Polls the leak check until it is clean (a shim may be exiting).
#[track_caller]
fn assert_nothing_left(t: &Test, after: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leaks = t.leaks();
        if leaks.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("after {after}, still there:\n  {}", leaks.join("\n  "));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn runtime_killed_at_every_step_of_create_leaves_nothing() {
    let Some(t) = Test::new("runtime_killed_at_every_step_of_create") else {
        return;
    };
    let b = bridged(&t, "fk", &[MT, "sleep", "30"]);
    let pid_file = t.work.join("fk.pid");
    for point in points("create") {
        let id = format!("fk-{point}");
        let mut cmd = t.command(&[
            "create",
            "-b",
            b.path(),
            "--pid-file",
            pid_file.to_str().unwrap(),
            &id,
        ]);
        cmd.env("NSBOX_FAULT", format!("create:{point}"));
        let mut child = cmd
            .stdout(std::fs::File::create(t.ctr_stdout(&id)).unwrap())
            .stderr(std::fs::File::create(t.ctr_stderr(&id)).unwrap())
            .spawn()
            .unwrap();
        let status = wait_timeout(&mut child, TIMEOUT).expect("create with a fault hung");
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "{point}: create was not killed there: {status:?}, stderr {:?}",
            read_lossy(&t.ctr_stderr(&id))
        );
        // The state the dead create left must read truthfully, whatever it is.
        let st = t.rt(&["state", &id]);
        if st.success() {
            let s = st.json();
            let status = s["status"].as_str().unwrap_or_default().to_string();
            assert!(
                ["creating", "created", "stopped"].contains(&status.as_str()),
                "{point}: {s}"
            );
            if let Some(pid) = s["pid"].as_i64().filter(|&p| p > 0) {
                t.track(pid as i32, "init of a killed create");
            }
        }
        t.rt(&["delete", "--force", &id]).ok();
        assert_nothing_left(&t, &format!("a create killed {point} and delete --force"));
        // The ID is free again, and works.
        t.create(&b, &id).ok();
        t.rt(&["delete", "--force", &id]).ok();
        assert_nothing_left(&t, &format!("the second create of {id}"));
        let _ = std::fs::remove_file(&pid_file);
    }
}

/// The shim killed at each step of making the container: `create` fails
/// with a clear error, and what the shim had made (tiny-init, the cgroup,
/// the network) is rolled back by the runtime, with no `delete` needed.
#[test]
fn shim_killed_at_every_step_of_create_leaves_nothing() {
    let Some(t) = Test::new("shim_killed_at_every_step_of_create") else {
        return;
    };
    let b = bridged(&t, "sf", &[MT, "sleep", "30"]);
    for point in points("shim") {
        let id = format!("sf-{point}");
        let mut cmd = t.command(&["create", "-b", b.path(), &id]);
        cmd.env("NSBOX_FAULT", format!("shim:{point}"));
        let out = t.exec_to(cmd, &t.ctr_stdout(&id), &t.ctr_stderr(&id), TIMEOUT);
        out.fails_with(&id, &["the shim exited before it answered"]);
        assert!(!t.root.join(&id).exists(), "{point}: state left behind");
        assert_nothing_left(&t, &format!("a shim killed {point}"));
        // The ID is free again, and works.
        t.create(&b, &id).ok();
        t.rt(&["delete", "--force", &id]).ok();
        assert_nothing_left(&t, &format!("the second create of {id}"));
    }
}

#[test]
fn shim_killed_under_a_running_container() {
    let Some(t) = Test::new("shim_killed_under_a_running_container") else {
        return;
    };
    let b = bridged(&t, "sk", &[MT, "sleep", "60"]);
    for (id, finish) in [("sk-kill", "kill"), ("sk-force", "delete")] {
        t.run_detached(&b, id).ok();
        let pid = t.state(id)["pid"].as_i64().unwrap() as i32;
        let shim = t.shim_pid(id);
        signal(shim, libc::SIGKILL);
        wait_for("the shim to die", Duration::from_secs(5), || {
            let alive = proc_stat(shim).is_some_and(|(state, _, _)| state != "Z");
            (!alive).then_some(())
        });
        // The workload lives on without its shim, and `state` says so.
        assert_eq!(t.status(id), "running");
        assert!(proc_stat(pid).is_some(), "tiny-init died with its shim");
        if finish == "kill" {
            t.rt(&["kill", id, "KILL"]).ok();
            t.wait_status(id, "stopped");
            t.rt(&["delete", id]).ok();
        } else {
            t.rt(&["delete", "--force", id]).ok();
        }
        assert_nothing_left(&t, &format!("the shim of {id} was killed and {finish}"));
    }
}

#[test]
fn init_killed_is_recorded_as_137() {
    let Some(t) = Test::new("init_killed_is_recorded_as_137") else {
        return;
    };
    let b = t.bundle("ik", &[MT, "sleep", "60"]);
    t.run_detached(&b, "ik").ok();
    let pid = t.state("ik")["pid"].as_i64().unwrap() as i32;
    signal(pid, libc::SIGKILL);
    let s = t.wait_status("ik", "stopped");
    assert_eq!(s["exitCode"], json!(137), "{s}");
    t.rt(&["delete", "ik"]).ok();
}

#[test]
fn start_is_bounded_when_the_shim_or_init_stops_answering() {
    let Some(t) = Test::new("start_is_bounded_when_stopped") else {
        return;
    };
    let b = t.bundle("st", &[MT, "sleep", "60"]);
    // A shim that stops answering: the runtime gives up on its own.
    t.create(&b, "st-shim").ok();
    let shim = t.shim_pid("st-shim");
    signal(shim, libc::SIGSTOP);
    let mut cmd = t.command(&["start", "st-shim"]);
    cmd.env("NSBOX_START_TIMEOUT_MS", "300");
    let began = Instant::now();
    let out = t.rt_cmd(cmd);
    out.fails_with("st-shim", &["no answer within"]);
    assert!(began.elapsed() < Duration::from_secs(20), "{out:?}");
    // delete --force copes with a shim that is still stopped.
    t.rt(&["delete", "--force", "st-shim"]).ok();
    assert_nothing_left(&t, "delete --force of a container with a stopped shim");

    // A tiny-init that stops answering: the shim gives up and says why.
    let mut cmd = t.command(&["create", "-b", b.path(), "st-init"]);
    cmd.env("NSBOX_START_TIMEOUT_MS", "300");
    t.exec_to(
        cmd,
        &t.ctr_stdout("st-init"),
        &t.ctr_stderr("st-init"),
        TIMEOUT,
    )
    .ok();
    t.track_state("st-init");
    let init = t.state("st-init")["pid"].as_i64().unwrap() as i32;
    signal(init, libc::SIGSTOP);
    let began = Instant::now();
    let out = t.rt(&["start", "st-init"]);
    out.fails_with("st-init", &["tiny-init", "no answer within"]);
    assert!(began.elapsed() < Duration::from_secs(20), "{out:?}");
    t.rt(&["delete", "--force", "st-init"]).ok();
    assert_nothing_left(&t, "delete --force of a container with a stopped tiny-init");
}

/// Mounts a small tmpfs over the test's state root; unmounted on drop.
struct TinyRoot<'a>(&'a Test);

impl<'a> TinyRoot<'a> {
    fn mount(t: &'a Test, opts: &str) -> TinyRoot<'a> {
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "nsbox-tiny", t.root_str()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs on {}", t.root.display());
        TinyRoot(t)
    }
}

impl Drop for TinyRoot<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .args(["-l", self.0.root_str()])
            .status();
    }
}

#[test]
fn a_full_or_read_only_state_root_fails_clearly_and_rolls_back() {
    let Some(t) = Test::new("full_or_read_only_state_root") else {
        return;
    };
    let b = t.bundle("fr", &[MT, "exit", "0"]);
    {
        let _m = TinyRoot::mount(&t, "ro,size=64k");
        let out = t.create(&b, "ro1");
        out.fails_with("ro1", &["read-only file system"]);
    }
    {
        let _m = TinyRoot::mount(&t, "size=64k");
        // Fill it: the directory can still be made, state.json cannot.
        let filler = t.root.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
        drop(f);
        let out = t.create(&b, "full1");
        out.fails_with("full1", &["no space left on device"]);
        let left: Vec<_> = std::fs::read_dir(&t.root)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, vec!["filler".to_string()], "rollback left entries");
        std::fs::remove_file(&filler).unwrap();
    }
    assert_nothing_left(&t, "creates on a full and a read-only state root");
}

#[test]
fn a_vanished_bundle_or_a_failing_mount_fails_clearly_and_rolls_back() {
    let Some(t) = Test::new("vanished_bundle_or_failing_mount") else {
        return;
    };
    let gone = t.work.join("no-such-bundle");
    let out = t.rt(&["create", "-b", gone.to_str().unwrap(), "vb1"]);
    out.fails_with("vb1", &["bundle", "no such file or directory"]);

    let b = t.bundle_with("vr", &[MT, "exit", "0"], |c| {
        c["root"]["path"] = json!("/tmp/nsbox-t/no-such-rootfs");
    });
    t.create(&b, "vr1").fails_with("vr1", &["rootfs"]);

    let b = t.bundle_with("fm", &[MT, "exit", "0"], |c| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "destination": "/mnt", "type": "nsbox-no-such-fs", "source": "none" }));
    });
    t.create(&b, "fm1").fails_with("fm1", &["/mnt"]);
    // The bundle vanishing after create does not stop the container's life.
    let b = t.bundle("vl", &[MT, "sleep", "60"]);
    t.create(&b, "vl1").ok();
    std::fs::remove_dir_all(&b.dir).unwrap();
    t.rt(&["start", "vl1"]).ok();
    assert_eq!(t.status("vl1"), "running");
    t.rt(&["delete", "--force", "vl1"]).ok();
    assert_nothing_left(&t, "failed creates");
}
