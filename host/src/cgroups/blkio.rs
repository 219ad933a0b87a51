//! linux.resources.blockIO: weights and throttles, on cgroup v1 (`blkio.*`,
//! or `blkio.bfq.*` where the scheduler is BFQ) and v2 (`io.weight` or
//! `io.bfq.weight`, and `io.max`). What the config asks for and the host has
//! no file for is refused, naming the file; what it does not ask for (zero
//! weights, empty lists: Docker puts `"weight": 0` into every config) is
//! never looked for.

use std::path::Path;

use protocol::{BlockIo, Throttle};

use super::{write_file, CgroupError, Result};

/// The weight files of a v1 blkio directory: CFQ's, or BFQ's (which has no
/// leaf weights).
struct V1Weights {
    weight: &'static str,
    weight_device: &'static str,
    bfq: bool,
}

fn v1_weights(dir: &Path) -> Option<V1Weights> {
    if dir.join("blkio.bfq.weight").exists() {
        Some(V1Weights {
            weight: "blkio.bfq.weight",
            weight_device: "blkio.bfq.weight_device",
            bfq: true,
        })
    } else if dir.join("blkio.weight").exists() {
        Some(V1Weights {
            weight: "blkio.weight",
            weight_device: "blkio.weight_device",
            bfq: false,
        })
    } else {
        None
    }
}

fn missing(field: &str, value: impl std::fmt::Display, file: &str, dir: &Path) -> CgroupError {
    CgroupError::Unsupported(format!(
        "linux.resources.blockIO.{field} {value}: this host has no {file} in {} \
         (no I/O scheduler with weights for this cgroup)",
        dir.display()
    ))
}

/// The four throttle lists with their v1 files and v2 io.max keys.
fn throttles(b: &BlockIo) -> [(&'static str, &'static str, &'static str, &[Throttle]); 4] {
    [
        (
            "throttleReadBpsDevice",
            "blkio.throttle.read_bps_device",
            "rbps",
            &b.throttle_read_bps,
        ),
        (
            "throttleWriteBpsDevice",
            "blkio.throttle.write_bps_device",
            "wbps",
            &b.throttle_write_bps,
        ),
        (
            "throttleReadIOPSDevice",
            "blkio.throttle.read_iops_device",
            "riops",
            &b.throttle_read_iops,
        ),
        (
            "throttleWriteIOPSDevice",
            "blkio.throttle.write_iops_device",
            "wiops",
            &b.throttle_write_iops,
        ),
    ]
}

/// cgroup v1, in the blkio hierarchy's directory `dir`.
pub(super) fn apply_v1(dir: &Path, b: &BlockIo) -> Result<()> {
    let weights = v1_weights(dir);
    if let Some(w) = b.weight {
        let files = weights
            .as_ref()
            .ok_or_else(|| missing("weight", w, "blkio.weight or blkio.bfq.weight", dir))?;
        write_file(dir, files.weight, &w.to_string())?;
    }
    if let Some(w) = b.leaf_weight {
        match &weights {
            Some(f) if !f.bfq => write_file(dir, "blkio.leaf_weight", &w.to_string())?,
            _ => return Err(missing("leafWeight", w, "blkio.leaf_weight", dir)),
        }
    }
    for d in &b.weight_device {
        if let Some(w) = d.weight {
            let files = weights.as_ref().ok_or_else(|| {
                missing(
                    "weightDevice",
                    format!("{}:{} {w}", d.major, d.minor),
                    "blkio.weight_device or blkio.bfq.weight_device",
                    dir,
                )
            })?;
            write_file(
                dir,
                files.weight_device,
                &format!("{}:{} {w}", d.major, d.minor),
            )?;
        }
        if let Some(w) = d.leaf_weight {
            match &weights {
                Some(f) if !f.bfq => write_file(
                    dir,
                    "blkio.leaf_weight_device",
                    &format!("{}:{} {w}", d.major, d.minor),
                )?,
                _ => {
                    return Err(missing(
                        "weightDevice leafWeight",
                        format!("{}:{} {w}", d.major, d.minor),
                        "blkio.leaf_weight_device",
                        dir,
                    ))
                }
            }
        }
    }
    for (field, file, _, list) in throttles(b) {
        for t in list {
            if !dir.join(file).exists() {
                // A zero rate only lifts a limit: none can be there.
                if t.rate == 0 {
                    continue;
                }
                return Err(CgroupError::Unsupported(format!(
                    "linux.resources.blockIO.{field} {}:{} {}: this host has no {file} in {} \
                     (a kernel without CONFIG_BLK_DEV_THROTTLING)",
                    t.major,
                    t.minor,
                    t.rate,
                    dir.display()
                )));
            }
            // 0 lifts the limit, as the kernel reads it.
            write_file(dir, file, &format!("{}:{} {}", t.major, t.minor, t.rate))?;
        }
    }
    Ok(())
}

/// blkio's weight scale (10..=1000) onto io.weight's (1..=10000), as runc
/// and crun convert it.
pub(crate) fn io_weight(blkio: u16) -> u64 {
    let w = u64::from(blkio.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

/// cgroup v2, in the container's directory `dir`: BFQ's io.bfq.weight
/// takes blkio's scale as it is; otherwise io.weight (the io.cost
/// controller) takes it converted.
pub(super) fn apply_v2(dir: &Path, b: &BlockIo) -> Result<()> {
    let bfq = dir.join("io.bfq.weight").exists();
    let (file, scale): (&str, fn(u16) -> u64) = if bfq {
        ("io.bfq.weight", u64::from)
    } else {
        ("io.weight", io_weight)
    };
    let have_weights = bfq || dir.join("io.weight").exists();
    if let Some(w) = b.weight {
        if !have_weights {
            return Err(missing("weight", w, "io.weight or io.bfq.weight", dir));
        }
        write_file(dir, file, &format!("default {}", scale(w)))?;
    }
    if let Some(w) = b.leaf_weight {
        return Err(CgroupError::Unsupported(format!(
            "linux.resources.blockIO.leafWeight {w}: cgroup v2 has no leaf weights"
        )));
    }
    for d in &b.weight_device {
        if let Some(w) = d.weight {
            if !have_weights {
                return Err(missing(
                    "weightDevice",
                    format!("{}:{} {w}", d.major, d.minor),
                    "io.weight or io.bfq.weight",
                    dir,
                ));
            }
            write_file(dir, file, &format!("{}:{} {}", d.major, d.minor, scale(w)))?;
        }
        if let Some(w) = d.leaf_weight {
            return Err(CgroupError::Unsupported(format!(
                "linux.resources.blockIO.weightDevice leafWeight {}:{} {w}: cgroup v2 has no leaf weights",
                d.major, d.minor
            )));
        }
    }
    for (field, _, key, list) in throttles(b) {
        for t in list {
            if !dir.join("io.max").exists() {
                if t.rate == 0 {
                    continue;
                }
                return Err(CgroupError::Unsupported(format!(
                    "linux.resources.blockIO.{field} {}:{} {}: this host has no io.max in {} \
                     (the io controller is not enabled)",
                    t.major,
                    t.minor,
                    t.rate,
                    dir.display()
                )));
            }
            // 0 is "no limit": io.max spells it max.
            let rate = if t.rate == 0 {
                "max".to_string()
            } else {
                t.rate.to_string()
            };
            write_file(
                dir,
                "io.max",
                &format!("{}:{} {key}={rate}", t.major, t.minor),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::WeightDevice;
    use std::fs;
    use std::path::PathBuf;

    /// A directory with the given (empty) cgroup files, removed when dropped.
    struct Dir(PathBuf);

    impl Dir {
        fn with(tag: &str, files: &[&str]) -> Dir {
            let d = std::env::temp_dir().join(format!("nsbox-blkio-{}-{tag}", std::process::id()));
            let _ = fs::remove_dir_all(&d);
            fs::create_dir_all(&d).unwrap();
            for f in files {
                fs::write(d.join(f), "").unwrap();
            }
            Dir(d)
        }

        fn read(&self, f: &str) -> String {
            fs::read_to_string(self.0.join(f)).unwrap()
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn throttle(rate: u64) -> Vec<Throttle> {
        vec![Throttle {
            major: 254,
            minor: 0,
            rate,
        }]
    }

    fn everything() -> BlockIo {
        BlockIo {
            weight: Some(300),
            leaf_weight: Some(200),
            weight_device: vec![WeightDevice {
                major: 8,
                minor: 0,
                weight: Some(500),
                leaf_weight: Some(100),
            }],
            throttle_read_bps: throttle(1 << 20),
            throttle_write_bps: throttle(2 << 20),
            throttle_read_iops: throttle(100),
            throttle_write_iops: throttle(200),
        }
    }

    const THROTTLES: [&str; 4] = [
        "blkio.throttle.read_bps_device",
        "blkio.throttle.write_bps_device",
        "blkio.throttle.read_iops_device",
        "blkio.throttle.write_iops_device",
    ];

    #[test]
    fn v1_cfq_takes_every_field() {
        let mut files = vec![
            "blkio.weight",
            "blkio.leaf_weight",
            "blkio.weight_device",
            "blkio.leaf_weight_device",
        ];
        files.extend(THROTTLES);
        let d = Dir::with("cfq", &files);
        apply_v1(&d.0, &everything()).unwrap();
        assert_eq!(d.read("blkio.weight"), "300");
        assert_eq!(d.read("blkio.leaf_weight"), "200");
        assert_eq!(d.read("blkio.weight_device"), "8:0 500");
        assert_eq!(d.read("blkio.leaf_weight_device"), "8:0 100");
        assert_eq!(d.read("blkio.throttle.read_bps_device"), "254:0 1048576");
        assert_eq!(d.read("blkio.throttle.write_bps_device"), "254:0 2097152");
        assert_eq!(d.read("blkio.throttle.read_iops_device"), "254:0 100");
        assert_eq!(d.read("blkio.throttle.write_iops_device"), "254:0 200");
    }

    #[test]
    fn v1_bfq_takes_weights_but_refuses_leaf_weights() {
        let mut files = vec!["blkio.bfq.weight", "blkio.bfq.weight_device"];
        files.extend(THROTTLES);
        let d = Dir::with("bfq", &files);
        let mut b = everything();
        let e = apply_v1(&d.0, &b).unwrap_err().to_string();
        assert!(
            e.contains("leafWeight 200") && e.contains("blkio.leaf_weight"),
            "{e}"
        );
        b.leaf_weight = None;
        b.weight_device[0].leaf_weight = None;
        apply_v1(&d.0, &b).unwrap();
        assert_eq!(d.read("blkio.bfq.weight"), "300300");
        assert_eq!(d.read("blkio.bfq.weight_device"), "8:0 500");
    }

    #[test]
    fn v1_without_weight_files_refuses_only_weights() {
        // This test machine's kind: no CFQ or BFQ, throttles only.
        let d = Dir::with("throttle-only", &THROTTLES);
        let e = apply_v1(&d.0, &everything()).unwrap_err().to_string();
        assert!(
            e.contains("blockIO.weight 300") && e.contains("blkio.weight or blkio.bfq.weight"),
            "{e}"
        );
        let only_throttles = BlockIo {
            throttle_read_bps: throttle(1 << 20),
            ..Default::default()
        };
        apply_v1(&d.0, &only_throttles).unwrap();
        assert_eq!(d.read("blkio.throttle.read_bps_device"), "254:0 1048576");
    }

    #[test]
    fn a_zero_rate_on_a_host_without_throttles_is_nothing_to_lift() {
        let d = Dir::with("no-throttles", &[]);
        let lift = BlockIo {
            throttle_read_bps: throttle(0),
            ..Default::default()
        };
        apply_v1(&d.0, &lift).unwrap();
        apply_v2(&d.0, &lift).unwrap();
        let e = apply_v1(
            &d.0,
            &BlockIo {
                throttle_write_iops: throttle(5),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("throttleWriteIOPSDevice 254:0 5")
                && e.contains("blkio.throttle.write_iops_device"),
            "{e}"
        );
    }

    #[test]
    fn v2_weights_go_to_io_bfq_weight_as_they_are_or_io_weight_converted() {
        let d = Dir::with("v2-bfq", &["io.bfq.weight", "io.weight", "io.max"]);
        let mut b = everything();
        b.leaf_weight = None;
        b.weight_device[0].leaf_weight = None;
        apply_v2(&d.0, &b).unwrap();
        assert_eq!(d.read("io.bfq.weight"), "default 3008:0 500");
        assert_eq!(d.read("io.weight"), "");
        assert_eq!(
            d.read("io.max"),
            "254:0 rbps=1048576254:0 wbps=2097152254:0 riops=100254:0 wiops=200"
        );
        let d = Dir::with("v2-cost", &["io.weight", "io.max"]);
        apply_v2(&d.0, &b).unwrap();
        assert_eq!(
            d.read("io.weight"),
            format!("default {}8:0 {}", io_weight(300), io_weight(500))
        );
    }

    #[test]
    fn v2_refuses_leaf_weights_and_weights_without_the_files() {
        let d = Dir::with("v2-none", &["io.max"]);
        let e = apply_v2(&d.0, &everything()).unwrap_err().to_string();
        assert!(e.contains("io.weight or io.bfq.weight"), "{e}");
        let d = Dir::with("v2-leaf", &["io.weight", "io.max"]);
        let e = apply_v2(
            &d.0,
            &BlockIo {
                leaf_weight: Some(10),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("leafWeight 10"), "{e}");
        // A zero rate is "max" on io.max.
        apply_v2(
            &d.0,
            &BlockIo {
                throttle_write_bps: throttle(0),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(d.read("io.max"), "254:0 wbps=max");
    }

    #[test]
    fn the_weight_scale_converts_as_runc_does() {
        assert_eq!(io_weight(10), 1);
        assert_eq!(io_weight(1000), 10000);
        assert_eq!(io_weight(500), 1 + 490 * 9999 / 990);
    }
}
