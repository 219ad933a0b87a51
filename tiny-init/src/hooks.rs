//! startContainer hooks: run inside the container (its namespaces, its
//! root) on `Start`, before the workload, with the state JSON on stdin.
//! A failing one fails `start`. The host side has its own runner
//! (nsbox_host::hooks); this one needs no namespace joining, and tiny-init
//! links nothing it can do without: its binary is copied into a sealed
//! memfd at every container start.

use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use protocol::{Failure, Hook};

fn fail(hook: &Hook, message: String) -> Failure {
    Failure {
        step: format!("startContainer hook {}", hook.path),
        message,
        exit_code: 1,
    }
}

pub fn run_all(_kind: &str, hooks: &[Hook], state: &str) -> Result<(), Failure> {
    hooks.iter().try_for_each(|h| run(h, state))
}

fn run(hook: &Hook, state: &str) -> Result<(), Failure> {
    // SAFETY: memfd_create with a literal name; the fd is ours.
    let fd = unsafe { libc::memfd_create(c"hook-output".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(fail(hook, std::io::Error::last_os_error().to_string()));
    }
    let mut out = std::fs::File::from(unsafe {
        <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
    });
    let clone = |f: &std::fs::File| f.try_clone().map_err(|e| fail(hook, e.to_string()));
    let mut cmd = Command::new(&hook.path);
    if let Some(arg0) = hook.args.first() {
        cmd.arg0(arg0);
    }
    cmd.args(hook.args.iter().skip(1))
        .stdin(Stdio::piped())
        .stdout(Stdio::from(clone(&out)?))
        .stderr(Stdio::from(clone(&out)?));
    if let Some(env) = &hook.env {
        cmd.env_clear();
        for kv in env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
    }
    // std's spawn gives the child an empty signal mask and default SIGPIPE.
    let mut child = cmd.spawn().map_err(|e| fail(hook, e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // SAFETY: fcntl on the pipe we own: a hook that never reads its
        // stdin must not block us.
        unsafe {
            let fd = stdin.as_raw_fd();
            libc::fcntl(
                fd,
                libc::F_SETFL,
                libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK,
            );
        }
        let _ = stdin.write_all(state.as_bytes());
    }
    let deadline = hook
        .timeout
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => return Err(fail(hook, format!("wait: {e}"))),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(
                hook,
                format!("timed out after {} s", hook.timeout.unwrap_or(0)),
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    if status.success() {
        return Ok(());
    }
    let mut text = String::new();
    let _ = out.rewind();
    let _ = (&mut out).take(64 * 1024).read_to_string(&mut text);
    let how = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "failed".into(),
    };
    Err(fail(
        hook,
        match text.trim().lines().last() {
            Some(l) => format!("{how}: {l}"),
            None => how,
        },
    ))
}
