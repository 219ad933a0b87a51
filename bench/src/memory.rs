//! What a container costs the host in memory, outside its workload.
//!
//! For each container we take the process named in its pid file (its init
//! as the runtime sees it) and collect: that process, its ancestors up to
//! (not including) our reaper or ourselves, and all its descendants. The
//! workload (`sleep`) is left out. What stays is what the runtime keeps
//! running per container: nsbox's shim and tiny-init; conmon and
//! catatonit or tini; nothing for a detached runc or crun, whose init *is*
//! the workload.
//!
//! Each process is counted by its proportional set size (Pss in
//! /proc/PID/smaps_rollup): a page shared by N processes counts 1/N to
//! each, so the sum over all containers is the memory they really hold.
//! Pages of files that nobody maps (a sealed memfd's unmapped part, say) are
//! not in any Pss: `Shmem` and `MemAvailable` from /proc/meminfo, before and
//! after, are reported beside it for that reason.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{json, Value};

#[derive(Clone, Debug)]
pub struct Proc {
    pub ppid: i32,
    pub comm: String,
}

/// Every process's parent and name, from /proc/PID/stat.
pub fn processes() -> HashMap<i32, Proc> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Some(p) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| parse_stat(&s))
        {
            out.insert(pid, p);
        }
    }
    out
}

/// `PID (COMM) STATE PPID ...`; COMM may hold spaces and parentheses.
pub fn parse_stat(s: &str) -> Option<Proc> {
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s.get(open + 1..close)?.to_string();
    let mut rest = s.get(close + 1..)?.split_whitespace();
    let _state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some(Proc { ppid, comm })
}

/// Pss and Rss of a process, in KiB.
pub fn pss_rss_kib(pid: i32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("Pss:")?, field("Rss:")?))
}

/// The processes that belong to the containers whose inits are `inits`,
/// apart from the workload (processes named `workload`). `stop` holds the
/// pids the upward walk must not enter (our reaper, ourselves, pid 1).
pub fn overhead_pids(
    procs: &HashMap<i32, Proc>,
    inits: &[i32],
    stop: &BTreeSet<i32>,
    workload: &str,
) -> BTreeSet<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (&pid, p) in procs {
        children.entry(p.ppid).or_default().push(pid);
    }
    let mut set = BTreeSet::new();
    for &init in inits {
        if !procs.contains_key(&init) {
            continue;
        }
        // Up: the shim (or conmon) that holds the init.
        let mut p = procs[&init].ppid;
        while p > 1 && !stop.contains(&p) {
            set.insert(p);
            p = procs.get(&p).map_or(0, |x| x.ppid);
        }
        // Down: the init and everything under it.
        let mut todo = vec![init];
        while let Some(q) = todo.pop() {
            if set.insert(q) {
                todo.extend(children.get(&q).into_iter().flatten());
            }
        }
    }
    set.retain(|pid| procs.get(pid).is_some_and(|p| p.comm != workload));
    set
}

/// Sum of Pss and Rss over `pids`, in total and per process name.
pub fn account(procs: &HashMap<i32, Proc>, pids: &BTreeSet<i32>, containers: usize) -> Value {
    let mut by_name: BTreeMap<String, (usize, u64, u64)> = BTreeMap::new();
    let (mut pss, mut rss) = (0u64, 0u64);
    for pid in pids {
        let Some((p, r)) = pss_rss_kib(*pid) else {
            continue;
        };
        pss += p;
        rss += r;
        let name = procs.get(pid).map_or("?".into(), |x| x.comm.clone());
        let e = by_name.entry(name).or_default();
        e.0 += 1;
        e.1 += p;
        e.2 += r;
    }
    let per = |kib: u64| {
        if containers == 0 {
            0.0
        } else {
            crate::measure::round3(kib as f64 / containers as f64)
        }
    };
    let names: BTreeMap<String, Value> = by_name
        .into_iter()
        .map(|(n, (count, p, r))| {
            (
                n,
                json!({ "processes": count, "pss_kib": p, "rss_kib": r,
                        "pss_kib_per_container": per(p) }),
            )
        })
        .collect();
    json!({
        "processes": pids.len(),
        "pss_kib": pss,
        "rss_kib": rss,
        "pss_kib_per_container": per(pss),
        "rss_kib_per_container": per(rss),
        "by_process": names,
    })
}

/// MemAvailable and Shmem from /proc/meminfo, in KiB.
pub fn meminfo() -> (i64, i64) {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0)
    };
    (field("MemAvailable:"), field("Shmem:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(ppid: i32, comm: &str) -> Proc {
        Proc {
            ppid,
            comm: comm.into(),
        }
    }

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let s = "42 (a (b) c) S 7 42 42 0 -1";
        let x = parse_stat(s).unwrap();
        assert_eq!((x.ppid, x.comm.as_str()), (7, "a (b) c"));
    }

    #[test]
    fn overhead_is_the_tree_around_the_init_without_the_workload() {
        // 10 reaper; 20 shim -> 21 tiny-init -> 22 sleep; 30 sleep (runc);
        // 40 conmon -> 41 catatonit -> 42 sleep; 50 unrelated.
        let procs: HashMap<i32, Proc> = [
            (10, p(1, "tini")),
            (11, p(10, "nsbox-bench")),
            (20, p(10, "shim")),
            (21, p(20, "tiny-init")),
            (22, p(21, "sleep")),
            (30, p(10, "sleep")),
            (40, p(10, "conmon")),
            (41, p(40, "catatonit")),
            (42, p(41, "sleep")),
            (50, p(1, "cron")),
        ]
        .into_iter()
        .collect();
        let stop: BTreeSet<i32> = [10, 11].into_iter().collect();
        let ids = |v: BTreeSet<i32>| v.into_iter().collect::<Vec<_>>();
        assert_eq!(
            ids(overhead_pids(&procs, &[21], &stop, "sleep")),
            vec![20, 21]
        );
        assert!(overhead_pids(&procs, &[30], &stop, "sleep").is_empty());
        assert_eq!(
            ids(overhead_pids(&procs, &[41], &stop, "sleep")),
            vec![40, 41]
        );
        assert!(overhead_pids(&procs, &[99], &stop, "sleep").is_empty());
    }
}
