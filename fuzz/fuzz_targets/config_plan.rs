//! config.json validation: any bytes, parsed as config.json and planned as
//! `runtime create` would, must give Ok or an error, never a panic. A crash
//! found here belongs in tests/fixtures/bad-configs/ as a regression.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use nsbox_host::state::ContainerDir;

/// A bundle with an empty rootfs, made once.
fn bundle() -> &'static PathBuf {
    static B: OnceLock<PathBuf> = OnceLock::new();
    B.get_or_init(|| {
        let b = std::env::temp_dir().join(format!("nsbox-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(b.join("rootfs")).unwrap();
        b
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = serde_json::from_slice::<oci_spec::runtime::Spec>(data) else {
        return;
    };
    let dir = ContainerDir::new(Path::new("/run/nsbox-fuzz"), "c");
    let _ = runtime::spec::plan(&spec, bundle(), &dir, "c");
});
