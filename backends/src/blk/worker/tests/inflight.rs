//! Inflight tracking in a queue worker: a backend that dies with requests
//! popped and not finished, and the next one on the same region.

use pvio_frontend_protocol::blk::{VIRTIO_BLK_S_OK, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT};
use vhost_user_backend::VringT;

use super::rig::*;
use crate::blk::engine::EngineKind;

#[test]
fn spec_inflight_io_tracking_a_restarted_backend_does_the_lost_requests_first_in_pop_order() {
    let mut r = rig(EngineKind::Sync).with_inflight();
    // One request finished normally: the used ring's index is 1.
    r.fill_data(3, &[0x33; 512]);
    let h3 = r.request(3, VIRTIO_BLK_T_OUT, 0, 512, false);
    assert_eq!(r.kick_until(1), vec![(u32::from(h3), 1)]);
    // Three popped and never finished: the backend dies.
    r.fill_data(0, &[0xa0; 512]);
    let h0 = r.request(0, VIRTIO_BLK_T_OUT, 8, 512, false);
    let h1 = r.request(1, VIRTIO_BLK_T_IN, 0, 512, true);
    r.fill_data(2, &[0xa2; 1024]);
    let h2 = r.request(2, VIRTIO_BLK_T_OUT, 16, 1024, false);
    r.start_without_reaping();
    assert_eq!(r.used().len(), 1);
    r.restart();
    // The driver adds one more while the backend is away.
    r.fill_data(4, &[0xa4; 512]);
    let h4 = r.request(4, VIRTIO_BLK_T_OUT, 24, 512, false);

    let used = r.kick_until(5);
    let heads: Vec<u32> = used.iter().map(|&(h, _)| h).collect();
    let want: Vec<u32> = [h3, h0, h1, h2, h4].into_iter().map(u32::from).collect();
    assert_eq!(heads, want, "resubmitted in pop order, then the new one");
    assert_eq!(used[2].1, 513, "the read returns its data and status");
    for i in 0..5 {
        assert_eq!(r.status(i), VIRTIO_BLK_S_OK, "request {i}");
    }
    assert_eq!(r.data(1, 512), vec![0x33; 512]);
    let disk = r.on_disk();
    assert!(disk[4096..4608].iter().all(|&b| b == 0xa0));
    assert!(disk[8192..9216].iter().all(|&b| b == 0xa2));
    assert!(disk[12288..12800].iter().all(|&b| b == 0xa4));

    // A second restart finds nothing left in flight: nothing runs twice.
    r.restart();
    assert_eq!(r.kick_until(5).len(), 5);
    assert_eq!(r.used().len(), 5);
}

/// Finishes only the request with head `head` of those the worker has in
/// flight (the engine is done with all of them); the rest stay unfinished.
fn finish_only(r: &mut Rig, head: u16) {
    let mut done = Vec::new();
    r.worker.engine.wait_all(&mut done).unwrap();
    let mem = r.mem();
    let vring = r.vring.clone();
    let mut state = vring.get_mut();
    for c in done {
        let idx = usize::try_from(c.tag).unwrap();
        if r.worker.slots[idx].head == head {
            assert!(r.worker.complete(&mut state, &mem, c));
        }
    }
}

#[test]
fn spec_inflight_io_tracking_out_of_order_completion_is_neither_repeated_nor_lost() {
    let mut r = rig(EngineKind::Sync).with_inflight();
    // Start the ring on the region (a fresh part), with nothing to do.
    assert!(r.kick_until(0).is_empty());
    let mut heads = Vec::new();
    for i in 0..3u64 {
        r.fill_data(i, &[0xb0 + u8::try_from(i).unwrap(); 512]);
        heads.push(r.request(i, VIRTIO_BLK_T_OUT, 8 * i, 512, false));
    }
    r.start_without_reaping();
    // The middle one finishes; the backend dies with the others in flight.
    finish_only(&mut r, heads[1]);
    assert_eq!(r.used(), vec![(u32::from(heads[1]), 1)]);
    r.restart();
    // The frontend restarts the ring at the used index (1): read from the
    // avail ring, that would do the middle one again and lose the first.
    let used = r.kick_until(3);
    let got: Vec<u32> = used.iter().map(|&(h, _)| h).collect();
    let want: Vec<u32> = [heads[1], heads[0], heads[2]]
        .into_iter()
        .map(u32::from)
        .collect();
    assert_eq!(got, want);
    let disk = r.on_disk();
    for i in 0..3usize {
        let b = 0xb0 + u8::try_from(i).unwrap();
        assert!(
            disk[4096 * i..4096 * i + 512].iter().all(|&x| x == b),
            "{i}"
        );
    }
    // And a new request goes on from there.
    let h = r.request(3, VIRTIO_BLK_T_IN, 0, 512, true);
    assert_eq!(r.kick_until(4)[3], (u32::from(h), 513));
}
