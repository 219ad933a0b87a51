//! Where the time of a full `run` goes, with `perf` (linux-perf): CPU time
//! and context switches from `perf stat` software counters (this VM has no
//! hardware counters: `instructions` is "not supported"), and a timeline of
//! the run from scheduler tracepoints with `perf trace`, which costs far
//! less than ptrace (strace) and so distorts the phases less.
//!
//! The timeline uses milestones that every runtime passes, whatever its
//! process layout:
//!
//! | milestone | event |
//! |---|---|
//! | start | exec of the runtime |
//! | ns | the clone (or unshare) that makes the container's namespaces |
//! | init | the fork of the process that will call pivot_root |
//! | pivot | its pivot_root |
//! | exec | exec of the workload (/bin/true) |
//! | exit | the workload's exit |
//! | end | the runtime's exit |

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Result};
use serde_json::{json, Value};

pub const PHASES: [(&str, &str); 6] = [
    (
        "prepare",
        "start: runtime exec -> namespaces' clone/unshare",
    ),
    ("namespaces", "clone/unshare -> container init forked"),
    ("init_setup", "init forked -> pivot_root"),
    ("to_workload", "pivot_root -> workload exec"),
    ("workload", "workload exec -> exit (/bin/true)"),
    ("teardown", "workload exit -> runtime exit"),
];

/// The phases' milestones, and, for the timeline only, the messages the
/// processes send each other, the fsyncs they wait for, unmounts (the old
/// root's detach after pivot_root) and sendfile (nsbox's copy of tiny-init
/// into a memfd).
pub const TRACE_EVENTS: &str = "sched:sched_process_fork,sched:sched_process_exec,\
sched:sched_process_exit,syscalls:sys_enter_pivot_root,syscalls:sys_enter_clone,\
syscalls:sys_enter_clone3,syscalls:sys_enter_unshare,syscalls:sys_enter_sendmsg,\
syscalls:sys_enter_fsync,syscalls:sys_enter_umount,syscalls:sys_exit_umount,\
syscalls:sys_enter_sendfile64,syscalls:sys_exit_sendfile64";

/// Whether `perf trace` with tracepoints works here.
pub fn perf_works(perf: &Path, scratch: &Path) -> bool {
    Command::new(perf)
        .arg("trace")
        .arg("-o")
        .arg(scratch)
        .args([
            "--no-syscalls",
            "-e",
            "sched:sched_process_exec",
            "--",
            "true",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// `perf stat -x, -o FILE -e ... -- CMD`
pub fn stat_cmd(perf: &Path, out: &Path, inner: &Command) -> Command {
    let mut c = Command::new(perf);
    c.args(["stat", "-x,", "-o"])
        .arg(out)
        .args([
            "-e",
            "task-clock,context-switches,cpu-migrations,page-faults",
            "--",
        ])
        .arg(inner.get_program())
        .args(inner.get_args());
    c
}

/// For a bridged `run -d`, beside TRACE_EVENTS: the netlink requests
/// (rtnetlink and nf_tables go out with sendto) and the network lock.
pub const NETWORK_EVENTS: &str = "syscalls:sys_enter_sendto,syscalls:sys_enter_flock,\
syscalls:sys_exit_flock";

/// `perf trace -o FILE --no-syscalls -e EVENTS -- CMD`
pub fn trace_cmd(perf: &Path, out: &Path, inner: &Command) -> Command {
    trace_cmd_with(perf, out, inner, TRACE_EVENTS)
}

/// The same with other events.
pub fn trace_cmd_with(perf: &Path, out: &Path, inner: &Command, events: &str) -> Command {
    perf_trace(perf, out, &["--no-syscalls", "-e", events], inner)
}

/// `perf trace -s -o FILE -- CMD`: every system call of CMD and of the
/// processes it starts, summed per thread at the end.
pub fn summary_cmd(perf: &Path, out: &Path, inner: &Command) -> Command {
    perf_trace(perf, out, &["-s"], inner)
}

/// `perf trace -o FILE OPTIONS -- CMD`
fn perf_trace(perf: &Path, out: &Path, options: &[&str], inner: &Command) -> Command {
    let mut c = Command::new(perf);
    c.arg("trace")
        .arg("-o")
        .arg(out)
        .args(options)
        .arg("--")
        .arg(inner.get_program())
        .args(inner.get_args());
    c
}

/// System calls that wait: for a message, another process, a lock, a
/// pipe (the clone child's `read`) or an RCU grace period (`umount2` of a
/// detached tree: 1 ms on a quiet machine, 0.05 on a busy one). Their
/// time is someone else's work, or none, so where a run's time goes
/// leaves them out. `execve` too: the shim's is made by the runtime's
/// vfork child, whose parent resumes in the middle of it (once the
/// child's old memory is let go) and, on a VM that keeps both on one
/// CPU, runs on until it blocks, the child preempted meanwhile: the
/// shim's execve took 1.35 ms with 1 alive and 3.03 with 500, most of it
/// the runtime's own work between. An exec's own work does not grow with
/// what is alive (tiny-init's, from a child whose parent waits: 0.14 and
/// 0.17 ms).
pub const WAITS: [&str; 22] = [
    "umount2",
    "execve",
    "recvfrom",
    "recvmsg",
    "recvmmsg",
    "read",
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "epoll_wait",
    "epoll_pwait",
    "wait4",
    "waitid",
    "futex",
    "nanosleep",
    "clock_nanosleep",
    "rt_sigtimedwait",
    "rt_sigsuspend",
    "flock",
    "accept4",
    "pause",
];

/// The time in each system call, in ms, from `perf trace -s` output,
/// keyed `process: call` and summed over the threads of one name (a
/// thread is named by its last exec: the shim's clone child is
/// "tiny-init", tiny-init's child the workload).
pub fn syscall_totals(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let mut process: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        // ` shim (7082), 494 events, 30.4%`
        if let Some((head, _)) = t.split_once("), ") {
            if let Some((name, pid)) = head.rsplit_once(" (") {
                if pid.chars().all(|c| c.is_ascii_digit()) && t.contains(" events") {
                    process = Some(name.to_string());
                    continue;
                }
            }
        }
        // `   clone    2    0    2.718    0.000    1.359    2.718  100.00%`
        let f: Vec<&str> = t.split_whitespace().collect();
        let (Some(p), true) = (&process, f.len() >= 4) else {
            continue;
        };
        let (Ok(_calls), Ok(total)) = (f[1].parse::<u64>(), f[3].parse::<f64>()) else {
            continue;
        };
        *out.entry(format!("{p}: {}", f[0])).or_insert(0.0) += total;
    }
    out
}

/// Counters from `perf stat -x,` output: event name -> value.
pub fn parse_stat(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 3 {
            continue;
        }
        if let Ok(v) = f[0].trim().parse::<f64>() {
            out.insert(f[2].trim().to_string(), v);
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub ms: f64,
    pub comm: String,
    pub pid: i32,
    pub name: String,
    pub args: String,
}

/// One line of `perf trace` output:
/// `     1.306 runtime/21895 sched:sched_process_fork(parent_comm: ..., child_pid: 21899 (runtime))`
pub fn parse_line(line: &str) -> Option<Event> {
    let line = line.trim_start();
    let (ms, rest) = line.split_once(' ')?;
    let ms = ms.parse::<f64>().ok()?;
    let rest = rest.trim_start();
    let open = rest.find('(')?;
    let head = &rest[..open];
    let (who, name) = head.rsplit_once(' ')?;
    let (comm, pid) = who.trim().rsplit_once('/')?;
    let args = rest[open + 1..]
        .trim_end()
        .trim_end_matches(')')
        .to_string();
    Some(Event {
        ms,
        comm: comm.to_string(),
        pid: pid.parse().ok()?,
        name: name.trim().to_string(),
        args,
    })
}

/// The number after `key: ` in a tracepoint's arguments.
fn arg_num(args: &str, key: &str) -> Option<i32> {
    let pat = format!("{key}: ");
    let mut start = 0;
    // Match whole keys only: `pid: ` also ends `child_pid: `.
    while let Some(i) = args[start..].find(&pat) {
        let at = start + i;
        let whole = at == 0 || matches!(args.as_bytes()[at - 1], b' ' | b'(' | b',');
        if whole {
            let digits: String = args[at + pat.len()..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            return digits.parse().ok();
        }
        start = at + pat.len();
    }
    None
}

fn arg_str(args: &str, key: &str) -> Option<String> {
    let pat = format!("{key}: \"");
    let i = args.find(&pat)? + pat.len();
    let end = args[i..].find('"')?;
    Some(args[i..i + end].to_string())
}

/// The milestones of one traced run, in ms from the runtime's exec.
pub fn phases(events: &[Event], workload: &str) -> Result<BTreeMap<&'static str, f64>> {
    let Some(first) = events.first() else {
        bail!("empty trace");
    };
    let t0 = first.ms;
    let main = first.pid;
    let Some(pivot) = events
        .iter()
        .find(|e| e.name.ends_with("sys_enter_pivot_root"))
    else {
        bail!("no pivot_root in the trace");
    };
    let init = pivot.pid;
    let Some(fork) = events.iter().find(|e| {
        e.name.ends_with("sched_process_fork") && arg_num(&e.args, "child_pid") == Some(init)
    }) else {
        bail!("no fork of the container's init ({init}) in the trace");
    };
    let parent = arg_num(&fork.args, "parent_pid").unwrap_or(fork.pid);
    let clone = events
        .iter()
        .filter(|e| {
            e.ms <= fork.ms
                && e.pid == parent
                && (e.name.ends_with("sys_enter_clone") || e.name.ends_with("sys_enter_clone3"))
        })
        .map(|e| e.ms)
        .fold(f64::NAN, f64::max);
    let unshare = events
        .iter()
        .filter(|e| e.ms <= fork.ms && e.name.ends_with("sys_enter_unshare"))
        .map(|e| e.ms)
        .fold(f64::NAN, f64::min);
    let ns = match (clone.is_nan(), unshare.is_nan()) {
        (false, false) => clone.min(unshare),
        (false, true) => clone,
        (true, false) => unshare,
        (true, true) => fork.ms,
    };
    let Some(exec) = events.iter().find(|e| {
        e.name.ends_with("sched_process_exec")
            && arg_str(&e.args, "filename").as_deref() == Some(workload)
    }) else {
        bail!("no exec of {workload} in the trace");
    };
    let Some(exit) = events
        .iter()
        .find(|e| e.name.ends_with("sched_process_exit") && e.pid == exec.pid && e.ms >= exec.ms)
    else {
        bail!("no exit of {workload} in the trace");
    };
    let Some(end) = events
        .iter()
        .rev()
        .find(|e| e.name.ends_with("sched_process_exit") && e.pid == main)
    else {
        bail!("no exit of the runtime in the trace");
    };
    let mut m = BTreeMap::new();
    m.insert("prepare", ns - t0);
    m.insert("namespaces", fork.ms - ns);
    m.insert("init_setup", pivot.ms - fork.ms);
    m.insert("to_workload", exec.ms - pivot.ms);
    m.insert("workload", exit.ms - exec.ms);
    m.insert("teardown", end.ms - exit.ms);
    m.insert("total", end.ms - t0);
    Ok(m)
}

/// The name a process gets from an exec: `pid: 102 (memfd:tiny-init)` in
/// the tracepoint's arguments (perf's own comm column can be stale).
fn exec_comm(args: &str) -> Option<String> {
    let i = args.find("pid: ")?;
    let rest = &args[i..];
    let open = rest.find('(')?;
    let close = rest[open..].find(')')? + open;
    Some(rest[open + 1..close].to_string())
}

/// What an event is, without pids, for the timeline; None for events the
/// timeline leaves out.
fn describe(e: &Event) -> Option<String> {
    let n = e.name.as_str();
    Some(if n.ends_with("sched_process_exec") {
        format!("exec {}", exec_comm(&e.args).unwrap_or_default())
    } else if n.ends_with("sched_process_fork") {
        "fork".to_string()
    } else if n.ends_with("sched_process_exit") {
        "exit".to_string()
    } else if n.ends_with("sys_enter_pivot_root") {
        "pivot_root".to_string()
    } else if n.ends_with("sys_enter_unshare") {
        "unshare".to_string()
    } else if n.ends_with("sys_enter_clone") || n.ends_with("sys_enter_clone3") {
        "clone".to_string()
    } else if n.ends_with("sys_enter_sendto") {
        format!("sendto fd {}", arg_num(&e.args, "fd").unwrap_or(-1))
    } else if n.ends_with("sys_enter_flock") {
        "flock".to_string()
    } else if n.ends_with("sys_exit_flock") {
        "flock returned".to_string()
    } else if n.ends_with("sys_enter_sendmsg") {
        format!("sendmsg fd {}", arg_num(&e.args, "fd").unwrap_or(-1))
    } else if n.ends_with("sys_enter_fsync") {
        "fsync".to_string()
    } else if n.ends_with("sys_enter_umount") {
        "umount".to_string()
    } else if n.ends_with("sys_exit_umount") {
        "umount returned".to_string()
    } else if n.ends_with("sys_enter_sendfile64") {
        "sendfile".to_string()
    } else if n.ends_with("sys_exit_sendfile64") {
        "sendfile returned".to_string()
    } else {
        return None;
    })
}

/// The median timeline of several traced runs: each event is labelled by
/// the process's role (the runtime; any other process by the name it ends
/// with: shim, tiny-init, true, ...), what happened and its occurrence, so
/// that the same step of different runs lines up. Only steps seen in at
/// least half of the runs are listed, in order of their median time.
pub fn median_timeline(runs: &[Vec<Event>]) -> Vec<String> {
    let mut at: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for events in runs {
        let Some(first) = events.first() else {
            continue;
        };
        // A process is named by what it last exec'd (the first one is
        // "runtime" throughout); before its exec, a child is its parent's
        // name with a prime.
        let mut role: BTreeMap<i32, String> = BTreeMap::new();
        role.insert(first.pid, "runtime".into());
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for e in events {
            if e.name.ends_with("sched_process_fork") {
                if let Some(child) = arg_num(&e.args, "child_pid") {
                    let parent = role.get(&e.pid).cloned().unwrap_or_else(|| e.comm.clone());
                    role.insert(child, format!("{parent}'"));
                }
            } else if e.name.ends_with("sched_process_exec") && e.pid != first.pid {
                if let Some(c) = exec_comm(&e.args) {
                    role.insert(e.pid, c);
                }
            }
            let Some(what) = describe(e) else { continue };
            let role = role.get(&e.pid).cloned().unwrap_or_else(|| e.comm.clone());
            let base = format!("{role}: {what}");
            let k = seen.entry(base.clone()).or_default();
            *k += 1;
            at.entry(format!("{base} #{k}"))
                .or_default()
                .push(e.ms - first.ms);
        }
    }
    let mut rows: Vec<(f64, String, usize)> = at
        .into_iter()
        .filter(|(_, v)| 2 * v.len() >= runs.len())
        .filter_map(|(label, v)| crate::measure::Stats::of(&v).map(|s| (s.median, label, v.len())))
        .collect();
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut prev = 0.0;
    rows.into_iter()
        .map(|(t, label, n)| {
            let line = format!(
                "{t:8.3} ms  (+{:6.3})  {label}  [{n}/{}]",
                t - prev,
                runs.len()
            );
            prev = t;
            line
        })
        .collect()
}

pub fn phases_json(samples: &BTreeMap<&'static str, Vec<f64>>) -> Value {
    let mut v = serde_json::Map::new();
    for (k, xs) in samples {
        if let Some(s) = crate::measure::Stats::of(xs) {
            v.insert((*k).to_string(), s.json());
        }
    }
    json!(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NSBOX: &str = r#"     0.000 runtime/100 sched:sched_process_exec(filename: "/x/runtime", pid: 100 (runtime), old_pid: 100 (runtime))
     1.009 runtime/100 syscalls:sys_enter_clone(clone_flags: CHILD_CLEARTID|CHILD_SETTID|0x11, child_tidptr: 0x5)
     1.306 runtime/100 sched:sched_process_fork(parent_comm: "runtime", parent_pid: 100 (runtime), child_comm: "runtime", child_pid: 101 (runtime))
     1.751 shim/101 sched:sched_process_exec(filename: "/x/shim", pid: 101 (shim), old_pid: 101 (shim))
     3.370 shim/101 syscalls:sys_enter_clone(clone_flags: PIDFD|NEWNS|NEWUTS|NEWIPC|NEWPID|NEWNET|0x11)
     4.358 shim/101 sched:sched_process_fork(parent_comm: "shim", parent_pid: 101 (shim), child_comm: "shim", child_pid: 102 (shim))
     4.891 memfd:tiny-ini/102 sched:sched_process_exec(filename: "/dev/fd/4", pid: 102 (memfd:tiny-init), old_pid: 102 (memfd:tiny-init))
     6.038 tiny-init/102 syscalls:sys_enter_pivot_root(new_root: 0x7f, put_old: 0x7f)
     7.223 tiny-init/102 syscalls:sys_enter_clone(clone_flags: CHILD_CLEARTID|CHILD_SETTID|0x11, child_tidptr: 0x5)
     7.502 tiny-init/102 sched:sched_process_fork(parent_comm: "tiny-init", parent_pid: 102 (tiny-init), child_comm: "tiny-init", child_pid: 103 (tiny-init))
     7.888 true/103 sched:sched_process_exec(filename: "/bin/true", pid: 103 (true), old_pid: 103 (true))
     8.377 true/103 sched:sched_process_exit(comm: "true", pid: 103 (true), prio: 120, group_dead: 1)
     8.735 tiny-init/102 sched:sched_process_exit(comm: "tiny-init", pid: 102 (tiny-init), prio: 120, group_dead: 1)
     9.791 shim/101 sched:sched_process_exit(comm: "shim", pid: 101 (shim), prio: 120, group_dead: 1)
    10.089 runtime/100 sched:sched_process_exit(comm: "runtime", pid: 100 (runtime), prio: 120, group_dead: 1)"#;

    #[test]
    fn a_trace_line_parses() {
        let e = parse_line(NSBOX.lines().nth(6).unwrap()).unwrap();
        assert_eq!(e.comm, "memfd:tiny-ini");
        assert_eq!(e.pid, 102);
        assert_eq!(e.name, "sched:sched_process_exec");
        assert_eq!(arg_str(&e.args, "filename").as_deref(), Some("/dev/fd/4"));
        assert_eq!(arg_num(&e.args, "pid"), Some(102));
        let f = parse_line(NSBOX.lines().nth(2).unwrap()).unwrap();
        assert_eq!(arg_num(&f.args, "child_pid"), Some(101));
        assert_eq!(arg_num(&f.args, "parent_pid"), Some(100));
    }

    #[test]
    fn phases_of_an_nsbox_run() {
        let ev: Vec<Event> = NSBOX.lines().filter_map(parse_line).collect();
        let p = phases(&ev, "/bin/true").unwrap();
        let near = |k: &str, v: f64| (p[k] - v).abs() < 1e-9;
        assert!(near("prepare", 3.370));
        assert!(near("namespaces", 4.358 - 3.370));
        assert!(near("init_setup", 6.038 - 4.358));
        assert!(near("to_workload", 7.888 - 6.038));
        assert!(near("workload", 8.377 - 7.888));
        assert!(near("teardown", 10.089 - 8.377));
        assert!(near("total", 10.089));
    }

    const SUMMARY: &str = "
 Summary of events:

 runtime (7081), 330 events, 20.3%

   syscall            calls  errors  total       min       avg       max       stddev
                                     (msec)    (msec)    (msec)    (msec)        (%)
   --------------- --------  ------ -------- --------- --------- ---------     ------
   recvfrom               4      0     7.801     0.006     1.950     5.663     68.44%
   mkdir                 11      1     0.417     0.008     0.038     0.095     20.40%


 tiny-init (7083), 120 events, 8.0%

   syscall            calls  errors  total       min       avg       max       stddev
                                     (msec)    (msec)    (msec)    (msec)        (%)
   --------------- --------  ------ -------- --------- --------- ---------     ------
   pivot_root             1      0     1.250     1.250     1.250     1.250      0.00%
   mount                  7      0     0.300     0.020     0.043     0.120     30.00%


 tiny-init (7090), 10 events, 1.0%

   syscall            calls  errors  total       min       avg       max       stddev
                                     (msec)    (msec)    (msec)    (msec)        (%)
   --------------- --------  ------ -------- --------- --------- ---------     ------
   mount                  1      0     0.100     0.100     0.100     0.100      0.00%
";

    #[test]
    fn a_syscall_summary_sums_per_process_name() {
        let t = syscall_totals(SUMMARY);
        let near = |k: &str, v: f64| (t[k] - v).abs() < 1e-9;
        assert_eq!(t.len(), 4, "{t:?}");
        assert!(near("runtime: recvfrom", 7.801));
        assert!(near("runtime: mkdir", 0.417));
        assert!(near("tiny-init: pivot_root", 1.25));
        assert!(near("tiny-init: mount", 0.4));
    }

    #[test]
    fn timelines_of_two_runs_line_up_by_role_and_step() {
        let ev: Vec<Event> = NSBOX.lines().filter_map(parse_line).collect();
        let later: Vec<Event> = ev
            .iter()
            .map(|e| Event {
                ms: e.ms * 3.0,
                ..e.clone()
            })
            .collect();
        let t = median_timeline(&[ev, later]);
        assert!(t[0].contains("runtime: exec runtime #1"));
        let shim_exec = t.iter().find(|l| l.contains("shim: exec shim #1")).unwrap();
        // median of 1.751 and 5.253
        assert!(
            shim_exec.trim_start().starts_with("3.502 ms"),
            "{shim_exec}"
        );
        assert!(t
            .iter()
            .any(|l| l.contains("memfd:tiny-init: pivot_root #1")));
        // Named by the exec, not by perf's comm column ("memfd:tiny-ini").
        assert!(t.iter().any(|l| l.contains("memfd:tiny-init: fork #1")));
        assert!(t.iter().any(|l| l.contains("true: exit #1")));
    }

    #[test]
    fn perf_stat_csv_parses() {
        let t = "# started on x\n\n8.63,msec,task-clock,8633389,100.00,0.806,CPUs utilized\n\
                 18,,context-switches,8633389,100.00,2.085,K/sec\n";
        let m = parse_stat(t);
        assert_eq!(m["task-clock"], 8.63);
        assert_eq!(m["context-switches"], 18.0);
    }
}
