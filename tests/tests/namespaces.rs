//! Namespaces joined by path, every kind: the container's process must be
//! in the very namespace it was given (the same inode as the process it
//! was taken from), not merely created without an error.

mod common;

use common::*;
use std::process::{Command, Stdio};

/// The inode of a host process's namespace `ns`.
fn ns_of(pid: i32, ns: &str) -> String {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).expect("read ns link");
    let text = link.to_string_lossy().into_owned();
    text.split_once('[')
        .map(|(_, r)| r.trim_end_matches(']').to_string())
        .unwrap_or(text)
}

/// The "NAME INODE" lines print-ns wrote, as pairs.
fn printed(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// `linux.namespaces` entries joining `kinds` of process `pid` by path.
fn joining(pid: i32, kinds: &[(&str, &str)]) -> Vec<Value> {
    kinds
        .iter()
        .map(|(oci, proc_name)| json!({ "type": oci, "path": format!("/proc/{pid}/ns/{proc_name}") }))
        .collect()
}

/// A host process of the test's own in new namespaces, made with
/// unshare(1); killed (by pid) when dropped.
struct Holder(std::process::Child);

impl Holder {
    /// `unshare ARGS -- sleep 300` (with --fork, the sleep is the child).
    fn start(args: &[&str]) -> Holder {
        let child = Command::new("unshare")
            .args(args)
            .args(["--", "sleep", "300"])
            .stdin(Stdio::null())
            .spawn()
            .expect("run unshare");
        Holder(child)
    }

    /// The process in the namespaces: unshare itself, or with --fork its
    /// child, once it runs sleep.
    fn pid(&self) -> i32 {
        let me = self.0.id() as i32;
        wait_for("the holder's sleep", TIMEOUT, || {
            if comm(me).as_deref() == Some("sleep") {
                return Some(me);
            }
            children(me)
                .into_iter()
                .find(|&c| comm(c).as_deref() == Some("sleep"))
        })
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        for c in children(self.0.id() as i32) {
            // SAFETY: kill(2) of the holder's child, by pid.
            unsafe { libc::kill(c, libc::SIGKILL) };
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn pid_ipc_uts_net_and_cgroup_namespaces_are_joined_by_path() {
    let Some(t) = Test::new("join-five") else {
        return;
    };
    let a = t.bundle_with("a", &["sleep", "300"], |c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "type": "cgroup" }));
    });
    t.run_detached(&a, "a").ok();
    let a_pid = t.state("a")["pid"].as_i64().unwrap() as i32;
    let kinds = [
        ("pid", "pid"),
        ("ipc", "ipc"),
        ("uts", "uts"),
        ("network", "net"),
        ("cgroup", "cgroup"),
    ];
    let b = t.bundle_with(
        "b",
        &[
            "sh",
            "-c",
            "nsbox-multitool print-ns pid ipc uts net cgroup; ps -o args | grep -c '^sleep 300'; \
             echo ready; exec sleep 77",
        ],
        |c| {
            // The joined uts namespace is a's: no hostname of b's own.
            c.as_object_mut().unwrap().remove("hostname");
            let mut ns = joining(a_pid, &kinds);
            ns.push(json!({ "type": "mount" }));
            c["linux"]["namespaces"] = Value::Array(ns);
        },
    );
    t.run_detached(&b, "b").ok();
    let text = wait_for_text(&t.ctr_stdout("b"), "ready");
    let got = printed(&text);
    for (_, proc_name) in kinds {
        assert!(
            got.contains(&(proc_name.to_string(), ns_of(a_pid, proc_name))),
            "b is not in a's {proc_name} namespace: {text}\na's: {}",
            ns_of(a_pid, proc_name)
        );
    }
    // a's workload is in b's sight, and b's tiny-init is no PID 1 there.
    assert!(text.lines().any(|l| l == "1"), "{text}");
    let b_pid = t.state("b")["pid"].as_i64().unwrap() as i32;
    let workload = children(b_pid);
    assert_eq!(workload.len(), 1, "b's tiny-init has one child");
    t.track(workload[0], "b's workload");
    // Killing b's tiny-init (not its namespace's init) takes its workload
    // with it (parent-death signal), rather than leaving it to a's init.
    t.rt(&["kill", "b", "KILL"]).ok();
    wait_for("b's workload to die with its tiny-init", TIMEOUT, || {
        proc_stat(workload[0])
            .is_none_or(|(state, ..)| state == "Z")
            .then_some(())
    });
    t.rt(&["delete", "--force", "b"]).ok();
    t.rt(&["delete", "--force", "a"]).ok();
}

#[test]
fn a_mount_namespace_is_joined_by_path() {
    let Some(t) = Test::new("join-mount") else {
        return;
    };
    let holder = Holder::start(&["--mount", "--propagation", "private"]);
    let h = holder.pid();
    let b = t.bundle_with("b", &["nsbox-multitool", "print-ns", "mnt"], |c| {
        for ns in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "mount" {
                ns["path"] = json!(format!("/proc/{h}/ns/mnt"));
            }
        }
    });
    let out = t.run(&b, "b");
    out.ok();
    assert_eq!(
        out.stdout.trim(),
        format!("mnt {}", ns_of(h, "mnt")),
        "{out:?}"
    );
}

#[test]
fn a_time_namespace_is_joined_by_path_and_tiny_init_is_born_in_it() {
    let Some(t) = Test::new("join-time") else {
        return;
    };
    // A time namespace applies to children: the forked sleep is in it.
    let holder = Holder::start(&["--time", "--fork", "--monotonic", "1000"]);
    let h = holder.pid();
    let b = t.bundle_with(
        "b",
        &[
            "sh",
            "-c",
            "nsbox-multitool print-ns time; cat /proc/1/comm",
        ],
        |c| {
            c["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({ "type": "time", "path": format!("/proc/{h}/ns/time") }));
        },
    );
    let out = t.run(&b, "b");
    out.ok();
    assert_eq!(
        out.stdout_lines(),
        [format!("time {}", ns_of(h, "time")).as_str(), "tiny-init"],
        "{out:?}"
    );
    // The shim went back to its own: nothing else of the host is in it.
    assert_ne!(ns_of(std::process::id() as i32, "time"), ns_of(h, "time"));
}

#[test]
fn a_user_namespace_is_joined_by_path_first_and_owns_the_new_ones() {
    let Some(t) = Test::new("join-user") else {
        return;
    };
    let a = t.bundle_with("a", &["sleep", "300"], |c| {
        c["linux"]["uidMappings"] = json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
        c["linux"]["gidMappings"] = json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "type": "user" }));
    });
    t.run_detached(&a, "a").ok();
    let a_pid = t.state("a")["pid"].as_i64().unwrap() as i32;
    let b = t.bundle_with(
        "b",
        &["sh", "-c", "nsbox-multitool print-ns user pid; id -u"],
        |c| {
            c["linux"]["namespaces"] = json!([
                { "type": "user", "path": format!("/proc/{a_pid}/ns/user") },
                { "type": "pid", "path": format!("/proc/{a_pid}/ns/pid") },
                { "type": "ipc" }, { "type": "uts" }, { "type": "mount" }, { "type": "network" }
            ]);
        },
    );
    let out = t.run(&b, "b");
    out.ok();
    assert_eq!(
        out.stdout_lines(),
        [
            format!("user {}", ns_of(a_pid, "user")).as_str(),
            format!("pid {}", ns_of(a_pid, "pid")).as_str(),
            "0"
        ],
        "{out:?}"
    );
    // A new pid namespace beside a joined user namespace is refused, by
    // name, before anything is made.
    let c = t.bundle_with("c", &["true"], |c| {
        c["linux"]["namespaces"] = json!([
            { "type": "user", "path": format!("/proc/{a_pid}/ns/user") },
            { "type": "pid" }, { "type": "mount" }
        ]);
    });
    t.rt(&["run", "-b", c.path(), "c"])
        .fails_with("c", &["pid namespace", "user namespace joined by path"]);
    t.rt(&["delete", "--force", "a"]).ok();
}
