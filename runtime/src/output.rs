//! What the runtime prints for its caller: `state`, `list`, `ps`,
//! `features`, `logs`. A reader that has gone away (`runtime list | head
//! -1`, `runtime logs -f ID | grep -m1 ready`) ends us as it ends runc and
//! crun: killed by SIGPIPE, with nothing said. Rust's runtime ignores
//! SIGPIPE, so our write sees EPIPE instead; `println!` would panic on it,
//! with a backtrace, and `logs -f` would follow on for nobody.

use std::fmt::Display;
use std::io::{ErrorKind, Write};

use anyhow::{anyhow, Result};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};

/// `text` on stdout.
pub fn print(text: impl Display) -> Result<()> {
    let mut out = std::io::stdout().lock();
    checked(write!(out, "{text}").and_then(|_| out.flush()))
}

/// `text` and a newline on stdout.
pub fn println(text: impl Display) -> Result<()> {
    print(format_args!("{text}\n"))
}

/// The outcome of a write to stdout or stderr: a reader gone away ends us
/// by SIGPIPE; any other error is the command's.
pub fn checked(written: std::io::Result<()>) -> Result<()> {
    match written {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => end_by_sigpipe(),
        r => r.map_err(|e| anyhow!("write the output: {e}")),
    }
}

fn end_by_sigpipe() -> ! {
    // SAFETY: SIG_DFL installs no handler of ours, so no code of ours can
    // run at the signal.
    #[allow(unsafe_code)]
    let _ =
        unsafe { nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl) };
    let mut pipe = SigSet::empty();
    pipe.add(Signal::SIGPIPE);
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&pipe), None);
    let _ = nix::sys::signal::raise(Signal::SIGPIPE);
    // Not reached; were the signal kept from us, the shell's code for it.
    std::process::exit(128 + libc::SIGPIPE)
}
