//! nsbox-multitool: a small, statically linked helper that the integration
//! tests run *inside* containers, so that they can assert from the inside
//! (namespaces, pids, signals, reaping, leaked fds) what the host cannot see.
//!
//! std and libc only: it is copied into a busybox rootfs that has no libc.
//! Every line of output is flushed at once, because tests poll the file that
//! a detached container writes to.
//!
//! ```text
//! nsbox-multitool exit N                  exit with N
//! nsbox-multitool kill-self SIG           raise SIG with its default disposition
//! nsbox-multitool print-ns [NAME...]      "NAME INODE" for ipc mnt net pid uts
//! nsbox-multitool pids                    "pid=P ppid=Q"
//! nsbox-multitool wait-signal SIG... [--then-exit N]
//!                                         "ready", then "caught SIGNAME" per signal;
//!                                         exits 0 after SIGTERM, or N after the first signal
//! nsbox-multitool orphans N               make N zombies that only PID 1 can reap,
//!                                         then "zombies K"; exit 0 iff K reached 0
//! nsbox-multitool fds                     "fds 0 1 2 ..." (this process's open fds)
//! nsbox-multitool sleep SECS              sleep (fractions allowed)
//! nsbox-multitool status FIELD...         the lines of /proc/self/status for FIELDs
//! nsbox-multitool try-write PATH          "ok", or "error: CAUSE (errno N)" and exit 1
//! nsbox-multitool write-guard PATH        what keeps PATH from being written, beyond
//!                                         the kernel's ETXTBSY for a running binary:
//!                                         "mount ro|rw", then "sealed|not sealed"
//! nsbox-multitool udp-echo PORT PREFIX    "ready", then answer each datagram on
//!                                         0.0.0.0:PORT with PREFIX and the datagram
//! nsbox-multitool udp-ask ADDR:PORT TEXT  send TEXT, print the answer; exit 1 if
//!                                         none came (5 tries, 400 ms each)
//! nsbox-multitool hog MIB                 allocate and touch MIB MiB, then "allocated MIB"
//! nsbox-multitool signal-burst N          "ready", count SIGUSR1s until a SIGUSR2 comes,
//!                                         then "usr1 COUNT usr2" and exit N
//! nsbox-multitool garbage-fds             write garbage to every fd of its own and of
//!                                         PID 1 it can open; "garbage wrote K of M"
//! nsbox-multitool pause                   a pod's sandbox process (Kubernetes' pause):
//!                                         reap every child, exit 0 on SIGINT or SIGTERM
//! ```

use std::ffi::CString;
use std::io::Write;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: nsbox-multitool exit N | kill-self SIG | print-ns [NAME...] | pids \
| wait-signal SIG... [--then-exit N] | orphans N | fds | sleep SECS | status FIELD... | try-write PATH \
| write-guard PATH \
| udp-echo PORT PREFIX | udp-ask ADDR:PORT TEXT | try-init-module \
| reaper PIDFILE -- CMD... | console SOCKET [INPUT] | hog MIB | signal-burst N | garbage-fds \
| pause";

const SIGNALS: &[(&str, libc::c_int)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nsbox-multitool: {e}");
            2
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

fn run(args: &[String]) -> Result<i32, String> {
    let (cmd, rest) = args.split_first().ok_or(USAGE)?;
    match cmd.as_str() {
        "exit" => Ok(parse_num(one(rest)?)?),
        "kill-self" => kill_self(parse_signal(one(rest)?)?),
        "print-ns" => print_ns(rest),
        "pids" => {
            // SAFETY: getpid and getppid cannot fail.
            let (pid, ppid) = unsafe { (libc::getpid(), libc::getppid()) };
            say(&format!("pid={pid} ppid={ppid}"));
            Ok(0)
        }
        "wait-signal" => wait_signal(rest),
        "orphans" => orphans(parse_num(one(rest)?)?),
        "fds" => fds(),
        "sleep" => {
            let secs: f64 = one(rest)?
                .parse()
                .map_err(|e| format!("sleep: bad duration: {e}"))?;
            std::thread::sleep(Duration::from_secs_f64(secs));
            Ok(0)
        }
        "status" => status(rest),
        "try-write" => try_write(one(rest)?),
        "write-guard" => write_guard(one(rest)?),
        "try-init-module" => try_init_module(),
        "reaper" => reaper(rest),
        "console" => console(rest),
        "udp-echo" => match rest {
            [port, prefix] => udp_echo(parse_num(port)?, prefix),
            _ => Err(format!("udp-echo: expected PORT PREFIX\n{USAGE}")),
        },
        "udp-ask" => match rest {
            [addr, text] => udp_ask(addr, text),
            _ => Err(format!("udp-ask: expected ADDR:PORT TEXT\n{USAGE}")),
        },
        "hog" => hog(parse_num(one(rest)?)?),
        "signal-burst" => signal_burst(parse_num(one(rest)?)?),
        "garbage-fds" => garbage_fds(),
        "pause" => pause(),
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    }
}

fn one(rest: &[String]) -> Result<&str, String> {
    match rest {
        [arg] => Ok(arg),
        _ => Err(format!("expected exactly one argument, got {rest:?}")),
    }
}

fn parse_num<T: std::str::FromStr>(s: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| format!("bad number {s:?}: {e}"))
}

/// Prints one line and flushes it, so that a test polling a file sees it now.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn errno_text() -> String {
    let e = std::io::Error::last_os_error();
    format!("{e}")
}

/// Accepts `USR1`, `SIGUSR1`, `usr1` and `10`.
fn parse_signal(s: &str) -> Result<libc::c_int, String> {
    if let Ok(n) = s.parse::<libc::c_int>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(format!("signal number {n} out of range"));
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, sig)| *sig)
        .ok_or_else(|| format!("unknown signal {s:?}"))
}

fn signal_name(sig: libc::c_int) -> String {
    match SIGNALS.iter().find(|(_, n)| *n == sig) {
        Some((name, _)) => format!("SIG{name}"),
        None => format!("SIG{sig}"),
    }
}

fn kill_self(sig: libc::c_int) -> Result<i32, String> {
    let _ = std::io::stdout().flush();
    // SAFETY: plain syscalls on our own process; the set is initialised by
    // sigemptyset before use.
    unsafe {
        // Default disposition and unblocked, whatever we inherited, so that
        // the exit status is 128+SIG for every signal whose default is to die.
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        if libc::kill(libc::getpid(), sig) != 0 {
            return Err(format!("kill-self: kill: {}", errno_text()));
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    Err(format!(
        "kill-self: still alive one second after {}",
        signal_name(sig)
    ))
}

fn print_ns(rest: &[String]) -> Result<i32, String> {
    let default = ["ipc", "mnt", "net", "pid", "uts"].map(String::from);
    let names = if rest.is_empty() { &default[..] } else { rest };
    for name in names {
        let link = std::fs::read_link(format!("/proc/self/ns/{name}"))
            .map_err(|e| format!("print-ns: /proc/self/ns/{name}: {e}"))?;
        // "ipc:[4026531839]" -> "4026531839"
        let text = link.to_string_lossy();
        let inode = text
            .split_once('[')
            .and_then(|(_, r)| r.strip_suffix(']'))
            .ok_or_else(|| format!("print-ns: unexpected link {text:?}"))?;
        say(&format!("{name} {inode}"));
    }
    Ok(0)
}

/// What Kubernetes' pause image does, for the CRI tests' locally built
/// sandbox image: hold the pod's namespaces, reap what is orphaned to it
/// when it is PID 1 of a shared PID namespace, end on SIGINT or SIGTERM.
fn pause() -> Result<i32, String> {
    // SAFETY: the set is initialised by sigemptyset; sigprocmask and
    // sigwait only read it; waitpid with WNOHANG only reaps.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGCHLD] {
            libc::sigaddset(&mut set, sig);
        }
        if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(format!("sigprocmask: {}", errno_text()));
        }
        loop {
            let mut sig: libc::c_int = 0;
            let rc = libc::sigwait(&set, &mut sig);
            if rc != 0 {
                return Err(format!(
                    "sigwait: {}",
                    std::io::Error::from_raw_os_error(rc)
                ));
            }
            if sig != libc::SIGCHLD {
                return Ok(0);
            }
            while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {}
        }
    }
}

fn wait_signal(rest: &[String]) -> Result<i32, String> {
    let mut signals = Vec::new();
    let mut then_exit = None;
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        if arg == "--then-exit" {
            let n = it.next().ok_or("--then-exit needs a number")?;
            then_exit = Some(parse_num::<i32>(n)?);
        } else {
            let sig = parse_signal(arg)?;
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                return Err(format!("{} cannot be caught", signal_name(sig)));
            }
            signals.push(sig);
        }
    }
    if signals.is_empty() {
        return Err("wait-signal needs at least one signal".into());
    }
    // sigwait-style: the signals stay blocked and are taken synchronously, so
    // there is no handler to race with and none is lost between two waits
    // (standard signals that arrive while one is pending coalesce, as anywhere).
    // SAFETY: the set is initialised by sigemptyset; sigprocmask and sigwait
    // only read it.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &sig in &signals {
            libc::sigaddset(&mut set, sig);
        }
        if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(format!("sigprocmask: {}", errno_text()));
        }
        set
    };
    say("ready");
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: set is a valid, initialised sigset; sig is a valid out-pointer.
        let rc = unsafe { libc::sigwait(&set, &mut sig) };
        if rc != 0 {
            return Err(format!(
                "sigwait: {}",
                std::io::Error::from_raw_os_error(rc)
            ));
        }
        say(&format!("caught {}", signal_name(sig)));
        if let Some(code) = then_exit {
            return Ok(code);
        }
        if sig == libc::SIGTERM {
            return Ok(0);
        }
    }
}

/// Makes `n` zombies that only PID 1 can reap, and waits (bounded) for them
/// to be reaped. Each child forks a grandchild and exits at once; the
/// grandchild waits until it has been re-parented (to PID 1 of the pid
/// namespace, since nothing here is a subreaper), reports its pid on a pipe
/// and exits. We reap our own children only, so if PID 1 does not reap, the
/// grandchildren stay zombies and this exits 1.
fn orphans(n: usize) -> Result<i32, String> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds is a valid two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe2: {}", errno_text()));
    }
    let (rd, wr) = (fds[0], fds[1]);
    let _ = std::io::stdout().flush();
    let mut children = Vec::with_capacity(n);
    for _ in 0..n {
        // SAFETY: this process is single-threaded; the child and the
        // grandchild only make raw syscalls and leave with _exit.
        match unsafe { libc::fork() } {
            -1 => return Err(format!("fork: {}", errno_text())),
            0 => unsafe { orphan_child(rd, wr) },
            pid => children.push(pid),
        }
    }
    // SAFETY: wr is our own pipe end; closing it lets the read below see EOF
    // once every grandchild has exited.
    unsafe { libc::close(wr) };
    for child in children {
        let mut status = 0;
        // SAFETY: status is a valid out-pointer.
        if unsafe { libc::waitpid(child, &mut status, 0) } != child {
            return Err(format!("waitpid {child}: {}", errno_text()));
        }
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            return Err(format!("child {child} failed: status {status:#x}"));
        }
    }

    // Collect the grandchildren's pids; EOF means all of them have closed
    // the pipe, i.e. are exiting or gone.
    let mut grandchildren = Vec::with_capacity(n);
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "orphans: only {} of {n} grandchildren reported",
                buf.len() / 4
            ));
        }
        let mut pfd = libc::pollfd {
            fd: rd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: pfd is one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(1000) as libc::c_int) };
        if rc < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("poll: {}", errno_text()));
        }
        if rc == 0 {
            continue;
        }
        let mut chunk = [0u8; 4096];
        // SAFETY: chunk is a valid buffer of the length given.
        let got = unsafe { libc::read(rd, chunk.as_mut_ptr().cast(), chunk.len()) };
        if got < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("read: {}", errno_text()));
        }
        if got == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..got as usize]);
    }
    for bytes in buf.chunks_exact(4) {
        grandchildren.push(i32::from_ne_bytes(bytes.try_into().unwrap()));
    }
    if grandchildren.len() != n {
        return Err(format!(
            "orphans: {} of {n} grandchildren reported their pid",
            grandchildren.len()
        ));
    }

    // Now count what is left: every zombie in /proc, and every grandchild
    // that still exists in any state.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut left;
    loop {
        left = pending(&grandchildren)?;
        if left == 0 || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    say(&format!("zombies {left}"));
    Ok(if left == 0 { 0 } else { 1 })
}

/// The grandchild-maker, in the forked child. Never returns.
///
/// # Safety
/// Must only be called in a freshly forked child of a single-threaded process.
unsafe fn orphan_child(rd: libc::c_int, wr: libc::c_int) -> ! {
    let parent = libc::getpid();
    match libc::fork() {
        -1 => libc::_exit(3),
        0 => {
            libc::close(rd);
            // Exit only once our parent is gone and we have been re-parented,
            // so that nobody but PID 1 can reap us. Bounded: ~5 s.
            let mut tries = 0;
            while libc::getppid() == parent && tries < 5000 {
                libc::usleep(1000);
                tries += 1;
            }
            let pid = libc::getpid().to_ne_bytes();
            libc::write(wr, pid.as_ptr().cast(), pid.len());
            libc::_exit(0)
        }
        _ => libc::_exit(0),
    }
}

/// How many of `watched` still exist, plus every other zombie in /proc.
fn pending(watched: &[libc::pid_t]) -> Result<usize, String> {
    let mut count = 0;
    let dir = std::fs::read_dir("/proc").map_err(|e| format!("/proc: {e}"))?;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "PID (COMM) STATE ...": COMM may contain spaces and parentheses.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().next())
            .unwrap_or("?");
        if state == "Z" || watched.contains(&pid) {
            count += 1;
        }
    }
    Ok(count)
}

fn fds() -> Result<i32, String> {
    let mut seen = Vec::new();
    {
        let dir = std::fs::read_dir("/proc/self/fd").map_err(|e| format!("/proc/self/fd: {e}"))?;
        for entry in dir {
            let entry = entry.map_err(|e| format!("/proc/self/fd: {e}"))?;
            if let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<libc::c_int>().ok())
            {
                seen.push(fd);
            }
        }
    }
    // The directory is closed now: whatever is still open was open before.
    // SAFETY: F_GETFD only queries the descriptor.
    let mut open: Vec<_> = seen
        .into_iter()
        .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1)
        .collect();
    open.sort_unstable();
    let list: Vec<String> = open.iter().map(|fd| fd.to_string()).collect();
    say(&format!("fds {}", list.join(" ")));
    Ok(0)
}

fn status(fields: &[String]) -> Result<i32, String> {
    let text = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("/proc/self/status: {e}"))?;
    for field in fields {
        let line = text
            .lines()
            .find(|l| l.split_once(':').is_some_and(|(k, _)| k == field))
            .ok_or_else(|| format!("status: no field {field:?}"))?;
        say(line);
    }
    Ok(0)
}

fn try_write(path: &str) -> Result<i32, String> {
    let c = CString::new(path).map_err(|_| "path contains NUL")?;
    // SAFETY: c is a valid NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        say(&format!("error: {e}"));
        return Ok(1);
    }
    let data = b"x\n";
    // SAFETY: fd is open; data is a valid buffer.
    let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    let e = std::io::Error::last_os_error();
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    if n < 0 {
        say(&format!("error: {e}"));
        return Ok(1);
    }
    say("ok");
    Ok(0)
}

/// What keeps PATH from being written once nothing runs it any more (a
/// write to a running binary fails with ETXTBSY whatever else guards it):
/// the mount it is on being read-only, and, for a memfd, F_SEAL_WRITE.
fn write_guard(path: &str) -> Result<i32, String> {
    let c = CString::new(path).map_err(|_| "path contains NUL")?;
    // SAFETY: c is a valid NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(format!("write-guard: open {path}: {}", errno_text()));
    }
    // SAFETY: a zeroed statvfs is a valid out-parameter; fd is open.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::fstatvfs(fd, &mut st) };
    // SAFETY: F_GET_SEALS only queries fd (EINVAL for what is not a memfd).
    let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    if rc != 0 {
        return Err(format!("write-guard: fstatvfs {path}: {}", errno_text()));
    }
    say(if st.f_flag & libc::ST_RDONLY != 0 {
        "mount ro"
    } else {
        "mount rw"
    });
    say(if seals >= 0 && seals & libc::F_SEAL_WRITE != 0 {
        "sealed"
    } else {
        "not sealed"
    });
    Ok(0)
}

/// A UDP echo with a prefix, so that a test knows which container answered.
fn udp_echo(port: u16, prefix: &str) -> Result<i32, String> {
    let sock = std::net::UdpSocket::bind(("0.0.0.0", port))
        .map_err(|e| format!("udp-echo: bind port {port}: {e}"))?;
    say("ready");
    let mut buf = [0u8; 1500];
    loop {
        let (n, from) = sock
            .recv_from(&mut buf)
            .map_err(|e| format!("udp-echo: receive: {e}"))?;
        let mut reply = prefix.as_bytes().to_vec();
        reply.extend_from_slice(&buf[..n]);
        let _ = sock.send_to(&reply, from);
    }
}

/// One question over UDP, retried a few times: a datagram may be lost
/// while a neighbour entry is resolved.
fn udp_ask(addr: &str, text: &str) -> Result<i32, String> {
    let sock = std::net::UdpSocket::bind(("0.0.0.0", 0)).map_err(|e| format!("udp-ask: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_millis(400)))
        .map_err(|e| format!("udp-ask: {e}"))?;
    sock.connect(addr)
        .map_err(|e| format!("udp-ask: connect {addr}: {e}"))?;
    let mut buf = [0u8; 1500];
    for _ in 0..5 {
        let _ = sock.send(text.as_bytes());
        if let Ok(n) = sock.recv(&mut buf) {
            say(&String::from_utf8_lossy(&buf[..n]));
            return Ok(0);
        }
    }
    say(&format!("no answer from {addr}"));
    Ok(1)
}

/// finit_module(-1, "", 0): the kernel checks CAP_SYS_MODULE (in the initial
/// user namespace) before it looks at the fd, so EPERM means "not allowed"
/// and EBADF means "allowed, but no module given". Prints the errno's name.
fn try_init_module() -> Result<i32, String> {
    // SAFETY: a syscall with an invalid fd; it loads nothing.
    let r = unsafe { libc::syscall(libc::SYS_finit_module, -1, c"".as_ptr(), 0) };
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    let name = match (r, errno) {
        (0, _) => "loaded",
        (_, libc::EPERM) => "EPERM",
        (_, libc::EBADF) => "EBADF",
        // A kernel built without modules refuses everyone alike.
        (_, libc::ENOSYS) => "ENOSYS",
        _ => "other",
    };
    say(name);
    Ok(0)
}

/// A stand-in for conmon on the host: a child subreaper that runs CMD with a
/// parent-death signal (as conmon runs the runtime), then reaps every
/// orphan until the process named in PIDFILE has ended, and prints
/// `reaped PID CODE` (128+N for a signal) for it.
fn reaper(rest: &[String]) -> Result<i32, String> {
    let (pid_file, cmd) = match rest {
        [f, dash, cmd @ ..] if dash == "--" && !cmd.is_empty() => (f, cmd),
        _ => return Err("usage: reaper PIDFILE -- CMD...".into()),
    };
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let mut command = std::process::Command::new(&cmd[0]);
    command.args(&cmd[1..]);
    // SAFETY: prctl in the child before exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            Ok(())
        });
    }
    let status = command
        .status()
        .map_err(|e| format!("run {}: {e}", cmd[0]))?;
    if !status.success() {
        say(&format!("command failed: {status}"));
        return Ok(1);
    }
    let target: i32 = std::fs::read_to_string(pid_file)
        .map_err(|e| format!("read {pid_file}: {e}"))?
        .trim()
        .parse()
        .map_err(|e| format!("pid file: {e}"))?;
    say(&format!("parent of {target} is {}", parent_of(target)));
    loop {
        let mut st = 0;
        // SAFETY: wait4 writes into `st`.
        let pid = unsafe { libc::wait4(-1, &mut st, 0, std::ptr::null_mut()) };
        if pid < 0 {
            say(&format!("lost {target}: {}", errno_text()));
            return Ok(1);
        }
        if pid == target {
            let code = if libc::WIFEXITED(st) {
                libc::WEXITSTATUS(st)
            } else {
                128 + libc::WTERMSIG(st)
            };
            say(&format!("reaped {pid} {code}"));
            return Ok(0);
        }
    }
}

fn parent_of(pid: i32) -> i32 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 1..];
            rest.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// A stand-in for a console-socket listener (what conmon or containerd
/// give `--console-socket`): listens on SOCKET, takes one terminal master
/// passed with SCM_RIGHTS, writes INPUT to it, and copies what the
/// terminal prints to stdout until it hangs up.
fn console(rest: &[String]) -> Result<i32, String> {
    use std::io::{Read, Write};
    use std::os::fd::{AsRawFd, FromRawFd};
    let (path, input) = match rest {
        [p] => (p, None),
        [p, i] => (p, Some(i)),
        _ => return Err("usage: console SOCKET [INPUT]".into()),
    };
    let listener =
        std::os::unix::net::UnixListener::bind(path).map_err(|e| format!("bind {path}: {e}"))?;
    say("listening");
    let (conn, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    let mut buf = [0u8; 64];
    let mut cmsg = [0u8; 64];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: a zeroed msghdr pointing at our buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr().cast();
    msg.msg_controllen = cmsg.len();
    // SAFETY: recvmsg into the buffers above.
    if unsafe { libc::recvmsg(conn.as_raw_fd(), &mut msg, 0) } < 0 {
        return Err(format!("recvmsg: {}", errno_text()));
    }
    // SAFETY: walking the control message the kernel wrote.
    let fd = unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() || (*c).cmsg_type != libc::SCM_RIGHTS {
            return Err("no descriptor came".into());
        }
        std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const i32)
    };
    // SAFETY: the kernel installed this fd for us.
    let mut master = unsafe { std::fs::File::from_raw_fd(fd) };
    if let Some(text) = input {
        let _ = master.write_all(format!("{text}\n").as_bytes());
    }
    let mut out = std::io::stdout();
    let mut chunk = [0u8; 4096];
    loop {
        match master.read(&mut chunk) {
            Ok(0) | Err(_) => break, // EIO: the last holder of the slave is gone
            Ok(n) => {
                let _ = out.write_all(&chunk[..n]);
                let _ = out.flush();
            }
        }
    }
    Ok(0)
}

/// Memory that is really used: every page written, none given back, so
/// that a cgroup's memory limit (and its OOM killer) sees all of it.
fn hog(mib: usize) -> Result<i32, String> {
    let mut chunks: Vec<Vec<u8>> = Vec::with_capacity(mib);
    for _ in 0..mib {
        let mut c = vec![0u8; 1 << 20];
        for i in (0..c.len()).step_by(4096) {
            c[i] = 1;
        }
        chunks.push(c);
    }
    say(&format!("allocated {}", chunks.len()));
    Ok(0)
}

/// Standard signals coalesce, so the count of SIGUSR1 may be lower than
/// what was sent; what must never happen is that the last signal, SIGUSR2,
/// is lost behind the burst.
fn signal_burst(code: i32) -> Result<i32, String> {
    // SAFETY: the set is initialised by sigemptyset before use.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(format!("sigprocmask: {}", errno_text()));
        }
        set
    };
    say("ready");
    let mut usr1 = 0u64;
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: set is initialised; sig is a valid out-pointer.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            return Err(format!("sigwait: {}", errno_text()));
        }
        if sig == libc::SIGUSR2 {
            say(&format!("usr1 {usr1} usr2"));
            return Ok(code);
        }
        usr1 += 1;
    }
}

/// A hostile process: garbage into every descriptor it holds or can open
/// through /proc (its own, and PID 1's, which it may not be allowed to).
fn garbage_fds() -> Result<i32, String> {
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let (mut tried, mut wrote) = (0, 0);
    for dir in ["/proc/self/fd", "/proc/1/fd"] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        for p in paths {
            tried += 1;
            let fd: libc::c_int = if dir == "/proc/self/fd" {
                match p.file_name().and_then(|n| n.to_str()?.parse().ok()) {
                    Some(fd) => fd,
                    None => continue,
                }
            } else {
                let Ok(c) = CString::new(p.as_os_str().as_encoded_bytes()) else {
                    continue;
                };
                // SAFETY: c is a valid path.
                let fd = unsafe { libc::open(c.as_ptr(), libc::O_WRONLY | libc::O_NONBLOCK) };
                if fd < 0 {
                    continue;
                }
                fd
            };
            // Stdout stays readable for the test: garbage goes elsewhere.
            if fd == 1 {
                continue;
            }
            for _ in 0..16 {
                // SAFETY: garbage is a valid buffer; a failed write is fine.
                let n = unsafe {
                    libc::send(
                        fd,
                        garbage.as_ptr().cast(),
                        garbage.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
                // SAFETY: as above, for what is not a socket.
                let n = if n < 0 {
                    unsafe { libc::write(fd, garbage.as_ptr().cast(), garbage.len()) }
                } else {
                    n
                };
                if n > 0 {
                    wrote += 1;
                    break;
                }
            }
        }
    }
    say(&format!("garbage wrote {wrote} of {tried}"));
    Ok(0)
}
