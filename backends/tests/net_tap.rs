//! The tap layer against the real kernel, in network namespaces the tests
//! make: creating and opening taps, multi-queue, offloads, MTU, link state,
//! frames both ways with a virtio-net header, and every refusal the issue
//! names (not a tap, in use, multi-queue mismatch, no CAP_NET_ADMIN).

mod net_support;

use net_support::{is_test_frame, test_frame, NetNs, PacketSocket};
use pvio_backends::net::offload::TUN_F_ALL;
use pvio_backends::net::{Tap, TapError};

#[test]
fn creates_a_tap_sets_it_up_and_moves_frames_both_ways() {
    let ns = NetNs::new("tap");
    ns.run(|| {
        let tap = Tap::open("pviot0", 1).expect("create tap");
        assert!(tap.created());
        assert_eq!(tap.queues().len(), 1);
        // This kernel (6.x) takes checksum and TSO offloads at least.
        let need = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
        assert_eq!(tap.offload_support() & need, need);
        assert_eq!(tap.offload_support() & !TUN_F_ALL, 0);
        assert_eq!(
            tap.set_offload(libc::TUN_F_CSUM | libc::TUN_F_TSO4)
                .unwrap(),
            libc::TUN_F_CSUM | libc::TUN_F_TSO4
        );
        tap.set_offload(0).unwrap();
        tap.set_mtu(1400).unwrap();
        assert_eq!(tap.mtu().unwrap(), 1400);
        tap.set_up().unwrap();
        tap.set_up().unwrap(); // already up: fine

        let sock = PacketSocket::bind("pviot0");
        let q = &tap.queues()[0];

        // pvio -> tap -> host stack: a 12-byte zero header, then the frame.
        let frame = test_frame(1, 300);
        let mut out = vec![0u8; 12];
        out.extend_from_slice(&frame);
        assert_eq!(q.write(&out).unwrap(), out.len());
        let seen = sock.recv_matching(is_test_frame);
        assert_eq!(seen, frame);

        // host stack -> tap -> pvio: the frame arrives behind a header.
        let frame = test_frame(2, 1000);
        sock.send(&frame);
        let mut buf = vec![0u8; 70_000];
        let n = loop {
            match q.read(&mut buf) {
                Ok(n) if is_test_frame(&buf[12..n]) => break n,
                Ok(_) => continue, // IPv6 autoconf and the like
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("read: {e}"),
            }
        };
        assert_eq!(&buf[12..n], &frame[..]);
        assert_eq!(buf[0], 0, "no offload flags without offloads");
    });
    // The tap was created by pvio, so it leaves with the last file (the
    // kernel unregisters it asynchronously).
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while ns.try_ip(&["link", "show", "pviot0"]) {
        assert!(std::time::Instant::now() < end, "tap still there");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn opens_existing_taps_including_multi_queue_ones() {
    let ns = NetNs::new("tapx");
    ns.ip(&["tuntap", "add", "mode", "tap", "name", "pviosq"]);
    ns.ip(&[
        "tuntap",
        "add",
        "mode",
        "tap",
        "multi_queue",
        "name",
        "pviomq",
    ]);
    ns.run(|| {
        let tap = Tap::open("pviosq", 1).expect("open single-queue tap");
        assert!(!tap.created());
        drop(tap);
        // One queue pair on a multi-queue tap: opened as multi-queue.
        let tap = Tap::open("pviomq", 1).expect("open multi-queue tap with one pair");
        assert_eq!(tap.queues().len(), 1);
        drop(tap);
        let tap = Tap::open("pviomq", 2).expect("open multi-queue tap with two pairs");
        assert_eq!(tap.queues().len(), 2);
        let tap = Tap::open("pvionew", 4).expect("create a 4-queue tap");
        assert_eq!(tap.queues().len(), 4);
    });
    // Persistent taps made with `ip tuntap` stay.
    assert!(ns.try_ip(&["link", "show", "pviosq"]));
}

#[test]
fn refusals_say_what_is_wrong() {
    let ns = NetNs::new("tapr");
    ns.ip(&["tuntap", "add", "mode", "tap", "name", "pviosq"]);
    ns.ip(&["tuntap", "add", "mode", "tun", "name", "pviotun"]);
    ns.ip(&["link", "add", "pviobr", "type", "bridge"]);
    ns.run(|| {
        let err = Tap::open("pviosq", 2).unwrap_err();
        assert!(matches!(err, TapError::MultiQueueMismatch { .. }), "{err}");
        assert!(err.to_string().contains("single-queue"), "{err}");

        let err = Tap::open("pviotun", 1).unwrap_err();
        assert!(matches!(err, TapError::NotATap { .. }), "{err}");
        assert!(err.to_string().contains("tun (layer 3)"), "{err}");

        let err = Tap::open("pviobr", 1).unwrap_err();
        assert!(matches!(err, TapError::NotATap { .. }), "{err}");
        assert!(err.to_string().contains("bridge"), "{err}");

        let err = Tap::open("lo", 1).unwrap_err();
        assert!(matches!(err, TapError::NotATap { .. }), "{err}");

        let held = Tap::open("pviosq", 1).unwrap();
        let err = Tap::open("pviosq", 1).unwrap_err();
        assert!(matches!(err, TapError::Busy { .. }), "{err}");
        drop(held);

        let err = Tap::open("bad name", 1).unwrap_err();
        assert!(matches!(err, TapError::InvalidName { .. }), "{err}");
    });
}

#[test]
fn without_cap_net_admin_the_error_says_so() {
    let ns = NetNs::new("tapc");
    ns.run(|| {
        net_support::drop_net_admin_in_this_thread();
        let err = Tap::open("pvionocap", 1).unwrap_err();
        assert!(matches!(err, TapError::Permission { .. }), "{err}");
        assert!(err.to_string().contains("CAP_NET_ADMIN"), "{err}");
    });
}

#[test]
fn an_existing_tap_opens_without_cap_net_admin_but_its_mtu_and_link_need_it() {
    let ns = NetNs::new("tapm");
    ns.ip(&[
        "tuntap", "add", "mode", "tap", "name", "pvioown", "user", "0",
    ]);
    ns.run(|| {
        net_support::drop_net_admin_in_this_thread();
        let tap = Tap::open("pvioown", 1).expect("the owner may open its tap");
        for err in [tap.set_mtu(1400).unwrap_err(), tap.set_up().unwrap_err()] {
            assert!(matches!(err, TapError::ConfigPermission { .. }), "{err}");
            assert!(err.to_string().contains("CAP_NET_ADMIN"), "{err}");
        }
    });
}
