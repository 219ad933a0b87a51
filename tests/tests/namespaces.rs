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

/// Container "a", running `sleep 300`: its tiny-init's host pid.
fn a_sleeping_container(t: &Test) -> i32 {
    let a = t.bundle("a", &["sleep", "300"]);
    t.run_detached(&a, "a").ok();
    t.state("a")["pid"].as_i64().unwrap() as i32
}

/// The config's mount namespace becomes process `pid`'s, by path.
fn join_mount_namespace_of(c: &mut Value, pid: i32) {
    for ns in c["linux"]["namespaces"].as_array_mut().unwrap() {
        if ns["type"] == "mount" {
            ns["path"] = json!(format!("/proc/{pid}/ns/mnt"));
        }
    }
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
        join_mount_namespace_of(c, h);
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
    // Mappings beside the joined namespace, as Docker writes them: the
    // namespace's own ask for nothing (others are refused, below).
    let b = t.bundle_with(
        "b",
        &["sh", "-c", "nsbox-multitool print-ns user pid; id -u"],
        |c| {
            c["linux"]["uidMappings"] =
                json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
            c["linux"]["gidMappings"] =
                json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
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
    // A new pid namespace beside the joined user namespace (Docker's
    // `--network container:X` under userns-remap): tiny-init is its init,
    // and it belongs to the joined user namespace, whose root mounts its
    // /proc.
    let c = t.bundle_with(
        "c",
        &[
            "sh",
            "-c",
            "nsbox-multitool print-ns user pid; cat /proc/1/comm; id -u",
        ],
        |c| {
            c["linux"]["namespaces"] = json!([
                { "type": "user", "path": format!("/proc/{a_pid}/ns/user") },
                { "type": "pid" }, { "type": "ipc" }, { "type": "uts" },
                { "type": "mount" }, { "type": "network" }
            ]);
        },
    );
    let out = t.run(&c, "c");
    out.ok();
    let lines = out.stdout_lines();
    assert_eq!(
        lines[0],
        format!("user {}", ns_of(a_pid, "user")),
        "{out:?}"
    );
    assert_ne!(lines[1], format!("pid {}", ns_of(a_pid, "pid")), "{out:?}");
    assert_ne!(
        lines[1],
        format!("pid {}", ns_of(std::process::id() as i32, "pid")),
        "{out:?}"
    );
    assert_eq!(lines[2..], ["tiny-init", "0"], "{out:?}");
    let d = t.bundle_with("d", &["true"], |c| {
        c["linux"]["uidMappings"] = json!([{ "containerID": 0, "hostID": 200000, "size": 65536 }]);
        c["linux"]["gidMappings"] = json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
        c["linux"]["namespaces"] = json!([
            { "type": "user", "path": format!("/proc/{a_pid}/ns/user") },
            { "type": "uts" }, { "type": "mount" }
        ]);
    });
    t.rt(&["run", "-b", d.path(), "d"])
        .fails_with("d", &["linux.uidMappings differ", "(0:100000:65536)"]);
    t.rt(&["delete", "--force", "a"]).ok();
}

/// A new user namespace beside network and IPC namespaces joined by path
/// (what a pod with user namespaces asks of its containers): the joined
/// namespaces belong to the host's user namespace, which the child, once
/// in its new one, could no longer enter (setns said EPERM); the shim
/// enters them for it, as runc's child joins them before it unshares its
/// user namespace.
#[test]
fn a_new_user_namespace_beside_net_and_ipc_namespaces_joined_by_path() {
    let Some(t) = Test::new("join-newuser") else {
        return;
    };
    let a_pid = a_sleeping_container(&t);
    let config = |c: &mut Value| {
        c["linux"]["uidMappings"] = json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
        c["linux"]["gidMappings"] = json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
        let mut ns = joining(a_pid, &[("network", "net"), ("ipc", "ipc")]);
        ns.extend([
            json!({ "type": "user" }),
            json!({ "type": "pid" }),
            json!({ "type": "uts" }),
            json!({ "type": "mount" }),
        ]);
        c["linux"]["namespaces"] = Value::Array(ns);
    };
    // mqueue and sysfs belong to the IPC and network namespaces, which the
    // new namespace's root holds no privilege over: the default mounts
    // fail there, under runc too (its error, with this very config:
    // `error mounting "mqueue" to rootfs at "/dev/mqueue": ... operation
    // not permitted`).
    let refused = t.bundle_with("refused", &["true"], config);
    t.rt(&["run", "-b", refused.path(), "refused"]).fails_with(
        "refused",
        &["mount mqueue on /dev/mqueue", "Operation not permitted"],
    );
    // Nor could it mount in a mount namespace of another user namespace:
    // refused before anything is made.
    let mount = t.bundle_with("mount", &["true"], |c| {
        config(c);
        join_mount_namespace_of(c, a_pid);
    });
    t.rt(&["run", "-b", mount.path(), "mount"]).fails_with(
        "mount",
        &["mount namespace joined by path beside a new user namespace"],
    );
    // Without mqueue, and with the host's /sys bound (as rootless
    // containers have it), it runs; and `exec` reaches the same
    // namespaces (it joins the user namespace after the others, which
    // its root could not enter).
    let b = t.bundle_with(
        "b",
        &[
            "sh",
            "-c",
            "nsbox-multitool print-ns net ipc user; cat /proc/self/uid_map; id -u; \
             echo ready; exec sleep 300",
        ],
        |c| {
            config(c);
            let mounts = c["mounts"].as_array_mut().unwrap();
            mounts.retain(|m| m["type"] != "mqueue");
            for m in mounts.iter_mut().filter(|m| m["type"] == "sysfs") {
                *m = json!({ "destination": "/sys", "type": "bind", "source": "/sys",
                             "options": ["rbind", "ro", "nosuid", "noexec", "nodev"] });
            }
        },
    );
    t.run_detached(&b, "b").ok();
    let text = wait_for_text(&t.ctr_stdout("b"), "ready");
    let print = ["nsbox-multitool", "print-ns", "net", "ipc", "user"];
    let exec = t.rt(&[&["exec", "b"][..], &print].concat());
    // The caller's shim mode (containerd's): the runtime joins them itself.
    let caller_exec = t.rt(&[&["--shim-mode", "caller", "exec", "b"][..], &print].concat());
    let a_ns = [
        format!("net {}", ns_of(a_pid, "net")),
        format!("ipc {}", ns_of(a_pid, "ipc")),
    ];
    t.rt(&["delete", "--force", "b"]).ok();
    t.rt(&["delete", "--force", "a"]).ok();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[..2], a_ns, "{text}");
    assert_ne!(
        lines[2],
        format!("user {}", ns_of(std::process::id() as i32, "user")),
        "{text}"
    );
    assert_eq!(
        lines[3].split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"],
        "{text}"
    );
    assert_eq!(lines[4], "0", "{text}");
    for exec in [exec, caller_exec] {
        exec.ok();
        assert_eq!(exec.stdout_lines(), lines[..3], "{exec:?}");
    }
}

/// nsbox, as runc, sets the rootfs up inside a mount namespace given by
/// path and pivots into it: that namespace must show the rootfs at its
/// host path. A running container's (pivoted already) does not, and is
/// refused before anything is made, by the field's name; pivoting there
/// would also have moved every process whose root is that namespace's
/// (pivot_root(2) does that) into the new container's rootfs.
#[test]
fn a_pivoted_mount_namespace_given_by_path_is_refused() {
    let Some(t) = Test::new("join-pivoted") else {
        return;
    };
    let a_pid = a_sleeping_container(&t);
    let b = t.bundle_with("b", &["true"], |c| {
        join_mount_namespace_of(c, a_pid);
    });
    t.rt(&["run", "-b", b.path(), "b"]).fails_with(
        "b",
        &[
            &format!("linux.namespaces: mount namespace /proc/{a_pid}/ns/mnt has no "),
            "the rootfs",
            "a running container's does not",
        ],
    );
    assert_eq!(t.state("a")["status"], "running");
    t.rt(&["delete", "--force", "a"]).ok();
    // Where another directory hides the rootfs's path (a mount made in
    // the namespace, or one on the host that never reached it), the same.
    let rootfs = rootfs().display().to_string();
    let holder = Holder::start(&[
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &format!("mount -t tmpfs hides-the-rootfs {rootfs} && exec \"$@\""),
    ]);
    let h = holder.pid();
    let c = t.bundle_with("c", &["true"], |c| {
        join_mount_namespace_of(c, h);
    });
    t.rt(&["run", "-b", c.path(), "c"]).fails_with(
        "c",
        &[&format!(
            "mount namespace /proc/{h}/ns/mnt has another directory at {rootfs} than the rootfs"
        )],
    );
}
