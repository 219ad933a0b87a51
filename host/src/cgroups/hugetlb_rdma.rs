//! The hugetlb and rdma limits, whose files are the same on v1 and v2 but
//! for the suffix of hugetlb's, and the kernel's names for its huge page
//! sizes.

use std::path::Path;

use protocol::{HugepageLimit, RdmaLimit};

use super::{read_file, write_file, CgroupError, Result};

/// The huge page sizes of this kernel, named as the hugetlb controller's
/// files name them ("2MB", "1GB"), smallest first.
pub fn hugepage_sizes() -> Vec<String> {
    let mut kib: Vec<u64> = std::fs::read_dir("/sys/kernel/mm/hugepages")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()
        })
        .collect();
    kib.sort_unstable();
    kib.into_iter().map(page_size_name).collect()
}

/// The kernel's name for a page of `kib` KiB (mm/hugetlb_cgroup.c's
/// mem_fmt): "64KB", "2MB", "1GB".
pub(super) fn page_size_name(kib: u64) -> String {
    match kib {
        k if k >= 1 << 20 && k % (1 << 20) == 0 => format!("{}GB", k >> 20),
        k if k >= 1 << 10 && k % (1 << 10) == 0 => format!("{}MB", k >> 10),
        k => format!("{k}KB"),
    }
}

/// hugetlb.SIZE.SUFFIX for each limit, and the reservations' own limit
/// (hugetlb.SIZE.rsvd.SUFFIX, Linux 5.7) where the kernel has it, as runc
/// sets both: otherwise pages reserved by mmap and not yet touched escape
/// the limit. SUFFIX: "limit_in_bytes" (v1) or "max" (v2).
pub(super) fn write_hugetlb(dir: &Path, limits: &[HugepageLimit], suffix: &str) -> Result<()> {
    for h in limits {
        let value = h.limit.to_string();
        write_file(dir, &format!("hugetlb.{}.{suffix}", h.page_size), &value)?;
        let rsvd = format!("hugetlb.{}.rsvd.{suffix}", h.page_size);
        if dir.join(&rsvd).exists() {
            write_file(dir, &rsvd, &value)?;
        }
    }
    Ok(())
}

/// rdma.max, one line per device ("mlx5_0 hca_handle=2 hca_object=100"),
/// the same file on v1 and v2.
pub(super) fn write_rdma(dir: &Path, limits: &[RdmaLimit]) -> Result<()> {
    for l in limits {
        let mut line = l.device.clone();
        if let Some(v) = l.hca_handles {
            line.push_str(&format!(" hca_handle={v}"));
        }
        if let Some(v) = l.hca_objects {
            line.push_str(&format!(" hca_object={v}"));
        }
        match write_file(dir, "rdma.max", &line) {
            Err(CgroupError::Io { source, .. }) if source.raw_os_error() == Some(libc::ENODEV) => {
                return Err(CgroupError::Invalid(format!(
                    "linux.resources.rdma: this host has no RDMA device {:?}",
                    l.device
                )))
            }
            r => r?,
        }
    }
    Ok(())
}

/// Every device's rdma limits back to max, before the cgroup is removed.
/// The kernel frees a cgroup's unused pool of a device's limits when they
/// are all max again, but not when the cgroup goes (Linux before "free
/// idle pools at offline", Debian 12's 6.1 among them): the pool stays on
/// the device's list after the cgroup is freed, and removing the device
/// later writes through it (list_del corruption in free_cg_rpool_locked,
/// seen in the test VM). Best effort: nothing to do without rdma.max.
pub(super) fn release_rdma(dir: &Path) {
    let Ok(text) = read_file(dir, "rdma.max") else {
        return;
    };
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(device) = fields.next() else {
            continue;
        };
        if fields.all(|f| f.ends_with("=max")) {
            continue;
        }
        let _ = write_file(
            dir,
            "rdma.max",
            &format!("{device} hca_handle=max hca_object=max"),
        );
    }
}
