//! What one queue pair shares with the rest of the device: whether its tap
//! queue is attached and in use, its wake eventfd, and its counters. The
//! pair's thread, the control queue (`ctrl.rs`) and the device
//! (`device.rs`) each hold it.
//!
//! It must not know the queue pair's worker (`queue_pair/`), the control
//! queue or the device: they all sit above it.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::stats::PairStats;
use super::tap::Tap;

/// What a queue pair shares with the control path: whether its tap queue is
/// attached, its wake eventfd, and its counters.
#[derive(Debug)]
pub struct PairShared {
    /// Whether the tap queue is attached (frames are steered to it).
    pub attached: AtomicBool,
    /// Whether the guest uses the pair (the control queue's
    /// `VQ_PAIRS_SET`; all pairs until it says otherwise).
    pub in_use: AtomicBool,
    /// Wakes the pair's thread (registered in its epoll loop).
    pub wake: EventFd,
    /// The pair's counters.
    pub stats: PairStats,
}

impl PairShared {
    /// A pair whose tap queue is attached.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            attached: AtomicBool::new(true),
            in_use: AtomicBool::new(true),
            wake: EventFd::new(EFD_NONBLOCK)?,
            stats: PairStats::default(),
        })
    }

    /// Wakes the pair's thread; a full counter is already a wake-up.
    pub fn wake(&self) {
        let _ = self.wake.write(1);
    }

    /// Attaches or detaches tap queue `i` (of a multi-queue tap) if it is
    /// not already so. The flag is cleared before a detach (the worker sees
    /// it when its file reports the error) and set after an attach, then the
    /// worker is woken to poll again.
    pub fn set_attached(&self, tap: &Tap, i: usize, attach: bool) {
        if tap.queues().len() < 2 || self.attached.load(Ordering::Acquire) == attach {
            return;
        }
        if !attach {
            self.attached.store(false, Ordering::Release);
        }
        match tap.set_queue_attached(i, attach) {
            Ok(()) => {
                if attach {
                    self.attached.store(true, Ordering::Release);
                    self.wake();
                }
            }
            Err(e) => {
                tracing::warn!(
                    "cannot {} tap queue {i}: {e}",
                    if attach { "attach" } else { "detach" }
                );
                if !attach {
                    self.attached.store(true, Ordering::Release);
                }
            }
        }
    }
}
