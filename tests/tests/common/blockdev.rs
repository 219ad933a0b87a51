//! A whole block device for a test to name in blockIO (throttles and
//! device weights take whole disks): the disk the root filesystem is on,
//! where it is on one (this machine's virtio disk), else a loop device the
//! test makes over a file in its work directory and removes when dropped
//! (the cgroup VMs' root is 9p under an overlay).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct BlockDevice {
    /// /dev/NAME.
    pub node: String,
    pub major: u64,
    pub minor: u64,
    /// /sys/block/NAME.
    pub sys: PathBuf,
    /// The loop device's backing file, when the test made it.
    backing: Option<PathBuf>,
}

impl BlockDevice {
    pub fn get(work: &Path) -> BlockDevice {
        use std::os::unix::fs::MetadataExt;
        let dev = fs::metadata("/").unwrap().dev();
        let root_disk = fs::canonicalize(format!(
            "/sys/dev/block/{}:{}",
            libc::major(dev),
            libc::minor(dev)
        ));
        match root_disk {
            Ok(mut sys) => {
                if sys.join("partition").exists() {
                    sys.pop();
                }
                BlockDevice::of(sys, None)
            }
            Err(_) => BlockDevice::new_loop(work),
        }
    }

    /// "MAJ:MIN".
    pub fn majmin(&self) -> String {
        format!("{}:{}", self.major, self.minor)
    }

    /// Where the kernel offers BFQ for a loop device of ours, switch it to
    /// BFQ, whose cgroup weights per device take effect only on a device it
    /// schedules; the host's own disks are never touched. Whether it did.
    pub fn bfq_if_ours(&self) -> bool {
        let file = self.sys.join("queue/scheduler");
        let offered = fs::read_to_string(&file).unwrap_or_default();
        self.backing.is_some()
            && offered
                .split_whitespace()
                .any(|s| s.trim_matches(['[', ']']) == "bfq")
            && fs::write(&file, "bfq").is_ok()
    }

    fn new_loop(work: &Path) -> BlockDevice {
        let backing = work.join("blockdev.img");
        fs::File::create(&backing)
            .and_then(|f| f.set_len(64 << 20))
            .unwrap();
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&backing)
            .output()
            .expect("run losetup");
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let node = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let name = node.trim_start_matches("/dev/").to_string();
        BlockDevice::of(PathBuf::from("/sys/block").join(name), Some(backing))
    }

    fn of(sys: PathBuf, backing: Option<PathBuf>) -> BlockDevice {
        let uevent = fs::read_to_string(sys.join("uevent")).unwrap();
        let field = |k: &str| {
            uevent
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or_default()
                .to_string()
        };
        BlockDevice {
            node: format!("/dev/{}", field("DEVNAME")),
            major: field("MAJOR").parse().unwrap(),
            minor: field("MINOR").parse().unwrap(),
            sys,
            backing,
        }
    }
}

impl Drop for BlockDevice {
    fn drop(&mut self) {
        if let Some(backing) = &self.backing {
            let _ = Command::new("losetup").args(["-d", &self.node]).status();
            let _ = fs::remove_file(backing);
        }
    }
}
