//! `run`: create and start in one go; in the foreground, pass signals on
//! (or relay the terminal) until the workload ends, then remove the
//! container and end with the workload's exit code.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use nsbox_host::proc::{pidfd_open, pidfd_send_signal};
use nsbox_host::teardown::{HostSide, TeardownError};
use nsbox_host::testhooks::runtime_start_timeout;
use protocol::error_chain;

use crate::create::{create, CreateOpts, Created};
use crate::options::GlobalOptions;
use crate::shim_client::channel_error;
use crate::signals;
use crate::{hooks, tty};

pub fn run(g: &GlobalOptions, id: &str, o: &CreateOpts, detach: bool) -> Result<i32> {
    // Blocked before the container exists, so that none is lost in between.
    let set = if detach {
        None
    } else {
        Some(signals::block(&[])?)
    };
    let mut c = create(
        g,
        id,
        &CreateOpts {
            start: true,
            ..o.clone()
        },
    )?;
    c.channel.set_timeout(Some(runtime_start_timeout()))?;
    let started = c.channel.wait_for_started().map_err(channel_error);
    if let Err(e) = started {
        remove(&c);
        return Err(e);
    }
    // The state is read (the shim has just recorded it running) only for
    // hooks that need it: not on every run's way.
    if c.poststart {
        if let Ok(st) = c.dir.load() {
            hooks::poststart(&st);
        }
    }
    let Some(set) = set else {
        return Ok(0);
    };
    let waited = match c.pty.take() {
        Some(master) => {
            let pid = c.init.pid;
            tty::relay(
                &master,
                Some(&master),
                tty::Ending::Exit {
                    channel: &mut c.channel,
                    pid,
                },
            )
            .map(|o| match o {
                tty::Outcome::Exited(code) => code,
                _ => 255,
            })
        }
        None => signals::forward_until_exited(&mut c.channel, &set, c.init.pid),
    };
    let code = waited.unwrap_or_else(|e| {
        // The shim is gone without a word (or its word was lost to the
        // ECONNRESET of a socket closed with our `Wait` unread): take the
        // truth from the state it left, after the container is gone too.
        if let Some(fd) = c.init.pidfd() {
            let _ = pidfd_send_signal(&fd, libc::SIGKILL);
            nsbox_host::proc::wait_pidfd(&fd, Duration::from_secs(10));
        }
        match c.dir.load().ok().and_then(|s| s.exit_code) {
            Some(code) => {
                log::debug!("{id}: wait for the exit: {e:#}; state.json has {code}");
                code
            }
            None => {
                log::warn!("{id}: wait for the exit: {e:#}");
                255
            }
        }
    });
    remove(&c);
    Ok(code)
}

/// After a run (see nsbox_host::teardown): the cgroup (a foreground run's
/// own to remove, see CreateRequest::caller_removes_cgroup; removing it
/// again is harmless), then the state directory, while the shim ends; its
/// exit status says whether anything else is left to us.
fn remove(c: &Created) {
    if let Some(fd) = c.init.pidfd() {
        let _ = pidfd_send_signal(&fd, libc::SIGKILL);
        nsbox_host::proc::wait_pidfd(&fd, Duration::from_secs(10));
    }
    // state.json only for poststop hooks, which are given it: the cgroup
    // is the one we recorded at create, and reading it again is on every
    // run's way out.
    let st = if c.poststop { c.dir.load().ok() } else { None };
    let host = HostSide {
        id: c.id.clone(),
        network_root: c.dir.path.parent().map(Path::to_path_buf),
        cgroup: c.cgroup.clone(),
        stop_scope: Some(crate::systemd::stop_scope),
    };
    let warn = |e: TeardownError| log::warn!("{}: {}", c.id, error_chain(&e));
    // Before the state directory, which names it for `delete --force`
    // should we die in between.
    let cgroup_gone = host.remove_cgroup().map_err(warn).is_ok();
    let removed = c.dir.remove();
    // A shim that exits 0 has removed the cgroup and released the network
    // itself; only after one that could not (or was killed) is it ours.
    let shim_cleaned = match wait_child(c.shim, Duration::from_secs(5)) {
        Some(code) => code == 0,
        None => {
            let _ = nix::sys::signal::kill(c.shim, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(c.shim, None);
            false
        }
    };
    if !shim_cleaned {
        let _ = host.release_network().map_err(warn);
        if !cgroup_gone {
            let _ = host.remove_cgroup().map_err(warn);
        }
    }
    // A shim killed while it wrote state.json may have left a file behind
    // after our first try.
    if removed.is_err() || !shim_cleaned {
        if let Err(e) = c.dir.remove() {
            log::warn!("remove {}: {e}", c.dir.path.display());
        }
    }
    if let Some(st) = &st {
        hooks::poststop(st);
    }
}

/// Wait for our child at most `timeout`: its exit code once reaped (128+N
/// for a signal), None if it is still running.
fn wait_child(pid: Pid, timeout: Duration) -> Option<i32> {
    let fd = pidfd_open(pid.as_raw()).ok()?;
    if !nsbox_host::proc::wait_pidfd(&fd, timeout) {
        return None;
    }
    Some(match nix::sys::wait::waitpid(pid, None) {
        Ok(status) => nsbox_process::exit_code(status),
        Err(_) => -1,
    })
}
