//! The verbs that act on an existing container: start, state, kill, delete,
//! ps, list, pause, resume, update; and spec, which writes a bundle's
//! config.json.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nsbox_host::cgroups::{self, CgroupError};
use nsbox_host::proc::{self, ProcessId};
use nsbox_host::state::{self, ContainerDir, State, StateError, Status};
use nsbox_host::teardown::HostSide;
use protocol::RuntimeToShim;

use crate::options::GlobalOptions;
use crate::{hooks, output, shim_client};

pub fn start(g: &GlobalOptions, id: &str) -> Result<i32> {
    let (dir, st) = g.container(id)?;
    st.can_start()?;
    let mut ch = shim_client::connect(&dir)?;
    ch.set_timeout(Some(nsbox_host::testhooks::runtime_start_timeout()))?;
    ch.send(&RuntimeToShim::Start, &[])?;
    ch.wait_for_started().map_err(shim_client::channel_error)?;
    hooks::poststart(&st);
    Ok(0)
}

/// The state as it is: a container whose init has ended is still what was
/// recorded until its shim has recorded the stop with the exit code (see
/// `State::current_status`), so "stopped" never shows without its code.
pub fn state(g: &GlobalOptions, id: &str) -> Result<i32> {
    let (_, st) = g.container(id)?;
    output::println(serde_json::to_string_pretty(&st.oci_state())?)?;
    Ok(0)
}

/// "TERM", "SIGTERM", "sigterm" or "15".
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=libc::SIGRTMAX()).contains(&n) {
            return Ok(n);
        }
        bail!("signal {n} is out of range");
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| anyhow!("unknown signal {s:?}"))
}

pub fn kill(g: &GlobalOptions, id: &str, signal: Option<&str>, all: bool) -> Result<i32> {
    let sig = parse_signal(signal.unwrap_or("TERM"))?;
    let (_, st) = g.container(id)?;
    let init = st.can_kill()?;
    if all {
        if sig == libc::SIGKILL {
            if let Some(cg) = &st.cgroup {
                if cgroups::kill_all(cg).context("cgroup.kill")? {
                    return Ok(0);
                }
            }
        }
        // Frozen, nothing can fork a process past the list (runc does the
        // same); a SIGKILL then lands once they are thawed.
        let freeze = sig == libc::SIGKILL && st.cgroup.is_some();
        if let (true, Some(cg)) = (freeze, &st.cgroup) {
            let _ = cgroups::freeze(cg);
        }
        for pid in container_pids_of(&st, init) {
            if let Some(p) = ProcessId::of(pid) {
                let _ = proc::signal(&p, sig);
            }
        }
        if let (true, Some(cg)) = (freeze, &st.cgroup) {
            let _ = cgroups::thaw(cg);
        }
        return Ok(0);
    }
    let r = match proc::signal(&init, sig) {
        Ok(true) => Ok(0),
        Ok(false) => bail!("container not running (it is stopped)"),
        Err(e) => bail!("send signal {sig}: {}", e.desc()),
    };
    // A paused container's frozen init dies of SIGKILL only once thawed.
    if sig == libc::SIGKILL {
        if let Some(cg) = st.cgroup.as_ref().filter(|cg| cgroups::is_frozen(cg)) {
            let _ = cgroups::thaw(cg);
        }
    }
    r
}

pub fn pause(g: &GlobalOptions, id: &str) -> Result<i32> {
    let (_, st) = g.container(id)?;
    st.can_pause()?;
    let cg = st
        .cgroup
        .as_ref()
        .ok_or_else(|| anyhow!("container has no cgroup to freeze"))?;
    cgroups::freeze(cg).context("freeze")?;
    Ok(0)
}

pub fn resume(g: &GlobalOptions, id: &str) -> Result<i32> {
    let (_, st) = g.container(id)?;
    st.can_resume()?;
    let cg = st
        .cgroup
        .as_ref()
        .ok_or_else(|| anyhow!("container has no cgroup to thaw"))?;
    cgroups::thaw(cg).context("thaw")?;
    Ok(0)
}

pub fn update(g: &GlobalOptions, id: &str, file: &Path) -> Result<i32> {
    let text = if file == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).context("read resources")?;
        s
    } else {
        std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?
    };
    let mut value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("resources {}", file.display()))?;
    crate::resources::spec_names(&mut value);
    let oci: oci_spec::runtime::LinuxResources =
        serde_json::from_value(value).with_context(|| format!("resources {}", file.display()))?;
    let resources = crate::resources::from_oci(&oci)?;
    let (_, st) = g.container(id)?;
    st.can_update()?;
    let cg = st
        .cgroup
        .as_ref()
        .ok_or_else(|| anyhow!("container has no cgroup"))?;
    if !resources.devices.is_empty() {
        // Rewriting the list would deny every device for a moment.
        log::warn!("{id}: update leaves the device rules as they are (as runc does)");
    }
    cgroups::Layout::detect()?.check(&resources)?;
    if let Some(unit) = &cg.systemd {
        crate::systemd::set_properties(unit, &resources).map_err(CgroupError::from)?;
    }
    cgroups::apply(cg, &resources, false)?;
    Ok(0)
}

pub fn delete(g: &GlobalOptions, id: &str, force: bool) -> Result<i32> {
    let dir = ContainerDir::new(&g.root, id);
    let st = match dir.load() {
        Ok(st) => Some(st),
        // A container that is already gone is what `delete --force` wants.
        Err(StateError::NotFound) if force => return Ok(0),
        Err(StateError::NotFound) => bail!("container does not exist"),
        // Half-created (a create killed before it wrote state.json): only
        // --force may clear what is there.
        Err(e) if force => {
            log::warn!("{id}: {e}; removing what is left");
            None
        }
        Err(e) => bail!("{e} (use --force to remove it)"),
    };
    // A stop its shim has yet to record is waited for: delete then finds
    // the container stopped, as it is.
    let st = match st {
        Some(st) if !force => {
            let st = shim_client::recorded_stop(&dir, st)?;
            st.can_delete()?;
            Some(st)
        }
        st => st,
    };
    if let Some(st) = &st {
        if let Some(fd) = st.init.and_then(|init| init.pidfd()) {
            let _ = proc::pidfd_send_signal(&fd, libc::SIGKILL);
            // Frozen, it would never die (v1): thaw after the signal.
            if let Some(cg) = st.cgroup.as_ref().filter(|cg| cgroups::is_frozen(cg)) {
                let _ = cgroups::thaw(cg);
            }
            if !proc::wait_pidfd(&fd, Duration::from_secs(10)) {
                bail!(
                    "tiny-init (pid {}) did not die after SIGKILL",
                    st.init.map_or(0, |i| i.pid)
                );
            }
        }
        if let Some(shim) = st.shim {
            // A shim ends by itself once its container has stopped; give it
            // the moment it needs to record the exit, then insist.
            if let Some(fd) = shim.pidfd() {
                if !proc::wait_pidfd(&fd, Duration::from_secs(5)) {
                    proc::kill_and_wait(&shim, Duration::from_secs(5));
                }
            }
        }
    }
    // The shim releases the network and removes the cgroup when the
    // container stops; after a shim that was killed, or that never got
    // that far, this does (see nsbox_host::teardown). The state directory
    // stays until it succeeds, so that a retry can.
    HostSide {
        id: id.to_string(),
        network_root: Some(g.root.clone()),
        cgroup: st.as_ref().and_then(|s| s.cgroup.clone()),
        stop_scope: Some(crate::systemd::stop_scope),
    }
    .release()?;
    dir.remove()?;
    if let Some(st) = &st {
        hooks::poststop(st);
    }
    Ok(0)
}

/// The container's processes: its cgroup's, or (without one) its PID
/// namespace's.
fn container_pids_of(st: &State, init: ProcessId) -> Vec<i32> {
    if let Some(cg) = &st.cgroup {
        let pids = cgroups::procs(cg);
        if !pids.is_empty() {
            return pids;
        }
    }
    proc::namespace_inode(init.pid, "pid")
        .map(proc::pids_in_pid_namespace)
        .unwrap_or_default()
}

fn container_pids(g: &GlobalOptions, id: &str) -> Result<Vec<i32>> {
    let (_, st) = g.container(id)?;
    let init = st.can_kill()?;
    Ok(container_pids_of(&st, init))
}

pub fn ps(g: &GlobalOptions, id: &str, format: &str, ps_args: &[String]) -> Result<i32> {
    let pids = container_pids(g, id)?;
    match format {
        "json" => {
            output::println(serde_json::to_string(&pids)?)?;
            Ok(0)
        }
        "table" => {
            let args: Vec<String> = if ps_args.is_empty() {
                vec!["-ef".into()]
            } else {
                ps_args.to_vec()
            };
            let out = std::process::Command::new("ps")
                .args(&args)
                .output()
                .context("run ps")?;
            if !out.status.success() {
                bail!(
                    "ps {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            let col = header
                .split_whitespace()
                .position(|h| h == "PID")
                .ok_or_else(|| anyhow!("ps output has no PID column"))?;
            output::println(header)?;
            for line in lines {
                let pid = line
                    .split_whitespace()
                    .nth(col)
                    .and_then(|p| p.parse().ok());
                if pid.is_some_and(|p| pids.contains(&p)) {
                    output::println(line)?;
                }
            }
            Ok(0)
        }
        other => bail!("unknown format {other:?} (table or json)"),
    }
}

pub fn list(g: &GlobalOptions, format: &str, quiet: bool) -> Result<i32> {
    let states: Vec<State> = state::list(&g.root)
        .iter()
        .filter_map(|id| ContainerDir::new(&g.root, id).load().ok())
        .collect();
    if quiet {
        for s in &states {
            output::println(&s.id)?;
        }
        return Ok(0);
    }
    match format {
        "json" => {
            let v: Vec<serde_json::Value> = states.iter().map(State::oci_state).collect();
            output::println(serde_json::to_string(&v)?)?;
        }
        "table" => output::print(table(&states))?,
        other => bail!("unknown format {other:?} (table or json)"),
    }
    Ok(0)
}

/// `list` for a person: what runs, since when, how it ended, and where it
/// answers, in `docker ps`'s words.
fn table(states: &[State]) -> String {
    let mut rows: Vec<Vec<String>> = vec![["ID", "COMMAND", "CREATED", "STATUS", "PID"]
        .map(String::from)
        .to_vec()];
    let with_net = states.iter().any(|s| s.network.is_some());
    if with_net {
        rows[0].push("PORTS".into());
    }
    for s in states {
        let status = s.current_status();
        let words = match status {
            Status::Running | Status::Paused => {
                // The start of tiny-init is close enough to the workload's.
                let up = s
                    .init
                    .and_then(|i| proc::age_secs(i.pid))
                    .map_or(String::new(), |secs| {
                        format!(" {}", state::duration_words(secs))
                    });
                let paused = if status == Status::Paused {
                    " (Paused)"
                } else {
                    ""
                };
                format!("Up{up}{paused}")
            }
            Status::Stopped => {
                let code = s.exit_code.map_or(String::new(), |c| format!(" ({c})"));
                let when = s
                    .finished
                    .as_deref()
                    .map_or(String::new(), |f| format!(" {}", state::ago(f)));
                format!("Exited{code}{when}")
            }
            Status::Created => "Created".into(),
            Status::Creating => "Creating".into(),
        };
        let pid = match (status, s.init) {
            (Status::Running | Status::Paused | Status::Created, Some(i)) => i.pid.to_string(),
            _ => "-".into(),
        };
        let mut command = s.command.join(" ");
        if command.chars().count() > 30 {
            command = command.chars().take(29).collect::<String>() + "…";
        }
        let mut row = vec![
            s.id.clone(),
            format!("{command:?}"),
            state::ago(&s.created),
            words,
            pid,
        ];
        if with_net {
            row.push(match &s.network {
                Some(n) => {
                    let ports: Vec<String> = n
                        .ports
                        .iter()
                        .map(|p| {
                            let ip = p.host_ip.map_or("0.0.0.0".to_string(), |ip| ip.to_string());
                            format!("{ip}:{}->{}/{}", p.host_port, p.container_port, p.protocol)
                        })
                        .collect();
                    std::iter::once(n.ip.to_string())
                        .chain(ports)
                        .collect::<Vec<_>>()
                        .join(", ")
                }
                None => String::new(),
            });
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

pub fn spec(bundle: &Path, opts: crate::spec::SpecOptions) -> Result<i32> {
    crate::spec::check_spec_options(&opts)?;
    let path = bundle.join("config.json");
    if path.exists() {
        bail!("{} already exists; remove it first", path.display());
    }
    std::fs::create_dir_all(bundle).with_context(|| format!("make {}", bundle.display()))?;
    let v = crate::spec::default_spec(&opts);
    std::fs::write(&path, serde_json::to_string_pretty(&v)? + "\n")
        .with_context(|| format!("write {}", path.display()))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stopped(id: &str, network: Option<nsbox_host::network::Endpoint>) -> State {
        State {
            id: id.into(),
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: state::now_rfc3339(),
            recorded_status: Status::Stopped,
            shim: None,
            init: None,
            exit_code: Some(3),
            annotations: Default::default(),
            command: vec!["httpd".into(), "-f".into()],
            owner: 0,
            network,
            cgroup: None,
            hooks: Default::default(),
            oom_kills: 0,
            finished: Some(state::now_rfc3339()),
        }
    }

    #[test]
    fn the_table_shows_status_ago_and_ports() {
        let web = nsbox_host::network::Endpoint {
            id: "web".into(),
            bridge: "nsbox0".into(),
            subnet: protocol::Subnet {
                addr: "10.88.0.0".parse().unwrap(),
                prefix: 16,
            },
            ip: "10.88.0.2".parse().unwrap(),
            gateway: "10.88.0.1".parse().unwrap(),
            veth: "nsb0a580002".into(),
            ports: vec![protocol::PortMapping {
                host_ip: None,
                host_port: 8080,
                container_port: 80,
                protocol: protocol::PortProtocol::Tcp,
            }],
        };
        let out = table(&[stopped("web", Some(web)), stopped("plain", None)]);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].ends_with("PORTS"), "{out}");
        assert!(
            lines[1].contains("\"httpd -f\"")
                && lines[1].contains("Less than a second ago")
                && lines[1].contains("Exited (3) Less than a second ago")
                && lines[1].contains("10.88.0.2, 0.0.0.0:8080->80/tcp"),
            "{out}"
        );
        assert!(
            lines[2].starts_with("plain ") && lines[2].ends_with('-'),
            "{out}"
        );
        // Without any network, no PORTS column at all.
        assert!(!table(&[stopped("plain", None)]).contains("PORTS"));
    }
}
