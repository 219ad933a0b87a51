use super::*;

fn pair<A, B>() -> (Channel<A, B>, Channel<B, A>)
where
    A: serde::Serialize + serde::de::DeserializeOwned,
    B: serde::Serialize + serde::de::DeserializeOwned,
{
    let (a, b) = seqpacket_pair().unwrap();
    (Channel::new(a), Channel::new(b))
}

#[test]
fn round_trip_and_typed_waits() {
    let (shim, init): (ShimInitChannel, InitChannel) = pair();
    shim.send(
        &ShimToInit::Hello {
            version: PROTOCOL_VERSION,
        },
        &[],
    )
    .unwrap();
    init.wait_for_hello().unwrap();
    init.send(&InitToShim::Ready, &[]).unwrap();
    shim.wait_for_ready().unwrap();
}

#[test]
fn unexpected_message_names_both() {
    let (shim, init): (ShimInitChannel, InitChannel) = pair();
    init.send(&InitToShim::Exited { code: 3 }, &[]).unwrap();
    let err = shim.wait_for_ready().unwrap_err().to_string();
    assert_eq!(err, "expected Ready, got Exited");
}

#[test]
fn version_mismatch_is_an_error() {
    let (shim, init): (ShimInitChannel, InitChannel) = pair();
    shim.send(&ShimToInit::Hello { version: 999 }, &[]).unwrap();
    let err = init.wait_for_hello().unwrap_err();
    assert!(
        matches!(err, ChannelError::Version { theirs: 999, .. }),
        "{err}"
    );
}

#[test]
fn failure_travels_as_error() {
    let (shim, init): (ShimInitChannel, InitChannel) = pair();
    init.send(
        &InitToShim::Failed(Failure {
            step: "mount /proc".into(),
            message: "Permission denied".into(),
            exit_code: 1,
        }),
        &[],
    )
    .unwrap();
    let err = shim.wait_for_ready().unwrap_err().to_string();
    assert_eq!(err, "mount /proc: Permission denied");
}

#[test]
fn garbage_is_a_decode_error_not_a_panic() {
    let (a, b) = seqpacket_pair().unwrap();
    let shim: ShimInitChannel = Channel::new(a);
    for junk in [
        &[0xffu8; 7][..],
        &[9, 9, 9],
        &[0, 0xff, 0xff, 0xff, 0xff, 0xff],
    ] {
        nix::sys::socket::send(
            std::os::fd::AsRawFd::as_raw_fd(&b),
            junk,
            nix::sys::socket::MsgFlags::empty(),
        )
        .unwrap();
        let err = shim.recv().unwrap_err();
        assert!(matches!(err, ChannelError::Decode(_)), "{err}");
    }
}

#[test]
fn oversized_datagram_is_refused() {
    let (a, b) = seqpacket_pair().unwrap();
    let shim: ShimInitChannel = Channel::new(a);
    nix::sys::socket::setsockopt(&b, nix::sys::socket::sockopt::SndBuf, &(1 << 20)).unwrap();
    let big = vec![1u8; MAX_MESSAGE + 100];
    nix::sys::socket::send(
        std::os::fd::AsRawFd::as_raw_fd(&b),
        &big,
        nix::sys::socket::MsgFlags::empty(),
    )
    .unwrap();
    assert!(matches!(
        shim.recv().unwrap_err(),
        ChannelError::TooLarge(_)
    ));
}

#[test]
fn peer_close_is_closed() {
    let (shim, init): (ShimInitChannel, InitChannel) = pair();
    drop(init);
    assert!(matches!(shim.recv().unwrap_err(), ChannelError::Closed));
}

#[test]
fn timeout_is_bounded() {
    let (mut shim, _init): (ShimInitChannel, InitChannel) = pair();
    shim.set_timeout(Some(std::time::Duration::from_millis(20)))
        .unwrap();
    assert!(matches!(shim.recv().unwrap_err(), ChannelError::Timeout(_)));
}

#[test]
fn fds_travel_with_the_message() {
    let (rt, shim): (RuntimeChannel, ShimRuntimeChannel) = pair();
    let f = std::fs::File::open("/dev/null").unwrap();
    rt.send(
        &RuntimeToShim::Start,
        &[std::os::fd::AsRawFd::as_raw_fd(&f)],
    )
    .unwrap();
    let (msg, fds) = shim.recv().unwrap();
    assert_eq!(msg, RuntimeToShim::Start);
    assert_eq!(fds.len(), 1);
}

/// The shim waits for the runtime's word on the cgroup before its clone:
/// made, or why not (which the shim passes on as its own failure).
#[test]
fn the_cgroup_is_made_or_said_why_not() {
    let (rt, shim): (RuntimeChannel, ShimRuntimeChannel) = pair();
    rt.send(&RuntimeToShim::CgroupMade(None), &[]).unwrap();
    shim.wait_for_cgroup().unwrap();
    let why = Failure {
        step: "cgroup".into(),
        message: "cpuset.cpus: Numerical result out of range".into(),
        exit_code: 1,
    };
    rt.send(&RuntimeToShim::CgroupMade(Some(why.clone())), &[])
        .unwrap();
    assert!(matches!(shim.wait_for_cgroup(), Err(ChannelError::Failed(f)) if f == why));
    rt.send(&RuntimeToShim::Start, &[]).unwrap();
    assert!(matches!(
        shim.wait_for_cgroup(),
        Err(ChannelError::Unexpected {
            expected: "CgroupMade",
            ..
        })
    ));
}

/// The shim sends the config without waiting for tiny-init's Hello: a
/// tiny-init that failed first says why where its Hello was due.
#[test]
fn a_failure_instead_of_hello_is_the_failure() {
    let (shim, init): (ShimInitChannel, InitChannel) = pair();
    let why = Failure {
        step: "block signals".into(),
        message: "EINVAL".into(),
        exit_code: 1,
    };
    init.send(&InitToShim::Failed(why.clone()), &[]).unwrap();
    assert!(matches!(shim.wait_for_hello(), Err(ChannelError::Failed(f)) if f == why));
}

#[test]
fn messages_sent_before_a_reset_are_still_read() {
    // The shim answers, then exits with the runtime's next request unread:
    // the runtime must still get the answer.
    let (rt, shim): (RuntimeChannel, ShimRuntimeChannel) = pair();
    rt.send(&RuntimeToShim::Wait, &[]).unwrap();
    shim.send(&ShimToRuntime::Exited { code: 7 }, &[]).unwrap();
    drop(shim);
    assert_eq!(rt.wait_for_exit().unwrap(), 7);
    assert!(matches!(rt.recv().unwrap_err(), ChannelError::Closed));
}

/// Fuzzing on stable: a deterministic xorshift stream of random and mutated
/// datagrams fed to every receiving role's decoder. cargo-fuzz needs
/// nightly and a libFuzzer build; this runs in every `cargo test`, with a
/// fixed seed so a failure reproduces. Any input that ever failed belongs in
/// `hostile_inputs` below as a regression case.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.next() as usize) % (max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn feed<R: serde::de::DeserializeOwned + std::fmt::Debug>(datagrams: &[Vec<u8>]) {
    use nix::sys::socket::{send, MsgFlags};
    use std::os::fd::AsRawFd;
    let (ours, theirs) = seqpacket_pair().unwrap();
    let ch: Channel<(), R> = Channel::new(ours);
    for d in datagrams {
        if d.is_empty() {
            continue; // an empty datagram reads as EOF, by design
        }
        send(theirs.as_raw_fd(), d, MsgFlags::empty()).unwrap();
        // Ok or Err, never a panic or a hang.
        let _ = ch.recv();
    }
}

fn corpus(seed: u64, valid: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut rng = XorShift(seed);
    let mut out = Vec::new();
    for _ in 0..3000 {
        out.push(rng.bytes(64));
    }
    for v in valid {
        for _ in 0..300 {
            let mut m = v.clone();
            for _ in 0..1 + rng.next() % 4 {
                if m.is_empty() {
                    break;
                }
                let i = (rng.next() as usize) % m.len();
                m[i] ^= 1 << (rng.next() % 8);
            }
            if rng.next().is_multiple_of(4) {
                m.truncate((rng.next() as usize) % (m.len() + 1));
            }
            out.push(m);
        }
    }
    out
}

fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(v, bincode::config::standard()).unwrap()
}

#[test]
fn fuzz_every_decoder_with_a_fixed_seed() {
    let valid_to_init = vec![
        encode(&ShimToInit::Hello {
            version: PROTOCOL_VERSION,
        }),
        encode(&ShimToInit::Start),
        encode(&ShimToInit::Continue),
    ];
    let valid_to_shim = vec![
        encode(&InitToShim::Hello {
            version: PROTOCOL_VERSION,
        }),
        encode(&InitToShim::Exited { code: 3 }),
        encode(&InitToShim::Started { pid: 7 }),
        encode(&InitToShim::ExecExited { pid: 7, code: 1 }),
    ];
    let valid_from_runtime = vec![
        encode(&RuntimeToShim::Hello {
            version: PROTOCOL_VERSION,
        }),
        encode(&RuntimeToShim::Start),
        encode(&RuntimeToShim::Wait),
    ];
    let valid_to_runtime = vec![
        encode(&ShimToRuntime::Started { pid: 7 }),
        encode(&ShimToRuntime::Exited { code: 137 }),
    ];
    feed::<ShimToInit>(&corpus(0x5eed_0001, &valid_to_init));
    feed::<InitToShim>(&corpus(0x5eed_0002, &valid_to_shim));
    feed::<RuntimeToShim>(&corpus(0x5eed_0003, &valid_from_runtime));
    feed::<ShimToRuntime>(&corpus(0x5eed_0004, &valid_to_runtime));
}

/// A length prefix claiming 2^64 bytes (bincode's varint: 253 then 8
/// bytes) must fail on the configured limit, not try to allocate it.
#[test]
fn hostile_inputs() {
    let mut huge = vec![0u8; 0];
    // Variant indexes 0..8, each followed by a u64::MAX length.
    for variant in 0u8..8 {
        huge.clear();
        huge.push(variant);
        huge.push(253);
        huge.extend_from_slice(&[0xff; 8]);
        let started = std::time::Instant::now();
        feed::<InitToShim>(std::slice::from_ref(&huge));
        feed::<ShimToInit>(std::slice::from_ref(&huge));
        feed::<RuntimeToShim>(std::slice::from_ref(&huge));
        feed::<ShimToRuntime>(std::slice::from_ref(&huge));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
}

/// A kind added to the enum but not to the table fails to compile here.
fn listed(kind: NamespaceKind) -> bool {
    use NamespaceKind::*;
    match kind {
        Pid | Mount | Ipc | Uts | Network | User | Cgroup | Time => {
            NamespaceKind::ALL.contains(&kind)
        }
    }
}

#[test]
fn the_namespace_table_is_whole_and_consistent() {
    for kind in NamespaceKind::ALL {
        assert!(listed(kind));
        assert_eq!(NamespaceKind::from_oci_name(kind.oci_name()), Some(kind));
        assert!(
            std::path::Path::new("/proc/self/ns")
                .join(kind.proc_name())
                .exists(),
            "{kind}: no /proc/self/ns/{}",
            kind.proc_name()
        );
        let others = NamespaceKind::ALL.iter().filter(|k| **k != kind);
        for other in others {
            assert_eq!(kind.clone_flag() & other.clone_flag(), 0, "{kind} {other}");
        }
    }
    assert_eq!(NamespaceKind::from_oci_name("net"), None);
    assert_eq!(NamespaceKind::ALL[0], NamespaceKind::User);
    assert_eq!(NamespaceKind::ALL[7], NamespaceKind::Mount);
}

#[test]
fn a_namespace_kind_keeps_its_wire_number() {
    // Peers of the same version only, but a reordering would still be a
    // silent change of meaning: Time came last.
    assert_eq!(encode(&NamespaceKind::Pid), vec![0]);
    assert_eq!(encode(&NamespaceKind::Time), vec![7]);
}

#[test]
fn a_failure_from_an_error_keeps_its_causes() {
    #[derive(Debug, thiserror::Error)]
    #[error("open /x")]
    struct Open(#[source] std::io::Error);
    let e = Open(std::io::Error::from_raw_os_error(2));
    let f = Failure::from_error("mount", &e);
    assert_eq!(
        f.to_string(),
        "mount: open /x: No such file or directory (os error 2)"
    );
    assert_eq!(f.exit_code, 1);
}
