//! The net backend driven over its vhost-user socket with no VM: a driver
//! in the test (rust-vmm's vhost-user `Frontend`, memfd guest memory, rings
//! laid out with `pvio-frontend-protocol`) sends frames through the backend
//! into a tap inside a network namespace the test makes, and receives frames
//! written to the tap (an `AF_PACKET` socket in the namespace); contents are
//! compared byte for byte.

mod net_support;

use std::time::{Duration, Instant};

use net_support::inproc::{Backend, T};
use net_support::{is_test_frame, test_frame, NetNs, PacketSocket};
use pvio_frontend_protocol::features::VIRTIO_F_VERSION_1;
use pvio_frontend_protocol::net::*;
use pvio_net_driver::{Buf, DriverOptions};
use vm_memory::{Address, GuestMemoryBackend, GuestMemoryRegion};

fn packet_socket(ns: &NetNs, tap: &str) -> PacketSocket {
    let tap = tap.to_owned();
    ns.run(move || PacketSocket::bind(&tap))
}

fn plain() -> NetHdr {
    NetHdr::default()
}

#[test]
fn frames_flow_both_ways_through_the_tap() {
    let ns = NetNs::new("nets");
    let be = Backend::start(&ns, "pvion0", |o| o.mtu = Some(9000));
    let sock = packet_socket(&ns, "pvion0");
    let mut drv = be.connect(&DriverOptions::default());
    assert_ne!(drv.acked() & VIRTIO_F_VERSION_1, 0);
    assert_ne!(drv.acked() & VIRTIO_NET_F_MRG_RXBUF, 0);
    assert_eq!(drv.hdr_len(), 12);
    assert_eq!(drv.config().mtu(), 9000);
    assert!(drv.config().link_up());
    drv.fill_rx(0).unwrap();

    // Guest -> tap, one descriptor and header split from the frame.
    for (i, len) in [60usize, 64, 200, 1000, 1514, 1514, 128]
        .into_iter()
        .enumerate()
    {
        let frame = test_frame(u8::try_from(i).unwrap(), len);
        if i % 2 == 0 {
            drv.send(0, &plain(), &frame).unwrap();
        } else {
            drv.reclaim_tx(0).unwrap();
            assert!(drv.queue_frame(0, &plain(), &frame, true).unwrap());
            drv.kick(1).unwrap();
        }
        assert_eq!(sock.recv_matching(is_test_frame), frame, "frame {i}");
    }
    drv.wait_tx_done(0, T).unwrap();

    // Tap -> guest, including a jumbo frame over five 2 KiB buffers.
    for (i, len) in [60usize, 1514, 9014, 300].into_iter().enumerate() {
        let frame = test_frame(100 + u8::try_from(i).unwrap(), len);
        sock.send(&frame);
        let got = loop {
            let r = drv.recv(0, T).unwrap();
            if is_test_frame(&r.frame) {
                break r;
            }
        };
        assert_eq!(got.frame, frame, "frame {i}");
        assert_eq!(
            got.buffers,
            (12 + len).div_ceil(2048),
            "num_buffers of frame {i}"
        );
        assert_eq!(got.hdr.gso_type, VIRTIO_NET_HDR_GSO_NONE);
    }
    let s = be.stats();
    assert_eq!(s.tx_frames, 7);
    assert!(s.rx_frames >= 4);
    assert_eq!(s.guest_errors(), 0, "{s:?}");
}

#[test]
fn bad_guest_input_is_counted_and_not_fatal() {
    let ns = NetNs::new("netb");
    let be = Backend::start(&ns, "pvion1", |_| {});
    let sock = packet_socket(&ns, "pvion1");
    // Without host segmentation offload, frames are limited to the MTU.
    let opts = DriverOptions {
        features: !(VIRTIO_NET_F_HOST_TSO4 | VIRTIO_NET_F_HOST_TSO6 | VIRTIO_NET_F_HOST_UFO),
        tx_buf_len: 4096,
        ..DriverOptions::default()
    };
    let mut drv = be.connect(&opts);
    let far = 1u64 << 40;

    // Transmit: outside guest memory, device-writable, header longer than
    // the chain, runt, oversized, GSO not negotiated.
    drv.add_chain(
        1,
        &[Buf::Raw {
            addr: far,
            len: 100,
            write: false,
        }],
    )
    .unwrap();
    drv.add_chain(
        1,
        &[Buf::Slot {
            len: 100,
            write: true,
        }],
    )
    .unwrap();
    drv.add_chain(
        1,
        &[Buf::Slot {
            len: 5,
            write: false,
        }],
    )
    .unwrap();
    drv.kick(1).unwrap();
    let runt = test_frame(1, 14);
    drv.queue_frame(0, &plain(), &runt[..10], false).unwrap();
    drv.queue_frame(0, &plain(), &test_frame(2, 2000), false)
        .unwrap();
    let gso = NetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
        gso_size: 1448.into(),
        ..NetHdr::default()
    };
    drv.queue_frame(0, &gso, &test_frame(3, 1000), false)
        .unwrap();
    drv.kick(1).unwrap();
    drv.wait_tx_done(0, T).unwrap();
    let s = be.wait_stats("transmit errors", |s| s.guest_errors() >= 6);
    assert_eq!(s.bad_chains, 3, "{s:?}");
    assert_eq!(s.bad_frame_len, 2, "{s:?}");
    assert_eq!(s.bad_headers, 1, "{s:?}");
    assert_eq!(s.tx_frames, 0);

    // Receive: a device-readable chain and one shorter than the header.
    drv.add_chain(
        0,
        &[Buf::Slot {
            len: 100,
            write: false,
        }],
    )
    .unwrap();
    drv.add_chain(
        0,
        &[Buf::Slot {
            len: 4,
            write: true,
        }],
    )
    .unwrap();
    drv.add_chain(
        0,
        &[Buf::Raw {
            addr: far,
            len: 2048,
            write: true,
        }],
    )
    .unwrap();
    drv.kick(0).unwrap();
    let s = be.wait_stats("receive errors", |s| s.bad_chains >= 6);
    assert_eq!(s.bad_chains, 6, "{s:?}");

    // The device still works.
    drv.fill_rx(0).unwrap();
    let frame = test_frame(9, 700);
    drv.send(0, &plain(), &frame).unwrap();
    assert_eq!(sock.recv_matching(is_test_frame), frame);
    let back = test_frame(10, 900);
    sock.send(&back);
    loop {
        let r = drv.recv(0, T).unwrap();
        if is_test_frame(&r.frame) {
            assert_eq!(r.frame, back);
            break;
        }
    }
}

/// CPU time this process used so far.
fn cpu_time() -> Duration {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given.
    let ru = unsafe {
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()), 0);
        ru.assume_init()
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap())
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap())
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[test]
fn without_receive_buffers_frames_wait_in_the_tap_without_spinning() {
    let ns = NetNs::new("netw");
    let be = Backend::start(&ns, "pvion2", |_| {});
    let sock = packet_socket(&ns, "pvion2");
    let mut drv = be.connect(&DriverOptions::default());
    let frames: Vec<Vec<u8>> = (0..20)
        .map(|i| test_frame(i, 100 + usize::from(i)))
        .collect();
    for f in &frames {
        sock.send(f);
    }
    let before = cpu_time();
    std::thread::sleep(Duration::from_millis(500));
    let used = cpu_time() - before;
    assert!(
        used < Duration::from_millis(100),
        "busy while idle: {used:?} of CPU in 500 ms"
    );
    let s = be.stats();
    assert_eq!(s.rx_frames, 0);
    assert_eq!(s.rx_dropped, 0);

    // Buffers arrive: every frame comes, in order.
    drv.post_rx(0, 4).unwrap();
    let mut got = Vec::new();
    while got.len() < frames.len() {
        let r = drv.recv(0, T).unwrap();
        if is_test_frame(&r.frame) {
            got.push(r.frame);
        }
    }
    assert_eq!(got, frames);
}

#[test]
fn two_queue_pairs_and_the_control_queue() {
    let ns = NetNs::new("netm");
    let be = Backend::start(&ns, "pvion3", |o| o.queue_pairs = 2);
    let sock = packet_socket(&ns, "pvion3");
    let mut drv = be.connect(&DriverOptions {
        queue_pairs: 2,
        ..DriverOptions::default()
    });
    assert_eq!(drv.config().max_virtqueue_pairs(), 2);
    assert_ne!(drv.acked() & VIRTIO_NET_F_MQ, 0);
    let mq = |n: u16| NetCtrlMq::new(n);
    use pvio_frontend_protocol::zerocopy::IntoBytes;
    assert_eq!(
        drv.ctrl(
            VIRTIO_NET_CTRL_MQ,
            VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET,
            mq(2).as_bytes()
        )
        .unwrap(),
        VIRTIO_NET_OK
    );
    assert_eq!(
        drv.ctrl(
            VIRTIO_NET_CTRL_MQ,
            VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET,
            mq(3).as_bytes()
        )
        .unwrap(),
        VIRTIO_NET_ERR
    );
    assert_eq!(
        drv.ctrl(
            VIRTIO_NET_CTRL_MQ,
            VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET,
            mq(0).as_bytes()
        )
        .unwrap(),
        VIRTIO_NET_ERR
    );
    assert_eq!(
        drv.ctrl(VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &[1])
            .unwrap(),
        VIRTIO_NET_ERR
    );

    // Both transmit queues reach the tap.
    for pair in 0..2 {
        let frame = test_frame(50 + u8::try_from(pair).unwrap(), 400);
        drv.send(pair, &plain(), &frame).unwrap();
        assert_eq!(sock.recv_matching(is_test_frame), frame, "pair {pair}");
    }
    // (The counters move just after the write that the socket saw.)
    be.wait_stats("both pairs sent", |s| s.tx_frames == 2);
    let per_pair = be.device.pair_stats();
    assert_eq!((per_pair[0].tx_frames, per_pair[1].tx_frames), (1, 1));

    // With one pair in use, everything arrives on pair 0.
    assert_eq!(
        drv.ctrl(
            VIRTIO_NET_CTRL_MQ,
            VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET,
            mq(1).as_bytes()
        )
        .unwrap(),
        VIRTIO_NET_OK
    );
    drv.fill_rx(0).unwrap();
    drv.fill_rx(1).unwrap();
    for i in 0..10u8 {
        let frame = test_frame(60 + i, 200);
        sock.send(&frame);
        loop {
            let r = drv
                .recv(0, T)
                .unwrap_or_else(|e| panic!("frame {i}: {e}: {:?}", be.device.pair_stats()));
            if is_test_frame(&r.frame) {
                assert_eq!(r.frame, frame);
                break;
            }
        }
    }
    assert_eq!(be.device.pair_stats()[1].rx_frames, 0);
}

#[test]
fn config_space_reconnects_and_a_clean_stop() {
    let ns = NetNs::new("netc");
    let mac = [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef];
    let mut be = Backend::start(&ns, "pvion4", move |o| {
        o.mac = Some(mac);
        o.mtu = Some(1400);
    });
    let sock = packet_socket(&ns, "pvion4");
    for round in 0..3u8 {
        let mut drv = be.connect(&DriverOptions::default());
        let cfg = drv.config();
        assert_eq!(cfg.mac(), mac);
        assert_eq!(cfg.mtu(), 1400);
        assert_eq!(cfg.max_virtqueue_pairs(), 1);
        assert_eq!(cfg.status(), VIRTIO_NET_S_LINK_UP);
        drv.fill_rx(0).unwrap();
        let frame = test_frame(round, 1000);
        drv.send(0, &plain(), &frame).unwrap();
        assert_eq!(sock.recv_matching(is_test_frame), frame, "round {round}");
        drv.stop().unwrap();
    }
    // Stop while a driver is connected: run returns, the socket and the
    // tap pvio created are gone.
    let _drv = be.connect(&DriverOptions::default());
    be.stop.stop();
    be.thread.take().unwrap().join().unwrap().unwrap();
    assert!(!be.socket.exists());
    drop(be);
    drop(sock);
    let end = Instant::now() + T;
    while ns.try_ip(&["link", "show", "pvion4"]) {
        assert!(Instant::now() < end, "tap still there");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for the next test frame on pair 0, skipping the host's own
/// traffic (IPv6 autoconfiguration and the like).
fn recv_test_frame(drv: &mut pvio_net_driver::NetDriver) -> Vec<u8> {
    loop {
        let r = drv.recv(0, T).unwrap();
        if is_test_frame(&r.frame) {
            return r.frame;
        }
    }
}

#[test]
fn a_bad_receive_chain_between_good_ones_costs_buffers_never_frames() {
    let ns = NetNs::new("netg");
    // A 65000-byte MTU: frames as large as GSO ones, without offloads.
    let be = Backend::start(&ns, "pvion5", |o| o.mtu = Some(65_000));
    let sock = packet_socket(&ns, "pvion5");
    let mut drv = be.connect(&DriverOptions::default());
    // Good buffers, a device-readable one, more good ones; the kick makes
    // the backend pop them all before any frame comes.
    drv.post_rx(0, 5).unwrap();
    drv.add_chain(
        0,
        &[Buf::Slot {
            len: 100,
            write: false,
        }],
    )
    .unwrap();
    drv.post_rx(0, 120).unwrap();
    be.wait_stats("the bad chain", |s| s.bad_chains == 1);
    for (i, len) in [65_014usize, 60, 30_000, 1514, 65_014, 100]
        .into_iter()
        .enumerate()
    {
        let frame = test_frame(u8::try_from(i).unwrap(), len);
        sock.send(&frame);
        // A used id the driver does not hold would fail here, as it fails
        // Linux ("id is not a head").
        assert_eq!(recv_test_frame(&mut drv), frame, "frame {i}");
    }
    let s = be.stats();
    assert_eq!((s.bad_chains, s.rx_returned_empty), (1, 5), "{s:?}");
    assert_eq!(drv.empty_rx(), 6);
    assert_eq!(s.rx_dropped, 0, "{s:?}");
}

#[test]
fn without_mergeable_buffers_each_frame_takes_one_buffer() {
    let ns = NetNs::new("netn");
    let be = Backend::start(&ns, "pvion7", |o| o.mtu = Some(9000));
    let sock = packet_socket(&ns, "pvion7");
    let opts = DriverOptions {
        features: !(VIRTIO_NET_F_MRG_RXBUF
            | VIRTIO_NET_F_GUEST_TSO4
            | VIRTIO_NET_F_GUEST_TSO6
            | VIRTIO_NET_F_GUEST_UFO),
        ..DriverOptions::default()
    };
    let mut drv = be.connect(&opts);
    assert_eq!(drv.acked() & VIRTIO_NET_F_MRG_RXBUF, 0);
    assert_eq!(drv.hdr_len(), 12, "VERSION_1 keeps num_buffers");
    drv.fill_rx(0).unwrap();
    let mut dropped = 0;
    for (i, len) in [60usize, 1514, 2000, 9014, 300].into_iter().enumerate() {
        let frame = test_frame(u8::try_from(i).unwrap(), len);
        sock.send(&frame);
        if 12 + len > 2048 {
            // One 2 KiB buffer cannot hold it: dropped and counted.
            dropped += 1;
            be.wait_stats("a drop", |s| s.rx_dropped == dropped);
            continue;
        }
        let r = loop {
            let r = drv.recv(0, T).unwrap();
            if is_test_frame(&r.frame) {
                break r;
            }
        };
        assert_eq!(r.frame, frame, "frame {i}");
        assert_eq!(r.buffers, 1);
        assert_eq!(r.hdr.num_buffers(), 1, "virtio 1.2 §5.1.6.4");
    }
    // Transmit does not care.
    let frame = test_frame(9, 1514);
    drv.send(0, &plain(), &frame).unwrap();
    assert_eq!(sock.recv_matching(is_test_frame), frame);
}

/// virtio 1.2 §2.7.10: with EVENT_IDX the backend interrupts only when the
/// driver's `used_event` asks for it. A driver whose `used_event` write the
/// backend did not see (a TCG guest with one vCPU issues no host fence) must
/// not be left waiting: a pair that goes idle sends the interrupt it held
/// back.
#[test]
fn spec_2_7_10_an_interrupt_held_back_is_sent_when_the_pair_goes_idle() {
    let ns = NetNs::new("neti");
    let be = Backend::start(&ns, "pvion6", |_| {});
    let sock = packet_socket(&ns, "pvion6");
    let mut drv = be.connect(&DriverOptions::default());
    assert_ne!(
        drv.acked() & pvio_frontend_protocol::features::VIRTIO_F_EVENT_IDX,
        0
    );
    drv.fill_rx(0).unwrap();
    // Receive one frame the usual way, so the backend has interrupted once
    // (the first interrupt is never held back).
    let first = test_frame(1, 200);
    sock.send(&first);
    assert_eq!(recv_test_frame(&mut drv), first);
    // Now the driver's used_event says "no interrupt"; a frame comes.
    drv.hold_interrupts(0).unwrap();
    while drv.wait_call(0, Duration::ZERO).unwrap() {}
    sock.send(&test_frame(2, 300));
    assert!(
        drv.wait_call(0, T).unwrap(),
        "no interrupt for a frame delivered while used_event asked for none"
    );
    assert_eq!(recv_test_frame(&mut drv), test_frame(2, 300));
}

/// The pages whose bits are set in the first `len` bytes of `log`.
fn dirty_pages(log: &std::os::fd::OwnedFd, len: usize) -> std::collections::BTreeSet<u64> {
    let mut bits = vec![0u8; len];
    rustix::io::pread(log, &mut bits, 0).unwrap();
    let mut pages = std::collections::BTreeSet::new();
    for (i, b) in bits.iter().enumerate() {
        for bit in 0..8 {
            if b & (1 << bit) != 0 {
                pages.insert(u64::try_from(i * 8 + bit).unwrap());
            }
        }
    }
    pages
}

/// vhost-user spec, "Migration": while the frontend logs, the pages a
/// received frame lands in and the used rings are marked, nothing else
/// (descriptor tables, available rings, transmit buffers); after
/// features without `VHOST_F_LOG_ALL`, nothing.
#[test]
fn spec_migration_received_frames_mark_their_pages_while_logging() {
    const PAGE: u64 = 4096;
    const LOG_ALL: u64 = 1 << 26;
    let ns = NetNs::new("netl");
    let be = Backend::start(&ns, "pvion9", |o| o.mtu = Some(9000));
    let sock = packet_socket(&ns, "pvion9");
    let mut drv = be.connect(&DriverOptions::default());
    assert_ne!(drv.acked() & LOG_ALL, 0, "VHOST_F_LOG_ALL negotiated");
    let mem_len = drv.memory().iter().map(|r| r.len()).sum::<u64>();
    let log_len = usize::try_from(mem_len.div_ceil(PAGE).div_ceil(8)).unwrap();
    let log = rustix::fs::memfd_create("pvio-test-log", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&log, 4 * PAGE).unwrap();
    drv.fill_rx(0).unwrap();
    drv.set_dirty_log(&log, 4 * PAGE).unwrap();

    let (used, used_len, slots, slot_len, size) = {
        let q = drv.queue(0).unwrap();
        (
            q.used,
            6 + 8 * u64::from(q.size),
            q.slots,
            q.slot_len,
            q.size,
        )
    };
    let used_before: u16 = vm_memory::Bytes::read_obj(drv.memory(), used.unchecked_add(2)).unwrap();
    let frame = test_frame(42, 9014);
    sock.send(&frame);
    loop {
        if drv.recv(0, T).unwrap().frame == frame {
            break;
        }
    }
    let dirty = dirty_pages(&log, log_len);
    let pages = |start: u64, len: u64| (start / PAGE)..(start + len).div_ceil(PAGE);
    // Allowed: the receive buffers and the used rings (where the backend
    // also writes `avail_event`, on every queue).
    let mut allowed = std::collections::BTreeSet::new();
    for i in 0..3 {
        let q = drv.queue(i).unwrap();
        allowed.extend(pages(q.used.0, 6 + 8 * u64::from(q.size)));
    }
    allowed.extend(pages(slots.0, u64::from(size) * u64::from(slot_len)));
    let outside: Vec<_> = dirty.difference(&allowed).collect();
    assert!(
        outside.is_empty(),
        "pages the backend never writes: {outside:?}"
    );
    // Required: the used ring, and every buffer filled since the log was set.
    let used_after: u16 = vm_memory::Bytes::read_obj(drv.memory(), used.unchecked_add(2)).unwrap();
    let mut want: std::collections::BTreeSet<u64> = pages(used.0, used_len).collect();
    let mut i = used_before;
    while i != used_after {
        let at = used.unchecked_add(4 + 8 * u64::from(i % size));
        let id: u32 = vm_memory::Bytes::read_obj(drv.memory(), at).unwrap();
        let len: u32 = vm_memory::Bytes::read_obj(drv.memory(), at.unchecked_add(4)).unwrap();
        want.extend(pages(
            slots.0 + u64::from(id) * u64::from(slot_len),
            u64::from(len),
        ));
        i = i.wrapping_add(1);
    }
    assert!(want.len() >= 3, "a 9 KiB frame spans at least 3 pages");
    let missing: Vec<_> = want.difference(&dirty).collect();
    assert!(missing.is_empty(), "written but not marked: {missing:?}");

    // Migration over: nothing is marked any more.
    drv.set_features(drv.acked() & !LOG_ALL).unwrap();
    rustix::io::pwrite(&log, &vec![0u8; log_len], 0).unwrap();
    sock.send(&frame);
    loop {
        if drv.recv(0, T).unwrap().frame == frame {
            break;
        }
    }
    assert!(dirty_pages(&log, log_len).is_empty(), "logging is off");
}
