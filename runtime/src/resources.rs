//! linux.resources (config.json, or `update --resources`) into the
//! `Resources` that host::cgroups applies. What nsbox cannot apply is
//! refused here, by name, rather than silently left out.

use oci_spec::runtime::{LinuxBlockIo, LinuxThrottleDevice};
use oci_spec::runtime::{LinuxDeviceType, LinuxResources};
use protocol::{
    BlockIo, CpuResources, DeviceRule, HugepageLimit, MemoryResources, NetworkResources, RdmaLimit,
    Resources, Throttle, WeightDevice,
};

#[derive(Debug, thiserror::Error)]
pub enum ResourcesError {
    /// A value that is not one; the text names the field and the value.
    #[error("{0}")]
    Invalid(String),
    /// A limit nsbox cannot enforce, refused rather than ignored.
    #[error("{0}")]
    Unsupported(&'static str),
}

type Result<T> = std::result::Result<T, ResourcesError>;

/// The devices every container gets when its list denies all, as runc
/// adds them: null, zero, full, random, urandom, tty, ptmx and /dev/pts/*.
/// (runc also allows mknod of any device; nsbox does not, so a container
/// with CAP_MKNOD still cannot make a disk's node.)
const STANDARD_DEVICES: [(i64, Option<i64>); 8] = [
    (1, Some(3)),
    (1, Some(5)),
    (1, Some(7)),
    (1, Some(8)),
    (1, Some(9)),
    (5, Some(0)),
    (5, Some(2)),
    (136, None),
];

fn is_deny_all(r: &DeviceRule) -> bool {
    !r.allow && r.kind == 'a' && r.major.is_none() && r.minor.is_none()
}

pub fn from_oci(r: &LinuxResources) -> Result<Resources> {
    let mut out = Resources::default();
    for d in r.devices().iter().flatten() {
        let kind = match d.typ() {
            None | Some(LinuxDeviceType::A) => 'a',
            Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => 'c',
            Some(LinuxDeviceType::B) => 'b',
            Some(LinuxDeviceType::P) => {
                return Err(ResourcesError::Invalid(
                    "linux.resources.devices: type \"p\" (a FIFO) is not a cgroup device type"
                        .into(),
                ))
            }
        };
        let access = d.access().clone().unwrap_or_else(|| "rwm".into());
        if access.is_empty() || !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(ResourcesError::Invalid(format!(
                "linux.resources.devices: access {access:?} is not made of r, w and m"
            )));
        }
        out.devices.push(DeviceRule {
            allow: d.allow(),
            kind,
            major: d.major().filter(|&m| m >= 0),
            minor: d.minor().filter(|&m| m >= 0),
            access,
        });
    }
    if out.devices.iter().any(is_deny_all) {
        for (major, minor) in STANDARD_DEVICES {
            out.devices.push(DeviceRule {
                allow: true,
                kind: 'c',
                major: Some(major),
                minor,
                access: "rwm".into(),
            });
        }
    }
    if let Some(m) = r.memory() {
        if m.kernel().is_some_and(|v| v != 0) {
            // Deprecated since Linux 5.4, refused since 6.1 (and never on
            // v2): runc ignores it too.
            log::warn!(
                "linux.resources.memory.kernel is deprecated by the kernel; not applied (the \
                 memory limit counts kernel memory)"
            );
        }
        // 0 is "not set", as runc reads these: Docker's `update` sends
        // every field, zero where the user gave none.
        let set = |v: Option<i64>| v.filter(|&v| v != 0);
        out.memory = Some(MemoryResources {
            limit: set(m.limit()),
            reservation: set(m.reservation()),
            swap: set(m.swap()),
            swappiness: m.swappiness(),
            disable_oom_killer: m.disable_oom_killer(),
            kernel_tcp: m.kernel_tcp().filter(|&v| v != 0),
        });
    }
    if let Some(c) = r.cpu() {
        if c.realtime_runtime().is_some_and(|v| v != 0)
            || c.realtime_period().is_some_and(|v| v != 0)
        {
            return Err(ResourcesError::Unsupported(
                "linux.resources.cpu realtimeRuntime/realtimePeriod are not supported",
            ));
        }
        if c.idle().is_some_and(|v| v != 0) || c.burst().is_some_and(|v| v != 0) {
            return Err(ResourcesError::Unsupported(
                "linux.resources.cpu idle and burst are not supported",
            ));
        }
        // 0 is "not set" here too (a period of 0 is EINVAL to the kernel).
        out.cpu = Some(CpuResources {
            shares: c.shares().filter(|&v| v != 0),
            quota: c.quota().filter(|&v| v != 0),
            period: c.period().filter(|&v| v != 0),
            cpus: c.cpus().clone().filter(|s| !s.is_empty()),
            mems: c.mems().clone().filter(|s| !s.is_empty()),
        });
    }
    if let Some(p) = r.pids() {
        out.pids_limit = Some(p.limit());
    }
    if let Some(b) = r.block_io() {
        out.block_io = block_io(b);
    }
    for h in r.hugepage_limits().iter().flatten() {
        let size = h.page_size();
        if !is_page_size(size) {
            return Err(ResourcesError::Invalid(format!(
                "linux.resources.hugepageLimits: pageSize {size:?} is not a size such as \"2MB\""
            )));
        }
        let limit = u64::try_from(h.limit()).map_err(|_| {
            ResourcesError::Invalid(format!(
                "linux.resources.hugepageLimits: limit {} for {size} is negative",
                h.limit()
            ))
        })?;
        out.hugepage_limits.push(HugepageLimit {
            page_size: size.clone(),
            limit,
        });
    }
    if let Some(n) = r.network() {
        let mut priorities = Vec::new();
        for p in n.priorities().iter().flatten() {
            if !is_name(p.name(), 15) {
                return Err(ResourcesError::Invalid(format!(
                    "linux.resources.network.priorities: {:?} is not an interface name",
                    p.name()
                )));
            }
            priorities.push((p.name().clone(), p.priority()));
        }
        // classID 0 is "not set", as runc reads it.
        let class_id = n.class_id().filter(|&c| c != 0);
        if class_id.is_some() || !priorities.is_empty() {
            out.network = Some(NetworkResources {
                class_id,
                priorities,
            });
        }
    }
    for (device, l) in r.rdma().iter().flatten() {
        if !is_name(device, 64) {
            return Err(ResourcesError::Invalid(format!(
                "linux.resources.rdma: {device:?} is not an RDMA device name"
            )));
        }
        if l.hca_handles().is_some() || l.hca_objects().is_some() {
            out.rdma.push(RdmaLimit {
                device: device.clone(),
                hca_handles: l.hca_handles(),
                hca_objects: l.hca_objects(),
            });
        }
    }
    out.rdma.sort_by(|a, b| a.device.cmp(&b.device));
    let mut unified: Vec<(String, String)> = r
        .unified()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    unified.sort();
    out.unified = unified;
    Ok(out)
}

/// The runtime spec names two blockIO lists "throttleReadIOPSDevice" and
/// "throttleWriteIOPSDevice"; oci-spec 0.7 reads them only as
/// "...IopsDevice" and would drop them without a word. `resources` is a
/// linux.resources object, renamed in place before it is parsed.
pub fn spec_names(resources: &mut serde_json::Value) {
    if let Some(b) = resources
        .get_mut("blockIO")
        .and_then(serde_json::Value::as_object_mut)
    {
        for (spec, ours) in [
            ("throttleReadIOPSDevice", "throttleReadIopsDevice"),
            ("throttleWriteIOPSDevice", "throttleWriteIopsDevice"),
        ] {
            if let Some(v) = b.remove(spec) {
                b.insert(ours.to_string(), v);
            }
        }
    }
}

/// blockIO as runc reads it: zero weights and empty lists ask for nothing
/// (Docker puts `"weight": 0` into every config); None when nothing is
/// asked for at all. Whether the host can apply it is host::cgroups' call.
fn block_io(b: &LinuxBlockIo) -> Option<BlockIo> {
    let set = |w: Option<u16>| w.filter(|&w| w != 0);
    let throttles = |l: &Option<Vec<LinuxThrottleDevice>>| -> Vec<Throttle> {
        l.iter()
            .flatten()
            .map(|t| Throttle {
                major: t.major(),
                minor: t.minor(),
                rate: t.rate(),
            })
            .collect()
    };
    let out = BlockIo {
        weight: set(b.weight()),
        leaf_weight: set(b.leaf_weight()),
        weight_device: b
            .weight_device()
            .iter()
            .flatten()
            .map(|d| WeightDevice {
                major: d.major(),
                minor: d.minor(),
                weight: set(d.weight()),
                leaf_weight: set(d.leaf_weight()),
            })
            .filter(|d| d.weight.is_some() || d.leaf_weight.is_some())
            .collect(),
        throttle_read_bps: throttles(b.throttle_read_bps_device()),
        throttle_write_bps: throttles(b.throttle_write_bps_device()),
        throttle_read_iops: throttles(b.throttle_read_iops_device()),
        throttle_write_iops: throttles(b.throttle_write_iops_device()),
    };
    (out != BlockIo::default()).then_some(out)
}

/// "2MB", "1GB", "64KB": how the kernel names a huge page size in the
/// hugetlb controller's files (it goes into a file name).
fn is_page_size(s: &str) -> bool {
    ["KB", "MB", "GB"].iter().any(|unit| {
        s.strip_suffix(unit)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// A name that goes into a line of a cgroup file (an interface, an RDMA
/// device): no blanks, no '/', at most `max` bytes.
fn is_name(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(mut v: serde_json::Value) -> Resources {
        spec_names(&mut v);
        from_oci(&serde_json::from_value(v).unwrap()).unwrap()
    }

    #[test]
    fn deny_all_gets_the_standard_devices() {
        let r = parse(serde_json::json!({ "devices": [{ "allow": false, "access": "rwm" }] }));
        assert_eq!(r.devices.len(), 9);
        assert!(is_deny_all(&r.devices[0]));
        assert!(r.devices[1..].iter().all(|d| d.allow && d.kind == 'c'));
        assert!(r
            .devices
            .iter()
            .any(|d| d.major == Some(136) && d.minor.is_none()));
        // An allow-list without deny-all is taken as it is.
        let r = parse(
            serde_json::json!({ "devices": [{ "allow": true, "type": "c", "major": 1, "minor": 3 }] }),
        );
        assert_eq!(r.devices.len(), 1);
        assert_eq!(r.devices[0].access, "rwm");
    }

    #[test]
    fn fixtures_convert() {
        for f in ["podman-run-config.json", "containerd-ctr-run-config.json"] {
            let text = std::fs::read_to_string(format!(
                "{}/../tests/fixtures/{f}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let r = parse(v["linux"]["resources"].clone());
            assert!(!r.devices.is_empty(), "{f}");
        }
    }

    #[test]
    fn zero_memory_and_cpu_values_ask_for_nothing() {
        // What `docker update --memory 64m --memory-swap 128m` sends.
        let r = parse(serde_json::json!({
            "memory": { "limit": 67108864, "reservation": 0, "swap": 134217728, "kernel": 0 },
            "cpu": { "shares": 0, "quota": 0, "period": 0, "cpus": "", "mems": "" } }));
        let m = r.memory.unwrap();
        assert_eq!(
            (m.limit, m.reservation, m.swap),
            (Some(64 << 20), None, Some(128 << 20))
        );
        let c = r.cpu.unwrap();
        assert_eq!(
            (c.shares, c.quota, c.period, c.cpus, c.mems),
            (None, None, None, None, None)
        );
    }

    #[test]
    fn block_io_zeros_ask_for_nothing() {
        // What Docker puts into every config.json.
        let r = parse(serde_json::json!({ "blockIO": { "weight": 0 } }));
        assert_eq!(r.block_io, None);
        let r = parse(serde_json::json!({ "blockIO": {
            "weight": 0, "leafWeight": 0,
            "weightDevice": [{ "major": 8, "minor": 0, "weight": 0 }],
            "throttleReadBpsDevice": [] } }));
        assert_eq!(r.block_io, None);
    }

    #[test]
    fn block_io_keeps_what_is_asked() {
        let r = parse(serde_json::json!({ "blockIO": {
            "weight": 300, "leafWeight": 0,
            "weightDevice": [{ "major": 8, "minor": 0, "weight": 0 },
                             { "major": 8, "minor": 16, "weight": 200, "leafWeight": 50 }],
            "throttleReadBpsDevice": [{ "major": 254, "minor": 0, "rate": 1048576 }],
            "throttleWriteIOPSDevice": [{ "major": 254, "minor": 0, "rate": 0 }] } }));
        let b = r.block_io.unwrap();
        assert_eq!((b.weight, b.leaf_weight), (Some(300), None));
        assert_eq!(
            b.weight_device,
            vec![WeightDevice {
                major: 8,
                minor: 16,
                weight: Some(200),
                leaf_weight: Some(50)
            }]
        );
        assert_eq!(b.throttle_read_bps.len(), 1);
        assert_eq!(b.throttle_read_bps[0].rate, 1048576);
        // A zero rate lifts a limit (update), so it is kept.
        assert_eq!(b.throttle_write_iops.len(), 1);
        assert!(b.throttle_write_bps.is_empty() && b.throttle_read_iops.is_empty());
    }

    #[test]
    fn hugepages_network_rdma_and_kernel_tcp_convert() {
        let r = parse(serde_json::json!({
            "memory": { "kernelTCP": 1024, "kernel": 4096 },
            "hugepageLimits": [{ "pageSize": "2MB", "limit": 8388608 }],
            "network": { "classID": 0, "priorities": [{ "name": "eth0", "priority": 5 }] },
            "rdma": { "mlx5_1": { "hcaObjects": 9 }, "mlx5_0": { "hcaHandles": 3 }, "idle": {} }
        }));
        assert_eq!(r.memory.unwrap().kernel_tcp, Some(1024));
        assert_eq!(
            r.hugepage_limits,
            [HugepageLimit {
                page_size: "2MB".into(),
                limit: 8 << 20
            }]
        );
        let n = r.network.unwrap();
        assert_eq!(n.class_id, None, "classID 0 is not set");
        assert_eq!(n.priorities, [("eth0".to_string(), 5)]);
        let devices: Vec<&str> = r.rdma.iter().map(|l| l.device.as_str()).collect();
        assert_eq!(
            devices,
            ["mlx5_0", "mlx5_1"],
            "sorted, the empty one left out"
        );
        // Zeros ask for nothing.
        let r =
            parse(serde_json::json!({ "network": { "classID": 0 }, "memory": { "kernelTCP": 0 } }));
        assert!(r.network.is_none());
        assert_eq!(r.memory.unwrap().kernel_tcp, None);
    }

    #[test]
    fn names_that_would_break_a_cgroup_file_are_refused() {
        for (v, needle) in [
            (
                serde_json::json!({ "hugepageLimits": [{ "pageSize": "2M", "limit": 1 }] }),
                "\"2M\"",
            ),
            (
                serde_json::json!({ "hugepageLimits": [{ "pageSize": "../2MB", "limit": 1 }] }),
                "../2MB",
            ),
            (
                serde_json::json!({ "hugepageLimits": [{ "pageSize": "2MB", "limit": -1 }] }),
                "negative",
            ),
            (
                serde_json::json!({ "network": { "priorities": [{ "name": "eth0 1", "priority": 1 }] } }),
                "eth0 1",
            ),
            (
                serde_json::json!({ "rdma": { "a/b": { "hcaHandles": 1 } } }),
                "a/b",
            ),
        ] {
            let r: LinuxResources = serde_json::from_value(v).unwrap();
            let e = from_oci(&r).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn unsupported_parts_are_refused() {
        let r: LinuxResources = serde_json::from_value(
            serde_json::json!({ "devices": [{ "allow": true, "access": "rwx" }] }),
        )
        .unwrap();
        assert!(from_oci(&r).is_err());
    }
}
