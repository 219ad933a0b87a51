//! Host-side helpers that both `runtime` and `shim` need: the state
//! directory and its `state.json`, the identity of host processes (pid plus
//! start time), logging to `--log` files, and bridge networking.

// unsafe only where nix 0.29 has no call, each module allowed by name.
#![deny(unsafe_code)]

pub mod cgroups;
/// OCI hooks: one runner for the host side and for tiny-init.
pub use nsbox_process::hooks;
pub mod logger;
pub mod network;
pub mod output_log;
pub mod proc;
pub mod rootless;
pub mod socket;
pub mod state;
pub mod teardown;
#[allow(unsafe_code)]
pub mod testhooks;
