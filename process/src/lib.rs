//! Starting a container's process: resolved and checked first (so that a
//! command missing from the image fails `create`, as with runc), then
//! forked and exec'd with the user, capabilities, rlimits and
//! no_new_privileges of its OCI process. tiny-init starts the workload and
//! exec'd processes with it; `runtime exec` in the caller's-shim mode
//! starts its process with it after joining the container's namespaces.

// unsafe lives in `sys`: the calls nix 0.29 does not wrap.
#![deny(unsafe_code)]

mod held;
pub mod hooks;
pub mod mount_api;
pub mod mountinfo;
#[allow(unsafe_code)]
mod sys;

pub use held::Held;
pub use sys::{close_range, join_session_keyring, pidfd_open, set_affinity};

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;

use caps::{CapSet, Capability, CapsHashSet};
use nix::errno::Errno;
use nix::sys::stat::Mode;
use nix::sys::wait::WaitStatus;
use nix::unistd::{Gid, Uid};
use protocol::report::{self, Report, Step};
use protocol::{Capabilities, Failure, Process};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const DEFAULT_UMASK: u32 = 0o022;

pub struct Prepared {
    process: Process,
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: CString,
    last_cap: u8,
}

fn nul_free(step: Step, s: &str) -> Result<CString, Report> {
    CString::new(s).map_err(|_| Report::new(step, Errno::EINVAL))
}

/// The exit code of a process as a shell reports it: its own, or 128+N
/// when signal N ended it.
pub fn exit_code(status: WaitStatus) -> i32 {
    match status {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
        // Stopped or continued: not an end (waitpid without WUNTRACED
        // does not report these).
        _ => 255,
    }
}

/// [`exit_code`] of a raw wait(2) status.
pub fn exit_code_raw(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

/// A report of the container's process worded with what only the process
/// knows: its command, cwd, uid and gid.
pub fn describe(process: &Process, report: Report) -> Failure {
    let arg0 = process.args.first().map(String::as_str).unwrap_or("");
    let step = match report.step {
        Step::Exec | Step::FindInPath | Step::EmptyCommand => format!("exec {arg0}"),
        Step::Chdir => format!("chdir to {}", process.cwd),
        Step::Gid => format!("set gid {}", process.gid),
        Step::Uid => format!("set uid {}", process.uid),
        other => other.to_string(),
    };
    report.failure_as(step)
}

/// In a child between fork and exec: tell the parent what failed on the
/// report pipe, and leave with the exit code the step calls for.
pub fn report_and_exit(pipe: BorrowedFd, failed: Report) -> ! {
    report::send(pipe, failed.step, failed.errno as i32);
    sys::exit_now(failed.exit_code())
}

impl Prepared {
    /// Resolve the command in the current root (the container's) and
    /// check what the process needs; a report of what is wrong, which
    /// [`describe`] words.
    pub fn new(process: &Process) -> Result<Prepared, Report> {
        let arg0 = process.args.first().cloned().unwrap_or_default();
        let path = resolve(&arg0, &process.env, &process.cwd)?;
        let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40);
        Ok(Prepared {
            path: nul_free(Step::NulInArgs, &path)?,
            argv: process
                .args
                .iter()
                .map(|a| nul_free(Step::NulInArgs, a))
                .collect::<Result<_, _>>()?,
            envp: process
                .env
                .iter()
                .map(|a| nul_free(Step::NulInEnv, a))
                .collect::<Result<_, _>>()?,
            cwd: nul_free(Step::NulInCwd, &process.cwd)?,
            process: process.clone(),
            last_cap,
        })
    }

    /// Fork and exec. Returns the workload's pid once exec has succeeded, or
    /// the step that failed and why. `preserved` become its fds 3 and up
    /// (`--preserve-fds`); nothing else of ours reaches it.
    ///
    /// The caller is tiny-init. Where it is not PID 1 (a pid namespace
    /// joined by path: another container's, or a pod's), its end would not
    /// end the process with it, which would live on under that namespace's
    /// init: the process gets SIGKILL when tiny-init dies instead.
    pub fn spawn(&self, stdio: Stdio, preserved: &[OwnedFd]) -> Result<i32, Failure> {
        let die_with_us = nix::unistd::getpid().as_raw() != 1;
        let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| fail("create exec pipe", e, 1))?;
        match sys::fork() {
            Err(e) => Err(fail("fork workload", e, 1)),
            Ok(nix::unistd::ForkResult::Child) => {
                drop(rd);
                let terminal = place_fds(&stdio, preserved);
                let report = self.child(terminal, preserved.len() as u32, die_with_us);
                report_and_exit(wr.as_fd(), report)
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => {
                drop(wr);
                let failed = match report::receive_report(&rd) {
                    // exec closed the CLOEXEC pipe: the workload runs.
                    Ok(None) => return Ok(child.as_raw()),
                    Ok(Some(r)) => describe(&self.process, r),
                    Err(e) => Failure {
                        step: "start the process".into(),
                        message: e.to_string(),
                        exit_code: 1,
                    },
                };
                let _ = nix::sys::wait::waitpid(child, None);
                Err(failed)
            }
        }
    }

    /// Set this process up as the process and exec it, in the calling
    /// process (already in the container's namespaces). Returns only on
    /// failure.
    ///
    /// With `terminal`, fd 0 is a terminal that becomes the controlling one;
    /// fds 3 to 3+`keep`-1 stay open across exec.
    pub fn exec_in_place(&self, terminal: bool, keep: u32) -> Report {
        self.child(terminal, keep, false)
    }

    /// In the forked child: returns only on failure. Its callers fork
    /// from a single-threaded process (tiny-init, the runtime), so the
    /// child may allocate (the caps crate does, and so do nix's execve and
    /// setgroups): no other thread can hold the allocator's lock.
    fn child(&self, terminal: bool, keep: u32, die_with_parent: bool) -> Report {
        self.child_held(terminal, keep, die_with_parent, None)
    }

    /// [`Prepared::child`], which with `hold` hands its seccomp listener
    /// over and waits for `start` right after loading its filter.
    fn child_held(
        &self,
        terminal: bool,
        keep: u32,
        die_with_parent: bool,
        hold: Option<&held::HoldPoint>,
    ) -> Report {
        let p = &self.process;
        let load_seccomp = |s: &protocol::Seccomp| match hold {
            Some(h) if s.listener => held::load_and_hold(h, s),
            _ => sys::load_seccomp(s).map_err(|e| Report::new(Step::Seccomp, e)),
        };
        restore_default_mask();
        sys::reset_dispositions();
        macro_rules! check {
            ($step:expr, $r:expr) => {
                if let Err(e) = $r {
                    return Report::new($step, e);
                }
            };
        }
        // execCPUAffinity's `initial`: first, so that the set-up below
        // already runs there.
        let cpus = p.cpu_affinity.as_ref();
        if let Some(initial) = cpus.and_then(|c| c.initial.as_deref()) {
            check!(Step::CpuAffinity, sys::set_affinity(initial));
        }
        // A session of its own, as a shell started by a terminal would have.
        check!(Step::Setsid, nix::unistd::setsid());
        if terminal {
            // The new session's controlling terminal, as a shell expects.
            check!(Step::ControllingTerminal, sys::set_controlling_terminal());
        }
        for r in &p.rlimits {
            check!(Step::Rlimit, sys::setrlimit(r));
        }
        if let Some(adj) = p.oom_score_adj {
            check!(Step::OomScoreAdj, write_oom_score_adj(adj));
        }
        if let Some(io) = p.io_priority {
            check!(Step::IoPriority, sys::ioprio_set(io));
        }
        // While CAP_SYS_NICE is still ours, and after the rlimits
        // (RLIMIT_RTPRIO and RLIMIT_NICE bound it without that).
        if let Some(s) = &p.scheduler {
            check!(Step::Scheduler, sys::sched_setattr(s));
        }
        if let Some(persona) = p.personality {
            check!(Step::Personality, sys::personality(persona));
        }
        // Both take effect at exec, and are set while we are still
        // privileged, as runc sets them.
        if let Some(profile) = &p.apparmor_profile {
            check!(Step::AppArmor, sys::set_apparmor_exec(profile));
        }
        if let Some(label) = &p.selinux_label {
            check!(Step::SelinuxLabel, sys::set_selinux_exec(label));
        }
        if let Some(caps) = &p.capabilities {
            check!(Step::Bounding, self.drop_bounding(caps));
        }
        // Without no_new_privs, loading a filter takes CAP_SYS_ADMIN, which
        // the user and capability changes below may drop: load it now, as
        // runc does (the profile must then allow those calls). With it,
        // load it last, so that as few of our own syscalls as possible run
        // under it.
        if !p.no_new_privileges {
            if let Some(s) = &p.seccomp {
                if let Err(r) = load_seccomp(s) {
                    return r;
                }
            }
        }
        // Keep the permitted set across the uid change; the capability
        // sets below then say exactly what the workload has.
        check!(Step::KeepCaps, nix::sys::prctl::set_keepcaps(true));
        let groups: Vec<Gid> = p
            .additional_gids
            .iter()
            .map(|&g| Gid::from_raw(g))
            .collect();
        let r = nix::unistd::setgroups(&groups);
        // A rootless user namespace may deny setgroups: with no groups to
        // set, nothing is lost.
        if !(groups.is_empty() && r == Err(Errno::EPERM)) {
            check!(Step::Groups, r);
        }
        let (uid, gid) = (Uid::from_raw(p.uid), Gid::from_raw(p.gid));
        check!(Step::Gid, nix::unistd::setresgid(gid, gid, gid));
        check!(Step::Uid, nix::unistd::setresuid(uid, uid, uid));
        if let Some(caps) = &p.capabilities {
            check!(Step::Caps, set_capabilities(caps));
            check!(Step::Ambient, set_ambient(caps));
        }
        if p.no_new_privileges {
            check!(Step::NoNewPrivs, nix::sys::prctl::set_no_new_privs());
        }
        // `final`, or without one the container's own CPUs (its init's)
        // rather than `initial`'s, as runc resets it.
        match cpus.map(|c| (c.initial.is_some(), c.last.as_deref())) {
            Some((_, Some(last))) => check!(Step::CpuAffinity, sys::set_affinity(last)),
            Some((true, None)) => check!(Step::CpuAffinity, sys::affinity_of_init()),
            _ => {}
        }
        let umask = p.umask.unwrap_or(DEFAULT_UMASK);
        nix::sys::stat::umask(Mode::from_bits_truncate(umask as libc::mode_t));
        check!(Step::Chdir, nix::unistd::chdir(self.cwd.as_c_str()));
        if die_with_parent {
            // After the uid and capability changes, which clear it; before
            // seccomp, which may forbid prctl. A parent gone already is
            // seen as a new parent.
            let parent = nix::unistd::getppid();
            check!(
                Step::ParentDeathSignal,
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
            );
            if nix::unistd::getppid() != parent {
                std::process::exit(137);
            }
        }
        // No descriptor of ours, nor any the host passed down, beyond 0, 1
        // and 2 (CVE-2024-21626): mark them all close-on-exec.
        sys::close_range_on_exec(3 + keep);
        if p.no_new_privileges {
            if let Some(s) = &p.seccomp {
                if let Err(r) = load_seccomp(s) {
                    return r;
                }
            }
        }
        match nix::unistd::execve(&self.path, &self.argv, &self.envp) {
            Err(e) => Report::new(Step::Exec, e),
        }
    }

    /// Every capability the bounding set must lose, up to the kernel's last
    /// one: a kernel newer than the caps crate has capabilities the crate
    /// cannot name, and they must go too.
    fn drop_bounding(&self, caps: &Capabilities) -> Result<(), Errno> {
        for cap in 0..=self.last_cap {
            if !caps.bounding.contains(&cap) {
                match sys::drop_bounding(cap) {
                    // Beyond what this kernel has: nothing to drop.
                    Ok(()) | Err(Errno::EINVAL) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

/// The child's signal state before exec: nothing blocked, as a shell expects.
fn restore_default_mask() {
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
}

/// Where the process's stdin, stdout and stderr come from.
#[derive(Clone, Copy)]
pub enum Stdio<'a> {
    /// Ours: the workload gets the container's stdio that tiny-init holds.
    Inherit,
    /// These three (an exec'd process gets its caller's).
    Fds(&'a [OwnedFd]),
    /// A terminal: the pty's other end, as all three and the controlling tty.
    Terminal(&'a OwnedFd),
}

/// In the forked child: stdio to 0-2, `preserved` to 3 and up. True when
/// stdio is a terminal. Nothing to do if a dup fails: the process then
/// finds the descriptor closed, as it would if the caller had passed none.
fn place_fds(stdio: &Stdio, preserved: &[OwnedFd]) -> bool {
    use nix::fcntl::{fcntl, FcntlArg};
    // Out of the way first: a source may sit on a target number.
    let high: Vec<Result<i32, Errno>> = preserved
        .iter()
        .map(|f| fcntl(f.as_raw_fd(), FcntlArg::F_DUPFD_CLOEXEC(1000)))
        .collect();
    let terminal = match stdio {
        Stdio::Inherit => false,
        Stdio::Fds(fds) => {
            for (target, fd) in fds.iter().take(3).enumerate() {
                let _ = nix::unistd::dup2(fd.as_raw_fd(), target as i32);
            }
            false
        }
        Stdio::Terminal(pty) => {
            for target in 0..3 {
                let _ = nix::unistd::dup2(pty.as_raw_fd(), target);
            }
            true
        }
    };
    for (i, fd) in high.into_iter().enumerate() {
        // dup2 leaves the copy without close-on-exec: it stays open.
        if let Ok(fd) = fd {
            let _ = nix::unistd::dup2(fd, 3 + i as i32);
        }
    }
    terminal
}

/// A new pseudo-terminal of the devpts mounted at /dev/pts (the
/// container's, once we are inside it): (master, slave).
pub fn open_pty() -> Result<(OwnedFd, OwnedFd), Report> {
    use nix::fcntl::OFlag;
    let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let master = nix::pty::posix_openpt(flags).map_err(|e| Report::new(Step::OpenPtmx, e))?;
    nix::pty::unlockpt(&master).map_err(|e| Report::new(Step::UnlockPty, e))?;
    sys::open_pty_peer(master, flags).map_err(|e| Report::new(Step::OpenPtySlave, e))
}

fn write_oom_score_adj(adj: i32) -> Result<(), Errno> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/oom_score_adj")
        .and_then(|mut f| f.write_all(adj.to_string().as_bytes()))
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

/// The effective, permitted and inheritable sets, one set at a time
/// (effective first, while the permitted set still holds it; permitted
/// last). The kernel refuses the same requests as one capset would: an
/// effective capability that is not permitted, a permitted one we lack.
fn set_capabilities(caps: &Capabilities) -> Result<(), Errno> {
    // An ambient capability must be inheritable too, or the kernel refuses
    // to raise it; runc's own `spec` lists ambient ones alone, and runc and
    // crun run it: so do we, making the permitted ones inheritable.
    let mut inheritable = caps.inheritable.clone();
    inheritable.extend(ambient(caps));
    for (set, list) in [
        (CapSet::Effective, &caps.effective),
        (CapSet::Inheritable, &inheritable),
        (CapSet::Permitted, &caps.permitted),
    ] {
        caps::set(None, set, &cap_set(list)?).map_err(caps_errno)?;
    }
    Ok(())
}

fn set_ambient(caps: &Capabilities) -> Result<(), Errno> {
    caps::clear(None, CapSet::Ambient).map_err(caps_errno)?;
    for cap in ambient(caps) {
        caps::raise(None, CapSet::Ambient, capability(cap)?).map_err(caps_errno)?;
    }
    Ok(())
}

/// The ambient capabilities that can be raised: the permitted ones.
fn ambient(caps: &Capabilities) -> impl Iterator<Item = u8> + '_ {
    caps.ambient
        .iter()
        .copied()
        .filter(|c| caps.permitted.contains(c))
}

fn capability(number: u8) -> Result<Capability, Errno> {
    // The runtime names capabilities with the same crate, so a number it
    // sends is one the crate knows.
    caps::all()
        .into_iter()
        .find(|c| c.index() == number)
        .ok_or(Errno::EINVAL)
}

fn cap_set(numbers: &[u8]) -> Result<CapsHashSet, Errno> {
    numbers.iter().map(|&n| capability(n)).collect()
}

/// The caps crate's errors are text only; the errno of the capget,
/// capset or prctl that failed is still the thread's last one.
fn caps_errno(_: caps::errors::CapsError) -> Errno {
    Errno::last()
}

fn fail(step: &str, e: Errno, exit_code: i32) -> Failure {
    Failure {
        step: step.into(),
        message: e.desc().into(),
        exit_code,
    }
}

/// Find the command as execvp would, with the container's PATH, and check
/// that it can be executed: 127 when it is missing, 126 when it cannot run.
fn resolve(arg0: &str, env: &[String], cwd: &str) -> Result<String, Report> {
    if arg0.is_empty() {
        return Err(Report::new(Step::EmptyCommand, Errno::ENOENT));
    }
    let check = |path: &str| -> Result<(), Report> {
        let denied = |errno| Err(Report::new(Step::Exec, errno));
        match std::fs::metadata(path) {
            Err(e) => denied(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))),
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(()),
            Ok(m) if m.is_dir() => denied(Errno::EISDIR),
            Ok(_) => denied(Errno::EACCES),
        }
    };
    if arg0.contains('/') {
        let path = if arg0.starts_with('/') {
            arg0.to_string()
        } else {
            format!("{}/{}", cwd.trim_end_matches('/'), arg0)
        };
        check(&path)?;
        return Ok(path);
    }
    let path_var = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    // A directory that holds it but will not run it is the answer only if
    // no later one runs it.
    let mut denied = None;
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = format!("{}/{}", dir.trim_end_matches('/'), arg0);
        match check(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(r) if r.exit_code() == 126 => denied = denied.or(Some(r)),
            Err(_) => {}
        }
    }
    Err(denied.unwrap_or(Report::new(Step::FindInPath, Errno::ENOENT)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;
    use nix::unistd::Pid;

    fn process(args: &[&str], cwd: &str) -> Process {
        Process {
            args: args.iter().map(|a| a.to_string()).collect(),
            env: vec!["PATH=/usr/bin:/bin".into()],
            cwd: cwd.into(),
            ..Default::default()
        }
    }

    fn refused(args: &[&str]) -> Failure {
        let p = process(args, "/");
        match Prepared::new(&p) {
            Ok(_) => panic!("{args:?} was accepted"),
            Err(r) => describe(&p, r),
        }
    }

    #[test]
    fn exit_codes_are_the_shells() {
        let pid = Pid::from_raw(1);
        assert_eq!(exit_code(WaitStatus::Exited(pid, 3)), 3);
        assert_eq!(
            exit_code(WaitStatus::Signaled(pid, Signal::SIGTERM, false)),
            143
        );
        assert_eq!(exit_code_raw(3 << 8), 3);
        assert_eq!(exit_code_raw(0), 0);
        assert_eq!(exit_code_raw(libc::SIGKILL), 137);
        // A core dump does not change the code.
        assert_eq!(exit_code_raw(libc::SIGSEGV | 0x80), 128 + libc::SIGSEGV);
    }

    #[test]
    fn a_missing_command_is_127_and_a_bad_one_126() {
        let f = refused(&["nsbox-no-such-command"]);
        assert_eq!(f.exit_code, 127);
        assert_eq!(
            f.to_string(),
            "exec nsbox-no-such-command: executable file not found in $PATH"
        );
        let f = refused(&["/nsbox/no/such"]);
        assert_eq!(
            (f.exit_code, f.to_string().as_str()),
            (127, "exec /nsbox/no/such: No such file or directory")
        );
        let f = refused(&["/etc/passwd"]);
        assert_eq!(
            (f.exit_code, f.to_string().as_str()),
            (126, "exec /etc/passwd: Permission denied")
        );
        let f = refused(&["/"]);
        assert_eq!(
            (f.exit_code, f.to_string().as_str()),
            (126, "exec /: Is a directory")
        );
        assert_eq!(refused(&[]).exit_code, 127);
    }

    #[test]
    fn a_nul_byte_is_refused_by_name() {
        let f = refused(&["sh", "a\0b"]);
        assert_eq!(
            (f.exit_code, f.to_string().as_str()),
            (1, "args: contains a NUL byte")
        );
    }

    #[test]
    fn a_found_command_resolves_through_path() {
        let p = process(&["sh"], "/");
        let prepared = Prepared::new(&p).unwrap_or_else(|r| panic!("{}", describe(&p, r)));
        assert!(prepared.path.to_str().unwrap().ends_with("/sh"));
    }
}
