//! config.json: loaded with oci-spec's types, validated before anything is
//! made, and turned into the plain `CreateRequest` that the shim and
//! tiny-init work from. Everything a bad bundle can get wrong is caught
//! here, so that a failed `create` has as little as possible to undo.
//!
//! - `plan`: the steps from a loaded config.json to the request, each
//!   naming what it decides.
//! - `validate`: the checks of single fields (paths, id maps, mount
//!   options, sysctls, hooks) that the plan's steps use.
//! - `process`: an OCI process (config.json's, or an exec's) as tiny-init
//!   takes it.
//! - `subordinate`: the caller's subordinate ids, for a rootless container.
//! - `template`: the config.json that `runtime spec` writes.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

/// A refusal of what config.json (or an option) says, in words that name
/// the field and its value.
macro_rules! refuse {
    ($($arg:tt)*) => {
        return Err($crate::spec::SpecError::Invalid(format!($($arg)*)))
    };
}

mod extras;
mod lsm;
mod plan;
mod process;
mod subordinate;
mod template;
mod validate;

pub use extras::{Extras, ProcessExtras};
pub use lsm::{apparmor_profile, selinux_label};
pub use plan::{plan, plan_with, Plan};
pub use process::{convert_process, personality};
pub use subordinate::rootless_maps;
pub use template::{check_spec_options, default_spec, parse_userns, SpecOptions};
pub use validate::{map_id, parse_mount_options, recursive_options, MountOptions};

/// The annotation that gives a container a copy-on-write root over an image.
pub const IMAGE_ANNOTATION: &str = "nsbox.image";

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// What nsbox refuses: a value that is wrong, or asks for something
    /// nsbox does not do. The text names the field and the value.
    #[error("{0}")]
    Invalid(String),
    /// A file or directory config.json names (or config.json itself).
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("parse {}", .path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// JSON that is not an OCI config.json.
    #[error("config.json")]
    Schema(#[source] serde_json::Error),
    #[error("cgroups")]
    CgroupLayout(#[source] nsbox_host::cgroups::CgroupError),
    /// linux.cgroupsPath, which the error names itself.
    #[error(transparent)]
    CgroupPath(nsbox_host::cgroups::CgroupError),
    /// linux.resources this host has no controller for, which the error
    /// names itself.
    #[error(transparent)]
    CgroupResources(nsbox_host::cgroups::CgroupError),
    /// nsbox.* network annotations and options, which host::network's
    /// checks word in full.
    #[error(transparent)]
    Network(Box<dyn std::error::Error + Send + Sync>),
    #[error("annotation {key}")]
    Annotation {
        key: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    Resources(#[from] crate::resources::ResourcesError),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
}

pub type Result<T, E = SpecError> = std::result::Result<T, E>;

impl SpecError {
    fn network(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> SpecError {
        SpecError::Network(e.into())
    }
}

fn io_error(what: String) -> impl FnOnce(std::io::Error) -> SpecError {
    move |source| SpecError::Io { what, source }
}

/// config.json: what oci-spec reads, and what it misses (`extras`).
#[derive(Debug)]
pub struct Config {
    pub spec: Spec,
    pub extras: Extras,
}

/// The bundle's config.json.
pub fn load(bundle: &Path) -> Result<Config> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(io_error(format!("read {}", path.display())))?;
    let mut value: serde_json::Value =
        serde_json::from_slice(&text).map_err(|source| SpecError::Parse { path, source })?;
    if let Some(r) = value.pointer_mut("/linux/resources") {
        crate::resources::spec_names(r);
    }
    let whole = value.clone();
    extras::strip_for_oci_spec(&mut value);
    let spec = serde_json::from_value(value).map_err(SpecError::Schema)?;
    let extras = serde_json::from_value(whole).map_err(SpecError::Schema)?;
    Ok(Config { spec, extras })
}
