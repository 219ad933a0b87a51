//! The container's filesystem: rootfs, mounts from config.json, /dev,
//! pivot_root, masked and read-only paths, hostname.
//!
//! Every mount target inside the rootfs is resolved with openat2 and
//! RESOLVE_IN_ROOT, then mounted on through /proc/self/fd/N: a symlink in the
//! image (or one swapped in by a racing container, CVE-2021-30465) can never
//! lead a mount outside the rootfs.

mod cgroup;
mod devices;

use cgroup::cgroup_mount;
use devices::{default_devices, make_device};

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};
use protocol::{Failure, InitConfig, Mount, RootSwitch};

fn failure(step: impl Into<String>, e: Errno) -> Failure {
    Failure {
        step: step.into(),
        message: e.desc().to_string(),
        exit_code: 1,
    }
}

/// Every string of the config that becomes a C string (a path, a
/// filesystem type, mount options), by the name a person knows it by: a
/// NUL byte inside one would cut it short, and the syscall would then act
/// on, or fail on, another path than the one asked for.
fn c_strings(config: &InitConfig) -> Vec<(&'static str, &str)> {
    let mut out = vec![("rootfs", config.rootfs.as_str())];
    if let Some(o) = &config.overlay {
        out.extend([
            ("overlay lowerdir", o.lower.as_str()),
            ("overlay upperdir", o.upper.as_str()),
            ("overlay workdir", o.work.as_str()),
        ]);
    }
    for m in &config.mounts {
        out.extend([
            ("mount destination", m.destination.as_str()),
            ("mount source", &m.source),
            ("mount type", &m.fstype),
            ("mount options", &m.data),
        ]);
    }
    out.extend(
        config
            .devices
            .iter()
            .map(|d| ("device path", d.path.as_str())),
    );
    out.extend(
        config
            .masked_paths
            .iter()
            .map(|p| ("masked path", p.as_str())),
    );
    out.extend(
        config
            .readonly_paths
            .iter()
            .map(|p| ("read-only path", p.as_str())),
    );
    out.extend(config.hostname.iter().map(|h| ("hostname", h.as_str())));
    out.extend(config.domainname.iter().map(|d| ("domainname", d.as_str())));
    out.extend(
        config
            .cgroup_path
            .iter()
            .map(|c| ("cgroup path", c.as_str())),
    );
    for (key, value) in &config.sysctl {
        out.extend([("sysctl", key.as_str()), ("sysctl value", value.as_str())]);
    }
    out
}

/// The runtime refuses these before it creates anything; this is the
/// check of last resort, naming the field rather than failing on a path
/// that nobody asked for.
fn refuse_nul(config: &InitConfig) -> Result<(), Failure> {
    match c_strings(config)
        .into_iter()
        .find(|(_, s)| s.contains('\0'))
    {
        Some((field, value)) => Err(Failure {
            step: field.into(),
            message: format!("{value:?} contains a NUL byte"),
            exit_code: 1,
        }),
        None => Ok(()),
    }
}

fn mount(
    source: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: u64,
    data: Option<&str>,
) -> Result<(), Errno> {
    let flags = MsFlags::from_bits_retain(flags as libc::c_ulong);
    nix::mount::mount(source, target, fstype, flags, data)
}

fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Ours alone: an fd the kernel has just returned.
#[allow(unsafe_code)]
fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: every caller passes a descriptor that a successful open just
    // returned, which nothing else holds. (nix 0.29's open calls return a
    // RawFd.)
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// openat2 with RESOLVE_IN_ROOT: `path` is taken relative to `root`, and
/// neither `..` nor a symlink can leave it.
fn open_in_root(root: &OwnedFd, path: &str, flags: OFlag) -> Result<OwnedFd, Errno> {
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    nix::fcntl::openat2(root.as_raw_fd(), rel, how).map(owned)
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Dir,
    File,
}

/// Resolve `path` in the rootfs, making it (and its parents) if missing.
fn make_in_root(root: &OwnedFd, path: &str, kind: Kind) -> Result<OwnedFd, Errno> {
    match open_in_root(root, path, OFlag::O_PATH) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(e),
    }
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    let mut parent = open_in_root(root, "/", OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    for (i, name) in parts.iter().enumerate() {
        let sofar = parts[..=i].join("/");
        let last = i + 1 == parts.len();
        match open_in_root(root, &sofar, OFlag::O_PATH) {
            Ok(fd) => {
                parent = fd;
                continue;
            }
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let made = if last && kind == Kind::File {
            let flags = OFlag::O_CREAT
                | OFlag::O_EXCL
                | OFlag::O_WRONLY
                | OFlag::O_NOFOLLOW
                | OFlag::O_CLOEXEC;
            let mode = Mode::from_bits_truncate(0o644);
            nix::fcntl::openat(Some(parent.as_raw_fd()), *name, flags, mode)
                .map(|fd| drop(owned(fd)))
        } else {
            let mode = Mode::from_bits_truncate(0o755);
            nix::sys::stat::mkdirat(Some(parent.as_raw_fd()), *name, mode)
        };
        match made {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
        parent = open_in_root(root, &sofar, OFlag::O_PATH)?;
    }
    Ok(parent)
}

/// Attach a detached mount (from open_tree, idmapped by the shim) at `target`.
fn move_mount(from: &OwnedFd, target: &str) -> Result<(), Errno> {
    use std::os::fd::AsFd;
    nsbox_process::mount_api::move_mount(from.as_fd(), target)
}

/// `before_pivot` runs once every mount is made, before pivot_root: the
/// createRuntime and createContainer hooks' moment.
pub fn build_rootfs(
    config: &InitConfig,
    idmapped: Option<OwnedFd>,
    idmapped_mounts: Vec<OwnedFd>,
    before_pivot: impl FnOnce() -> Result<(), Failure>,
) -> Result<(), Failure> {
    refuse_nul(config)?;
    // So that mode arguments below mean what they say.
    nix::sys::stat::umask(Mode::empty());
    if config.root_switch == RootSwitch::Chroot {
        return shared_mount_namespace(config, before_pivot);
    }
    // Nothing we mount may propagate back to the host, unless asked for
    // (rshared: a container's volumes then reach the host's, as with runc).
    // An unbindable / would refuse the rootfs' bind: it is made so last.
    let start = match config.rootfs_propagation {
        p if p == 0 || p & libc::MS_UNBINDABLE as u64 != 0 => SLAVE_REC,
        p => p,
    };
    mount(None, "/", None, start, None).map_err(|e| failure("set the propagation of /", e))?;

    let rootfs = config.rootfs.as_str();
    // pivot_root refuses a new root whose parent mount is shared (EINVAL),
    // and a bind of the rootfs in a shared mount would reach the host's
    // copy of it: the mount holding the rootfs is made private first, as
    // runc does (only it, only when shared).
    make_parent_private(rootfs)?;
    let idmapped = match (config.idmapped, idmapped) {
        (true, Some(fd)) => Some(fd),
        (true, None) => return Err(failure("receive the idmapped root", Errno::EBADF)),
        (false, _) => None,
    };
    if let (Some(fd), Some(o)) = (&idmapped, &config.overlay) {
        let what = format!("attach the idmapped image at {}", o.lower);
        move_mount(fd, &o.lower).map_err(|e| failure(&what, e))?;
        // As the idmapped rootfs below: never a peer of the host's.
        mount(None, &o.lower, None, SLAVE_REC, None).map_err(|e| failure(&what, e))?;
    }
    match &config.overlay {
        Some(o) => {
            let data = format!(
                "lowerdir={},upperdir={},workdir={}",
                o.lower, o.upper, o.work
            );
            mount(Some("overlay"), rootfs, Some("overlay"), 0, Some(&data))
                .map_err(|e| failure(format!("mount overlay on {}", config.rootfs), e))?;
        }
        None if idmapped.is_some() => {
            if let Some(fd) = &idmapped {
                move_mount(fd, rootfs).map_err(|e| {
                    failure(
                        format!("attach the idmapped rootfs at {}", config.rootfs),
                        e,
                    )
                })?;
            }
        }
        None => {
            // pivot_root needs the new root to be a mount point.
            mount(
                Some(rootfs),
                rootfs,
                None,
                (libc::MS_BIND | libc::MS_REC) as u64,
                None,
            )
            .map_err(|e| failure(format!("bind mount rootfs {}", config.rootfs), e))?;
        }
    }
    // An idmapped tree comes from the shim's mount namespace as a peer of
    // the host's mount when that one is shared (as on a systemd host):
    // a slave, like everything else here, so that pivot_root takes it
    // (it refuses a shared new root) and nothing mounted on it reaches
    // the host.
    mount(None, rootfs, None, SLAVE_REC, None)
        .map_err(|e| failure(format!("make rootfs {} a slave mount", config.rootfs), e))?;
    let root =
        open_dir(rootfs).map_err(|e| failure(format!("open rootfs {}", config.rootfs), e))?;

    let mut dev_is_tmpfs = false;
    let mut idmapped_mounts = idmapped_mounts.into_iter();
    for m in &config.mounts {
        let tree = match m.idmap {
            Some(_) => Some(idmapped_mounts.next().ok_or_else(|| {
                failure(
                    format!("receive the idmapped mount on {}", m.destination),
                    Errno::EBADF,
                )
            })?),
            None => None,
        };
        mount_one(&root, m, tree, config.cgroup_path.as_deref())?;
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
    if config.root_switch == RootSwitch::MoveRoot {
        move_root(rootfs).map_err(|e| failure("move the rootfs onto / (--no-pivot)", e))?;
    } else {
        pivot_root(rootfs).map_err(|e| failure("pivot_root", e))?;
    }

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
    set_names(config)?;
    if config.readonly_root {
        remount_readonly("/", 0).map_err(|e| failure("make / read-only", e))?;
    }
    // The propagation asked for, on the container's root itself now (on
    // the old root it would have reached the host's), last: an unbindable
    // root would refuse the read-only binds above. rshared makes the root
    // a shared mount of its own; private and slave roots are so already
    // (the rootfs was bound from a private mount), and applying them again
    // would take their own propagation from shared volumes.
    if config.rootfs_propagation & (libc::MS_SHARED | libc::MS_UNBINDABLE) as u64 != 0 {
        mount(None, "/", None, config.rootfs_propagation, None)
            .map_err(|e| failure("set the propagation of / (linux.rootfsPropagation)", e))?;
    }
    Ok(())
}

const SLAVE_REC: u64 = (libc::MS_SLAVE | libc::MS_REC) as u64;

/// Hostname, domainname and the loopback interface: the namespaces'
/// part of the inside, the same with or without a mount namespace.
fn set_names(config: &InitConfig) -> Result<(), Failure> {
    if let Some(h) = &config.hostname {
        nix::unistd::sethostname(h).map_err(|e| failure("set hostname", e))?;
    }
    if let Some(d) = &config.domainname {
        setdomainname(d).map_err(|e| failure("set domainname", e))?;
    }
    if config.loopback_up {
        loopback_up().map_err(|e| failure("bring lo up", e))?;
    }
    Ok(())
}

/// No mount namespace of the container's own: we are in the host's (the
/// runtime's), where every mount would stay behind on the host. Not a
/// single one is made (the runtime refused every setting that needs one:
/// mounts, a read-only root, masked paths, devices, propagation); the
/// container's root is the rootfs by chroot(2), as runc has it then.
fn shared_mount_namespace(
    config: &InitConfig,
    before_root: impl FnOnce() -> Result<(), Failure>,
) -> Result<(), Failure> {
    before_root()?;
    // Through the host's /proc, before the chroot leaves it behind: a
    // sysctl file answers for the writer's own namespaces.
    for (key, value) in &config.sysctl {
        write_sysctl(key, value)?;
    }
    let chroot = |dir: &str| {
        nix::unistd::chdir(dir)?;
        nix::unistd::chroot(".")?;
        nix::unistd::chdir("/")
    };
    chroot(&config.rootfs).map_err(|e| failure(format!("chroot to {}", config.rootfs), e))?;
    set_names(config)
}

/// `--no-pivot`: the rootfs moved onto / and chroot'ed into, for a root
/// that pivot_root refuses (an initramfs), as runc's msMoveRoot. The old
/// root stays under it, which a process with CAP_SYS_CHROOT could reach:
/// pivot_root's detached old root is the safer default.
fn move_root(rootfs: &str) -> Result<(), Errno> {
    nix::unistd::chdir(rootfs)?;
    mount(Some(rootfs), "/", None, libc::MS_MOVE as u64, None)?;
    nix::unistd::chroot(".")?;
    nix::unistd::chdir("/")
}

fn setdomainname(name: &str) -> Result<(), Errno> {
    // SAFETY: setdomainname (which nix lacks) reads `len` bytes of a live
    // string.
    #[allow(unsafe_code)]
    let r = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    Errno::result(r).map(drop)
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

fn open_dir(path: &str) -> Result<OwnedFd, Errno> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    nix::fcntl::open(path, flags, Mode::empty()).map(owned)
}

const PROPAGATION: u64 =
    (libc::MS_SHARED | libc::MS_SLAVE | libc::MS_PRIVATE | libc::MS_UNBINDABLE) as u64;

/// `tree`: the idmapped copy of its source that the shim made, for an
/// idmapped bind mount.
fn mount_one(
    root: &OwnedFd,
    m: &Mount,
    tree: Option<OwnedFd>,
    cgroup_path: Option<&str>,
) -> Result<(), Failure> {
    let what = format!("mount {} on {}", m.fstype, m.destination);
    if matches!(m.fstype.as_str(), "proc" | "sysfs") {
        ordinary_directory(root, m, &what)?;
    }
    let is_bind = m.flags & libc::MS_BIND as u64 != 0;
    let kind = if is_bind && !std::path::Path::new(&m.source).is_dir() {
        Kind::File
    } else {
        Kind::Dir
    };
    let target = make_in_root(root, &m.destination, kind).map_err(|e| failure(&what, e))?;
    let tpath = fd_path(&target);
    let src = m.source.as_str();
    if m.fstype == "cgroup" {
        cgroup_mount(root, &target, m, cgroup_path).map_err(|e| failure(&what, e))?;
    } else if is_bind {
        let bind = m.flags & (libc::MS_BIND | libc::MS_REC) as u64;
        match &tree {
            Some(t) => {
                use std::os::fd::AsFd;
                nsbox_process::mount_api::move_mount_to(t.as_fd(), target.as_fd())
                    .map_err(|e| failure(&what, e))?;
                // A copy of a shared host mount is its peer: never that.
                let on_top = open_in_root(root, &m.destination, OFlag::O_PATH)
                    .map_err(|e| failure(&what, e))?;
                mount(None, &fd_path(&on_top), None, SLAVE_REC, None)
                    .map_err(|e| failure(&what, e))?;
            }
            None => mount(Some(src), &tpath, None, bind, None).map_err(|e| failure(&what, e))?,
        }
        // A bind mount ignores every other flag until it is remounted.
        let rest = m.flags & !(bind | PROPAGATION | libc::MS_REMOUNT as u64);
        if rest != 0 {
            let target =
                open_in_root(root, &m.destination, OFlag::O_PATH).map_err(|e| failure(&what, e))?;
            remount_readonly_flags(&fd_path(&target), rest).map_err(|e| failure(&what, e))?;
        }
    } else {
        let data = (!m.data.is_empty()).then_some(m.data.as_str());
        mount(Some(src), &tpath, Some(&m.fstype), m.flags, data).map_err(|e| failure(&what, e))?;
    }
    if m.propagation != 0 {
        // The mount now sits on top of `target`: reopen to name it.
        let target =
            open_in_root(root, &m.destination, OFlag::O_PATH).map_err(|e| failure(&what, e))?;
        mount(None, &fd_path(&target), None, m.propagation, None)
            .map_err(|e| failure(format!("set propagation of {}", m.destination), e))?;
    }
    if !m.recursive.is_empty() {
        set_recursive(root, m).map_err(|e| {
            failure(
                format!(
                    "set the recursive options of {} (mount_setattr)",
                    m.destination
                ),
                e,
            )
        })?;
    }
    Ok(())
}

/// `rro`, `rnosuid`, ...: on the mount and every mount below it, in one
/// mount_setattr(2) with AT_RECURSIVE.
fn set_recursive(root: &OwnedFd, m: &Mount) -> Result<(), Errno> {
    use nsbox_process::mount_api::{mount_setattr, MountAttr, AT_RECURSIVE};
    use std::os::fd::AsFd;
    let target = open_in_root(root, &m.destination, OFlag::O_PATH)?;
    let attr = MountAttr {
        attr_set: m.recursive.set,
        attr_clr: m.recursive.clear,
        ..Default::default()
    };
    mount_setattr(target.as_fd(), AT_RECURSIVE, &attr)
}

/// proc and sysfs go on a directory of the image, never through a symlink
/// nor onto a file, as runc has it: an image whose /proc is a symlink
/// would choose where procfs lands, and so what the masked paths cover
/// (CVE-2019-16884, CVE-2019-19921). A missing one is made, as any other.
fn ordinary_directory(root: &OwnedFd, m: &Mount, what: &str) -> Result<(), Failure> {
    let found = match open_in_root(root, &m.destination, OFlag::O_PATH | OFlag::O_NOFOLLOW) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(failure(what, e)),
    };
    let st = nix::sys::stat::fstat(found.as_raw_fd()).map_err(|e| failure(what, e))?;
    let kind = match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFDIR => return Ok(()),
        SFlag::S_IFLNK => "a symlink",
        _ => "not a directory",
    };
    Err(Failure {
        step: what.into(),
        message: format!(
            "{} is {kind} in the image: {} is mounted only on an ordinary directory",
            m.destination, m.fstype
        ),
        exit_code: 1,
    })
}

/// Remount a bind mount with `flags`, keeping the flags the kernel may
/// have locked on it (nosuid, nodev, noexec).
fn remount_readonly_flags(target: &str, flags: u64) -> Result<(), Errno> {
    let locked = statvfs_flags(target);
    mount(
        None,
        target,
        None,
        (libc::MS_REMOUNT | libc::MS_BIND) as u64 | flags | locked,
        None,
    )
}

fn remount_readonly(target: &str, extra: u64) -> Result<(), Errno> {
    remount_readonly_flags(target, libc::MS_RDONLY as u64 | extra)
}

fn statvfs_flags(path: &str) -> u64 {
    use nix::sys::statvfs::FsFlags;
    let Ok(s) = nix::sys::statvfs::statvfs(path) else {
        return 0;
    };
    let mut flags = 0u64;
    for (st, ms) in [
        (FsFlags::ST_NOSUID, libc::MS_NOSUID),
        (FsFlags::ST_NODEV, libc::MS_NODEV),
        (FsFlags::ST_NOEXEC, libc::MS_NOEXEC),
        (FsFlags::ST_RDONLY, libc::MS_RDONLY),
    ] {
        if s.flags().contains(st) {
            flags |= ms as u64;
        }
    }
    flags
}

fn make_parent_private(rootfs: &str) -> Result<(), Failure> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Failure::from_error("read /proc/self/mountinfo", &e))?;
    if let Some((point, true)) = nsbox_process::mountinfo::holding_mount(&text, rootfs) {
        mount(None, &point, None, libc::MS_PRIVATE as u64, None)
            .map_err(|e| failure(format!("make {point} (which holds the rootfs) private"), e))?;
    }
    Ok(())
}

fn pivot_root(rootfs: &str) -> Result<(), Errno> {
    let old_root = open_dir("/")?;
    nix::unistd::chdir(rootfs)?;
    // pivot_root(".", ".") stacks the old root over the new one, then we
    // detach it: no directory for it is needed in the image (runc's way).
    nix::unistd::pivot_root(".", ".")?;
    // "." is still the new root here (a path names the mount it starts in,
    // not one stacked on it): step into the old root to name it, or the
    // slave below would land on the container's own mounts, and an
    // rshared volume would no longer reach the host.
    nix::unistd::fchdir(old_root.as_raw_fd())?;
    // The old root must not take our unmount back to the host.
    mount(
        None,
        ".",
        None,
        (libc::MS_SLAVE | libc::MS_REC) as u64,
        None,
    )?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH)?;
    nix::unistd::chdir("/")
}

fn mask_path(p: &str) -> Result<(), Errno> {
    match std::fs::symlink_metadata(p) {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() => mount(
            Some("tmpfs"),
            p,
            Some("tmpfs"),
            libc::MS_RDONLY as u64,
            None,
        ),
        Ok(_) => match mount(Some("/dev/null"), p, None, libc::MS_BIND as u64, None) {
            Err(Errno::ENOENT) => Ok(()),
            r => r,
        },
    }
}

fn readonly_path(p: &str) -> Result<(), Errno> {
    match mount(
        Some(p),
        p,
        None,
        (libc::MS_BIND | libc::MS_REC) as u64,
        None,
    ) {
        Err(Errno::ENOENT) => return Ok(()),
        r => r?,
    }
    remount_readonly(p, libc::MS_REC as u64)
}

/// Two ioctls: tiny-init links no netlink library for one flag.
fn loopback_up() -> Result<(), Errno> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    // A datagram socket only to carry the interface ioctls.
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let mut req = libc::ifreq {
        ifr_name: [0; libc::IFNAMSIZ],
        ifr_ifru: libc::__c_anonymous_ifr_ifru { ifru_flags: 0 },
    };
    for (i, b) in b"lo".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS (which nix does not wrap) read
    // and write the `struct ifreq` they are given, which names "lo"; the
    // union holds the flags between the two.
    #[allow(unsafe_code)]
    unsafe {
        Errno::result(libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCGIFFLAGS as _,
            &mut req,
        ))?;
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        Errno::result(libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> InitConfig {
        InitConfig {
            rootfs: "/rootfs".into(),
            mounts: vec![Mount {
                destination: "/proc".into(),
                fstype: "proc".into(),
                source: "proc".into(),
                flags: 0,
                propagation: 0,
                recursive: Default::default(),
                idmap: None,
                data: String::new(),
            }],
            masked_paths: vec!["/proc/kcore".into()],
            hostname: Some("box".into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_config_without_nul_passes() {
        refuse_nul(&config()).unwrap();
    }

    #[test]
    fn a_nul_is_refused_by_the_field_it_is_in() {
        let mut c = config();
        c.mounts[0].destination = "/pr\0oc".into();
        let f = refuse_nul(&c).unwrap_err();
        assert_eq!(
            f.to_string(),
            r#"mount destination: "/pr\0oc" contains a NUL byte"#
        );
        let mut c = config();
        c.masked_paths.push("/sys/\0".into());
        assert_eq!(refuse_nul(&c).unwrap_err().step, "masked path");
    }
}
