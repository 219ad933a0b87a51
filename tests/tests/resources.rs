//! linux.resources beyond the common ones (tests/cgroups.rs has memory,
//! cpu, pids, devices and the freezer), and `kill --all`, on the layout
//! the host has: this file runs on the development machine (v1 with a
//! cgroup2 mount holding only hugetlb) and in `make test-cgroup2`'s cgroup
//! v2 and v1 virtual machines.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn kill_all_reaches_every_process_of_the_cgroup() {
    let Some(t) = Test::new("kill_all_reaches_every_process_of_the_cgroup") else {
        return;
    };
    // Processes in sessions of their own, and one that ignores TERM: only
    // the cgroup knows them all.
    let script = "setsid sleep 101 & setsid sleep 102 & \
                  (trap '' TERM; exec sleep 103) & echo ready; wait";
    let b = t.bundle("b", &["sh", "-c", script]);
    for paused in [false, true] {
        let id = if paused { "frozen" } else { "all" };
        t.run_detached(&b, id).ok();
        wait_for_text(&t.ctr_stdout(id), "ready");
        let p = t.default_cgroup(id);
        let pids: Vec<i32> = wait_for("the sleeps", Duration::from_secs(10), || {
            let pids: Vec<i32> = read_cgroup_file("pids", &p, "cgroup.procs")
                .lines()
                .filter_map(|l| l.parse().ok())
                .collect();
            // tiny-init, sh and the three sleeps.
            (pids.len() >= 5).then_some(pids)
        });
        let starts: Vec<(i32, u64)> = pids
            .iter()
            .filter_map(|&pid| Some((pid, proc_stat(pid)?.2)))
            .collect();
        if paused {
            t.rt(&["pause", id]).ok();
        }
        t.rt(&["kill", "--all", id, "KILL"]).ok();
        let s = t.stopped_with_code(id);
        assert_eq!(s["exitCode"], 137, "{s}");
        for (pid, start) in starts {
            wait_for(
                &format!("process {pid} to be gone"),
                Duration::from_secs(5),
                || (!alive(pid, start) || proc_stat(pid).is_some_and(|s| s.0 == "Z")).then_some(()),
            );
        }
        t.rt(&["delete", id]).ok();
    }
}
