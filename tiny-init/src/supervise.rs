//! The running state: forward signals to the workload, reap every zombie,
//! run `exec` requests, and report the workload's end.

use std::os::fd::{AsRawFd, OwnedFd};

use nsbox_process as workload;
use protocol::{InitChannel, InitToShim, ShimToInit};

use crate::signals;

/// Processes of ours whose ends matter: the workload, until it is reaped,
/// and the exec'd processes the shim waits for.
struct Children {
    workload: i32,
    execs: Vec<i32>,
}

/// What a batch of signals came to.
#[derive(Debug, Default, PartialEq)]
struct Outcome {
    /// The workload's exit code, once it has been reaped.
    exited: Option<i32>,
    /// Exec'd processes reaped: (pid, exit code).
    execs_exited: Vec<(i32, i32)>,
}

impl Children {
    /// One batch of signals from the signalfd: on SIGCHLD reap with
    /// `reap_all`, pass any other to the workload with `forward`. Once the
    /// workload is reaped nothing more is forwarded, even later in the same
    /// batch: its pid is free then, and a new process in the container may
    /// already have it. (The signalfd hands standard signals out lowest
    /// number first, so SIGCHLD comes before SIGCONT, SIGWINCH, ...)
    fn on_signals(
        &mut self,
        batch: &[i32],
        mut reap_all: impl FnMut(&mut dyn FnMut(i32, i32)),
        mut forward: impl FnMut(i32, i32),
    ) -> Outcome {
        let mut out = Outcome::default();
        for &sig in batch {
            if sig == libc::SIGCHLD {
                reap_all(&mut |pid, code| {
                    if pid == self.workload && out.exited.is_none() {
                        out.exited = Some(code);
                    } else if let Some(i) = self.execs.iter().position(|&p| p == pid) {
                        self.execs.swap_remove(i);
                        out.execs_exited.push((pid, code));
                    }
                });
            } else if out.exited.is_none() {
                forward(self.workload, sig);
            }
        }
        out
    }
}

/// Serve until the workload ends, then exit with its code.
pub fn supervise(
    channel: InitChannel,
    signals: signals::Signals,
    workload: i32,
    hold_exit: bool,
) -> ! {
    let mut channel = Some(channel);
    let mut children = Children {
        workload,
        execs: Vec::new(),
    };
    loop {
        let ready = match &channel {
            Some(ch) => signals::wait_readable(ch, &signals),
            None => signals::Ready::Signal,
        };
        match ready {
            signals::Ready::Channel => {
                // Once the workload runs the shim only asks for execs; a
                // closed channel means the shim is gone, and the container
                // carries on without it.
                if let Some(ch) = &channel {
                    match ch.recv() {
                        Ok((ShimToInit::Exec(process), fds)) => {
                            let (reply, master) = exec(&process, &fds);
                            if let InitToShim::ExecStarted { pid } = reply {
                                children.execs.push(pid);
                            }
                            let master: Vec<i32> = master.iter().map(|m| m.as_raw_fd()).collect();
                            let _ = ch.send(&reply, &master);
                        }
                        Ok(_) => {}
                        Err(_) => channel = None,
                    }
                }
            }
            signals::Ready::Signal => {
                let batch = signals.wait_and_drain();
                let out = children.on_signals(&batch, |f| signals::reap_all(f), forward);
                if let Some(ch) = &channel {
                    for (pid, code) in out.execs_exited {
                        let _ = ch.send(&InitToShim::ExecExited { pid, code }, &[]);
                    }
                }
                if let Some(code) = out.exited {
                    if let Some(ch) = &channel {
                        let _ = ch.send(&InitToShim::Exited { code }, &[]);
                        if hold_exit {
                            // Until the shim, having read what goes with
                            // our cgroup, closes its end (or dies).
                            while ch.recv().is_ok() {}
                        }
                    }
                    // Our exit ends the PID namespace: the kernel kills
                    // whatever is left in it, as Docker does.
                    std::process::exit(code);
                }
            }
        }
    }
}

fn forward(pid: i32, sig: i32) {
    // SAFETY: kill(2) touches no memory of ours. nix's kill cannot send
    // real-time signals, which are forwarded too. `pid` is the workload's,
    // not yet reaped (see Children::on_signals), so it is still ours.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, sig)
    };
}

/// Fork an exec'd process: with the caller's stdio, or with a new terminal
/// whose master goes back with the reply.
fn exec(process: &protocol::Process, stdio: &[OwnedFd]) -> (InitToShim, Option<OwnedFd>) {
    let prepared = match workload::Prepared::new(process) {
        Ok(p) => p,
        Err(r) => return (InitToShim::Failed(workload::describe(process, r)), None),
    };
    if process.terminal {
        let (master, slave) = match workload::open_pty() {
            Ok(p) => p,
            Err(r) => return (InitToShim::Failed(r.failure()), None),
        };
        match prepared.spawn(workload::Stdio::Terminal(&slave), &[]) {
            Ok(pid) => (InitToShim::ExecStarted { pid }, Some(master)),
            Err(f) => (InitToShim::Failed(f), None),
        }
    } else {
        match prepared.spawn(workload::Stdio::Fds(stdio), &[]) {
            Ok(pid) => (InitToShim::ExecStarted { pid }, None),
            Err(f) => (InitToShim::Failed(f), None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORKLOAD: i32 = 10;

    fn children() -> Children {
        Children {
            workload: WORKLOAD,
            execs: vec![20, 21],
        }
    }

    /// `reap_all` that finds these children ended.
    fn ended(exits: &[(i32, i32)]) -> impl FnMut(&mut dyn FnMut(i32, i32)) + '_ {
        move |f| exits.iter().for_each(|&(pid, code)| f(pid, code))
    }

    #[test]
    fn nothing_is_forwarded_once_the_workload_is_reaped() {
        let mut sent = Vec::new();
        let out = children().on_signals(
            &[libc::SIGCHLD, libc::SIGCONT, libc::SIGWINCH],
            ended(&[(WORKLOAD, 0)]),
            |pid, sig| sent.push((pid, sig)),
        );
        assert_eq!(out.exited, Some(0));
        assert_eq!(sent, vec![], "signals went to a reaped pid");
    }

    #[test]
    fn signals_before_the_reap_still_reach_the_workload() {
        let mut sent = Vec::new();
        let out = children().on_signals(
            &[libc::SIGTERM, libc::SIGCHLD, libc::SIGWINCH],
            ended(&[(WORKLOAD, 143)]),
            |pid, sig| sent.push((pid, sig)),
        );
        assert_eq!(out.exited, Some(143));
        assert_eq!(sent, vec![(WORKLOAD, libc::SIGTERM)]);
    }

    #[test]
    fn a_running_workload_gets_every_signal() {
        let mut sent = Vec::new();
        let mut c = children();
        let out = c.on_signals(
            &[libc::SIGHUP, libc::SIGCHLD, libc::SIGRTMIN() + 3],
            ended(&[(21, 7), (99, 0)]),
            |pid, sig| sent.push((pid, sig)),
        );
        assert_eq!(out.exited, None);
        assert_eq!(out.execs_exited, vec![(21, 7)]);
        assert_eq!(c.execs, vec![20]);
        assert_eq!(
            sent,
            vec![(WORKLOAD, libc::SIGHUP), (WORKLOAD, libc::SIGRTMIN() + 3)]
        );
    }
}
