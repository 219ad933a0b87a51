//! cgroups on this host's layout: limits read back from the host's
//! cgroupfs, enforced from inside (OOM kill, fork bomb, devices), the
//! freezer, `update`, and the cgroup gone after `delete` (the harness's
//! leak check also looks after every test). Each test reads the files of
//! the layout it runs on: v1 (and hybrid) here, v2 in `make
//! test-cgroup2`'s virtual machine, which runs this file too.

mod common;

use common::*;
use std::fs;
use std::time::Duration;

#[track_caller]
fn read_cg(controller: &str, rel: &str, file: &str) -> String {
    read_cgroup_file(controller, rel, file)
}

fn with_resources(resources: Value) -> impl FnOnce(&mut Value) {
    move |c: &mut Value| c["linux"]["resources"] = resources
}

#[test]
fn memory_limit_applied_and_oom_kill_reported() {
    let Some(t) = Test::new("memory_limit_applied_and_oom_kill_reported") else {
        return;
    };
    let limit = 32u64 << 20;
    let res = json!({ "memory": { "limit": limit, "swap": limit } });
    let b = t.bundle_with("b", &[MT, "sleep", "30"], with_resources(res.clone()));
    t.run_detached(&b, "mem").ok();
    let path = t.default_cgroup("mem");
    if is_v2() {
        assert_eq!(read_cg("memory", &path, "memory.max"), limit.to_string());
        // OCI's swap is memory plus swap; v2's swap.max is swap alone.
        assert_eq!(read_cg("memory", &path, "memory.swap.max"), "0");
    } else {
        assert_eq!(
            read_cg("memory", &path, "memory.limit_in_bytes"),
            limit.to_string()
        );
        assert_eq!(
            read_cg("memory", &path, "memory.memsw.limit_in_bytes"),
            limit.to_string()
        );
    }
    let pid = t.state("mem")["pid"].as_i64().unwrap() as i32;
    assert_eq!(
        proc_cgroup(pid, "memory").as_deref(),
        Some(path.as_str()),
        "tiny-init is not in the container's memory cgroup"
    );
    t.rt(&["kill", "mem", "KILL"]).ok();
    t.wait_status("mem", "stopped");
    t.rt(&["delete", "mem"]).ok();

    // A workload that needs more than the limit is killed by the OOM
    // killer: 137, and `state` says so.
    let b = t.bundle_with("hog", &[MT, "hog", "256"], with_resources(res));
    t.run_detached(&b, "hog").ok();
    let s = t.stopped_with_code("hog");
    assert_eq!(s["exitCode"], 137, "{s}");
    let kills = s["annotations"]["nsbox.oom-kills"]
        .as_str()
        .unwrap_or_else(|| panic!("no OOM annotation in state: {s}"));
    assert!(kills.parse::<u64>().unwrap() >= 1, "{s}");
    assert!(
        !read_lossy(&t.ctr_stdout("hog")).contains("allocated"),
        "the hog got its memory"
    );
    t.rt(&["delete", "hog"]).ok();

    // The same from `run`: the exit code is the OOM kill's.
    let b = t.bundle_with(
        "hog2",
        &[MT, "hog", "256"],
        with_resources(json!({ "memory": { "limit": limit } })),
    );
    t.run(&b, "hog2").code_is(137);
}

#[test]
fn pids_limit_bounds_a_fork_bomb() {
    let Some(t) = Test::new("pids_limit_bounds_a_fork_bomb") else {
        return;
    };
    let b = t.bundle_with(
        "b",
        &[
            "sh",
            "-c",
            // ash gives up at the first fork that fails: do it in a
            // subshell, and count with builtins (nothing is left to fork).
            "(for i in $(seq 1 40); do sleep 3 & done) 2>/dev/null; \
             set -- /proc/[0-9]*; echo $#",
        ],
        with_resources(json!({ "pids": { "limit": 8 } })),
    );
    let out = t.run(&b, "bomb");
    out.ok();
    let n: u32 = out
        .stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{out:?}"));
    assert!(
        (3..=8).contains(&n),
        "{n} processes in a container limited to 8"
    );
}

#[test]
fn cpu_and_pids_values_written_and_updated() {
    let Some(t) = Test::new("cpu_and_pids_values_written_and_updated") else {
        return;
    };
    let b = t.bundle_with(
        "b",
        &[MT, "sleep", "30"],
        with_resources(json!({
            "cpu": { "shares": 512, "quota": 50000, "period": 200000, "cpus": "0", "mems": "0" },
            "pids": { "limit": 64 },
            "memory": { "limit": 100 << 20, "reservation": 50 << 20 }
        })),
    );
    t.run_detached(&b, "cpu").ok();
    let p = t.default_cgroup("cpu");
    if is_v2() {
        // runc's conversion: 1 + (shares - 2) * 9999 / 262142.
        assert_eq!(read_cg("cpu", &p, "cpu.weight"), "20");
        assert_eq!(read_cg("cpu", &p, "cpu.max"), "50000 200000");
        assert_eq!(
            read_cg("memory", &p, "memory.low"),
            (50u64 << 20).to_string()
        );
    } else {
        assert_eq!(read_cg("cpu", &p, "cpu.shares"), "512");
        assert_eq!(read_cg("cpu", &p, "cpu.cfs_quota_us"), "50000");
        assert_eq!(read_cg("cpu", &p, "cpu.cfs_period_us"), "200000");
        assert_eq!(
            read_cg("memory", &p, "memory.soft_limit_in_bytes"),
            (50u64 << 20).to_string()
        );
    }
    assert_eq!(read_cg("cpuset", &p, "cpuset.cpus"), "0");
    assert_eq!(read_cg("cpuset", &p, "cpuset.mems"), "0");
    assert_eq!(read_cg("pids", &p, "pids.max"), "64");

    let file = t.work.join("update.json");
    fs::write(
        &file,
        json!({ "memory": { "limit": 200 << 20 }, "pids": { "limit": 32 },
                "cpu": { "quota": 20000 } })
        .to_string(),
    )
    .unwrap();
    t.rt(&["update", "--resources", file.to_str().unwrap(), "cpu"])
        .ok();
    assert_eq!(read_cg("pids", &p, "pids.max"), "32");
    if is_v2() {
        assert_eq!(
            read_cg("memory", &p, "memory.max"),
            (200u64 << 20).to_string()
        );
        assert_eq!(
            read_cg("cpu", &p, "cpu.max"),
            "20000 200000",
            "the period left as it was"
        );
        assert_eq!(read_cg("cpu", &p, "cpu.weight"), "20", "left as it was");
    } else {
        assert_eq!(
            read_cg("memory", &p, "memory.limit_in_bytes"),
            (200u64 << 20).to_string()
        );
        assert_eq!(read_cg("cpu", &p, "cpu.cfs_quota_us"), "20000");
        assert_eq!(read_cg("cpu", &p, "cpu.cfs_period_us"), "200000");
        assert_eq!(read_cg("cpu", &p, "cpu.shares"), "512", "left as it was");
    }

    // What nsbox cannot do is refused by name.
    fs::write(
        &file,
        json!({ "cpu": { "realtimeRuntime": 1000 } }).to_string(),
    )
    .unwrap();
    t.rt(&["update", "--resources", file.to_str().unwrap(), "cpu"])
        .fails_with("cpu", &["realtimeRuntime"]);
    t.rt(&["kill", "cpu", "KILL"]).ok();
    t.wait_status("cpu", "stopped");
    // A stopped container has nothing left to update, however good the
    // resources.
    fs::write(&file, json!({ "pids": { "limit": 16 } }).to_string()).unwrap();
    t.rt(&["update", "--resources", file.to_str().unwrap(), "cpu"])
        .fails_with("cpu", &["cannot update a stopped container"]);
    t.rt(&["delete", "cpu"]).ok();
}

#[test]
fn devices_deny_all_keeps_the_standard_devices_only() {
    let Some(t) = Test::new("devices_deny_all_keeps_the_standard_devices_only") else {
        return;
    };
    let script = "echo x > /dev/null && echo null-ok; \
                  head -c 4 /dev/urandom > /dev/null && echo urandom-ok; \
                  mknod /tmp/sda b 8 0 && echo mknod-ok || echo mknod-refused";
    let all_caps = |c: &mut Value| {
        c["process"]["capabilities"] = caps_json(&host_caps());
        c["linux"]["resources"] = json!({ "devices": [{ "allow": false, "access": "rwm" }] });
    };
    let b = t.bundle_with("b", &["sh", "-c", script], all_caps);
    let out = t.run(&b, "dev");
    out.ok();
    assert_eq!(
        out.stdout_lines(),
        ["null-ok", "urandom-ok", "mknod-refused"],
        "{out:?}"
    );

    // The control: without the rule, the same CAP_MKNOD makes the node.
    let b = t.bundle_with("b2", &["sh", "-c", script], |c| {
        c["process"]["capabilities"] = caps_json(&host_caps());
    });
    let out = t.run(&b, "dev2");
    out.ok();
    assert_eq!(
        out.stdout_lines(),
        ["null-ok", "urandom-ok", "mknod-ok"],
        "{out:?}"
    );
}

fn lines(t: &Test, id: &str) -> usize {
    read_lossy(&t.ctr_stdout(id)).lines().count()
}

#[test]
fn pause_freezes_and_resume_thaws() {
    let Some(t) = Test::new("pause_freezes_and_resume_thaws") else {
        return;
    };
    let counter = &["sh", "-c", "while true; do echo tick; sleep 0.02; done"];
    let b = t.bundle("b", counter);
    t.run_detached(&b, "frz").ok();
    wait_for("ticks", Duration::from_secs(5), || {
        (lines(&t, "frz") > 3).then_some(())
    });
    t.rt(&["pause", "frz"]).ok();
    assert_eq!(t.status("frz"), "paused");
    let p = t.default_cgroup("frz");
    if is_v2() {
        assert_eq!(read_cg("freezer", &p, "cgroup.freeze"), "1");
        let events = read_cg("freezer", &p, "cgroup.events");
        assert!(events.lines().any(|l| l == "frozen 1"), "{events}");
    } else {
        assert_eq!(read_cg("freezer", &p, "freezer.state"), "FROZEN");
    }
    let n = lines(&t, "frz");
    // The test is about time passing with nothing happening: a counter
    // that ticks every 20 ms gets 300 ms to tick while frozen.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(lines(&t, "frz"), n, "the counter went on while paused");
    t.rt(&["pause", "frz"]).fails_with("frz", &["paused"]);
    t.rt(&["resume", "frz"]).ok();
    assert_eq!(t.status("frz"), "running");
    if is_v2() {
        assert_eq!(read_cg("freezer", &p, "cgroup.freeze"), "0");
    } else {
        assert_eq!(read_cg("freezer", &p, "freezer.state"), "THAWED");
    }
    wait_for("ticks after resume", Duration::from_secs(5), || {
        (lines(&t, "frz") > n + 3).then_some(())
    });
    t.rt(&["resume", "frz"]).fails_with("frz", &["not paused"]);

    // kill of a paused container: SIGKILL lands once thawed.
    t.rt(&["pause", "frz"]).ok();
    t.rt(&["kill", "frz", "KILL"]).ok();
    let s = t.stopped_with_code("frz");
    assert_eq!(s["exitCode"], 137, "{s}");
    t.rt(&["delete", "frz"]).ok();

    // delete --force of a paused one.
    t.run_detached(&b, "frz2").ok();
    t.rt(&["pause", "frz2"]).ok();
    t.rt(&["delete", "frz2"]).fails_with("frz2", &["paused"]);
    t.rt(&["delete", "--force", "frz2"]).ok();
}

/// A v1 cpuset nsbox made has the root's CPUs and nodes. Under a level
/// that balances (the root, by the kernel's default), it does not ask for
/// balancing of its own, so giving it CPUs and removing it rebuild no
/// scheduling domains; with none above (a host isolating CPUs), it keeps
/// the kernel's default, as runc leaves it.
#[track_caller]
fn v1_cpuset_is_the_roots_without_balancing_of_its_own(rel: &str) {
    for f in ["cpuset.cpus", "cpuset.mems"] {
        assert_eq!(
            read_cg("cpuset", rel, f),
            read_cg("cpuset", "/", f),
            "{rel} {f}"
        );
    }
    let flag = "cpuset.sched_load_balance";
    let above = std::path::Path::new(rel).ancestors().skip(1);
    let covered = above
        .map(|a| a.to_string_lossy().into_owned())
        .any(|a| read_cg("cpuset", &a, flag) == "1");
    let want = if covered { "0" } else { "1" };
    assert_eq!(read_cg("cpuset", rel, flag), want, "{rel}");
}

#[test]
fn cgroup_made_at_create_and_removed_at_delete() {
    let Some(t) = Test::new("cgroup_made_at_create_and_removed_at_delete") else {
        return;
    };
    let b = t.bundle("b", &[MT, "sleep", "30"]);
    t.create(&b, "c1").ok();
    let p = t.default_cgroup("c1");
    // v1: a directory in each hierarchy; v2: the one.
    let controllers: &[&str] = if is_v2() {
        &["memory"]
    } else {
        &[
            "memory", "pids", "freezer", "devices", "cpu", "blkio", "cpuset",
        ]
    };
    let pid = t.state("c1")["pid"].as_i64().unwrap() as i32;
    // tiny-init's clone child moved itself in (v1) or was born there (v2)
    // before anything else: it alone is in the cgroup, and the shim stays
    // where its caller is.
    for c in controllers {
        assert!(controller_dir(c, &p).is_dir(), "no {c} cgroup {p}");
        assert_eq!(read_cg(c, &p, "cgroup.procs"), pid.to_string(), "{c}");
    }
    let shim = ppid(pid).unwrap();
    assert_eq!(comm(shim).as_deref(), Some("shim"));
    assert_eq!(
        fs::read_to_string(format!("/proc/{shim}/cgroup")).unwrap(),
        fs::read_to_string("/proc/self/cgroup").unwrap(),
        "the shim is not in its caller's cgroups"
    );
    if !is_v2() {
        v1_cpuset_is_the_roots_without_balancing_of_its_own(&p);
    }
    let ps = t.rt(&["ps", "--format", "json", "c1"]);
    ps.ok();
    assert_eq!(ps.json(), json!([pid]));
    t.rt(&["delete", "c1"]).ok();
    assert!(!controller_dir("memory", &p).exists());

    // A cgroupsPath as Podman gives it: the leaf is made and removed; a
    // parent that is not nsbox's own stays (runc does the same).
    let parent = format!("/nsbox-t-{}", t.cgroup_scope());
    let leaf = format!("{parent}/libpod-c2");
    t.track_cgroup(&leaf);
    t.track_cgroup(&parent);
    let b = t.bundle_with("b2", &[MT, "sleep", "30"], |c| {
        c["linux"]["cgroupsPath"] = json!(leaf);
        c["linux"]["resources"] = json!({ "pids": { "limit": 2048 } });
    });
    t.create(&b, "c2").ok();
    assert_eq!(read_cg("pids", &leaf, "pids.max"), "2048");
    if !is_v2() {
        v1_cpuset_is_the_roots_without_balancing_of_its_own(&parent);
        v1_cpuset_is_the_roots_without_balancing_of_its_own(&leaf);
    }
    if is_v2() {
        // The parent passes the controllers on to the leaf.
        let enabled = read_cg("pids", &parent, "cgroup.subtree_control");
        for c in ["cpu", "memory", "pids"] {
            assert!(enabled.split(' ').any(|e| e == c), "{c}: {enabled}");
        }
    }
    t.rt(&["start", "c2"]).ok();
    t.rt(&["delete", "--force", "c2"]).ok();
    assert!(!controller_dir("pids", &leaf).exists());
    assert!(controller_dir("pids", &parent).exists());

    // After a shim that died: `delete --force` removes the cgroup too.
    t.create(&b, "c3").ok();
    let init = t.state("c3")["pid"].as_i64().unwrap() as i32;
    let shim = ppid(init).unwrap();
    assert_eq!(comm(shim).as_deref(), Some("shim"));
    // SAFETY: kill(2) of the shim this test's create started.
    unsafe { libc::kill(shim, libc::SIGKILL) };
    wait_for("the shim to die", Duration::from_secs(5), || {
        let gone = match proc_stat(shim) {
            None => true,
            Some(s) => s.0 == "Z",
        };
        gone.then_some(())
    });
    t.rt(&["delete", "--force", "c3"]).ok();
    assert!(!controller_dir("pids", &leaf).exists());
    for h in cgroup_hierarchies() {
        let _ = fs::remove_dir(h.join(parent.trim_start_matches('/')));
    }
}

#[test]
fn bad_cgroup_settings_are_refused() {
    let Some(t) = Test::new("bad_cgroup_settings_are_refused") else {
        return;
    };
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({ "linux": { "cgroupsPath": "machine.slice:libpod:x" } }),
            "--systemd-cgroup",
        ),
        (json!({ "linux": { "cgroupsPath": "/a/../../b" } }), ".."),
        (
            json!({ "linux": { "resources": { "hugepageLimits": [{ "pageSize": "3MB", "limit": 1 }] } } }),
            "hugepageLimits",
        ),
        if is_v2() {
            // A file of the container's cgroup, never a path out of it.
            (
                json!({ "linux": { "resources": { "unified": { "../memory.max": "1" } } } }),
                "unified",
            )
        } else {
            (
                json!({ "linux": { "resources": { "unified": { "memory.high": "1" } } } }),
                "v2",
            )
        },
    ];
    for (i, (patch, needle)) in cases.into_iter().enumerate() {
        let b = t.bundle_with(&format!("b{i}"), &["true"], |c| {
            for (k, v) in patch["linux"].as_object().unwrap() {
                c["linux"][k] = v.clone();
            }
        });
        let id = format!("bad{i}");
        t.create(&b, &id).fails_with(&id, &[needle]);
    }
    // --systemd-cgroup: tests/systemd.rs.
}

#[test]
fn the_container_sees_its_own_cgroup() {
    let Some(t) = Test::new("the_container_sees_its_own_cgroup") else {
        return;
    };
    let script = if is_v2() {
        "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; \
         grep ^0:: /proc/self/cgroup; \
         echo 5 2>/dev/null > /sys/fs/cgroup/pids.max || echo read-only"
    } else {
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; \
         grep :memory: /proc/self/cgroup; \
         echo 5 2>/dev/null > /sys/fs/cgroup/pids/pids.max || echo read-only"
    };
    let setup = |cgroupns: bool| {
        move |c: &mut Value| {
            c["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]
            }));
            c["linux"]["resources"] =
                json!({ "memory": { "limit": 48 << 20 }, "pids": { "limit": 99 } });
            if cgroupns {
                c["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({ "type": "cgroup" }));
            }
        }
    };
    for (cgroupns, id, own) in [
        (false, "own", t.default_cgroup("own")),
        (true, "ns", "/".to_string()),
    ] {
        let b = t.bundle_with(id, &["sh", "-c", script], setup(cgroupns));
        let out = t.run(&b, id);
        out.ok();
        let lines = out.stdout_lines();
        assert_eq!(lines.len(), 4, "{out:?}");
        assert_eq!(lines[3], "read-only", "{out:?}");
        assert_eq!(lines[0], (48u64 << 20).to_string(), "{out:?}");
        assert_eq!(lines[1], "99", "{out:?}");
        let (_, seen) = lines[2].rsplit_once(':').unwrap();
        assert_eq!(seen, own, "cgroupns {cgroupns}: {out:?}");
    }
}

#[test]
fn a_cgroup_that_holds_another_containers_processes_is_left_to_it() {
    let Some(t) = Test::new("a_cgroup_that_holds_another_containers_processes_is_left_to_it")
    else {
        return;
    };
    let path = format!("/nsbox-t-shared-{}", t.cgroup_scope());
    t.track_cgroup(&path);
    let b = t.bundle_with("b", &[MT, "sleep", "60"], |c| {
        c["linux"]["cgroupsPath"] = json!(path);
    });
    t.create(&b, "one").ok();
    let init = t.state("one")["pid"].as_i64().unwrap() as i32;
    t.create(&b, "two")
        .fails_with("two", &["already holds processes"]);
    // Nor one that failed before it came to the cgroup (the runtime makes
    // it once the shim has `Create`): fds 3 to 66 are not all open.
    t.rt(&["create", "-b", b.path(), "--preserve-fds", "64", "three"])
        .fails_with("three", &["--preserve-fds 64"]);
    // The failed creates' undo removed nothing of the first's.
    let st = t.state("one");
    assert_eq!(st["status"], "created", "{st}");
    assert_eq!(proc_cgroup(init, "pids").as_deref(), Some(path.as_str()));
    t.rt(&["delete", "--force", "one"]).ok();
    assert!(!controller_dir("pids", &path).exists());
}

/// The runtime makes the cgroup while the shim prepares the clone (it has
/// `Create` by then): a value the kernel refuses then fails the create
/// with one line, and the shim, told so, undoes its part and leaves; no
/// state, cgroup or shim is left. Validation cannot see this one coming:
/// CPU 1023 is a CPU number, just not this host's.
#[test]
fn a_value_the_kernel_refuses_fails_the_create_after_the_shim_started() {
    let Some(t) = Test::new("a_value_the_kernel_refuses_fails_the_create_after_the_shim_started")
    else {
        return;
    };
    let b = t.bundle_with("b", &["true"], |c| {
        c["linux"]["resources"] = json!({ "cpu": { "cpus": "1023" } });
    });
    let path = t.default_cgroup("cpus");
    for out in [t.create(&b, "cpus"), t.run(&b, "cpus")] {
        out.fails_with("cpus", &["cgroup", "cpuset.cpus"]);
        assert!(!t.root.join("cpus").exists(), "state left: {out:?}");
        assert!(!controller_dir("cpuset", &path).exists(), "cgroup left");
        assert!(!controller_dir("pids", &path).exists(), "cgroup left");
    }
}
