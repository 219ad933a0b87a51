//! Path and format logic against fake trees laid out like cgroupfs: the
//! kernel creates a cgroup's control files on mkdir, so each test makes
//! them first, and every write is appended, so the files keep what nsbox
//! wrote in order.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use protocol::{
    CpuResources, DeviceRule, HugepageLimit, MemoryResources, NetworkResources, RdmaLimit,
    Resources,
};

use super::*;

/// This VM's mountinfo, cut to the cgroup lines and a few others.
const HYBRID: &str = "\
23 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

const UNIFIED: &str = "\
25 1 0:23 / /sys rw - sysfs sysfs rw
30 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

#[test]
fn detects_hybrid_as_v1_with_every_hierarchy() {
    let l = Layout::from_mountinfo(HYBRID).unwrap();
    assert_eq!(l.name(), "hybrid");
    let Layout::V1 { hierarchies, .. } = &l else {
        panic!("{l:?}")
    };
    let names: Vec<&str> = hierarchies.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "cpu",
            "cpuacct",
            "cpuset",
            "memory",
            "devices",
            "freezer",
            "blkio",
            "pids",
            "name=systemd"
        ]
    );
    let p = l.paths(None, "web1", None).unwrap();
    assert_eq!(p.path, "/nsbox@web1");
    assert!(!p.unified);
    assert!(p
        .dirs
        .iter()
        .any(|d| d.controller == "memory" && d.dir == "/sys/fs/cgroup/memory/nsbox@web1"));
    assert!(!p.dirs.iter().any(|d| d.dir.contains("unified")));
}

#[test]
fn detects_unified_and_joint_v1_hierarchies() {
    let l = Layout::from_mountinfo(UNIFIED).unwrap();
    assert_eq!(
        l,
        Layout::V2 {
            root: "/sys/fs/cgroup".into()
        }
    );
    let p = l
        .paths(Some("/libpod_parent/libpod-abc"), "abc", Some("/x"))
        .unwrap();
    assert!(p.unified);
    assert_eq!(p.dirs[0].dir, "/sys/fs/cgroup/libpod_parent/libpod-abc");

    let joint =
        "1 0 0:1 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct,clone_children\n\
                 2 0 0:2 /sub /mnt/x rw - cgroup cgroup rw,memory\n";
    let l = Layout::from_mountinfo(joint).unwrap();
    assert_eq!(
        l,
        Layout::V1 {
            hierarchies: vec![("cpu,cpuacct".into(), "/sys/fs/cgroup/cpu,cpuacct".into())],
            hybrid: false
        },
        "a bind of a sub-tree is no hierarchy root"
    );
    assert!(Layout::from_mountinfo("1 0 0:1 / / rw - ext4 /dev/vda rw\n").is_err());
}

#[test]
fn cgroups_paths_are_checked() {
    assert_eq!(validate_path("default/t2").unwrap(), "/default/t2");
    assert_eq!(validate_path("/a//b/./c").unwrap(), "/a/b/c");
    assert!(validate_path("/a/../../etc").is_err());
    assert!(validate_path("/").is_err());
    let e = validate_path("machine.slice:libpod:abc").unwrap_err();
    assert!(e.to_string().contains("systemd"), "{e}");
}

#[test]
fn mountinfo_escapes() {
    assert_eq!(unescape("/a\\040b"), "/a b");
    assert_eq!(unescape("/plain"), "/plain");
    assert_eq!(unescape("/end\\04"), "/end\\04");
}

struct Fake(PathBuf);

impl Fake {
    fn new(tag: &str) -> Fake {
        let p = std::env::temp_dir().join(format!("nsbox-cg-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Fake(p)
    }

    /// A cgroup directory with its (empty, or given) control files.
    fn cgroup(&self, dir: &str, files: &[(&str, &str)]) -> PathBuf {
        let d = self.0.join(dir);
        fs::create_dir_all(&d).unwrap();
        for (f, v) in files {
            fs::write(d.join(f), v).unwrap();
        }
        d
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Put process `pid` in the cgroup from outside (what nsbox avoids, see
/// self_join_files; tests may).
fn add_process(paths: &CgroupPaths, pid: i32) -> Result<()> {
    for d in &paths.dirs {
        write_file(Path::new(&d.dir), "cgroup.procs", &pid.to_string())?;
    }
    Ok(())
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn resources() -> Resources {
    Resources {
        memory: Some(MemoryResources {
            limit: Some(64 << 20),
            reservation: Some(32 << 20),
            swap: Some(128 << 20),
            ..Default::default()
        }),
        cpu: Some(CpuResources {
            shares: Some(512),
            quota: Some(50_000),
            period: Some(100_000),
            cpus: Some("0".into()),
            mems: None,
        }),
        pids_limit: Some(64),
        devices: vec![
            DeviceRule {
                allow: false,
                kind: 'a',
                major: None,
                minor: None,
                access: "rwm".into(),
            },
            DeviceRule {
                allow: true,
                kind: 'c',
                major: Some(1),
                minor: Some(3),
                access: "rwm".into(),
            },
            DeviceRule {
                allow: true,
                kind: 'c',
                major: Some(136),
                minor: None,
                access: "rw".into(),
            },
        ],
        unified: vec![],
        ..Default::default()
    }
}

/// Where no level above balances its CPUs (a host that isolates them),
/// a new cpuset keeps its own flag, as runc leaves it; where one does, a
/// new level's flag is cleared before its CPUs are written.
#[test]
fn v1_cpuset_balancing_is_cleared_only_under_a_balancing_level() {
    for (root_flag, parent_flag, cleared) in [("0\n", "0\n", false), ("0\n", "1\n", true)] {
        let f = Fake::new("v1-balance");
        let layout = Layout::V1 {
            hierarchies: vec![("cpuset".to_string(), f.0.join("cpuset"))],
            hybrid: false,
        };
        let paths = layout.paths(Some("/parent/c1"), "c1", None).unwrap();
        f.cgroup(
            "cpuset",
            &[
                ("cpuset.cpus", "0-1\n"),
                ("cpuset.mems", "0\n"),
                ("cpuset.sched_load_balance", root_flag),
            ],
        );
        f.cgroup(
            "cpuset/parent",
            &[
                ("cpuset.cpus", "0-1\n"),
                ("cpuset.mems", "0\n"),
                ("cpuset.sched_load_balance", parent_flag),
            ],
        );
        let cs = f.cgroup(
            "cpuset/parent/c1",
            &[
                ("cpuset.cpus", ""),
                ("cpuset.mems", ""),
                ("cpuset.sched_load_balance", ""),
            ],
        );
        create(&paths, &Resources::default()).unwrap();
        let flag = read(&cs.join("cpuset.sched_load_balance"));
        assert_eq!(
            flag == "0",
            cleared,
            "root {root_flag:?}, parent {parent_flag:?}: {flag:?}"
        );
        assert_eq!(read(&cs.join("cpuset.cpus")), "0-1");
        assert_eq!(read(&cs.join("cpuset.mems")), "0");
        assert_eq!(
            read(&f.0.join("cpuset/parent/cpuset.sched_load_balance")),
            parent_flag
        );
    }
}

#[test]
fn v1_create_and_apply_write_each_controller() {
    let f = Fake::new("v1");
    let controllers = ["memory", "cpu", "cpuset", "pids", "devices", "freezer"];
    let layout = Layout::V1 {
        hierarchies: controllers
            .iter()
            .map(|c| (c.to_string(), f.0.join(c)))
            .collect(),
        hybrid: true,
    };
    let paths = layout.paths(Some("/parent/c1"), "c1", None).unwrap();
    f.cgroup(
        "cpuset",
        &[
            ("cpuset.cpus", "0-1\n"),
            ("cpuset.mems", "0\n"),
            ("cpuset.sched_load_balance", "1\n"),
        ],
    );
    let empty_cpuset = [
        ("cpuset.cpus", ""),
        ("cpuset.mems", ""),
        ("cpuset.sched_load_balance", ""),
    ];
    f.cgroup("cpuset/parent", &empty_cpuset);
    let cs = f.cgroup("cpuset/parent/c1", &empty_cpuset);
    let mem = f.cgroup(
        "memory/parent/c1",
        &[
            ("memory.limit_in_bytes", ""),
            ("memory.soft_limit_in_bytes", ""),
            ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
            (
                "memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
            ),
        ],
    );
    let cpu = f.cgroup(
        "cpu/parent/c1",
        &[
            ("cpu.shares", ""),
            ("cpu.cfs_period_us", ""),
            ("cpu.cfs_quota_us", ""),
        ],
    );
    let pids = f.cgroup("pids/parent/c1", &[("pids.max", ""), ("cgroup.procs", "")]);
    let dev = f.cgroup(
        "devices/parent/c1",
        &[("devices.allow", ""), ("devices.deny", "")],
    );
    let frz = f.cgroup("freezer/parent/c1", &[("freezer.state", "THAWED\n")]);

    create(&paths, &resources()).unwrap();

    // cpuset: the parent's CPUs and nodes copied down each level, each
    // level's balancing cleared first under the balancing root.
    assert_eq!(read(&f.0.join("cpuset/parent/cpuset.cpus")), "0-1");
    assert_eq!(read(&f.0.join("cpuset/parent/cpuset.mems")), "0");
    assert_eq!(
        read(&f.0.join("cpuset/parent/cpuset.sched_load_balance")),
        "0"
    );
    assert_eq!(read(&cs.join("cpuset.sched_load_balance")), "0");
    assert_eq!(
        read(&cs.join("cpuset.cpus")),
        "0-10",
        "copied, then limited to 0"
    );
    // Shrinking: the memory limit before memsw.
    assert_eq!(read(&mem.join("memory.limit_in_bytes")), "67108864");
    assert_eq!(
        read(&mem.join("memory.memsw.limit_in_bytes")),
        "9223372036854771712\n134217728"
    );
    assert_eq!(read(&mem.join("memory.soft_limit_in_bytes")), "33554432");
    assert_eq!(read(&cpu.join("cpu.shares")), "512");
    assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "100000");
    assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000");
    assert_eq!(read(&pids.join("pids.max")), "64");
    assert_eq!(read(&dev.join("devices.deny")), "a *:* rwm");
    assert_eq!(read(&dev.join("devices.allow")), "c 1:3 rwmc 136:* rw");

    assert_eq!(oom_kills(&paths), Some(2));
    assert!(!is_frozen(&paths));
    fs::write(frz.join("freezer.state"), "FROZEN\n").unwrap();
    assert!(is_frozen(&paths));

    fs::write(pids.join("cgroup.procs"), "12\n7\n").unwrap();
    assert_eq!(procs(&paths), [7, 12]);
    let e = create(&paths, &Resources::default()).unwrap_err();
    assert!(e.to_string().contains("already holds processes"), "{e}");

    // update: growing, memsw first; -1 is unlimited.
    fs::write(mem.join("memory.memsw.limit_in_bytes"), "134217728\n").unwrap();
    fs::write(mem.join("memory.limit_in_bytes"), "").unwrap();
    let grow = Resources {
        memory: Some(MemoryResources {
            limit: Some(256 << 20),
            swap: Some(512 << 20),
            ..Default::default()
        }),
        pids_limit: Some(-1),
        ..Default::default()
    };
    apply(&paths, &grow, false).unwrap();
    assert_eq!(
        read(&mem.join("memory.memsw.limit_in_bytes")),
        "134217728\n536870912"
    );
    assert_eq!(read(&mem.join("memory.limit_in_bytes")), "268435456");
    assert_eq!(read(&pids.join("pids.max")), "64max");

    let e = apply(
        &paths,
        &Resources {
            unified: vec![("memory.high".into(), "1".into())],
            ..Default::default()
        },
        false,
    )
    .unwrap_err();
    assert!(e.to_string().contains("v2"), "{e}");
}

#[test]
fn v1_without_swap_accounting_skips_swap() {
    let f = Fake::new("v1noswap");
    let layout = Layout::V1 {
        hierarchies: vec![("memory".into(), f.0.join("memory"))],
        hybrid: false,
    };
    let paths = layout.paths(Some("/default/t2"), "t2", None).unwrap();
    let mem = f.cgroup("memory/default/t2", &[("memory.limit_in_bytes", "")]);
    let r = Resources {
        memory: Some(MemoryResources {
            limit: Some(1 << 20),
            swap: Some(2 << 20),
            ..Default::default()
        }),
        ..Default::default()
    };
    create(&paths, &r).unwrap();
    assert_eq!(read(&mem.join("memory.limit_in_bytes")), "1048576");
    assert!(!mem.join("memory.memsw.limit_in_bytes").exists());
    // A controller the host lacks is a clear error.
    let e = apply(
        &paths,
        &Resources {
            pids_limit: Some(5),
            ..Default::default()
        },
        false,
    )
    .unwrap_err();
    assert!(e.to_string().contains("pids controller"), "{e}");
}

#[test]
fn v2_create_enables_controllers_and_apply_writes_v2_files() {
    let f = Fake::new("v2");
    f.cgroup(
        "",
        &[
            (
                "cgroup.controllers",
                "cpuset cpu io memory hugetlb pids rdma misc\n",
            ),
            ("cgroup.subtree_control", ""),
        ],
    );
    f.cgroup(
        "libpod_parent",
        &[
            ("cgroup.controllers", "cpu memory pids\n"),
            ("cgroup.subtree_control", "memory\n"),
        ],
    );
    let leaf = f.cgroup(
        "libpod_parent/libpod-x",
        &[
            ("memory.max", ""),
            ("memory.low", ""),
            ("memory.swap.max", ""),
            ("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"),
            ("cpu.weight", ""),
            ("cpu.max", ""),
            ("cpuset.cpus", ""),
            ("pids.max", ""),
            ("cgroup.freeze", "0\n"),
            ("cgroup.procs", ""),
        ],
    );
    let layout = Layout::V2 { root: f.0.clone() };
    let paths = layout
        .paths(Some("/libpod_parent/libpod-x"), "x", None)
        .unwrap();
    let mut r = resources();
    r.devices.clear();
    create(&paths, &r).unwrap();
    assert_eq!(
        read(&f.0.join("cgroup.subtree_control")),
        "+cpu+cpuset+io+memory+pids"
    );
    assert_eq!(
        read(&f.0.join("libpod_parent/cgroup.subtree_control")),
        "memory\n+cpu+pids",
        "only what the level has and lacks"
    );
    assert_eq!(read(&leaf.join("memory.max")), "67108864");
    assert_eq!(read(&leaf.join("memory.low")), "33554432");
    assert_eq!(read(&leaf.join("memory.swap.max")), "67108864");
    assert_eq!(read(&leaf.join("cpu.weight")), "20");
    assert_eq!(read(&leaf.join("cpu.max")), "50000 100000");
    assert_eq!(read(&leaf.join("cpuset.cpus")), "0");
    assert_eq!(read(&leaf.join("pids.max")), "64");
    assert_eq!(oom_kills(&paths), Some(1));
    assert!(!is_frozen(&paths));

    // Device rules go into an eBPF program attached to the cgroup, which
    // a plain directory is not.
    let e = apply(&paths, &resources(), true).unwrap_err();
    assert!(e.to_string().contains("device program"), "{e}");
    // unified keys: files of this cgroup only.
    let bad = Resources {
        unified: vec![("../cgroup.procs".into(), "1".into())],
        ..Default::default()
    };
    assert!(apply(&paths, &bad, false).is_err());
    let e = apply(
        &paths,
        &Resources {
            memory: Some(MemoryResources {
                swappiness: Some(10),
                ..Default::default()
            }),
            ..Default::default()
        },
        false,
    )
    .unwrap_err();
    assert!(e.to_string().contains("swappiness"), "{e}");
}

#[test]
fn weights_follow_runc() {
    assert_eq!(v2::shares_to_weight(2), 1);
    assert_eq!(v2::shares_to_weight(1024), 39);
    assert_eq!(v2::shares_to_weight(262_144), 10_000);
}

#[test]
fn destroy_removes_the_leaf_only() {
    let f = Fake::new("destroy");
    let layout = Layout::V1 {
        hierarchies: vec![
            ("memory".into(), f.0.join("memory")),
            ("pids".into(), f.0.join("pids")),
        ],
        hybrid: false,
    };
    let a = layout.paths(None, "a", None).unwrap();
    let b = layout.paths(None, "b", None).unwrap();
    for p in [&a, &b] {
        for d in &p.dirs {
            fs::create_dir_all(Path::new(&d.dir).join("sub")).unwrap();
        }
    }
    destroy(&a, Duration::from_secs(1), None).unwrap();
    assert!(!f.0.join("memory/nsbox@a").exists());
    assert!(f.0.join("memory/nsbox@b/sub").exists());
    destroy(&b, Duration::from_secs(1), None).unwrap();
    assert!(!f.0.join("memory/nsbox@b").exists());
    assert!(f.0.join("memory").exists());
    // Gone already: fine.
    destroy(&b, Duration::from_secs(1), None).unwrap();

    // Another state root's containers are named after it too, one level
    // deep all the same; '@' keeps roots and IDs apart.
    let s = layout.paths(None, "a", Some("/run/nsbox-t/12-3")).unwrap();
    assert_eq!(s.path, "/nsbox@run-nsbox-t-12-3@a");
    fs::create_dir_all(&s.dirs[0].dir).unwrap();
    destroy(&s, Duration::from_secs(1), None).unwrap();
    assert!(!Path::new(&s.dirs[0].dir).exists());
    assert_eq!(scope_name("/"), "root");

    // A caller's parent is not ours to remove.
    let c = layout.paths(Some("/libpod_parent/c"), "c", None).unwrap();
    fs::create_dir_all(&c.dirs[0].dir).unwrap();
    destroy(&c, Duration::from_secs(1), None).unwrap();
    assert!(f.0.join("memory/libpod_parent").exists());
}

/// The device program on a real cgroup2 hierarchy: this host's hybrid
/// /sys/fs/cgroup/unified has no v1 controllers, but the kernel runs a
/// cgroup's device program for its processes all the same.
#[test]
fn device_program_is_enforced_by_the_kernel() {
    use std::os::unix::process::CommandExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let Some(root) = cgroup2_mount() else {
        eprintln!("skipped: no cgroup2 mount");
        return;
    };
    struct Rmdir(PathBuf);
    impl Drop for Rmdir {
        fn drop(&mut self) {
            let _ = fs::remove_dir(&self.0);
        }
    }
    let dir = Rmdir(root.join(format!("nsbox-bpf-test-{}", std::process::id())));
    fs::create_dir(&dir.0).unwrap();
    let rules = [
        DeviceRule {
            allow: false,
            kind: 'a',
            major: None,
            minor: None,
            access: "rwm".into(),
        },
        DeviceRule {
            allow: true,
            kind: 'c',
            major: Some(1),
            minor: Some(3),
            access: "rwm".into(),
        },
    ];
    bpf::attach(&dir.0, &rules).unwrap();
    let procs = std::ffi::CString::new(dir.0.join("cgroup.procs").to_str().unwrap()).unwrap();
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.args([
        "-c",
        "echo x > /dev/null && echo null-ok; \
         (head -c 1 /dev/zero > /dev/null) 2>/dev/null && echo zero-ok || echo zero-denied",
    ]);
    // SAFETY: open, write and close only, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            Ok(())
        })
    };
    let out = cmd.output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "null-ok\nzero-denied\n",
        "{out:?}"
    );
}

/// The v2 code against a real cgroup2 hierarchy (this host's hybrid
/// mount has no controllers to limit with, but cgroup.procs, the freezer,
/// device programs and rmdir are the kernel's own there): make, join,
/// list, freeze, thaw, destroy.
#[test]
fn v2_lifecycle_on_a_real_cgroup2_mount() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let Some(root) = cgroup2_mount() else {
        eprintln!("skipped: no cgroup2 mount");
        return;
    };
    let layout = Layout::V2 { root: root.clone() };
    let scope = format!("host-unit-{}", std::process::id());
    let paths = layout.paths(None, "v2", Some(&scope)).unwrap();
    let deny_zero = Resources {
        devices: vec![DeviceRule {
            allow: false,
            kind: 'c',
            major: Some(1),
            minor: Some(5),
            access: "rwm".into(),
        }],
        ..Default::default()
    };
    create(&paths, &deny_zero).unwrap();
    let mut child = std::process::Command::new("/bin/sh")
        .args(["-c", "read x; head -c 1 /dev/zero"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    add_process(&paths, pid).unwrap();
    assert_eq!(procs(&paths), [pid]);
    freeze(&paths).unwrap();
    assert!(is_frozen(&paths));
    assert_eq!(
        keyed(
            &read_file(Path::new(&paths.dirs[0].dir), "cgroup.events").unwrap(),
            "frozen"
        ),
        Some(1)
    );
    thaw(&paths).unwrap();
    assert!(!is_frozen(&paths));
    // The device program applies: /dev/zero is refused, so nothing is read.
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(!out.status.success(), "{out:?}");

    // destroy kills what is left and takes the directories, ours only.
    let mut sleeper = std::process::Command::new("/bin/sleep")
        .arg("30")
        .spawn()
        .unwrap();
    add_process(&paths, sleeper.id() as i32).unwrap();
    freeze(&paths).unwrap();
    destroy(&paths, Duration::from_secs(5), None).unwrap();
    let status = sleeper.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    assert!(!Path::new(&paths.dirs[0].dir).exists());
    assert!(!Path::new(&paths.dirs[0].dir).exists());
}

/// A child that writes "0" into the files opened for it (before its
/// fork, as the shim opens them before the clone) is in the container's
/// cgroup in every hierarchy, alone; the parent stays where it was.
#[test]
fn a_child_joins_through_the_files_opened_for_it() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let layout = match Layout::detect() {
        Ok(l @ Layout::V1 { .. }) => l,
        _ => {
            eprintln!("skipped: no cgroup v1 hierarchies on this host");
            return;
        }
    };
    let scope = format!("host-join-{}", std::process::id());
    let paths = layout.paths(None, "in", Some(&scope)).unwrap();
    create(&paths, &Resources::default()).unwrap();
    let before = fs::read_to_string("/proc/self/cgroup").unwrap();
    let files = self_join_files(&paths).unwrap();
    let fds: Vec<i32> = files.iter().map(|f| f.as_raw_fd()).collect();
    let mut cmd = std::process::Command::new("/bin/sleep");
    cmd.arg("30");
    // SAFETY: the closure makes raw syscalls only (write, _exit).
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &fds {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    libc::_exit(99);
                }
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let theirs = fs::read_to_string(format!("/proc/{}/cgroup", child.id())).unwrap();
    let in_all = paths.dirs.iter().all(|d| {
        theirs
            .lines()
            .any(|l| l.ends_with(&format!(":{}:{}", d.controller, paths.path)))
    });
    let listed = procs(&paths);
    let _ = child.kill();
    let _ = child.wait();
    destroy(&paths, Duration::from_secs(5), None).unwrap();
    assert!(in_all, "child's cgroups:\n{theirs}");
    assert_eq!(listed, [child.id() as i32]);
    assert_eq!(before, fs::read_to_string("/proc/self/cgroup").unwrap());
}

/// hugepageLimits, rdma, network and kernelTCP: what is asked of each.
fn more_resources() -> Resources {
    Resources {
        memory: Some(MemoryResources {
            kernel_tcp: Some(16 << 20),
            ..Default::default()
        }),
        hugepage_limits: vec![HugepageLimit {
            page_size: "2MB".into(),
            limit: 8 << 20,
        }],
        rdma: vec![RdmaLimit {
            device: "mlx5_0".into(),
            hca_handles: Some(3),
            hca_objects: None,
        }],
        network: Some(NetworkResources {
            class_id: Some(0x100001),
            priorities: vec![("lo".into(), 7), ("eth0".into(), 2)],
        }),
        ..Default::default()
    }
}

#[test]
fn v1_writes_hugetlb_rdma_network_and_kernel_tcp() {
    let f = Fake::new("v1more");
    let controllers = ["memory", "hugetlb", "rdma", "net_cls,net_prio"];
    let layout = Layout::V1 {
        hierarchies: controllers
            .iter()
            .map(|c| (c.to_string(), f.0.join(c)))
            .collect(),
        hybrid: false,
    };
    let paths = layout.paths(None, "c1", None).unwrap();
    let mem = f.cgroup("memory/nsbox@c1", &[("memory.kmem.tcp.limit_in_bytes", "")]);
    let huge = f.cgroup(
        "hugetlb/nsbox@c1",
        &[
            ("hugetlb.2MB.limit_in_bytes", ""),
            ("hugetlb.2MB.rsvd.limit_in_bytes", ""),
        ],
    );
    let rdma = f.cgroup("rdma/nsbox@c1", &[("rdma.max", "")]);
    let net = f.cgroup(
        "net_cls,net_prio/nsbox@c1",
        &[("net_cls.classid", ""), ("net_prio.ifpriomap", "")],
    );
    apply(&paths, &more_resources(), false).unwrap();
    assert_eq!(
        read(&mem.join("memory.kmem.tcp.limit_in_bytes")),
        "16777216"
    );
    assert_eq!(read(&huge.join("hugetlb.2MB.limit_in_bytes")), "8388608");
    assert_eq!(
        read(&huge.join("hugetlb.2MB.rsvd.limit_in_bytes")),
        "8388608"
    );
    assert_eq!(read(&rdma.join("rdma.max")), "mlx5_0 hca_handle=3");
    assert_eq!(read(&net.join("net_cls.classid")), "1048577");
    // One write per interface.
    assert_eq!(read(&net.join("net_prio.ifpriomap")), "lo 7eth0 2");

    // A kernel without reservation accounting has no rsvd file: skipped.
    fs::remove_file(huge.join("hugetlb.2MB.rsvd.limit_in_bytes")).unwrap();
    apply(&paths, &more_resources(), false).unwrap();
    assert!(!huge.join("hugetlb.2MB.rsvd.limit_in_bytes").exists());
}

#[test]
fn v2_writes_hugetlb_and_rdma_and_refuses_v1_only_limits() {
    let f = Fake::new("v2more");
    f.cgroup(
        "",
        &[
            (
                "cgroup.controllers",
                "cpuset cpu io memory hugetlb pids rdma misc\n",
            ),
            ("cgroup.subtree_control", ""),
        ],
    );
    let leaf = f.cgroup(
        "nsbox@c1",
        &[
            // What the kernel shows once the root passes them on.
            (
                "cgroup.controllers",
                "cpuset cpu io memory hugetlb pids rdma\n",
            ),
            ("hugetlb.2MB.max", ""),
            ("hugetlb.2MB.rsvd.max", ""),
            ("rdma.max", ""),
        ],
    );
    let paths = Layout::V2 { root: f.0.clone() }
        .paths(None, "c1", None)
        .unwrap();
    let mut r = more_resources();
    r.memory = None;
    r.network = None;
    create(&paths, &r).unwrap();
    assert_eq!(
        read(&f.0.join("cgroup.subtree_control")),
        "+cpu+cpuset+io+memory+pids+hugetlb+rdma",
        "hugetlb and rdma for a container that asks"
    );
    assert_eq!(read(&leaf.join("hugetlb.2MB.max")), "8388608");
    assert_eq!(read(&leaf.join("hugetlb.2MB.rsvd.max")), "8388608");
    assert_eq!(read(&leaf.join("rdma.max")), "mlx5_0 hca_handle=3");

    // `update` of a controller the cgroup lacks enables it on the way.
    fs::write(f.0.join("cgroup.subtree_control"), "").unwrap();
    fs::write(leaf.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
    apply(&paths, &r, false).unwrap();
    assert_eq!(read(&f.0.join("cgroup.subtree_control")), "+hugetlb+rdma");

    for (what, r) in [
        (
            "kernelTCP",
            Resources {
                memory: more_resources().memory,
                ..Default::default()
            },
        ),
        (
            "net_cls",
            Resources {
                network: more_resources().network,
                ..Default::default()
            },
        ),
    ] {
        let e = apply(&paths, &r, false).unwrap_err();
        assert!(e.to_string().contains(what), "{what}: {e}");
    }
}

#[test]
fn v2_cpu_max_keeps_what_is_not_asked() {
    let f = Fake::new("v2cpu");
    f.cgroup(
        "",
        &[
            ("cgroup.controllers", "cpu\n"),
            ("cgroup.subtree_control", ""),
        ],
    );
    let leaf = f.cgroup("nsbox@c1", &[("cpu.max", "")]);
    let paths = Layout::V2 { root: f.0.clone() }
        .paths(None, "c1", None)
        .unwrap();
    // cpu.max: a quota alone keeps the period; a period alone the quota.
    let cpu = |quota, period| Resources {
        cpu: Some(CpuResources {
            quota,
            period,
            ..Default::default()
        }),
        ..Default::default()
    };
    fs::write(leaf.join("cpu.max"), "").unwrap();
    apply(&paths, &cpu(Some(20_000), None), false).unwrap();
    assert_eq!(read(&leaf.join("cpu.max")), "20000");
    fs::write(leaf.join("cpu.max"), "30000 200000\n").unwrap();
    apply(&paths, &cpu(None, Some(50_000)), false).unwrap();
    assert_eq!(read(&leaf.join("cpu.max")), "30000 200000\n30000 50000");
    fs::write(leaf.join("cpu.max"), "").unwrap();
    apply(&paths, &cpu(Some(-1), Some(100_000)), false).unwrap();
    assert_eq!(read(&leaf.join("cpu.max")), "max 100000");
}

#[test]
fn check_names_the_controller_a_host_lacks() {
    let f = Fake::new("check");
    f.cgroup("", &[("cgroup.controllers", "cpu memory pids\n")]);
    let v2 = Layout::V2 { root: f.0.clone() };
    let v1 = Layout::V1 {
        hierarchies: vec![("memory".into(), f.0.join("memory"))],
        hybrid: false,
    };
    let huge = Resources {
        hugepage_limits: more_resources().hugepage_limits,
        ..Default::default()
    };
    let rdma = Resources {
        rdma: more_resources().rdma,
        ..Default::default()
    };
    let net = Resources {
        network: more_resources().network,
        ..Default::default()
    };
    let tcp = Resources {
        memory: more_resources().memory,
        ..Default::default()
    };
    let unified = Resources {
        unified: vec![("memory.high".into(), "1".into())],
        ..Default::default()
    };
    let sizes = hugepage_sizes();
    for (layout, r, needles) in [
        (&v1, &rdma, &["linux.resources.rdma", "rdma controller"][..]),
        (&v2, &rdma, &["linux.resources.rdma", "rdma controller"]),
        (&v1, &net, &["network.classID", "net_cls controller"]),
        (&v2, &net, &["linux.resources.network", "cgroup v2"]),
        (&v2, &tcp, &["kernelTCP", "cgroup v2"]),
        (&v1, &unified, &["unified", "v2"]),
    ] {
        let e = layout.check(r).unwrap_err().to_string();
        for n in needles {
            assert!(e.contains(n), "{layout:?}: {n:?} not in {e}");
        }
    }
    assert!(v1.check(&tcp).is_ok());
    assert!(v2.check(&unified).is_ok());
    if sizes.iter().any(|s| s == "2MB") {
        let e = v1.check(&huge).unwrap_err().to_string();
        assert!(e.contains("hugetlb controller"), "{e}");
    }
    let odd = Resources {
        hugepage_limits: vec![HugepageLimit {
            page_size: "3MB".into(),
            limit: 1,
        }],
        ..Default::default()
    };
    let e = v2.check(&odd).unwrap_err().to_string();
    assert!(e.contains("\"3MB\"") && e.contains("hugepageLimits"), "{e}");
}

#[test]
fn page_sizes_as_the_kernel_names_them() {
    assert_eq!(page_size_name(64), "64KB");
    assert_eq!(page_size_name(2048), "2MB");
    assert_eq!(page_size_name(1 << 20), "1GB");
    assert_eq!(page_size_name(16 << 20), "16GB");
    assert_eq!(page_size_name(1536), "1536KB");
}

#[test]
fn rdma_limits_go_back_to_max_before_the_cgroup_goes() {
    let f = Fake::new("rdma-release");
    let dir = f.cgroup(
        "rdma/c1",
        &[(
            "rdma.max",
            "rxe0 hca_handle=3 hca_object=30\nrxe1 hca_handle=max hca_object=max\n",
        )],
    );
    hugetlb_rdma::release_rdma(&dir);
    // The fake keeps every write after the kernel's text: the limited
    // device is set back to max, the other left alone.
    assert_eq!(
        read(&dir.join("rdma.max")),
        "rxe0 hca_handle=3 hca_object=30\nrxe1 hca_handle=max hca_object=max\n\
         rxe0 hca_handle=max hca_object=max"
    );
    // No rdma.max (no rdma controller there): nothing, and no error.
    let bare = f.cgroup("rdma/c2", &[]);
    hugetlb_rdma::release_rdma(&bare);
    assert!(!bare.join("rdma.max").exists());
}
