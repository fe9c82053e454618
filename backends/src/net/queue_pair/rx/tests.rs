//! The receive batch over a real split ring: the driver side is the test
//! driver's `DriverQueue` (which refuses a used element that names no chain
//! it gave the device, as Linux does), the device side a `virtio-queue`
//! `Queue` on the same memory, and the tap a datagram socket pair that, like
//! tun, reports a frame's full length when it cuts it short.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;

use crate::vhost_user::GuestMem;
use pvio_frontend_protocol::features::VIRTIO_F_VERSION_1;
use pvio_frontend_protocol::net::{
    VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_MRG_RXBUF,
};
use pvio_net_driver::{Buf, DriverQueue};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress};

use super::{BatchEnd, FrameSource, Receiver};
use crate::net::offload::MAX_FRAME_LEN;
use crate::net::queue_pair::Negotiated;
use crate::net::shared::PairShared;
use crate::net::stats::StatsSnapshot;

/// Mergeable buffers and TCP segmentation offload: frames up to 64 KiB.
const GSO: u64 =
    VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MRG_RXBUF | VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_GUEST_TSO4;
/// Mergeable buffers, frames up to the MTU.
const MRG: u64 = VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MRG_RXBUF;

/// A tap stand-in: one datagram per frame.
struct FakeTap {
    tx: UnixDatagram,
    rx: UnixDatagram,
    /// The length to report for each queued frame.
    lens: RefCell<VecDeque<usize>>,
}

impl FakeTap {
    fn new() -> Self {
        let (tx, rx) = UnixDatagram::pair().unwrap();
        rx.set_nonblocking(true).unwrap();
        Self {
            tx,
            rx,
            lens: RefCell::new(VecDeque::new()),
        }
    }

    fn push(&self, frame: &[u8]) {
        self.push_claiming(frame, frame.len());
    }

    /// Queues `frame` but reports `len` bytes when it is read (a frame cut
    /// short by the kernel).
    fn push_claiming(&self, frame: &[u8], len: usize) {
        self.tx.send(frame).unwrap();
        self.lens.borrow_mut().push_back(len);
    }

    fn queued(&self) -> usize {
        self.lens.borrow().len()
    }

    fn reported(&self, read: io::Result<usize>) -> io::Result<usize> {
        let n = read?;
        let claimed = self.lens.borrow_mut().pop_front().unwrap_or(n);
        Ok(claimed.max(n))
    }
}

impl FrameSource for FakeTap {
    unsafe fn read_frame_vectored(&self, iov: &[libc::iovec]) -> io::Result<usize> {
        // SAFETY: the caller keeps readv's contract (this method's own).
        let read = unsafe { crate::net::sys::readv(self.rx.as_fd(), iov) };
        self.reported(read)
    }

    fn read_frame(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.reported(self.rx.recv(buf))
    }
}

/// A receive ring as a guest driver and pvio both see it.
struct Ring {
    mem: GuestMem,
    dq: DriverQueue,
    q: Queue,
    rx: Receiver,
    shared: Arc<PairShared>,
    hdr_len: usize,
}

impl Ring {
    fn new(size: u16, slot: u32, acked: u64) -> Self {
        let (dq, end) = DriverQueue::new(0x1000, size, slot).unwrap();
        let mem =
            GuestMem::from_ranges(&[(GuestAddress(0), usize::try_from(end).unwrap())]).unwrap();
        let mut q = Queue::new(size).unwrap();
        q.set_size(size);
        q.try_set_desc_table_address(dq.desc).unwrap();
        q.try_set_avail_ring_address(dq.avail).unwrap();
        q.try_set_used_ring_address(dq.used).unwrap();
        q.set_ready(true);
        let neg = Negotiated::new(acked, 1500);
        let shared = Arc::new(PairShared::new().unwrap());
        Self {
            mem,
            dq,
            q,
            rx: Receiver::new(0, neg, Arc::clone(&shared)),
            shared,
            hdr_len: neg.hdr_len,
        }
    }

    /// Posts `n` chains of `descs` full slots each.
    fn post(&mut self, n: usize, descs: usize) {
        let len = self.dq.slot_len;
        let bufs = vec![Buf::Slot { len, write: true }; descs];
        for _ in 0..n {
            assert!(
                self.dq.add(&self.mem, &bufs).unwrap().is_some(),
                "ring full"
            );
        }
    }

    /// Posts a chain the device may not write to (a bad receive chain).
    fn post_bad(&mut self) {
        let bad = [Buf::Slot {
            len: 100,
            write: false,
        }];
        assert!(self.dq.add(&self.mem, &bad).unwrap().is_some());
    }

    fn run(&mut self, tap: &FakeTap) -> BatchEnd {
        self.rx.run(&mut self.q, &self.mem, tap)
    }

    fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// The bytes the device wrote into the chain at `head` (`len` of them),
    /// freeing the chain.
    fn chain_data(&mut self, head: u16, len: usize) -> Vec<u8> {
        let ids = self.dq.free_chain(&self.mem, head).unwrap();
        let slot = usize::try_from(self.dq.slot_len).unwrap();
        let mut out = Vec::with_capacity(len);
        for id in ids {
            let n = slot.min(len - out.len());
            let mut buf = vec![0u8; n];
            self.dq.read_slot(&self.mem, id, &mut buf).unwrap();
            out.extend_from_slice(&buf);
            if out.len() == len {
                break;
            }
        }
        out
    }

    /// Every used element: the frames (header stripped, with the buffers
    /// each took) and the number of buffers handed back empty. Panics if an
    /// element names a chain the device does not hold.
    fn take(&mut self) -> (Vec<(Vec<u8>, usize)>, usize) {
        let mut frames = Vec::new();
        let mut empty = 0;
        while let Some(e) = self.dq.pop_used(&self.mem).unwrap() {
            let head = u16::try_from(e.id()).unwrap();
            let len = usize::try_from(e.len()).unwrap();
            if len < self.hdr_len + 14 {
                self.dq.free_chain(&self.mem, head).unwrap();
                empty += 1;
                continue;
            }
            let mut data = self.chain_data(head, len);
            let buffers = if self.hdr_len == 12 {
                usize::from(u16::from_le_bytes([data[10], data[11]]))
            } else {
                1
            };
            for _ in 1..buffers {
                let e = self
                    .dq
                    .pop_used(&self.mem)
                    .unwrap()
                    .expect("num_buffers announces more buffers than were used");
                let more = self.chain_data(
                    u16::try_from(e.id()).unwrap(),
                    usize::try_from(e.len()).unwrap(),
                );
                data.extend_from_slice(&more);
            }
            frames.push((data[self.hdr_len..].to_vec(), buffers));
        }
        (frames, empty)
    }
}

/// A frame of `len` bytes behind a zero header of `hdr_len` bytes.
fn framed(hdr_len: usize, seed: u8, len: usize) -> (Vec<u8>, Vec<u8>) {
    let frame: Vec<u8> = (0..len)
        .map(|i| u8::try_from((i * 7 + usize::from(seed) * 13) % 251).unwrap())
        .collect();
    let mut with_hdr = vec![0u8; hdr_len];
    with_hdr.extend_from_slice(&frame);
    (with_hdr, frame)
}

#[test]
fn small_frames_take_one_buffer_each_and_unused_chains_go_back() {
    let mut r = Ring::new(64, 2048, MRG);
    r.post(10, 1);
    let tap = FakeTap::new();
    let sent: Vec<Vec<u8>> = [60, 1514, 300]
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let (wire, frame) = framed(12, u8::try_from(i).unwrap(), len);
            tap.push(&wire);
            frame
        })
        .collect();
    let end = r.run(&tap);
    assert_eq!(
        end,
        BatchEnd {
            used: 3,
            pause: false
        }
    );
    // The chain popped for a fourth frame went back.
    assert_eq!(r.q.next_avail(), 3);
    let (frames, empty) = r.take();
    assert_eq!(empty, 0);
    assert_eq!(frames, sent.into_iter().map(|f| (f, 1)).collect::<Vec<_>>());
    assert_eq!(r.stats().rx_frames, 3);
}

#[test]
fn spec_5_1_6_3_a_gso_frame_spreads_over_mergeable_buffers() {
    let mut r = Ring::new(256, 2048, GSO);
    r.post(100, 1);
    let tap = FakeTap::new();
    let (wire, frame) = framed(12, 1, 65_000);
    tap.push(&wire);
    r.run(&tap);
    let (frames, _) = r.take();
    assert_eq!(frames, vec![(frame, (65_000 + 12usize).div_ceil(2048))]);
}

#[test]
fn a_bad_chain_among_held_ones_is_completed_once_and_every_later_frame_arrives() {
    let mut r = Ring::new(256, 2048, GSO);
    let tap = FakeTap::new();
    // Good chains, a bad one, more good ones; then a batch with no frame
    // (as on a receive kick): the five good chains popped before the bad
    // one cannot go back past it, so they come back empty, once.
    r.post(5, 1);
    r.post_bad();
    r.post(40, 1);
    let end = r.run(&tap);
    let (frames, first_empty) = r.take();
    assert!(frames.is_empty());
    let first_stats = r.stats();

    // Large and small frames, over several batches, with another bad
    // chain posted behind the buffers a GSO frame holds: all arrive intact,
    // and no chain is completed twice (`take` would panic).
    let mut sent = Vec::new();
    let mut got = Vec::new();
    let mut empties = 0;
    for (round, lens) in [[65_000, 100, 60], [1514, 64_000, 9000], [60, 65_000, 200]]
        .iter()
        .enumerate()
    {
        for (i, &len) in lens.iter().enumerate() {
            let (wire, frame) = framed(12, u8::try_from(round * 3 + i).unwrap(), len);
            tap.push(&wire);
            sent.push(frame);
        }
        if round == 1 {
            r.post_bad();
        }
        for _ in 0..10 {
            if tap.queued() == 0 && !r.rx.has_pending() {
                break;
            }
            r.run(&tap);
            let (frames, empty) = r.take();
            got.extend(frames.into_iter().map(|(f, _)| f));
            empties += empty;
            // The driver posts buffers again, as Linux refills its ring.
            let free = r.dq.free_count();
            r.post(free.min(34), 1);
        }
    }
    assert_eq!(tap.queued(), 0);
    assert_eq!(got.len(), sent.len());
    for (i, (g, s)) in got.iter().zip(&sent).enumerate() {
        assert!(
            g == s,
            "frame {i} differs ({} vs {} bytes)",
            g.len(),
            s.len()
        );
    }
    assert_eq!(end.used, 6);
    assert_eq!(first_empty, 6);
    let s = first_stats;
    assert_eq!((s.bad_chains, s.rx_returned_empty), (1, 5), "{s:?}");
    let s = r.stats();
    assert_eq!(s.bad_chains, 2, "{s:?}");
    assert!(s.rx_returned_empty > 5, "{s:?}");
    assert_eq!(
        u64::try_from(empties).unwrap(),
        s.bad_chains - 1 + s.rx_returned_empty - 5,
        "{s:?}"
    );
    assert_eq!(s.rx_frames, 9);
    assert_eq!(s.rx_dropped, 0);
}

#[test]
fn chains_beyond_the_iovec_limit_take_frames_through_the_bounce_buffer() {
    // 500 chains of four 32-byte pieces: 2000 iovecs, more than one readv
    // takes, and room for a frame only all together.
    let mut r = Ring::new(2048, 32, GSO);
    r.post(500, 4);
    let tap = FakeTap::new();
    let (wire, frame) = framed(12, 3, 40_000);
    tap.push(&wire);
    let (wire2, frame2) = framed(12, 4, 100);
    tap.push(&wire2);
    let end = r.run(&tap);
    assert!(!end.pause);
    assert!(!r.rx.has_pending());
    let (frames, _) = r.take();
    assert_eq!(
        frames,
        vec![(frame, (40_000 + 12usize).div_ceil(128)), (frame2, 1)]
    );
    assert_eq!(r.stats().rx_dropped, 0);
}

#[test]
fn a_frame_longer_than_the_bounce_buffer_is_dropped() {
    let mut r = Ring::new(256, 2048, GSO);
    // Too little room for the largest frame: the bounce buffer is used.
    r.post(3, 1);
    let tap = FakeTap::new();
    let (wire, _) = framed(12, 5, 100);
    tap.push_claiming(&wire, MAX_FRAME_LEN + 12 + 1);
    r.run(&tap);
    assert!(!r.rx.has_pending());
    assert_eq!(r.stats().rx_dropped, 1);
    // Plenty of room now: the next frame arrives, nothing else.
    r.post(100, 1);
    let (wire, frame) = framed(12, 6, 3000);
    tap.push(&wire);
    r.run(&tap);
    let (frames, _) = r.take();
    assert_eq!(frames, vec![(frame, 2)]);
}

#[test]
fn a_frame_waits_in_the_bounce_buffer_until_the_guest_posts_room() {
    let mut r = Ring::new(256, 2048, GSO);
    r.post(2, 1);
    let tap = FakeTap::new();
    let (wire, frame) = framed(12, 7, 5000);
    tap.push(&wire);
    let end = r.run(&tap);
    assert_eq!(
        end,
        BatchEnd {
            used: 0,
            pause: true
        }
    );
    assert!(r.rx.has_pending());
    // The two chains went back to the ring.
    assert_eq!(r.q.next_avail(), 0);
    r.post(1, 1);
    r.run(&tap);
    assert_eq!(r.take().0, vec![(frame, 3)]);
    // Once when the frame waited, once when the ring ran dry after it.
    assert_eq!(r.stats().rx_no_buffers, 2);
}

#[test]
fn without_mergeable_buffers_a_frame_takes_one_chain_or_is_dropped() {
    for (acked, hdr_len) in [(VIRTIO_F_VERSION_1, 12), (0, 10)] {
        let mut r = Ring::new(16, 2048, acked);
        assert_eq!(r.hdr_len, hdr_len);
        r.post(8, 1);
        let tap = FakeTap::new();
        let (a, fa) = framed(hdr_len, 1, 1514);
        let (big, _) = framed(hdr_len, 2, 3000);
        let (b, fb) = framed(hdr_len, 3, 60);
        tap.push(&a);
        tap.push(&big);
        tap.push(&b);
        r.run(&tap);
        let (frames, _) = r.take();
        assert_eq!(frames, vec![(fa.clone(), 1), (fb, 1)], "header {hdr_len}");
        assert_eq!(r.stats().rx_dropped, 1);
        if hdr_len == 10 {
            // No num_buffers field: nothing past the header was touched.
            let mut raw = [0u8; 2];
            r.mem
                .read_slice(&mut raw, r.dq.slot(0).unchecked_add(10))
                .unwrap();
            assert_eq!(raw, fa[..2]);
        }
    }
}

#[test]
fn frames_larger_than_the_whole_ring_are_dropped() {
    let mut r = Ring::new(4, 2048, GSO);
    r.post(4, 1);
    let tap = FakeTap::new();
    let (big, _) = framed(12, 1, 20_000);
    let (small, fs) = framed(12, 2, 500);
    tap.push(&big);
    tap.push(&small);
    r.run(&tap);
    assert_eq!(r.take().0, vec![(fs, 1)]);
    assert_eq!(r.stats().rx_dropped, 1);
}

#[test]
fn without_buffers_the_tap_is_left_unread_and_paused() {
    let mut r = Ring::new(16, 2048, MRG);
    let tap = FakeTap::new();
    let (wire, frame) = framed(12, 1, 100);
    tap.push(&wire);
    let end = r.run(&tap);
    assert_eq!(
        end,
        BatchEnd {
            used: 0,
            pause: true
        }
    );
    assert_eq!(tap.queued(), 1);
    r.post(1, 1);
    r.run(&tap);
    assert_eq!(r.take().0, vec![(frame, 1)]);
}

#[test]
fn a_broken_available_index_pauses_instead_of_spinning() {
    let mut r = Ring::new(16, 2048, MRG);
    // An index more than a ring ahead: nothing can be popped, yet the
    // ring never looks empty.
    r.mem
        .write_obj(100u16.to_le(), r.dq.avail.unchecked_add(2))
        .unwrap();
    let tap = FakeTap::new();
    let (wire, _) = framed(12, 1, 100);
    tap.push(&wire);
    let end = r.run(&tap);
    assert!(end.pause);
    assert_eq!(end.used, 0);
}
