//! The container's filesystem: rootfs, mounts from config.json, /dev,
//! pivot_root, masked and read-only paths, hostname.
//!
//! Every mount target inside the rootfs is resolved with openat2 and
//! RESOLVE_IN_ROOT, then mounted on through /proc/self/fd/N: a symlink in the
//! image (or one swapped in by a racing container, CVE-2021-30465) can never
//! lead a mount outside the rootfs.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use protocol::{Failure, InitConfig, Mount};

const DEFAULT_DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

const DEV_LINKS: [(&str, &str); 6] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
    ("core", "/proc/kcore"),
];

fn failure(step: impl Into<String>, e: Errno) -> Failure {
    Failure {
        step: step.into(),
        message: e.desc().to_string(),
        exit_code: 1,
    }
}

fn cstr(s: &str) -> CString {
    // Paths and options were validated by the runtime; an interior NUL cannot
    // come through serde from a JSON string the runtime accepted, but refuse
    // it rather than panic.
    CString::new(s).unwrap_or_else(|_| CString::new("/nonexistent\u{1}").unwrap())
}

fn sys_mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: u64,
    data: Option<&CStr>,
) -> Result<(), Errno> {
    let p = |c: Option<&CStr>| c.map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is a NUL-terminated string or null.
    let r = unsafe {
        libc::mount(
            p(source),
            target.as_ptr(),
            p(fstype),
            flags as libc::c_ulong,
            p(data).cast(),
        )
    };
    Errno::result(r).map(drop)
}

fn fd_path(fd: &OwnedFd) -> CString {
    cstr(&format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// openat2 with RESOLVE_IN_ROOT: `path` is taken relative to `root`, and
/// neither `..` nor a symlink can leave it.
fn open_in_root(root: &OwnedFd, path: &str, flags: i32) -> Result<OwnedFd, Errno> {
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    let c = cstr(rel);
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: openat2 reads `how` and the path; the result is a new fd.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(Errno::last());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Dir,
    File,
}

/// Resolve `path` in the rootfs, making it (and its parents) if missing.
fn make_in_root(root: &OwnedFd, path: &str, kind: Kind) -> Result<OwnedFd, Errno> {
    match open_in_root(root, path, libc::O_PATH) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(e),
    }
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    let mut parent = open_in_root(root, "/", libc::O_PATH | libc::O_DIRECTORY)?;
    for (i, name) in parts.iter().enumerate() {
        let sofar = parts[..=i].join("/");
        let last = i + 1 == parts.len();
        match open_in_root(root, &sofar, libc::O_PATH) {
            Ok(fd) => {
                parent = fd;
                continue;
            }
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let cname = cstr(name);
        if last && kind == Kind::File {
            // SAFETY: openat on a directory fd we hold; the new fd is closed at once.
            let fd = unsafe {
                libc::openat(
                    parent.as_raw_fd(),
                    cname.as_ptr(),
                    libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_WRONLY
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC,
                    0o644,
                )
            };
            if fd < 0 && Errno::last() != Errno::EEXIST {
                return Err(Errno::last());
            }
            if fd >= 0 {
                unsafe { libc::close(fd) };
            }
        } else {
            // SAFETY: mkdirat on a directory fd we hold.
            let r = unsafe { libc::mkdirat(parent.as_raw_fd(), cname.as_ptr(), 0o755) };
            if r < 0 && Errno::last() != Errno::EEXIST {
                return Err(Errno::last());
            }
        }
        parent = open_in_root(root, &sofar, libc::O_PATH)?;
    }
    Ok(parent)
}

/// Attach a detached mount (from open_tree, idmapped by the shim) at `target`.
fn move_mount(from: &OwnedFd, target: &CStr) -> Result<(), Errno> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    // SAFETY: move_mount with a mount fd we hold and NUL-terminated paths.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    Errno::result(r).map(drop)
}

/// `before_pivot` runs once every mount is made, before pivot_root: the
/// createRuntime and createContainer hooks' moment.
pub fn build_rootfs(
    config: &InitConfig,
    idmapped: Option<OwnedFd>,
    before_pivot: impl FnOnce() -> Result<(), Failure>,
) -> Result<(), Failure> {
    // So that mode arguments below mean what they say.
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(0) };
    // Nothing we mount may propagate back to the host.
    sys_mount(None, c"/", None, config.rootfs_propagation, None)
        .map_err(|e| failure("make / a slave mount", e))?;

    let rootfs = cstr(&config.rootfs);
    let idmapped = match (config.idmapped, idmapped) {
        (true, Some(fd)) => Some(fd),
        (true, None) => return Err(failure("receive the idmapped root", Errno::EBADF)),
        (false, _) => None,
    };
    if let (Some(fd), Some(o)) = (&idmapped, &config.overlay) {
        move_mount(fd, &cstr(&o.lower))
            .map_err(|e| failure(format!("attach the idmapped image at {}", o.lower), e))?;
    }
    match &config.overlay {
        Some(o) => {
            let data = cstr(&format!(
                "lowerdir={},upperdir={},workdir={}",
                o.lower, o.upper, o.work
            ));
            sys_mount(Some(c"overlay"), &rootfs, Some(c"overlay"), 0, Some(&data))
                .map_err(|e| failure(format!("mount overlay on {}", config.rootfs), e))?;
        }
        None if idmapped.is_some() => {
            if let Some(fd) = &idmapped {
                move_mount(fd, &rootfs).map_err(|e| {
                    failure(
                        format!("attach the idmapped rootfs at {}", config.rootfs),
                        e,
                    )
                })?;
            }
        }
        None => {
            // pivot_root needs the new root to be a mount point.
            sys_mount(
                Some(&rootfs),
                &rootfs,
                None,
                (libc::MS_BIND | libc::MS_REC) as u64,
                None,
            )
            .map_err(|e| failure(format!("bind mount rootfs {}", config.rootfs), e))?;
        }
    }
    let root =
        open_dir(&rootfs).map_err(|e| failure(format!("open rootfs {}", config.rootfs), e))?;

    let mut dev_is_tmpfs = false;
    for m in &config.mounts {
        mount_one(&root, m, config.cgroup_path.as_deref())?;
        if m.destination == "/dev" {
            dev_is_tmpfs = m.fstype == "tmpfs";
        }
    }
    if dev_is_tmpfs {
        default_devices(&root)?;
    }
    for d in &config.devices {
        make_device(&root, d)?;
    }

    before_pivot()?;
    pivot_root(&rootfs).map_err(|e| failure("pivot_root", e))?;

    // Before the read-only paths: /proc/sys is one of them.
    for (key, value) in &config.sysctl {
        write_sysctl(key, value)?;
    }
    for p in &config.masked_paths {
        mask_path(p).map_err(|e| failure(format!("mask {p}"), e))?;
    }
    for p in &config.readonly_paths {
        readonly_path(p).map_err(|e| failure(format!("make {p} read-only"), e))?;
    }
    if let Some(h) = &config.hostname {
        nix::unistd::sethostname(h).map_err(|e| failure("set hostname", e))?;
    }
    if let Some(d) = &config.domainname {
        // SAFETY: pointer and length of a live string.
        let r = unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) };
        Errno::result(r).map_err(|e| failure("set domainname", e))?;
    }
    if config.loopback_up {
        loopback_up().map_err(|e| failure("bring lo up", e))?;
    }
    if config.readonly_root {
        remount_readonly(c"/", 0).map_err(|e| failure("make / read-only", e))?;
    }
    Ok(())
}

/// `key` is "net/ipv4/ip_forward": checked by the runtime to be a
/// namespaced sysctl, with no '..' in it.
fn write_sysctl(key: &str, value: &str) -> Result<(), Failure> {
    let path = format!("/proc/sys/{key}");
    let what = format!("sysctl {}", key.replace('/', "."));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, value.as_bytes()))
        .map_err(|e| Failure {
            step: what,
            message: match e.raw_os_error() {
                Some(n) => Errno::from_raw(n).desc().to_string(),
                None => e.to_string(),
            },
            exit_code: 1,
        })
}

fn open_dir(path: &CStr) -> Result<OwnedFd, Errno> {
    // SAFETY: open with a valid path; the result is a new fd.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(Errno::last());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

const PROPAGATION: u64 =
    (libc::MS_SHARED | libc::MS_SLAVE | libc::MS_PRIVATE | libc::MS_UNBINDABLE) as u64;

fn mount_one(root: &OwnedFd, m: &Mount, cgroup_path: Option<&str>) -> Result<(), Failure> {
    let what = format!("mount {} on {}", m.fstype, m.destination);
    let is_bind = m.flags & libc::MS_BIND as u64 != 0;
    let kind = if is_bind && !std::path::Path::new(&m.source).is_dir() {
        Kind::File
    } else {
        Kind::Dir
    };
    let target = make_in_root(root, &m.destination, kind).map_err(|e| failure(&what, e))?;
    let tpath = fd_path(&target);
    let src = cstr(&m.source);
    if m.fstype == "cgroup" {
        cgroup_mount(root, &target, m, cgroup_path).map_err(|e| failure(&what, e))?;
    } else if is_bind {
        let bind = m.flags & (libc::MS_BIND | libc::MS_REC) as u64;
        sys_mount(Some(&src), &tpath, None, bind, None).map_err(|e| failure(&what, e))?;
        // A bind mount ignores every other flag until it is remounted.
        let rest = m.flags & !(bind | PROPAGATION | libc::MS_REMOUNT as u64);
        if rest != 0 {
            let target =
                open_in_root(root, &m.destination, libc::O_PATH).map_err(|e| failure(&what, e))?;
            remount_readonly_flags(&fd_path(&target), rest).map_err(|e| failure(&what, e))?;
        }
    } else {
        let fstype = cstr(&m.fstype);
        let data = (!m.data.is_empty()).then(|| cstr(&m.data));
        sys_mount(Some(&src), &tpath, Some(&fstype), m.flags, data.as_deref())
            .map_err(|e| failure(&what, e))?;
    }
    if m.propagation != 0 {
        // The mount now sits on top of `target`: reopen to name it.
        let target =
            open_in_root(root, &m.destination, libc::O_PATH).map_err(|e| failure(&what, e))?;
        sys_mount(None, &fd_path(&target), None, m.propagation, None)
            .map_err(|e| failure(format!("set propagation of {}", m.destination), e))?;
    }
    Ok(())
}

/// Remount a bind mount with `flags`, keeping the flags the kernel may
/// have locked on it (nosuid, nodev, noexec).
fn remount_readonly_flags(target: &CStr, flags: u64) -> Result<(), Errno> {
    let locked = statvfs_flags(target);
    sys_mount(
        None,
        target,
        None,
        (libc::MS_REMOUNT | libc::MS_BIND) as u64 | flags | locked,
        None,
    )
}

fn remount_readonly(target: &CStr, extra: u64) -> Result<(), Errno> {
    remount_readonly_flags(target, libc::MS_RDONLY as u64 | extra)
}

fn statvfs_flags(path: &CStr) -> u64 {
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs writes into `s`.
    if unsafe { libc::statvfs(path.as_ptr(), &mut s) } != 0 {
        return 0;
    }
    let mut flags = 0u64;
    for (st, ms) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_RDONLY, libc::MS_RDONLY),
    ] {
        if s.f_flag & st != 0 {
            flags |= ms as u64;
        }
    }
    flags
}

/// The container's own directory in the hierarchy at `hierarchy`, if it
/// has one there (it has none in a hybrid host's cgroup2 part).
fn own_cgroup(hierarchy: &str, cgroup_path: Option<&str>) -> String {
    if let Some(p) = cgroup_path {
        let own = format!("{hierarchy}/{}", p.trim_start_matches('/'));
        if std::path::Path::new(&own).is_dir() {
            return own;
        }
    }
    hierarchy.to_string()
}

/// `cgroup` mounts show the container its own cgroup, as runc lays them
/// out: on a unified host, a fresh cgroup2 mount in a cgroup namespace of
/// its own, or else a bind of its directory; on a v1 or hybrid host, a
/// tmpfs holding a bind of its directory in each hierarchy.
fn cgroup_mount(
    root: &OwnedFd,
    target: &OwnedFd,
    m: &Mount,
    cgroup_path: Option<&str>,
) -> Result<(), Errno> {
    let tpath = fd_path(target);
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: statfs writes into `st`.
    let unified = unsafe { libc::statfs(c"/sys/fs/cgroup".as_ptr(), &mut st) } == 0
        && st.f_type == libc::CGROUP2_SUPER_MAGIC;
    if unified {
        let in_own_ns = std::fs::read_link("/proc/self/ns/cgroup").ok()
            != std::fs::read_link("/proc/1/ns/cgroup").ok();
        if in_own_ns || cgroup_path.is_none() {
            return sys_mount(Some(c"cgroup2"), &tpath, Some(c"cgroup2"), m.flags, None);
        }
        let src = cstr(&own_cgroup("/sys/fs/cgroup", cgroup_path));
        sys_mount(
            Some(&src),
            &tpath,
            None,
            (libc::MS_BIND | libc::MS_REC) as u64,
            None,
        )?;
        let rest = m.flags & !(PROPAGATION | (libc::MS_BIND | libc::MS_REC) as u64);
        if rest != 0 {
            remount_readonly_flags(&tpath, rest)?;
        }
        return Ok(());
    }
    let ro = m.flags & libc::MS_RDONLY as u64;
    sys_mount(
        Some(c"tmpfs"),
        &tpath,
        Some(c"tmpfs"),
        m.flags & !(libc::MS_RDONLY as u64),
        Some(c"mode=755"),
    )?;
    // `target` still names the directory under the tmpfs: reopen the
    // destination to reach the tmpfs itself.
    let top = open_in_root(root, &m.destination, libc::O_PATH | libc::O_DIRECTORY)?;
    let tpath = fd_path(&top);
    let mut names: Vec<String> = std::fs::read_dir("/sys/fs/cgroup")
        .map_err(|_| Errno::EIO)?
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    for name in names {
        let cname = cstr(&name);
        // SAFETY: mkdirat in the tmpfs we just mounted, through its fd.
        if unsafe { libc::mkdirat(top.as_raw_fd(), cname.as_ptr(), 0o755) } != 0
            && Errno::last() != Errno::EEXIST
        {
            return Err(Errno::last());
        }
        let sub = open_in_root(
            root,
            &format!("{}/{name}", m.destination),
            libc::O_PATH | libc::O_DIRECTORY,
        )?;
        let dir = fd_path(&sub);
        let src = cstr(&own_cgroup(&format!("/sys/fs/cgroup/{name}"), cgroup_path));
        sys_mount(
            Some(&src),
            &dir,
            None,
            (libc::MS_BIND | libc::MS_REC) as u64,
            None,
        )?;
        if ro != 0 {
            // Reopened: `sub` names the directory under the bind.
            let bound = open_in_root(
                root,
                &format!("{}/{name}", m.destination),
                libc::O_PATH | libc::O_DIRECTORY,
            )?;
            remount_readonly(&fd_path(&bound), 0)?;
        }
    }
    if ro != 0 {
        sys_mount(
            None,
            &tpath,
            None,
            (libc::MS_REMOUNT | libc::MS_RDONLY) as u64 | (m.flags & !(libc::MS_RDONLY as u64)),
            Some(c"mode=755"),
        )?;
    }
    Ok(())
}

fn default_devices(root: &OwnedFd) -> Result<(), Failure> {
    let dev = open_in_root(root, "/dev", libc::O_PATH | libc::O_DIRECTORY)
        .map_err(|e| failure("open /dev", e))?;
    for (name, major, minor) in DEFAULT_DEVICES {
        let d = protocol::Device {
            path: format!("/dev/{name}"),
            kind: 'c',
            major: major as i64,
            minor: minor as i64,
            mode: 0o666,
            uid: 0,
            gid: 0,
        };
        make_device(root, &d)?;
    }
    for (name, to) in DEV_LINKS {
        let (n, t) = (cstr(name), cstr(to));
        // SAFETY: symlinkat in a directory fd we hold.
        let r = unsafe { libc::symlinkat(t.as_ptr(), dev.as_raw_fd(), n.as_ptr()) };
        if r < 0 && Errno::last() != Errno::EEXIST {
            return Err(failure(format!("link /dev/{name}"), Errno::last()));
        }
    }
    Ok(())
}

/// mknod a device in the rootfs, or bind the host's node where mknod is not
/// allowed (in a user namespace).
fn make_device(root: &OwnedFd, d: &protocol::Device) -> Result<(), Failure> {
    let what = format!("create device {}", d.path);
    let (parent, name) = match d.path.rsplit_once('/') {
        Some((p, n)) if !n.is_empty() => (if p.is_empty() { "/" } else { p }, n),
        _ => return Err(failure(&what, Errno::EINVAL)),
    };
    let dir = make_in_root(root, parent, Kind::Dir).map_err(|e| failure(&what, e))?;
    let kind = match d.kind {
        'b' => libc::S_IFBLK,
        'p' => libc::S_IFIFO,
        _ => libc::S_IFCHR,
    };
    let cname = cstr(name);
    let dev = libc::makedev(d.major as u32, d.minor as u32);
    // SAFETY: mknodat in a directory fd we hold.
    let r = unsafe {
        libc::mknodat(
            dir.as_raw_fd(),
            cname.as_ptr(),
            kind | (d.mode & 0o7777),
            dev,
        )
    };
    if r == 0 {
        // SAFETY: fchownat on the node we just made, not following links.
        unsafe {
            libc::fchownat(
                dir.as_raw_fd(),
                cname.as_ptr(),
                d.uid,
                d.gid,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        return Ok(());
    }
    match Errno::last() {
        Errno::EEXIST => Ok(()),
        Errno::EPERM if kind != libc::S_IFIFO => {
            let target = make_in_root(root, &d.path, Kind::File).map_err(|e| failure(&what, e))?;
            let src = cstr(&d.path);
            sys_mount(
                Some(&src),
                &fd_path(&target),
                None,
                libc::MS_BIND as u64,
                None,
            )
            .map_err(|e| failure(&what, e))
        }
        e => Err(failure(&what, e)),
    }
}

fn pivot_root(rootfs: &CStr) -> Result<(), Errno> {
    nix::unistd::chdir(rootfs)?;
    // pivot_root(".", ".") stacks the old root under the new one, then we
    // detach it: no directory for it is needed in the image (runc's way).
    // SAFETY: plain syscalls on string literals.
    Errno::result(unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) })?;
    // The old root must not take our unmount back to the host.
    sys_mount(
        None,
        c".",
        None,
        (libc::MS_SLAVE | libc::MS_REC) as u64,
        None,
    )?;
    Errno::result(unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) })?;
    nix::unistd::chdir("/")
}

fn mask_path(p: &str) -> Result<(), Errno> {
    let c = cstr(p);
    match std::fs::symlink_metadata(p) {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() => sys_mount(
            Some(c"tmpfs"),
            &c,
            Some(c"tmpfs"),
            libc::MS_RDONLY as u64,
            None,
        ),
        Ok(_) => match sys_mount(Some(c"/dev/null"), &c, None, libc::MS_BIND as u64, None) {
            Err(Errno::ENOENT) => Ok(()),
            r => r,
        },
    }
}

fn readonly_path(p: &str) -> Result<(), Errno> {
    let c = cstr(p);
    match sys_mount(
        Some(&c),
        &c,
        None,
        (libc::MS_BIND | libc::MS_REC) as u64,
        None,
    ) {
        Err(Errno::ENOENT) => return Ok(()),
        r => r?,
    }
    remount_readonly(&c, libc::MS_REC as u64)
}

fn loopback_up() -> Result<(), Errno> {
    // SAFETY: a datagram socket only to carry the interface ioctls.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(Errno::last());
    }
    let sock = unsafe { OwnedFd::from_raw_fd(s) };
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    // SAFETY: ifreq is a valid, zeroed request naming "lo".
    Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) })?;
    Ok(())
}
