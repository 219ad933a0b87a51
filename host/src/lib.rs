//! Host-side helpers that both `runtime` and `shim` need: the state
//! directory and its `state.json`, the identity of host processes (pid plus
//! start time), and logging to `--log` files.

pub mod cgroups;
pub mod hooks;
pub mod logger;
pub mod proc;
pub mod state;
