//! linux.seccomp compiled to a BPF program here, in the runtime, with
//! libseccomp: the runtime validates before anything is made, and neither
//! the shim nor tiny-init links libseccomp or parses a profile. The
//! workload loads the program with seccomp(2) just before exec.
//!
//! As runc: syscall names this architecture does not know are skipped
//! (profiles list every architecture's names), a rule whose action is the
//! default one is dropped (libseccomp refuses it), and a rule whose
//! conditions name one argument twice becomes one rule per condition
//! (libseccomp ANDs conditions, and two on one argument would never match).

use std::io::{Read, Seek};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// What the profile asks that nsbox cannot do; the text names it.
    #[error("{0}")]
    Invalid(String),
    /// libseccomp refused a step; `what` names the step.
    #[error("{what}")]
    Libseccomp {
        what: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    /// Reading the compiled program back.
    #[error("{what}")]
    Export {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, SeccompError>;

fn libseccomp(what: String) -> impl FnOnce(libseccomp::error::SeccompError) -> SeccompError {
    move |source| SeccompError::Libseccomp { what, source }
}

fn export_error(what: &'static str) -> impl FnOnce(std::io::Error) -> SeccompError {
    move |source| SeccompError::Export { what, source }
}

const EPERM: u32 = libc::EPERM as u32;

/// What `features` reports: the actions, operators and architectures a
/// profile may name (SCMP_ACT_NOTIFY with a listenerPath).
pub const ACTIONS: &[&str] = &[
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
];
pub const OPERATORS: &[&str] = &[
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];
pub const ARCHS: &[&str] = &["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32"];
/// The linux.seccomp.flags that `compile` passes to seccomp(2).
pub const FLAGS: &[&str] = &[
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
];

/// libseccomp's action for an OCI one; `what` names where the profile
/// asks for it, should it be one nsbox refuses. SCMP_ACT_NOTIFY needs a
/// listenerPath, where the listener goes (`listener`).
fn action(
    what: &str,
    a: LinuxSeccompAction,
    errno_ret: Option<u32>,
    listener: bool,
) -> Result<ScmpAction> {
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno_ret.unwrap_or(EPERM) as i32),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno_ret.unwrap_or(EPERM) as u16),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify if listener => ScmpAction::Notify,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(SeccompError::Invalid(format!(
                "{what}: seccomp action SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath, \
                 where its notifications are answered"
            )))
        }
    })
}

fn compare(op: LinuxSeccompOperator, value_two: Option<u64>) -> ScmpCompareOp {
    match op {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        // (arg & value) == valueTwo; libseccomp takes the mask in the op.
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(value_two.unwrap_or(0)),
    }
}

pub fn compile(s: &LinuxSeccomp) -> Result<protocol::Seccomp> {
    let listener = match s.listener_path() {
        None => false,
        Some(p) if p.is_absolute() => true,
        Some(p) => {
            return Err(SeccompError::Invalid(format!(
                "seccomp listenerPath {}: must be an absolute path",
                p.display()
            )))
        }
    };
    let default = action(
        "seccomp defaultAction",
        s.default_action(),
        s.default_errno_ret(),
        listener,
    )?;
    if default == ScmpAction::Notify {
        // Every syscall, the runtime's own after the filter, would wait
        // on an agent that may need the container started to answer.
        return Err(SeccompError::Invalid(
            "seccomp defaultAction SCMP_ACT_NOTIFY: name the syscalls to notify in rules".into(),
        ));
    }
    let mut notifies = false;
    let mut ctx = ScmpFilterContext::new(default).map_err(libseccomp("seccomp".into()))?;
    let native = ScmpArch::native();
    for &arch in s.architectures().iter().flatten() {
        let a = scmp_arch(arch);
        if a != native && a != ScmpArch::Native {
            ctx.add_arch(a)
                .map_err(libseccomp(format!("seccomp architecture {arch}")))?;
        }
    }
    for rule in s.syscalls().iter().flatten() {
        let names = rule.names().join(",");
        let act = action(
            &format!("seccomp rule for {names}"),
            rule.action(),
            rule.errno_ret(),
            listener,
        )?;
        if act == default {
            continue;
        }
        notifies |= act == ScmpAction::Notify;
        let args = rule.args().clone().unwrap_or_default();
        for a in &args {
            if a.index() > 5 {
                return Err(SeccompError::Invalid(format!(
                    "seccomp rule for {names}: argument index {} is above 5",
                    a.index()
                )));
            }
        }
        let cmps: Vec<ScmpArgCompare> = args
            .iter()
            .map(|a| {
                ScmpArgCompare::new(a.index() as u32, compare(a.op(), a.value_two()), a.value())
            })
            .collect();
        let mut indexes: Vec<usize> = args.iter().map(|a| a.index()).collect();
        indexes.sort_unstable();
        indexes.dedup();
        let separate = indexes.len() != args.len();
        for name in rule.names() {
            let Ok(sc) = ScmpSyscall::from_name(name) else {
                log::debug!("seccomp: syscall {name} is unknown here; skipped");
                continue;
            };
            let r = if cmps.is_empty() {
                ctx.add_rule(act, sc).map(drop)
            } else if separate {
                cmps.iter()
                    .try_for_each(|c| ctx.add_rule_conditional(act, sc, &[*c]).map(drop))
            } else {
                ctx.add_rule_conditional(act, sc, &cmps).map(drop)
            };
            r.map_err(libseccomp(format!("seccomp rule for {name}")))?;
        }
    }
    let mut flags = 0u32;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 1,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => 2,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => 4,
        };
    }
    Ok(protocol::Seccomp {
        bpf: export(&ctx)?,
        flags,
        listener: listener && notifies,
    })
}

/// libseccomp's name for an architecture a profile lists.
fn scmp_arch(a: Arch) -> ScmpArch {
    match a {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
    }
}

/// libseccomp 2.5 exports to a file descriptor only: a memfd.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<u8>> {
    let fd = nix::sys::memfd::memfd_create(
        c"nsbox-seccomp",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )
    .map_err(|e| export_error("memfd_create")(e.into()))?;
    let mut f = std::fs::File::from(fd);
    ctx.export_bpf(&f)
        .map_err(libseccomp("seccomp export".into()))?;
    let mut bpf = Vec::new();
    f.rewind()
        .and_then(|_| f.read_to_end(&mut bpf))
        .map_err(export_error("read the seccomp program back"))?;
    if bpf.is_empty() || bpf.len() % 8 != 0 {
        return Err(SeccompError::Invalid(format!(
            "seccomp export gave {} bytes, not whole instructions",
            bpf.len()
        )));
    }
    if bpf.len() / 8 > 4096 {
        return Err(SeccompError::Invalid(format!(
            "the seccomp profile compiles to {} instructions; the kernel takes at most 4096",
            bpf.len() / 8
        )));
    }
    Ok(bpf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn podman_profile_compiles() {
        let cfg: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/podman-run-config.json"))
                .unwrap();
        let s = profile(cfg["linux"]["seccomp"].clone());
        let p = compile(&s).unwrap();
        assert!(p.bpf.len() > 8 * 50, "{} bytes", p.bpf.len());
        assert_eq!(p.flags, 0);
    }

    #[test]
    fn unknown_names_are_skipped_and_notify_refused() {
        let p = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                { "names": ["mkdir", "no_such_syscall"], "action": "SCMP_ACT_ERRNO" },
                { "names": ["getpid"], "action": "SCMP_ACT_ALLOW" }
            ]
        })))
        .unwrap();
        assert!(!p.bpf.is_empty());
        let e = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_NOTIFY"
        })))
        .unwrap_err();
        assert!(e.to_string().contains("NOTIFY"), "{e}");
        let notify = |listener: Option<&str>| {
            let mut p = serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{ "names": ["getcwd"], "action": "SCMP_ACT_NOTIFY" }]
            });
            if let Some(l) = listener {
                p["listenerPath"] = l.into();
            }
            compile(&profile(p))
        };
        let e = notify(None).unwrap_err();
        assert!(
            e.to_string().contains("needs linux.seccomp.listenerPath"),
            "{e}"
        );
        assert!(notify(Some("/run/agent.sock")).unwrap().listener);
        assert!(notify(Some("agent.sock")).is_err());
        // An unknown action or architecture does not even parse.
        assert!(serde_json::from_value::<LinuxSeccomp>(serde_json::json!({
            "defaultAction": "SCMP_ACT_FOO"
        }))
        .is_err());
        assert!(serde_json::from_value::<LinuxSeccomp>(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]
        }))
        .is_err());
    }
}
