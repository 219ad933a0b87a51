//! cgroup v2: one hierarchy; a controller works in a cgroup only once every
//! ancestor lists it in cgroup.subtree_control.

use std::path::{Path, PathBuf};

use protocol::{CgroupPaths, Resources};

use super::{io_err, read_file, write_file, CgroupError, Result};

/// The controllers nsbox sets limits with in every container's cgroup.
const WANTED: [&str; 5] = ["cpu", "cpuset", "io", "memory", "pids"];

/// The controllers `r` needs besides [`WANTED`], enabled only for the
/// containers that ask.
fn extra(r: &Resources) -> Vec<&'static str> {
    let mut extra = Vec::new();
    if !r.hugepage_limits.is_empty() {
        extra.push("hugetlb");
    }
    if !r.rdma.is_empty() {
        extra.push("rdma");
    }
    extra
}

/// The container's directory and its ancestors below the hierarchy's
/// root, top first.
fn levels(paths: &CgroupPaths) -> Vec<PathBuf> {
    let leaf = PathBuf::from(&paths.dirs[0].dir);
    let depth = Path::new(&paths.path)
        .components()
        .count()
        .saturating_sub(1);
    let mut levels: Vec<PathBuf> = leaf
        .ancestors()
        .take(depth)
        .map(Path::to_path_buf)
        .collect();
    levels.reverse();
    levels
}

/// mkdir -p the container's directory, enabling the wanted controllers on
/// the way down. A controller an ancestor cannot pass on (it is not in its
/// cgroup.controllers, or the ancestor holds processes) is left out: a
/// limit that needs it then fails with the file missing, clearly. True
/// when the container's own directory was there already.
pub(super) fn create(paths: &CgroupPaths, r: &Resources) -> Result<bool> {
    let mut wanted = WANTED.to_vec();
    wanted.extend(extra(r));
    let mut existed = false;
    for level in levels(paths) {
        if let Some(parent) = level.parent() {
            enable_controllers(parent, &wanted);
        }
        existed = match std::fs::create_dir(&level) {
            Ok(()) => false,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => true,
            Err(e) => return Err(io_err(&level)(e)),
        };
    }
    Ok(existed)
}

fn enable_controllers(dir: &Path, wanted: &[&str]) {
    let available = read_file(dir, "cgroup.controllers").unwrap_or_default();
    let enabled = read_file(dir, "cgroup.subtree_control").unwrap_or_default();
    for c in wanted {
        let has = |text: &str| text.split_whitespace().any(|w| w == *c);
        if has(&available) && !has(&enabled) {
            if let Err(e) = write_file(dir, "cgroup.subtree_control", &format!("+{c}")) {
                log::debug!("enable {c} in {}: {e}", dir.display());
            }
        }
    }
}

/// `update` may ask for a controller the container's cgroup was made
/// without (hugetlb, rdma): enable it on the way down now. Enabling one in
/// an ancestor's cgroup.subtree_control is allowed while the container
/// runs; only an ancestor holding processes itself refuses it.
fn enable_missing(paths: &CgroupPaths, r: &Resources) {
    let leaf = Path::new(&paths.dirs[0].dir);
    let has = read_file(leaf, "cgroup.controllers").unwrap_or_default();
    let missing: Vec<&str> = extra(r)
        .into_iter()
        .filter(|c| !has.split_whitespace().any(|w| w == *c))
        .collect();
    if missing.is_empty() {
        return;
    }
    for level in levels(paths) {
        if let Some(parent) = level.parent() {
            enable_controllers(parent, &missing);
        }
    }
}

/// cpu.weight (1..10000) from cpu.shares (2..262144), runc's formula.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

fn max_or(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

/// cpu.max ("QUOTA PERIOD", QUOTA "max" for none) for what was asked.
/// The kernel takes the quota alone and keeps the period, so an `update`
/// of the quota leaves the period as it was; a period alone keeps the
/// quota, read back first. None: nothing asked.
fn cpu_max(dir: &Path, quota: Option<i64>, period: Option<u64>) -> Result<Option<String>> {
    // 0 is "not set", as runc reads it; a negative quota is no limit.
    let quota = quota
        .filter(|&q| q != 0)
        .map(|q| if q > 0 { q.to_string() } else { "max".into() });
    Ok(match (quota, period.filter(|&p| p != 0)) {
        (None, None) => None,
        (Some(q), None) => Some(q),
        (Some(q), Some(p)) => Some(format!("{q} {p}")),
        (None, Some(p)) => {
            let current = read_file(dir, "cpu.max")?;
            let q = current
                .split_whitespace()
                .next()
                .unwrap_or("max")
                .to_string();
            Some(format!("{q} {p}"))
        }
    })
}

/// A device list that leaves every device allowed (none, or ending in
/// "allow all") needs no program.
fn devices_trivial(r: &Resources) -> bool {
    match r.devices.last() {
        None => true,
        Some(last) => {
            last.allow
                && last.kind == 'a'
                && last.major.is_none()
                && last.minor.is_none()
                && (last.access.is_empty() || last.access == "rwm")
        }
    }
}

pub(super) fn apply(paths: &CgroupPaths, r: &Resources, devices: bool) -> Result<()> {
    let dir = Path::new(&paths.dirs[0].dir);
    enable_missing(paths, r);
    if devices && !devices_trivial(r) {
        super::bpf::attach(dir, &r.devices)?;
    }
    if let Some(m) = &r.memory {
        if let Some(v) = m.limit {
            write_file(dir, "memory.max", &max_or(v))?;
        }
        if let Some(v) = m.reservation {
            write_file(dir, "memory.low", &max_or(v))?;
        }
        if let Some(swap) = m.swap {
            // OCI's swap is memory plus swap; v2's memory.swap.max is swap alone.
            let value = match (swap, m.limit) {
                (s, _) if s < 0 => "max".to_string(),
                (s, Some(l)) if l > 0 => {
                    if s < l {
                        return Err(CgroupError::Invalid(format!(
                            "memory.swap {s} is below memory.limit {l}"
                        )));
                    }
                    (s - l).to_string()
                }
                (s, _) => {
                    return Err(CgroupError::Invalid(format!(
                        "memory.swap {s} needs memory.limit on cgroup v2"
                    )))
                }
            };
            write_file(dir, "memory.swap.max", &value)?;
        }
        if m.swappiness.is_some() {
            return Err(CgroupError::Unsupported(
                "memory.swappiness does not exist on cgroup v2".into(),
            ));
        }
        if m.disable_oom_killer == Some(true) {
            return Err(CgroupError::Unsupported(
                "memory.disableOOMKiller does not exist on cgroup v2".into(),
            ));
        }
        if m.kernel_tcp.is_some() {
            return Err(CgroupError::Unsupported(
                "memory.kernelTCP does not exist on cgroup v2".into(),
            ));
        }
    }
    if let Some(c) = &r.cpu {
        if let Some(s) = c.shares.filter(|&s| s != 0) {
            write_file(dir, "cpu.weight", &shares_to_weight(s).to_string())?;
        }
        if let Some(value) = cpu_max(dir, c.quota, c.period)? {
            write_file(dir, "cpu.max", &value)?;
        }
        if let Some(v) = &c.cpus {
            write_file(dir, "cpuset.cpus", v)?;
        }
        if let Some(v) = &c.mems {
            write_file(dir, "cpuset.mems", v)?;
        }
    }
    if let Some(v) = r.pids_limit.filter(|&v| v != 0) {
        write_file(dir, "pids.max", &max_or(v))?;
    }
    if let Some(b) = &r.block_io {
        super::blkio::apply_v2(dir, b)?;
    }
    super::write_hugetlb(dir, &r.hugepage_limits, "max")?;
    super::write_rdma(dir, &r.rdma)?;
    if r.network.is_some() {
        return Err(CgroupError::Unsupported(
            "linux.resources.network needs cgroup v1's net_cls and net_prio".into(),
        ));
    }
    for (key, value) in &r.unified {
        // A file of this very cgroup, never a path out of it.
        if key.is_empty() || key.contains('/') || key.starts_with('.') || !key.contains('.') {
            return Err(CgroupError::Invalid(format!(
                "linux.resources.unified key {key:?} is not a cgroup file name"
            )));
        }
        write_file(dir, key, value)?;
    }
    Ok(())
}
