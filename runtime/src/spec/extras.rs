//! What runtime-spec 1.1 and 1.2 say that oci-spec 0.7 reads wrongly or
//! not at all, read from config.json's JSON itself: execCPUAffinity (its
//! `initial` and `final` keys, which oci-spec looks for under other
//! names), linux.timeOffsets (objects of secs and nanosecs, which oci-spec
//! takes for strings and so refuses), linux.intelRdt as given, and the
//! uid and gid mappings of idmapped mounts (which oci-spec drops).

use std::collections::BTreeMap;

use oci_spec::runtime::LinuxIdMapping;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Extras {
    pub process: Option<ProcessExtras>,
    pub linux: Option<LinuxExtras>,
    pub mounts: Option<Vec<MountExtras>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ProcessExtras {
    #[serde(rename = "execCPUAffinity")]
    pub exec_cpu_affinity: Option<ExecCpuAffinity>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ExecCpuAffinity {
    pub initial: Option<String>,
    #[serde(rename = "final")]
    pub last: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LinuxExtras {
    #[serde(rename = "timeOffsets")]
    pub time_offsets: Option<BTreeMap<String, TimeOffset>>,
    #[serde(rename = "intelRdt")]
    pub intel_rdt: Option<serde_json::Value>,
}

/// An offset of a clock in a new time namespace.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(default)]
pub struct TimeOffset {
    pub secs: i64,
    pub nanosecs: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MountExtras {
    #[serde(rename = "uidMappings")]
    pub uid_mappings: Option<Vec<LinuxIdMapping>>,
    #[serde(rename = "gidMappings")]
    pub gid_mappings: Option<Vec<LinuxIdMapping>>,
}

impl Extras {
    pub fn process(&self) -> ProcessExtras {
        self.process.clone().unwrap_or_default()
    }

    /// The idmapped-mount fields of mount `i` (by its place in `mounts`).
    pub fn mount(&self, i: usize) -> Option<&MountExtras> {
        self.mounts.as_ref().and_then(|m| m.get(i))
    }
}

/// Take out of `value` what oci-spec would refuse for the wrong reason
/// (timeOffsets' real shape), before it parses the rest.
pub fn strip_for_oci_spec(value: &mut serde_json::Value) {
    if let Some(linux) = value.get_mut("linux").and_then(|l| l.as_object_mut()) {
        linux.remove("timeOffsets");
    }
}
