//! nsbox under a real orchestrator: containerd (through its runc shim,
//! containerd-shim-runc-v2, with nsbox as the runc binary), side by side
//! with runc itself. containerd runs from a test folder of its own (root,
//! state and socket), in a namespace of the test's own, and everything it
//! made is checked gone afterwards.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Containerd {
    dir: PathBuf,
    namespace: String,
    daemon: std::process::Child,
}

impl Containerd {
    fn start(t: &Test) -> Option<Containerd> {
        for tool in ["containerd", "ctr", "containerd-shim-runc-v2", "runc"] {
            if !Path::new("/usr/bin").join(tool).exists() {
                panic!("{tool} is missing: `make deps` installs containerd and runc");
            }
        }
        let dir = t.work.join("containerd");
        fs::create_dir_all(&dir).unwrap();
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             [grpc]\n  address = \"{d}/c.sock\"\n[ttrpc]\n  address = \"{d}/c.sock.ttrpc\"\n\
             [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\"]\n  disable_cgroup = true\n",
            d = dir.display()
        );
        fs::write(dir.join("config.toml"), config).unwrap();
        let log = fs::File::create(dir.join("containerd.log")).unwrap();
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let c = Containerd {
            dir,
            namespace: format!("nsbox-t{}", std::process::id()),
            daemon,
        };
        wait_for("containerd's socket", TIMEOUT, || {
            c.ctr(&["version"]).status.success().then_some(())
        });
        Some(c)
    }

    fn ctr_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(self.dir.join("c.sock"))
            .arg("--namespace")
            .arg(&self.namespace)
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    fn ctr(&self, args: &[&str]) -> std::process::Output {
        run_bounded(self.ctr_cmd(args))
    }

    /// The runtime root containerd's shim gives the runtime for our namespace.
    fn runtime_root(&self) -> PathBuf {
        PathBuf::from(format!("/run/containerd/runc/{}", self.namespace))
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Whatever a failed test left: its tasks, containers and shims.
        let tasks = self.ctr(&["task", "ls", "-q"]);
        for id in text(&tasks).split_whitespace() {
            let _ = self.ctr(&["task", "kill", "-s", "SIGKILL", id]);
            let _ = self.ctr(&["task", "delete", "-f", id]);
        }
        let containers = self.ctr(&["containers", "ls", "-q"]);
        for id in text(&containers).split_whitespace() {
            let _ = self.ctr(&["containers", "rm", id]);
        }
        let address = self.dir.join("c.sock").display().to_string();
        for pid in all_pids() {
            if cmdline(pid).is_some_and(|c| c.contains("containerd-shim") && c.contains(&address)) {
                // SAFETY: a shim of the containerd this test started, by pid.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        // SAFETY: ending the containerd we started, by pid.
        unsafe { libc::kill(self.daemon.id() as i32, libc::SIGTERM) };
        let _ = self.daemon.wait();
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.join("root"))
            .status();
        let _ = fs::remove_dir(self.runtime_root());
    }
}

fn run_bounded(mut cmd: Command) -> std::process::Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > Duration::from_secs(60) {
            // SAFETY: ending the command we started, by pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            let out = child.wait_with_output().unwrap();
            panic!("{cmd:?} did not finish in 60 s: {out:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn text(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).replace('\r', "")
}

/// One scenario with the runtime binary `rt`; its outcome, to compare.
fn scenario(c: &Containerd, rt: &str, tag: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let image = "localhost/nsbox-test:latest";
    for code in [0, 3, 137] {
        let id = format!("{tag}-rm-{code}");
        // 137: the exit status of a child killed by SIGKILL, passed on (a
        // shell that kills itself would differ: as runc's PID 1 it survives).
        let script = if code == 137 {
            "sleep 5 & kill -9 $!; wait $!".to_string()
        } else {
            format!("echo out-{code}; exit {code}")
        };
        let o = c.ctr(&[
            "run",
            "--rm",
            "--runc-binary",
            rt,
            image,
            &id,
            "sh",
            "-c",
            &script,
        ]);
        seen.push(format!(
            "run --rm {code}: exit {:?} out {:?}",
            o.status.code(),
            text(&o).trim()
        ));
    }
    let id = format!("{tag}-d");
    // A shell that handles SIGTERM: as PID 1 under runc it would otherwise
    // ignore `task kill` (no handler), while under nsbox tiny-init forwards
    // it; with a trap both end the same way.
    let o = c.ctr(&[
        "run",
        "-d",
        "--runc-binary",
        rt,
        image,
        &id,
        "sh",
        "-c",
        "trap 'exit 143' TERM; sleep 300 & wait",
    ]);
    seen.push(format!("run -d: {:?}", o.status.code()));
    let o = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        &id,
        "sh",
        "-c",
        "echo in-exec; exit 5",
    ]);
    seen.push(format!(
        "exec: exit {:?} out {:?}",
        o.status.code(),
        text(&o).trim()
    ));
    // A terminal: ctr needs one of its own, which script(1) gives it.
    let inner = format!(
        "ctr --address {} --namespace {} task exec -t --exec-id e2 {id} sh -c 'tty >/dev/null && echo on-a-tty; exit 6'",
        c.dir.join("c.sock").display(),
        c.namespace
    );
    let o = run_bounded({
        let mut s = Command::new("script");
        s.args(["-qec", &inner, "/dev/null"]).stdin(Stdio::null());
        s
    });
    // ctr also prints its own noise about the terminal; the first line is ours.
    let first = text(&o)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    seen.push(format!("exec -t: exit {:?} out {first:?}", o.status.code()));
    let o = c.ctr(&["task", "kill", &id]);
    seen.push(format!("kill: {:?}", o.status.code()));
    let exit = wait_for("the task to stop", TIMEOUT, || {
        let o = c.ctr(&["task", "ls"]);
        let t = text(&o);
        let line = t
            .lines()
            .find(|l| l.starts_with(&format!("{id} ")))?
            .to_string();
        line.contains("STOPPED").then_some(line)
    });
    seen.push(format!(
        "task ls after kill: {}",
        exit.split_whitespace().last().unwrap_or("")
    ));
    let o = c.ctr(&["task", "delete", &id]);
    seen.push(format!(
        "task delete: {:?} {:?}",
        o.status.code(),
        text(&o).split_whitespace().last()
    ));
    let o = c.ctr(&["containers", "rm", &id]);
    seen.push(format!("containers rm: {:?}", o.status.code()));
    seen
}

#[test]
fn containerd_runs_nsbox_as_it_runs_runc() {
    let Some(t) = Test::new("containerd") else {
        return;
    };
    let Some(c) = Containerd::start(&t) else {
        return;
    };
    // A busybox image from our test rootfs: tar it, wrap it as an OCI image
    // with podman-free tooling (ctr can import a rootfs tarball as an
    // image only through an image archive, so build a minimal one).
    let archive = t.work.join("image.tar");
    make_oci_archive(rootfs(), &t.work.join("oci"), &archive);
    let o = c.ctr(&[
        "images",
        "import",
        "--index-name",
        "localhost/nsbox-test:latest",
        archive.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "import: {o:?}");

    let runc = scenario(&c, "runc", "runc");
    let ours = scenario(&c, bins().runtime.to_str().unwrap(), "nsbox");
    assert_eq!(ours, runc, "nsbox under containerd differs from runc");
    assert!(
        runc[0].contains("exit Some(0)") && runc[1].contains("exit Some(3)"),
        "{runc:?}"
    );

    let left = c.ctr(&["task", "ls", "-q"]);
    assert_eq!(text(&left).trim(), "", "tasks left");
    let root = c.runtime_root();
    let entries: Vec<_> = fs::read_dir(&root)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(
        entries.is_empty(),
        "runtime state left in {}: {entries:?}",
        root.display()
    );
}

/// A single-layer OCI image archive of `rootfs` (what `ctr images import`
/// takes), built with tar and sha256sum.
fn make_oci_archive(rootfs: &Path, dir: &Path, archive: &Path) {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let layer = dir.join("layer.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .arg("-cf")
        .arg(&layer)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
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
        "config": { "Env": ["PATH=/bin:/usr/bin"], "Cmd": ["sh"] },
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
    assert!(st.success());
}
