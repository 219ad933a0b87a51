//! The runtime's config.json handling as a library: validation and the
//! plan the shim and tiny-init work from, so that the fuzz targets (and
//! anyone embedding nsbox) can reach it without the command line.

// MS_* and friends are c_ulong: u64 here, but u32 on 32-bit targets.
#![allow(clippy::unnecessary_cast)]
#![forbid(unsafe_code)]

pub mod resources;
pub mod seccomp;
pub mod spec;
