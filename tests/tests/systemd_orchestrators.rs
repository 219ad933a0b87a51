//! Orchestrators with their defaults on a systemd host: Podman's
//! `cgroup_manager = "systemd"` and Docker's `native.cgroupdriver=systemd`,
//! side by side with runc. They call the
//! runtime with `--systemd-cgroup` and a `slice:prefix:name` cgroupsPath;
//! each container's scope must be systemd's, with the limits asked for,
//! and gone with the container. Run in `make test-cgroup2`'s systemd VM;
//! where systemd does not run (this development machine), the runtime
//! must refuse the flag in one line, as Podman would show it.

mod common;

use common::docker::{Dockerd, Opts, IMAGE};
use common::podman::Podman;
use common::systemd::{refused_without_systemd, systemd_runs};
use common::*;
use std::fs;
use std::path::PathBuf;
use std::process::Output;

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// The scope of the container whose full id is `id`, as systemd's cgroup
/// manager names it: machine.slice/libpod-ID.scope.
fn scope_dir(id: &str) -> PathBuf {
    v2_root().join(format!("machine.slice/libpod-{id}.scope"))
}

fn argv(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn podman_scenario(p: &Podman, rt: &str) -> Vec<String> {
    let image = "localhost/nsbox-test:latest";
    let mut seen = Vec::new();
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec!["--runtime".into(), rt.into(), "run".into()];
        v.extend(["--network", "none"].iter().map(|s| s.to_string()));
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    // The container sees its own cgroup, with its limit.
    let v = base(&[
        "--rm",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        image,
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; exit 3",
    ]);
    let o = p.run(&argv(&v));
    seen.push(format!("run --rm: {:?} {:?}", o.status.code(), text(&o)));
    let v = base(&[
        "-d",
        "--name",
        "d1",
        "--memory",
        "64m",
        image,
        "sh",
        "-c",
        "trap 'exit 7' TERM; sleep 300 & wait",
    ]);
    let o = p.run(&argv(&v));
    seen.push(format!("run -d: {:?}", o.status.code()));
    let id = text(&p.run(&["inspect", "--format", "{{.Id}}", "d1"]));
    let scope = scope_dir(&id);
    seen.push(format!(
        "scope's memory.max: {:?}",
        fs::read_to_string(scope.join("memory.max"))
            .map(|s| s.trim().to_string())
            .map_err(|e| e.to_string())
    ));
    let o = p.run(&["exec", "d1", "sh", "-c", "cat /proc/self/cgroup; exit 5"]);
    seen.push(format!("exec: {:?} {:?}", o.status.code(), text(&o)));
    seen.push(format!(
        "pause: {:?}",
        p.run(&["pause", "d1"]).status.code()
    ));
    seen.push(format!(
        "frozen: {:?}",
        fs::read_to_string(scope.join("cgroup.freeze"))
            .map(|s| s.trim().to_string())
            .ok()
    ));
    seen.push(format!(
        "unpause: {:?}",
        p.run(&["unpause", "d1"]).status.code()
    ));
    seen.push(format!(
        "stop: {:?}",
        p.run(&["stop", "-t", "10", "d1"]).status.code()
    ));
    let o = p.run(&["inspect", "--format", "{{.State.ExitCode}}", "d1"]);
    seen.push(format!("exit code: {}", text(&o)));
    seen.push(format!("rm: {:?}", p.run(&["rm", "d1"]).status.code()));
    seen.push(format!("scope left: {}", scope.exists()));
    seen
}

#[test]
fn podman_with_systemds_cgroup_manager_runs_nsbox_as_it_runs_runc() {
    let Some(t) = Test::new("podman_systemd") else {
        return;
    };
    if !systemd_runs() {
        // What Podman's systemd manager gets from nsbox on a host without
        // systemd: one line that says why.
        return refused_without_systemd(&t, "create");
    }
    let p = Podman::with_test_image(&t, "systemd");
    let start = std::time::Instant::now();
    let runc = podman_scenario(&p, "runc");
    let runc_time = start.elapsed();
    let ours = podman_scenario(&p, bins().runtime.to_str().unwrap());
    eprintln!(
        "podman scenario: runc {:.1} s, nsbox {:.1} s",
        runc_time.as_secs_f64(),
        (start.elapsed() - runc_time).as_secs_f64()
    );
    assert_eq!(
        ours, runc,
        "nsbox under Podman's systemd manager differs from runc"
    );
    assert_eq!(ours[0], "run --rm: Some(3) \"67108864\\n50\"", "{ours:?}");
    assert!(ours[2].contains("67108864"), "{ours:?}");
    assert!(ours.last().unwrap().ends_with("false"), "{ours:?}");
}

/// The VM's kernel has AppArmor, the host no apparmor_parser: Docker
/// cannot load its default profile, for runc and nsbox alike.
fn docker_scenario(d: &Dockerd, rt: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let o = d.docker(&[
        "run",
        "--rm",
        "--runtime",
        rt,
        "--network",
        "none",
        "--security-opt",
        "apparmor=unconfined",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        IMAGE,
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; exit 3",
    ]);
    seen.push(format!("run --rm: {:?} {:?}", o.status.code(), text(&o)));
    let name = format!("d-{rt}");
    let id = d.ok(&[
        "run",
        "-d",
        "--runtime",
        rt,
        "--name",
        &name,
        "--network",
        "none",
        "--security-opt",
        "apparmor=unconfined",
        "--memory",
        "64m",
        IMAGE,
        "sh",
        "-c",
        "trap 'exit 7' TERM; sleep 300 & wait",
    ]);
    // systemd's driver: the cgroup parent's slice, docker-ID.scope in it.
    let scope = v2_root()
        .join(d.cgroup_parent.trim_start_matches('/'))
        .join(format!("docker-{}.scope", id.trim()));
    seen.push(format!(
        "scope's memory.max: {:?}",
        fs::read_to_string(scope.join("memory.max"))
            .map(|s| s.trim().to_string())
            .map_err(|e| e.to_string())
    ));
    let o = d.docker(&["exec", &name, "sh", "-c", "echo in-exec; exit 5"]);
    seen.push(format!("exec: {:?} {:?}", o.status.code(), text(&o)));
    let o = d.docker(&["stop", "-t", "10", &name]);
    seen.push(format!("stop: {:?}", o.status.code()));
    seen.push(format!(
        "exit code: {}",
        d.inspect(&name, "{{.State.ExitCode}}")
    ));
    seen.push(format!("rm: {:?}", d.docker(&["rm", &name]).status.code()));
    seen.push(format!("scope left: {}", scope.exists()));
    seen
}

#[test]
fn docker_with_systemds_cgroup_driver_runs_nsbox_as_it_runs_runc() {
    let Some(t) = Test::new("docker_systemd") else {
        return;
    };
    if !systemd_runs() {
        // dockerd's systemd driver refuses to start without systemd; what
        // reaches nsbox through containerd's shim is the flag: refused.
        return refused_without_systemd(&t, "run");
    }
    let d = Dockerd::start(
        &t,
        Opts {
            systemd_cgroup: true,
            ..Opts::default()
        },
    );
    let start = std::time::Instant::now();
    let runc = docker_scenario(&d, "runc");
    let runc_time = start.elapsed();
    let ours = docker_scenario(&d, "nsbox");
    eprintln!(
        "docker scenario: runc {:.1} s, nsbox {:.1} s",
        runc_time.as_secs_f64(),
        (start.elapsed() - runc_time).as_secs_f64()
    );
    assert_eq!(
        ours, runc,
        "nsbox under Docker's systemd driver differs from runc"
    );
    assert_eq!(ours[0], "run --rm: Some(3) \"67108864\\n50\"", "{ours:?}");
    assert!(ours[1].contains("67108864"), "{ours:?}");
    assert!(ours.last().unwrap().ends_with("false"), "{ours:?}");
}
