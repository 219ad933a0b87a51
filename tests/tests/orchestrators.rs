//! nsbox under a real orchestrator: containerd (through its runc shim,
//! containerd-shim-runc-v2, with nsbox as the runc binary), side by side
//! with runc itself. containerd runs from a test folder of its own (root,
//! state and socket), in a namespace of the test's own, and everything it
//! made is checked gone afterwards.

mod common;

use common::daemon::http_get;
use common::podman::Podman;
use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

struct Containerd {
    dir: PathBuf,
    namespace: String,
    daemon: std::process::Child,
}

impl Containerd {
    fn start(t: &Test) -> Containerd {
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
        c
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
        // containerd names cgroups /NAMESPACE/ID; runc (beside which nsbox
        // runs here) removes the container's but leaves the namespace's
        // parent in every hierarchy, the unified one included.
        for h in fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = fs::remove_dir(h.path().join(&self.namespace));
        }
    }
}

/// A ctr or podman call, bounded at 60 s.
#[track_caller]
fn run_bounded(cmd: Command) -> std::process::Output {
    common::daemon::run_bounded(cmd, Duration::from_secs(60))
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
    // ctr also prints its own noise around the terminal (a NUL, a resize
    // error, in no fixed order): only whether ours came through counts.
    seen.push(format!(
        "exec -t: exit {:?} on a tty {}",
        o.status.code(),
        text(&o).contains("on-a-tty")
    ));
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
    let c = Containerd::start(&t);
    // A busybox image from our test rootfs: tar it, wrap it as an OCI image
    // with podman-free tooling (ctr can import a rootfs tarball as an
    // image only through an image archive, so build a minimal one).
    let archive = t.work.join("image.tar");
    common::images::oci_archive(
        rootfs(),
        &t.work.join("oci"),
        &archive,
        serde_json::json!({ "Env": ["PATH=/bin:/usr/bin"], "Cmd": ["sh"] }),
    );
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
    // What both must show, not only the same: the exit codes came through.
    assert!(
        runc[0].contains("exit Some(0)")
            && runc[1].contains("exit Some(3)")
            && runc[2].contains("exit Some(137)"),
        "{runc:?}"
    );
    assert!(
        runc.iter()
            .any(|l| l == "exec: exit Some(5) out \"in-exec\""),
        "{runc:?}"
    );
    assert!(
        runc.iter()
            .any(|l| l == "exec -t: exit Some(6) on a tty true"),
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

/// This machine's hard nofile limit is 20000 and root lacks
/// CAP_SYS_RESOURCE: Podman's defaults (1048576) cannot be set by anyone.
const ULIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=20000:20000",
    "--ulimit",
    "nproc=32768:32768",
];

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn podman_scenario(p: &Podman, rt: &str, tag: &str, port: u16) -> Vec<String> {
    let mut seen = Vec::new();
    let image = "localhost/nsbox-test:latest";
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec!["--runtime".into(), rt.into(), "run".into()];
        v.extend(ULIMITS.iter().map(|s| s.to_string()));
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    for code in [0, 3, 137] {
        let script = if code == 137 {
            "sleep 5 & kill -9 $!; wait $!".to_string()
        } else {
            format!("echo out-{code}; exit {code}")
        };
        let v = base(&["--rm", "--network", "none", image, "sh", "-c", &script]);
        let o = p.run(&args(&v));
        seen.push(format!(
            "run --rm {code}: exit {:?} out {:?}",
            o.status.code(),
            text(&o).trim()
        ));
    }
    let name = format!("{tag}-d");
    let v = base(&[
        "-d",
        "--name",
        &name,
        "--network",
        "none",
        image,
        "sh",
        "-c",
        "trap 'exit 143' TERM; sleep 300 & wait",
    ]);
    seen.push(format!("run -d: {:?}", p.run(&args(&v)).status.code()));
    let o = p.run(&["exec", &name, "sh", "-c", "echo in-exec; exit 5"]);
    seen.push(format!(
        "exec: exit {:?} out {:?}",
        o.status.code(),
        text(&o).trim()
    ));
    // The runtime's own `list` (default root, as Podman calls it) knows it.
    let id = text(&p.run(&["inspect", "--format", "{{.Id}}", &name]))
        .trim()
        .to_string();
    let listed = run_bounded({
        let mut c = Command::new(rt);
        c.args(["list", "-q"]).stdin(Stdio::null());
        c
    });
    seen.push(format!(
        "in the runtime's list: {}",
        text(&listed).lines().any(|l| l.trim() == id)
    ));
    seen.push(format!(
        "pause: {:?}",
        p.run(&["pause", &name]).status.code()
    ));
    let o = p.run(&["inspect", "--format", "{{.State.Status}}", &name]);
    seen.push(format!("while paused: {}", text(&o).trim()));
    seen.push(format!(
        "unpause: {:?}",
        p.run(&["unpause", &name]).status.code()
    ));
    seen.push(format!(
        "stop: {:?}",
        p.run(&["stop", "-t", "10", &name]).status.code()
    ));
    let o = p.run(&["inspect", "--format", "{{.State.ExitCode}}", &name]);
    seen.push(format!("exit code after stop: {}", text(&o).trim()));
    seen.push(format!("rm: {:?}", p.run(&["rm", &name]).status.code()));
    // A terminal: podman needs one of its own, which script(1) gives it.
    let mut inner = p.cmd(&[]);
    let v = base(&[
        "--rm",
        "-t",
        "--network",
        "none",
        image,
        "sh",
        "-c",
        "tty; exit 4",
    ]);
    inner.args(args(&v));
    let line = format!("{inner:?}").replace('"', "");
    let o = run_bounded({
        let mut s = Command::new("script");
        s.args(["-qec", &line, "/dev/null"]).stdin(Stdio::null());
        s
    });
    seen.push(format!(
        "run -t: exit {:?} on a tty {}",
        o.status.code(),
        text(&o).contains("/dev/pts/")
    ));
    let v = base(&[
        "--rm",
        "--memory",
        "64m",
        "--network",
        "none",
        image,
        "cat",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]);
    let o = p.run(&args(&v));
    seen.push(format!(
        "--memory 64m: {:?} {:?}",
        o.status.code(),
        text(&o).trim()
    ));
    // Published ports through Podman's own network (netavark).
    let web = format!("{tag}-web");
    let publish = format!("{port}:80");
    let v = base(&[
        "-d",
        "--name",
        &web,
        "-p",
        &publish,
        image,
        "sh",
        "-c",
        "echo page-from-podman > /tmp/index.html; exec httpd -f -p 80 -h /tmp",
    ]);
    seen.push(format!("run -d -p: {:?}", p.run(&args(&v)).status.code()));
    let page = wait_for("the published port to answer", TIMEOUT, || http_get(port));
    seen.push(format!("fetched: {}", page.trim()));
    seen.push(format!(
        "rm -f web: {:?}",
        p.run(&["rm", "-f", "-t", "0", &web]).status.code()
    ));
    seen
}

#[test]
fn podman_runs_nsbox_as_it_runs_runc() {
    let Some(t) = Test::new("podman") else {
        return;
    };
    let p = Podman::with_test_image(&t, "cgroupfs");
    let port = 20000 + (std::process::id() % 5000) as u16;
    let runc = podman_scenario(&p, "runc", "runc", port);
    let ours = podman_scenario(&p, bins().runtime.to_str().unwrap(), "nsbox", port + 1);
    assert_eq!(ours, runc, "nsbox under Podman differs from runc");
    // What both must show, not only the same.
    for want in [
        "run --rm 0: exit Some(0) out \"out-0\"",
        "run --rm 3: exit Some(3) out \"out-3\"",
        "exec: exit Some(5) out \"in-exec\"",
        "fetched: page-from-podman",
    ] {
        assert!(runc.iter().any(|l| l == want), "no {want:?} in {runc:?}");
    }
    assert!(
        runc.iter()
            .any(|l| l.starts_with("run --rm 137: exit Some(137)")),
        "{runc:?}"
    );
    assert!(
        ours.iter().any(|l| l == "in the runtime's list: true"),
        "{ours:?}"
    );
    assert!(
        runc.iter()
            .any(|l| l == "run -t: exit Some(4) on a tty true"),
        "{runc:?}"
    );
    let left = p.run(&["ps", "-aq"]);
    assert_eq!(text(&left).trim(), "", "containers left");
}
