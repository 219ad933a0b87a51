//! The container's stop, in the order the crate's doc ("The order of a
//! stop") promises: the exit code on disk first, then the answers, then
//! the host side's release, then our own exit.

use nsbox_host::proc::wait_pidfd;
use nsbox_host::state::{now_rfc3339, Status};
use nsbox_host::teardown::CGROUP_TIMEOUT;
use protocol::{Failure, ShimToRuntime};

use crate::server::{Client, Container};
use crate::spawn;

/// The shim's exit status when the container stopped but some of its host
/// side (cgroup, network) could not be removed: the runtime retries then.
const EXIT_LEFT_SOMETHING: i32 = 3;

impl Container {
    /// tiny-init has ended (its pidfd says so, or it reported the exit):
    /// the container's last output into its log, then the exit code into
    /// state.json, durably. Nothing is answered before this returns.
    pub fn record_exit(&mut self) {
        // Woken by the pidfd: drain a last `Exited` that may sit unread
        // beside it (tiny-init is gone, so the channel ends at once). Woken
        // by `Exited`: not a read more, since the channel's end comes only
        // once tiny-init's exit has torn down the container's namespaces
        // (its last fput runs late in exit).
        while self.reported_exit.is_none() && self.init_channel.is_some() {
            self.read_init();
        }
        // While tiny-init, holding its exit for a systemd scope, keeps the
        // cgroup (and its memory.events) from going.
        self.read_oom();
        self.init_channel = None;
        // Our own child we reap; the caller's we cannot, and tiny-init told
        // us its code unless it was killed before it could: by SIGKILL then.
        let code = spawn::reap(&self.init.pidfd, false)
            .or(self.reported_exit)
            .unwrap_or(128 + libc::SIGKILL);
        // `logs -f` ends once it sees the container stopped, and must have
        // read everything by then.
        self.output.drain(self.terminal.as_mut());
        self.state.recorded_status = Status::Stopped;
        self.state.exit_code = Some(code);
        self.state.finished = Some(now_rfc3339());
        self.read_oom();
        let watched = self.oom.take().map(|w| w.kills);
        let read = self
            .state
            .cgroup
            .as_ref()
            .and_then(nsbox_host::cgroups::oom_kills);
        if let Some(kills) = read.max(watched) {
            if kills > 0 {
                self.state.oom_kills = kills;
                log::warn!(
                    "{}: the OOM killer killed {kills} process(es) of the container; it exited with {code}",
                    self.state.id
                );
            }
        }
        if let Err(e) = self.dir.save_durable(&self.state) {
            log::error!("{}: record exit status {code}: {e}", self.state.id);
        }
    }

    /// After [`Container::record_exit`]: close the socket and the attached
    /// terminals, release the network, tell every waiter, remove the
    /// cgroup once tiny-init has left it, and exit. Our exit status says
    /// whether everything of the host side went: a `runtime run` that sees
    /// 0 has nothing left to clean after us.
    pub fn finish(mut self, waiters: Vec<Client>) -> ! {
        // Connections not yet accepted are reset, new ones refused: for
        // all of them the code is on disk already.
        self.listener = None;
        let _ = std::fs::remove_file(self.dir.socket());
        if let Some(t) = &mut self.terminal {
            t.detach_all();
        }
        let id = self.state.id.clone();
        let code = self.state.exit_code.unwrap_or(128 + libc::SIGKILL);
        let mut clean = true;
        if self.network.take().is_some() {
            if let Err(e) = self.host.release_network() {
                log::error!("{}", Failure::from_error(&id, &e));
                clean = false;
            }
            self.state.network = None;
            if let Err(e) = self.dir.save(&self.state) {
                log::error!("{id}: record the network released: {e}");
            }
        }
        let mut creator_told = false;
        for w in waiters {
            // A waiter's unread `Wait` makes the kernel report ECONNRESET
            // ahead of this `Exited` once we exit; the channel reads on past
            // it (protocol::Channel::recv), so nothing is drained here.
            let told = w.channel.send(&ShimToRuntime::Exited { code }, &[]);
            creator_told |= w.creator && told.is_ok();
        }
        // Exec'd processes still running died with the PID namespace, by
        // SIGKILL.
        for (_, w) in std::mem::take(&mut self.exec_waiters) {
            let _ = w.send(
                &ShimToRuntime::Exited {
                    code: 128 + libc::SIGKILL,
                },
                &[],
            );
        }
        // Whatever is left in the cgroup (a container without a PID
        // namespace of its own) goes with it, once tiny-init has left it;
        // by the foreground `run` that created us if it has our answer.
        // After the answers: a `run` removes the state directory meanwhile
        // (nothing here touches it any more), and waits for our exit status.
        if !wait_pidfd(&self.init.pidfd, CGROUP_TIMEOUT) {
            log::warn!("{id}: tiny-init is still exiting");
        }
        let _ = spawn::reap(&self.init.pidfd, false);
        if self.caller_removes_cgroup && creator_told {
            log::debug!("{id}: the cgroup is left to `run`");
        } else if let Err(e) = self.host.remove_cgroup() {
            log::error!("{}", Failure::from_error(&id, &e));
            clean = false;
        }
        log::debug!("{id}: stopped with {code}");
        std::process::exit(if clean { 0 } else { EXIT_LEFT_SOMETHING })
    }
}
