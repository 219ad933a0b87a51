//! exec: a process beside the workload, forked by tiny-init with the stdio
//! the runtime sent; its exit goes to the runtime that waits for it.

use std::os::fd::{AsRawFd, OwnedFd};

use protocol::{Failure, InitToShim, Process, ShimToInit, ShimToRuntime};

use crate::failure;
use crate::server::Container;

impl Container {
    /// Ask tiny-init to run `process`: (its pid in the container, its pid
    /// on the host, the terminal's master when it has one).
    pub fn exec(
        &mut self,
        process: Box<Process>,
        stdio: Vec<OwnedFd>,
    ) -> Result<(i32, i32, Option<OwnedFd>), Failure> {
        self.state
            .recorded_status
            .can_exec()
            .map_err(|e| failure("exec", e.to_string()))?;
        if stdio.len() != 3 {
            return Err(failure(
                "exec",
                format!("expected 3 stdio descriptors, got {}", stdio.len()),
            ));
        }
        let Some(ch) = &self.init_channel else {
            return Err(failure("exec", "tiny-init has gone".into()));
        };
        let fds: Vec<i32> = stdio.iter().map(|f| f.as_raw_fd()).collect();
        ch.send(&ShimToInit::Exec(process), &fds)
            .map_err(|e| failure("exec", format!("tell tiny-init: {e}")))?;
        drop(stdio);
        // tiny-init's answer; what it says unasked meanwhile (an exec's
        // end, the workload's) is handled as the server loop would.
        loop {
            let Some(ch) = &self.init_channel else {
                return Err(failure("exec", "tiny-init has gone".into()));
            };
            match ch.recv() {
                Ok((InitToShim::ExecStarted { pid }, pty)) => {
                    // A process that has already ended (and been reaped by
                    // tiny-init) has no host pid any more: 0, and its exit
                    // still comes.
                    let host = self.host_pid_of(pid).unwrap_or(0);
                    return Ok((pid, host, pty.into_iter().next()));
                }
                Ok((InitToShim::Failed(f), _)) => return Err(f),
                Ok((other, _)) => self.init_event(other),
                Err(e) => {
                    self.init_channel = None;
                    return Err(failure("exec", format!("tiny-init: {e}")));
                }
            }
        }
    }

    /// An exec'd process ended: its waiters hear the code.
    pub fn exec_exited(&mut self, pid: i32, code: i32) {
        let (done, rest) = std::mem::take(&mut self.exec_waiters)
            .into_iter()
            .partition(|(p, _)| *p == pid);
        self.exec_waiters = rest;
        for (_, w) in done {
            let _ = w.send(&ShimToRuntime::Exited { code }, &[]);
        }
    }

    /// The host pid of tiny-init's child with pid `pid` in the container.
    fn host_pid_of(&self, pid: i32) -> Option<i32> {
        let init = self.init.pid;
        let children =
            std::fs::read_to_string(format!("/proc/{init}/task/{init}/children")).ok()?;
        children
            .split_whitespace()
            .filter_map(|c| c.parse::<i32>().ok())
            .find(|host| {
                std::fs::read_to_string(format!("/proc/{host}/status"))
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find(|l| l.starts_with("NSpid:"))
                            .and_then(|l| l.split_whitespace().last())
                            .and_then(|p| p.parse::<i32>().ok())
                    })
                    == Some(pid)
            })
    }
}
