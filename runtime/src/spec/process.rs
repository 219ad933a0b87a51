//! An OCI process (config.json's, or an exec's process.json) as tiny-init
//! takes it: arguments, environment, user, rlimits, capabilities and the
//! rest, checked.

use std::str::FromStr;

use oci_spec::runtime::{IOPriorityClass, PosixRlimitType};
use protocol::{Capabilities, IoPriority, Process, Rlimit};

use super::Result;

/// An OCI process as tiny-init takes it. Its seccomp filter is the
/// container's, which the caller compiles.
pub fn convert_process(p: &oci_spec::runtime::Process) -> Result<Process> {
    let args = p.args().clone().unwrap_or_default();
    if args.is_empty() || args[0].is_empty() {
        refuse!("process.args is empty: nothing to run");
    }
    let cwd = p.cwd().to_string_lossy().into_owned();
    if !cwd.starts_with('/') {
        refuse!("process.cwd {cwd:?} must be an absolute path");
    }
    let mut rlimits = Vec::new();
    for r in p.rlimits().clone().unwrap_or_default() {
        if r.soft() > r.hard() {
            refuse!(
                "rlimit {}: soft limit {} is above hard limit {}",
                r.typ(),
                r.soft(),
                r.hard()
            );
        }
        let rlimit = Rlimit {
            resource: rlimit_resource(r.typ()),
            soft: r.soft(),
            hard: r.hard(),
        };
        settable(r.typ(), &rlimit)?;
        rlimits.push(rlimit);
    }
    let capabilities = match p.capabilities() {
        None => None,
        Some(c) => Some(Capabilities {
            bounding: cap_numbers(c.bounding())?,
            effective: cap_numbers(c.effective())?,
            permitted: cap_numbers(c.permitted())?,
            inheritable: cap_numbers(c.inheritable())?,
            ambient: cap_numbers(c.ambient())?,
        }),
    };
    if let Some(c) = &capabilities {
        within_bounding(c)?;
    }
    let io_priority = match p.io_priority() {
        None => None,
        Some(io) => {
            if !(0..=7).contains(&io.priority()) {
                refuse!(
                    "process.ioPriority priority {} is not within 0..7",
                    io.priority()
                );
            }
            Some(IoPriority {
                class: io_priority_class(io.class()),
                level: io.priority() as u8,
            })
        }
    };
    if let Some(adj) = p.oom_score_adj() {
        if !(-1000..=1000).contains(&adj) {
            refuse!("process.oomScoreAdj {adj} is not within -1000..1000");
        }
    }
    let user = p.user();
    Ok(Process {
        args,
        env: p.env().clone().unwrap_or_default(),
        cwd,
        uid: user.uid(),
        gid: user.gid(),
        additional_gids: user.additional_gids().clone().unwrap_or_default(),
        umask: user.umask(),
        rlimits,
        capabilities,
        no_new_privileges: p.no_new_privileges().unwrap_or(false),
        terminal: p.terminal().unwrap_or(false),
        oom_score_adj: p.oom_score_adj(),
        io_priority,
        seccomp: None,
    })
}

/// setrlimit(2)'s number for the resource.
fn rlimit_resource(t: PosixRlimitType) -> u32 {
    nix_resource(t) as u32
}

/// The workload inherits the runtime's limits (through the shim and
/// tiny-init) and may raise a hard one only with CAP_SYS_RESOURCE, and
/// RLIMIT_NOFILE never above fs.nr_open: a limit the kernel would refuse
/// at `start` is refused here, at `create`, as runc refuses it (it sets
/// them on its init before `create` returns).
fn settable(t: PosixRlimitType, r: &Rlimit) -> Result<()> {
    if t == PosixRlimitType::RlimitNofile {
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        if let Some(max) = nr_open.filter(|&max| r.hard > max) {
            refuse!(
                "rlimit {t}: hard limit {} is above the kernel's fs.nr_open, {max}",
                r.hard
            );
        }
    }
    let ours = nix::sys::resource::getrlimit(nix_resource(t)).map(|(_, hard)| hard);
    let may_raise = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_RESOURCE,
    )
    .unwrap_or(false);
    if let Some(ours) = ours.ok().filter(|&ours| r.hard > ours && !may_raise) {
        refuse!(
            "rlimit {t}: hard limit {} is above this runtime's own, {ours}, and raising it needs CAP_SYS_RESOURCE",
            r.hard
        );
    }
    Ok(())
}

fn nix_resource(t: PosixRlimitType) -> nix::sys::resource::Resource {
    use nix::sys::resource::Resource;
    match t {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

/// An empty (or missing) bounding set while another set names a
/// capability: the kernel refuses an inheritable capability outside the
/// bounding set and drops a permitted or effective one at exec, so the
/// workload would run without what config.json gives it.
fn within_bounding(c: &Capabilities) -> Result<()> {
    if !c.bounding.is_empty() {
        return Ok(());
    }
    for (set, list) in [
        ("effective", &c.effective),
        ("permitted", &c.permitted),
        ("inheritable", &c.inheritable),
        ("ambient", &c.ambient),
    ] {
        if let Some(&cap) = list.first() {
            let name = caps::all()
                .into_iter()
                .find(|k| k.index() == cap)
                .map_or(format!("capability {cap}"), |k| k.to_string());
            refuse!("process.capabilities.bounding is empty, but {set} names {name}: a capability outside the bounding set cannot be kept");
        }
    }
    Ok(())
}

/// ioprio_set(2)'s IOPRIO_CLASS_* numbers.
fn io_priority_class(c: IOPriorityClass) -> u8 {
    match c {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    }
}

/// A capability set as the numbers capset(2) takes, sorted, each once.
fn cap_numbers(set: &Option<oci_spec::runtime::Capabilities>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for c in set.iter().flatten() {
        // oci-spec names it without its prefix ("CHOWN"); caps with it.
        let name = format!("CAP_{c}");
        match caps::Capability::from_str(&name) {
            Ok(cap) => out.push(cap.index()),
            Err(_) => refuse!("capability {name} is unknown"),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_capability_caps_knows_is_named_as_oci_spec_names_it() {
        for cap in caps::all() {
            let name = cap.to_string();
            let oci = oci_spec::runtime::Capability::from_str(name.trim_start_matches("CAP_"))
                .unwrap_or_else(|_| panic!("oci-spec does not parse {name}"));
            let set: oci_spec::runtime::Capabilities = [oci].into_iter().collect();
            assert_eq!(cap_numbers(&Some(set)).unwrap(), [cap.index()], "{name}");
        }
    }

    #[test]
    fn rlimit_and_io_priority_names_become_numbers() {
        let p: oci_spec::runtime::Process = serde_json::from_value(serde_json::json!({
            "args": ["sh"], "cwd": "/", "user": { "uid": 0, "gid": 0 },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "soft": 10, "hard": 20 }],
            "ioPriority": { "class": "IOPRIO_CLASS_IDLE", "priority": 4 }
        }))
        .unwrap();
        let p = convert_process(&p).unwrap();
        assert_eq!(p.rlimits[0].resource, libc::RLIMIT_NOFILE as u32);
        let io = p.io_priority.unwrap();
        assert_eq!((io.class, io.level), (3, 4));
    }
}
