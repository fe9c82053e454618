//! One queue worker driven through a real vring over guest memory (see
//! `rig`): the status byte, the used ring, the image and the counters after
//! good and bad requests, on each engine.

mod inflight;
mod notify;
mod rig;

use std::fs::OpenOptions;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pvio_frontend_protocol::blk::{
    encode_blk_id, DiscardWriteZeroesSeg, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP,
    VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
};
use pvio_frontend_protocol::zerocopy::IntoBytes;
use vhost_user_backend::VringT;
use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress};

use self::rig::*;
use crate::blk::engine::EngineKind;
use crate::blk::metrics::{capture_warnings, GuestError};
use crate::blk::slot::SlotOp;

fn read_reads_the_image_on(kind: EngineKind, engine: &str) {
    let mut r = rig(kind);
    assert_eq!(r.worker.engine().name(), engine, "{kind:?}");
    r.request(0, VIRTIO_BLK_T_IN, 3, 1024, true);
    assert_eq!(r.kick_until(1), vec![(0, 1025)], "{kind:?}");
    assert_eq!(r.status(0), VIRTIO_BLK_S_OK);
    let want: Vec<u8> = (1536..2560).map(image_byte).collect();
    assert_eq!(r.data(0, 1024), want, "{kind:?}");
}

#[test]
fn read_reads_the_image_through_io_uring() {
    // `Auto` falls back to the sync engine without io_uring: the assertion
    // on the engine's name makes sure this test ran io_uring.
    read_reads_the_image_on(EngineKind::Auto, "io_uring");
}

#[test]
fn read_reads_the_image_through_the_sync_engine() {
    read_reads_the_image_on(EngineKind::Sync, "sync");
}

#[test]
fn write_reaches_the_image_and_a_flush_after_it_succeeds() {
    for kind in [EngineKind::Auto, EngineKind::Sync] {
        let mut r = rig(kind);
        r.fill_data(0, &[0xab; 512]);
        r.request(0, VIRTIO_BLK_T_OUT, 0, 512, false);
        assert_eq!(r.kick_until(1), vec![(0, 1)]);
        assert_eq!(r.status(0), VIRTIO_BLK_S_OK);
        r.request(1, VIRTIO_BLK_T_FLUSH, 0, 0, false);
        assert_eq!(r.kick_until(2), vec![(0, 1), (3, 1)]);
        assert_eq!(r.status(1), VIRTIO_BLK_S_OK);
        let on_disk = r.on_disk();
        assert!(on_disk[..512].iter().all(|&b| b == 0xab), "{kind:?}");
        assert_eq!(on_disk[512], image_byte(512));
    }
}

/// A flush is an `fdatasync` of the image, on each engine: on `/dev/null`,
/// which takes writes but has no `fsync`, the flush fails with EINVAL and
/// the driver gets IOERR. A flush answered without a system call would
/// report OK here.
#[test]
fn flush_is_an_fdatasync_of_the_image_whose_failure_is_ioerr() {
    for (kind, engine) in [(EngineKind::Auto, "io_uring"), (EngineKind::Sync, "sync")] {
        let null = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .unwrap();
        let mut r = rig_with(Setup {
            file: Some(null),
            ..Setup::new(kind)
        });
        assert_eq!(r.worker.engine().name(), engine);
        r.request(0, VIRTIO_BLK_T_OUT, 0, 512, false);
        r.request(1, VIRTIO_BLK_T_FLUSH, 0, 0, false);
        assert_eq!(r.kick_until(2), vec![(0, 1), (3, 1)], "{kind:?}");
        assert_eq!(r.status(0), VIRTIO_BLK_S_OK, "{kind:?}");
        assert_eq!(r.status(1), VIRTIO_BLK_S_IOERR, "{kind:?}");
        assert_eq!(r.metrics.count(GuestError::IoError), 1, "{kind:?}");
    }
}

#[test]
fn spec_5_2_6_bad_request_gets_ioerr_is_counted_and_the_queue_goes_on() {
    let mut r = rig(EngineKind::Auto);
    r.request(
        0,
        VIRTIO_BLK_T_IN,
        u64::try_from(IMAGE / 512).unwrap(),
        512,
        true,
    );
    assert_eq!(r.kick_until(1), vec![(0, 1)]);
    assert_eq!(r.status(0), VIRTIO_BLK_S_IOERR);
    assert_eq!(r.metrics.count(GuestError::OutOfRange), 1);
    r.request(1, VIRTIO_BLK_T_IN, 0, 512, true);
    assert_eq!(r.kick_until(2), vec![(0, 1), (3, 513)]);
    assert_eq!(r.status(1), VIRTIO_BLK_S_OK);
}

#[test]
fn spec_5_2_6_1_write_to_read_only_disk_leaves_the_image_alone() {
    let mut r = rig_with(Setup {
        read_only: true,
        ..Setup::new(EngineKind::Auto)
    });
    r.fill_data(0, &[0xcd; 512]);
    r.request(0, VIRTIO_BLK_T_OUT, 0, 512, false);
    assert_eq!(r.kick_until(1), vec![(0, 1)]);
    assert_eq!(r.status(0), VIRTIO_BLK_S_IOERR);
    assert_eq!(r.metrics.count(GuestError::WriteToReadOnly), 1);
    let want: Vec<u8> = (0..512).map(image_byte).collect();
    assert_eq!(r.on_disk()[..512], want[..]);
}

#[test]
fn looping_chain_stops_the_queue_until_the_ring_is_stopped() {
    let mut r = rig(EngineKind::Auto);
    r.add_loop(0);
    r.request(1, VIRTIO_BLK_T_IN, 0, 512, true);
    let log = capture_warnings(|| r.worker.handle_kick(&r.vring));
    assert!(r.used().is_empty(), "a stopped queue served a request");
    assert_eq!(r.metrics.count(GuestError::MalformedChain), 1);
    assert_eq!(r.metrics.count(GuestError::QueueNeedsReset), 1);
    // The chain's error takes the rate limiter's line; the queue stopping
    // is logged all the same.
    assert!(log.contains("malformed_chain"), "{log}");
    assert!(log.contains("queue_needs_reset"), "{log}");
    // Kicks are ignored until the frontend stops the ring.
    r.worker.handle_kick(&r.vring);
    assert!(r.used().is_empty());
    assert_eq!(r.metrics.count(GuestError::QueueNeedsReset), 1);
    r.worker.stop();
    assert_eq!(r.kick_until(1), vec![(2, 513)]);
    assert_eq!(r.status(1), VIRTIO_BLK_S_OK);
}

#[test]
fn spec_5_2_6_chain_without_a_writable_status_is_counted_as_no_status() {
    let mut r = rig(EngineKind::Auto);
    r.header(0, VIRTIO_BLK_T_IN, 0);
    r.add_chain(&[(header_addr(0), 16, 0), (status_addr(0), 1, 0)]);
    r.worker.handle_kick(&r.vring);
    assert!(r.used().is_empty());
    assert_eq!(r.status(0), 0xff, "the status byte is not the device's");
    assert_eq!(r.metrics.count(GuestError::NoStatus), 1);
    assert_eq!(r.metrics.count(GuestError::MalformedChain), 0);
    assert_eq!(r.metrics.count(GuestError::QueueNeedsReset), 1);
}

#[test]
fn avail_index_more_than_a_ring_ahead_stops_the_queue() {
    // Before, the polling loop saw work it could never pop and spun forever
    // with the queue's lock held.
    let mut r = rig(EngineKind::Auto);
    r.set_avail_idx(QSIZE + 1);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        r.worker.handle_kick(&r.vring);
        tx.send(r).unwrap();
    });
    let r = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the worker spins on an avail index it cannot pop");
    assert!(r.used().is_empty());
    assert_eq!(r.metrics.count(GuestError::QueueNeedsReset), 1);
}

#[test]
fn an_event_on_a_ring_being_stopped_neither_spins_nor_breaks_the_queue() {
    // GET_VRING_BASE makes the ring not ready before the worker is stopped;
    // a completion event handled in between sees requests it may not pop.
    let mut r = rig(EngineKind::Auto);
    r.request(0, VIRTIO_BLK_T_IN, 0, 512, true);
    r.vring.set_queue_ready(false);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        r.worker.handle_completions(&r.vring);
        tx.send(r).unwrap();
    });
    let mut r = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the worker spins on a ring that is not ready");
    assert!(r.used().is_empty());
    r.worker.stop();
    // The ring restarts: the request is served.
    r.vring.set_queue_ready(true);
    assert_eq!(r.kick_until(1), vec![(0, 513)]);
    assert_eq!(r.metrics.count(GuestError::QueueNeedsReset), 0);
}

#[test]
fn null_engine_completes_without_touching_memory() {
    let mut r = rig(EngineKind::Null);
    assert_eq!(r.worker.engine().name(), "null");
    r.fill_data(0, &[0x5a; 512]);
    r.request(0, VIRTIO_BLK_T_IN, 0, 512, true);
    assert_eq!(r.kick_until(1), vec![(0, 513)]);
    assert_eq!(r.status(0), VIRTIO_BLK_S_OK);
    assert!(r.data(0, 512).iter().all(|&b| b == 0x5a));
}

#[test]
fn spec_5_2_6_get_id_writes_the_serial_into_the_guest() {
    let mut r = rig_with(Setup {
        serial: Some(encode_blk_id(b"disk-7")),
        ..Setup::new(EngineKind::Auto)
    });
    r.fill_data(0, &[0xee; 32]);
    r.request(0, VIRTIO_BLK_T_GET_ID, 0, 20, true);
    assert_eq!(r.kick_until(1), vec![(0, 21)]);
    assert_eq!(r.status(0), VIRTIO_BLK_S_OK);
    let got = r.data(0, 21);
    assert_eq!(&got[..6], b"disk-7");
    assert!(got[6..20].iter().all(|&b| b == 0));
    assert_eq!(got[20], 0xee, "written past the buffer");
    // Without --serial: UNSUPP, and the buffer is left alone.
    let mut r = rig(EngineKind::Auto);
    r.fill_data(0, &[0xee; 20]);
    r.request(0, VIRTIO_BLK_T_GET_ID, 0, 20, true);
    assert_eq!(r.kick_until(1), vec![(0, 1)]);
    assert_eq!(r.status(0), VIRTIO_BLK_S_UNSUPP);
    assert!(r.data(0, 20).iter().all(|&b| b == 0xee));
}

/// Request `i` is a discard or write-zeroes of `num` sectors at `sector`.
fn dwz(r: &mut Rig, i: u64, type_: u32, sector: u64, num: u32, flags: u32) {
    r.fill_data(i, DiscardWriteZeroesSeg::new(sector, num, flags).as_bytes());
    r.request(i, type_, 0, 16, false);
}

#[test]
fn spec_5_2_6_discard_and_write_zeroes_zero_the_image_range() {
    for kind in [EngineKind::Auto, EngineKind::Sync] {
        let mut r = rig(kind);
        // Discard 8 sectors at 4 KiB; write-zeroes 1 sector at 64 KiB with
        // and 2 sectors at 128 KiB without UNMAP.
        dwz(&mut r, 0, VIRTIO_BLK_T_DISCARD, 8, 8, 0);
        dwz(&mut r, 1, VIRTIO_BLK_T_WRITE_ZEROES, 128, 1, 0);
        let unmap = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
        dwz(&mut r, 2, VIRTIO_BLK_T_WRITE_ZEROES, 256, 2, unmap);
        assert_eq!(r.kick_until(3).len(), 3, "{kind:?}");
        for i in 0..3 {
            assert_eq!(r.status(i), VIRTIO_BLK_S_OK, "{kind:?} request {i}");
        }
        let on_disk = r.on_disk();
        assert_eq!(on_disk.len(), IMAGE, "the image keeps its size");
        let zeroed = [(4096, 4096), (65536, 512), (131_072, 1024)];
        for (i, &b) in on_disk.iter().enumerate() {
            let zero = zeroed.iter().any(|&(o, l)| (o..o + l).contains(&i));
            let want = if zero { 0 } else { image_byte(i) };
            assert_eq!(b, want, "{kind:?}: byte {i}");
        }
    }
}

#[test]
fn throttled_at_max_in_flight_then_resumed_by_completions() {
    let mut r = rig(EngineKind::Auto);
    r.worker.max_in_flight = 2;
    for i in 0..4u16 {
        r.request(u64::from(i), VIRTIO_BLK_T_IN, u64::from(i) * 8, 4096, true);
    }
    r.start_without_reaping();
    assert_eq!(r.worker.in_flight(), 2);
    assert!(r.worker.throttled);
    let next_avail = r.vring.get_ref().get_queue().next_avail();
    assert_eq!(next_avail, 2, "popped past max_in_flight");
    // Completions let the rest in.
    assert_eq!(r.complete_until(4).len(), 4);
    assert!(!r.worker.throttled);
    for i in 0..4 {
        assert_eq!(r.status(i), VIRTIO_BLK_S_OK);
        let o = usize::try_from(i).unwrap() * 4096;
        let want: Vec<u8> = (o..o + 4096).map(image_byte).collect();
        assert_eq!(r.data(i, 4096), want, "request {i}");
    }
}

/// A transfer that comes back short is resubmitted for the rest, from the
/// right image offset into the right place of the right iovec. A short read
/// is made real by truncating the image under the worker, then growing it
/// back before the rest is read.
#[test]
fn short_transfer_is_resubmitted_for_the_rest() {
    for kind in [EngineKind::Auto, EngineKind::Sync] {
        let mut r = rig(kind);
        let image = r.image.clone().unwrap();
        let file = OpenOptions::new().write(true).open(&image).unwrap();
        file.set_len(1536).unwrap();
        // 1 KiB then 3 KiB: the short read ends inside the second buffer.
        r.header(0, VIRTIO_BLK_T_IN, 0);
        let second = data_addr(1);
        r.add_chain(&[
            (header_addr(0), 16, 0),
            (data_addr(0), 1024, W),
            (second, 3072, W),
            (status_addr(0), 1, W),
        ]);
        r.start_without_reaping();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !r.worker.engine.has_completions() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Grow the image back with new bytes where the read stopped.
        file.set_len(u64::try_from(IMAGE).unwrap()).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, &[0x77; 2560], 1536).unwrap();
        assert_eq!(r.complete_until(1), vec![(0, 4097)], "{kind:?}");
        assert_eq!(r.status(0), VIRTIO_BLK_S_OK, "{kind:?}");
        let want: Vec<u8> = (0..1024).map(image_byte).collect();
        assert_eq!(r.data(0, 1024), want, "{kind:?}");
        let mut got = vec![0u8; 3072];
        r.mem().read_slice(&mut got, GuestAddress(second)).unwrap();
        let want: Vec<u8> = (1024..1536).map(image_byte).collect();
        assert_eq!(got[..512], want[..], "{kind:?}");
        assert!(got[512..].iter().all(|&b| b == 0x77), "{kind:?}");
    }
}

#[test]
fn read_past_an_image_that_shrank_is_ioerr_not_a_hang() {
    let mut r = rig(EngineKind::Auto);
    let image = r.image.clone().unwrap();
    let file = OpenOptions::new().write(true).open(&image).unwrap();
    file.set_len(1536).unwrap();
    r.request(0, VIRTIO_BLK_T_IN, 0, 4096, true);
    assert_eq!(r.kick_until(1), vec![(0, 1)]);
    assert_eq!(r.status(0), VIRTIO_BLK_S_IOERR);
    assert_eq!(r.metrics.count(GuestError::IoError), 1);
}

#[test]
fn stop_completes_requests_in_flight_into_the_used_ring() {
    let mut r = rig(EngineKind::Auto);
    for i in 0..4u16 {
        r.request(u64::from(i), VIRTIO_BLK_T_IN, 16, 2048, true);
    }
    r.start_without_reaping();
    assert_eq!(r.worker.in_flight(), 4);
    assert!(r.used().is_empty());
    r.worker.stop();
    assert_eq!(r.worker.in_flight(), 0);
    assert_eq!(r.worker.engine().in_flight(), 0);
    let mut used = r.used();
    used.sort_unstable();
    assert_eq!(used, vec![(0, 2049), (3, 2049), (6, 2049), (9, 2049)]);
    let want: Vec<u8> = (8192..8192 + 2048).map(image_byte).collect();
    for i in 0..4 {
        assert_eq!(r.status(i), VIRTIO_BLK_S_OK);
        assert_eq!(r.data(i, 2048), want, "request {i}");
    }
}

#[test]
fn detach_waits_for_in_flight_io_and_delivers_nothing() {
    let mut r = rig(EngineKind::Auto);
    for i in 0..4u16 {
        r.request(u64::from(i), VIRTIO_BLK_T_IN, 0, 4096, true);
    }
    r.start_without_reaping();
    assert_eq!(r.worker.in_flight(), 4);
    r.worker.detach();
    assert_eq!(r.worker.engine().in_flight(), 0);
    assert_eq!(r.worker.in_flight(), 0);
    assert!(r.worker.mem.is_none());
    // The frontend is gone: nothing goes into its ring.
    assert!(r.used().is_empty());
}

#[test]
fn writethrough_mode_is_taken_per_write_as_dsync() {
    // The flag the device flips on a CONFIG_WCE write is read for each
    // write: RWF_DSYNC in write-through mode, a plain write in writeback.
    let mut r = rig(EngineKind::Auto);
    for (i, writethrough) in [(0u16, true), (1, false)] {
        r.writethrough.store(writethrough, Ordering::Relaxed);
        let i64 = u64::from(i);
        r.fill_data(i64, &[0x42 + u8::try_from(i).unwrap(); 512]);
        r.request(i64, VIRTIO_BLK_T_OUT, i64 + 1, 512, false);
        r.start_without_reaping();
        let ops: Vec<_> = r.worker.slots.iter().map(|s| s.op).collect();
        assert!(
            ops.contains(&SlotOp::Write {
                dsync: writethrough
            }),
            "{ops:?}"
        );
        assert_eq!(
            r.complete_until(usize::from(i) + 1).len(),
            usize::from(i) + 1
        );
        assert_eq!(r.status(i64), VIRTIO_BLK_S_OK);
    }
    let on_disk = r.on_disk();
    assert!(on_disk[512..1024].iter().all(|&b| b == 0x42));
    assert!(on_disk[1024..1536].iter().all(|&b| b == 0x43));
}
