//! How tiny-init's binary reaches the container without letting the
//! container write the host's copy through /proc/1/exe (CVE-2019-5736).

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use nix::sys::statvfs::{statvfs, FsFlags};
use protocol::{CreateRequest, NamespaceKind, RootSwitch};

/// capability(7)'s number, which libc does not export.
const CAP_SYS_ADMIN: u8 = 21;

#[derive(Debug, thiserror::Error)]
pub enum ExeError {
    #[error("{path}: NUL in path")]
    Nul { path: String },
    #[error("open {path}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("memfd_create")]
    Memfd(#[source] Errno),
    #[error("copy {path}")]
    Copy {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("seal tiny-init")]
    Seal(#[source] Errno),
    #[error("stat {path}")]
    Stat {
        path: String,
        #[source]
        source: Errno,
    },
}

pub enum Exe {
    /// A sealed memfd copy: nothing on the host behind /proc/1/exe at all.
    /// For containers whose processes may hold CAP_SYS_ADMIN on the host.
    Memfd(OwnedFd),
    /// The host binary, bind-mounted read-only onto itself in the new mount
    /// namespace before exec (runc's other way): writes through
    /// /proc/1/exe meet a read-only mount, and only CAP_SYS_ADMIN over that
    /// mount could lift it. Shares the binary's pages among containers
    /// instead of a private copy each, and skips the copy.
    ReadOnlyBind {
        path: CString,
        /// The flags the host's mount of it already has (nosuid, ...):
        /// a remount that dropped them would be refused in a user namespace.
        locked: u64,
    },
}

impl Exe {
    /// The way for this container: a container whose processes may hold
    /// CAP_SYS_ADMIN on the host could lift a read-only mount, so it gets
    /// a private sealed copy instead.
    pub fn for_container(req: &CreateRequest) -> Result<Exe, ExeError> {
        let new_userns = req
            .namespaces
            .iter()
            .any(|n| n.kind == NamespaceKind::User && n.path.is_none());
        let host_admin = !new_userns
            && match &req.init.process.capabilities {
                None => true,
                Some(c) => c.bounding.contains(&CAP_SYS_ADMIN),
            };
        // The read-only bind is a mount, which in the host's own mount
        // namespace would be the host's.
        let host_mounts = req.init.root_switch == RootSwitch::Chroot;
        if host_admin || host_mounts {
            Exe::sealed_copy(&req.tiny_init)
        } else {
            Exe::read_only_bind(&req.tiny_init)
        }
    }

    /// Copy the binary into a sealed memfd. Executing that, rather than the
    /// file on the host, means that a container which writes to /proc/1/exe
    /// writes to nothing the host will ever run again.
    pub fn sealed_copy(path: &str) -> Result<Exe, ExeError> {
        let mut src = std::fs::File::open(path).map_err(|source| ExeError::Open {
            path: path.into(),
            source,
        })?;
        let memfd = memfd_create(
            c"tiny-init",
            MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
        )
        .map_err(ExeError::Memfd)?;
        let mut dst = std::fs::File::from(memfd);
        // std::io::copy uses copy_file_range/sendfile where it can.
        std::io::copy(&mut src, &mut dst).map_err(|source| ExeError::Copy {
            path: path.into(),
            source,
        })?;
        let seals = SealFlag::F_SEAL_SEAL
            | SealFlag::F_SEAL_SHRINK
            | SealFlag::F_SEAL_GROW
            | SealFlag::F_SEAL_WRITE;
        fcntl(dst.as_raw_fd(), FcntlArg::F_ADD_SEALS(seals)).map_err(ExeError::Seal)?;
        Ok(Exe::Memfd(OwnedFd::from(dst)))
    }

    pub fn read_only_bind(path: &str) -> Result<Exe, ExeError> {
        let c = CString::new(path).map_err(|_| ExeError::Nul { path: path.into() })?;
        let st = statvfs(c.as_c_str()).map_err(|source| ExeError::Stat {
            path: path.into(),
            source,
        })?;
        let mut locked = 0u64;
        for (st_flag, ms_flag) in [
            (FsFlags::ST_NOSUID, libc::MS_NOSUID),
            (FsFlags::ST_NODEV, libc::MS_NODEV),
        ] {
            if st.flags().contains(st_flag) {
                locked |= ms_flag;
            }
        }
        Ok(Exe::ReadOnlyBind { path: c, locked })
    }
}
