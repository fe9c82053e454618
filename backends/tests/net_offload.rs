//! Checksum and segmentation offload through the backend, with no VM: the
//! no-VM driver plays a guest's TCP stack against a real TCP socket in a
//! network namespace the test makes (the tap has 10.98.0.1, the fake guest
//! 10.98.0.2, and only those addresses are used).
//!
//! - A TSO frame with a partial checksum from the driver reaches the
//!   namespace's socket as the byte stream it carries.
//! - A large write from the namespace reaches the driver as one GSO frame
//!   when it acknowledged GUEST_TSO4, as checksummed segments of at most
//!   one MTU when it did not, and in one big buffer without MRG_RXBUF.
//! - Offloads and frames queued for one frontend do not reach the next.

mod net_support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use net_support::inproc::{Backend, T};
use net_support::tcp::{self, Endpoints, Seen, ACK, ETH, IP, PSH, SYN, TCP};
use net_support::{NetNs, PacketSocket};
use pvio_frontend_protocol::net::*;
use pvio_net_driver::{DriverOptions, NetDriver, NetHdr};

const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const GUEST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x09];
const HOST_IP: [u8; 4] = [10, 98, 0, 1];
const GUEST_IP: [u8; 4] = [10, 98, 0, 2];
const PORT: u16 = 7000;

/// The guest's receive offloads.
const GUEST_OFFLOADS: u64 = VIRTIO_NET_F_GUEST_CSUM
    | VIRTIO_NET_F_GUEST_TSO4
    | VIRTIO_NET_F_GUEST_TSO6
    | VIRTIO_NET_F_GUEST_ECN
    | VIRTIO_NET_F_GUEST_UFO;

fn guest() -> Endpoints {
    Endpoints {
        src_mac: GUEST_MAC,
        dst_mac: HOST_MAC,
        src_ip: GUEST_IP,
        dst_ip: HOST_IP,
        src_port: 40_000,
        dst_port: PORT,
    }
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from((i * 31 + usize::from(seed)) % 253).unwrap())
        .collect()
}

/// The namespace side: the tap with the host address, the fake guest's
/// MAC known (the driver answers no ARP).
fn setup(tag: &str, tap: &str) -> (NetNs, Backend) {
    let ns = NetNs::new(tag);
    let be = Backend::start(&ns, tap, |_| {});
    ns.ip(&["link", "set", "dev", tap, "address", "02:00:00:00:00:01"]);
    ns.ip(&["addr", "add", "10.98.0.1/24", "dev", tap]);
    ns.ip(&[
        "neigh",
        "add",
        "10.98.0.2",
        "lladdr",
        "02:00:00:00:00:09",
        "dev",
        tap,
        "nud",
        "permanent",
    ]);
    (ns, be)
}

/// A segment the driver received, with the header it came with.
struct Got {
    hdr: NetHdr,
    frame_len: usize,
    buffers: usize,
    seg: Seen,
}

/// Waits for the next TCP segment from the namespace to the fake guest.
fn recv_segment(drv: &mut NetDriver, deadline: Instant) -> Option<Got> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let Ok(r) = drv.recv(0, left) else {
            return None;
        };
        if let Some(seg) = tcp::parse(&r.frame, HOST_IP, GUEST_IP) {
            if seg.src_port == PORT {
                return Some(Got {
                    hdr: r.hdr,
                    frame_len: r.frame.len(),
                    buffers: r.buffers,
                    seg,
                });
            }
        }
    }
}

/// Connects the fake guest to the namespace's listener; returns the
/// server's next sequence number.
fn handshake(drv: &mut NetDriver) -> u32 {
    let ep = guest();
    // MSS 1460.
    let syn = tcp::segment(&ep, 1000, 0, SYN, &[2, 4, 0x05, 0xb4], &[], false);
    drv.send(0, &NetHdr::default(), &syn).unwrap();
    let deadline = Instant::now() + T;
    let synack = loop {
        let got = recv_segment(drv, deadline).expect("SYN-ACK");
        if got.seg.flags & (SYN | ACK) == SYN | ACK {
            break got.seg;
        }
    };
    let server_seq = synack.seq.wrapping_add(1);
    let ack = tcp::segment(&ep, 1001, server_seq, ACK, &[], &[], false);
    drv.send(0, &NetHdr::default(), &ack).unwrap();
    server_seq
}

/// What the namespace's side of one connection saw and did.
struct Server {
    /// The bytes it read, sent when it has `expect` of them.
    read: mpsc::Receiver<Vec<u8>>,
    /// Keeps the connection open until the test ends.
    _done: mpsc::Sender<()>,
}

/// Accepts one connection on 10.98.0.1:7000 in `ns`, reads `expect` bytes,
/// writes `reply`, and holds the connection until the test ends.
fn serve(ns: &NetNs, expect: usize, reply: Vec<u8>) -> Server {
    let listener = ns.run(|| TcpListener::bind(("10.98.0.1", PORT)).expect("bind"));
    let (read_tx, read) = mpsc::channel();
    let (done, done_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(T)).unwrap();
        let mut buf = vec![0u8; expect];
        let result = s.read_exact(&mut buf).map(|()| buf);
        let _ = read_tx.send(result.unwrap_or_default());
        s.write_all(&reply).expect("write the reply");
        let _ = done_rx.recv();
        drop::<TcpStream>(s);
    });
    Server { read, _done: done }
}

/// The guest sends `data` as one TSO frame; returns the server's stream.
fn send_tso(drv: &mut NetDriver, server_seq: u32, data: &[u8]) {
    let frame = tcp::segment(&guest(), 1001, server_seq, ACK | PSH, &[], data, true);
    let hdr_len = u16::try_from(ETH + IP + TCP).unwrap();
    let hdr = NetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
        hdr_len: hdr_len.into(),
        gso_size: 1448.into(),
        csum_start: u16::try_from(ETH + IP).unwrap().into(),
        csum_offset: 16.into(),
        ..NetHdr::default()
    };
    drv.send(0, &hdr, &frame).unwrap();
}

/// Collects `len` bytes the server sent from `server_seq` on (duplicates
/// from retransmission ignored), with every segment that carried them.
fn collect_stream(drv: &mut NetDriver, server_seq: u32, len: usize) -> (Vec<u8>, Vec<Got>) {
    let mut data = vec![0u8; len];
    let mut have = vec![false; len];
    let mut segs = Vec::new();
    let deadline = Instant::now() + T;
    while have.iter().any(|h| !h) {
        let got = recv_segment(drv, deadline).expect("the server's data");
        let off = usize::try_from(got.seg.seq.wrapping_sub(server_seq)).unwrap();
        for (i, &b) in got.seg.payload.iter().enumerate() {
            if let Some(slot) = data.get_mut(off + i) {
                *slot = b;
                have[off + i] = true;
            }
        }
        if !got.seg.payload.is_empty() {
            segs.push(got);
        }
    }
    (data, segs)
}

#[test]
fn tso_and_checksum_offload_both_ways_over_a_real_tcp_connection() {
    let (ns, be) = setup("neto", "pvion8");
    let sent = pattern(1, 8000);
    let reply = pattern(2, 10_000);
    let server = serve(&ns, sent.len(), reply.clone());
    let mut drv = be.connect(&DriverOptions {
        tx_buf_len: 16_384,
        ..DriverOptions::default()
    });
    for f in [
        VIRTIO_NET_F_HOST_TSO4,
        VIRTIO_NET_F_CSUM,
        VIRTIO_NET_F_GUEST_TSO4,
        VIRTIO_NET_F_GUEST_CSUM,
    ] {
        assert_ne!(drv.acked() & f, 0, "{f:#x} not negotiated");
    }
    drv.fill_rx(0).unwrap();
    let server_seq = handshake(&mut drv);

    // Guest to namespace: one 8000-byte TSO frame, checksum left to the
    // host; the socket reads the stream it carries.
    send_tso(&mut drv, server_seq, &sent);
    assert_eq!(server.read.recv_timeout(T).unwrap(), sent);

    // Namespace to guest: the 10 000-byte write comes as GSO frames, each
    // with a partial checksum for the guest to finish.
    let (data, segs) = collect_stream(&mut drv, server_seq, reply.len());
    assert_eq!(data, reply);
    let gso: Vec<&Got> = segs
        .iter()
        .filter(|g| g.hdr.gso_type == VIRTIO_NET_HDR_GSO_TCPV4)
        .collect();
    assert!(
        gso.iter().any(|g| g.frame_len > 1514),
        "no GSO frame among {:?}",
        segs.iter().map(|g| g.frame_len).collect::<Vec<_>>()
    );
    for g in gso {
        assert_ne!(g.hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM, 0);
        assert!(g.hdr.gso_size.get() > 0);
    }
    let s = be.stats();
    assert_eq!(s.guest_errors() + s.tx_dropped + s.rx_dropped, 0, "{s:?}");
}

#[test]
fn without_receive_offloads_the_host_segments_and_checksums() {
    let (ns, be) = setup("netq", "pvion9");
    let sent = pattern(3, 5000);
    let reply = pattern(4, 10_000);
    let server = serve(&ns, sent.len(), reply.clone());
    let mut drv = be.connect(&DriverOptions {
        features: !GUEST_OFFLOADS,
        tx_buf_len: 16_384,
        ..DriverOptions::default()
    });
    assert_eq!(drv.acked() & GUEST_OFFLOADS, 0);
    drv.fill_rx(0).unwrap();
    let server_seq = handshake(&mut drv);
    // Transmit offload does not depend on the receive side.
    send_tso(&mut drv, server_seq, &sent);
    assert_eq!(server.read.recv_timeout(T).unwrap(), sent);
    let (data, segs) = collect_stream(&mut drv, server_seq, reply.len());
    assert_eq!(data, reply);
    for g in &segs {
        assert_eq!(g.hdr.gso_type, VIRTIO_NET_HDR_GSO_NONE);
        assert_eq!(g.hdr.flags, 0, "no partial checksum without GUEST_CSUM");
        assert!(g.frame_len <= 1514, "{} bytes", g.frame_len);
        assert!(g.seg.checksum_ok, "bad checksum from the host");
    }
}

#[test]
fn without_mergeable_buffers_a_gso_frame_fills_one_big_buffer() {
    let (ns, be) = setup("netr", "pvio10");
    let reply = pattern(5, 10_000);
    let server = serve(&ns, 1, reply.clone());
    // Linux's "big packets" mode: buffers that hold a whole GSO frame.
    let mut drv = be.connect(&DriverOptions {
        features: !VIRTIO_NET_F_MRG_RXBUF,
        queue_size: 64,
        rx_buf_len: 66_048,
        ..DriverOptions::default()
    });
    assert_eq!(drv.acked() & VIRTIO_NET_F_MRG_RXBUF, 0);
    assert_ne!(drv.acked() & VIRTIO_NET_F_GUEST_TSO4, 0);
    drv.fill_rx(0).unwrap();
    let server_seq = handshake(&mut drv);
    let one = tcp::segment(&guest(), 1001, server_seq, ACK | PSH, &[], b"x", false);
    drv.send(0, &NetHdr::default(), &one).unwrap();
    assert_eq!(server.read.recv_timeout(T).unwrap(), b"x");
    let (data, segs) = collect_stream(&mut drv, server_seq, reply.len());
    assert_eq!(data, reply);
    assert!(segs.iter().all(|g| g.buffers == 1));
    assert!(segs
        .iter()
        .any(|g| g.hdr.gso_type == VIRTIO_NET_HDR_GSO_TCPV4 && g.frame_len > 1514));
}

/// Returns once the backend has taken `drv`'s features (the vhost-user
/// requests before the rings are served in order): a frame sent on the
/// rings has gone through.
fn features_taken(be: &Backend, drv: &mut NetDriver) {
    let before = be.stats().tx_frames;
    let frame = net_support::test_frame(0, 60);
    drv.send(0, &NetHdr::default(), &frame).unwrap();
    be.wait_stats("a frame sent", |s| s.tx_frames > before);
}

/// A TCP/IPv4 GSO packet from the namespace to the fake guest (not part
/// of any connection), `seq` telling it apart.
fn inject_gso(sock: &PacketSocket, seq: u32) {
    let ep = Endpoints {
        src_mac: HOST_MAC,
        dst_mac: GUEST_MAC,
        src_ip: HOST_IP,
        dst_ip: GUEST_IP,
        src_port: PORT,
        dst_port: 40_001,
    };
    let frame = tcp::segment(&ep, seq, 1, ACK, &[], &pattern(6, 4000), true);
    let hdr = NetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
        hdr_len: u16::try_from(ETH + IP + TCP).unwrap().into(),
        gso_size: 1000.into(),
        csum_start: u16::try_from(ETH + IP).unwrap().into(),
        csum_offset: 16.into(),
        ..NetHdr::default()
    };
    use pvio_frontend_protocol::zerocopy::IntoBytes;
    sock.send_with_hdr(hdr.as_bytes(), &frame);
}

#[test]
fn offloads_and_queued_frames_do_not_carry_over_to_the_next_frontend() {
    let (ns, be) = setup("nets", "pvio11");
    let sock = ns.run(|| PacketSocket::bind("pvio11").with_vnet_hdr());
    let deadline = || Instant::now() + T;

    // A frontend that takes TSO: a GSO packet reaches it whole.
    let mut a = be.connect(&DriverOptions::default());
    features_taken(&be, &mut a);
    a.fill_rx(0).unwrap();
    inject_gso(&sock, 1_000_000);
    let got = recv_segment(&mut a, deadline()).expect("the GSO packet");
    assert_eq!(got.hdr.gso_type, VIRTIO_NET_HDR_GSO_TCPV4);
    assert_eq!(got.seg.payload.len(), 4000);
    a.stop().unwrap();
    drop(a);

    // A frontend that takes TSO but posts no buffer: the next GSO packet
    // waits in the tap when it goes away.
    let mut b = be.connect(&DriverOptions::default());
    features_taken(&be, &mut b);
    inject_gso(&sock, 2_000_000);
    std::thread::sleep(Duration::from_millis(100));
    b.stop().unwrap();
    drop(b);

    // A frontend without receive offloads gets neither that packet nor any
    // GSO frame: the next packet arrives segmented and checksummed. (Its
    // buffers would hold the old packet: 8 KiB, as Linux's mergeable
    // buffers grow up to a page or more.)
    let mut c = be.connect(&DriverOptions {
        features: !GUEST_OFFLOADS,
        rx_buf_len: 8192,
        ..DriverOptions::default()
    });
    c.fill_rx(0).unwrap();
    inject_gso(&sock, 3_000_000);
    let mut payload = 0;
    while payload < 4000 {
        let got = recv_segment(&mut c, deadline()).expect("the third packet");
        assert_ne!(
            got.seg.seq, 2_000_000,
            "a frame queued for the last frontend"
        );
        assert_eq!(got.hdr.gso_type, VIRTIO_NET_HDR_GSO_NONE);
        assert!(got.frame_len <= 1514);
        assert!(got.seg.checksum_ok);
        assert!((3_000_000..3_004_000).contains(&got.seg.seq));
        payload += got.seg.payload.len();
    }
    assert_eq!(payload, 4000);
}
