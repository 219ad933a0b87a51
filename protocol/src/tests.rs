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

#[test]
fn messages_sent_before_a_close_with_unread_data_still_arrive() {
    let (rt, shim): (RuntimeChannel, ShimRuntimeChannel) = pair();
    rt.send(&RuntimeToShim::Wait, &[]).unwrap();
    shim.send(&ShimToRuntime::Exited { code: 7 }, &[]).unwrap();
    // The shim goes without reading the Wait: the runtime's socket gets
    // ECONNRESET ahead of the Exited.
    drop(shim);
    assert_eq!(rt.wait_for_exit().unwrap(), 7);
    assert!(matches!(rt.recv().unwrap_err(), ChannelError::Closed));
}
