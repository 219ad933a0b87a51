//! A child in a new user namespace: its uid and gid maps, and the idmapped
//! mount through which it sees an image owned by the host's root.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nsbox_process::mount_api;
use protocol::IdMap;

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
    #[error("open tiny-init's user namespace")]
    UserNs(#[source] std::io::Error),
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
    if path.contains('\0') {
        return Err(IdmapError::Nul { path: path.into() });
    }
    let tree = mount_api::open_tree_clone(path, true).map_err(|source| IdmapError::OpenTree {
        path: path.into(),
        source,
    })?;
    let userns = std::fs::File::open(format!("/proc/{pid}/ns/user")).map_err(IdmapError::UserNs)?;
    let attr = mount_api::MountAttr {
        attr_set: mount_api::MOUNT_ATTR_IDMAP,
        userns_fd: userns.as_raw_fd() as u64,
        ..Default::default()
    };
    mount_api::mount_setattr(tree.as_fd(), mount_api::AT_RECURSIVE, &attr).map_err(|source| {
        match source {
            Errno::EINVAL | Errno::EOPNOTSUPP => IdmapError::Unsupported {
                path: path.into(),
                errno: source,
            },
            source => IdmapError::SetAttr {
                path: path.into(),
                source,
            },
        }
    })?;
    Ok(tree)
}
