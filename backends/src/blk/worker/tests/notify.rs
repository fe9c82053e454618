//! When the worker interrupts the driver. With `VIRTIO_F_EVENT_IDX`
//! (virtio 1.2 §2.7.10): one the driver asked for is sent once; one it did
//! not ask for is held back, and sent when the queue goes idle (see
//! `vhost_user/notify.rs` for why). Without it: once per batch, and once
//! per early submit of large requests.

use std::fs::File;
use std::os::fd::{FromRawFd, IntoRawFd};

use vhost_user_backend::VringT;
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::rig::*;
use crate::blk::engine::EngineKind;
use pvio_frontend_protocol::blk::VIRTIO_BLK_T_IN;

/// Gives the ring a call eventfd and turns EVENT_IDX on; returns the
/// eventfd to count interrupts on.
fn with_call(r: &Rig) -> EventFd {
    let efd = EventFd::new(EFD_NONBLOCK).unwrap();
    let dup = efd.try_clone().unwrap();
    // SAFETY: `into_raw_fd` hands over a valid, open eventfd that nothing
    // else owns any more.
    let file = unsafe { File::from_raw_fd(dup.into_raw_fd()) };
    r.vring.set_call(Some(file));
    r.vring.set_queue_event_idx(true);
    efd
}

/// Interrupts since the last call (the eventfd's counter, reset by reading).
fn interrupts(efd: &EventFd) -> u64 {
    efd.read().unwrap_or(0)
}

/// The driver's `used_event`: after the avail ring's entries.
fn set_used_event(r: &Rig, v: u16) {
    let at = AVAIL + 4 + 2 * u64::from(QSIZE);
    r.mem().write_obj(v, GuestAddress(at)).unwrap();
}

fn read_one(r: &mut Rig, i: u64, want: usize) {
    r.request(i, VIRTIO_BLK_T_IN, 0, 512, true);
    assert_eq!(r.kick_until(want).len(), want);
}

#[test]
fn spec_2_7_10_an_interrupt_asked_for_is_sent_once() {
    let mut r = rig(EngineKind::Auto);
    let efd = with_call(&r);
    set_used_event(&r, 0);
    read_one(&mut r, 0, 1);
    assert_eq!(interrupts(&efd), 1);
    // The driver asks for the next one too: one interrupt, not two.
    set_used_event(&r, 1);
    read_one(&mut r, 1, 2);
    assert_eq!(interrupts(&efd), 1);
}

#[test]
fn spec_2_7_10_an_interrupt_held_back_is_sent_when_the_queue_goes_idle() {
    let mut r = rig(EngineKind::Auto);
    let efd = with_call(&r);
    set_used_event(&r, 0);
    read_one(&mut r, 0, 1);
    assert_eq!(interrupts(&efd), 1);
    // The driver's used_event is far ahead (it has not asked, or its write
    // has not reached this CPU yet): the completion alone would not
    // interrupt it, but the queue goes idle right after, and does.
    set_used_event(&r, 100);
    read_one(&mut r, 1, 2);
    assert_eq!(interrupts(&efd), 1, "the held-back interrupt at idle");
}

/// A call eventfd without EVENT_IDX: every signal is an interrupt.
fn with_call_no_event_idx(r: &Rig) -> EventFd {
    let efd = with_call(r);
    r.vring.set_queue_event_idx(false);
    efd
}

fn four_reads_of_8k(r: &mut Rig) {
    for i in 0..4 {
        r.request(i, VIRTIO_BLK_T_IN, 16 * i, 8192, true);
    }
    assert_eq!(r.kick_until(4).len(), 4);
}

#[test]
fn a_batch_of_small_requests_is_one_interrupt() {
    let mut r = rig(EngineKind::Sync);
    let efd = with_call_no_event_idx(&r);
    four_reads_of_8k(&mut r);
    assert_eq!(interrupts(&efd), 1);
}

#[test]
fn large_requests_are_handed_back_before_the_rest_of_the_batch_is_popped() {
    let mut r = rig(EngineKind::Sync);
    let efd = with_call_no_event_idx(&r);
    // Every 8 KiB read reaches the early-submit threshold: each is in the
    // used ring, and the driver interrupted, before the next is popped.
    r.worker.early_submit.0 = 8192;
    four_reads_of_8k(&mut r);
    assert_eq!(interrupts(&efd), 4);
    for i in 0..4 {
        assert_eq!(r.status(i), 0);
    }
}

#[test]
fn many_requests_are_handed_back_every_few_before_the_rest_are_popped() {
    let mut r = rig(EngineKind::Sync);
    let efd = with_call_no_event_idx(&r);
    r.worker.early_submit.1 = 2;
    four_reads_of_8k(&mut r);
    assert_eq!(interrupts(&efd), 2);
}

/// The driver's `avail_event` (EVENT_IDX): after the used ring's entries.
fn avail_event(r: &Rig) -> u16 {
    r.mem()
        .read_obj(GuestAddress(USED + 4 + 8 * u64::from(QSIZE)))
        .unwrap()
}

fn null_engine(r: &mut Rig) -> &mut crate::blk::engine::NullEngine {
    match &mut r.worker.engine {
        crate::blk::engine::Engine::Null(e) => e,
        _ => panic!("the rig runs the null engine"),
    }
}

#[test]
fn a_lone_operation_on_the_device_sleeps_with_notifications_still_off() {
    let mut r = rig(EngineKind::Null);
    let efd = with_call(&r);
    null_engine(&mut r).hold();
    r.request(0, VIRTIO_BLK_T_IN, 0, 512, true);
    r.worker.handle_kick(&r.vring);
    assert!(r.used().is_empty(), "the read is still on the device");
    // With EVENT_IDX, turning notifications on writes `avail_event`: the
    // driver's next request would kick. Its completion wakes the queue
    // instead, and the loop reads the avail ring then.
    assert_eq!(avail_event(&r), 0, "notifications stay off");
    assert_eq!(interrupts(&efd), 0);
    null_engine(&mut r).release();
    assert_eq!(r.complete_until(1).len(), 1);
    assert_eq!(avail_event(&r), 1, "on again once the queue is idle");
    assert_eq!(interrupts(&efd), 1);
}
