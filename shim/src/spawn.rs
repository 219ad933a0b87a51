//! Cloning tiny-init into the container's namespaces. The only module of the
//! shim that forks: between clone and exec the child makes raw syscalls only.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use protocol::{Namespace, NamespaceKind};

/// fd numbers tiny-init finds its socket and its own binary at.
const INIT_SOCKET_FD: RawFd = 3;
const INIT_EXE_FD: RawFd = 4;

/// Copy tiny-init into a sealed memfd. Executing that, rather than the file
/// on the host, means that a container which writes to /proc/1/exe writes
/// to nothing the host will ever run again (CVE-2019-5736).
pub fn sealed_copy(path: &str) -> Result<OwnedFd, String> {
    let mut src = std::fs::File::open(path).map_err(|e| format!("open {path}: {e}"))?;
    // SAFETY: memfd_create with a literal name; the fd is ours.
    let fd = unsafe {
        libc::memfd_create(
            c"tiny-init".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(format!("memfd_create: {}", Errno::last().desc()));
    }
    let memfd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut dst = std::fs::File::from(memfd);
    // std::io::copy uses copy_file_range/sendfile where it can.
    std::io::copy(&mut src, &mut dst).map_err(|e| format!("copy {path}: {e}"))?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on our own fd.
    if unsafe { libc::fcntl(dst.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(format!("seal tiny-init: {}", Errno::last().desc()));
    }
    Ok(OwnedFd::from(dst))
}

fn clone_flag(kind: NamespaceKind) -> libc::c_int {
    match kind {
        NamespaceKind::Pid => libc::CLONE_NEWPID,
        NamespaceKind::Mount => libc::CLONE_NEWNS,
        NamespaceKind::Ipc => libc::CLONE_NEWIPC,
        NamespaceKind::Uts => libc::CLONE_NEWUTS,
        NamespaceKind::Network => libc::CLONE_NEWNET,
        NamespaceKind::User => libc::CLONE_NEWUSER,
        NamespaceKind::Cgroup => libc::CLONE_NEWCGROUP,
        NamespaceKind::Time => libc::CLONE_NEWTIME,
    }
}

/// How tiny-init's binary reaches the container without letting it write
/// the host's copy (CVE-2019-5736).
pub enum Exe {
    /// A sealed memfd copy: nothing on the host behind /proc/1/exe at all.
    /// For containers whose processes may hold CAP_SYS_ADMIN on the host.
    Memfd(OwnedFd),
    /// The host binary, bind-mounted read-only onto itself in the new mount
    /// namespace before exec (runc's other way): writes through
    /// /proc/1/exe meet a read-only mount, and only CAP_SYS_ADMIN over that
    /// mount could lift it. Shares the binary's pages among containers
    /// instead of a private 1.3 MB copy each, and skips the copy.
    ReadOnlyBind {
        path: CString,
        /// The flags the host's mount of it already has (nosuid, ...):
        /// a remount that dropped them would be refused in a user namespace.
        locked: u64,
    },
}

impl Exe {
    pub fn read_only_bind(path: &str) -> Result<Exe, String> {
        let c = CString::new(path).map_err(|_| format!("{path}: NUL in path"))?;
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: statvfs writes into `s`.
        if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
            return Err(format!("stat {path}: {}", Errno::last().desc()));
        }
        let mut locked = 0u64;
        for (st, ms) in [
            (libc::ST_NOSUID, libc::MS_NOSUID),
            (libc::ST_NODEV, libc::MS_NODEV),
        ] {
            if s.f_flag & st != 0 {
                locked |= ms;
            }
        }
        Ok(Exe::ReadOnlyBind { path: c, locked })
    }
}

pub struct Child {
    pub pid: i32,
    pub pidfd: OwnedFd,
}

/// Where the clone child's cgroup comes from, so that nothing of the
/// container's runs outside it (cgroups::self_join_files says why the
/// child is never moved there by someone else).
pub enum CgroupEntry<'a> {
    /// None: the shim's own (no cgroup, as rootless).
    None,
    /// v1: the child writes "0" into each of these `tasks` files first.
    Join(&'a [RawFd]),
    /// v2: the child is born in the cgroup of this directory
    /// (CLONE_INTO_CGROUP), as crun does.
    Into(RawFd),
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

/// Clone tiny-init into new namespaces (and join those given by path), in
/// its cgroup (`cgroup`), with `socket` as its fd 3, and exec it from
/// `exe`. Returns at once: whether tiny-init got going is learnt from its
/// `Hello`.
pub fn clone_init(
    caller_reaps: bool,
    namespaces: &[Namespace],
    socket: &OwnedFd,
    exe: &Exe,
    argv: &[CString],
    userns_sync: Option<&OwnedFd>,
    cgroup: CgroupEntry,
) -> Result<Child, String> {
    let cgroup_join: &[RawFd] = match cgroup {
        CgroupEntry::Join(files) => files,
        _ => &[],
    };
    let mut flags = libc::CLONE_PIDFD | libc::SIGCHLD;
    if caller_reaps {
        // The runtime that started us is our parent; tiny-init becomes its
        // child, and the caller's once the runtime exits.
        flags |= libc::CLONE_PARENT;
    }
    let mut join: Vec<(OwnedFd, libc::c_int)> = Vec::new();
    for ns in namespaces {
        match &ns.path {
            // tiny-init unshares it once it is in the container's cgroup.
            None if ns.kind == NamespaceKind::Cgroup => {}
            None => flags |= clone_flag(ns.kind),
            Some(p) => {
                let f = std::fs::File::open(p).map_err(|e| format!("open namespace {p}: {e}"))?;
                join.push((OwnedFd::from(f), clone_flag(ns.kind)));
            }
        }
    }
    let argv_ptrs: Vec<*const libc::c_char> = argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let join_raw: Vec<(RawFd, libc::c_int)> =
        join.iter().map(|(f, t)| (f.as_raw_fd(), *t)).collect();
    let sock = socket.as_raw_fd();
    let (exe_fd, bind) = match exe {
        Exe::Memfd(fd) => (fd.as_raw_fd(), None),
        Exe::ReadOnlyBind { path, locked } => (-1, Some((path.as_ptr(), *locked))),
    };
    let sync = userns_sync.map(|f| f.as_raw_fd());
    let mut pidfd: libc::c_int = -1;

    // SAFETY: clone and clone3 without CLONE_VM behave as fork; the shim is
    // single-threaded here, and the child below makes raw syscalls only
    // (no allocation, no locks) until it execs or exits.
    let pid = unsafe {
        match cgroup {
            CgroupEntry::Into(dir) => {
                let mut args = CloneArgs {
                    // clone3 takes the exit signal apart, and none with
                    // CLONE_PARENT (the child then signals our parent).
                    flags: (flags as u32 as u64 & !0xff) | CLONE_INTO_CGROUP,
                    pidfd: &mut pidfd as *mut libc::c_int as u64,
                    exit_signal: if caller_reaps {
                        0
                    } else {
                        libc::SIGCHLD as u64
                    },
                    cgroup: dir as u64,
                    ..Default::default()
                };
                libc::syscall(
                    libc::SYS_clone3,
                    &mut args as *mut CloneArgs,
                    std::mem::size_of::<CloneArgs>(),
                )
            }
            _ => libc::syscall(
                libc::SYS_clone,
                flags as libc::c_ulong,
                std::ptr::null_mut::<libc::c_void>(),
                &mut pidfd as *mut libc::c_int,
                std::ptr::null_mut::<libc::c_int>(),
                0 as libc::c_ulong,
            ),
        }
    };
    if pid < 0 {
        return Err(format!("clone: {}", Errno::last().desc()));
    }
    if pid == 0 {
        unsafe {
            // Before the dup2s below can land on one of these fds.
            for &fd in cgroup_join {
                if libc::write(fd, c"0".as_ptr().cast(), 1) != 1 {
                    libc::_exit(125);
                }
            }
            // Move the exe out of the way first: it may sit on fd 3.
            if exe_fd >= 0 && libc::dup2(exe_fd, 100) < 0 {
                libc::_exit(120);
            }
            if libc::dup2(sock, INIT_SOCKET_FD) < 0
                || (exe_fd >= 0 && libc::dup2(100, INIT_EXE_FD) < 0)
            {
                libc::_exit(120);
            }
            if let Some(sync) = sync {
                // In a new user namespace we are nobody until the shim has
                // written our maps; exec now and tiny-init would lose every
                // capability. Wait, then become the namespace's root.
                let mut b = 0u8;
                if libc::read(sync, (&mut b as *mut u8).cast(), 1) != 1 {
                    libc::_exit(123);
                }
                // Fails where newgidmap has denied setgroups (rootless):
                // then there are no host groups to drop anyway.
                libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>());
                if libc::syscall(libc::SYS_setresgid, 0, 0, 0) < 0
                    || libc::syscall(libc::SYS_setresuid, 0, 0, 0) < 0
                {
                    libc::_exit(123);
                }
            }
            for &(fd, nstype) in &join_raw {
                if libc::setns(fd, nstype) < 0 {
                    libc::_exit(121);
                }
            }
            if let Some((path, locked)) = bind {
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
                    libc::_exit(124);
                }
                libc::close_range(4, u32::MAX, 0);
                libc::execve(path, argv_ptrs.as_ptr(), envp.as_ptr());
                libc::_exit(122);
            }
            // Nothing of the shim's beyond stdio and these two.
            libc::close_range(5, u32::MAX, 0);
            libc::fcntl(INIT_EXE_FD, libc::F_SETFD, libc::FD_CLOEXEC);
            libc::syscall(
                libc::SYS_execveat,
                INIT_EXE_FD,
                c"".as_ptr(),
                argv_ptrs.as_ptr(),
                envp.as_ptr(),
                libc::AT_EMPTY_PATH,
            );
            libc::_exit(122);
        }
    }
    Ok(Child {
        pid: pid as i32,
        // SAFETY: the kernel filled in a pidfd for the child.
        pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
    })
}

/// Why a child that never said hello died: the codes of `clone_init`.
pub fn describe_early_exit(code: i32) -> &'static str {
    match code {
        120 => "could not set up its descriptors",
        121 => "could not join a namespace given by path",
        122 => "could not be executed",
        123 => "could not become root in its user namespace",
        124 => "could not bind its binary read-only",
        125 => "could not join its cgroup",
        _ => "died during set-up",
    }
}

/// waitid on a pidfd: the exit code, 128+N for a signal. None if it has not
/// ended (or is not our child).
pub fn reap(pidfd: &OwnedFd, block: bool) -> Option<i32> {
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | if block { 0 } else { libc::WNOHANG };
    // SAFETY: waitid writes into `info`.
    let r = unsafe {
        libc::waitid(
            libc::P_PIDFD,
            pidfd.as_raw_fd() as libc::id_t,
            &mut info,
            flags,
        )
    };
    if r < 0 {
        return None;
    }
    // SAFETY: waitid filled in a SIGCHLD siginfo (or left pid 0 with WNOHANG).
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return None;
    }
    Some(match info.si_code {
        libc::CLD_EXITED => status,
        _ => 128 + status,
    })
}

/// The uid and gid maps of a child in a new user namespace: written
/// directly by root, through the setuid newuidmap/newgidmap (which check
/// /etc/subuid and /etc/subgid) for an unprivileged user.
pub fn write_maps(
    pid: i32,
    uids: &[protocol::IdMap],
    gids: &[protocol::IdMap],
) -> Result<(), String> {
    if nix::unistd::geteuid().is_root() {
        write_map(pid, "uid_map", uids)?;
        return write_map(pid, "gid_map", gids);
    }
    for (tool, maps) in [("newuidmap", uids), ("newgidmap", gids)] {
        let mut cmd = std::process::Command::new(tool);
        cmd.arg(pid.to_string());
        for m in maps {
            cmd.args([
                m.container.to_string(),
                m.host.to_string(),
                m.size.to_string(),
            ]);
        }
        let out = cmd
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("run {tool} (Debian's uidmap package): {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{tool}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(())
}

/// Write a uid_map or gid_map of a child in a new user namespace. One write:
/// the kernel takes a map whole or not at all.
fn write_map(pid: i32, file: &str, maps: &[protocol::IdMap]) -> Result<(), String> {
    let text: String = maps
        .iter()
        .map(|m| format!("{} {} {}\n", m.container, m.host, m.size))
        .collect();
    std::fs::write(format!("/proc/{pid}/{file}"), text).map_err(|e| format!("write {file}: {e}"))
}

/// A detached, recursive copy of the mount tree at `path`, idmapped with the
/// user namespace of `pid`: files owned by host uid H appear owned by the
/// container uid that H maps to, without a chown of the image.
pub fn idmapped_tree(path: &str, pid: i32) -> Result<OwnedFd, String> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let cpath = CString::new(path).map_err(|_| format!("{path}: NUL in path"))?;
    // SAFETY: open_tree with a NUL-terminated path; the result is a new fd.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            cpath.as_ptr(),
            OPEN_TREE_CLONE | AT_RECURSIVE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if tree < 0 {
        return Err(format!("open_tree {path}: {}", Errno::last().desc()));
    }
    let tree = unsafe { OwnedFd::from_raw_fd(tree as RawFd) };
    let userns = std::fs::File::open(format!("/proc/{pid}/ns/user"))
        .map_err(|e| format!("open tiny-init's user namespace: {e}"))?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: mount_setattr reads `attr` of the size given.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        let e = Errno::last();
        return Err(match e {
            Errno::EINVAL | Errno::EOPNOTSUPP => format!(
                "idmapped mount of {path}: {} (the filesystem or kernel does not support idmapped mounts)",
                e.desc()
            ),
            e => format!("idmapped mount of {path}: {}", e.desc()),
        });
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// v2 (here the hybrid's cgroup2 mount, which holds no controllers but
    /// membership all the same): the clone child is born in the cgroup
    /// given by its directory, and the shim stays where it is.
    #[test]
    fn clone_init_into_a_v2_cgroup() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let Some(root) = nsbox_host::cgroups::cgroup2_mount() else {
            eprintln!("skipped: no cgroup2 mount");
            return;
        };
        let name = format!("nsbox-spawn-test-{}", std::process::id());
        let dir = root.join(&name);
        std::fs::create_dir(&dir).unwrap();
        let fd = std::fs::File::open(&dir).unwrap();
        let (ours, theirs) = protocol::seqpacket_pair().unwrap();
        let exe = Exe::read_only_bind("/bin/sleep").unwrap();
        let argv = [CString::new("sleep").unwrap(), CString::new("30").unwrap()];
        // A mount namespace of its own: the child binds its binary there.
        let mount_ns = [Namespace {
            kind: NamespaceKind::Mount,
            path: None,
        }];
        let before = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let child = clone_init(
            false,
            &mount_ns,
            &theirs,
            &exe,
            &argv,
            None,
            CgroupEntry::Into(fd.as_raw_fd()),
        );
        let child = child.unwrap();
        let theirs_cg = std::fs::read_to_string(format!("/proc/{}/cgroup", child.pid));
        let procs = std::fs::read_to_string(dir.join("cgroup.procs"));
        // SAFETY: a signal to the child we just cloned, through its pidfd.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                child.pidfd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        reap(&child.pidfd, true);
        drop(ours);
        let _ = std::fs::remove_dir(&dir);
        let theirs_cg = theirs_cg.unwrap();
        assert!(
            theirs_cg.lines().any(|l| l == format!("0::/{name}")),
            "{theirs_cg}"
        );
        assert_eq!(procs.unwrap().trim(), child.pid.to_string());
        assert_eq!(
            std::fs::read_to_string("/proc/self/cgroup").unwrap(),
            before
        );
    }
}
