//! The calls of a process's set-up that nix 0.29 does not wrap, or wraps
//! only as `unsafe` (fork, signal). Everything else goes through nix.

use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::pty::PtyMaster;
use nix::unistd::ForkResult;

/// fork(2) from tiny-init or the runtime.
pub fn fork() -> Result<ForkResult, Errno> {
    // SAFETY: both callers are single-threaded when they fork, so the child
    // inherits no lock that another thread holds, and may allocate.
    unsafe { nix::unistd::fork() }
}

/// Leave the child now, in the state exec failed in.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe; it skips the atexit handlers and
    // destructors, which belong to the parent's state.
    unsafe { libc::_exit(code) }
}

/// Rust's runtime ignores SIGPIPE, and ignored signals survive exec: give
/// the workload every default back (real-time signals included, which
/// nix's Signal cannot name).
pub fn reset_dispositions() {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL installs no handler of ours, so no code of ours
        // can run at a signal.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
}

/// stdin, a terminal, becomes the session's controlling terminal.
pub fn set_controlling_terminal() -> Result<(), Errno> {
    // SAFETY: TIOCSCTTY takes an integer argument, no memory.
    Errno::result(unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) }).map(drop)
}

/// setrlimit by the resource's number, as config.json has it (nix's
/// Resource cannot be made from a number).
pub fn setrlimit(r: &protocol::Rlimit) -> Result<(), Errno> {
    let lim = libc::rlimit {
        rlim_cur: r.soft,
        rlim_max: r.hard,
    };
    // SAFETY: setrlimit reads `lim`, which lives across the call.
    Errno::result(unsafe { libc::setrlimit(r.resource as _, &lim) }).map(drop)
}

pub fn ioprio_set(io: protocol::IoPriority) -> Result<(), Errno> {
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    let prio = ((io.class as libc::c_int) << 13) | io.level as libc::c_int;
    // SAFETY: ioprio_set takes integers only.
    let r = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, prio) };
    Errno::result(r).map(drop)
}

/// PR_CAPBSET_DROP by number: the caps crate can only name the
/// capabilities of its release.
pub fn drop_bounding(cap: u8) -> Result<(), Errno> {
    // SAFETY: prctl with integer arguments.
    let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
    Errno::result(r).map(drop)
}

/// seccomp(2) with the program the runtime compiled.
pub fn load_seccomp(s: &protocol::Seccomp) -> Result<(), Errno> {
    set_filter(s, 0).map(drop)
}

/// As [`load_seccomp`], with SECCOMP_FILTER_FLAG_NEW_LISTENER: the fd on
/// which SCMP_ACT_NOTIFY's notifications arrive.
pub fn load_seccomp_listener(s: &protocol::Seccomp) -> Result<OwnedFd, Errno> {
    const SECCOMP_FILTER_FLAG_NEW_LISTENER: u32 = 1 << 3;
    let fd = set_filter(s, SECCOMP_FILTER_FLAG_NEW_LISTENER)?;
    // SAFETY: with NEW_LISTENER, seccomp(2) returns a new fd that nothing
    // else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// seccomp(SECCOMP_SET_MODE_FILTER) with the profile's flags and `extra`.
fn set_filter(s: &protocol::Seccomp, extra: u32) -> Result<libc::c_long, Errno> {
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
    // SAFETY: the kernel reads `len` instructions of 8 bytes from `filter`,
    // which `s.bpf` holds for the call's length.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            (s.flags | extra) as libc::c_ulong,
            &prog as *const SockFprog,
        )
    };
    Errno::result(r)
}

/// close_range(2) as the raw system call: musl's libc, which the shim and
/// tiny-init link, has no wrapper for it.
///
/// # Safety
/// Without CLOSE_RANGE_CLOEXEC in `flags` it closes fds in `first..=last`:
/// nothing of Rust's may own them.
pub unsafe fn close_range(first: u32, last: u32, flags: libc::c_uint) -> libc::c_long {
    libc::syscall(
        libc::SYS_close_range,
        first as libc::c_uint,
        last as libc::c_uint,
        flags,
    )
}

/// Every descriptor from `first` up closes on exec.
pub fn close_range_on_exec(first: u32) {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: with CLOSE_RANGE_CLOEXEC, close_range only sets a flag: no
    // descriptor that Rust code owns is closed under it. Before 5.11 it
    // fails, and the fds stay as they are (nothing to do about it here).
    unsafe { close_range(first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
}

/// The master and its slave, opened through the master's own devpts
/// (TIOCGPTPEER), with no path to race on.
pub fn open_pty_peer(master: PtyMaster, flags: OFlag) -> Result<(OwnedFd, OwnedFd), Errno> {
    // SAFETY: TIOCGPTPEER takes the open flags as an integer; it returns a
    // new descriptor, which nothing else owns.
    let fd = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags.bits()) };
    let slave = Errno::result(fd).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })?;
    // SAFETY: into_raw_fd gives up the PtyMaster's ownership of its fd
    // (nix 0.29 has no conversion to OwnedFd).
    let master = unsafe { OwnedFd::from_raw_fd(master.into_raw_fd()) };
    Ok((master, slave))
}

/// A pidfd for our own child (nix 0.29 has no pidfd_open).
pub fn pidfd_open(pid: libc::pid_t) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open takes integers and returns a new descriptor, which
    // nothing else owns.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    Errno::result(fd).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `cmd`, after fork and before exec, joins the namespaces of `fds` and
/// goes to their root.
pub fn join_before_exec(cmd: &mut std::process::Command, fds: Vec<RawFd>) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec, and makes only
    // setns(2) and chdir(2), which are async-signal-safe; the fds are the
    // caller's, open until the command has spawned.
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

/// Join the session keyring `name` (made if there is none of that name),
/// as runc does for a container: without it, the container's processes
/// would share their caller's session keys. A kernel without keyrings
/// (ENOSYS) has nothing to share.
pub fn join_session_keyring(name: &str) -> Result<(), Errno> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_int = 1;
    let name = std::ffi::CString::new(name).map_err(|_| Errno::EINVAL)?;
    // SAFETY: keyctl reads the NUL-terminated name and writes nothing of
    // ours.
    let r = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    match Errno::result(r) {
        Ok(_) | Err(Errno::ENOSYS) => Ok(()),
        Err(e) => Err(e),
    }
}

/// sched_setattr(2) for this process (nix has no call for it).
pub fn sched_setattr(s: &protocol::Scheduler) -> Result<(), Errno> {
    #[repr(C)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
    }
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: s.policy,
        flags: s.flags,
        nice: s.nice,
        priority: s.priority,
        runtime: s.runtime,
        deadline: s.deadline,
        period: s.period,
    };
    // SAFETY: sched_setattr reads `attr`, whose first field gives its size.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    Errno::result(r).map(drop)
}

/// personality(2) with this persona.
pub fn personality(persona: u32) -> Result<(), Errno> {
    // SAFETY: personality takes an integer and touches no memory of ours.
    let r = unsafe { libc::personality(persona as libc::c_ulong) };
    Errno::result(r).map(drop)
}

/// This process runs on these CPUs.
pub fn set_affinity(cpus: &[u16]) -> Result<(), Errno> {
    let mut set = nix::sched::CpuSet::new();
    for &cpu in cpus {
        set.set(cpu as usize)?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
}

/// This process runs where the container's init (pid 1 of our PID
/// namespace) runs: the container's own CPUs.
pub fn affinity_of_init() -> Result<(), Errno> {
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(1))?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
}

/// AppArmor's change_onexec: the profile the next exec enters. Through
/// the AppArmor-only attr directory where the kernel has it (5.8 on, so
/// that another LSM stacked beside it cannot take the write), else the
/// shared one.
pub fn set_apparmor_exec(profile: &str) -> Result<(), Errno> {
    let text = format!("exec {profile}");
    write_attr("/proc/thread-self/attr/apparmor/exec", &text)
        .or_else(|_| write_attr("/proc/thread-self/attr/exec", &text))
}

/// SELinux's setexeccon: the context the next exec enters.
pub fn set_selinux_exec(label: &str) -> Result<(), Errno> {
    write_attr("/proc/thread-self/attr/exec", label)
}

/// One write of `text` to a /proc attr file, as the LSMs take it.
fn write_attr(path: &str, text: &str) -> Result<(), Errno> {
    use std::io::Write;
    let errno = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(errno)?;
    f.write_all(text.as_bytes()).map_err(errno)
}
