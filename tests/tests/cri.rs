//! Kubernetes' way in: pods run by containerd's CRI plugin, driven over
//! the CRI v1 API as the kubelet drives it, with runtime handler `runc`
//! and `nsbox` side by side in one containerd (common/cri.rs). The
//! outcomes must be the same, but for one that differs by design: in a
//! container with a PID namespace of its own, PID 1 is tiny-init under
//! nsbox, the image's process under runc.

mod common;

#[path = "common/cri.rs"]
mod cri;

use common::*;
use cri::{Cri, HANDLERS};
use k8s_cri::v1::*;
use std::fs;
use std::time::Duration;

/// The inode of namespace `ns` of a host process.
fn host_ns(pid: i64, ns: &str) -> String {
    let link = fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap_or_default();
    link.to_string_lossy()
        .split_once('[')
        .map(|(_, r)| r.trim_end_matches(']').to_string())
        .unwrap_or_default()
}

/// The inode of namespace `ns` seen from inside container `id`.
fn ctr_ns(c: &Cri, id: &str, ns: &str) -> String {
    let (code, out, err) = c.exec_sync(id, &["nsbox-multitool", "print-ns", ns]);
    assert_eq!(code, 0, "print-ns {ns}: {out} {err}");
    out.split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// Each line of a CRI log file: "TIMESTAMP STREAM TAG MESSAGE", the time
/// in RFC 3339 with nanoseconds, the tag F (full line) or P (partial).
/// Returns "STREAM TAG MESSAGE" per line, checking the rest.
fn cri_log_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| {
            let mut f = l.splitn(4, ' ');
            let (ts, stream, tag, msg) = (
                f.next().unwrap_or(""),
                f.next().unwrap_or(""),
                f.next().unwrap_or(""),
                f.next().unwrap_or(""),
            );
            assert!(
                ts.len() >= 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
                "not a CRI log line: {l:?}"
            );
            assert!(matches!(stream, "stdout" | "stderr"), "{l:?}");
            assert!(matches!(tag, "F" | "P"), "{l:?}");
            format!("{stream} {tag} {msg}")
        })
        .collect()
}

/// A pod whose containers share the sandbox's network, IPC, UTS and PID
/// namespaces (the CRI default for PID; `shareProcessNamespace: true` in a
/// pod spec), its logs, ExecSync, an update, stats, stop and removal.
fn shared_pod(c: &Cri, h: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let name = format!("{h}-shared");
    let cfg = c.pod_config(&name, NamespaceMode::Pod);
    let pod = c.run_pod(&cfg, h);
    let sandbox_pid = c.sandbox_info(&pod)["pid"].as_i64().expect("sandbox pid");
    let c1 = c.run_container(
        &pod,
        &cfg,
        "c1",
        &[
            "sh",
            "-c",
            "echo hello-out; echo hello-err >&2; trap 'exit 143' TERM; sleep 300 & wait",
        ],
        |cfg| {
            cfg.linux.as_mut().unwrap().resources = Some(LinuxContainerResources {
                memory_limit_in_bytes: 64 << 20,
                ..Default::default()
            });
        },
    );
    let c2 = c.run_container(&pod, &cfg, "c2", &["sleep", "301"], |_| {});
    for ns in ["net", "ipc", "uts", "pid"] {
        let sandbox = host_ns(sandbox_pid, ns);
        seen.push(format!(
            "{ns}: c1 and c2 in the sandbox's {}",
            ctr_ns(c, &c1, ns) == sandbox && ctr_ns(c, &c2, ns) == sandbox
        ));
    }
    let (_, ps, _) = c.exec_sync(&c2, &["ps", "-o", "args"]);
    seen.push(format!(
        "c2 sees c1's sleep {} and its own {}",
        ps.lines().any(|l| l.trim() == "sleep 300"),
        ps.lines().any(|l| l.trim() == "sleep 301")
    ));
    seen.push(format!(
        "hostname is the pod's: {}",
        c.exec_sync(&c1, &["hostname"]).1.trim() == name
    ));
    seen.push(format!(
        "exec sync: {:?}",
        c.exec_sync(&c1, &["sh", "-c", "echo in-exec; echo to-err >&2; exit 5"])
    ));
    let log = std::path::Path::new(&cfg.log_directory).join("c1.log");
    let text = wait_for("c1's log", TIMEOUT, || {
        let t = read_lossy(&log);
        (t.contains("hello-out") && t.contains("hello-err")).then_some(t)
    });
    let mut lines = cri_log_lines(&text);
    lines.sort();
    seen.push(format!("log: {lines:?}"));
    let limit = "/sys/fs/cgroup/memory/memory.limit_in_bytes";
    seen.push(format!(
        "memory limit: {}",
        c.exec_sync(&c1, &["cat", limit]).1.trim()
    ));
    let req = UpdateContainerResourcesRequest {
        container_id: c1.clone(),
        linux: Some(LinuxContainerResources {
            memory_limit_in_bytes: 96 << 20,
            ..Default::default()
        }),
        ..Default::default()
    };
    c.call(|mut r| async move { r.update_container_resources(req).await })
        .expect("UpdateContainerResources");
    seen.push(format!(
        "memory limit after update: {}",
        c.exec_sync(&c1, &["cat", limit]).1.trim()
    ));
    let req = ContainerStatsRequest {
        container_id: c1.clone(),
    };
    let stats = c
        .call(|mut r| async move { r.container_stats(req).await })
        .expect("ContainerStats")
        .stats
        .expect("stats");
    seen.push(format!(
        "stats: name {:?}, memory working set > 0 {}, cpu shown {}",
        stats.attributes.and_then(|a| a.metadata).map(|m| m.name),
        stats
            .memory
            .and_then(|m| m.working_set_bytes)
            .is_some_and(|v| v.value > 0),
        stats.cpu.is_some()
    ));
    let took = c.stop_container(&c1, 10);
    let s = c.container_status(&c1);
    seen.push(format!(
        "stop c1: state {} exit {} within the timeout {}",
        s.state,
        s.exit_code,
        took < Duration::from_secs(10)
    ));
    c.stop_container(&c2, 10);
    let s = c.container_status(&c2);
    seen.push(format!("stop c2: state {} exit {}", s.state, s.exit_code));
    c.remove_container(&c1);
    c.remove_container(&c2);
    c.remove_pod(&pod);
    seen
}

/// A pod whose containers each have a PID namespace of their own
/// (`NamespaceMode::Container`, what the kubelet asks for by default).
/// Returns the comparable outcomes and what PID 1 is in the container.
fn own_pid_pod(c: &Cri, h: &str) -> (Vec<String>, String) {
    let mut seen = Vec::new();
    let name = format!("{h}-own");
    let cfg = c.pod_config(&name, NamespaceMode::Container);
    let pod = c.run_pod(&cfg, h);
    let sandbox_pid = c.sandbox_info(&pod)["pid"].as_i64().expect("sandbox pid");
    // A shell that handles SIGTERM: as PID 1 under runc a plain `sleep`
    // would ignore StopContainer's SIGTERM (see tests/docker.rs).
    let c3 = c.run_container(
        &pod,
        &cfg,
        "c3",
        &["sh", "-c", "trap 'exit 143' TERM; sleep 300 & wait"],
        |_| {},
    );
    seen.push(format!(
        "net shared {}, pid shared {}",
        ctr_ns(c, &c3, "net") == host_ns(sandbox_pid, "net"),
        ctr_ns(c, &c3, "pid") == host_ns(sandbox_pid, "pid")
    ));
    let (_, comm, _) = c.exec_sync(&c3, &["cat", "/proc/1/comm"]);
    c.stop_container(&c3, 10);
    let s = c.container_status(&c3);
    seen.push(format!("stop: state {} exit {}", s.state, s.exit_code));
    c.remove_container(&c3);
    c.remove_pod(&pod);
    (seen, comm.trim().to_string())
}

#[test]
fn cri_pods_on_nsbox_as_on_runc() {
    let Some(t) = Test::new("cri-pods") else {
        return;
    };
    let c = Cri::start(&t);
    let mut outcomes = Vec::new();
    for h in HANDLERS {
        outcomes.push(shared_pod(&c, h));
    }
    assert_eq!(
        outcomes[1], outcomes[0],
        "nsbox under CRI differs from runc"
    );
    let runc = &outcomes[0];
    for want in [
        "net: c1 and c2 in the sandbox's true",
        "ipc: c1 and c2 in the sandbox's true",
        "uts: c1 and c2 in the sandbox's true",
        "pid: c1 and c2 in the sandbox's true",
        "c2 sees c1's sleep true and its own true",
        "hostname is the pod's: true",
        "exec sync: (5, \"in-exec\\n\", \"to-err\\n\")",
        "memory limit: 67108864",
        "memory limit after update: 100663296",
        "stats: name Some(\"c1\"), memory working set > 0 true, cpu shown true",
        // CONTAINER_EXITED = 2
        "stop c1: state 2 exit 143 within the timeout true",
        "stop c2: state 2 exit 143",
    ] {
        assert!(runc.iter().any(|l| l == want), "{want:?} not in {runc:#?}");
    }
    assert!(
        runc.iter()
            .any(|l| l == "log: [\"stderr F hello-err\", \"stdout F hello-out\"]"),
        "{runc:#?}"
    );
    assert_eq!(c.runtime_state_left(), Vec::<std::path::PathBuf>::new());
    assert_eq!(c.netns_left(), Vec::<std::path::PathBuf>::new());
}

/// critest's "should support ContainerPID namespace" expects the image's
/// process as PID 1 in a container whose PID namespace is its own; under
/// nsbox PID 1 is tiny-init (nsbox's design, as with `docker run --init`),
/// and the workload is its child. Everything else is the same.
#[test]
fn cri_container_pid_namespace_on_nsbox_as_on_runc_but_pid_1() {
    let Some(t) = Test::new("cri-own-pid") else {
        return;
    };
    let c = Cri::start(&t);
    let (runc, runc_pid1) = own_pid_pod(&c, "runc");
    let (ours, ours_pid1) = own_pid_pod(&c, "nsbox");
    assert_eq!(ours, runc, "nsbox under CRI differs from runc");
    assert_eq!(
        runc,
        [
            "net shared true, pid shared false",
            "stop: state 2 exit 143"
        ]
    );
    assert_eq!(runc_pid1, "sh");
    assert_eq!(ours_pid1, "tiny-init");
    assert_eq!(c.runtime_state_left(), Vec::<std::path::PathBuf>::new());
    assert_eq!(c.netns_left(), Vec::<std::path::PathBuf>::new());
}
