//! containerd 1.6 with its CRI plugin, of a test's own, driven over the CRI
//! v1 gRPC API as the kubelet drives it (there is no kubelet or crictl
//! here): `k8s-cri`'s tonic bindings on a tokio runtime of the harness's
//! own, wrapped in blocking calls.
//!
//! Included only by tests/cri.rs (`#[path]`), not by common/mod.rs: every
//! other test binary would otherwise compile the gRPC client too.
//!
//! Two runtime handlers run through the same runc shim
//! (containerd-shim-runc-v2): `runc` (runc itself) and `nsbox`
//! (`BinaryName` = nsbox's runtime), each with a runtime root of the
//! test's own. The pods' network is a CNI bridge (Debian's
//! containernetworking-plugins) with the test's own bridge, subnet and
//! IPAM directory; netns files live under containerd's state directory.
//! The sandbox image is built here from the test rootfs (`nsbox-multitool
//! pause`); nothing is pulled.

use crate::common::daemon::*;
use crate::common::images::oci_archive;
use crate::common::{bins, rootfs, wait_for, Test, TIMEOUT};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};

pub const IMAGE: &str = "localhost/nsbox-test:latest";
pub const PAUSE: &str = "localhost/nsbox-pause:latest";
pub const HANDLERS: [&str; 2] = ["runc", "nsbox"];

pub struct Cri {
    /// root, state, sockets, config, CNI config, runtime roots, logs.
    pub dir: PathBuf,
    pub sock: PathBuf,
    pub bridge: String,
    pub network: String,
    /// Pods' cgroups go under it.
    pub cgroup_parent: String,
    /// systemd's cgroup manager (`SystemdCgroup = true`): a pod's cgroup
    /// parent is then a slice, as the kubelet's systemd driver names them.
    pub systemd: bool,
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    daemon: Option<Child>,
    new_dirs: NewDirs,
    /// Netns paths of the sandboxes this test ran (containerd removes them
    /// with the sandbox; the teardown checks).
    netns: std::sync::Mutex<Vec<PathBuf>>,
}

impl Cri {
    pub fn start(t: &Test) -> Cri {
        Cri::start_with(t, false)
    }

    /// With `systemd`: the runc shim's `SystemdCgroup = true`, for both
    /// handlers, on a host where systemd manages the cgroups.
    pub fn start_with(t: &Test, systemd: bool) -> Cri {
        for tool in [
            "/usr/bin/containerd",
            "/usr/bin/ctr",
            "/usr/bin/containerd-shim-runc-v2",
            "/usr/sbin/runc",
            "/usr/lib/cni/bridge",
            "/usr/lib/cni/host-local",
            "/usr/lib/cni/loopback",
        ] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: `make deps` installs containerd, runc and containernetworking-plugins"
            );
        }
        // Under the state root (short: sun_path), which must be empty at
        // the end: the teardown removes it.
        let dir = t.root.join("c");
        fs::create_dir_all(dir.join("cni")).unwrap();
        let tag = t.root.file_name().unwrap().to_string_lossy().into_owned();
        let network = format!("nsbox-t-{tag}");
        let bridge = t.bridge();
        // A slice's '-' are levels: the tag's become '_'.
        let cgroup_parent = if systemd {
            format!("/nsboxtcri_{}.slice", tag.replace('-', "_"))
        } else {
            format!("/nsbox-t-cri-{tag}")
        };
        t.track_cgroup(&cgroup_parent);
        // The conflist a node's /etc/cni/net.d would hold, with names of
        // the test's own.
        let conflist = serde_json::json!({
            "cniVersion": "0.4.0",
            "name": network,
            "plugins": [{
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": t.subnet(), "gateway": t.gateway() }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": dir.join("ipam")
                }
            }]
        });
        fs::write(dir.join("cni/10-nsbox-test.conflist"), conflist.to_string()).unwrap();
        let d = dir.display();
        let runtime = bins().runtime.display();
        // The README's config.toml, with the test's own paths.
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{d}/c.sock"
[ttrpc]
  address = "{d}/c.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "nsbox"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nsbox]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nsbox.options]
        BinaryName = "{runtime}"
        Root = "{d}/rt-nsbox"
        SystemdCgroup = {systemd}
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        Root = "{d}/rt-runc"
        SystemdCgroup = {systemd}
"#
        );
        fs::write(dir.join("config.toml"), config).unwrap();
        let new_dirs = NewDirs::before(&["/var/lib/cni", "/opt/containerd"]);
        let log = fs::File::create(t.work.join("containerd.log")).unwrap();
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let sock = dir.join("c.sock");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let path = sock.clone();
        wait_for("containerd's socket", TIMEOUT, || {
            path.exists().then_some(())
        });
        let channel = rt
            .block_on(
                Endpoint::try_from("http://[::]:50051")
                    .unwrap()
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            Ok::<_, std::io::Error>(TokioIo::new(
                                tokio::net::UnixStream::connect(path).await?,
                            ))
                        }
                    })),
            )
            .expect("connect to containerd's CRI socket");
        let c = Cri {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            rt,
            dir,
            sock,
            bridge,
            network,
            cgroup_parent,
            systemd,
            daemon: Some(daemon),
            new_dirs,
            netns: Default::default(),
        };
        wait_for("the CRI plugin", TIMEOUT, || {
            let mut r = c.runtime.clone();
            c.rt.block_on(r.version(VersionRequest::default())).ok()
        });
        c.import_images(t);
        c
    }

    /// `ctr -n k8s.io ARGS...` against this containerd.
    pub fn ctr(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(&self.sock)
            .args(["--namespace", "k8s.io"])
            .args(args)
            .stdin(Stdio::null());
        run_bounded(cmd, Duration::from_secs(60))
    }

    fn import_images(&self, t: &Test) {
        for (name, config) in [
            (
                IMAGE,
                serde_json::json!({ "Env": ["PATH=/bin:/usr/bin"], "Cmd": ["sh"] }),
            ),
            (
                PAUSE,
                serde_json::json!({ "Env": ["PATH=/bin:/usr/bin"],
                                    "Entrypoint": ["/bin/nsbox-multitool", "pause"] }),
            ),
        ] {
            let tag = name.rsplit('/').next().unwrap().replace(':', "-");
            let archive = t.work.join(format!("{tag}.tar"));
            oci_archive(
                rootfs(),
                &t.work.join(format!("oci-{tag}")),
                &archive,
                config,
            );
            let o = self.ctr(&[
                "images",
                "import",
                "--index-name",
                name,
                archive.to_str().unwrap(),
            ]);
            assert!(o.status.success(), "import {name}: {}", both(&o));
        }
        wait_for("the CRI plugin to see the images", TIMEOUT, || {
            let mut i = self.images.clone();
            let list = self
                .rt
                .block_on(i.list_images(ListImagesRequest::default()))
                .ok()?;
            let tags: Vec<String> = list
                .into_inner()
                .images
                .into_iter()
                .flat_map(|i| i.repo_tags)
                .collect();
            [IMAGE, PAUSE]
                .iter()
                .all(|n| tags.iter().any(|t| t == n))
                .then_some(())
        });
    }

    /// Runs one RuntimeService call to its answer (60 s at most); an error
    /// is gRPC's code and message.
    pub fn call<T, F>(
        &self,
        f: impl FnOnce(RuntimeServiceClient<Channel>) -> F,
    ) -> Result<T, String>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let client = self.runtime.clone();
        self.rt.block_on(async {
            match tokio::time::timeout(Duration::from_secs(60), f(client)).await {
                Ok(Ok(r)) => Ok(r.into_inner()),
                Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
                Err(_) => Err("no answer in 60 s".to_string()),
            }
        })
    }

    /// A pod's sandbox config: its own hostname, log directory and cgroup
    /// parent, PID namespace `pid` (POD: shared by its containers, the CRI
    /// default; CONTAINER: each its own).
    pub fn pod_config(&self, name: &str, pid: NamespaceMode) -> PodSandboxConfig {
        let logs = self.dir.join("logs").join(name);
        fs::create_dir_all(&logs).unwrap();
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "nsbox-test".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: logs.display().to_string(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: self.pod_cgroup_parent(name),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Pod as i32,
                        pid: pid as i32,
                        ipc: NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A pod's cgroup parent: a directory under the test's, or (systemd)
    /// a slice under the test's slice, as kubepods-besteffort-podUID.slice
    /// is under kubepods-besteffort.slice.
    pub fn pod_cgroup_parent(&self, name: &str) -> String {
        if self.systemd {
            let top = self.cgroup_parent.trim_start_matches('/');
            let base = top.trim_end_matches(".slice");
            format!("{base}-{}.slice", name.replace('-', "_"))
        } else {
            format!("{}/{name}", self.cgroup_parent)
        }
    }

    /// RunPodSandbox with runtime handler `handler`: the sandbox's ID.
    #[track_caller]
    pub fn run_pod(&self, config: &PodSandboxConfig, handler: &str) -> String {
        let req = RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.into(),
        };
        let id = self
            .call(|mut c| async move { c.run_pod_sandbox(req).await })
            .unwrap_or_else(|e| panic!("RunPodSandbox on {handler}: {e}"))
            .pod_sandbox_id;
        if let Some(ns) = self.sandbox_info(&id)["runtimeSpec"]["linux"]["namespaces"]
            .as_array()
            .and_then(|a| a.iter().find(|n| n["type"] == "network"))
            .and_then(|n| n["path"].as_str())
        {
            self.netns.lock().unwrap().push(PathBuf::from(ns));
        }
        id
    }

    /// The verbose "info" of PodSandboxStatus (pid, runtimeSpec, ...).
    pub fn sandbox_info(&self, id: &str) -> serde_json::Value {
        let req = PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: true,
        };
        let r = self
            .call(|mut c| async move { c.pod_sandbox_status(req).await })
            .unwrap_or_else(|e| panic!("PodSandboxStatus {id}: {e}"));
        serde_json::from_str(r.info.get("info").map(String::as_str).unwrap_or("{}")).unwrap()
    }

    /// CreateContainer + StartContainer of `command` from [`IMAGE`] in the
    /// pod, logging to NAME.log: the container's ID.
    #[track_caller]
    pub fn run_container(
        &self,
        pod: &str,
        pod_config: &PodSandboxConfig,
        name: &str,
        command: &[&str],
        tweak: impl FnOnce(&mut ContainerConfig),
    ) -> String {
        let mut config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: IMAGE.into(),
                ..Default::default()
            }),
            command: command.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}.log"),
            // The pod's namespace modes, as the kubelet repeats them for
            // each container.
            linux: Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: pod_config
                        .linux
                        .as_ref()
                        .and_then(|l| l.security_context.as_ref())
                        .and_then(|s| s.namespace_options.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        tweak(&mut config);
        let req = CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(config),
            sandbox_config: Some(pod_config.clone()),
        };
        let id = self
            .call(|mut c| async move { c.create_container(req).await })
            .unwrap_or_else(|e| panic!("CreateContainer {name}: {e}"))
            .container_id;
        let req = StartContainerRequest {
            container_id: id.clone(),
        };
        self.call(|mut c| async move { c.start_container(req).await })
            .unwrap_or_else(|e| panic!("StartContainer {name}: {e}"));
        id
    }

    /// ExecSync: (exit code, stdout, stderr).
    #[track_caller]
    pub fn exec_sync(&self, id: &str, cmd: &[&str]) -> (i32, String, String) {
        let req = ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 20,
        };
        let r = self
            .call(|mut c| async move { c.exec_sync(req).await })
            .unwrap_or_else(|e| panic!("ExecSync {cmd:?} in {id}: {e}"));
        (
            r.exit_code,
            String::from_utf8_lossy(&r.stdout).into_owned(),
            String::from_utf8_lossy(&r.stderr).into_owned(),
        )
    }

    #[track_caller]
    pub fn container_status(&self, id: &str) -> ContainerStatus {
        let req = ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        self.call(|mut c| async move { c.container_status(req).await })
            .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e}"))
            .status
            .expect("a status")
    }

    /// StopContainer with a timeout (seconds); how long it took.
    #[track_caller]
    pub fn stop_container(&self, id: &str, timeout: i64) -> Duration {
        let req = StopContainerRequest {
            container_id: id.into(),
            timeout,
        };
        let start = std::time::Instant::now();
        self.call(|mut c| async move { c.stop_container(req).await })
            .unwrap_or_else(|e| panic!("StopContainer {id}: {e}"));
        start.elapsed()
    }

    #[track_caller]
    pub fn remove_container(&self, id: &str) {
        let req = RemoveContainerRequest {
            container_id: id.into(),
        };
        self.call(|mut c| async move { c.remove_container(req).await })
            .unwrap_or_else(|e| panic!("RemoveContainer {id}: {e}"));
    }

    /// StopPodSandbox + RemovePodSandbox.
    #[track_caller]
    pub fn remove_pod(&self, id: &str) {
        let req = StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.call(|mut c| async move { c.stop_pod_sandbox(req).await })
            .unwrap_or_else(|e| panic!("StopPodSandbox {id}: {e}"));
        let req = RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.call(|mut c| async move { c.remove_pod_sandbox(req).await })
            .unwrap_or_else(|e| panic!("RemovePodSandbox {id}: {e}"));
    }

    /// The runtime roots containerd gives runc and nsbox: what is left in
    /// them (containers not deleted).
    pub fn runtime_state_left(&self) -> Vec<PathBuf> {
        HANDLERS
            .iter()
            .flat_map(|h| {
                fs::read_dir(self.dir.join(format!("rt-{h}/k8s.io")))
                    .into_iter()
                    .flatten()
                    .flatten()
            })
            .map(|e| e.path())
            .collect()
    }

    /// The sandboxes' netns files that still exist.
    pub fn netns_left(&self) -> Vec<PathBuf> {
        self.netns
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.exists())
            .cloned()
            .collect()
    }

    /// CNI's cached results for this test's network (libcni keeps them in
    /// /var/lib/cni/results until the DEL).
    fn cni_cache(&self) -> Vec<PathBuf> {
        fs::read_dir("/var/lib/cni/results")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{}-", self.network))
            })
            .map(|e| e.path())
            .collect()
    }

    pub fn leaks(&self) -> Vec<String> {
        let mut found = daemon_leaks(
            &[&self.dir],
            &self.bridge,
            &self.cgroup_parent,
            &self.new_dirs,
        );
        for f in self.cni_cache() {
            found.push(format!("CNI cache {}", f.display()));
        }
        found
    }

    fn teardown(&mut self) -> Vec<String> {
        let mut report = Vec::new();
        if let Some(mut daemon) = self.daemon.take() {
            if let Ok(None) = daemon.try_wait() {
                // What a failed test left: its pods (their containers go
                // with them).
                let pods = self
                    .call(|mut c| async move {
                        c.list_pod_sandbox(ListPodSandboxRequest::default()).await
                    })
                    .map(|r| r.items)
                    .unwrap_or_default();
                for p in pods {
                    let id = p.id.clone();
                    let stop = StopPodSandboxRequest {
                        pod_sandbox_id: id.clone(),
                    };
                    let rm = RemovePodSandboxRequest {
                        pod_sandbox_id: id.clone(),
                    };
                    if let Err(e) = self
                        .call(|mut c| async move { c.stop_pod_sandbox(stop).await })
                        .and_then(|_| {
                            self.call(|mut c| async move { c.remove_pod_sandbox(rm).await })
                        })
                    {
                        report.push(format!("removing pod {id}: {e}"));
                    }
                }
            }
            stop_daemon(&mut daemon, Duration::from_secs(20));
        }
        report.extend(sweep(&[&self.dir]));
        remove_bridge(&self.bridge);
        if self.systemd {
            // The slices are systemd's: stopping the test's stops its pods'.
            let slice = self.cgroup_parent.trim_start_matches('/');
            let _ = Command::new("systemctl").args(["stop", slice]).output();
        }
        remove_cgroup_tree(&self.cgroup_parent);
        for f in self.cni_cache() {
            let _ = fs::remove_file(f);
        }
        self.new_dirs.remove();
        report
    }
}

impl Drop for Cri {
    fn drop(&mut self) {
        let swept = self.teardown();
        report_leftovers("containerd (CRI)", &self.leaks(), &swept);
    }
}
