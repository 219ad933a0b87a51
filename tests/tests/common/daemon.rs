//! What the tests that start a real daemon (dockerd, containerd with its
//! CRI plugin) share: bounded client calls, and a teardown that removes
//! what such a daemon leaves on the host, found by the paths of the test's
//! own (never by a process name, never anyone else's).

use super::{all_pids, cmdline, mentions, mountinfo, proc_stat};
use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd` with its output captured; kills it (by pid) and fails the
/// test after `timeout`.
#[track_caller]
pub fn run_bounded(cmd: Command, timeout: Duration) -> Output {
    let what = format!("{cmd:?}");
    try_run_bounded(cmd, timeout)
        .unwrap_or_else(|o| panic!("{what} did not finish in {timeout:?}: {}", both(&o)))
}

/// Like [`run_bounded`], but a timeout is an `Err` (for teardowns, which
/// must not panic while a test is panicking).
pub fn try_run_bounded(mut cmd: Command, timeout: Duration) -> Result<Output, Output> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {what}: {e}"));
    // Read both pipes while waiting: a chatty client must not block on a
    // full pipe.
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let (out, err) = (read(Box::new(out)), read(Box::new(err)));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            // SAFETY: ending the command we started, by pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = Output {
        status: status
            .unwrap_or_else(|| std::os::unix::process::ExitStatusExt::from_raw(libc::SIGKILL)),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    };
    if status.is_none() {
        return Err(output);
    }
    Ok(output)
}

/// stdout as text, without the carriage returns a terminal adds.
pub fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).replace('\r', "")
}

/// stdout and stderr, for messages.
pub fn both(o: &Output) -> String {
    format!(
        "exit {:?}, stdout {:?}, stderr {:?}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Asks `daemon` (which the test started) to stop with SIGTERM; SIGKILL
/// after `grace`.
pub fn stop_daemon(daemon: &mut Child, grace: Duration) {
    // SAFETY: signalling the daemon this test started, by pid.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = daemon.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
}

/// The processes whose command line mentions one of `paths` (the daemon's
/// own directories: its containerd, shims, proxies), with their command
/// lines.
pub fn processes_mentioning(paths: &[&Path]) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    all_pids()
        .into_iter()
        .filter(|&p| p != me)
        .filter_map(|p| {
            let c = cmdline(p)?;
            paths.iter().any(|d| mentions(&c, d)).then_some((p, c))
        })
        .collect()
}

/// SIGKILLs each of `pids` and waits (at most 5 s) until they are gone.
pub fn kill_and_wait(pids: &[i32]) {
    let starts: Vec<(i32, u64)> = pids
        .iter()
        .filter_map(|&p| proc_stat(p).map(|s| (p, s.2)))
        .collect();
    for (p, _) in &starts {
        // SAFETY: kill(2) of a process found by this test's own paths.
        unsafe { libc::kill(*p, libc::SIGKILL) };
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && starts
            .iter()
            .any(|(p, s)| proc_stat(*p).is_some_and(|st| st.2 == *s && st.0 != "Z"))
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Mount points under any of `paths`, deepest (last mounted) first.
pub fn mounts_under(paths: &[&Path]) -> Vec<String> {
    let mut points: Vec<String> = mountinfo()
        .iter()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|p| paths.iter().any(|d| mentions(p, d)))
        .collect();
    points.reverse();
    points
}

/// Detaches every mount under `paths`.
pub fn unmount_under(paths: &[&Path]) {
    for p in mounts_under(paths) {
        if let Ok(c) = CString::new(p) {
            // SAFETY: c is a valid path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// The directory `rel` in every cgroup hierarchy where it exists.
pub fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    super::cgroup_hierarchies()
        .into_iter()
        .map(|h| h.join(rel.trim_start_matches('/')))
        .filter(|d| d.is_dir())
        .collect()
}

/// Removes the cgroup tree `rel` in every hierarchy (what is still in it
/// is killed first: only the test's own containers live there).
pub fn remove_cgroup_tree(rel: &str) {
    for d in cgroup_dirs(rel) {
        super::remove_cgroup(&d);
    }
}

/// Creates bridge `name` with `cidr` (the gateway's address and prefix),
/// up: a network of the test's own for a daemon to attach containers to.
pub fn make_bridge(name: &str, cidr: &str) {
    let _ = Command::new("ip").args(["link", "delete", name]).output();
    for args in [
        vec!["link", "add", name, "type", "bridge"],
        vec!["addr", "add", cidr, "dev", name],
        vec!["link", "set", name, "up"],
    ] {
        let o = Command::new("ip").args(&args).output().expect("run ip");
        assert!(o.status.success(), "ip {args:?}: {}", both(&o));
    }
}

/// The links enslaved to `bridge` (the veths a daemon attached).
pub fn bridge_ports(bridge: &str) -> Vec<String> {
    super::link_names(&["master", bridge])
}

/// Deletes the veths on `bridge`, then the bridge.
pub fn remove_bridge(bridge: &str) {
    for port in bridge_ports(bridge) {
        let _ = Command::new("ip").args(["link", "delete", &port]).output();
    }
    let _ = Command::new("ip").args(["link", "delete", bridge]).output();
}

/// containerd (1.6) puts each runc-v2 shim's socket in /run/containerd/s,
/// named by sha256(ADDRESS/NAMESPACE/ID). A shim that exits removes it; one
/// that had to be killed leaves it: this is its path.
pub fn shim_socket(address: &Path, namespace: &str, id: &str) -> PathBuf {
    let key = format!("{}/{namespace}/{id}", address.display());
    let out = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(key.as_bytes())?;
            c.wait_with_output()
        })
        .expect("run sha256sum");
    let hex = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    PathBuf::from("/run/containerd/s").join(hex)
}

/// For a containerd-shim-runc-v2 command line: (namespace, id, address).
pub fn shim_args(cmdline: &str) -> Option<(String, String, String)> {
    let words: Vec<&str> = cmdline.split_whitespace().collect();
    let arg = |flag: &str| {
        words
            .iter()
            .position(|w| *w == flag)
            .and_then(|i| words.get(i + 1))
            .map(|s| s.to_string())
    };
    Some((arg("-namespace")?, arg("-id")?, arg("-address")?))
}

/// Kills what mentions `paths` (shims first recorded so that their
/// sockets in /run/containerd/s can be removed), unmounts what is under
/// them, and removes them. Returns what had to be killed or unmounted, for
/// the report.
pub fn sweep(paths: &[&Path]) -> Vec<String> {
    let mut report = Vec::new();
    let procs = processes_mentioning(paths);
    let sockets: Vec<PathBuf> = procs
        .iter()
        .filter(|(_, c)| c.contains("containerd-shim"))
        .filter_map(|(_, c)| shim_args(c))
        .map(|(ns, id, addr)| shim_socket(Path::new(&addr), &ns, &id))
        .collect();
    for (p, c) in &procs {
        report.push(format!("process {p}: {c}"));
    }
    kill_and_wait(&procs.iter().map(|(p, _)| *p).collect::<Vec<_>>());
    for s in sockets {
        let _ = fs::remove_file(s);
    }
    for m in mounts_under(paths) {
        report.push(format!("mount {m}"));
    }
    unmount_under(paths);
    for p in paths {
        let _ = fs::remove_dir_all(p);
    }
    report
}

/// Host directories a daemon makes on its own (containerd's /opt/containerd,
/// libcni's /var/lib/cni): those of `paths` that do not exist yet, to be
/// removed at the end if they hold nothing but empty directories.
pub struct NewDirs(Vec<PathBuf>);

impl NewDirs {
    pub fn before(paths: &[&str]) -> NewDirs {
        NewDirs(
            paths
                .iter()
                .map(PathBuf::from)
                .filter(|p| !p.exists())
                .collect(),
        )
    }

    /// Those that exist now and hold nothing but directories (one that
    /// holds files is another daemon's, of a test still running).
    pub fn left(&self) -> Vec<PathBuf> {
        self.0
            .iter()
            .filter(|p| p.exists() && only_dirs(p))
            .cloned()
            .collect()
    }

    pub fn remove(&self) {
        for p in self.left() {
            let _ = fs::remove_dir_all(&p);
        }
    }
}

fn only_dirs(p: &Path) -> bool {
    fs::read_dir(p)
        .into_iter()
        .flatten()
        .flatten()
        .all(|e| e.file_type().is_ok_and(|t| t.is_dir()) && only_dirs(&e.path()))
}

/// GET / from 127.0.0.1:port; the body, once something answers.
pub fn http_get(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let body = resp.split("\r\n\r\n").nth(1)?.to_string();
    (!body.is_empty()).then_some(body)
}

/// Fails the test (or, when it is failing already, says so on stderr) when
/// a daemon's teardown could not remove everything it left.
pub fn report_leftovers(daemon: &str, left: &[String], swept: &[String]) {
    if left.is_empty() {
        return;
    }
    let msg = format!(
        "{daemon} teardown left:\n  {}\n(swept: {swept:?})",
        left.join("\n  ")
    );
    if std::thread::panicking() {
        eprintln!("{msg}");
    } else {
        panic!("{msg}");
    }
}

/// What a daemon left that every daemon can leave: processes and mounts
/// under its directories, the directories, its bridge, its cgroup parent,
/// host directories it made.
pub fn daemon_leaks(
    dirs: &[&Path],
    bridge: &str,
    cgroup_parent: &str,
    new_dirs: &NewDirs,
) -> Vec<String> {
    let mut found = Vec::new();
    for (p, c) in processes_mentioning(dirs) {
        found.push(format!("process {p}: {c}"));
    }
    for m in mounts_under(dirs) {
        found.push(format!("mount {m}"));
    }
    for d in dirs.iter().filter(|d| d.exists()) {
        found.push(format!("directory {}", d.display()));
    }
    if super::links().iter().any(|l| l == bridge) {
        found.push(format!("bridge {bridge}"));
    }
    for d in cgroup_dirs(cgroup_parent) {
        found.push(format!("cgroup {}", d.display()));
    }
    for d in new_dirs.left() {
        found.push(format!("directory {}", d.display()));
    }
    found
}
