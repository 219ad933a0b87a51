//! Cloning tiny-init into the container's namespaces: the shim's only
//! fork. Between clone and exec the child makes raw syscalls only (no
//! allocation, no locks: async-signal-safe), which is why this module may
//! use `unsafe`; everything the child needs is made before the clone.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use protocol::report::{self, Step};
use protocol::{Failure, Namespace, NamespaceKind};

use crate::exe::Exe;

/// fd numbers tiny-init finds its socket and its own binary at.
const INIT_SOCKET_FD: RawFd = 3;
const INIT_EXE_FD: RawFd = 4;

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("open namespace {path}")]
    Namespace {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("open cgroup.procs (clone3 was refused: {})", refused.desc())]
    CgroupProcs {
        refused: Errno,
        #[source]
        source: Errno,
    },
    #[error("enter the {0} namespace for tiny-init to be born in")]
    Enter(NamespaceKind, #[source] Errno),
    #[error("open tiny-init's pidfd, forked into its pid namespace")]
    ForkedInit(#[source] Errno),
    #[error("pipe")]
    Pipe(#[source] Errno),
    #[error("clone")]
    Clone(#[source] Errno),
}

pub struct Child {
    pub pid: i32,
    pub pidfd: OwnedFd,
}

/// The read end of the pipe on which the clone child reports the step it
/// failed at (protocol::report); EOF once it has exec'd tiny-init.
pub struct EarlyReport(OwnedFd);

impl EarlyReport {
    /// Why a child that never said hello died: its report, else its exit
    /// status. Reap it first: the pipe ends only with the child.
    pub fn failure(&self, exit_status: Option<i32>) -> Failure {
        match report::receive(&self.0) {
            Ok(Some(f)) => f,
            Ok(None) | Err(_) => Failure {
                step: "start tiny-init".into(),
                message: format!(
                    "tiny-init died during set-up (exit status {})",
                    exit_status.unwrap_or(-1)
                ),
                exit_code: 1,
            },
        }
    }
}

/// Where the clone child's cgroup comes from, so that nothing of the
/// container's runs outside it (cgroups::self_join_files says why the
/// child is never moved there by someone else).
pub enum CgroupEntry<'a> {
    /// None: the shim's own (no cgroup, as rootless).
    None,
    /// v1: the child writes "0" into each of these `tasks` files first.
    Join(&'a [RawFd]),
    /// v1, the cgroup still being made (by the runtime, while the clone
    /// makes the namespaces): the child closes its copy of the pipe's
    /// write end `go.1`, waits for a byte on `go.0` (EOF: it was not
    /// made, and the shim says why), then opens these `tasks` files and
    /// writes "0" into each, before anything else.
    JoinWhenMade {
        tasks: &'a [CString],
        go: (RawFd, RawFd),
    },
    /// v2: the child is born in the cgroup of this directory
    /// (CLONE_INTO_CGROUP), as crun does; where clone3 is refused, it
    /// joins through the directory's cgroup.procs instead.
    Into(RawFd),
}

/// Clone tiny-init into new namespaces (and join those given by path), in
/// its cgroup (`cgroup`), with `socket` as its fd 3, and exec it from
/// `exe`. A new time namespace gets `time_offsets` (lines of
/// /proc/PID/timens_offsets) before anything enters it. Returns at once:
/// whether tiny-init got going is learnt from its `Hello`, or else from
/// the [`EarlyReport`].
#[allow(clippy::too_many_arguments)]
pub fn clone_init(
    caller_reaps: bool,
    namespaces: &[Namespace],
    socket: &OwnedFd,
    exe: &Exe,
    argv: &[CString],
    userns_sync: Option<&OwnedFd>,
    cgroup: CgroupEntry,
    time_offsets: &[u8],
) -> Result<(Child, EarlyReport), SpawnError> {
    let (flags, joined) = clone_flags(caller_reaps, namespaces)?;
    // A new user namespace is made by the clone, and from inside it the
    // child could enter no namespace of the host's user namespace (nor of
    // another container's): the shim enters those for it, and the child is
    // born in them, as runc's child joins them before it unshares its user
    // namespace. The mount namespace stays the child's (the runtime
    // refuses one beside a new user namespace: the child could not mount
    // in it).
    let new_user = flags & libc::CLONE_NEWUSER != 0;
    let (around_clone, joined): (Vec<_>, Vec<_>) = joined.into_iter().partition(|(_, k)| {
        matches!(k, NamespaceKind::Pid | NamespaceKind::Time)
            || (new_user && *k != NamespaceKind::Mount)
    });
    let (flags, unshare) = if joined.iter().any(|(_, k)| *k == NamespaceKind::User) {
        // Made by the child once it is in the joined user namespace, so
        // that they are that namespace's (a new pid namespace too: the
        // child then forks tiny-init into it).
        let new = flags & NEW_NAMESPACE_FLAGS;
        (flags & !new, new)
    } else {
        (flags, 0)
    };
    // A pid or time namespace joined by path is where children are born:
    // the shim enters it (and those above) for the clone alone, so that
    // tiny-init is born in it, and goes back right after.
    let _back = ShimsNamespaces::enter(&around_clone)?;
    let (report_rd, report_wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(SpawnError::Pipe)?;
    let forked = if unshare & libc::CLONE_NEWPID != 0 {
        Some(nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(SpawnError::Pipe)?)
    } else {
        None
    };
    let mut plan = ChildPlan::new(socket, exe, argv, userns_sync, &joined, &report_wr);
    plan.unshare = unshare;
    plan.new_time = namespaces
        .iter()
        .any(|n| n.kind == NamespaceKind::Time && n.path.is_none());
    plan.time_offsets = time_offsets;
    plan.forked_pid = forked.as_ref().map(|(_, wr)| wr.as_raw_fd());
    plan.place_high();
    let mut pidfd: libc::c_int = -1;
    let pid = match cgroup {
        CgroupEntry::None => clone(flags, &mut pidfd, &plan),
        CgroupEntry::Join(files) => {
            plan.cgroup_join = files.to_vec();
            plan.place_high();
            clone(flags, &mut pidfd, &plan)
        }
        CgroupEntry::JoinWhenMade { tasks, go } => {
            plan.cgroup_tasks = tasks.iter().map(|t| t.as_ptr()).collect();
            plan.cgroup_go = Some(go);
            plan.place_high();
            clone(flags, &mut pidfd, &plan)
        }
        CgroupEntry::Into(dir) => match clone3_into_cgroup(flags, dir, &mut pidfd, &plan) {
            // nsbox inside another container: a seccomp filter may answer
            // clone3 with ENOSYS (Docker's default profile, since clone3's
            // flags sit behind a pointer a filter cannot read) or EPERM;
            // a kernel before 5.7 knows no CLONE_INTO_CGROUP (E2BIG). runc
            // and crun fall back to clone(2) then, and so do we: the child
            // joins through cgroup.procs, paying the cgroup move.
            Err(refused @ (Errno::ENOSYS | Errno::EPERM | Errno::E2BIG)) => {
                log::debug!("clone3 refused ({}): clone instead", refused.desc());
                let procs = open_procs(dir)
                    .map_err(|source| SpawnError::CgroupProcs { refused, source })?;
                plan.cgroup_join = vec![procs.as_raw_fd()];
                plan.place_high();
                clone(flags, &mut pidfd, &plan)
            }
            other => other,
        },
    }
    .map_err(SpawnError::Clone)?;
    let child = Child {
        pid,
        // SAFETY: the kernel filled in a pidfd for the child (CLONE_PIDFD).
        pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
    };
    let child = match forked {
        Some((rd, wr)) => {
            drop(wr);
            forked_init(child, rd)?
        }
        None => child,
    };
    Ok((child, EarlyReport(report_rd)))
}

/// tiny-init as forked by the clone child (`child`) into its new pid
/// namespace: its pid comes on `said`, then `child` leaves. The pid is
/// ours to trust: tiny-init is our child (CLONE_PARENT), or our caller's,
/// and nobody reaps it before we hold its pidfd. Where `child` failed
/// before the fork, it is what the caller gets, to learn why from its
/// report.
fn forked_init(child: Child, said: OwnedFd) -> Result<Child, SpawnError> {
    let mut buf = [0u8; 4];
    if nix::unistd::read(said.as_raw_fd(), &mut buf) != Ok(4) {
        return Ok(child);
    }
    // Our child unless our caller reaps; then it stays our caller's
    // zombie until our caller exits.
    reap(&child.pidfd, true);
    let pid = i32::from_ne_bytes(buf);
    let pidfd = nsbox_host::proc::pidfd_open(pid).map_err(SpawnError::ForkedInit)?;
    Ok(Child { pid, pidfd })
}

/// The flags for clone (exit signal in the low byte), and the namespaces
/// given by path, opened, with their kinds for setns.
fn clone_flags(
    caller_reaps: bool,
    namespaces: &[Namespace],
) -> Result<(libc::c_int, Vec<(OwnedFd, NamespaceKind)>), SpawnError> {
    let mut flags = libc::CLONE_PIDFD | libc::SIGCHLD;
    if caller_reaps {
        // The runtime that started us is our parent; tiny-init becomes its
        // child, and the caller's once the runtime exits.
        flags |= libc::CLONE_PARENT;
    }
    let mut joined = Vec::new();
    for ns in namespaces {
        match &ns.path {
            // tiny-init unshares it once it is in the container's cgroup.
            None if ns.kind == NamespaceKind::Cgroup => {}
            // CLONE_NEWTIME is 0x80, inside the exit-signal byte, and its
            // offsets must be written before anything is in it: the child
            // unshares it, and enters it by its exec.
            None if ns.kind == NamespaceKind::Time => {}
            None => flags |= ns.kind.clone_flag(),
            Some(p) => {
                let f = std::fs::File::open(p).map_err(|source| SpawnError::Namespace {
                    path: p.clone(),
                    source,
                })?;
                joined.push((OwnedFd::from(f), ns.kind));
            }
        }
    }
    Ok((flags, joined))
}

/// Every CLONE_NEW* flag clone_flags may set.
const NEW_NAMESPACE_FLAGS: libc::c_int = libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWCGROUP;

/// The shim in namespaces given by path for the clone: a pid or time
/// namespace for the children it makes (setns(2) of those changes only
/// where children are born), the others for itself; back in its own when
/// dropped.
struct ShimsNamespaces(Vec<(OwnedFd, NamespaceKind)>);

impl ShimsNamespaces {
    fn enter(joined: &[(OwnedFd, NamespaceKind)]) -> Result<ShimsNamespaces, SpawnError> {
        let mut back = ShimsNamespaces(Vec::new());
        for (fd, kind) in joined {
            let own = match kind {
                NamespaceKind::Pid | NamespaceKind::Time => {
                    format!("/proc/self/ns/{}_for_children", kind.proc_name())
                }
                _ => format!("/proc/self/ns/{}", kind.proc_name()),
            };
            let f = std::fs::File::open(&own).map_err(|source| SpawnError::Namespace {
                path: own.clone(),
                source,
            })?;
            nix::sched::setns(
                fd,
                nix::sched::CloneFlags::from_bits_retain(kind.clone_flag()),
            )
            .map_err(|e| SpawnError::Enter(*kind, e))?;
            back.0.push((OwnedFd::from(f), *kind));
        }
        Ok(back)
    }
}

impl Drop for ShimsNamespaces {
    fn drop(&mut self) {
        for (fd, kind) in self.0.iter().rev() {
            let flag = nix::sched::CloneFlags::from_bits_retain(kind.clone_flag());
            if let Err(e) = nix::sched::setns(fd, flag) {
                // Every later child of this shim would be born in the
                // container's namespace: hooks, above all. Better none.
                log::error!("return to the shim's own {kind} namespace: {}", e.desc());
                std::process::abort();
            }
        }
    }
}

/// The v2 directory's cgroup.procs, for a child that joins by itself.
fn open_procs(dir: RawFd) -> Result<OwnedFd, Errno> {
    let fd = openat(
        Some(dir),
        "cgroup.procs",
        OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // SAFETY: openat returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Everything the clone child needs, as raw values made before the clone:
/// the child may not allocate.
struct ChildPlan<'a> {
    /// unshare a time namespace, give it `time_offsets`, and enter it by
    /// the exec (it is the one for our children until then).
    new_time: bool,
    time_offsets: &'a [u8],
    /// v1 `tasks` files (or v2's cgroup.procs) to write "0" into first.
    cgroup_join: Vec<RawFd>,
    /// Or v1 `tasks` files to open and write "0" into, once a byte has
    /// come on the pipe `cgroup_go` (read end, write end).
    cgroup_tasks: Vec<*const libc::c_char>,
    cgroup_go: Option<(RawFd, RawFd)>,
    socket: RawFd,
    /// The memfd to exec, or -1.
    exe_fd: RawFd,
    /// The binary to bind read-only and exec, with its locked mount flags.
    bind: Option<(*const libc::c_char, u64)>,
    userns_sync: Option<RawFd>,
    /// Namespaces given by path, user first and mount last: the kernel
    /// wants the user namespace before the others' capabilities count,
    /// and after the mount namespace /proc may no longer be the host's.
    setns: Vec<(RawFd, NamespaceKind)>,
    /// CLONE_NEW* flags to unshare right after joining a user namespace.
    unshare: libc::c_int,
    /// With CLONE_NEWPID among them: where the child says the pid of
    /// tiny-init, which it forks into the new pid namespace.
    forked_pid: Option<RawFd>,
    argv: Vec<*const libc::c_char>,
    envp: [*const libc::c_char; 1],
    /// The write end of the report pipe (CLOEXEC).
    report: RawFd,
    /// Above every fd here: where the child moves the report pipe
    /// (`high`) and parks the memfd (`high + 1`), out of the way of the
    /// dup2s onto 3 and 4 and of close_range.
    high: RawFd,
}

impl ChildPlan<'_> {
    fn new(
        socket: &OwnedFd,
        exe: &Exe,
        argv: &[CString],
        userns_sync: Option<&OwnedFd>,
        joined: &[(OwnedFd, NamespaceKind)],
        report: &OwnedFd,
    ) -> ChildPlan<'static> {
        let (exe_fd, bind) = match exe {
            Exe::Memfd(fd) => (fd.as_raw_fd(), None),
            Exe::ReadOnlyBind { path, locked } => (-1, Some((path.as_ptr(), *locked))),
        };
        let mut plan = ChildPlan {
            new_time: false,
            time_offsets: &[],
            cgroup_join: Vec::new(),
            cgroup_tasks: Vec::new(),
            cgroup_go: None,
            socket: socket.as_raw_fd(),
            exe_fd,
            bind,
            userns_sync: userns_sync.map(|f| f.as_raw_fd()),
            setns: {
                let mut v: Vec<(RawFd, NamespaceKind)> =
                    joined.iter().map(|(f, k)| (f.as_raw_fd(), *k)).collect();
                v.sort_by_key(|(_, k)| match k {
                    NamespaceKind::User => 0,
                    NamespaceKind::Mount => 2,
                    _ => 1,
                });
                v
            },
            unshare: 0,
            forked_pid: None,
            argv: argv
                .iter()
                .map(|a| a.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect(),
            envp: [std::ptr::null()],
            report: report.as_raw_fd(),
            high: 0,
        };
        plan.place_high();
        plan
    }

    /// Recompute `high` once the plan's fds are all known.
    fn place_high(&mut self) {
        let fds = [self.socket, self.exe_fd, self.report, INIT_EXE_FD]
            .into_iter()
            .chain(self.userns_sync)
            .chain(self.forked_pid)
            .chain(self.cgroup_go.map(|(rd, _)| rd))
            .chain(self.cgroup_join.iter().copied())
            .chain(self.setns.iter().map(|(fd, _)| *fd));
        self.high = fds.max().unwrap_or(INIT_EXE_FD) + 1;
    }
}

/// struct clone_args of <linux/sched.h>, up to `cgroup` (its second
/// version), for clone3(2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// clone(2), the child running `plan`; the child's pid in the parent.
fn clone(flags: libc::c_int, pidfd: &mut libc::c_int, plan: &ChildPlan<'_>) -> Result<i32, Errno> {
    // SAFETY: clone without CLONE_VM behaves as fork: the shim is
    // single-threaded here, and the child runs `plan` only, which execs or
    // exits.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags as libc::c_ulong,
            std::ptr::null_mut::<libc::c_void>(),
            pidfd as *mut libc::c_int,
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    parent_or_child(pid, plan)
}

/// clone3(2) into the cgroup of directory `dir`, the child running `plan`.
fn clone3_into_cgroup(
    flags: libc::c_int,
    dir: RawFd,
    pidfd: &mut libc::c_int,
    plan: &ChildPlan,
) -> Result<i32, Errno> {
    let mut args = CloneArgs {
        // clone3 takes the exit signal apart; with CLONE_PARENT none (the
        // child then signals our parent).
        flags: (flags as u32 as u64 & !0xff) | CLONE_INTO_CGROUP,
        pidfd: pidfd as *mut libc::c_int as u64,
        exit_signal: if flags & libc::CLONE_PARENT != 0 {
            0
        } else {
            libc::SIGCHLD as u64
        },
        cgroup: dir as u64,
        ..Default::default()
    };
    // SAFETY: as `clone`; clone3 reads `args`, of the size given.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    parent_or_child(pid, plan)
}

fn parent_or_child(pid: libc::c_long, plan: &ChildPlan) -> Result<i32, Errno> {
    match pid {
        0 => child(plan),
        p if p < 0 => Err(Errno::last()),
        p => Ok(p as i32),
    }
}

/// The clone child: into the cgroup, fds in place, root of its user
/// namespace, namespaces joined, its binary bound read-only, exec. A step
/// that fails is reported on the report pipe (protocol::report), and the
/// child exits.
fn child(plan: &ChildPlan) -> ! {
    let report_fd = plan.high;
    let parked_exe = plan.high + 1;
    let fail = |step: Step| -> ! {
        // SAFETY: the report pipe is open at `report_fd` (the first dup3
        // below put it there); _exit is async-signal-safe.
        unsafe {
            report::send(BorrowedFd::borrow_raw(report_fd), step, Errno::last_raw());
            libc::_exit(1)
        }
    };
    // SAFETY: raw syscalls only, on values prepared before the clone; the
    // child ends in exec or _exit.
    unsafe {
        // Out of the way of everything below first: fds 3 and 4, and
        // close_range. Without its report pipe, the child's exit status is
        // all the shim learns.
        if libc::dup3(plan.report, report_fd, libc::O_CLOEXEC) < 0 {
            libc::_exit(1);
        }
        if plan.exe_fd >= 0 && libc::dup2(plan.exe_fd, parked_exe) < 0 {
            fail(Step::InitFds);
        }
        if let Some((go, shims)) = plan.cgroup_go {
            libc::close(shims);
            let mut b = 0u8;
            if libc::read(go, (&mut b as *mut u8).cast(), 1) != 1 {
                // Not made: the shim kills us and says why.
                libc::_exit(1);
            }
            for &path in &plan.cgroup_tasks {
                let fd = libc::open(path, libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 || libc::write(fd, c"0".as_ptr().cast(), 1) != 1 {
                    fail(Step::JoinCgroup);
                }
                libc::close(fd);
            }
        }
        for &fd in &plan.cgroup_join {
            if libc::write(fd, c"0".as_ptr().cast(), 1) != 1 {
                fail(Step::JoinCgroup);
            }
        }
        if libc::dup2(plan.socket, INIT_SOCKET_FD) < 0
            || (plan.exe_fd >= 0 && libc::dup2(parked_exe, INIT_EXE_FD) < 0)
        {
            fail(Step::InitFds);
        }
        if let Some(sync) = plan.userns_sync {
            // In a new user namespace we are nobody until the shim has
            // written our maps; exec now and tiny-init would lose every
            // capability. Wait, then become the namespace's root.
            let mut b = 0u8;
            if libc::read(sync, (&mut b as *mut u8).cast(), 1) != 1 {
                fail(Step::WaitForIdMaps);
            }
            // Fails where newgidmap has denied setgroups (rootless):
            // then there are no host groups to drop anyway.
            libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>());
            if libc::syscall(libc::SYS_setresgid, 0, 0, 0) < 0
                || libc::syscall(libc::SYS_setresuid, 0, 0, 0) < 0
            {
                fail(Step::BecomeRoot);
            }
        }
        for &(fd, kind) in &plan.setns {
            if libc::setns(fd, kind.clone_flag()) < 0 {
                fail(Step::JoinNamespace(kind));
            }
            if kind == NamespaceKind::User {
                // Root of the joined namespace (host root maps to nobody
                // there), then the new namespaces, owned by it.
                libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>());
                if libc::syscall(libc::SYS_setresgid, 0, 0, 0) < 0
                    || libc::syscall(libc::SYS_setresuid, 0, 0, 0) < 0
                {
                    fail(Step::BecomeRoot);
                }
                if plan.unshare != 0 && libc::unshare(plan.unshare) < 0 {
                    fail(Step::UnshareNamespaces);
                }
                if let Some(said) = plan.forked_pid {
                    // A new pid namespace takes the children of its maker
                    // only: tiny-init is forked into it, as runc's stage-2
                    // init is, our parent's child (CLONE_PARENT); we say
                    // its pid and leave.
                    let pid = libc::syscall(
                        libc::SYS_clone,
                        (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
                        std::ptr::null_mut::<libc::c_void>(),
                        std::ptr::null_mut::<libc::c_int>(),
                        std::ptr::null_mut::<libc::c_int>(),
                        0 as libc::c_ulong,
                    );
                    if pid < 0 {
                        fail(Step::ForkIntoPidNamespace);
                    }
                    if pid > 0 {
                        let pid = pid as i32;
                        libc::write(said, (&pid as *const i32).cast(), 4);
                        libc::_exit(0);
                    }
                }
            }
        }
        if plan.new_time {
            if libc::unshare(libc::CLONE_NEWTIME) < 0 {
                fail(Step::NewTimeNamespace);
            }
            if !plan.time_offsets.is_empty() {
                let fd = libc::open(
                    c"/proc/self/timens_offsets".as_ptr(),
                    libc::O_WRONLY | libc::O_CLOEXEC,
                );
                let len = plan.time_offsets.len();
                if fd < 0 || libc::write(fd, plan.time_offsets.as_ptr().cast(), len) != len as isize
                {
                    fail(Step::TimeOffsets);
                }
                libc::close(fd);
            }
        }
        if let Some((path, locked)) = plan.bind {
            // Our mounts must not reach the host: slave first (this is a
            // new mount namespace; tiny-init sets the propagation it
            // wants later), then the read-only bind of the binary itself.
            if libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_SLAVE | libc::MS_REC,
                std::ptr::null(),
            ) < 0
                || libc::mount(
                    path,
                    path,
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ) < 0
                || libc::mount(
                    std::ptr::null(),
                    path,
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | locked,
                    std::ptr::null(),
                ) < 0
            {
                fail(Step::BindInitReadOnly);
            }
            // Nothing of the shim's beyond stdio, the socket and the
            // report pipe (CLOEXEC).
            close_all_but(INIT_SOCKET_FD, report_fd);
            libc::execve(path, plan.argv.as_ptr(), plan.envp.as_ptr());
            fail(Step::ExecInit);
        }
        close_all_but(INIT_EXE_FD, report_fd);
        libc::fcntl(INIT_EXE_FD, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::syscall(
            libc::SYS_execveat,
            INIT_EXE_FD,
            c"".as_ptr(),
            plan.argv.as_ptr(),
            plan.envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
        fail(Step::ExecInit);
    }
}

/// Close every fd above `last_kept` except `report` (which is above it).
///
/// # Safety
/// The clone child's: nothing of Rust's may own the fds it closes.
unsafe fn close_all_but(last_kept: RawFd, report: RawFd) {
    nsbox_process::close_range(last_kept as u32 + 1, report as u32 - 1, 0);
    nsbox_process::close_range(report as u32 + 1, u32::MAX, 0);
}

/// waitid on a pidfd: the exit code, 128+N for a signal. None if it has not
/// ended (or is not our child).
pub fn reap(pidfd: &OwnedFd, block: bool) -> Option<i32> {
    let mut flags = WaitPidFlag::WEXITED;
    if !block {
        flags |= WaitPidFlag::WNOHANG;
    }
    match waitid(Id::PIDFd(pidfd.as_fd()), flags).ok()? {
        nix::sys::wait::WaitStatus::StillAlive => None,
        status => Some(nsbox_process::exit_code(status)),
    }
}

#[cfg(test)]
pub mod tests;
