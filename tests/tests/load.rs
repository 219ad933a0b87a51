//! Load held (issue 7): many containers from concurrent callers, a race for
//! one ID, and a container whose PID 1 is flooded with orphans and signals.

mod common;

use common::*;
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

const CONTAINERS: usize = 100;
const CALLERS: usize = 8;

#[test]
fn a_hundred_containers_from_eight_callers() {
    let Some(t) = Test::new("a_hundred_containers_from_eight_callers") else {
        return;
    };
    let b = t.bundle("ld", &[MT, "sleep", "60"]);
    let pids = Mutex::new(HashSet::new());
    std::thread::scope(|s| {
        for caller in 0..CALLERS {
            let (t, b, pids) = (&t, &b, &pids);
            s.spawn(move || {
                for n in (caller..CONTAINERS).step_by(CALLERS) {
                    let id = format!("ld-{n}");
                    t.create(b, &id).ok();
                    let st = t.state(&id);
                    assert_eq!(st["id"], json!(id), "{st}");
                    let pid = st["pid"].as_i64().unwrap();
                    assert!(pids.lock().unwrap().insert(pid), "pid {pid} twice");
                    t.rt(&["start", &id]).ok();
                    assert_eq!(t.status(&id), "running");
                    t.rt(&["kill", &id, "KILL"]).ok();
                    // Until the exit code is there too: under this load a
                    // `state` now and then still reports a stop without its
                    // code (see issue 7's notes); the code must come, and be
                    // right.
                    let out = wait_for("stopped with a code", Duration::from_secs(10), || {
                        let out = t.rt(&["state", &id]);
                        let v = out.success().then(|| out.json());
                        v.filter(|v| v["status"] == "stopped" && !v["exitCode"].is_null())
                            .map(|_| out)
                    });
                    assert_eq!(
                        out.json()["exitCode"],
                        json!(137),
                        "{out:?}\nshim.log: {}\nstate.json: {}",
                        read_lossy(&t.root.join(&id).join("shim.log")),
                        read_lossy(&t.root.join(&id).join("state.json"))
                    );
                    t.rt(&["delete", &id]).ok();
                }
            });
        }
    });
    assert_eq!(pids.lock().unwrap().len(), CONTAINERS);
    let listed = t.rt(&["list", "-q"]);
    assert_eq!(listed.ok().stdout.trim(), "", "containers left: {listed:?}");
}

#[test]
fn two_creates_of_one_id_exactly_one_wins() {
    let Some(t) = Test::new("two_creates_of_one_id") else {
        return;
    };
    let b = t.bundle("race", &[MT, "sleep", "60"]);
    for round in 0..5 {
        let id = format!("race-{round}");
        let outs: Vec<Out> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|_| s.spawn(|| t.rt(&["create", "-b", b.path(), &id])))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let (won, lost): (Vec<&Out>, Vec<&Out>) = outs.iter().partition(|o| o.success());
        assert_eq!(won.len(), 1, "round {round}: {outs:?}");
        lost[0].fails_with(&id, &["already exists"]);
        // The loser left the winner's container alone.
        t.track_state(&id);
        assert_eq!(t.status(&id), "created");
        t.rt(&["start", &id]).ok();
        assert_eq!(t.status(&id), "running");
        t.rt(&["delete", "--force", &id]).ok();
    }
}

#[test]
fn ten_thousand_orphans_are_reaped_and_the_exit_status_holds() {
    let Some(t) = Test::new("ten_thousand_orphans") else {
        return;
    };
    let script = format!("{MT} orphans 10000 || exit 1; exit 42");
    let b = t.bundle("orph", &["sh", "-c", &script]);
    let out = t.run(&b, "orph");
    out.code_is(42);
    assert!(out.stdout.contains("zombies 0"), "{out:?}");
}

#[test]
fn the_last_of_a_thousand_signals_arrives() {
    let Some(t) = Test::new("the_last_of_a_thousand_signals") else {
        return;
    };
    let b = t.bundle("sig", &[MT, "signal-burst", "7"]);
    t.run_detached(&b, "sig").ok();
    wait_for_text(&t.ctr_stdout("sig"), "ready");
    let pid = t.state("sig")["pid"].as_i64().unwrap() as i32;
    for _ in 0..999 {
        // SAFETY: kill(2) of this test's container's init.
        unsafe { libc::kill(pid, libc::SIGUSR1) };
    }
    t.rt(&["kill", "sig", "USR2"]).ok();
    let st = t.wait_status("sig", "stopped");
    assert_eq!(st["exitCode"], json!(7), "{st}");
    let text = wait_for_text(&t.ctr_stdout("sig"), "usr2");
    let count: u64 = text
        .split_whitespace()
        .skip_while(|w| *w != "usr1")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {text:?}"));
    assert!(count >= 1, "no SIGUSR1 came through: {text:?}");
    t.rt(&["delete", "sig"]).ok();
}
