//! cgroup v1: one directory per hierarchy, each controller's own files.

use std::path::Path;

use protocol::{CgroupPaths, DeviceRule, Resources};

use super::{dir_of, read_file, write_file, CgroupError, Result};

/// mkdir -p the container's directory in one hierarchy: true when it was
/// there already. A new cpuset cgroup starts with no CPUs and no memory
/// nodes, and no task may join it until it has some: each level gets its
/// parent's, as runc does.
///
/// Unlike runc, a level that gets CPUs under a balancing ancestor first
/// has its `cpuset.sched_load_balance` cleared. Giving CPUs to a cpuset
/// that asks for balancing makes the kernel rebuild the scheduling
/// domains, and removing that cpuset rebuilds them again. Each rebuild
/// walks every cpuset on the host. With 2000 containers alive that was
/// 1.4 to 1.8 ms of a `run -d` (the bench's section 8 trace).
///
/// Under an ancestor that balances its CPUs, the flag of a cpuset within
/// changes nothing. The root balances by default, and then the whole
/// machine is one scheduling domain (cgroup-v1/cpusets.rst, 1.7). Where
/// no ancestor balances (a host that isolates CPUs), the flag is left
/// set, as runc leaves it.
pub(super) fn create(paths: &CgroupPaths, dir: &Path, controller: &str) -> Result<bool> {
    let existed = match std::fs::create_dir(dir) {
        Ok(()) => false,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            super::mkdir_p(dir)?;
            false
        }
        Err(e) => return Err(super::io_err(dir)(e)),
    };
    if !controller.split(',').any(|c| c == "cpuset") {
        return Ok(existed);
    }
    let depth = Path::new(&paths.path)
        .components()
        .count()
        .saturating_sub(1);
    // The hierarchy's root first, then each level down to the container's.
    let mut levels: Vec<&Path> = dir.ancestors().take(depth + 1).collect();
    levels.reverse();
    let balances =
        |d: &Path| read_file(d, "cpuset.sched_load_balance").is_ok_and(|v| v.trim() == "1");
    let mut covered = false;
    for i in 1..levels.len() {
        let (level, parent) = (levels[i], levels[i - 1]);
        if read_file(level, "cpuset.cpus")?.trim().is_empty() {
            covered = covered || levels[..i].iter().any(|a| balances(a));
            if covered {
                // Only the rebuilds' cost is at stake: a level that keeps
                // the flag (an older kernel, a refusal) works as in runc.
                let _ = write_file(level, "cpuset.sched_load_balance", "0");
            }
            write_file(
                level,
                "cpuset.cpus",
                read_file(parent, "cpuset.cpus")?.trim(),
            )?;
        }
        if read_file(level, "cpuset.mems")?.trim().is_empty() {
            write_file(
                level,
                "cpuset.mems",
                read_file(parent, "cpuset.mems")?.trim(),
            )?;
        }
    }
    Ok(existed)
}

fn controller_dir<'a>(paths: &'a CgroupPaths, controller: &str) -> Result<&'a Path> {
    dir_of(paths, controller).ok_or_else(|| {
        CgroupError::Unsupported(format!(
            "linux.resources needs the {controller} controller, which this host has not mounted"
        ))
    })
}

fn limit(v: i64) -> String {
    if v < 0 {
        "-1".into()
    } else {
        v.to_string()
    }
}

pub(super) fn apply(paths: &CgroupPaths, r: &Resources, devices: bool) -> Result<()> {
    if let Some(m) = &r.memory {
        let dir = controller_dir(paths, "memory")?;
        memory_and_swap(dir, m.limit, m.swap)?;
        if let Some(v) = m.reservation {
            write_file(dir, "memory.soft_limit_in_bytes", &limit(v))?;
        }
        if let Some(v) = m.swappiness {
            if v > 100 {
                return Err(CgroupError::Invalid(format!(
                    "memory.swappiness {v} is above 100"
                )));
            }
            write_file(dir, "memory.swappiness", &v.to_string())?;
        }
        if let Some(disable) = m.disable_oom_killer {
            write_file(dir, "memory.oom_control", if disable { "1" } else { "0" })?;
        }
        if let Some(v) = m.kernel_tcp {
            write_file(dir, "memory.kmem.tcp.limit_in_bytes", &limit(v))?;
        }
    }
    if let Some(c) = &r.cpu {
        if c.shares.is_some() || c.quota.is_some() || c.period.is_some() {
            let dir = controller_dir(paths, "cpu")?;
            if let Some(v) = c.shares {
                write_file(dir, "cpu.shares", &v.to_string())?;
            }
            // The period first: the kernel checks the quota against it.
            if let Some(v) = c.period {
                write_file(dir, "cpu.cfs_period_us", &v.to_string())?;
            }
            if let Some(v) = c.quota {
                write_file(dir, "cpu.cfs_quota_us", &limit(v))?;
            }
        }
        if c.cpus.is_some() || c.mems.is_some() {
            let dir = controller_dir(paths, "cpuset")?;
            if let Some(v) = &c.cpus {
                write_file(dir, "cpuset.cpus", v)?;
            }
            if let Some(v) = &c.mems {
                write_file(dir, "cpuset.mems", v)?;
            }
        }
    }
    if let Some(v) = r.pids_limit {
        // 0 means "not set" in runc's reading of the spec.
        if v != 0 {
            let dir = controller_dir(paths, "pids")?;
            let value = if v < 0 { "max".into() } else { v.to_string() };
            write_file(dir, "pids.max", &value)?;
        }
    }
    if devices && !r.devices.is_empty() {
        let dir = controller_dir(paths, "devices")?;
        for rule in &r.devices {
            let file = if rule.allow {
                "devices.allow"
            } else {
                "devices.deny"
            };
            write_file(dir, file, &device_line(rule))?;
        }
    }
    if let Some(b) = &r.block_io {
        super::blkio::apply_v1(controller_dir(paths, "blkio")?, b)?;
    }
    if !r.hugepage_limits.is_empty() {
        let dir = controller_dir(paths, "hugetlb")?;
        super::write_hugetlb(dir, &r.hugepage_limits, "limit_in_bytes")?;
    }
    if !r.rdma.is_empty() {
        super::write_rdma(controller_dir(paths, "rdma")?, &r.rdma)?;
    }
    if let Some(n) = &r.network {
        if let Some(id) = n.class_id {
            write_file(
                controller_dir(paths, "net_cls")?,
                "net_cls.classid",
                &id.to_string(),
            )?;
        }
        if !n.priorities.is_empty() {
            let dir = controller_dir(paths, "net_prio")?;
            // One interface per write: the kernel parses one line.
            for (name, priority) in &n.priorities {
                write_file(dir, "net_prio.ifpriomap", &format!("{name} {priority}"))?;
            }
        }
    }
    if !r.unified.is_empty() {
        return Err(CgroupError::Unsupported(
            "linux.resources.unified needs cgroup v2; this host has v1".into(),
        ));
    }
    Ok(())
}

/// "c 1:3 rwm", "a *:* rwm": the line devices.allow / devices.deny take.
pub(crate) fn device_line(rule: &DeviceRule) -> String {
    let num = |n: Option<i64>| n.map_or("*".to_string(), |n| n.to_string());
    let access = if rule.access.is_empty() {
        "rwm"
    } else {
        &rule.access
    };
    format!(
        "{} {}:{} {access}",
        rule.kind,
        num(rule.major),
        num(rule.minor)
    )
}

/// memory.limit_in_bytes and memory.memsw.limit_in_bytes (memory plus
/// swap): the kernel refuses a memsw limit below the memory limit, so the
/// one that grows is written first.
fn memory_and_swap(dir: &Path, mem: Option<i64>, swap: Option<i64>) -> Result<()> {
    let memsw = dir.join("memory.memsw.limit_in_bytes");
    let swap = match swap {
        Some(s) if !memsw.exists() => {
            // Podman asks for swap by default; a kernel without swap
            // accounting cannot limit it, and has no swap to hand out
            // beyond what the memory limit already bounds.
            log::warn!(
                "memory.swap {s} not applied: this kernel has no swap accounting \
                 (memory.memsw.limit_in_bytes)"
            );
            None
        }
        s => s,
    };
    let as_bytes = |v: i64| if v < 0 { u64::MAX } else { v as u64 };
    let swap_first = match swap {
        Some(s) => {
            let current = read_file(dir, "memory.memsw.limit_in_bytes")
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .unwrap_or(u64::MAX);
            as_bytes(s) > current
        }
        None => false,
    };
    if let (true, Some(s)) = (swap_first, swap) {
        write_file(dir, "memory.memsw.limit_in_bytes", &limit(s))?;
    }
    if let Some(m) = mem {
        write_file(dir, "memory.limit_in_bytes", &limit(m))?;
    }
    if let (false, Some(s)) = (swap_first, swap) {
        write_file(dir, "memory.memsw.limit_in_bytes", &limit(s))?;
    }
    Ok(())
}
