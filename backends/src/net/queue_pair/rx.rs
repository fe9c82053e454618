//! Receive: frames from the tap into the guest's receive chains.
//!
//! The fast path reads a frame with one `readv` straight into guest memory:
//! enough chains are held to take the largest frame the tap can hand over
//! (several with mergeable buffers, one without), the frame lands in as many
//! as it needs, `num_buffers` is written into the first header, and the
//! chains it did not use stay held for the next frame. Chains still held
//! when the batch ends go back to the ring, so each is popped once per batch
//! however large the largest frame.
//!
//! When the held chains have less room than the largest frame, or need more
//! iovecs than one `readv` takes, the frame is read into a bounce buffer and
//! copied (segment by segment: no iovec limit); if it does not fit yet it is
//! held until the guest posts more. When the guest has no buffers at all,
//! the tap is left unread (see the queue pair's `mod.rs`).
//!
//! Guest input is untrusted. A bad chain is completed empty on the spot, so
//! the held chains, which can only go back to the ring as the last ones
//! popped, are completed empty before it (they hold no data yet): a guest
//! that mixes bad chains into its receive ring loses the good buffers posted
//! just before each one (counted in `rx_returned_empty`), and no chain is
//! ever completed twice.
//!
//! Here: where frames come from and one batch's interrupt; `rx/batch.rs`:
//! the batch itself (held chains, reads, completions).

use std::io;
use std::sync::Arc;

use vhost_user_backend::VringT;
use virtio_queue::QueueT;
use vm_memory::GuestAddressSpace;

use super::QueuePair;
use crate::net::stats::{guest_warn, PairStats};
use crate::net::tap::TapQueue;
use crate::vhost_user::Vring;

mod batch;
#[cfg(test)]
mod tests;

#[cfg(test)]
use batch::BatchEnd;
pub(super) use batch::Receiver;

/// Where received frames come from: a tap queue (a stand-in in tests).
pub(super) trait FrameSource {
    /// Reads one frame into `iov`. Returns the frame's length, which (as
    /// tun does) may be more than `iov` holds when the frame was cut short.
    ///
    /// # Safety
    ///
    /// Every iovec must be mapped, writable memory not behind a live Rust
    /// reference, for the duration of the call.
    unsafe fn read_frame_vectored(&self, iov: &[libc::iovec]) -> io::Result<usize>;

    /// Reads one frame into `buf`; the length as for
    /// [`read_frame_vectored`](Self::read_frame_vectored).
    fn read_frame(&self, buf: &mut [u8]) -> io::Result<usize>;
}

impl FrameSource for TapQueue {
    unsafe fn read_frame_vectored(&self, iov: &[libc::iovec]) -> io::Result<usize> {
        // SAFETY: the contract is the caller's, the same as `read_vectored`'s.
        unsafe { self.read_vectored(iov) }
    }

    fn read_frame(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.read(buf)
    }
}

impl QueuePair {
    /// Moves frames from the tap into the receive queue `rx` until the tap
    /// is empty, the guest runs out of buffers, or the budget is spent.
    /// Returns the used entries added.
    pub(super) fn receive(&mut self, rx: &Vring) -> usize {
        if !Self::usable(rx) {
            self.rx_unusable();
            return 0;
        }
        let Some(gm) = self.mem.clone() else {
            self.pause_tap();
            return 0;
        };
        let mem = gm.memory();
        let tap = Arc::clone(&self.tap);
        let Some(source) = tap.queues().get(self.index) else {
            return 0;
        };
        let mut state = rx.get_mut();
        let end = self.rx.run(state.get_queue_mut(), &mem, source);
        if end.pause {
            self.pause_tap();
        }
        if end.used > 0 {
            let needs = state.get_queue_mut().needs_notification(&*mem);
            if self.rx_held.after_used(needs) {
                PairStats::inc(&self.shared.stats.rx_interrupts);
                if let Err(e) = state.signal_used_queue() {
                    guest_warn!(
                        self.log,
                        "queue pair {}: cannot interrupt the guest: {e}",
                        self.index
                    );
                }
            }
        }
        end.used
    }
}
