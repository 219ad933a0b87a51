//! The new mount API's calls that nix 0.29 lacks: open_tree(2),
//! mount_setattr(2) and move_mount(2). The shim makes idmapped trees with
//! them on the host; tiny-init attaches them and sets recursive mount
//! attributes (`rro`, `rnosuid`...) in the container.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

/// AT_RECURSIVE of <linux/fcntl.h>: the whole tree below, not one mount.
pub const AT_RECURSIVE: libc::c_uint = 0x8000;
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// MOUNT_ATTR_* of <linux/mount.h>.
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
/// The access-time field: clear it whenever one of its values is set.
pub const MOUNT_ATTR_ATIME: u64 = 0x70;
pub const MOUNT_ATTR_RELATIME: u64 = 0x0;
pub const MOUNT_ATTR_NOATIME: u64 = 0x10;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
pub const MOUNT_ATTR_IDMAP: u64 = 0x10_0000;
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x20_0000;

/// struct mount_attr of <linux/mount.h>.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}

/// A detached copy of the mount (with `recursive`, the tree) at `path`:
/// open_tree(2) with OPEN_TREE_CLONE.
pub fn open_tree_clone(path: &str, recursive: bool) -> Result<OwnedFd, Errno> {
    let cpath = CString::new(path).map_err(|_| Errno::EINVAL)?;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: open_tree reads a NUL-terminated path and returns a new fd.
    #[allow(unsafe_code)]
    let tree = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, cpath.as_ptr(), flags) };
    if tree < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the fd is new and nothing else owns it.
    #[allow(unsafe_code)]
    Ok(unsafe { OwnedFd::from_raw_fd(tree as RawFd) })
}

/// mount_setattr(2) on the mount that `fd` names (an O_PATH fd or a
/// detached tree), `flags` AT_RECURSIVE or 0.
pub fn mount_setattr(fd: BorrowedFd, flags: libc::c_uint, attr: &MountAttr) -> Result<(), Errno> {
    // SAFETY: mount_setattr reads `attr`, of the size given, and an empty
    // path; it writes no memory of ours.
    #[allow(unsafe_code)]
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(r).map(drop)
}

/// Attach the detached mount `from` on the directory or file that the
/// O_PATH fd `target` names (MOVE_MOUNT_T_EMPTY_PATH: no path to walk).
pub fn move_mount_to(from: BorrowedFd, target: BorrowedFd) -> Result<(), Errno> {
    const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
    raw_move_mount(from, target.as_raw_fd(), c"", MOVE_MOUNT_T_EMPTY_PATH)
}

/// Attach the detached mount `from` at `target`, a path.
pub fn move_mount(from: BorrowedFd, target: &str) -> Result<(), Errno> {
    let target = CString::new(target).map_err(|_| Errno::EINVAL)?;
    raw_move_mount(from, libc::AT_FDCWD, &target, 0)
}

fn raw_move_mount(
    from: BorrowedFd,
    to_dir: RawFd,
    to_path: &std::ffi::CStr,
    to_flags: libc::c_uint,
) -> Result<(), Errno> {
    // SAFETY: move_mount with fds we hold and NUL-terminated paths; it
    // writes no memory of ours.
    #[allow(unsafe_code)]
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            c"".as_ptr(),
            to_dir,
            to_path.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | to_flags,
        )
    };
    Errno::result(r).map(drop)
}
