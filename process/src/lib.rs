//! Starting a container's process: resolved and checked first (so that a
//! command missing from the image fails `create`, as with runc), then
//! forked and exec'd with the user, capabilities, rlimits and
//! no_new_privileges of its OCI process. tiny-init starts the workload and
//! exec'd processes with it; `runtime exec` in the caller's-shim mode
//! starts its process with it after joining the container's namespaces.

pub mod hooks;

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;

use std::os::fd::{AsFd, BorrowedFd};

use nix::errno::Errno;
use nix::sys::wait::WaitStatus;
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
    // SAFETY: _exit is async-signal-safe and skips the atexit handlers and
    // destructors, which belong to the parent's state.
    unsafe { libc::_exit(failed.exit_code()) }
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
    pub fn spawn(&self, stdio: Stdio, preserved: &[OwnedFd]) -> Result<i32, Failure> {
        let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| fail("create exec pipe", e, 1))?;
        // SAFETY: tiny-init is single-threaded, so the child may run any code.
        match unsafe { nix::unistd::fork() } {
            Err(e) => Err(fail("fork workload", e, 1)),
            Ok(nix::unistd::ForkResult::Child) => {
                drop(rd);
                let terminal = place_fds(&stdio, preserved);
                report_and_exit(wr.as_fd(), self.child(terminal, preserved.len() as u32))
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
        self.child(terminal, keep)
    }

    /// In the forked child: returns only on failure.
    fn child(&self, terminal: bool, keep: u32) -> Report {
        let p = &self.process;
        restore_default_mask();
        reset_dispositions();
        macro_rules! check {
            ($step:expr, $r:expr) => {
                if let Err(e) = $r {
                    return Report::new($step, e);
                }
            };
        }
        // A session of its own, as a shell started by a terminal would have.
        check!(Step::Setsid, nix::unistd::setsid());
        if terminal {
            // The new session's controlling terminal, as a shell expects.
            // SAFETY: an ioctl on our own stdin.
            let r = unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
            check!(Step::ControllingTerminal, Errno::result(r));
        }
        for r in &p.rlimits {
            let lim = libc::rlimit {
                rlim_cur: r.soft,
                rlim_max: r.hard,
            };
            // SAFETY: setrlimit reads `lim`.
            check!(
                Step::Rlimit,
                Errno::result(unsafe { libc::setrlimit(r.resource as _, &lim) })
            );
        }
        if let Some(adj) = p.oom_score_adj {
            check!(Step::OomScoreAdj, write_oom_score_adj(adj));
        }
        if let Some(io) = p.io_priority {
            const IOPRIO_WHO_PROCESS: libc::c_int = 1;
            let prio = ((io.class as libc::c_int) << 13) | io.level as libc::c_int;
            // SAFETY: ioprio_set with integer arguments.
            let r = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, prio) };
            check!(Step::IoPriority, Errno::result(r));
        }
        if let Some(caps) = &p.capabilities {
            for cap in 0..=self.last_cap {
                if !caps.bounding.contains(&cap) {
                    // SAFETY: prctl with integer arguments.
                    let r = unsafe {
                        libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0)
                    };
                    if r < 0 && Errno::last() != Errno::EINVAL {
                        return Report::new(Step::Bounding, Errno::last());
                    }
                }
            }
        }
        // Without no_new_privs, loading a filter takes CAP_SYS_ADMIN, which
        // the user and capability changes below may drop: load it now, as
        // runc does (the profile must then allow those calls). With it,
        // load it last, so that as few of our own syscalls as possible run
        // under it.
        if !p.no_new_privileges {
            if let Some(s) = &p.seccomp {
                check!(Step::Seccomp, load_seccomp(s));
            }
        }
        // Keep the permitted set across the uid change; capset below then
        // chooses exactly what the workload has.
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
        let groups: Vec<libc::gid_t> = p.additional_gids.clone();
        // SAFETY: setgroups reads `groups`.
        let r = Errno::result(unsafe { libc::setgroups(groups.len(), groups.as_ptr()) });
        // A rootless user namespace may deny setgroups: with no groups to
        // set, nothing is lost.
        if !(groups.is_empty() && r == Err(Errno::EPERM)) {
            check!(Step::Groups, r);
        }
        // SAFETY: plain syscalls.
        check!(
            Step::Gid,
            Errno::result(unsafe { libc::setresgid(p.gid, p.gid, p.gid) })
        );
        check!(
            Step::Uid,
            Errno::result(unsafe { libc::setresuid(p.uid, p.uid, p.uid) })
        );
        if let Some(caps) = &p.capabilities {
            check!(Step::Caps, capset(caps));
            // SAFETY: prctl with integer arguments.
            unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                    0,
                    0,
                    0,
                )
            };
            for &cap in caps.ambient.iter().filter(|c| caps.permitted.contains(c)) {
                let r = unsafe {
                    libc::prctl(
                        libc::PR_CAP_AMBIENT,
                        libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                        cap as libc::c_ulong,
                        0,
                        0,
                    )
                };
                check!(Step::Ambient, Errno::result(r));
            }
        }
        if p.no_new_privileges {
            // SAFETY: prctl with integer arguments.
            let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            check!(Step::NoNewPrivs, Errno::result(r));
        }
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(p.umask.unwrap_or(DEFAULT_UMASK) as libc::mode_t) };
        check!(Step::Chdir, nix::unistd::chdir(self.cwd.as_c_str()));
        // No descriptor of ours, nor any the host passed down, beyond 0, 1
        // and 2 (CVE-2024-21626): mark them all close-on-exec.
        // SAFETY: close_range with CLOEXEC only sets flags.
        unsafe { libc::close_range(3 + keep, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as i32) };
        if p.no_new_privileges {
            if let Some(s) = &p.seccomp {
                check!(Step::Seccomp, load_seccomp(s));
            }
        }
        let argv: Vec<*const libc::c_char> = self
            .argv
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let envp: Vec<*const libc::c_char> = self
            .envp
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        // SAFETY: NULL-terminated arrays of NUL-terminated strings.
        unsafe { libc::execve(self.path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        Report::new(Step::Exec, Errno::last())
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
/// stdio is a terminal.
fn place_fds(stdio: &Stdio, preserved: &[OwnedFd]) -> bool {
    // Out of the way first: a source may sit on a target number.
    let high: Vec<i32> = preserved
        .iter()
        // SAFETY: fcntl duplicates an fd we hold.
        .map(|f| unsafe { libc::fcntl(f.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 1000) })
        .collect();
    let terminal = match stdio {
        Stdio::Inherit => false,
        Stdio::Fds(fds) => {
            for (target, fd) in fds.iter().take(3).enumerate() {
                // SAFETY: dup2 onto our own stdio in the child.
                unsafe { libc::dup2(fd.as_raw_fd(), target as i32) };
            }
            false
        }
        Stdio::Terminal(pty) => {
            for target in 0..3 {
                // SAFETY: dup2 onto our own stdio in the child.
                unsafe { libc::dup2(pty.as_raw_fd(), target) };
            }
            true
        }
    };
    for (i, fd) in high.into_iter().enumerate() {
        // SAFETY: dup2 clears close-on-exec on the target.
        unsafe { libc::dup2(fd, 3 + i as i32) };
    }
    terminal
}

/// A new pseudo-terminal of the devpts mounted at /dev/pts (the
/// container's, once we are inside it): (master, slave).
pub fn open_pty() -> Result<(OwnedFd, OwnedFd), Report> {
    use std::os::fd::FromRawFd;
    let err = |step| Report::new(step, Errno::last());
    // SAFETY: open, ioctls and open again, on fds we own.
    unsafe {
        let m = libc::open(
            c"/dev/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if m < 0 {
            return Err(err(Step::OpenPtmx));
        }
        let master = OwnedFd::from_raw_fd(m);
        let mut unlock: libc::c_int = 0;
        if libc::ioctl(m, libc::TIOCSPTLCK, &mut unlock) < 0 {
            return Err(err(Step::UnlockPty));
        }
        // TIOCGPTPEER opens the slave through the master's own devpts,
        // with no path to race on.
        let s = libc::ioctl(
            m,
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if s < 0 {
            return Err(err(Step::OpenPtySlave));
        }
        Ok((master, OwnedFd::from_raw_fd(s)))
    }
}

fn write_oom_score_adj(adj: i32) -> Result<(), Errno> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/oom_score_adj")
        .and_then(|mut f| f.write_all(adj.to_string().as_bytes()))
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

/// seccomp(2) with the program the runtime compiled.
fn load_seccomp(s: &protocol::Seccomp) -> Result<(), Errno> {
    #[repr(C)]
    struct SockFprog {
        len: libc::c_ushort,
        filter: *const u8,
    }
    let len = s.bpf.len() / 8;
    if len == 0 || len > u16::MAX as usize {
        return Err(Errno::EINVAL);
    }
    let prog = SockFprog {
        len: len as libc::c_ushort,
        filter: s.bpf.as_ptr(),
    };
    const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
    // SAFETY: the kernel reads `len` instructions of 8 bytes from `filter`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            s.flags as libc::c_ulong,
            &prog as *const SockFprog,
        )
    };
    Errno::result(r).map(drop)
}

/// Rust's runtime ignores SIGPIPE, and ignored signals survive exec: give
/// the workload every default back.
fn reset_dispositions() {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: restoring the default disposition.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
}

fn capset(caps: &Capabilities) -> Result<(), Errno> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut data = [Data::default(); 2];
    let set = |list: &[u8], pick: fn(&mut Data) -> &mut u32, data: &mut [Data; 2]| {
        for &c in list {
            if let Some(d) = data.get_mut(c as usize / 32) {
                *pick(d) |= 1 << (c % 32);
            }
        }
    };
    set(&caps.effective, |d| &mut d.effective, &mut data);
    set(&caps.permitted, |d| &mut d.permitted, &mut data);
    set(&caps.inheritable, |d| &mut d.inheritable, &mut data);
    // An ambient capability must be inheritable too, or the kernel refuses
    // to raise it; runc's own `spec` lists ambient ones alone, and runc and
    // crun run it: so do we, making the permitted ones inheritable.
    let ambient: Vec<u8> = caps
        .ambient
        .iter()
        .copied()
        .filter(|c| caps.permitted.contains(c))
        .collect();
    set(&ambient, |d| &mut d.inheritable, &mut data);
    let header = Header {
        version: VERSION_3,
        pid: 0,
    };
    // SAFETY: capset reads a v3 header and two data structs.
    let r = unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) };
    Errno::result(r).map(drop)
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
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            umask: None,
            rlimits: vec![],
            capabilities: None,
            no_new_privileges: false,
            terminal: false,
            oom_score_adj: None,
            io_priority: None,
            seccomp: None,
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
