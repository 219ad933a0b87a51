use super::*;

/// v2 (here the hybrid's cgroup2 mount, which holds no controllers but
/// membership all the same): the clone child is born in the cgroup given
/// by its directory, and the shim stays where it is.
#[test]
fn clone_init_into_a_v2_cgroup() {
    let Some(root) = cgroup2_root() else {
        return;
    };
    clone_into_a_v2_cgroup_and_check(&root, "into");
}

/// nsbox inside another container, whose seccomp filter answers clone3
/// with ENOSYS (Docker's default) or EPERM: tiny-init still starts, in its
/// cgroup, through clone(2). A filter holds for the thread that installs
/// it (and what it clones): each runs in a thread of its own.
#[test]
fn clone_init_falls_back_to_clone_when_clone3_is_refused() {
    let Some(root) = cgroup2_root() else {
        return;
    };
    for errno in [libc::ENOSYS, libc::EPERM] {
        let root = root.clone();
        std::thread::spawn(move || {
            refuse_clone3(errno as u32).unwrap();
            // The filter answers first: an empty clone_args is EINVAL to
            // the kernel.
            // SAFETY: clone3 with no arguments fails before it does anything.
            let r = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<CloneArgs>(), 0) };
            assert_eq!((r, Errno::last_raw()), (-1, errno));
            clone_into_a_v2_cgroup_and_check(&root, &format!("refused-{errno}"));
        })
        .join()
        .unwrap_or_else(|_| panic!("with clone3 refused by {}", Errno::from_raw(errno)));
    }
}

/// v1's clone child, cloned while the runtime still makes the cgroup:
/// it waits, joins once told the cgroup exists (the cgroup2 mount stands
/// in for v1 here: "0" into cgroup.procs as into `tasks`), and only then
/// goes on; told nothing (the cgroup was not made), it leaves.
#[test]
fn the_clone_child_joins_a_cgroup_made_after_the_clone() {
    let Some(root) = cgroup2_root() else {
        return;
    };
    let dir = root.join(format!("nsbox-spawn-test-{}-later", std::process::id()));
    let tasks = [CString::new(
        dir.join("cgroup.procs")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .unwrap()];
    let clone_waiting = |go: &(OwnedFd, OwnedFd)| {
        clone_a_shell(CgroupEntry::JoinWhenMade {
            tasks: &tasks,
            go: (go.0.as_raw_fd(), go.1.as_raw_fd()),
        })
        .unwrap()
    };
    let said = |ours: &OwnedFd, ms: u16| {
        let mut fds = [nix::poll::PollFd::new(
            ours.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms));
        let mut buf = [0u8; 16];
        match fds[0].revents() {
            Some(r) if !r.is_empty() => nix::unistd::read(ours.as_raw_fd(), &mut buf).ok(),
            _ => None,
        }
    };

    let go = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
    let (child, ours) = clone_waiting(&go);
    let early = said(&ours, 100);
    std::fs::create_dir(&dir).unwrap();
    nix::unistd::write(&go.1, &[1]).unwrap();
    let ready = said(&ours, 5000);
    let name = dir.file_name().unwrap().to_str().unwrap().to_string();
    let theirs_cg = std::fs::read_to_string(format!("/proc/{}/cgroup", child.pid));
    let _ = nsbox_host::proc::pidfd_send_signal(&child.pidfd, libc::SIGKILL);
    reap(&child.pidfd, true);
    let _ = std::fs::remove_dir(&dir);
    assert_eq!(early, None, "the child went on before the cgroup was made");
    assert_eq!(ready, Some(6), "the child never went on");
    let theirs_cg = theirs_cg.unwrap();
    assert!(
        theirs_cg.lines().any(|l| l == format!("0::/{name}")),
        "{theirs_cg}"
    );

    let go = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
    let (child, ours) = clone_waiting(&go);
    drop(go);
    // Bounded: a child that waited for ever is killed after 5 s.
    if !nsbox_host::proc::wait_pidfd(&child.pidfd, std::time::Duration::from_secs(5)) {
        let _ = nsbox_host::proc::pidfd_send_signal(&child.pidfd, libc::SIGKILL);
    }
    let code = reap(&child.pidfd, true);
    assert_eq!(code, Some(1));
    assert_eq!(
        said(&ours, 100),
        Some(0),
        "the child ran on without a cgroup"
    );
}

/// A step of the clone child that fails reaches the shim as a Failure
/// that names it, not as an exit code.
#[test]
fn the_clone_child_reports_the_step_it_failed_at() {
    let (_ours, theirs) = protocol::seqpacket_pair().unwrap();
    let exe = Exe::sealed_copy("/bin/true").unwrap();
    let argv = [CString::new("true").unwrap()];
    // Not a namespace: setns refuses it.
    let ns = [Namespace {
        kind: NamespaceKind::Network,
        path: Some("/dev/null".into()),
    }];
    let (child, early) = clone_init(
        false,
        &ns,
        &theirs,
        &exe,
        &argv,
        None,
        CgroupEntry::None,
        &[],
    )
    .unwrap();
    drop(theirs);
    let code = reap(&child.pidfd, true);
    assert_eq!(code, Some(1));
    assert_eq!(
        early.failure(code).to_string(),
        "join the container's net namespace: Invalid argument"
    );
}

/// The cgroup2 mount to make test cgroups under; None (and why, on stderr)
/// where the test cannot run.
pub fn cgroup2_root() -> Option<std::path::PathBuf> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return None;
    }
    let root = nsbox_host::cgroups::cgroup2_mount();
    if root.is_none() {
        eprintln!("skipped: no cgroup2 mount");
    }
    root
}

/// Install a seccomp filter on this thread that answers clone3 with
/// `errno`, and allows everything else.
fn refuse_clone3(errno: u32) -> Result<(), Errno> {
    let insn = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let mut filter = [
        // seccomp_data.nr
        insn(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0),
        insn(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            0,
            1,
            libc::SYS_clone3 as u32,
        ),
        insn(
            libc::BPF_RET | libc::BPF_K,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | errno,
        ),
        insn(libc::BPF_RET | libc::BPF_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    nix::sys::prctl::set_no_new_privs()?;
    // SAFETY: PR_SET_SECCOMP reads the program, which outlives the call.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
        )
    };
    Errno::result(r).map(drop)
}

/// Clone a shell as tiny-init would be cloned, into a new cgroup under the
/// cgroup2 mount `root`, and check that it was born there while we stayed
/// where we were.
fn clone_into_a_v2_cgroup_and_check(root: &std::path::Path, test: &str) {
    let before = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let (child, dir) = clone_a_sleeper(root, test);
    let name = dir.file_name().unwrap().to_str().unwrap().to_string();
    let theirs_cg = std::fs::read_to_string(format!("/proc/{}/cgroup", child.pid));
    let procs = std::fs::read_to_string(dir.join("cgroup.procs"));
    let _ = nsbox_host::proc::pidfd_send_signal(&child.pidfd, libc::SIGKILL);
    let code = reap(&child.pidfd, true);
    let _ = std::fs::remove_dir(&dir);
    assert_eq!(code, Some(128 + libc::SIGKILL));
    let theirs_cg = theirs_cg.unwrap();
    assert!(
        theirs_cg.lines().any(|l| l == format!("0::/{name}")),
        "{theirs_cg}"
    );
    assert_eq!(procs.unwrap().trim(), child.pid.to_string());
    assert_eq!(
        std::fs::read_to_string("/proc/self/cgroup").unwrap(),
        before
    );
}

/// A shell cloned as tiny-init would be, entering its cgroup by `cgroup`:
/// once it runs it says "ready" on the socket tiny-init would have (our
/// end returned), then sleeps.
fn clone_a_shell(cgroup: CgroupEntry) -> Result<(Child, OwnedFd), SpawnError> {
    let (ours, theirs) = protocol::seqpacket_pair().unwrap();
    let exe = Exe::read_only_bind("/bin/sh").unwrap();
    let argv = ["sh", "-c", "echo ready >&3; exec sleep 30"].map(|a| CString::new(a).unwrap());
    // A mount namespace of its own: the child binds its binary there.
    let mount_ns = [Namespace {
        kind: NamespaceKind::Mount,
        path: None,
    }];
    let (child, _early) = clone_init(false, &mount_ns, &theirs, &exe, &argv, None, cgroup, &[])?;
    Ok((child, ours))
}

/// A shell cloned as tiny-init would be, into a new cgroup (returned too)
/// under the cgroup2 mount `root`, once it runs: it says so (after the
/// clone child's set-up, the cgroup included) on the socket tiny-init
/// would have, then sleeps.
pub fn clone_a_sleeper(root: &std::path::Path, test: &str) -> (Child, std::path::PathBuf) {
    let dir = root.join(format!("nsbox-spawn-test-{}-{test}", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    let fd = std::fs::File::open(&dir).unwrap();
    let (child, ours) = clone_a_shell(CgroupEntry::Into(fd.as_raw_fd())).unwrap_or_else(|e| {
        let _ = std::fs::remove_dir(&dir);
        panic!("{}", Failure::from_error("clone", &e))
    });
    let mut buf = [0u8; 16];
    let said = nix::unistd::read(ours.as_raw_fd(), &mut buf);
    if said.ok() != Some(6) {
        let _ = nsbox_host::proc::pidfd_send_signal(&child.pidfd, libc::SIGKILL);
        let code = reap(&child.pidfd, true);
        let _ = std::fs::remove_dir(&dir);
        panic!("the child never ran (exit status {code:?})");
    }
    (child, dir)
}
