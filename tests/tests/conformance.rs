//! runtime-spec's MUSTs and its 1.1/1.2 additions, each checked where it
//! shows (inside the container, or on the host), as runtime-tools'
//! `validation/` and youki's `tests/contest` check them: linux.devices,
//! rootfsPropagation, recursive mount options, personality, scheduler, CPU
//! affinity, time namespaces, idmapped mounts and the rest.

mod common;

use common::*;

/// A new user namespace mapping container 0..65536 to host `base`...
fn userns(c: &mut Value, base: u32) {
    let map = json!([{ "containerID": 0, "hostID": base, "size": 65536 }]);
    c["linux"]["uidMappings"] = map.clone();
    c["linux"]["gidMappings"] = map;
    c["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "type": "user" }));
}

/// "TYPE MAJOR:MINOR MODE UID:GID" of each path, as the container sees it.
const STAT_DEVICES: &str = "for d in \"$@\"; do stat -c '%n %F %t:%T %a %u:%g' \"$d\"; done";

fn stat_devices(paths: &[&'static str]) -> Vec<&'static str> {
    let mut args = vec!["sh", "-c", STAT_DEVICES, "sh"];
    args.extend(paths);
    args
}

/// linux.devices: made at their paths (parents too) with their type,
/// numbers, mode and owner, under a device list that denies all (as
/// runtime-tools' default config has it); a missing fileMode is 0666.
#[test]
fn linux_devices_are_made_as_listed() {
    let Some(t) = Test::new("linux_devices") else {
        return;
    };
    let paths = [
        "/dev/test1",
        "/dev/test2",
        "/dev/test3",
        "/dev/sub/dir/kmsg",
    ];
    let b = t.bundle_with("b", &stat_devices(&paths), |c| {
        c["linux"]["devices"] = json!([
            { "path": "/dev/test1", "type": "c", "major": 10, "minor": 666,
              "fileMode": 432, "uid": 0, "gid": 0 },
            { "path": "/dev/test2", "type": "b", "major": 8, "minor": 666,
              "fileMode": 432, "uid": 1, "gid": 2 },
            { "path": "/dev/test3", "type": "p", "major": 8, "minor": 666, "fileMode": 432 },
            { "path": "/dev/sub/dir/kmsg", "type": "c", "major": 1, "minor": 11 }
        ]);
        c["linux"]["resources"] = json!({ "devices": [{ "allow": false, "access": "rwm" }] });
    });
    let out = t.run(&b, "dev");
    out.ok();
    assert_eq!(
        out.stdout_lines(),
        [
            "/dev/test1 character special file a:29a 660 0:0",
            "/dev/test2 block special file 8:29a 660 1:2",
            "/dev/test3 fifo 0:0 660 0:0",
            "/dev/sub/dir/kmsg character special file 1:b 666 0:0",
        ],
        "{out:?}"
    );
}

/// In a user namespace mknod is refused: the host's node is bound there
/// instead, as runc does; the container then sees the host's device.
#[test]
fn linux_devices_in_a_user_namespace_are_the_hosts_nodes() {
    let Some(t) = Test::new("linux_devices_userns") else {
        return;
    };
    let b = t.bundle_with("b", &stat_devices(&["/dev/kmsg"]), |c| {
        userns(c, 200000);
        c["linux"]["devices"] = json!([
            { "path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 420 }
        ]);
    });
    let out = t.run(&b, "devu");
    out.ok();
    let host = std::fs::metadata("/dev/kmsg").unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(&host.permissions()) & 0o7777;
    // The host's root shows as the overflow id (nobody) inside.
    assert_eq!(
        out.stdout_lines(),
        [format!(
            "/dev/kmsg character special file 1:b {mode:o} 65534:65534"
        )],
        "{out:?}"
    );
}

/// What the workload of [`propagation_probe`] prints: the optional
/// fields of its root's mountinfo line, then whether a mount made after
/// an rbind of `/` shows through it (youki's rootfs_propagation check).
const PROPAGATION_PROBE: &str = "awk '$5 == \"/\" { f = \"\"; \
     for (i = 7; $i != \"-\"; i++) { sub(/:[0-9]+/, \"\", $i); f = f \" \" $i }; \
     print \"tags\" f }' /proc/self/mountinfo; \
     mkdir /tmp/t; mount --rbind / /tmp/t 2>&1 | sed 's/.*: //'; \
     mount -t tmpfs probe /mnt; touch /mnt/f; \
     if [ -e /tmp/t/mnt/f ]; then echo propagated; else echo not propagated; fi";

fn propagation_probe(c: &mut Value, propagation: Option<&str>) {
    if let Some(p) = propagation {
        c["linux"]["rootfsPropagation"] = json!(p);
    }
    c["process"]["capabilities"] = caps_json(&["CAP_SYS_ADMIN"]);
}

/// linux.rootfsPropagation, every value: the container's root as
/// /proc/self/mountinfo shows it, and what a mount under an rbind of `/`
/// does. Shared roots propagate inside the container; unbindable ones
/// refuse the bind.
#[test]
fn rootfs_propagation_every_value() {
    let Some(t) = Test::new("rootfs_propagation") else {
        return;
    };
    for (n, (propagation, tags, outcome)) in [
        (None, "tags", "not propagated"),
        (Some("private"), "tags", "not propagated"),
        (Some("rprivate"), "tags", "not propagated"),
        (Some("slave"), "tags", "not propagated"),
        (Some("rslave"), "tags", "not propagated"),
        (Some("shared"), "tags shared", "propagated"),
        (Some("rshared"), "tags shared", "propagated"),
        (Some("unbindable"), "tags unbindable", "Invalid argument"),
        (Some("runbindable"), "tags unbindable", "Invalid argument"),
    ]
    .into_iter()
    .enumerate()
    {
        let b = t.bundle_with(&format!("b{n}"), &["sh", "-c", PROPAGATION_PROBE], |c| {
            propagation_probe(c, propagation)
        });
        let out = t.run(&b, &format!("p{n}"));
        out.ok();
        let lines = out.stdout_lines();
        // A slave of a host mount that is not shared is private (this
        // host's are); of a shared one, a slave: "master" either way.
        let root_tags = lines.first().map(|l| l.replace(" master", ""));
        assert_eq!(root_tags.as_deref(), Some(tags), "{propagation:?}: {out:?}");
        assert!(lines.contains(&outcome), "{propagation:?}: {out:?}");
    }
}

/// On a host whose mounts are shared (as systemd makes them; here an
/// `unshare --propagation shared` namespace stands for one), pivot_root
/// takes the container's root with any propagation, in a user namespace
/// too (the idmapped root comes from the shim as a peer of the host's
/// mount), and nothing the container mounts reaches the host's table.
#[test]
fn rootfs_propagation_on_a_shared_host() {
    let Some(t) = Test::new("rootfs_propagation_shared_host") else {
        return;
    };
    if std::process::Command::new("unshare")
        .arg("--help")
        .output()
        .is_err()
    {
        skip("rootfs_propagation_shared_host", "unshare(1) is missing");
        return;
    }
    // A user namespace with a read-only root and with a plain one: the
    // two more cases where pivot_root said EINVAL on such a host.
    for (n, (propagation, user, readonly)) in [
        (None, true, true),
        (None, true, false),
        (Some("rshared"), false, true),
        (Some("shared"), true, false),
        (Some("private"), true, true),
    ]
    .into_iter()
    .enumerate()
    {
        let b = t.bundle_with(
            &format!("b{n}"),
            &["sh", "-c", "mount -t tmpfs in /mnt; echo up; sleep 30"],
            |c| {
                propagation_probe(c, propagation);
                c["root"]["readonly"] = json!(readonly);
                if user {
                    userns(c, 300000);
                }
            },
        );
        let id = format!("s{n}");
        let mut cmd = std::process::Command::new("unshare");
        cmd.args(["-m", "--propagation", "shared", "--"])
            .arg(&bins().runtime)
            .args(["--root", t.root_str(), "run", "-d", "-b", b.path(), &id])
            .stdin(std::process::Stdio::null());
        let out = t.exec_to(cmd, &t.ctr_stdout(&id), &t.ctr_stderr(&id), TIMEOUT);
        t.track_state(&id);
        out.ok();
        wait_for_text(&t.ctr_stdout(&id), "up");
        // The shim lives in the shared namespace that stands for the host.
        let init = t.state(&id)["pid"].as_i64().unwrap() as i32;
        let shim = ppid(init).unwrap();
        let table = std::fs::read_to_string(format!("/proc/{shim}/mountinfo")).unwrap();
        let rootfs = rootfs().to_str().unwrap().to_string();
        let leaked: Vec<&str> = table
            .lines()
            .filter(|l| l.contains(&format!("{rootfs}/")))
            .collect();
        assert!(
            leaked.is_empty(),
            "{propagation:?}, user namespace {user}, read-only {readonly}: the container's \
             mounts reached the host: {leaked:#?}"
        );
        t.rt(&["delete", "-f", &id]).ok();
    }
}

/// A host directory with a tmpfs mounted on its `sub`, unmounted when
/// dropped (a panicking test included).
struct HostTree {
    dir: std::path::PathBuf,
}

impl HostTree {
    fn new(t: &Test, name: &str) -> HostTree {
        let dir = t.work.join(name);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("top"), "top").unwrap();
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "nsbox-test",
                dir.join("sub").to_str().unwrap(),
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount a tmpfs on {}/sub", dir.display());
        std::fs::write(dir.join("sub/below"), "below").unwrap();
        HostTree { dir }
    }
}

impl Drop for HostTree {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.join("sub"))
            .status();
    }
}

/// The recursive options (runtime-spec 1.1) reach the mounts below the
/// one they are given on, where the plain ones do not: mountinfo's
/// options of both, and writes and exec tried from inside (youki's
/// mounts_recursive).
#[test]
fn recursive_mount_options_reach_every_mount_below() {
    let Some(t) = Test::new("mounts_recursive") else {
        return;
    };
    let tree = HostTree::new(&t, "vol");
    let src = tree.dir.to_str().unwrap().to_string();
    let script = "for m in /r /r/sub /p /p/sub; do \
         awk -v m=$m '$5 == m { print m, $6 }' /proc/self/mountinfo; done; \
         for f in /r/top /r/sub/below /p/top /p/sub/below; do \
         if echo x >> $f 2>/dev/null; then echo $f writable; else echo $f read-only; fi; done";
    let b = t.bundle_with("b", &["sh", "-c", script], |c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(json!({ "destination": "/r", "type": "bind", "source": src,
            "options": ["rbind", "rro", "rnosuid", "rnodev", "rnoexec", "rnoatime",
                        "rnosymfollow"] }));
        mounts.push(json!({ "destination": "/p", "type": "bind", "source": src,
            "options": ["rbind", "ro", "nosuid"] }));
    });
    let out = t.run(&b, "rec");
    out.ok();
    let flags = "ro,nosuid,nodev,noexec,noatime,nosymfollow";
    assert_eq!(
        out.stdout_lines(),
        [
            format!("/r {flags}").as_str(),
            &format!("/r/sub {flags}"),
            "/p ro,nosuid,relatime",
            "/p/sub rw,relatime",
            "/r/top read-only",
            "/r/sub/below read-only",
            "/p/top read-only",
            "/p/sub/below writable",
        ],
        "{out:?}"
    );
    drop(tree);
}

/// No mount namespace in linux.namespaces: the container shares the
/// host's, as the namespace's inode shows, and has the rootfs as its root
/// by chroot; not one mount is made (runc makes them on the host and
/// leaves them there). What would need one is refused by name.
#[test]
fn without_a_mount_namespace_no_mount_is_made() {
    let Some(t) = Test::new("no_mount_namespace") else {
        return;
    };
    let before = mount_points();
    let b = t.bundle_with(
        "b",
        &["sh", "-c", "cat /etc/issue; echo ready; sleep 30"],
        |c| {
            c["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .retain(|n| n["type"] != "mount");
            c["mounts"] = json!([]);
            c["root"]["readonly"] = json!(false);
            c["linux"]["maskedPaths"] = json!([]);
            c["linux"]["readonlyPaths"] = json!([]);
        },
    );
    t.run_detached(&b, "nomnt").ok();
    let text = wait_for_text(&t.ctr_stdout("nomnt"), "ready");
    assert!(text.starts_with("nsbox test rootfs"), "{text}");
    let pid = t.state("nomnt")["pid"].as_i64().unwrap();
    let mnt = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap();
    assert_eq!(
        mnt.to_string_lossy(),
        format!("mnt:[{}]", own_ns("mnt")),
        "not the host's mount namespace"
    );
    assert_ne!(
        std::fs::read_link(format!("/proc/{pid}/ns/pid"))
            .unwrap()
            .to_string_lossy(),
        format!("pid:[{}]", own_ns("pid")),
        "the other namespaces are still the container's"
    );
    assert_eq!(mount_points(), before, "the host's mount table changed");
    t.rt(&["delete", "-f", "nomnt"]).ok();

    // The default config's mounts, read-only root and masked paths each
    // need a mount namespace.
    for (n, (tweak, needle)) in [
        (
            Box::new(|_: &mut Value| {}) as Box<dyn Fn(&mut Value)>,
            "mounts (/proc",
        ),
        (
            Box::new(|c: &mut Value| c["mounts"] = json!([])),
            "root.readonly",
        ),
        (
            Box::new(|c: &mut Value| {
                c["mounts"] = json!([]);
                c["root"]["readonly"] = json!(false);
            }),
            "linux.maskedPaths (/proc/acpi",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let b = t.bundle_with(&format!("r{n}"), &["true"], |c| {
            c["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .retain(|n| n["type"] != "mount");
            tweak(c);
        });
        let id = format!("refused{n}");
        t.create(&b, &id).fails_with(
            &id,
            &["no mount namespace", needle, "add {\"type\": \"mount\"}"],
        );
    }
    assert_eq!(mount_points(), before, "the host's mount table changed");
}

/// `--no-pivot`: the rootfs moved onto / and chroot'ed into; the
/// workload runs in it all the same (youki's no_pivot).
#[test]
fn no_pivot_runs_the_container_in_its_rootfs() {
    let Some(t) = Test::new("no_pivot") else {
        return;
    };
    let b = t.bundle("b", &["sh", "-c", "cat /etc/issue; ls /"]);
    let out = t.rt(&["run", "--no-pivot", "-b", b.path(), "np"]);
    out.ok();
    let lines = out.stdout_lines();
    assert_eq!(lines.first(), Some(&"nsbox test rootfs"), "{out:?}");
    assert!(lines.contains(&"bin") && lines.contains(&"etc"), "{out:?}");
}

/// A session keyring of the container's own (`_ses.ID`), as runc makes
/// one; `--no-new-keyring` keeps the caller's.
#[test]
fn a_container_has_a_session_keyring_of_its_own() {
    let Some(t) = Test::new("session_keyring") else {
        return;
    };
    let b = t.bundle("b", &[MT, "keyring"]);
    let out = t.run(&b, "keys");
    out.ok();
    assert!(out.stdout.trim().ends_with(";_ses.keys"), "{out:?}");
    let out = t.rt(&["run", "--no-new-keyring", "-b", b.path(), "keys2"]);
    out.ok();
    assert!(!out.stdout.contains("_ses.keys2"), "{out:?}");
}

/// A hostname in a uts namespace joined by path is set there (runc sets
/// it); in the host's own (no uts entry, or a path to it) it is refused.
#[test]
fn a_hostname_is_set_in_a_joined_uts_namespace() {
    let Some(t) = Test::new("hostname_joined_uts") else {
        return;
    };
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let a = t.bundle_with("a", &["sh", "-c", "echo ready; sleep 30"], |c| {
        c["hostname"] = json!("first");
    });
    t.run_detached(&a, "uts-a").ok();
    wait_for_text(&t.ctr_stdout("uts-a"), "ready");
    let pid = t.state("uts-a")["pid"].as_i64().unwrap();
    let joined = format!("/proc/{pid}/ns/uts");
    let b = t.bundle_with("b", &["hostname"], |c| {
        c["hostname"] = json!("joined");
        for n in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if n["type"] == "uts" {
                n["path"] = json!(joined);
            }
        }
    });
    let out = t.run(&b, "uts-b");
    out.ok();
    assert_eq!(out.stdout.trim(), "joined", "{out:?}");
    // Set in the namespace the two share: the first container sees it.
    let seen = t.rt(&["exec", "uts-a", "hostname"]);
    assert_eq!(seen.ok().stdout.trim(), "joined", "{seen:?}");
    t.rt(&["delete", "-f", "uts-a"]).ok();

    let own = format!("/proc/{}/ns/uts", std::process::id());
    for (n, path) in [(0, None), (1, Some(own))] {
        let b = t.bundle_with(&format!("r{n}"), &["true"], |c| {
            let list = c["linux"]["namespaces"].as_array_mut().unwrap();
            match &path {
                None => list.retain(|n| n["type"] != "uts"),
                Some(p) => {
                    for n in list.iter_mut().filter(|n| n["type"] == "uts") {
                        n["path"] = json!(p);
                    }
                }
            }
        });
        let id = format!("host-uts{n}");
        t.create(&b, &id)
            .fails_with(&id, &["hostname is set", "it would change the host's"]);
    }
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host
    );
}

/// linux.personality (LINUX32: `uname -m` says i686, as youki's test
/// checks, for the workload and an exec'd process alike) and
/// process.scheduler (policy and nice, from /proc/self/stat's fields 41
/// and 19).
#[test]
fn personality_and_scheduler_are_the_workloads() {
    let Some(t) = Test::new("personality_scheduler") else {
        return;
    };
    let probe = "uname -m; cat /proc/self/personality; cut -d' ' -f19,41 /proc/self/stat";
    let b = t.bundle_with(
        "b",
        &["sh", "-c", &format!("{probe}; echo ready; sleep 30")],
        |c| {
            c["linux"]["personality"] = json!({ "domain": "LINUX32" });
            c["process"]["scheduler"] = json!({ "policy": "SCHED_BATCH", "nice": 5 });
        },
    );
    t.run_detached(&b, "pers").ok();
    let text = wait_for_text(&t.ctr_stdout("pers"), "ready");
    assert_eq!(text, "i686\n00000008\n5 3\nready\n");
    let out = t.rt(&["exec", "pers", "sh", "-c", probe]);
    assert_eq!(out.ok().stdout, "i686\n00000008\n5 3\n", "{out:?}");
    t.rt(&["delete", "-f", "pers"]).ok();

    let b = t.bundle_with("idle", &["sh", "-c", probe], |c| {
        c["linux"]["personality"] = json!({ "domain": "LINUX" });
        c["process"]["scheduler"] = json!({ "policy": "SCHED_IDLE" });
    });
    let out = t.run(&b, "idle");
    assert_eq!(out.ok().stdout, "x86_64\n00000000\n0 5\n", "{out:?}");

    let b = t.bundle_with("bad", &["true"], |c| {
        c["process"]["scheduler"] = json!({ "policy": "SCHED_OTHER", "priority": 5 });
    });
    t.create(&b, "bad").fails_with(
        "bad",
        &[
            "process.scheduler.priority 5",
            "SCHED_FIFO and SCHED_RR only",
        ],
    );
}

/// process.execCPUAffinity: an exec'd process runs on `final`; with
/// `initial` alone, on the container's own CPUs again (youki's
/// exec_cpu_affinity, from config.json and from a process.json).
#[test]
fn exec_cpu_affinity_final_and_initial() {
    let Some(t) = Test::new("exec_cpu_affinity") else {
        return;
    };
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        skip("exec_cpu_affinity", "needs two CPUs");
        return;
    }
    let b = t.bundle_with(
        "b",
        &[
            "sh",
            "-c",
            "grep Cpus_allowed_list /proc/self/status; sleep 30",
        ],
        |c| {
            c["process"]["execCPUAffinity"] = json!({ "initial": "0", "final": "1" });
        },
    );
    t.run_detached(&b, "aff").ok();
    let init = wait_for_text(&t.ctr_stdout("aff"), "Cpus_allowed_list");
    let all = init.trim().to_string();
    assert_ne!(
        all, "Cpus_allowed_list:\t1",
        "the workload is no exec'd process"
    );
    let grep = ["grep", "Cpus_allowed_list", "/proc/self/status"];
    let out = t.rt(&[&["exec", "aff"][..], &grep].concat());
    assert_eq!(out.ok().stdout.trim(), "Cpus_allowed_list:\t1", "{out:?}");
    for mode in ["own", "caller"] {
        let process = t.work.join(format!("process-{mode}.json"));
        std::fs::write(
            &process,
            json!({ "cwd": "/", "args": grep, "env": ["PATH=/bin"], "user": { "uid": 0, "gid": 0 },
                    "execCPUAffinity": { "initial": "1" } })
            .to_string(),
        )
        .unwrap();
        let out = t.rt(&[
            "--shim-mode",
            mode,
            "exec",
            "-p",
            process.to_str().unwrap(),
            "aff",
        ]);
        assert_eq!(out.ok().stdout.trim(), all, "{mode}: {out:?}");
    }
    t.rt(&["delete", "-f", "aff"]).ok();
}

/// A new time namespace with linux.timeOffsets: given before anything is
/// in it, as /proc/self/timens_offsets shows, and seen by the workload and
/// by exec'd processes of both shim modes (boottime: /proc/uptime).
#[test]
fn time_namespace_offsets() {
    let Some(t) = Test::new("time_namespace") else {
        return;
    };
    let probe = "cat /proc/self/timens_offsets; cut -d. -f1 /proc/uptime";
    let b = t.bundle_with(
        "b",
        &["sh", "-c", &format!("{probe}; echo ready; sleep 30")],
        |c| {
            c["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({ "type": "time" }));
            c["linux"]["timeOffsets"] = json!({
                "monotonic": { "secs": 86400, "nanosecs": 0 },
                "boottime": { "secs": 1000000, "nanosecs": 7 }
            });
        },
    );
    t.run_detached(&b, "tns").ok();
    let host_uptime = || -> u64 {
        let up = std::fs::read_to_string("/proc/uptime").unwrap();
        up.split('.').next().unwrap().parse().unwrap()
    };
    let check = |text: &str| {
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines[0], ["monotonic", "86400", "0"], "{text}");
        assert_eq!(lines[1], ["boottime", "1000000", "7"], "{text}");
        let up: u64 = lines[2][0].parse().unwrap();
        let host = host_uptime();
        assert!(
            up >= 1_000_000 + host - 5 && up <= 1_000_000 + host + 5,
            "{up} vs host {host}"
        );
    };
    check(&wait_for_text(&t.ctr_stdout("tns"), "ready"));
    for mode in ["own", "caller"] {
        let out = t.rt(&["--shim-mode", mode, "exec", "tns", "sh", "-c", probe]);
        check(&out.ok().stdout);
    }
    t.rt(&["delete", "-f", "tns"]).ok();

    let b = t.bundle_with("bad", &["true"], |c| {
        c["linux"]["timeOffsets"] = json!({ "monotonic": { "secs": 1 } });
    });
    t.create(&b, "bad")
        .fails_with("bad", &["linux.timeOffsets", "no new time namespace"]);
}

/// What the test's seccomp agent hands back: the container process
/// state as it came (at once), then the number of the syscall it answered.
type Agent = (
    std::sync::mpsc::Receiver<Value>,
    std::thread::JoinHandle<Result<i32, String>>,
);

/// A seccomp agent for the test: takes one connection on `path`, the
/// container process state and the listener fd with it, then answers one
/// notification with success (the syscall then does nothing).
fn seccomp_agent(path: &std::path::Path) -> Agent {
    use std::io::IoSliceMut;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let (conn, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
        let mut buf = vec![0u8; 8192];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = nix::sys::socket::recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| format!("recvmsg: {e}"))?;
        let mut fds = Vec::new();
        for c in msg.cmsgs().map_err(|e| e.to_string())? {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(r) = c {
                fds.extend(r);
            }
        }
        let n = msg.bytes;
        let state: Value = serde_json::from_slice(&buf[..n]).map_err(|e| e.to_string())?;
        let _ = tx.send(state);
        let [fd] = fds[..] else {
            return Err(format!("{} fds came", fds.len()));
        };
        // SAFETY: SCM_RIGHTS has just installed it for us.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // struct seccomp_notif and seccomp_notif_resp of <linux/seccomp.h>.
        #[repr(C)]
        struct Notif {
            id: u64,
            pid: u32,
            flags: u32,
            nr: i32,
            arch: u32,
            ip: u64,
            args: [u64; 6],
        }
        #[repr(C)]
        struct Resp {
            id: u64,
            val: i64,
            error: i32,
            flags: u32,
        }
        const RECV: libc::c_ulong = 0xc050_2100;
        const SEND: libc::c_ulong = 0xc018_2101;
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one pollfd of ours.
        if unsafe { libc::poll(&mut pfd, 1, 20_000) } != 1 {
            return Err("no notification within 20 s".into());
        }
        // SAFETY: the ioctls read and write the structs given, zeroed first.
        let mut notif: Notif = unsafe { std::mem::zeroed() };
        if unsafe { libc::ioctl(fd.as_raw_fd(), RECV, &mut notif) } != 0 {
            return Err(format!("NOTIF_RECV: {}", std::io::Error::last_os_error()));
        }
        let resp = Resp {
            id: notif.id,
            val: 0,
            error: 0,
            flags: 0,
        };
        if unsafe { libc::ioctl(fd.as_raw_fd(), SEND, &resp) } != 0 {
            return Err(format!("NOTIF_SEND: {}", std::io::Error::last_os_error()));
        }
        Ok(notif.nr)
    });
    (rx, thread)
}

/// SCMP_ACT_NOTIFY with a listenerPath: the listener fd reaches the agent
/// during `create` with the container process state (its ID, the pid
/// `state` reports, the metadata), and the agent's answer is what the
/// workload's syscall returns (youki's seccomp_notify, with an answer).
#[test]
fn seccomp_notify_reaches_the_listener_and_is_answered() {
    let Some(t) = Test::new("seccomp_notify") else {
        return;
    };
    let path = t.work.join("agent.sock");
    let (states, agent) = seccomp_agent(&path);
    let script = "mkdir /tmp/notified; echo rc=$?; \
                  if [ -d /tmp/notified ]; then echo made; else echo not made; fi";
    let b = t.bundle_with("b", &["sh", "-c", script], |c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": path,
            "listenerMetadata": "opaque metadata",
            "syscalls": [{ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY" }]
        });
    });
    t.create(&b, "notify").ok();
    // By the time `create` returns, the agent has the state and the fd.
    let state = states
        .try_recv()
        .unwrap_or_else(|_| panic!("no listener reached the agent during create"));
    assert_eq!(state["fds"], json!(["seccompFd"]), "{state}");
    assert_eq!(state["metadata"], "opaque metadata", "{state}");
    assert_eq!(state["state"]["id"], "notify", "{state}");
    assert_eq!(state["pid"], t.state("notify")["pid"], "{state}");
    t.rt(&["start", "notify"]).ok();
    let nr = agent
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("agent: {e}"));
    assert!(
        [libc::SYS_mkdir, libc::SYS_mkdirat].contains(&(nr as i64)),
        "notified of syscall {nr}"
    );
    t.stopped_with_code("notify");
    assert_eq!(read_lossy(&t.ctr_stdout("notify")), "rc=0\nnot made\n");
    t.rt(&["delete", "notify"]).ok();

    let b = t.bundle_with("bad", &["true"], |c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{ "names": ["mkdir"], "action": "SCMP_ACT_NOTIFY" }]
        });
    });
    t.create(&b, "nolistener").fails_with(
        "nolistener",
        &["SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath"],
    );
}

/// An AppArmor profile or SELinux label that this host cannot apply (it
/// has neither module) is refused by name, never run unconfined; where
/// the host has the module it is applied (not testable here).
#[test]
fn lsm_settings_the_host_cannot_apply_are_refused() {
    let Some(t) = Test::new("lsm_refused") else {
        return;
    };
    let apparmor = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y");
    if apparmor || std::path::Path::new("/sys/fs/selinux/enforce").exists() {
        skip("lsm_refused", "this host has AppArmor or SELinux");
        return;
    }
    for (n, (field, value, needle)) in [
        (
            "apparmorProfile",
            "docker-default",
            "this host has no AppArmor",
        ),
        (
            "selinuxLabel",
            "system_u:system_r:container_t:s0",
            "this host has no SELinux",
        ),
        (
            "mountLabel",
            "system_u:object_r:container_file_t:s0",
            "this host has no SELinux",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let b = t.bundle_with(&format!("b{n}"), &["true"], |c| {
            if field == "mountLabel" {
                c["linux"][field] = json!(value);
            } else {
                c["process"][field] = json!(value);
            }
        });
        let id = format!("lsm{n}");
        t.create(&b, &id).fails_with(&id, &[field, value, needle]);
    }
}

/// Idmapped bind mounts (runtime-spec 1.1's uidMappings and gidMappings on
/// a mount, 1.2's idmap option): a file owned by host root shows through
/// the mount as the id its maps give it; a plain bind beside it shows it
/// as it is; in a user namespace, `idmap` alone takes the container's maps.
#[test]
fn idmapped_bind_mounts_show_the_mapped_owner() {
    let Some(t) = Test::new("idmapped_mounts") else {
        return;
    };
    let vol = t.work.join("vol");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::write(vol.join("f"), "data").unwrap();
    let src = vol.to_str().unwrap().to_string();
    let maps = |c: u32, h: u32| json!([{ "containerID": c, "hostID": h, "size": 10 }]);
    let probe = ["sh", "-c", "stat -c '%n %u:%g' /idm/f /plain/f"];
    let b = t.bundle_with("b", &probe, |c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(
            json!({ "destination": "/idm", "type": "bind", "source": src,
            "options": ["rbind"], "uidMappings": maps(0, 1000), "gidMappings": maps(0, 2000) }),
        );
        mounts.push(
            json!({ "destination": "/plain", "type": "bind", "source": src,
            "options": ["rbind"] }),
        );
    });
    let out = t.run(&b, "idm");
    assert_eq!(
        out.ok().stdout_lines(),
        ["/idm/f 1000:2000", "/plain/f 0:0"],
        "{out:?}"
    );

    let b = t.bundle_with("u", &probe, |c| {
        userns(c, 400000);
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(
            json!({ "destination": "/idm", "type": "bind", "source": src,
            "options": ["rbind", "idmap"] }),
        );
        mounts.push(
            json!({ "destination": "/plain", "type": "bind", "source": src,
            "options": ["rbind"] }),
        );
    });
    let out = t.run(&b, "idmu");
    // Host root is not mapped into the container's user namespace: the
    // plain bind shows nobody, the idmapped one the container's root.
    assert_eq!(
        out.ok().stdout_lines(),
        ["/idm/f 0:0", "/plain/f 65534:65534"],
        "{out:?}"
    );

    let b = t.bundle_with("bad", &["true"], |c| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "destination": "/idm",
            "type": "bind", "source": src, "options": ["rbind"], "uidMappings": maps(0, 1000) }));
    });
    t.create(&b, "bad").fails_with(
        "bad",
        &["mount on /idm", "needs both uidMappings and gidMappings"],
    );
}

/// `features` lists what this build does with runtime-spec 1.1/1.2, and
/// linux.intelRdt, which it does not do, is refused by name.
#[test]
fn features_list_the_new_parts_and_intel_rdt_is_refused() {
    let Some(t) = Test::new("features_12") else {
        return;
    };
    let f = t.rt(&["features"]).ok().json();
    assert_eq!(f["ociVersionMax"], "1.2.0");
    let has = |v: &Value, x: &str| v.as_array().unwrap().iter().any(|e| e == x);
    assert!(has(&f["linux"]["namespaces"], "time"), "{f}");
    assert!(
        has(&f["linux"]["seccomp"]["actions"], "SCMP_ACT_NOTIFY"),
        "{f}"
    );
    for o in [
        "rro",
        "rnosuid",
        "rnodev",
        "rnoexec",
        "rnoatime",
        "rnosymfollow",
        "nosymfollow",
    ] {
        assert!(has(&f["mountOptions"], o), "{o}: {f}");
    }
    assert_eq!(f["linux"]["intelRdt"]["enabled"], false);
    assert_eq!(f["linux"]["mountExtensions"]["idmap"]["enabled"], true);

    let b = t.bundle_with("rdt", &["true"], |c| {
        c["linux"]["intelRdt"] = json!({ "closID": "nsbox", "l3CacheSchema": "L3:0=f" });
    });
    t.create(&b, "rdt")
        .fails_with("rdt", &["linux.intelRdt", "resctrl"]);
}
