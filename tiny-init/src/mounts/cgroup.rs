//! `cgroup` mounts: the container sees its own cgroup, as runc lays them
//! out, on v1 and on v2.

use super::*;

/// The container's own directory in the hierarchy at `hierarchy`, if it
/// has one there (it has none in a hybrid host's cgroup2 part).
pub(super) fn own_cgroup(hierarchy: &str, cgroup_path: Option<&str>) -> String {
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
pub(super) fn cgroup_mount(
    root: &OwnedFd,
    target: &OwnedFd,
    m: &Mount,
    cgroup_path: Option<&str>,
) -> Result<(), Errno> {
    let tpath = fd_path(target);
    let unified = nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
    if unified {
        let in_own_ns = std::fs::read_link("/proc/self/ns/cgroup").ok()
            != std::fs::read_link("/proc/1/ns/cgroup").ok();
        if in_own_ns || cgroup_path.is_none() {
            return mount(Some("cgroup2"), &tpath, Some("cgroup2"), m.flags, None);
        }
        let src = own_cgroup("/sys/fs/cgroup", cgroup_path);
        mount(
            Some(src.as_str()),
            &tpath,
            None,
            (libc::MS_BIND | libc::MS_REC) as u64,
            None,
        )?;
        let rest = m.flags & !(PROPAGATION | (libc::MS_BIND | libc::MS_REC) as u64);
        if rest != 0 {
            // `target` names the directory under the bind, which is no
            // mount point to remount (EINVAL): reopen the destination.
            let bound = open_in_root(root, &m.destination, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
            remount_readonly_flags(&fd_path(&bound), rest)?;
        }
        return Ok(());
    }
    let ro = m.flags & libc::MS_RDONLY as u64;
    mount(
        Some("tmpfs"),
        &tpath,
        Some("tmpfs"),
        m.flags & !(libc::MS_RDONLY as u64),
        Some("mode=755"),
    )?;
    // `target` still names the directory under the tmpfs: reopen the
    // destination to reach the tmpfs itself.
    let top = open_in_root(root, &m.destination, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    let tpath = fd_path(&top);
    let mut names: Vec<String> = std::fs::read_dir("/sys/fs/cgroup")
        .map_err(|_| Errno::EIO)?
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    for name in names {
        let mode = Mode::from_bits_truncate(0o755);
        match nix::sys::stat::mkdirat(Some(top.as_raw_fd()), name.as_str(), mode) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
        let sub = open_in_root(
            root,
            &format!("{}/{name}", m.destination),
            OFlag::O_PATH | OFlag::O_DIRECTORY,
        )?;
        let dir = fd_path(&sub);
        let src = own_cgroup(&format!("/sys/fs/cgroup/{name}"), cgroup_path);
        mount(
            Some(src.as_str()),
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
                OFlag::O_PATH | OFlag::O_DIRECTORY,
            )?;
            remount_readonly(&fd_path(&bound), 0)?;
        }
    }
    if ro != 0 {
        mount(
            None,
            &tpath,
            None,
            (libc::MS_REMOUNT | libc::MS_RDONLY) as u64 | (m.flags & !(libc::MS_RDONLY as u64)),
            Some("mode=755"),
        )?;
    }
    Ok(())
}
