//! An OCI process (config.json's, or an exec's process.json) as tiny-init
//! takes it: arguments, environment, user, rlimits, capabilities and the
//! rest, checked.

use std::str::FromStr;

use oci_spec::runtime::{IOPriorityClass, PosixRlimitType};
use protocol::{Capabilities, CpuAffinity, IoPriority, Process, Rlimit, Scheduler};

use super::extras::{ExecCpuAffinity, ProcessExtras};
use super::Result;

/// An OCI process as tiny-init takes it, with what oci-spec misses of it
/// (`extras`). Its seccomp filter and personality are the container's,
/// which the caller adds.
pub fn convert_process(p: &oci_spec::runtime::Process, extras: &ProcessExtras) -> Result<Process> {
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
        personality: None,
        apparmor_profile: super::lsm::apparmor_profile(
            "process.apparmorProfile",
            p.apparmor_profile().as_deref(),
        )?,
        selinux_label: super::lsm::selinux_label(
            "process.selinuxLabel",
            p.selinux_label().as_deref(),
        )?,
        scheduler: p.scheduler().as_ref().map(scheduler).transpose()?,
        cpu_affinity: extras
            .exec_cpu_affinity
            .as_ref()
            .map(cpu_affinity)
            .transpose()?,
    })
}

/// process.scheduler, checked as runc checks it: a priority only for the
/// real-time policies, deadline times only for SCHED_DEADLINE, a nice
/// value within -20..19.
fn scheduler(s: &oci_spec::runtime::Scheduler) -> Result<Scheduler> {
    use oci_spec::runtime::{LinuxSchedulerFlag as F, LinuxSchedulerPolicy as P};
    let policy = *s.policy();
    let nice = s.nice().unwrap_or(0);
    if !(-20..=19).contains(&nice) {
        refuse!("process.scheduler.nice {nice} is not within -20..19");
    }
    let priority = s.priority().unwrap_or(0);
    let realtime = matches!(policy, P::SchedFifo | P::SchedRr);
    if priority != 0 && !realtime {
        refuse!("process.scheduler.priority {priority} is for SCHED_FIFO and SCHED_RR only, not {policy}");
    }
    if realtime && !(1..=99).contains(&priority) {
        refuse!("process.scheduler.priority {priority} is not within 1..99, as {policy} needs");
    }
    let (runtime, deadline, period) = (
        s.runtime().unwrap_or(0),
        s.deadline().unwrap_or(0),
        s.period().unwrap_or(0),
    );
    if policy != P::SchedDeadline && (runtime, deadline, period) != (0, 0, 0) {
        refuse!("process.scheduler: runtime, deadline and period are for SCHED_DEADLINE only, not {policy}");
    }
    let mut flags = 0u64;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            F::SchedResetOnFork => 0x01,
            F::SchedFlagReclaim => 0x02,
            F::SchedFlagDLOverrun => 0x04,
            F::SchedFlagKeepPolicy => 0x08,
            F::SchedFlagKeepParams => 0x10,
            F::SchedFlagUtilClampMin => 0x20,
            F::SchedFlagUtilClampMax => 0x40,
        };
    }
    Ok(Scheduler {
        policy: match policy {
            P::SchedOther => 0,
            P::SchedFifo => 1,
            P::SchedRr => 2,
            P::SchedBatch => 3,
            P::SchedIso => 4,
            P::SchedIdle => 5,
            P::SchedDeadline => 6,
        },
        flags,
        nice,
        priority: priority.max(0) as u32,
        runtime,
        deadline,
        period,
    })
}

fn cpu_affinity(a: &ExecCpuAffinity) -> Result<CpuAffinity> {
    let list = |what: &str, s: &Option<String>| -> Result<Option<Vec<u16>>> {
        match s.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(text) => cpu_list(text)
                .map(Some)
                .ok_or(())
                .or_else(|_| refuse!("process.execCPUAffinity.{what} {text:?} is not a list of CPUs such as \"0-3,7\"")),
        }
    };
    Ok(CpuAffinity {
        initial: list("initial", &a.initial)?,
        last: list("final", &a.last)?,
    })
}

/// "0-3,7": CPUs 0, 1, 2, 3 and 7 (at most CPU 1023, as cpu_set_t holds).
fn cpu_list(text: &str) -> Option<Vec<u16>> {
    let mut cpus = Vec::new();
    for part in text.split(',') {
        let (a, b) = match part.trim().split_once('-') {
            Some((a, b)) => (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?),
            None => {
                let n = part.trim().parse::<u16>().ok()?;
                (n, n)
            }
        };
        if a > b || b >= 1024 {
            return None;
        }
        cpus.extend(a..=b);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Some(cpus)
}

/// linux.personality: the persona for personality(2). runtime-spec
/// defines no flags yet; any is refused rather than dropped.
pub fn personality(p: &oci_spec::runtime::LinuxPersonality) -> Result<u32> {
    use oci_spec::runtime::LinuxPersonalityDomain as D;
    if let Some(f) = p.flags().as_ref().and_then(|f| f.first()) {
        refuse!("linux.personality.flags {f:?}: runtime-spec defines no personality flags");
    }
    Ok(match p.domain() {
        D::PerLinux => 0x0000,
        D::PerLinux32 => 0x0008,
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
    fn cpu_lists_and_scheduler_checks() {
        assert_eq!(cpu_list("0-3,7"), Some(vec![0, 1, 2, 3, 7]));
        assert_eq!(cpu_list("1"), Some(vec![1]));
        assert_eq!(cpu_list("3-1"), None);
        assert_eq!(cpu_list("0,x"), None);
        assert_eq!(cpu_list("1024"), None);
        let sched = |v: serde_json::Value| scheduler(&serde_json::from_value(v).unwrap());
        let s = sched(serde_json::json!({ "policy": "SCHED_BATCH", "nice": 5 })).unwrap();
        assert_eq!((s.policy, s.nice), (3, 5));
        let s = sched(serde_json::json!({ "policy": "SCHED_FIFO", "priority": 10 })).unwrap();
        assert_eq!((s.policy, s.priority), (1, 10));
        for bad in [
            serde_json::json!({ "policy": "SCHED_OTHER", "priority": 10 }),
            serde_json::json!({ "policy": "SCHED_RR" }),
            serde_json::json!({ "policy": "SCHED_OTHER", "nice": 20 }),
            serde_json::json!({ "policy": "SCHED_BATCH", "runtime": 1 }),
        ] {
            assert!(sched(bad.clone()).is_err(), "{bad}");
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
        let p = convert_process(&p, &ProcessExtras::default()).unwrap();
        assert_eq!(p.rlimits[0].resource, libc::RLIMIT_NOFILE as u32);
        let io = p.io_priority.unwrap();
        assert_eq!((io.class, io.level), (3, 4));
    }
}
