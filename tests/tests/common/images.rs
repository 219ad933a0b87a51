//! Images built locally from the test rootfs (nothing is pulled): an OCI
//! image archive that `ctr images import` takes.

use std::fs;
use std::path::Path;
use std::process::Command;

/// A tar of `rootfs` at `tar` (what `docker import` and `podman import`
/// take as an image).
pub fn rootfs_tar(rootfs: &Path, tar: &Path) {
    let st = Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .arg("-cf")
        .arg(tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar of {}", rootfs.display());
}

/// A single-layer OCI image archive of `rootfs` at `archive`, built in
/// `dir` with tar and sha256sum. `config` is the image config's "config"
/// object (Env, Entrypoint, Cmd).
pub fn oci_archive(rootfs: &Path, dir: &Path, archive: &Path, config: serde_json::Value) {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let layer = dir.join("layer.tar");
    rootfs_tar(rootfs, &layer);
    let put = |bytes: &[u8]| -> (String, usize) {
        let tmp = dir.join("blob.tmp");
        fs::write(&tmp, bytes).unwrap();
        let out = Command::new("sha256sum").arg(&tmp).output().unwrap();
        let digest = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        fs::rename(&tmp, dir.join("blobs/sha256").join(&digest)).unwrap();
        (digest, bytes.len())
    };
    let (layer_digest, layer_size) = put(&fs::read(&layer).unwrap());
    fs::remove_file(&layer).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": config,
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer_digest}")] }
    })
    .to_string();
    let (config_digest, config_size) = put(config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": format!("sha256:{config_digest}"), "size": config_size },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar",
                     "digest": format!("sha256:{layer_digest}"), "size": layer_size }]
    })
    .to_string();
    let (manifest_digest, manifest_size) = put(manifest.as_bytes());
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{ "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": format!("sha256:{manifest_digest}"), "size": manifest_size,
                        "platform": { "architecture": "amd64", "os": "linux" } }]
    });
    fs::write(dir.join("index.json"), index.to_string()).unwrap();
    let st = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(archive)
        .args(["oci-layout", "index.json", "blobs"])
        .status()
        .unwrap();
    assert!(st.success(), "tar of the image layout");
}
