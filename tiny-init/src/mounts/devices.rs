//! /dev: the standard devices and their links, and linux.devices, made
//! with mknod, or bound from the host where mknod is not allowed.

use super::*;

pub(super) const DEFAULT_DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

pub(super) const DEV_LINKS: [(&str, &str); 6] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
    ("core", "/proc/kcore"),
];

pub(super) fn default_devices(root: &OwnedFd) -> Result<(), Failure> {
    let dev = open_in_root(root, "/dev", OFlag::O_PATH | OFlag::O_DIRECTORY)
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
        match nix::unistd::symlinkat(to, Some(dev.as_raw_fd()), name) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(failure(format!("link /dev/{name}"), e)),
        }
    }
    Ok(())
}

/// mknod a device in the rootfs, or bind the host's node where mknod is not
/// allowed (in a user namespace).
pub(super) fn make_device(root: &OwnedFd, d: &protocol::Device) -> Result<(), Failure> {
    let what = format!("create device {}", d.path);
    let (parent, name) = match d.path.rsplit_once('/') {
        Some((p, n)) if !n.is_empty() => (if p.is_empty() { "/" } else { p }, n),
        _ => return Err(failure(&what, Errno::EINVAL)),
    };
    let dir = make_in_root(root, parent, Kind::Dir).map_err(|e| failure(&what, e))?;
    let kind = match d.kind {
        'b' => SFlag::S_IFBLK,
        'p' => SFlag::S_IFIFO,
        _ => SFlag::S_IFCHR,
    };
    let dev = libc::makedev(d.major as u32, d.minor as u32);
    let mode = Mode::from_bits_truncate(d.mode & 0o7777);
    match nix::sys::stat::mknodat(Some(dir.as_raw_fd()), name, kind, mode, dev) {
        Ok(()) => {
            // As the config asks, if the kernel lets us; the node is made.
            let _ = nix::unistd::fchownat(
                Some(dir.as_raw_fd()),
                name,
                Some(nix::unistd::Uid::from_raw(d.uid)),
                Some(nix::unistd::Gid::from_raw(d.gid)),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            );
            Ok(())
        }
        Err(Errno::EEXIST) => Ok(()),
        Err(Errno::EPERM) if kind != SFlag::S_IFIFO => {
            let target = make_in_root(root, &d.path, Kind::File).map_err(|e| failure(&what, e))?;
            mount(
                Some(d.path.as_str()),
                &fd_path(&target),
                None,
                libc::MS_BIND as u64,
                None,
            )
            .map_err(|e| failure(&what, e))
        }
        Err(e) => Err(failure(&what, e)),
    }
}
