//! The runtimes under test, driven through the OCI command line that runc,
//! crun and nsbox share (`--root R create|start|run|kill|delete|list`), and
//! crun under conmon, as Podman runs it.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::measure::{self, Runner};

/// One OCI runtime with a state root of its own.
#[derive(Clone, Debug)]
pub struct Oci {
    pub name: String,
    pub bin: PathBuf,
    pub root: PathBuf,
    /// Global options before `--root` (crun's `--cgroup-manager=disabled`).
    pub global: Vec<String>,
}

impl Oci {
    pub fn new(name: &str, bin: &Path, root: &Path) -> Oci {
        Oci {
            name: name.to_string(),
            bin: bin.to_path_buf(),
            root: root.to_path_buf(),
            global: Vec::new(),
        }
    }

    pub fn with_global(mut self, arg: &str) -> Oci {
        self.global.push(arg.to_string());
        self
    }

    /// `BIN [GLOBAL...] --root ROOT ARGS...`
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(&self.global)
            .arg("--root")
            .arg(&self.root)
            .args(args);
        c
    }

    /// `run --bundle B ID` in the foreground: all three remove the
    /// container when it ends (checked after each section).
    pub fn run_fg(&self, bundle: &Path, id: &str) -> Command {
        let mut c = self.cmd(&["run", "--bundle"]);
        c.arg(bundle).arg(id);
        c
    }

    pub fn create(&self, bundle: &Path, pid_file: &Path, id: &str) -> Command {
        let mut c = self.cmd(&["create", "--bundle"]);
        c.arg(bundle).arg("--pid-file").arg(pid_file).arg(id);
        c
    }

    pub fn run_detached(&self, bundle: &Path, pid_file: &Path, id: &str) -> Command {
        let mut c = self.cmd(&["run", "--detach", "--bundle"]);
        c.arg(bundle).arg("--pid-file").arg(pid_file).arg(id);
        c
    }

    pub fn start(&self, id: &str) -> Command {
        self.cmd(&["start", id])
    }

    /// SIGKILL by number: every runtime (and containerd) takes numbers.
    pub fn kill(&self, id: &str) -> Command {
        self.cmd(&["kill", id, "9"])
    }

    pub fn delete(&self, id: &str) -> Command {
        self.cmd(&["delete", id])
    }

    pub fn delete_force(&self, id: &str) -> Command {
        self.cmd(&["delete", "--force", id])
    }

    /// The containers in our root (none when the root does not exist).
    pub fn list(&self) -> Result<Vec<String>> {
        if !self.root.exists() {
            return Ok(Vec::new());
        }
        let out = self
            .cmd(&["list", "-q"])
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("{}: list", self.name))?;
        if !out.status.success() {
            bail!(
                "{}: list: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect())
    }
}

/// crun started by conmon, as Podman does: conmon forks away, runs
/// `crun create`, reports the container's pid on the sync pipe
/// (`_OCI_SYNCPIPE`), and stays as the container's parent; then
/// `crun start`. The container's init is catatonit or tini, as with
/// `podman run --init`.
#[derive(Clone, Debug)]
pub struct Conmon {
    pub name: String,
    pub conmon: PathBuf,
    pub crun: Oci,
    /// Where each container gets its bundle (conmon puts its fifos there),
    /// and the exit and socket directories.
    pub dir: PathBuf,
    /// The bundle whose config.json every container copies.
    pub template: PathBuf,
}

/// A started conmon container: what teardown and clean-up need.
pub struct ConmonContainer {
    pub id: String,
    pub init_pid: i32,
    pub conmon_pid_file: PathBuf,
    /// Our end of the sync pipe, kept open until the container is gone so
    /// that conmon never writes into a closed pipe.
    pub _sync: std::fs::File,
}

impl Conmon {
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.dir.join("bundles").join(id)
    }

    /// conmon + `crun create` + `crun start`, returning once the workload
    /// runs. Timed by the caller as one start.
    pub fn start(&self, runner: &mut Runner, id: &str) -> Result<ConmonContainer> {
        let bundle = self.bundle(id);
        std::fs::create_dir_all(&bundle)?;
        std::fs::copy(
            self.template.join("config.json"),
            bundle.join("config.json"),
        )?;
        let exits = self.dir.join("exits");
        let sockets = self.dir.join("sockets");
        std::fs::create_dir_all(&exits)?;
        std::fs::create_dir_all(&sockets)?;
        let pid_file = bundle.join("pidfile");
        let conmon_pid_file = bundle.join("conmon.pid");

        let mut fds = [0i32; 2];
        // SAFETY: pipe2 fills in two new fds.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            bail!("pipe2: {}", std::io::Error::last_os_error());
        }
        // SAFETY: both fds are new and ours.
        let (read_end, write_end) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let w = write_end.as_raw_fd();
        let mut cmd = Command::new(&self.conmon);
        cmd.args(["--api-version", "1", "-c", id, "-u", id, "-n", id, "-r"])
            .arg(&self.crun.bin)
            .arg("-b")
            .arg(&bundle)
            .arg("-p")
            .arg(&pid_file)
            .arg("--exit-dir")
            .arg(&exits)
            .arg("--socket-dir-path")
            .arg(&sockets)
            .arg("-l")
            .arg(format!("k8s-file:{}", bundle.join("ctr.log").display()))
            .args(["--log-level", "error", "--no-sync-log"])
            .arg(format!("--runtime-arg=--root={}", self.crun.root.display()))
            .arg("--conmon-pidfile")
            .arg(&conmon_pid_file)
            .env("_OCI_SYNCPIPE", "3");
        // SAFETY: dup2 is async-signal-safe; it clears CLOEXEC on fd 3.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(w, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // conmon's first process exits once it has forked the monitor.
        runner.run(&self.name, &mut cmd)?;
        drop(write_end);
        let mut sync = std::fs::File::from(read_end);
        let init_pid = read_sync(&mut sync, Duration::from_secs(30))
            .with_context(|| format!("{}: conmon {id}", self.name))?;
        runner.run(&self.name, &mut self.crun.start(id))?;
        Ok(ConmonContainer {
            id: id.to_string(),
            init_pid,
            conmon_pid_file,
            _sync: sync,
        })
    }
}

/// conmon's sync message: `{"data": PID}` once the container is created,
/// or a negative number and a message when it failed.
fn read_sync(f: &mut std::fs::File, timeout: Duration) -> Result<i32> {
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        let mut p = libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd on the stack.
        let r = unsafe { libc::poll(&mut p, 1, 100) };
        if r > 0 {
            let n = f.read(&mut chunk)?;
            if n == 0 {
                bail!(
                    "conmon closed the sync pipe: {}",
                    String::from_utf8_lossy(&buf)
                );
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.contains(&b'}') {
                break;
            }
        }
        measure::check_stop()?;
        if Instant::now() > deadline {
            bail!("no answer from conmon on the sync pipe");
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let end = text.find('}').map_or(text.len(), |i| i + 1);
    let v: serde_json::Value = serde_json::from_str(&text[..end])
        .map_err(|e| anyhow!("conmon sync message {text:?}: {e}"))?;
    match v["data"].as_i64() {
        Some(pid) if pid > 0 => Ok(pid as i32),
        _ => bail!("conmon reports a failure: {text}"),
    }
}

/// A binary found on PATH (or in the sbin directories root's PATH has).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

/// First line of `BIN --version`.
pub fn version(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}
