//! A Kubernetes pod on a systemd host: containerd's CRI plugin with the
//! runc shim's `SystemdCgroup = true` (kubeadm's default), pods under
//! slices as the kubelet's systemd driver names them, handlers `runc` and
//! `nsbox` side by side. Each container's cgroup is systemd's scope
//! `cri-containerd-ID.scope` in its pod's slice, with its limit, and gone
//! with the pod. Run in `make test-cgroup2`'s systemd VM; where systemd
//! does not run, the flag the shim passes is refused in one line.

mod common;

// Only a part of the harness tests/cri.rs uses.
#[allow(dead_code)]
#[path = "common/cri.rs"]
mod cri;

use common::systemd::{refused_without_systemd, systemd_runs};
use common::*;
use cri::{Cri, HANDLERS};
use k8s_cri::v1::*;
use std::fs;

/// A slice's cgroup path (systemd's: each '-' a level).
fn slice_path(slice: &str) -> String {
    let base = slice.trim_end_matches(".slice");
    let mut path = String::new();
    let mut prefix = String::new();
    for part in base.split('-') {
        path.push_str(&format!("/{prefix}{part}.slice"));
        prefix.push_str(part);
        prefix.push('-');
    }
    path
}

fn pod_scenario(c: &Cri, handler: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let name = format!("sd{handler}");
    let config = c.pod_config(&name, NamespaceMode::Pod);
    let pod = c.run_pod(&config, handler);
    let slice = v2_root().join(slice_path(&c.pod_cgroup_parent(&name)).trim_start_matches('/'));
    let ctr = c.run_container(
        &pod,
        &config,
        "main",
        &["sh", "-c", "trap 'exit 143' TERM; sleep 300 & wait"],
        |cfg| {
            cfg.linux.as_mut().unwrap().resources = Some(LinuxContainerResources {
                memory_limit_in_bytes: 64 << 20,
                ..Default::default()
            });
        },
    );
    let (code, out, _) = c.exec_sync(&ctr, &["cat", "/sys/fs/cgroup/memory.max"]);
    seen.push(format!("memory.max inside: {code} {}", out.trim()));
    let scope = slice.join(format!("cri-containerd-{ctr}.scope"));
    seen.push(format!(
        "the container's scope's memory.max: {:?}",
        fs::read_to_string(scope.join("memory.max"))
            .map(|s| s.trim().to_string())
            .ok()
    ));
    let sandbox_scope = slice.join(format!("cri-containerd-{pod}.scope"));
    seen.push(format!("the sandbox's scope: {}", sandbox_scope.is_dir()));
    c.stop_container(&ctr, 10);
    seen.push(format!(
        "exit code after stop: {}",
        c.container_status(&ctr).exit_code
    ));
    c.remove_container(&ctr);
    c.remove_pod(&pod);
    seen.push(format!(
        "scopes left: {} {}",
        scope.exists(),
        sandbox_scope.exists()
    ));
    seen
}

#[test]
fn a_cri_pod_with_systemds_cgroups_on_nsbox_as_on_runc() {
    let Some(t) = Test::new("cri_systemd") else {
        return;
    };
    if !systemd_runs() {
        return refused_without_systemd(&t, "create");
    }
    let c = Cri::start_with(&t, true);
    let start = std::time::Instant::now();
    let outcomes: Vec<Vec<String>> = HANDLERS.iter().map(|h| pod_scenario(&c, h)).collect();
    eprintln!("cri scenarios: {:.1} s", start.elapsed().as_secs_f64());
    assert_eq!(
        outcomes[1], outcomes[0],
        "nsbox (second) differs from runc (first)"
    );
    let ours = &outcomes[1];
    assert_eq!(ours[0], "memory.max inside: 0 67108864", "{ours:?}");
    assert_eq!(
        ours[1], "the container's scope's memory.max: Some(\"67108864\")",
        "{ours:?}"
    );
    assert_eq!(ours[2], "the sandbox's scope: true", "{ours:?}");
    assert_eq!(ours[4], "scopes left: false false", "{ours:?}");
}
