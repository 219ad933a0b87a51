//! The messages that nsbox's processes exchange, and their framing.
//!
//! One message is one datagram on a `SOCK_SEQPACKET` socket, encoded with
//! bincode; file descriptors travel beside it with `SCM_RIGHTS`. The first
//! message on every connection is a `Hello` carrying [`PROTOCOL_VERSION`], so
//! that a runtime and a shim of different builds fail clearly instead of
//! misparsing each other.
//!
//! Everything a shim reads from tiny-init comes from inside the container and
//! is untrusted: datagrams are bounded by [`MAX_MESSAGE`], decoding errors are
//! errors, and channels are typed per role so that an unexpected message is
//! reported as such.

#![deny(unsafe_code)]

use std::os::fd::OwnedFd;

mod channel;
mod messages;
pub mod report;
mod resources;

pub use channel::{decode, seqpacket_pair, Channel, ChannelError, MAX_FDS, MAX_MESSAGE};
pub use messages::*;
pub use resources::*;

/// Bumped whenever a message changes shape.
pub const PROTOCOL_VERSION: u32 = 9;

/// runtime's end of a connection to a shim.
pub type RuntimeChannel = Channel<RuntimeToShim, ShimToRuntime>;
/// shim's end of a connection from a runtime.
pub type ShimRuntimeChannel = Channel<ShimToRuntime, RuntimeToShim>;
/// shim's end of its socketpair with tiny-init.
pub type ShimInitChannel = Channel<ShimToInit, InitToShim>;
/// tiny-init's end of its socketpair with the shim.
pub type InitChannel = Channel<InitToShim, ShimToInit>;

fn unexpected<T: std::fmt::Debug>(expected: &'static str, got: &T) -> ChannelError {
    ChannelError::Unexpected {
        expected,
        got: variant_name(got),
    }
}

/// The variant's name alone: a message's payload may be large or hostile.
fn variant_name<T: std::fmt::Debug>(msg: &T) -> String {
    let full = format!("{msg:?}");
    full.split([' ', '(', '{'])
        .next()
        .unwrap_or("")
        .chars()
        .take(64)
        .collect()
}

impl RuntimeChannel {
    pub fn send_hello(&self) -> Result<(), ChannelError> {
        self.send(
            &RuntimeToShim::Hello {
                version: PROTOCOL_VERSION,
            },
            &[],
        )
    }

    /// The reply to `Create`: the container is created (with the pty
    /// master, for a terminal), or why not. A `MakeScope` on the way is
    /// answered with what `make_scope` does with its pid.
    pub fn wait_for_created(
        &self,
        mut make_scope: impl FnMut(i32) -> Result<(), Failure>,
    ) -> Result<(Created, Vec<OwnedFd>), ChannelError> {
        loop {
            match self.recv()? {
                (ShimToRuntime::Created(c), fds) => return Ok((c, fds)),
                (ShimToRuntime::Error(f), _) => return Err(ChannelError::Failed(f)),
                (ShimToRuntime::MakeScope { pid }, _) => {
                    let made = make_scope(pid).err();
                    self.send(&RuntimeToShim::ScopeMade(made), &[])?;
                }
                (other, _) => return Err(unexpected("Created", &other)),
            }
        }
    }

    pub fn wait_for_started(&self) -> Result<i32, ChannelError> {
        match self.recv()?.0 {
            ShimToRuntime::Started { pid } => Ok(pid),
            ShimToRuntime::Error(f) => Err(ChannelError::Failed(f)),
            other => Err(unexpected("Started", &other)),
        }
    }

    pub fn wait_for_exec_started(&self) -> Result<(i32, Vec<OwnedFd>), ChannelError> {
        match self.recv()? {
            (ShimToRuntime::ExecStarted { pid }, fds) => Ok((pid, fds)),
            (ShimToRuntime::Error(f), _) => Err(ChannelError::Failed(f)),
            (other, _) => Err(unexpected("ExecStarted", &other)),
        }
    }

    /// The reply to `Attach`: a stream to the container's terminal, and
    /// a dup of the pty master for its window size.
    pub fn wait_for_attached(&self) -> Result<Vec<OwnedFd>, ChannelError> {
        match self.recv()? {
            (ShimToRuntime::Attached, fds) => Ok(fds),
            (ShimToRuntime::Error(f), _) => Err(ChannelError::Failed(f)),
            (other, _) => Err(unexpected("Attached", &other)),
        }
    }

    pub fn wait_for_exit(&self) -> Result<i32, ChannelError> {
        match self.recv()?.0 {
            ShimToRuntime::Exited { code } => Ok(code),
            ShimToRuntime::Error(f) => Err(ChannelError::Failed(f)),
            other => Err(unexpected("Exited", &other)),
        }
    }
}

impl ShimRuntimeChannel {
    /// The first message of a connection, checked for our version.
    pub fn wait_for_hello(&self) -> Result<(), ChannelError> {
        match self.recv()?.0 {
            RuntimeToShim::Hello { version } => check_version(version),
            other => Err(unexpected("Hello", &other)),
        }
    }

    /// The request, with the descriptors to preserve for the workload.
    pub fn wait_for_create(&self) -> Result<(Box<CreateRequest>, Vec<OwnedFd>), ChannelError> {
        match self.recv()? {
            (RuntimeToShim::Create(c), fds) => Ok((c, fds)),
            (other, _) => Err(unexpected("Create", &other)),
        }
    }

    /// The runtime's word on the cgroup it makes after `Create`.
    pub fn wait_for_cgroup(&self) -> Result<(), ChannelError> {
        match self.recv()?.0 {
            RuntimeToShim::CgroupMade(None) => Ok(()),
            RuntimeToShim::CgroupMade(Some(f)) => Err(ChannelError::Failed(f)),
            other => Err(unexpected("CgroupMade", &other)),
        }
    }

    pub fn send_error(&self, failure: Failure) -> Result<(), ChannelError> {
        self.send(&ShimToRuntime::Error(failure), &[])
    }

    /// Ask the runtime to have systemd make the scope with `pid` in it.
    pub fn make_scope(&self, pid: i32) -> Result<(), ChannelError> {
        self.send(&ShimToRuntime::MakeScope { pid }, &[])?;
        match self.recv()?.0 {
            RuntimeToShim::ScopeMade(None) => Ok(()),
            RuntimeToShim::ScopeMade(Some(f)) => Err(ChannelError::Failed(f)),
            other => Err(unexpected("ScopeMade", &other)),
        }
    }
}

impl ShimInitChannel {
    pub fn wait_for_hello(&self) -> Result<(), ChannelError> {
        match self.recv()?.0 {
            InitToShim::Hello { version } => check_version(version),
            InitToShim::Failed(f) => Err(ChannelError::Failed(f)),
            other => Err(unexpected("Hello", &other)),
        }
    }

    /// tiny-init has made the mounts and waits for `Continue` before pivot_root.
    pub fn wait_for_hook_point(&self) -> Result<(), ChannelError> {
        match self.recv()?.0 {
            InitToShim::HookPoint => Ok(()),
            InitToShim::Failed(f) => Err(ChannelError::Failed(f)),
            other => Err(unexpected("HookPoint", &other)),
        }
    }

    /// tiny-init has built the container's inside and waits for `Start`;
    /// with a terminal, the pty master comes along.
    pub fn wait_for_ready(&self) -> Result<Vec<OwnedFd>, ChannelError> {
        match self.recv()? {
            (InitToShim::Ready, fds) => Ok(fds),
            (InitToShim::Failed(f), _) => Err(ChannelError::Failed(f)),
            (other, _) => Err(unexpected("Ready", &other)),
        }
    }

    /// The workload runs, with this pid in the container. An `Exited`
    /// instead (a terminating signal before the start) keeps its code,
    /// which the caller's-shim mode cannot reap: `ChannelError::Exited`.
    pub fn wait_for_started(&self) -> Result<i32, ChannelError> {
        match self.recv()?.0 {
            InitToShim::Started { pid } => Ok(pid),
            InitToShim::Failed(f) => Err(ChannelError::Failed(f)),
            InitToShim::Exited { code } => Err(ChannelError::Exited(code)),
            other => Err(unexpected("Started", &other)),
        }
    }
}

impl InitChannel {
    pub fn wait_for_hello(&self) -> Result<(), ChannelError> {
        match self.recv()?.0 {
            ShimToInit::Hello { version } => check_version(version),
            other => Err(unexpected("Hello", &other)),
        }
    }

    /// The config, and the descriptors that came with it (an idmapped
    /// root mount, when `idmapped` is set).
    pub fn wait_for_config(&self) -> Result<(Box<InitConfig>, Vec<OwnedFd>), ChannelError> {
        match self.recv()? {
            (ShimToInit::Config(c), fds) => Ok((c, fds)),
            (other, _) => Err(unexpected("Config", &other)),
        }
    }

    pub fn wait_for_continue(&self) -> Result<(), ChannelError> {
        match self.recv()?.0 {
            ShimToInit::Continue => Ok(()),
            other => Err(unexpected("Continue", &other)),
        }
    }

    pub fn wait_for_start(&self) -> Result<(), ChannelError> {
        match self.recv()?.0 {
            ShimToInit::Start => Ok(()),
            other => Err(unexpected("Start", &other)),
        }
    }
}

fn check_version(version: u32) -> Result<(), ChannelError> {
    if version == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(ChannelError::Version {
            ours: PROTOCOL_VERSION,
            theirs: version,
        })
    }
}

#[cfg(test)]
mod tests;
