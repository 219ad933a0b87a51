//! The harness shared by every integration test: it finds the built
//! binaries, builds a busybox rootfs once per test binary, writes bundles,
//! runs `runtime` with a timeout, and checks after every test (also when it
//! panics) that nothing of its containers was left behind.
//!
//! Every test starts with
//!
//! ```ignore
//! let Some(t) = Test::new("name") else { return };
//! ```
//!
//! which, when not run as root, reports the test skipped (see [`skip`]) and
//! returns: libtest has no skip of its own and counts such a test passed,
//! so `make test` takes the skips out of that count. The `Test` owns a state root (`runtime --root`, a short path under
//! /run/nsbox-t because unix socket paths are limited to 108 bytes) and a
//! work directory under /tmp/nsbox-t for bundles and output files. When it is
//! dropped it checks for leaks (state entries, processes, mounts, cgroups),
//! force-deletes whatever is left, and fails the test if anything was.

#![allow(dead_code)]

pub mod blockdev;
pub mod daemon;
pub mod docker;
pub mod images;
pub mod podman;

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use serde_json::{json, Value};

pub mod cgroupfs;
pub mod systemd;
pub mod users;
#[allow(unused_imports)]
pub use cgroupfs::*;
// Only the tests that make users use them.
#[allow(unused_imports)]
pub use users::*;

/// No single `runtime` call may take longer than this.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Where each test's state root lives. Short on purpose (sun_path).
pub const STATE_BASE: &str = "/run/nsbox-t";
/// Where each test's bundles, output files and the shared rootfs live.
pub const WORK_BASE: &str = "/tmp/nsbox-t";

/// Path of the multitool inside the rootfs.
pub const MT: &str = "/bin/nsbox-multitool";

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Where [`skip`] appends a line per skipped test (`make test` sets it and
/// counts the lines into its closing summary).
pub const SKIPS_ENV: &str = "NSBOX_TEST_SKIPS";

/// Reports that the running test cannot run here, for `reason`, before the
/// test returns without testing anything. Under `CI=true` that is a
/// failure: this panics. Otherwise it prints `TEST: skipped: REASON` on the
/// real stderr (past libtest's capture, so it shows even for a test that
/// "passes") and appends `BINARY::TEST: REASON` to the file named by
/// [`SKIPS_ENV`], if set.
#[track_caller]
pub fn skip(name: &str, reason: &str) {
    use std::io::Write;
    // libtest runs each test on a thread named after it.
    let test = std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or(name)
        .to_string();
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: skipped under CI=true, which allows no skip: {reason}");
    }
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|s| match s.rsplit_once('-') {
            // cargo names test executables NAME-HASH.
            Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_string(),
            _ => s,
        })
        .unwrap_or_default();
    let _ = std::io::stderr().write_all(format!("{test}: skipped: {reason}\n").as_bytes());
    if let Some(file) = std::env::var_os(SKIPS_ENV) {
        // One write of one line, appended: whole even beside other tests'.
        let line = format!("{binary}::{test}: {reason}\n");
        let written = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            panic!(
                "{test}: cannot record its skip in {}: {e}",
                Path::new(&file).display()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Binaries

pub struct Bins {
    pub dir: PathBuf,
    pub runtime: PathBuf,
    pub shim: PathBuf,
    pub tiny_init: PathBuf,
    pub multitool: PathBuf,
}

/// The built binaries, next to the test executable's `deps/` directory
/// (target/<triple>/debug/deps/.. = target/<triple>/debug).
pub fn bins() -> &'static Bins {
    static BINS: OnceLock<Bins> = OnceLock::new();
    BINS.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable has no grandparent directory")
            .to_path_buf();
        let bins = Bins {
            runtime: dir.join("runtime"),
            shim: dir.join("shim"),
            tiny_init: dir.join("tiny-init"),
            multitool: dir.join("nsbox-multitool"),
            dir,
        };
        let missing: Vec<_> = [&bins.runtime, &bins.shim, &bins.tiny_init, &bins.multitool]
            .into_iter()
            .filter(|p| !p.is_file())
            .map(|p| p.display().to_string())
            .collect();
        assert!(
            missing.is_empty(),
            "missing binaries: {}; run `cargo build --workspace` first",
            missing.join(", ")
        );
        bins
    })
}

// ---------------------------------------------------------------------------
// Rootfs

static ROOTFS: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_rootfs() {
    if let Some(p) = ROOTFS.get() {
        let _ = fs::remove_dir_all(p);
    }
    // Only if empty: another test binary may be using them.
    let _ = fs::remove_dir(WORK_BASE);
    let _ = fs::remove_dir(STATE_BASE);
}

/// Fails the test, naming the first one missing, unless every command in
/// `tools` is on PATH (`make deps` installs them: `hint` says which).
#[track_caller]
pub fn require_tools(tools: &[&str], hint: &str) {
    for tool in tools {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool} >/dev/null")])
                .status()
                .is_ok_and(|s| s.success()),
            "{tool} is missing: {hint}"
        );
    }
}

/// The busybox rootfs shared (read-only) by the containers of this test binary.
pub fn rootfs() -> &'static Path {
    ROOTFS.get_or_init(|| {
        let dir = PathBuf::from(format!("{WORK_BASE}/rootfs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        build_rootfs(&dir);
        // SAFETY: registering a plain extern "C" function.
        unsafe { libc::atexit(remove_rootfs) };
        dir
    })
}

/// Builds a busybox rootfs at `dest`: bin/busybox with one symlink per
/// applet, bin/nsbox-multitool, /etc/{passwd,group,issue} and the usual
/// mount points.
pub fn build_rootfs(dest: &Path) {
    for d in [
        "bin", "proc", "sys", "dev", "tmp", "etc", "root", "mnt", "srv", "home/app",
    ] {
        fs::create_dir_all(dest.join(d)).unwrap_or_else(|e| panic!("mkdir {d}: {e}"));
    }
    fs::set_permissions(dest, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(dest.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::set_permissions(dest.join("root"), fs::Permissions::from_mode(0o700)).unwrap();
    let busybox = Path::new("/usr/bin/busybox");
    assert!(
        busybox.is_file(),
        "/usr/bin/busybox is missing: install busybox-static"
    );
    fs::copy(busybox, dest.join("bin/busybox")).expect("copy busybox");
    fs::set_permissions(dest.join("bin/busybox"), fs::Permissions::from_mode(0o755)).unwrap();
    let list = Command::new(busybox)
        .arg("--list")
        .output()
        .expect("busybox --list");
    assert!(list.status.success(), "busybox --list failed");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        symlink("busybox", dest.join("bin").join(applet))
            .unwrap_or_else(|e| panic!("symlink {applet}: {e}"));
    }
    fs::copy(&bins().multitool, dest.join("bin/nsbox-multitool")).expect("copy multitool");
    fs::set_permissions(
        dest.join("bin/nsbox-multitool"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let files = [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\n\
             nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
             app:x:1000:1000:app:/home/app:/bin/sh\n",
        ),
        (
            "etc/group",
            "root:x:0:\nstaff:x:50:\nusers:x:100:\nnobody:x:65534:\napp:x:1000:\n",
        ),
        ("etc/issue", "nsbox test rootfs\n"),
        // Mount points for a bridged container's own copies.
        ("etc/hosts", "127.0.0.1\tlocalhost\n"),
        ("etc/hostname", "nsbox-test\n"),
        ("etc/resolv.conf", ""),
    ];
    for (path, text) in files {
        fs::write(dest.join(path), text).unwrap_or_else(|e| panic!("write {path}: {e}"));
    }
    std::os::unix::fs::chown(dest.join("home/app"), Some(1000), Some(1000)).unwrap();
}

// ---------------------------------------------------------------------------
// config.json

pub const DEFAULT_CAPS: &[&str] = &["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

/// Every capability this kernel generation knows (0..=40).
pub const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The capabilities in this process's bounding set (the most a container
/// started from here can get; this VM's lacks CAP_SYS_RESOURCE, for one).
pub fn host_caps() -> Vec<&'static str> {
    let bnd = own_status_field("CapBnd");
    let mask = u64::from_str_radix(&bnd, 16).expect("CapBnd is hex");
    ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1 << bit) != 0)
        .map(|(_, name)| *name)
        .collect()
}

/// A field of this (test) process's /proc/self/status.
pub fn own_status_field(key: &str) -> String {
    status_field("self", key).unwrap_or_else(|| panic!("no {key} in /proc/self/status"))
}

/// A field of /proc/PID/status (`pid` a number or "self").
pub fn status_field(pid: &str, key: &str) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
}

pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];

pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// A runc-like default config.json running `args` in the shared busybox
/// rootfs (read-only), with the standard mounts and namespaces.
pub fn default_config(args: &[&str]) -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": args,
            "env": ["PATH=/bin:/usr/bin"],
            "cwd": "/",
            "capabilities": caps_json(DEFAULT_CAPS),
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
            "noNewPrivileges": true
        },
        "root": { "path": rootfs(), "readonly": true },
        "hostname": "nsbox-test",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
              "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
              "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] },
            { "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "nodev", "mode=1777"] }
        ],
        "linux": {
            "namespaces": [
                { "type": "pid" }, { "type": "ipc" }, { "type": "uts" },
                { "type": "mount" }, { "type": "network" }
            ],
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS
        }
    })
}

/// The same set in bounding, effective and permitted.
pub fn caps_json(caps: &[&str]) -> Value {
    json!({ "bounding": caps, "effective": caps, "permitted": caps })
}

// ---------------------------------------------------------------------------
// Running commands

/// What a finished command left.
pub struct Out {
    pub what: String,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}`\n  exit code: {:?}, signal: {:?}\n  stdout: {:?}\n  stderr: {:?}",
            self.what, self.code, self.signal, self.stdout, self.stderr
        )
    }
}

impl Out {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Asserts exit code 0 and returns self.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert!(self.success(), "command failed:\n{self:?}");
        self
    }

    /// Asserts the given exit code.
    #[track_caller]
    pub fn code_is(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "unexpected exit code:\n{self:?}");
        self
    }

    /// Asserts a failure reported as the contract says: non-zero exit, and
    /// exactly one line on stderr naming the container and containing each
    /// of `needles` (a cause). Returns that line.
    #[track_caller]
    pub fn fails_with(&self, id: &str, needles: &[&str]) -> String {
        assert!(
            self.code.is_some_and(|c| c != 0),
            "expected a non-zero exit:\n{self:?}"
        );
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one line on stderr:\n{self:?}"
        );
        let line = lines[0];
        // An ID with a control character can only be named escaped, if the
        // error is to stay on one line.
        let escaped = id.escape_debug().to_string();
        assert!(
            line.contains(id) || line.contains(&escaped),
            "the error line does not name the container {id:?}:\n{self:?}"
        );
        for needle in needles {
            assert!(
                line.to_lowercase().contains(&needle.to_lowercase()),
                "the error line does not mention {needle:?}:\n{self:?}"
            );
        }
        // The part after "runtime: VERB ID:" must say something.
        let cause = line.rsplit(':').next().unwrap_or("").trim();
        assert!(!cause.is_empty(), "the error line has no cause:\n{self:?}");
        line.to_string()
    }

    pub fn stdout_lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self:?}"))
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(' ') {
            s.push_str(&format!(" {a:?}"));
        } else {
            s.push(' ');
            s.push_str(&a);
        }
    }
    s
}

/// Waits for `child` at most `timeout`; on timeout kills it (by its pid),
/// reaps it and returns None.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(e) => panic!("waitpid: {e}"),
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A command started in the background, with stdout and stderr in files.
pub struct Spawned {
    child: Option<Child>,
    what: String,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Spawned {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Waits for the command (at most `timeout`; killing it and failing the
    /// test after that) and collects its output.
    #[track_caller]
    pub fn wait(self, timeout: Duration) -> Out {
        match self.try_wait(timeout) {
            Ok(out) => out,
            Err(out) => panic!("timed out after {timeout:?} (killed it):\n{out:?}"),
        }
    }

    /// Like [`Spawned::wait`], but a timeout is an `Err` instead of a panic
    /// (for cleanup code, which must not panic while a test is panicking).
    pub fn try_wait(mut self, timeout: Duration) -> Result<Out, Out> {
        let mut child = self.child.take().unwrap();
        let status = wait_timeout(&mut child, timeout);
        let out = Out {
            what: self.what.clone(),
            code: status.and_then(|s| s.code()),
            signal: status.and_then(|s| s.signal()),
            stdout: read_lossy(&self.stdout),
            stderr: read_lossy(&self.stderr),
        };
        if status.is_some() {
            Ok(out)
        } else {
            Err(out)
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Polls `f` every 20 ms until it returns Some, for at most `timeout`.
#[track_caller]
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the file contains `needle` (at most 10 s) and returns its text.
#[track_caller]
pub fn wait_for_text(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = read_lossy(path);
        if text.contains(needle) {
            return text;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out waiting for {needle:?} in {}; it holds {text:?}",
                path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// /proc helpers

/// The fields of /proc/PID/stat after the command's name: the state
/// first, then ppid, pgrp, session...
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// (state, ppid, starttime) of a process, from /proc/PID/stat.
pub fn proc_stat(pid: i32) -> Option<(String, i32, u64)> {
    let f = stat_fields(pid)?;
    Some((
        f.first()?.to_string(),
        f.get(1)?.parse().ok()?,
        f.get(19)?.parse().ok()?,
    ))
}

/// The session a process is in.
pub fn session(pid: i32) -> Option<i32> {
    stat_fields(pid)?.get(3)?.parse().ok()
}

pub fn ppid(pid: i32) -> Option<i32> {
    proc_stat(pid).map(|s| s.1)
}

pub fn comm(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_string())
}

pub fn cmdline(pid: i32) -> Option<String> {
    fs::read(format!("/proc/{pid}/cmdline")).ok().map(|b| {
        String::from_utf8_lossy(&b)
            .replace('\0', " ")
            .trim_end()
            .to_string()
    })
}

pub fn all_pids() -> Vec<i32> {
    let mut pids: Vec<i32> = fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    pids
}

/// The direct children of `pid`.
pub fn children(pid: i32) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&p| ppid(p) == Some(pid))
        .collect()
}

/// Is the process that had `starttime` still there? A zombie whose parent
/// is the host's PID 1 counts as gone: it has exited and only waits for
/// init to reap it, which this VM's init does lazily (up to seconds later).
pub fn alive(pid: i32, starttime: u64) -> bool {
    proc_stat(pid)
        .is_some_and(|(state, parent, start)| start == starttime && !(state == "Z" && parent == 1))
}

/// The inode of each of the host's (this test process's) namespaces.
pub fn own_ns(name: &str) -> String {
    let link = fs::read_link(format!("/proc/self/ns/{name}")).expect("read ns link");
    let text = link.to_string_lossy().into_owned();
    text.split_once('[')
        .and_then(|(_, r)| r.strip_suffix(']'))
        .unwrap_or(&text)
        .to_string()
}

pub fn mountinfo() -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .expect("read mountinfo")
        .lines()
        .map(String::from)
        .collect()
}

/// Field 5 of each mountinfo line.
pub fn mount_points() -> Vec<String> {
    mountinfo()
        .iter()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .collect()
}

/// Does `hay` mention `path` as a path (followed by a separator, not by more
/// of a longer name such as /run/nsbox-t/1-10 for /run/nsbox-t/1-1)?
pub fn mentions(hay: &str, path: &Path) -> bool {
    let needle = path.to_string_lossy();
    let mut from = 0;
    while let Some(i) = hay[from..].find(needle.as_ref()) {
        let end = from + i + needle.len();
        match hay[end..].chars().next() {
            None | Some('/' | ' ' | '\t' | '\n' | ',' | ':' | '=' | '"' | '\'') => return true,
            _ => from = end,
        }
    }
    false
}

/// A recursive listing of a directory (path, kind, mode, size, mtime, link
/// target), to see that something did not change.
pub fn snapshot(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(&d)
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let target = fs::read_link(&p)
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            out.push(format!(
                "{rel} {:o} {} {} {} {target}",
                m.mode(),
                m.size(),
                m.mtime(),
                m.mtime_nsec()
            ));
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------
// The per-test context

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub struct Bundle {
    pub dir: PathBuf,
}

impl Bundle {
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    pub fn path(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    pub fn read_config(&self) -> Value {
        serde_json::from_str(&fs::read_to_string(self.config_path()).unwrap()).unwrap()
    }

    pub fn write_config(&self, config: &Value) {
        fs::write(
            self.config_path(),
            serde_json::to_string_pretty(config).unwrap(),
        )
        .unwrap();
    }
}

pub struct Test {
    pub name: String,
    /// `runtime --root`: must be empty (and is removed) at the end.
    pub root: PathBuf,
    /// Bundles, output files, host directories for bind mounts.
    pub work: PathBuf,
    calls: AtomicUsize,
    /// (pid, starttime) of every host process of ours the test has seen
    /// (inits, shims): they must all be gone at the end.
    tracked: Mutex<Vec<(i32, u64, String)>>,
    /// cgroupsPaths the test gave its containers: gone at the end too.
    cgroups: Mutex<Vec<String>>,
}

impl Test {
    /// None when the test cannot run here (not root), after reporting it
    /// skipped (a failure under CI=true; see [`skip`]).
    #[track_caller]
    pub fn new(name: &str) -> Option<Test> {
        if !is_root() {
            skip(name, "needs root");
            return None;
        }
        bins();
        rootfs();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{}-{n}", std::process::id());
        let root = PathBuf::from(format!("{STATE_BASE}/{tag}"));
        let work = PathBuf::from(format!("{WORK_BASE}/{tag}"));
        for d in [&root, &work] {
            let _ = fs::remove_dir_all(d);
            // Retried: another test binary's exit may remove the (empty)
            // base directory between our mkdir of it and of `d`.
            let mut tries = 0;
            while let Err(e) = fs::create_dir_all(d) {
                tries += 1;
                assert!(tries < 5, "mkdir {}: {e}", d.display());
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Some(Test {
            name: name.to_string(),
            root,
            work,
            calls: AtomicUsize::new(0),
            tracked: Mutex::new(Vec::new()),
            cgroups: Mutex::new(Vec::new()),
        })
    }

    pub fn root_str(&self) -> &str {
        self.root.to_str().unwrap()
    }

    /// `runtime --root ROOT ARGS...` with stdin from /dev/null.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&bins().runtime);
        cmd.arg("--root").arg(&self.root).args(args);
        cmd.stdin(Stdio::null());
        cmd
    }

    fn next_files(&self) -> (PathBuf, PathBuf) {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let dir = self.work.join("calls");
        fs::create_dir_all(&dir).unwrap();
        (dir.join(format!("{n}.out")), dir.join(format!("{n}.err")))
    }

    /// Runs `cmd` with stdout and stderr going to the given files (never
    /// pipes: a created container keeps the runtime's stdio, so nobody
    /// would ever see EOF), at most `timeout`.
    #[track_caller]
    pub fn exec_to(
        &self,
        mut cmd: Command,
        stdout: &Path,
        stderr: &Path,
        timeout: Duration,
    ) -> Out {
        let sp = self.spawn_to(&mut cmd, stdout, stderr);
        sp.wait(timeout)
    }

    pub fn spawn_to(&self, cmd: &mut Command, stdout: &Path, stderr: &Path) -> Spawned {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(stdout)
            .unwrap();
        let err = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(stderr)
            .unwrap();
        let what = describe(cmd);
        cmd.stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn `{what}`: {e}"));
        Spawned {
            child: Some(child),
            what,
            stdout: stdout.to_path_buf(),
            stderr: stderr.to_path_buf(),
        }
    }

    /// `runtime ARGS...`, output captured, 30 s at most.
    #[track_caller]
    pub fn rt(&self, args: &[&str]) -> Out {
        let (o, e) = self.next_files();
        self.exec_to(self.command(args), &o, &e, TIMEOUT)
    }

    /// Runs a prepared `runtime` command, output captured, 30 s at most.
    #[track_caller]
    pub fn rt_cmd(&self, cmd: Command) -> Out {
        let (o, e) = self.next_files();
        self.exec_to(cmd, &o, &e, TIMEOUT)
    }

    /// Starts `runtime ARGS...` in the background (e.g. a foreground `run`
    /// to be signalled), output in files.
    pub fn spawn(&self, args: &[&str]) -> Spawned {
        let (o, e) = self.next_files();
        self.spawn_to(&mut self.command(args), &o, &e)
    }

    /// The files where container `id`'s stdout and stderr go when it is
    /// created or run detached through [`Test::create`] / [`Test::run_detached`].
    pub fn ctr_stdout(&self, id: &str) -> PathBuf {
        self.work.join(format!("{}.out", file_tag(id)))
    }
    pub fn ctr_stderr(&self, id: &str) -> PathBuf {
        self.work.join(format!("{}.err", file_tag(id)))
    }

    /// A bundle directory `name` with the default config running `args`,
    /// tweaked by `tweak` before it is written.
    pub fn bundle_with(&self, name: &str, args: &[&str], tweak: impl FnOnce(&mut Value)) -> Bundle {
        let dir = self.work.join(name);
        fs::create_dir_all(&dir).unwrap();
        let mut config = default_config(args);
        tweak(&mut config);
        let b = Bundle { dir };
        b.write_config(&config);
        b
    }

    pub fn bundle(&self, name: &str, args: &[&str]) -> Bundle {
        self.bundle_with(name, args, |_| {})
    }

    /// An empty bundle directory, for `runtime spec` to fill.
    pub fn empty_bundle(&self, name: &str) -> Bundle {
        let dir = self.work.join(name);
        fs::create_dir_all(&dir).unwrap();
        Bundle { dir }
    }

    /// `runtime run -b BUNDLE ID` in the foreground: the workload's exit code.
    #[track_caller]
    pub fn run(&self, bundle: &Bundle, id: &str) -> Out {
        self.rt(&["run", "-b", bundle.path(), id])
    }

    /// `runtime create -b BUNDLE ID`, the container's stdio going to
    /// [`Test::ctr_stdout`] / [`Test::ctr_stderr`].
    #[track_caller]
    pub fn create(&self, bundle: &Bundle, id: &str) -> Out {
        let out = self.exec_to(
            self.command(&["create", "-b", bundle.path(), id]),
            &self.ctr_stdout(id),
            &self.ctr_stderr(id),
            TIMEOUT,
        );
        if out.success() {
            self.track_state(id);
        }
        out
    }

    /// `runtime run -d -b BUNDLE ID`, the container's stdio going to files.
    #[track_caller]
    pub fn run_detached(&self, bundle: &Bundle, id: &str) -> Out {
        let out = self.exec_to(
            self.command(&["run", "-d", "-b", bundle.path(), id]),
            &self.ctr_stdout(id),
            &self.ctr_stderr(id),
            TIMEOUT,
        );
        if out.success() {
            self.track_state(id);
        }
        out
    }

    /// `state` once the shim has recorded the exit: "stopped" shows as soon
    /// as the init is dead, the exit code a moment later.
    #[track_caller]
    pub fn stopped_with_code(&self, id: &str) -> Value {
        self.wait_status(id, "stopped");
        wait_for("the exit code in state", Duration::from_secs(10), || {
            let s = self.state(id);
            (!s["exitCode"].is_null()).then_some(s)
        })
    }

    /// `runtime state ID` parsed; fails the test if it fails.
    #[track_caller]
    pub fn state(&self, id: &str) -> Value {
        let out = self.rt(&["state", id]);
        out.ok();
        let v = out.json();
        if let Some(pid) = v["pid"].as_i64().filter(|&p| p > 0) {
            self.track(pid as i32, "init (state pid)");
        }
        v
    }

    /// The state's status string.
    #[track_caller]
    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap_or("").to_string()
    }

    /// Polls `state` until status is `want` (at most 10 s); returns the state.
    #[track_caller]
    pub fn wait_status(&self, id: &str, want: &str) -> Value {
        let mut last = Value::Null;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = self.rt(&["state", id]);
            if out.success() {
                last = out.json();
                if last["status"] == want {
                    return last;
                }
            }
            if Instant::now() >= deadline {
                panic!("container {id} did not reach status {want:?} in 10 s; last state: {last}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The shim's pid, as state.json names it.
    pub fn shim_pid(&self, id: &str) -> i32 {
        let text = fs::read_to_string(self.root.join(id).join("state.json")).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        v["shim"]["pid"]
            .as_i64()
            .expect("state.json names the shim") as i32
    }

    pub fn track_state(&self, id: &str) {
        let out = self.rt(&["state", id]);
        if out.success() {
            if let Ok(v) = serde_json::from_str::<Value>(&out.stdout) {
                if let Some(pid) = v["pid"].as_i64().filter(|&p| p > 0) {
                    self.track(pid as i32, "init (state pid)");
                }
            }
        }
    }

    /// Remembers a host process of this test (and its parent, when that
    /// is our shim) so that the leak check can see it is gone at the end.
    pub fn track(&self, pid: i32, what: &str) {
        let Some((_, parent, start)) = proc_stat(pid) else {
            return;
        };
        let mut t = self.tracked.lock().unwrap_or_else(|e| e.into_inner());
        if !t.iter().any(|(p, s, _)| *p == pid && *s == start) {
            t.push((pid, start, what.to_string()));
        }
        if comm(parent).as_deref() == Some("shim")
            || cmdline(parent).is_some_and(|c| mentions(&c, &self.root))
        {
            if let Some((_, _, pstart)) = proc_stat(parent) {
                if !t.iter().any(|(p, s, _)| *p == parent && *s == pstart) {
                    t.push((parent, pstart, "shim (parent of init)".to_string()));
                }
            }
        }
    }

    /// Whatever of this test is still there: entries in the state root,
    /// processes, mounts.
    pub fn leaks(&self) -> Vec<String> {
        let mut found = Vec::new();
        if let Ok(dir) = fs::read_dir(&self.root) {
            for e in dir.flatten() {
                found.push(format!("state root entry: {}", e.path().display()));
            }
        }
        let me = std::process::id() as i32;
        for pid in all_pids() {
            if pid == me {
                continue;
            }
            if let Some(cmd) = cmdline(pid) {
                if mentions(&cmd, &self.root) || mentions(&cmd, &self.work) {
                    found.push(format!(
                        "process {pid} ({}): {cmd}",
                        comm(pid).unwrap_or_default()
                    ));
                }
            }
        }
        for (pid, start, what) in self
            .tracked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            if let Some((state, _, _)) = proc_stat(*pid) {
                if alive(*pid, *start) {
                    let line = format!(
                        "process {pid} ({}, {what}) still exists, state {state}",
                        comm(*pid).unwrap_or_default()
                    );
                    if !found
                        .iter()
                        .any(|f| f.starts_with(&format!("process {pid} ")))
                    {
                        found.push(line);
                    }
                }
            }
        }
        found.extend(self.network_leaks());
        for dir in self.cgroup_leftovers() {
            found.push(format!("cgroup: {}", dir.display()));
        }
        for line in mountinfo() {
            if mentions(&line, &self.root)
                || mentions(&line, &self.work)
                || mentions(&line, rootfs())
            {
                found.push(format!("mount: {line}"));
            }
        }
        found
    }

    /// `runtime delete --force` of every container left in the state root.
    fn force_delete_all(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let Ok(dir) = fs::read_dir(&self.root) else {
            return notes;
        };
        for e in dir.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            // @network holds reservations, not a container.
            if id.starts_with('@') {
                continue;
            }
            let (o, e) = self.next_files();
            let sp = self.spawn_to(&mut self.command(&["delete", "--force", &id]), &o, &e);
            match sp.try_wait(TIMEOUT) {
                Ok(out) if out.success() => {}
                Ok(out) => notes.push(format!("cleanup `delete --force {id}` failed: {out:?}")),
                Err(out) => notes.push(format!("cleanup `delete --force {id}` timed out: {out:?}")),
            }
        }
        notes
    }

    /// Kills (by pid) what this test started and is still there, unmounts
    /// its mounts, and removes its directories.
    fn last_resort(&self) {
        let me = std::process::id() as i32;
        let mut victims = Vec::new();
        for pid in all_pids() {
            if pid != me
                && cmdline(pid)
                    .is_some_and(|c| mentions(&c, &self.root) || mentions(&c, &self.work))
            {
                victims.push(pid);
            }
        }
        for (pid, start, _) in self
            .tracked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            if alive(*pid, *start) {
                victims.push(*pid);
            }
        }
        for pid in &victims {
            // SAFETY: plain kill(2) of a process this test started.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        // Until they are dead (zombies at most), so that their mounts can go.
        let deadline = Instant::now() + Duration::from_secs(5);
        while victims
            .iter()
            .any(|&p| proc_stat(p).is_some_and(|s| s.0 != "Z"))
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut points: Vec<String> = mountinfo()
            .iter()
            .filter_map(|l| l.split(' ').nth(4).map(String::from))
            .filter(|p| mentions(p, &self.root) || mentions(p, &self.work))
            .collect();
        points.reverse();
        for p in points {
            if let Ok(c) = CString::new(p) {
                // SAFETY: c is a valid path.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        // What the network left in the kernel: the test's table, then its
        // veths and its bridge.
        if self
            .network_leaks()
            .iter()
            .any(|l| l.starts_with("nftables"))
        {
            let _ = Command::new(nft())
                .args(["delete", "table", "ip", &format!("nsbox-{}", self.bridge())])
                .stderr(Stdio::null())
                .status();
        }
        for name in self.leaked_links() {
            let _ = Command::new("ip")
                .args(["link", "delete", &name])
                .stderr(Stdio::null())
                .status();
        }
        for dir in self.cgroup_leftovers() {
            remove_cgroup(&dir);
        }
        let _ = fs::remove_dir_all(&self.root);
        let _ = fs::remove_dir_all(&self.work);
    }

    /// This test's place in the sequence of tests of this process: for
    /// names and addresses of its own.
    fn ordinal(&self) -> (u32, u32) {
        let tag = self
            .root
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let (pid, n) = tag.split_once('-').unwrap();
        (pid.parse().unwrap(), n.parse().unwrap())
    }

    /// A bridge of this test's own (IFNAMSIZ: at most 15 bytes), so that
    /// tests in parallel, other test runs and the demo's nsbox0 never meet.
    pub fn bridge(&self) -> String {
        let (pid, n) = self.ordinal();
        format!("nsbt{pid}x{n}")
    }

    /// A /24 of this test's own in 10.192.0.0/11: "10.X.Y." (add the host
    /// part). The runtime refuses a subnet that overlaps one in use, so a
    /// clash with another run shows as such, never as crossed wires.
    pub fn subnet_prefix(&self) -> String {
        let (pid, n) = self.ordinal();
        let idx = (pid.wrapping_mul(2654435761) >> 8).wrapping_add(n.wrapping_mul(97)) % 8192;
        format!("10.{}.{}.", 192 + idx / 256, idx % 256)
    }

    pub fn subnet(&self) -> String {
        format!("{}0/24", self.subnet_prefix())
    }

    pub fn gateway(&self) -> String {
        format!("{}1", self.subnet_prefix())
    }

    /// Links of this test's network that exist: its bridge, and veths named
    /// for an address of its subnet.
    pub fn leaked_links(&self) -> Vec<String> {
        let bridge = self.bridge();
        let prefix = self.subnet_prefix();
        links()
            .into_iter()
            .filter(|name| {
                *name == bridge
                    || name
                        .strip_prefix("nsb")
                        .filter(|h| h.len() == 8)
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .is_some_and(|ip| {
                            std::net::Ipv4Addr::from(ip)
                                .to_string()
                                .starts_with(&prefix)
                        })
            })
            .collect()
    }

    /// The test's bridge, veths and nftables table, if any is left.
    pub fn network_leaks(&self) -> Vec<String> {
        let mut found: Vec<String> = self
            .leaked_links()
            .into_iter()
            .map(|l| format!("link: {l}"))
            .collect();
        let table = format!("nsbox-{}", self.bridge());
        if nft_tables().contains(&table) {
            found.push(format!("nftables table: ip {table}"));
        }
        found
    }

    /// The name the runtime gives this test's state root
    /// (nsbox_host::cgroups::scope_name): containers without a cgroupsPath
    /// go to /nsbox@SCOPE@ID in every hierarchy.
    pub fn cgroup_scope(&self) -> String {
        self.root
            .to_string_lossy()
            .replace('/', "-")
            .trim_matches('-')
            .to_string()
    }

    /// Remembers a cgroupsPath a test gives a container, for the leak check.
    pub fn track_cgroup(&self, path: &str) {
        self.cgroups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(path.trim_start_matches('/').to_string());
    }

    /// This test's cgroup directories that still exist, in any hierarchy.
    pub fn cgroup_leftovers(&self) -> Vec<PathBuf> {
        let ours = format!("nsbox@{}@", self.cgroup_scope());
        let mut rels: Vec<String> = cgroup_hierarchies()
            .iter()
            .flat_map(|h| fs::read_dir(h).into_iter().flatten().flatten())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&ours))
            .collect();
        rels.sort();
        rels.dedup();
        rels.extend(
            self.cgroups
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned(),
        );
        let mut found = Vec::new();
        for h in cgroup_hierarchies() {
            for rel in &rels {
                let d = h.join(rel);
                if d.is_dir() {
                    found.push(d);
                }
            }
        }
        found
    }
}

/// The names of the host's network links (`ip -j link`: JSON, not the
/// table people read).
pub fn links() -> Vec<String> {
    link_names(&[])
}

/// The names `ip -j link show ARGS` lists.
pub fn link_names(args: &[&str]) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-j", "link", "show"])
        .args(args)
        .output()
        .expect("run ip -j link show");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l["ifname"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// nft lives in /usr/sbin, which a PATH may lack.
pub fn nft() -> &'static str {
    ["/usr/sbin/nft", "/sbin/nft"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .unwrap_or("nft")
}

/// The names of the host's nftables tables (`nft -j list tables`); none
/// when nft is not installed.
pub fn nft_tables() -> Vec<String> {
    let Ok(out) = Command::new(nft()).args(["-j", "list", "tables"]).output() else {
        return Vec::new();
    };
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v["nftables"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o["table"]["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Mount points of every cgroup hierarchy (v1 and v2) of this host.
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    mountinfo()
        .iter()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let fstype = right.split(' ').next()?;
            let point = left.split(' ').nth(4)?;
            (fstype == "cgroup" || fstype == "cgroup2").then(|| PathBuf::from(point))
        })
        .collect()
}

/// The directory of `rel` (a cgroup path) in the hierarchy whose name
/// (mount point's last part) is `controller`: "memory", "pids"...
pub fn cgroup_dir(controller: &str, rel: &str) -> PathBuf {
    cgroup_hierarchies()
        .into_iter()
        .find(|h| h.file_name().is_some_and(|n| n == controller))
        .unwrap_or_else(|| panic!("no {controller} cgroup hierarchy on this host"))
        .join(rel.trim_start_matches('/'))
}

/// Kill what is in a cgroup tree (by pid) and rmdir it, deepest first.
pub fn remove_cgroup(dir: &Path) {
    for _ in 0..50 {
        let mut dirs = vec![dir.to_path_buf()];
        let mut i = 0;
        while i < dirs.len() {
            if let Ok(rd) = fs::read_dir(&dirs[i]) {
                for e in rd.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        dirs.push(e.path());
                    }
                }
            }
            i += 1;
        }
        for d in &dirs {
            if let Ok(text) = fs::read_to_string(d.join("cgroup.procs")) {
                for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    // SAFETY: kill(2) of a process in this test's cgroup.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            let _ = fs::write(d.join("freezer.state"), "THAWED");
        }
        for d in dirs.iter().rev() {
            let _ = fs::remove_dir(d);
        }
        if !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Test {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        let mut report = Vec::new();
        let before = self.leaks();
        if !before.is_empty() {
            report.push(format!(
                "left behind at the end of the test{}:\n  {}",
                if panicking { " (which failed)" } else { "" },
                before.join("\n  ")
            ));
        }
        if !before.is_empty() {
            report.extend(self.force_delete_all());
            // Give a shim that is exiting a moment to finish.
            let deadline = Instant::now() + Duration::from_secs(3);
            let mut after = self.leaks();
            while !after.is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
                after = self.leaks();
            }
            if !after.is_empty() {
                report.push(format!(
                    "still left after `runtime delete --force` of every container:\n  {}",
                    after.join("\n  ")
                ));
            }
        }
        self.last_resort();
        if self.root.exists() {
            report.push(format!("could not remove {}", self.root.display()));
        }
        if report.is_empty() {
            return;
        }
        let msg = format!("leak check of test {}:\n{}", self.name, report.join("\n"));
        if panicking {
            eprintln!("{msg}");
        } else {
            panic!("{msg}");
        }
    }
}

/// A file name for an ID (IDs in bad-input tests may hold '/' or be long).
fn file_tag(id: &str) -> String {
    let mut s: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    if s.is_empty() {
        s.push_str("empty");
    }
    s
}

/// Runs `cmd` with extra file descriptors (`(source fd, target fd)`)
/// installed without FD_CLOEXEC in the child only, to check that they do not
/// reach the container.
pub fn with_inherited_fds(cmd: &mut Command, fds: Vec<(i32, i32)>) {
    // SAFETY: only dup2 (async-signal-safe) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for &(src, dst) in &fds {
                if libc::dup2(src, dst) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}
