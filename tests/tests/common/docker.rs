//! A Docker daemon (Debian's dockerd 20.10) of a test's own, with both runc
//! and nsbox as its runtimes, so that every scenario runs side by side.
//!
//! Everything it could share with another daemon is the test's own: data
//! root (under the test's work dir), exec root (under its state root: its
//! managed containerd, netns files, runtime roots), API socket, pid file,
//! bridge (made here with the test's /24 and handed over with `bridge`),
//! and cgroup parent. iptables is off unless a test asks for it (Docker's
//! chains DOCKER, DOCKER-USER and DOCKER-ISOLATION-* are global: one
//! test of this binary at a time uses them, and removes what Docker left).
//! Docker never touches ip_forward here (`ip-forward: false`): on a host
//! where it is off, Docker would turn it on and set the FORWARD policy to
//! DROP for everyone.
//!
//! Dropping the `Dockerd` removes the containers, stops the daemon, and
//! removes whatever it left: processes (its containerd, shims, proxies),
//! mounts, netns files, directories, the bridge and its veths, iptables
//! rules and chains, the cgroup parent, the `dockremap` user of
//! `userns-remap`; then it fails the test if anything is still there.

use super::daemon::*;
use super::{bins, rootfs, Test, TIMEOUT};
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// Debian's client, by path: another `docker` on PATH may be a newer
/// client that this 20.10 daemon's API does not match.
pub const DOCKER: &str = "/usr/bin/docker";

/// The busybox image every test imports (the harness's rootfs, multitool
/// included).
pub const IMAGE: &str = "nsbox-test:latest";

/// How long one client call may take: `stop` of a PID-1-deaf workload
/// under runc waits out its timeout.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Default, Clone, Copy)]
pub struct Opts {
    /// Docker's iptables rules (port DNAT, masquerading, isolation).
    pub iptables: bool,
    /// `userns-remap: default`: Docker makes the user `dockremap`.
    pub userns_remap: bool,
    /// `default-runtime: nsbox` instead of runc.
    pub nsbox_default: bool,
    /// `exec-opts: native.cgroupdriver=systemd` (a systemd host): the
    /// cgroup parent is then a slice of the test's own.
    pub systemd_cgroup: bool,
}

pub struct Dockerd {
    /// Data root, daemon.json, the daemon's log, the client's config.
    pub dir: PathBuf,
    /// Exec root: Docker's runtime state, containerd's state and sockets.
    pub exec_root: PathBuf,
    pub sock: PathBuf,
    pub bridge: String,
    /// The /24 of the bridge, "10.X.Y.0/24".
    pub subnet: String,
    /// Containers' cgroups go under it (one per test, removed at the end).
    pub cgroup_parent: String,
    opts: Opts,
    daemon: Option<Child>,
    new_dirs: NewDirs,
    iptables_before: Vec<(String, Vec<String>)>,
    nf_call_iptables: Option<String>,
    remap_user_existed: bool,
}

const IPTABLES: &str = "/usr/sbin/iptables";

fn iptables_rules(table: &str) -> Vec<String> {
    Command::new(IPTABLES)
        .args(["-w", "-t", table, "-S"])
        .output()
        .map(|o| text(&o).lines().map(String::from).collect())
        .unwrap_or_default()
}

/// The tables Docker's rules go to.
const TABLES: [&str; 2] = ["filter", "nat"];

fn user_exists(name: &str) -> bool {
    fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(':').next() == Some(name))
}

impl Dockerd {
    pub fn start(t: &Test, opts: Opts) -> Dockerd {
        for tool in [
            "/usr/sbin/dockerd",
            DOCKER,
            "/usr/bin/containerd",
            "/usr/bin/containerd-shim-runc-v2",
            "/usr/sbin/runc",
            "/usr/bin/docker-init",
        ] {
            let found = Path::new(tool).exists()
                || Path::new(tool.replace("/sbin/", "/bin/").as_str()).exists();
            assert!(
                found,
                "{tool} is missing: `make deps` installs docker.io, containerd and runc"
            );
        }
        let dir = t.work.join("docker");
        let exec_root = t.root.join("d");
        fs::create_dir_all(&dir).unwrap();
        let tag = t.root.file_name().unwrap().to_string_lossy().into_owned();
        // systemd's driver takes a slice (its '-' are levels: none here).
        let slice = format!("nsboxt_docker_{}.slice", tag.replace('-', "_"));
        let cgroup_parent = if opts.systemd_cgroup {
            format!("/{slice}")
        } else {
            format!("/nsbox-t-docker-{tag}")
        };
        t.track_cgroup(&cgroup_parent);
        let bridge = t.bridge();
        make_bridge(&bridge, &format!("{}/24", t.gateway()));
        let iptables_before = if opts.iptables {
            TABLES
                .iter()
                .map(|tb| (tb.to_string(), iptables_rules(tb)))
                .collect()
        } else {
            Vec::new()
        };
        let mut d = Dockerd {
            sock: dir.join("docker.sock"),
            dir,
            exec_root,
            bridge,
            subnet: t.subnet(),
            cgroup_parent,
            opts,
            daemon: None,
            new_dirs: NewDirs::before(&["/opt/containerd"]),
            iptables_before,
            nf_call_iptables: fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
                .ok(),
            remap_user_existed: user_exists("dockremap"),
        };
        // The configuration a user would put in /etc/docker/daemon.json
        // (the README shows the same "runtimes" entry).
        let mut config = json!({
            "runtimes": { "nsbox": { "path": bins().runtime } },
            "data-root": d.dir.join("data"),
            "exec-root": d.exec_root,
            "pidfile": d.dir.join("docker.pid"),
            "hosts": [format!("unix://{}", d.sock.display())],
            "bridge": d.bridge,
            "iptables": opts.iptables,
            "ip-forward": false,
            "ip-masq": opts.iptables,
            "userland-proxy": false,
            "cgroup-parent": d.cgroup_parent,
            "storage-driver": "overlay2",
            // Docker 20.10 writes a key here, by default in /etc/docker.
            "deprecated-key-path": d.dir.join("key.json"),
            "debug": true
        });
        if opts.nsbox_default {
            config["default-runtime"] = json!("nsbox");
        }
        if opts.systemd_cgroup {
            config["exec-opts"] = json!(["native.cgroupdriver=systemd"]);
            config["cgroup-parent"] = json!(slice);
        }
        if opts.userns_remap {
            config["userns-remap"] = json!("default");
        }
        let config_file = d.dir.join("daemon.json");
        fs::write(&config_file, serde_json::to_string_pretty(&config).unwrap()).unwrap();
        let log = fs::File::create(d.dir.join("dockerd.log")).unwrap();
        let daemon = Command::new("dockerd")
            .arg("--config-file")
            .arg(&config_file)
            // Debian's binaries only: dockerd finds containerd, runc,
            // docker-init and iptables on PATH.
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        d.daemon = Some(daemon);
        super::wait_for("dockerd's API", TIMEOUT, || {
            if let Some(Ok(Some(status))) = d.daemon.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "dockerd exited ({status}):\n{}",
                    super::read_lossy(&d.dir.join("dockerd.log"))
                );
            }
            let o = run_bounded(
                d.cmd(&["version", "--format", "{{.Server.Version}}"]),
                TIMEOUT,
            );
            o.status.success().then_some(())
        });
        d.import_image(t);
        d
    }

    /// `docker ARGS...` against this daemon.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(DOCKER);
        cmd.env("DOCKER_HOST", format!("unix://{}", self.sock.display()))
            .env("DOCKER_CONFIG", self.dir.join("client"))
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// `docker ARGS...`, output captured, bounded.
    #[track_caller]
    pub fn docker(&self, args: &[&str]) -> Output {
        run_bounded(self.cmd(args), CLIENT_TIMEOUT)
    }

    /// `docker ARGS...` that must succeed; its stdout, trimmed.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(o.status.success(), "docker {args:?}: {}", both(&o));
        text(&o).trim().to_string()
    }

    /// `docker inspect --format FORMAT NAME`.
    #[track_caller]
    pub fn inspect(&self, name: &str, format: &str) -> String {
        self.ok(&["inspect", "--format", format, name])
    }

    /// The test rootfs as image [`IMAGE`].
    fn import_image(&self, t: &Test) {
        let tar = t.work.join("rootfs.tar");
        if !tar.exists() {
            super::images::rootfs_tar(rootfs(), &tar);
        }
        self.ok(&[
            "import",
            "-c",
            "ENV PATH=/bin:/usr/bin",
            tar.to_str().unwrap(),
            IMAGE,
        ]);
    }

    /// The runtime roots Docker gives runc and nsbox (`--root` of every
    /// call): nsbox's state directories live there.
    pub fn runtime_roots(&self) -> Vec<PathBuf> {
        fs::read_dir(&self.exec_root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("runtime-"))
            .map(|e| e.path().join("moby"))
            .collect()
    }

    /// What is left in the runtimes' roots (containers not deleted).
    pub fn runtime_state_left(&self) -> Vec<PathBuf> {
        self.runtime_roots()
            .iter()
            .flat_map(|r| fs::read_dir(r).into_iter().flatten().flatten())
            .map(|e| e.path())
            .collect()
    }

    /// The rules Docker added to iptables that are still there, and its
    /// chains that were not there before.
    pub fn iptables_left(&self) -> Vec<String> {
        let mut left = Vec::new();
        for (table, before) in &self.iptables_before {
            for rule in iptables_rules(table) {
                if !before.contains(&rule) {
                    left.push(format!("iptables -t {table} {rule}"));
                }
            }
        }
        left
    }

    /// Deletes Docker's rules (the ones that were not there before), then
    /// its chains.
    fn remove_iptables(&self) {
        for (table, before) in &self.iptables_before {
            let added: Vec<String> = iptables_rules(table)
                .into_iter()
                .filter(|r| !before.contains(r))
                .collect();
            for rule in added.iter().filter(|r| r.starts_with("-A ")) {
                let mut args = vec!["-w".to_string(), "-t".into(), table.clone()];
                args.extend(shell_words(&rule.replacen("-A ", "-D ", 1)));
                let _ = Command::new(IPTABLES).args(&args).output();
            }
            for rule in added.iter().filter(|r| r.starts_with("-N ")) {
                let chain = rule.trim_start_matches("-N ").trim();
                let _ = Command::new(IPTABLES)
                    .args(["-w", "-t", table, "-F", chain])
                    .output();
                let _ = Command::new(IPTABLES)
                    .args(["-w", "-t", table, "-X", chain])
                    .output();
            }
        }
    }

    /// The daemon's directories: data root, exec root, and the exec root's
    /// remapped twin (EXEC_ROOT.UID.GID) that `userns-remap` adds.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.dir.clone(), self.exec_root.clone()];
        let name = self.exec_root.file_name().unwrap().to_string_lossy();
        let prefix = format!("{name}.");
        if let Some(parent) = self.exec_root.parent() {
            for e in fs::read_dir(parent).into_iter().flatten().flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    dirs.push(e.path());
                }
            }
        }
        dirs
    }

    /// What of this daemon is still on the host.
    pub fn leaks(&self) -> Vec<String> {
        let dirs = self.dirs();
        let dirs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
        let mut found = daemon_leaks(&dirs, &self.bridge, &self.cgroup_parent, &self.new_dirs);
        found.extend(self.iptables_left());
        if self.opts.userns_remap && !self.remap_user_existed && user_exists("dockremap") {
            found.push("user dockremap".into());
        }
        found
    }

    fn teardown(&mut self) -> Vec<String> {
        let mut report = Vec::new();
        if let Some(mut daemon) = self.daemon.take() {
            if let Ok(None) = daemon.try_wait() {
                let bounded = |args: &[&str]| try_run_bounded(self.cmd(args), TIMEOUT);
                let ids = bounded(&["ps", "-aq"])
                    .map(|o| text(&o))
                    .unwrap_or_default();
                for id in ids.split_whitespace() {
                    match bounded(&["rm", "-f", id]) {
                        Ok(o) if o.status.success() => {}
                        Ok(o) | Err(o) => report.push(format!("docker rm -f {id}: {}", both(&o))),
                    }
                }
            }
            stop_daemon(&mut daemon, Duration::from_secs(20));
        }
        let dirs = self.dirs();
        report.extend(sweep(
            &dirs.iter().map(PathBuf::as_path).collect::<Vec<_>>(),
        ));
        remove_bridge(&self.bridge);
        if self.opts.systemd_cgroup {
            // The slice is systemd's, which removes its cgroup once stopped.
            let slice = self.cgroup_parent.trim_start_matches('/');
            let _ = Command::new("systemctl").args(["stop", slice]).output();
        }
        remove_cgroup_tree(&self.cgroup_parent);
        if self.opts.iptables {
            self.remove_iptables();
        }
        self.new_dirs.remove();
        if let Some(v) = &self.nf_call_iptables {
            let _ = fs::write("/proc/sys/net/bridge/bridge-nf-call-iptables", v);
        }
        if self.opts.userns_remap && !self.remap_user_existed && user_exists("dockremap") {
            let _ = Command::new("userdel").arg("dockremap").output();
            let _ = Command::new("groupdel").arg("dockremap").output();
            for f in ["/etc/subuid", "/etc/subgid"] {
                if let Ok(s) = fs::read_to_string(f) {
                    let kept: String = s
                        .lines()
                        .filter(|l| !l.starts_with("dockremap:"))
                        .map(|l| format!("{l}\n"))
                        .collect();
                    let _ = fs::write(f, kept);
                }
            }
        }
        report
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let swept = self.teardown();
        report_leftovers("dockerd", &self.leaks(), &swept);
    }
}

/// Splits an `iptables -S` rule into words, keeping "quoted comments".
fn shell_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut has = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                has = true;
            }
            ' ' if !quoted => {
                if has {
                    words.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            _ => {
                cur.push(c);
                has = true;
            }
        }
    }
    if has {
        words.push(cur);
    }
    words
}

/// A container's JSON from `docker inspect`.
pub fn inspect_json(d: &Dockerd, name: &str) -> Value {
    let out = d.ok(&["inspect", name]);
    let v: Value = serde_json::from_str(&out).expect("docker inspect is JSON");
    v[0].clone()
}
