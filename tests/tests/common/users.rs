//! Ordinary users made by a test (rootless containers, rootless Podman,
//! delegated cgroups), with subordinate ids, and removed again.

use std::fs;
use std::path::Path;
use std::process::Command;

use super::skip;

/// An ordinary user made for the test, with subordinate ids, removed again
/// (with its /etc/subuid and /etc/subgid lines) when the test ends.
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl TestUser {
    pub fn new() -> Option<TestUser> {
        // Tests run in parallel, each with a user of its own.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("nsbrl{}x{n}", std::process::id());
        let ok = |c: &mut Command| c.status().map(|s| s.success()).unwrap_or(false);
        if !ok(Command::new("useradd").args([
            "-M",
            "-s",
            "/bin/sh",
            "-K",
            "SUB_UID_COUNT=0",
            "-K",
            "SUB_GID_COUNT=0",
            &name,
        ])) {
            skip("rootless", "useradd failed");
            return None;
        }
        let user = TestUser {
            uid: id_of(&name, "-u"),
            gid: id_of(&name, "-g"),
            name,
        };
        assert!(
            ok(Command::new("usermod").args([
                "--add-subuids",
                "600000-665535",
                "--add-subgids",
                "600000-665535",
                &user.name
            ])),
            "usermod --add-subuids"
        );
        Some(user)
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
        for file in ["/etc/subuid", "/etc/subgid"] {
            if let Ok(text) = fs::read_to_string(file) {
                let kept: String = text
                    .lines()
                    .filter(|l| !l.starts_with(&format!("{}:", self.name)))
                    .map(|l| format!("{l}\n"))
                    .collect();
                if kept != text {
                    let _ = fs::write(file, kept);
                }
            }
        }
    }
}

fn id_of(name: &str, flag: &str) -> u32 {
    let out = Command::new("id").args([flag, name]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// chown -R, symbolic links themselves.
pub fn chown_tree(path: &Path, uid: u32, gid: u32) {
    let st = Command::new("chown")
        .args(["-hR", &format!("{uid}:{gid}"), path.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success(), "chown -R {}", path.display());
}
