//! Running OCI hooks: prestart and createRuntime in the host's namespaces,
//! createContainer in the container's (joined before exec), startContainer
//! inside the container (run by tiny-init, which is already there),
//! poststart and poststop. Each gets the state JSON on stdin, its
//! own argv and env, and its timeout; its output is kept in a memfd and
//! shown when it fails, as runc shows it.
//!
//! The state is handed over in a memfd too, not a pipe: runc writes it
//! into a pipe from a goroutine of its own, and we have no thread to
//! spare for that. Written into a pipe by us, a state over the pipe's
//! 64 KiB would be cut short (or block us on a hook that never reads it),
//! and a hook that exits before the write raises SIGPIPE. tiny-init
//! blocks every signal to read them from its signalfd, so that SIGPIPE
//! was taken for one sent to the container and passed on to the
//! workload, which died of it.

use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use protocol::Hook;

/// Why a hook failed; each names the hook ("prestart hook /usr/bin/x").
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{hook}: keep its output")]
    Output {
        hook: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{hook}")]
    Spawn {
        hook: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{hook}: wait")]
    Wait {
        hook: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{hook}: timed out after {seconds} s")]
    Timeout { hook: String, seconds: u32 },
    /// It ended unsuccessfully: how, and the last line it printed.
    #[error("{hook}: {how}{}", last_line.as_ref().map(|l| format!(": {l}")).unwrap_or_default())]
    Failed {
        hook: String,
        how: String,
        last_line: Option<String>,
    },
}

/// Run `hook`; `join` are namespace fds to setns into first (the path is
/// then resolved in the joined mount namespace).
pub fn run(kind: &str, hook: &Hook, state: &str, join: &[OwnedFd]) -> Result<(), HookError> {
    let what = format!("{kind} hook {}", hook.path);
    let output_error = |source| HookError::Output {
        hook: what.clone(),
        source,
    };
    let out =
        nix::sys::memfd::memfd_create(c"nsbox-hook", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC)
            .map_err(|e| output_error(e.into()))?;
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
    let err_file = out.try_clone().map_err(output_error)?;
    let out_file = out.try_clone().map_err(output_error)?;
    let state_file = state_file(state).map_err(output_error)?;
    cmd.stdin(Stdio::from(state_file))
        .stdout(Stdio::from(out_file))
        .stderr(Stdio::from(err_file));
    if !join.is_empty() {
        crate::sys::join_before_exec(&mut cmd, join.iter().map(|f| f.as_raw_fd()).collect());
    }
    let mut child = cmd.spawn().map_err(|source| HookError::Spawn {
        hook: what.clone(),
        source,
    })?;
    let deadline = hook
        .timeout
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    // Woken by the hook's end (its pidfd), not by polling its status.
    let pidfd = crate::sys::pidfd_open(child.id() as libc::pid_t).ok();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(source) => {
                return Err(HookError::Wait {
                    hook: what.clone(),
                    source,
                })
            }
        }
        let left_ms = deadline.map_or(-1, |d| {
            d.saturating_duration_since(Instant::now())
                .as_millis()
                .min(i32::MAX as u128) as i32
        });
        match &pidfd {
            Some(fd) if left_ms != 0 => {
                use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                let timeout = PollTimeout::try_from(left_ms).unwrap_or(PollTimeout::NONE);
                let _ = poll(&mut fds, timeout);
            }
            None if left_ms != 0 => std::thread::sleep(Duration::from_millis(2)),
            _ => {}
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HookError::Timeout {
                hook: what,
                seconds: hook.timeout.unwrap_or(0),
            });
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
    Err(HookError::Failed {
        hook: what,
        how,
        last_line: (!last.is_empty()).then(|| last.to_string()),
    })
}

/// The state, whole, in a memfd at offset 0: the hook reads it as it
/// would read a pipe, to its end, at its own pace.
fn state_file(state: &str) -> std::io::Result<std::fs::File> {
    let fd = nix::sys::memfd::memfd_create(
        c"nsbox-state",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )?;
    let mut f = std::fs::File::from(fd);
    f.write_all(state.as_bytes())?;
    f.rewind()?;
    Ok(f)
}

/// Run every hook of a list in order; the first failure stops it.
pub fn run_all(kind: &str, hooks: &[Hook], state: &str, join: &[OwnedFd]) -> Result<(), HookError> {
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
        assert_eq!(e.to_string(), "test hook /bin/sh: exited with 3: bad thing");
        let e = run("test", &sh("sleep 5", Some(1)), "", &[]).unwrap_err();
        assert_eq!(e.to_string(), "test hook /bin/sh: timed out after 1 s");
        let missing = Hook {
            path: "/nsbox/no/such/hook".into(),
            args: vec![],
            env: None,
            timeout: None,
        };
        let e = run("test", &missing, "", &[]).unwrap_err();
        let source = std::error::Error::source(&e).map(|s| s.to_string());
        assert_eq!(e.to_string(), "test hook /nsbox/no/such/hook");
        assert!(source.unwrap().starts_with("No such file"), "{e:?}");
        // Big state, a hook that never reads it: no hang.
        let big = format!("{{\"id\":\"{}\"}}", "x".repeat(1 << 20));
        run("test", &sh("exit 0", Some(5)), &big, &[]).unwrap();
        // One that reads it gets it whole, past a pipe's 64 KiB.
        run(
            "test",
            &sh(&format!("cat > {}", f.display()), Some(5)),
            &big,
            &[],
        )
        .unwrap();
        assert!(
            std::fs::read_to_string(&f).unwrap() == big,
            "the state cut short"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
