//! A child in a new user namespace: its uid and gid maps, and the idmapped
//! mount through which it sees an image owned by the host's root.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nsbox_process::mount_api;
use protocol::{IdMap, MountIdmap};

#[derive(Debug, thiserror::Error)]
pub enum IdmapError {
    #[error("write {file}")]
    WriteMap {
        file: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("run {tool} (Debian's uidmap package)")]
    RunTool {
        tool: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{tool}: {stderr}")]
    Tool { tool: &'static str, stderr: String },
    #[error("{path}: NUL in path")]
    Nul { path: String },
    #[error("open_tree {path}")]
    OpenTree {
        path: String,
        #[source]
        source: Errno,
    },
    #[error("open the user namespace to idmap with")]
    UserNs(#[source] std::io::Error),
    #[error("make a user namespace of the mount's maps")]
    Helper(#[source] Errno),
    #[error("idmapped mount of {path}")]
    SetAttr {
        path: String,
        #[source]
        source: Errno,
    },
    #[error(
        "idmapped mount of {path}: {} (the filesystem or kernel does not support idmapped mounts)",
        errno.desc()
    )]
    Unsupported { path: String, errno: Errno },
}

/// The uid and gid maps of a child in a new user namespace: written
/// directly by root, through the setuid newuidmap/newgidmap (which check
/// /etc/subuid and /etc/subgid) for an unprivileged user.
pub fn write_maps(pid: i32, uids: &[IdMap], gids: &[IdMap]) -> Result<(), IdmapError> {
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
            .map_err(|source| IdmapError::RunTool { tool, source })?;
        if !out.status.success() {
            return Err(IdmapError::Tool {
                tool,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
    }
    Ok(())
}

/// One write: the kernel takes a map whole or not at all.
fn write_map(pid: i32, file: &'static str, maps: &[IdMap]) -> Result<(), IdmapError> {
    let text: String = maps
        .iter()
        .map(|m| format!("{} {} {}\n", m.container, m.host, m.size))
        .collect();
    std::fs::write(format!("/proc/{pid}/{file}"), text)
        .map_err(|source| IdmapError::WriteMap { file, source })
}

/// A detached, recursive copy of the mount tree at `path`, idmapped with the
/// user namespace of `pid`: files owned by host uid H appear owned by the
/// container uid that H maps to, without a chown of the image.
pub fn idmapped_tree(path: &str, pid: i32) -> Result<OwnedFd, IdmapError> {
    let userns = std::fs::File::open(format!("/proc/{pid}/ns/user")).map_err(IdmapError::UserNs)?;
    idmapped_copy(path, true, &OwnedFd::from(userns))
}

/// An idmapped bind mount of config.json: a detached copy of `path` (its
/// whole tree if `recursive`), idmapped with a user namespace of the
/// mount's own maps, which only lives as long as this call.
pub fn idmapped_mount(
    path: &str,
    recursive: bool,
    maps: &MountIdmap,
) -> Result<OwnedFd, IdmapError> {
    let userns = userns_of(&maps.uid_mappings, &maps.gid_mappings)?;
    idmapped_copy(path, recursive, &userns)
}

/// A user namespace with these maps, to idmap with: a child unshares it
/// and waits, we write its maps and keep its namespace, and it goes.
fn userns_of(uids: &[IdMap], gids: &[IdMap]) -> Result<OwnedFd, IdmapError> {
    use nix::unistd::ForkResult;
    let helper = |source| IdmapError::Helper(source);
    let (ready_rd, ready_wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(helper)?;
    let (go_rd, go_wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(helper)?;
    // SAFETY: the shim is single-threaded here (it forks before any
    // thread exists), and the child makes raw syscalls only, then _exit.
    #[allow(unsafe_code)]
    let child = match unsafe { nix::unistd::fork() }.map_err(helper)? {
        ForkResult::Child => {
            // Our copy of the write end would keep our read from ending.
            drop((go_wr, ready_rd));
            let ok = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).is_ok()
                && nix::unistd::write(&ready_wr, &[1]).is_ok();
            let mut b = [0u8; 1];
            let _ = ok && nix::unistd::read(go_rd.as_raw_fd(), &mut b).is_ok();
            // SAFETY: _exit ends the child without running the parent's
            // destructors or atexit handlers.
            #[allow(unsafe_code)]
            unsafe {
                libc::_exit(0)
            }
        }
        ForkResult::Parent { child } => child,
    };
    drop((ready_wr, go_rd));
    let made = (|| {
        let mut b = [0u8; 1];
        if nix::unistd::read(ready_rd.as_raw_fd(), &mut b).map_err(helper)? != 1 {
            return Err(IdmapError::Helper(Errno::ECHILD));
        }
        write_map(child.as_raw(), "uid_map", uids)?;
        write_map(child.as_raw(), "gid_map", gids)?;
        std::fs::File::open(format!("/proc/{child}/ns/user"))
            .map(OwnedFd::from)
            .map_err(IdmapError::UserNs)
    })();
    drop(go_wr);
    let _ = nix::sys::wait::waitpid(child, None);
    made
}

/// A detached copy of `path`, idmapped with `userns`.
fn idmapped_copy(path: &str, recursive: bool, userns: &OwnedFd) -> Result<OwnedFd, IdmapError> {
    if path.contains('\0') {
        return Err(IdmapError::Nul { path: path.into() });
    }
    let tree =
        mount_api::open_tree_clone(path, recursive).map_err(|source| IdmapError::OpenTree {
            path: path.into(),
            source,
        })?;
    let attr = mount_api::MountAttr {
        attr_set: mount_api::MOUNT_ATTR_IDMAP,
        userns_fd: userns.as_raw_fd() as u64,
        ..Default::default()
    };
    let flags = if recursive {
        mount_api::AT_RECURSIVE
    } else {
        0
    };
    mount_api::mount_setattr(tree.as_fd(), flags, &attr).map_err(|source| match source {
        Errno::EINVAL | Errno::EOPNOTSUPP => IdmapError::Unsupported {
            path: path.into(),
            errno: source,
        },
        source => IdmapError::SetAttr {
            path: path.into(),
            source,
        },
    })?;
    Ok(tree)
}
