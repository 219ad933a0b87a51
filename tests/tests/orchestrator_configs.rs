//! The config.json files Podman and containerd really send (fixtures from
//! ../shared/fixtures/orchestrators), run as they are but for host paths
//! that only existed on the machine that made them: their cgroupsPath,
//! resources, devices, seccomp profile, sysctl and cgroup mount together.

mod common;

use common::*;
use std::fs;
use std::path::Path;

fn fixture(name: &str) -> Value {
    let text = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name),
    )
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A cgroupsPath of this test's own, kept off every other test's, with
/// its parent removed at the end (that parent is the caller's, as Podman's
/// /libpod_parent is: nsbox leaves it).
struct CallerCgroup {
    parent: String,
    pub leaf: String,
}

impl CallerCgroup {
    fn new(t: &Test, leaf: &str) -> CallerCgroup {
        let parent = format!("/nsbox-t-{}", t.cgroup_scope());
        let leaf = format!("{parent}/{leaf}");
        t.track_cgroup(&leaf);
        t.track_cgroup(&parent);
        CallerCgroup { parent, leaf }
    }
}

impl Drop for CallerCgroup {
    fn drop(&mut self) {
        for h in cgroup_hierarchies() {
            let _ = fs::remove_dir(h.join(self.parent.trim_start_matches('/')));
        }
    }
}

/// What both check from inside. The rootfs is shared and writable here:
/// each makes (and removes) a directory of its own name.
fn checks(name: &str) -> String {
    format!(
        "echo x > /dev/null && echo null-ok; \
         grep Seccomp: /proc/self/status; \
         mkdir /tmp/{name} && rmdir /tmp/{name} && echo mkdir-ok; \
         head -c 1 /dev/zero | wc -c"
    )
}

#[test]
fn podmans_config_runs() {
    let Some(t) = Test::new("podmans_config_runs") else {
        return;
    };
    let mut c = fixture("podman-run-config.json");
    let cg = CallerCgroup::new(&t, "libpod-pod1");
    c["root"]["path"] = json!(rootfs());
    // Its cgroup mount shows the container its own cgroup.
    let pids_max = if is_v2() {
        "/sys/fs/cgroup/pids.max"
    } else {
        "/sys/fs/cgroup/pids/pids.max"
    };
    c["process"]["args"] = json!([
        "sh",
        "-c",
        format!(
            "hostname; cat /proc/sys/net/ipv4/ping_group_range; \
             cat {pids_max}; {}",
            checks("pod1")
        )
    ]);
    c["linux"]["cgroupsPath"] = json!(cg.leaf);
    // Its network namespace was made by Podman's network stack.
    for ns in c["linux"]["namespaces"].as_array_mut().unwrap() {
        ns.as_object_mut().unwrap().remove("path");
    }
    // Its bind mounts' sources live in Podman's storage.
    let files = t.work.join("userdata");
    fs::create_dir_all(files.join("shm")).unwrap();
    for m in c["mounts"].as_array_mut().unwrap() {
        if m["type"] == "bind" {
            let dest = m["destination"].as_str().unwrap().to_string();
            let src = if dest == "/dev/shm" {
                files.join("shm")
            } else {
                let f = files.join(dest.trim_start_matches('/').replace('/', "_"));
                fs::write(&f, "").unwrap();
                f
            };
            m["source"] = json!(src);
        }
    }
    let b = t.bundle_with("b", &["true"], |v| *v = c);
    let out = t.run(&b, "pod1");
    out.ok();
    let lines = out.stdout_lines();
    assert_eq!(
        lines,
        [
            "c192cb58644d",
            "0\t0",
            "2048",
            "null-ok",
            "Seccomp:\t2",
            "mkdir-ok",
            "1"
        ],
        "{out:?}"
    );
}

#[test]
fn containerds_config_runs() {
    let Some(t) = Test::new("containerds_config_runs") else {
        return;
    };
    let mut c = fixture("containerd-ctr-run-config.json");
    let cg = CallerCgroup::new(&t, "t2");
    c["process"]["args"] = json!(["sh", "-c", checks("ctr1")]);
    c["linux"]["cgroupsPath"] = json!(cg.leaf);
    let b = t.bundle_with("b", &["true"], |v| *v = c);
    // root.path is "rootfs", relative to the bundle, as containerd has it.
    std::os::unix::fs::symlink(rootfs(), b.dir.join("rootfs")).unwrap();
    t.create(&b, "ctr1").ok();
    if is_v2() {
        // shares 1024 as runc converts them. The device rules are an eBPF
        // program there, which has no file to read back: checks() uses
        // /dev/null and /dev/zero from inside.
        assert_eq!(read_cgroup_file("cpu", &cg.leaf, "cpu.weight"), "39");
    } else {
        assert_eq!(read_cgroup_file("cpu", &cg.leaf, "cpu.shares"), "1024");
        let list = read_cgroup_file("devices", &cg.leaf, "devices.list");
        assert!(list.contains("c 1:3 rwm"), "{list}");
        assert!(!list.contains("a *:* rwm"), "{list}");
    }
    t.rt(&["start", "ctr1"]).ok();
    t.wait_status("ctr1", "stopped");
    t.rt(&["delete", "ctr1"]).ok();
    assert_eq!(
        read_lossy(&t.ctr_stdout("ctr1"))
            .lines()
            .collect::<Vec<_>>(),
        ["null-ok", "Seccomp:\t0", "mkdir-ok", "1"]
    );
}
