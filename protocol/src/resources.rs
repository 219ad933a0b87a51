//! The container's cgroup as the runtime hands it to the shim: where it is
//! (`CgroupPaths`, recorded in state.json) and linux.resources, validated,
//! in the shape the cgroup files take.

use serde::{Deserialize, Serialize};

/// Where a container's cgroup is: the same relative path in every v1
/// hierarchy, or in the one v2 hierarchy. Recorded in state.json so that
/// `delete --force` after a crashed shim can still remove it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupPaths {
    /// Relative to each hierarchy's root, starting with '/': "/nsbox@ID".
    pub path: String,
    /// cgroup v2 (unified): one directory, `dirs[0]`, controller "".
    pub unified: bool,
    pub dirs: Vec<CgroupDir>,
    /// `--systemd-cgroup`: the transient scope unit that systemd keeps the
    /// cgroup as (v2 only); None: nsbox's own directory in cgroupfs.
    #[serde(default)]
    pub systemd: Option<SystemdUnit>,
}

/// A container's cgroup as systemd's transient scope unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemdUnit {
    /// The slice it is put in ("system.slice").
    pub slice: String,
    /// The scope's name ("nsbox-ID.scope").
    pub unit: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupDir {
    /// The v1 hierarchy's name as mounted ("memory", "cpu,cpuacct",
    /// "name=systemd"); "" on v2.
    pub controller: String,
    /// Absolute host path of the container's directory in it.
    pub dir: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    pub paths: CgroupPaths,
    pub resources: Resources,
}

/// linux.resources, as nsbox applies them. Values keep the OCI meaning
/// (-1 is "unlimited"; memory.swap is memory plus swap).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub memory: Option<MemoryResources>,
    pub cpu: Option<CpuResources>,
    pub pids_limit: Option<i64>,
    /// In order; a later rule overrides an earlier one.
    pub devices: Vec<DeviceRule>,
    /// cgroup v2 files written as they are (linux.resources.unified).
    pub unified: Vec<(String, String)>,
    /// linux.resources.blockIO; None when it asks for nothing.
    pub block_io: Option<BlockIo>,
    /// Huge page limits (hugetlb), in bytes per page size.
    #[serde(default)]
    pub hugepage_limits: Vec<HugepageLimit>,
    /// net_cls and net_prio (cgroup v1 only).
    #[serde(default)]
    pub network: Option<NetworkResources>,
    /// RDMA limits per device (the rdma controller).
    #[serde(default)]
    pub rdma: Vec<RdmaLimit>,
}

/// linux.resources.blockIO with runc's reading of it: a zero weight is
/// "not set" (None), as is a device entry with neither weight.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockIo {
    pub weight: Option<u16>,
    pub leaf_weight: Option<u16>,
    pub weight_device: Vec<WeightDevice>,
    pub throttle_read_bps: Vec<Throttle>,
    pub throttle_write_bps: Vec<Throttle>,
    pub throttle_read_iops: Vec<Throttle>,
    pub throttle_write_iops: Vec<Throttle>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightDevice {
    pub major: i64,
    pub minor: i64,
    pub weight: Option<u16>,
    pub leaf_weight: Option<u16>,
}

/// A device's limit in bytes or I/Os per second; 0 lifts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throttle {
    pub major: i64,
    pub minor: i64,
    pub rate: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HugepageLimit {
    /// As the kernel names it in hugetlb.<size>.*: "2MB", "1GB", "64KB".
    pub page_size: String,
    pub limit: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkResources {
    /// net_cls.classid.
    pub class_id: Option<u32>,
    /// net_prio.ifpriomap: (interface, priority).
    pub priorities: Vec<(String, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RdmaLimit {
    pub device: String,
    /// None: left as it is.
    pub hca_handles: Option<u32>,
    pub hca_objects: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryResources {
    pub limit: Option<i64>,
    pub reservation: Option<i64>,
    pub swap: Option<i64>,
    pub swappiness: Option<u64>,
    pub disable_oom_killer: Option<bool>,
    /// cgroup v1's memory.kmem.tcp.limit_in_bytes.
    #[serde(default)]
    pub kernel_tcp: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuResources {
    pub shares: Option<u64>,
    pub quota: Option<i64>,
    pub period: Option<u64>,
    pub cpus: Option<String>,
    pub mems: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRule {
    pub allow: bool,
    /// 'a' (all), 'c' or 'b'.
    pub kind: char,
    /// None: any.
    pub major: Option<i64>,
    pub minor: Option<i64>,
    /// Some of "rwm".
    pub access: String,
}
