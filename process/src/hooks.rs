//! Running OCI hooks: prestart and createRuntime in the host's namespaces,
//! createContainer in the container's (joined before exec), startContainer
//! inside the container (run by tiny-init, which is already there),
//! poststart and poststop. Each gets the state JSON on stdin, its
//! own argv and env, and its timeout; its output is kept in a memfd and
//! shown when it fails, as runc shows it.

use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use protocol::Hook;

/// Run `hook`; `join` are namespace fds to setns into first (the path is
/// then resolved in the joined mount namespace). Err says why it failed.
pub fn run(kind: &str, hook: &Hook, state: &str, join: &[OwnedFd]) -> Result<(), String> {
    let what = format!("{kind} hook {}", hook.path);
    let out =
        nix::sys::memfd::memfd_create(c"nsbox-hook", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC)
            .map_err(|e| format!("{what}: memfd_create: {}", e.desc()))?;
    let mut out = std::fs::File::from(out);
    let mut cmd = Command::new(&hook.path);
    if let Some(arg0) = hook.args.first() {
        cmd.arg0(arg0);
    }
    cmd.args(hook.args.iter().skip(1));
    if let Some(env) = &hook.env {
        cmd.env_clear();
        for kv in env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
    }
    let err_file = out.try_clone().map_err(|e| format!("{what}: {e}"))?;
    let out_file = out.try_clone().map_err(|e| format!("{what}: {e}"))?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::from(out_file))
        .stderr(Stdio::from(err_file));
    if !join.is_empty() {
        let fds: Vec<i32> = join.iter().map(|f| f.as_raw_fd()).collect();
        // SAFETY: setns and chdir are async-signal-safe syscalls.
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &fds {
                    if libc::setns(fd, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if libc::chdir(c"/".as_ptr()) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        };
    }
    let mut child = cmd.spawn().map_err(|e| format!("{what}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook need not read its stdin: never block on it.
        // SAFETY: fcntl on the pipe we own.
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
    // Woken by the hook's end (its pidfd), not by polling its status.
    // SAFETY: pidfd_open of our own child; the fd is ours.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) } as i32;
    // Closed on every way out.
    let _owned =
        (pidfd >= 0).then(|| unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(pidfd) });
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => return Err(format!("{what}: wait: {e}")),
        }
        let left_ms = deadline.map_or(-1, |d| {
            d.saturating_duration_since(Instant::now())
                .as_millis()
                .min(i32::MAX as u128) as i32
        });
        if pidfd >= 0 && left_ms != 0 {
            let mut p = libc::pollfd {
                fd: pidfd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll on one pollfd we own.
            unsafe { libc::poll(&mut p, 1, left_ms) };
        } else if left_ms != 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{what}: timed out after {} s",
                hook.timeout.unwrap_or(0)
            ));
        }
    };
    let mut text = String::new();
    let _ = out.rewind();
    let _ = (&mut out).take(64 * 1024).read_to_string(&mut text);
    let text = text.trim();
    if status.success() {
        if !text.is_empty() {
            log::debug!("{what}: {text}");
        }
        return Ok(());
    }
    let how = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "failed".into(),
    };
    let last = text.lines().last().unwrap_or("");
    Err(if last.is_empty() {
        format!("{what}: {how}")
    } else {
        format!("{what}: {how}: {last}")
    })
}

/// Run every hook of a list in order; the first failure stops it.
pub fn run_all(kind: &str, hooks: &[Hook], state: &str, join: &[OwnedFd]) -> Result<(), String> {
    hooks.iter().try_for_each(|h| run(kind, h, state, join))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Option<u32>) -> Hook {
        Hook {
            path: "/bin/sh".into(),
            args: vec!["sh".into(), "-c".into(), script.into()],
            env: Some(vec!["HOOKVAR=x".into()]),
            timeout,
        }
    }

    #[test]
    fn state_on_stdin_env_exit_and_timeout() {
        let dir = std::env::temp_dir().join(format!("nsbox-hook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("out");
        let script = format!(
            "cat > {}; echo \"$HOOKVAR ${{HOME-none}}\" >> {}",
            f.display(),
            f.display()
        );
        run("test", &sh(&script, Some(5)), "{\"id\":\"c\"}", &[]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            "{\"id\":\"c\"}x none\n",
            "state on stdin, and exactly the hook's env"
        );
        let e = run("test", &sh("echo bad thing >&2; exit 3", None), "", &[]).unwrap_err();
        assert!(e.contains("exited with 3: bad thing"), "{e}");
        let e = run("test", &sh("sleep 5", Some(1)), "", &[]).unwrap_err();
        assert!(e.contains("timed out"), "{e}");
        // Big state, a hook that never reads it: no hang.
        run("test", &sh("exit 0", Some(5)), &"x".repeat(1 << 20), &[]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
