//! `--systemd-cgroup`: the container's cgroup as a transient scope unit of
//! systemd. Where systemd runs (`make test-cgroup2`'s systemd VM), each
//! test checks the scope from both sides, systemd's (`systemctl show`) and
//! the cgroup files'; where it does not (this development machine), the
//! flag must be one clear line that says so, and nothing is left behind.

mod common;

use common::systemd::{refused_without_systemd, systemd_runs};
use common::*;
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

/// `systemctl show -p PROP UNIT`'s value.
fn unit_property(unit: &str, prop: &str) -> String {
    let out = Command::new("systemctl")
        .args(["show", "-p", prop, "--value", unit])
        .output()
        .expect("systemctl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The cgroup v2 path of a process.
fn cgroup_of(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_default()
        .to_string()
}

fn threads_of(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// A name no other test (or an earlier run) uses: systemd's unit names are
/// one namespace for the whole host, whatever the state root.
fn unique(t: &Test, what: &str) -> String {
    format!("{what}{}", t.cgroup_scope().replace(['.', '@'], "-"))
}

#[test]
fn the_scope_holds_the_container_with_its_limits() {
    let Some(t) = Test::new("the_scope_holds_the_container_with_its_limits") else {
        return;
    };
    if !systemd_runs() {
        return refused_without_systemd(&t, "create");
    }
    let name = unique(&t, "lim");
    let unit = format!("nsbox-t-{name}.scope");
    let cgroup = format!("/machine.slice/{unit}");
    t.track_cgroup(&cgroup);
    let b = t.bundle_with("b", &[MT, "sleep", "60"], |c: &mut Value| {
        c["linux"]["cgroupsPath"] = json!(format!("machine.slice:nsbox-t:{name}"));
        c["linux"]["resources"] = json!({
            "memory": { "limit": 64u64 << 20 },
            "pids": { "limit": 42 },
            "cpu": { "shares": 1024, "quota": 50000, "period": 100000 },
        });
    });
    t.rt(&["--systemd-cgroup", "create", "-b", b.path(), "c1"])
        .ok();
    let init = t.state("c1")["pid"].as_i64().unwrap() as i32;
    assert_eq!(cgroup_of(init), cgroup, "tiny-init is not in the scope");
    // systemd's view and the files agree.
    assert_eq!(unit_property(&unit, "ActiveState"), "active");
    assert_eq!(unit_property(&unit, "Delegate"), "yes");
    assert_eq!(unit_property(&unit, "MemoryMax"), (64u64 << 20).to_string());
    assert_eq!(unit_property(&unit, "TasksMax"), "42");
    assert_eq!(unit_property(&unit, "CPUQuotaPerSecUSec"), "500ms");
    assert_eq!(
        read_cgroup_file("memory", &cgroup, "memory.max"),
        (64u64 << 20).to_string()
    );
    assert_eq!(read_cgroup_file("pids", &cgroup, "pids.max"), "42");
    assert_eq!(read_cgroup_file("cpu", &cgroup, "cpu.max"), "50000 100000");
    assert_eq!(read_cgroup_file("cpu", &cgroup, "cpu.weight"), "39");
    // The D-Bus exchange left no thread in the shim (it runs on a runtime
    // of its own, dropped after the call).
    let shim = ppid(init).unwrap();
    assert_eq!(comm(shim).as_deref(), Some("shim"));
    assert_eq!(
        threads_of(shim),
        "1",
        "the shim has threads after the D-Bus call"
    );

    // `update` changes both, so that systemd does not put the old value back.
    let res = t.work.join("res.json");
    std::fs::write(&res, json!({ "pids": { "limit": 99 } }).to_string()).unwrap();
    t.rt(&["update", "-r", res.to_str().unwrap(), "c1"]).ok();
    assert_eq!(read_cgroup_file("pids", &cgroup, "pids.max"), "99");
    assert_eq!(unit_property(&unit, "TasksMax"), "99");
    t.rt(&["start", "c1"]).ok();
    t.rt(&["pause", "c1"]).ok();
    assert_eq!(read_cgroup_file("pids", &cgroup, "cgroup.freeze"), "1");
    t.rt(&["resume", "c1"]).ok();
    let ps = t.rt(&["ps", "--format", "json", "c1"]);
    assert!(
        ps.json().as_array().is_some_and(|a| a.len() == 2),
        "{}",
        ps.json()
    );

    t.rt(&["delete", "--force", "c1"]).ok();
    assert!(
        !controller_dir("pids", &cgroup).exists(),
        "the scope's cgroup is left"
    );
    assert_eq!(unit_property(&unit, "LoadState"), "not-found");
}

#[test]
fn default_names_and_a_foreground_run() {
    let Some(t) = Test::new("default_names_and_a_foreground_run") else {
        return;
    };
    if !systemd_runs() {
        return refused_without_systemd(&t, "create");
    }
    // No cgroupsPath: nsbox-ID.scope in system.slice, as runc's runc-ID.
    let id = unique(&t, "d");
    let unit = format!("nsbox-{id}.scope");
    let cgroup = format!("/system.slice/{unit}");
    t.track_cgroup(&cgroup);
    let b = t.bundle("b", &[MT, "sleep", "60"]);
    t.rt(&["--systemd-cgroup", "run", "-d", "-b", b.path(), &id])
        .ok();
    let init = t.state(&id)["pid"].as_i64().unwrap() as i32;
    assert_eq!(cgroup_of(init), cgroup);
    assert_eq!(unit_property(&unit, "Slice"), "system.slice");
    // The workload ends on its own: the scope goes with the container.
    t.rt(&["kill", &id, "KILL"]).ok();
    t.wait_status(&id, "stopped");
    t.rt(&["delete", &id]).ok();
    assert!(!controller_dir("pids", &cgroup).exists());
    assert_eq!(unit_property(&unit, "LoadState"), "not-found");

    // In the foreground: the exit code comes back, and the scope is gone
    // once `run` returns. A slice with dashes is a path of slices.
    let name = unique(&t, "fg");
    let cgroup = format!("/nsboxt.slice/nsboxt-a.slice/fg-{name}.scope");
    t.track_cgroup(&cgroup);
    let b = t.bundle_with("fg", &[MT, "exit", "3"], |c: &mut Value| {
        c["linux"]["cgroupsPath"] = json!(format!("nsboxt-a.slice:fg:{name}"));
    });
    t.rt(&["--systemd-cgroup", "run", "-b", b.path(), "fg"])
        .code_is(3);
    assert!(!controller_dir("pids", &cgroup).exists());
    // The slices are systemd's, which removes them once empty.
    let _ = Command::new("systemctl")
        .args(["stop", "nsboxt-a.slice", "nsboxt.slice"])
        .status();
}

#[test]
fn a_live_containers_scope_is_not_taken_over() {
    let Some(t) = Test::new("a_live_containers_scope_is_not_taken_over") else {
        return;
    };
    if !systemd_runs() {
        return refused_without_systemd(&t, "create");
    }
    let name = unique(&t, "dup");
    let cgroup = format!("/system.slice/nsbox-t-{name}.scope");
    t.track_cgroup(&cgroup);
    let b = t.bundle_with("b", &[MT, "sleep", "60"], |c: &mut Value| {
        c["linux"]["cgroupsPath"] = json!(format!(":nsbox-t:{name}"));
    });
    t.rt(&["--systemd-cgroup", "create", "-b", b.path(), "one"])
        .ok();
    let out = t.rt(&["--systemd-cgroup", "create", "-b", b.path(), "two"]);
    out.fails_with("two", &["systemd already has a unit", &name]);
    // The first is untouched, and the second left nothing.
    let init = t.state("one")["pid"].as_i64().unwrap() as i32;
    assert_eq!(cgroup_of(init), cgroup);
    assert!(!t.root.join("two").exists());
    t.rt(&["delete", "--force", "one"]).ok();
    wait_for("the scope to go", Duration::from_secs(10), || {
        (!controller_dir("pids", &cgroup).exists()).then_some(())
    });
}

#[test]
fn out_of_memory_in_a_scope() {
    let Some(t) = Test::new("out_of_memory_in_a_scope") else {
        return;
    };
    if !systemd_runs() {
        return refused_without_systemd(&t, "create");
    }
    let name = unique(&t, "oom");
    let unit = format!("nsbox-t-{name}.scope");
    t.track_cgroup(&format!("/system.slice/{unit}"));
    let limit = 32u64 << 20;
    let b = t.bundle_with("hog", &[MT, "hog", "256"], |c: &mut Value| {
        c["linux"]["cgroupsPath"] = json!(format!(":nsbox-t:{name}"));
        c["linux"]["resources"] = json!({ "memory": { "limit": limit, "swap": limit } });
    });
    t.rt(&["--systemd-cgroup", "run", "-d", "-b", b.path(), "hog"])
        .ok();
    let s = t.stopped_with_code("hog");
    assert_eq!(s["exitCode"], 137, "{s}");
    assert!(
        s["annotations"]["nsbox.oom-kills"]
            .as_str()
            .is_some_and(|k| k.parse::<u64>().unwrap_or(0) >= 1),
        "no OOM kill in the state: {s}"
    );
    t.rt(&["delete", "hog"]).ok();
    // A scope that systemd marked failed is forgotten too: the name is free.
    assert_eq!(unit_property(&unit, "LoadState"), "not-found");
}
