//! How a child of ours that fails between fork (or clone) and exec tells
//! its parent why: one fixed-size record, the step and the errno, on a
//! `O_CLOEXEC` pipe. A successful exec closes the pipe, so the parent reads
//! either a record or EOF.
//!
//! The sending side runs where only async-signal-safe calls are allowed
//! (the shim clones tiny-init from a process that may not allocate there):
//! [`send`] is one write(2) of a record built on the stack. The receiving
//! side turns the record into a [`Failure`], the one type in which errors
//! cross processes.

use std::os::fd::{BorrowedFd, OwnedFd};

use nix::errno::Errno;

use crate::messages::{Failure, NamespaceKind};

/// tag, argument, two bytes of padding, errno in native byte order.
const RECORD: usize = 8;
/// The tag of [`Step::JoinNamespace`]; its argument is the kind's index in
/// [`NamespaceKind::ALL`].
const JOIN_NAMESPACE: u8 = 0x80;

macro_rules! steps {
    ($( $(#[$doc:meta])* $name:ident = $tag:literal => $text:literal, )*) => {
        /// Everything a child of ours can fail at before it execs.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Step {
            $( $(#[$doc])* $name, )*
            /// setns(2) into a namespace of the container (given by path, or
            /// tiny-init's for `exec`).
            JoinNamespace(NamespaceKind),
        }

        impl Step {
            fn tag(self) -> (u8, u8) {
                match self {
                    $( Step::$name => ($tag, 0), )*
                    Step::JoinNamespace(kind) => (JOIN_NAMESPACE, kind_index(kind)),
                }
            }

            fn from_tag(tag: u8, arg: u8) -> Option<Step> {
                match (tag, arg) {
                    $( ($tag, 0) => Some(Step::$name), )*
                    (JOIN_NAMESPACE, i) => NamespaceKind::ALL.get(i as usize).map(|k| Step::JoinNamespace(*k)),
                    _ => None,
                }
            }

            /// What was being done, as a person reads it.
            fn text(self) -> std::borrow::Cow<'static, str> {
                match self {
                    $( Step::$name => $text.into(), )*
                    Step::JoinNamespace(kind) => {
                        format!("join the container's {} namespace", kind.proc_name()).into()
                    }
                }
            }

            #[cfg(test)]
            const UNIT: &'static [Step] = &[$( Step::$name, )*];
        }
    };
}

steps! {
    // The shim's clone child, on its way to exec tiny-init.
    /// dup2 of tiny-init's socket and binary onto their fixed numbers.
    InitFds = 1 => "set up tiny-init's descriptors",
    /// Writing "0" to the container's cgroup's `tasks` (v1), or any other
    /// way of moving ourselves into the container's cgroup.
    JoinCgroup = 2 => "join the container's cgroup",
    /// Reading the shim's word that the uid and gid maps are written.
    WaitForIdMaps = 3 => "wait for the uid and gid maps",
    /// setgroups/setresgid/setresuid to root of the new user namespace.
    BecomeRoot = 4 => "become root in the container's user namespace",
    /// The read-only bind of tiny-init's binary onto itself.
    BindInitReadOnly = 5 => "bind tiny-init's binary read-only",
    ExecInit = 6 => "exec tiny-init",
    /// unshare(2) of the new namespaces, made after joining a user
    /// namespace by path so that they belong to it.
    UnshareNamespaces = 7 => "make the container's new namespaces in the joined user namespace",
    /// The fork of tiny-init into the new pid namespace made there.
    ForkIntoPidNamespace = 8 => "fork tiny-init into its new pid namespace",

    // A terminal for the process, opened inside the container.
    OpenPtmx = 20 => "open /dev/ptmx",
    UnlockPty = 21 => "unlock the pty",
    OpenPtySlave = 22 => "open the pty's slave",

    // The container's process (the workload or an exec'd one): the checks
    // before fork, then its set-up in the child.
    /// An argument holds a NUL byte, which no C string can carry.
    NulInArgs = 40 => "args",
    NulInEnv = 41 => "env",
    NulInCwd = 42 => "cwd",
    EmptyCommand = 43 => "exec",
    /// The command has no '/' and no directory of $PATH holds it.
    FindInPath = 44 => "exec the command",
    Setsid = 45 => "setsid",
    ControllingTerminal = 46 => "set the controlling terminal",
    Rlimit = 47 => "set rlimits",
    OomScoreAdj = 48 => "set oom_score_adj",
    IoPriority = 49 => "set the I/O priority",
    Seccomp = 50 => "load the seccomp filter",
    Bounding = 51 => "drop bounding capabilities",
    KeepCaps = 52 => "keep capabilities across the uid change",
    Groups = 53 => "set additional groups",
    Gid = 54 => "set the gid",
    Uid = 55 => "set the uid",
    Caps = 56 => "set capabilities",
    Ambient = 57 => "set ambient capabilities",
    NoNewPrivs = 58 => "set no_new_privs",
    Chdir = 59 => "chdir to the working directory",
    /// execve(2) of the container's command.
    Exec = 60 => "exec the command",
    /// PR_SET_PDEATHSIG, for a process whose tiny-init is not PID 1.
    ParentDeathSignal = 61 => "set the parent-death signal",
}

fn kind_index(kind: NamespaceKind) -> u8 {
    let i = NamespaceKind::ALL.iter().position(|&k| k == kind);
    i.map_or(u8::MAX, |i| i as u8)
}

impl Step {
    /// The exit code the failure ends with, as a shell has it for the
    /// container's command: 127 when it is not found, 126 when it cannot be
    /// executed, 1 for every other step (tiny-init that cannot be executed
    /// included: that is nsbox's fault, not the command's).
    pub fn exit_code(self, errno: i32) -> i32 {
        match self {
            Step::EmptyCommand | Step::FindInPath => 127,
            Step::Exec if errno == nix::libc::ENOENT || errno == nix::libc::ENOTDIR => 127,
            Step::Exec => 126,
            _ => 1,
        }
    }

    /// The cause, as a person reads it: the errno's text, except for the
    /// steps that fail on a check of ours rather than on a syscall.
    fn message(self, errno: Errno) -> String {
        match self {
            Step::NulInArgs | Step::NulInEnv | Step::NulInCwd => "contains a NUL byte".into(),
            Step::EmptyCommand => "empty command".into(),
            Step::FindInPath => "executable file not found in $PATH".into(),
            _ => errno.desc().into(),
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

/// A decoded record: the step and its errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub step: Step,
    pub errno: Errno,
}

impl Report {
    pub fn new(step: Step, errno: Errno) -> Report {
        Report { step, errno }
    }

    pub fn exit_code(&self) -> i32 {
        self.step.exit_code(self.errno as i32)
    }

    /// With the step's own text; a caller that knows more (the command's
    /// name, the uid) words it itself from `step`.
    pub fn failure(&self) -> Failure {
        self.failure_as(self.step.to_string())
    }

    /// With `step` as what was being done.
    pub fn failure_as(&self, step: String) -> Failure {
        Failure {
            step,
            message: self.step.message(self.errno),
            exit_code: self.exit_code(),
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.step, self.step.message(self.errno))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("read a child's failure report")]
    Read(#[source] Errno),
    #[error("a child's failure report was cut short ({0} of {RECORD} bytes)")]
    Truncated(usize),
    #[error("a child's failure report names no known step (tag {tag}, argument {arg})")]
    UnknownStep { tag: u8, arg: u8 },
}

/// Tell the parent which step failed, with what errno. Async-signal-safe:
/// no allocation, one write(2) of a record smaller than PIPE_BUF (so it
/// arrives whole). Nothing is left to do if the write fails: the parent
/// then reads EOF and sees the child's exit code.
pub fn send(fd: BorrowedFd, step: Step, errno: i32) {
    let (tag, arg) = step.tag();
    let e = errno.to_ne_bytes();
    let record: [u8; RECORD] = [tag, arg, 0, 0, e[0], e[1], e[2], e[3]];
    while let Err(Errno::EINTR) = nix::unistd::write(fd, &record) {}
}

/// The child's report: None when the pipe closed without one (its exec
/// succeeded and closed our CLOEXEC pipe; or it died, which its exit
/// status then tells).
pub fn receive_report(fd: &OwnedFd) -> Result<Option<Report>, ReportError> {
    use std::os::fd::AsRawFd;
    let mut record = [0u8; RECORD];
    let mut got = 0;
    while got < RECORD {
        match nix::unistd::read(fd.as_raw_fd(), &mut record[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(ReportError::Read(e)),
        }
    }
    match got {
        0 => Ok(None),
        RECORD => {
            let (tag, arg) = (record[0], record[1]);
            let step = Step::from_tag(tag, arg).ok_or(ReportError::UnknownStep { tag, arg })?;
            let errno = i32::from_ne_bytes([record[4], record[5], record[6], record[7]]);
            Ok(Some(Report::new(step, Errno::from_raw(errno))))
        }
        n => Err(ReportError::Truncated(n)),
    }
}

/// [`receive_report`], worded with the step's own text.
pub fn receive(fd: &OwnedFd) -> Result<Option<Failure>, ReportError> {
    Ok(receive_report(fd)?.map(|r| r.failure()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn pipe() -> (OwnedFd, OwnedFd) {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap()
    }

    #[test]
    fn every_step_round_trips() {
        let joins = NamespaceKind::ALL.map(Step::JoinNamespace);
        for &step in Step::UNIT.iter().chain(joins.iter()) {
            let (rd, wr) = pipe();
            send(wr.as_fd(), step, Errno::EPERM as i32);
            drop(wr);
            let got = receive_report(&rd).unwrap().unwrap();
            assert_eq!(got, Report::new(step, Errno::EPERM));
        }
    }

    #[test]
    fn tags_are_distinct() {
        let joins = NamespaceKind::ALL.map(Step::JoinNamespace);
        let all: Vec<Step> = Step::UNIT.iter().chain(joins.iter()).copied().collect();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a.tag(), b.tag(), "{a:?} and {b:?}");
            }
        }
    }

    #[test]
    fn eof_without_a_record_is_none() {
        let (rd, wr) = pipe();
        drop(wr);
        assert!(receive(&rd).unwrap().is_none());
    }

    #[test]
    fn a_short_record_is_an_error() {
        let (rd, wr) = pipe();
        nix::unistd::write(&wr, &[1, 0, 0]).unwrap();
        drop(wr);
        assert!(matches!(receive(&rd), Err(ReportError::Truncated(3))));
    }

    #[test]
    fn an_unknown_step_is_an_error() {
        let (rd, wr) = pipe();
        nix::unistd::write(&wr, &[0xfe, 0, 0, 0, 1, 0, 0, 0]).unwrap();
        drop(wr);
        assert!(matches!(
            receive(&rd),
            Err(ReportError::UnknownStep { tag: 0xfe, .. })
        ));
    }

    #[test]
    fn the_failure_carries_step_cause_and_exit_code() {
        let (rd, wr) = pipe();
        send(
            wr.as_fd(),
            Step::JoinNamespace(NamespaceKind::Network),
            Errno::EPERM as i32,
        );
        drop(wr);
        let f = receive(&rd).unwrap().unwrap();
        assert_eq!(
            f.to_string(),
            "join the container's net namespace: Operation not permitted"
        );
        assert_eq!(f.exit_code, 1);
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(Step::Exec.exit_code(Errno::ENOENT as i32), 127);
        assert_eq!(Step::Exec.exit_code(Errno::ENOTDIR as i32), 127);
        assert_eq!(Step::Exec.exit_code(Errno::EACCES as i32), 126);
        assert_eq!(Step::FindInPath.exit_code(Errno::ENOENT as i32), 127);
        assert_eq!(Step::ExecInit.exit_code(Errno::ENOENT as i32), 1);
        assert_eq!(Step::Chdir.exit_code(Errno::ENOENT as i32), 1);
    }
}
