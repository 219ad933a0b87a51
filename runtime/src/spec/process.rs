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
        rlimits.push(Rlimit {
            resource: rlimit_resource(r.typ()),
            soft: r.soft(),
            hard: r.hard(),
        });
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

fn rlimit_resource(t: PosixRlimitType) -> u32 {
    (match t {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    }) as u32
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
