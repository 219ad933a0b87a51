//! What the bench checks and prepares before it measures: the private mount
//! namespace it must run in, the machine's description, the state roots,
//! the busybox rootfs and the bundles every runtime shares.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// How `make bench` starts us; quoted when we find ourselves elsewhere.
pub const WRAPPER: &str = "scripts/bench.sh [ARGS] (what `make bench` runs): \
     tini -s -- unshare --mount --propagation private, /sys/fs/cgroup/unified replaced by a tmpfs";

/// The process that reaps orphans for us (tini -s): our parent.
pub struct Reaper {
    pub pid: i32,
    pub name: String,
}

pub fn preflight() -> Result<Reaper> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the bench starts containers: run it as root");
    }
    // In the namespace `unshare --propagation private` made, no mount
    // propagates (no "shared:N" in mountinfo); where pid 1's namespace can
    // be read, it must differ from ours too.
    let ours = std::fs::read_link("/proc/self/ns/mnt").context("read /proc/self/ns/mnt")?;
    let same_as_init = std::fs::read_link("/proc/1/ns/mnt").is_ok_and(|init| init == ours);
    let shared = std::fs::read_to_string("/proc/self/mountinfo")
        .context("read /proc/self/mountinfo")?
        .contains(" shared:");
    if same_as_init || shared {
        bail!("run me in a private mount namespace, as `make bench` does:\n  {WRAPPER}");
    }
    if statfs_type("/sys/fs/cgroup/unified") == Some(CGROUP2_SUPER_MAGIC) {
        bail!(
            "/sys/fs/cgroup/unified is still the cgroup2 mount, which crun 1.8 refuses; \
             start me as `make bench` does:\n  {WRAPPER}"
        );
    }
    // SAFETY: getppid cannot fail.
    let pid = unsafe { libc::getppid() };
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string();
    if !name.starts_with("tini") {
        eprintln!(
            "nsbox-bench: warning: my parent is {name:?}, not tini -s: orphans of detached \
             containers may linger as zombies"
        );
    }
    Ok(Reaper { pid, name })
}

fn statfs_type(path: &str) -> Option<i64> {
    let c = CString::new(path).ok()?;
    // SAFETY: statfs fills in the struct.
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a struct on the stack.
    if unsafe { libc::statfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some(s.f_type as i64)
}

/// crun, finding no cgroup2 at /sys/fs/cgroup/unified, still makes a
/// directory per container there and never removes it. There is the tmpfs
/// that scripts/bench.sh put in the cgroup2 mount's place, private to us:
/// clear our containers' directories from it (and from nothing else).
pub fn sweep_crun_unified() {
    let dir = Path::new("/sys/fs/cgroup/unified");
    if statfs_type("/sys/fs/cgroup/unified") != Some(TMPFS_MAGIC) {
        return;
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("bench-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// The name of the filesystem `path` is on, for the report.
pub fn fs_name(path: &Path) -> String {
    match statfs_type(&path.to_string_lossy()) {
        Some(0xEF53) => "ext4".into(),
        Some(TMPFS_MAGIC) => "tmpfs".into(),
        Some(0x5846_5342) => "xfs".into(),
        Some(0x9123_683E) => "btrfs".into(),
        Some(0x794c_7630) => "overlayfs".into(),
        Some(m) => format!("fs 0x{m:x}"),
        None => "unknown".into(),
    }
}

/// The 1, 5 and 15 minute load averages: a busy machine makes every
/// figure slower and noisier.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: uname fills in the struct.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a struct on the stack.
    unsafe { libc::uname(&mut u) };
    let field = |f: &[libc::c_char]| {
        f.iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8 as char)
            .collect::<String>()
    };
    // SAFETY: sysconf with a constant.
    let nproc = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    // SAFETY: getpriority of ourselves.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    json!({
        "nproc": nproc,
        "kernel": field(&u.release),
        "cpu": cpu,
        "mem_total_mib": mem_kb / 1024,
        "nice": nice,
    })
}

/// Mounts a tmpfs on `dir` (in our private mount namespace: nobody else
/// sees it, and it goes when the namespace does). State roots live there,
/// as they live on /run, a tmpfs, on a usual machine.
pub fn mount_tmpfs(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("make {}", dir.display()))?;
    if fs_name(dir) == "tmpfs" && is_mount_point(dir) {
        return Ok(());
    }
    let target = CString::new(dir.as_os_str().as_encoded_bytes())?;
    // SAFETY: NUL-terminated strings.
    let r = unsafe {
        libc::mount(
            c"nsbox-bench".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            c"mode=0711".as_ptr().cast(),
        )
    };
    if r != 0 {
        bail!(
            "mount tmpfs on {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

pub fn unmount(dir: &Path) {
    if let Ok(target) = CString::new(dir.as_os_str().as_encoded_bytes()) {
        // SAFETY: a NUL-terminated path.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

pub fn is_mount_point(dir: &Path) -> bool {
    let want = dir.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(4) == Some(&want))
}

/// The busybox rootfs every runtime runs from, built once with the
/// project's script, with the static catatonit and tini copied in for the
/// conmon comparisons (podman bind-mounts them; a copy shares page cache
/// the same way).
pub fn rootfs(out: &Path, mkrootfs: &Path, inits: &[PathBuf]) -> Result<PathBuf> {
    let dir = out.join("rootfs");
    if !dir.join("bin/busybox").is_file() {
        let status = Command::new(mkrootfs)
            .arg(&dir)
            .status()
            .with_context(|| format!("run {}", mkrootfs.display()))?;
        if !status.success() {
            bail!("{} {} failed", mkrootfs.display(), dir.display());
        }
    }
    for init in inits {
        let name = init
            .file_name()
            .ok_or_else(|| anyhow!("{} has no file name", init.display()))?;
        let dst = dir.join("bin").join(name);
        let fresh = std::fs::metadata(&dst)
            .and_then(|d| Ok((d, std::fs::metadata(init)?)))
            .map(|(d, s)| d.len() == s.len())
            .unwrap_or(false);
        if !fresh {
            std::fs::copy(init, &dst)
                .with_context(|| format!("copy {} into the rootfs", init.display()))?;
        }
    }
    Ok(dir)
}

/// The one config.json all runtimes get: `runc spec` without a terminal,
/// with a read-only root and the same five namespaces, minus what one of
/// them once could not take: no `linux.resources`, no cgroup mount (nsbox
/// takes both now; left out so that figures stay comparable across
/// reports), and no ambient capabilities
/// (runc's default lists them without inheritable ones; runc ignores the
/// failure, nsbox refuses it).
pub fn spec(rootfs: &Path, args: &[&str]) -> Value {
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": args,
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": { "bounding": caps, "effective": caps, "permitted": caps },
            "rlimits": [ { "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 } ],
            "noNewPrivileges": true
        },
        "root": { "path": rootfs, "readonly": true },
        "hostname": "bench",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
              "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
              "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] }
        ],
        "linux": {
            "namespaces": [
                { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                { "type": "uts" }, { "type": "mount" }
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

pub fn write_bundle(dir: &Path, spec: &Value) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("make {}", dir.display()))?;
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(spec)? + "\n",
    )
    .with_context(|| format!("write {}/config.json", dir.display()))?;
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_spec_has_what_every_runtime_takes() {
        let s = spec(Path::new("/r"), &["/bin/true"]);
        assert_eq!(s["process"]["terminal"], false);
        assert_eq!(s["root"]["readonly"], true);
        assert!(s["linux"].get("resources").is_none());
        assert!(s["linux"].get("seccomp").is_none());
        assert!(s.get("hooks").is_none());
        assert!(s["process"]["capabilities"].get("ambient").is_none());
        let types: Vec<&str> = s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["type"].as_str().unwrap())
            .collect();
        assert!(!types.contains(&"cgroup"));
        assert_eq!(s["linux"]["namespaces"].as_array().unwrap().len(), 5);
    }
}
