//! Transmit: frames from the guest's transmit chains to the tap.
//!
//! Each chain (virtio-net header, then the frame) is checked and written
//! with one `writev` straight from guest memory: the tap takes the same
//! header, so nothing is copied. Chains are taken in batches; the guest is
//! interrupted once per batch, by `serve.rs`, after any answer the batch
//! brought is delivered too. A bad chain, header or length is counted,
//! completed empty, and logged at a limited rate.

use std::io;

use crate::vhost_user::GuestMem;
use pvio_frontend_protocol::net::{NetHdr, NET_HDR_LEN};
use pvio_frontend_protocol::zerocopy::FromBytes;
use vhost_user_backend::VringT;
use virtio_queue::{DescriptorChain, QueueT};
use vm_memory::GuestAddressSpace;

use super::QueuePair;
use crate::net::chain::{self, ChainError, Direction};
use crate::net::hdr::check_tx;
use crate::net::offload::MIN_FRAME_LEN;
use crate::net::stats::{guest_warn, PairStats};
use crate::net::sys::IOV_MAX;
use crate::vhost_user::Vring;

/// Most chains handled per event before the thread looks at its other
/// events (the pair's wake eventfd brings it back).
const TX_BUDGET: usize = 256;

/// How a transmit batch ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct TxEnd {
    /// Chains completed.
    pub done: usize,
    /// The guest asked to be interrupted for them (not done yet: see
    /// `serve.rs`).
    pub notify: bool,
    /// The budget ran out with chains left.
    pub more: bool,
}

impl QueuePair {
    /// Sends the frames the guest queued on `tx`, up to the budget, with
    /// the guest's kicks turned off (the caller turns them on again before
    /// the thread sleeps). The guest is not interrupted here: the caller
    /// does it once it has looked for frames to deliver too.
    pub(super) fn transmit(&mut self, tx: &Vring) -> TxEnd {
        let mut end = TxEnd::default();
        if !Self::usable(tx) {
            return end;
        }
        let Some(gm) = self.mem.clone() else {
            return end;
        };
        let mem = gm.memory();
        let mut iov = Vec::with_capacity(32);
        let mut state = tx.get_mut();
        let q = state.get_queue_mut();
        let _ = q.disable_notification(&*mem);
        while let Some(desc_chain) = q.pop_descriptor_chain(&*mem) {
            let head = desc_chain.head_index();
            self.send_chain(desc_chain, &mem, &mut iov);
            if let Err(e) = q.add_used(&*mem, head, 0) {
                guest_warn!(
                    self.log,
                    "queue pair {}: cannot complete transmit chain {head}: {e}",
                    self.index
                );
            }
            end.done += 1;
            if end.done >= TX_BUDGET {
                // Let the thread's other events in; come back at once.
                end.more = true;
                break;
            }
        }
        if end.done > 0 {
            end.notify = self.tx_held.after_used(q.needs_notification(&*mem));
        }
        end
    }

    /// Interrupts the guest for the transmit queue.
    pub(super) fn signal_tx(&mut self, tx: &Vring) {
        PairStats::inc(&self.shared.stats.tx_interrupts);
        if let Err(e) = tx.get_ref().signal_used_queue() {
            guest_warn!(
                self.log,
                "queue pair {}: cannot interrupt the guest: {e}",
                self.index
            );
        }
    }

    /// Turns the guest's transmit kicks on again before the thread sleeps;
    /// true if chains came meanwhile (serve them first).
    pub(super) fn tx_kicks_on(&mut self, tx: &Vring) -> bool {
        if !Self::usable(tx) {
            return false;
        }
        let Some(gm) = self.mem.clone() else {
            return false;
        };
        let mem = gm.memory();
        let mut state = tx.get_mut();
        matches!(state.get_queue_mut().enable_notification(&*mem), Ok(true))
    }

    /// Checks one transmit chain and writes its frame to the tap.
    fn send_chain<M>(
        &mut self,
        desc_chain: DescriptorChain<M>,
        mem: &GuestMem,
        iov: &mut Vec<libc::iovec>,
    ) where
        M: std::ops::Deref,
        M::Target: vm_memory::GuestMemory,
    {
        let hdr_len = self.neg.hdr_len;
        let stats = &self.shared.stats;
        self.segs.clear();
        iov.clear();
        let total = match chain::collect(
            desc_chain,
            Direction::Readable,
            mem,
            hdr_len + self.neg.limits.tx,
            &mut self.segs,
        ) {
            Ok(n) => n,
            Err(ChainError::TooLong(max)) => {
                PairStats::inc(&stats.bad_frame_len);
                guest_warn!(
                    self.log,
                    "queue pair {}: dropped a frame longer than {max} bytes",
                    self.index
                );
                return;
            }
            Err(e) => {
                PairStats::inc(&stats.bad_chains);
                guest_warn!(
                    self.log,
                    "queue pair {}: bad transmit chain: {e}",
                    self.index
                );
                return;
            }
        };
        if total < hdr_len {
            PairStats::inc(&stats.bad_chains);
            guest_warn!(
                self.log,
                "queue pair {}: a {hdr_len}-byte header is longer than the {total}-byte chain",
                self.index
            );
            return;
        }
        let frame_len = total - hdr_len;
        if frame_len < MIN_FRAME_LEN {
            PairStats::inc(&stats.bad_frame_len);
            guest_warn!(
                self.log,
                "queue pair {}: dropped a {frame_len}-byte frame (shorter than an Ethernet header)",
                self.index
            );
            return;
        }
        let mut raw = [0u8; NET_HDR_LEN];
        let hdr = chain::read_at(mem, &self.segs, 0, &mut raw[..hdr_len.min(NET_HDR_LEN)])
            .ok()
            .and_then(|()| NetHdr::read_from_bytes(&raw).ok());
        let Some(hdr) = hdr else {
            PairStats::inc(&stats.bad_chains);
            return;
        };
        if let Err(e) = check_tx(&hdr, self.neg.acked, frame_len) {
            PairStats::inc(&stats.bad_headers);
            guest_warn!(
                self.log,
                "queue pair {}: dropped a frame with a bad header: {e}",
                self.index
            );
            return;
        }
        let written = match chain::push_iovecs(mem, &self.segs, iov, IOV_MAX) {
            // SAFETY: the iovecs point into guest memory mapped by `mem`,
            // alive for the call; writev only reads them.
            Ok(()) => unsafe { self.tap_queue().write_vectored(iov) },
            Err(ChainError::TooManySegments(_)) => self.write_gathered(mem, total),
            Err(e) => {
                PairStats::inc(&stats.bad_chains);
                guest_warn!(
                    self.log,
                    "queue pair {}: bad transmit chain: {e}",
                    self.index
                );
                return;
            }
        };
        self.after_write(written, frame_len);
    }

    /// A chain of more than `IOV_MAX` pieces: gathered into the bounce
    /// buffer, then written.
    fn write_gathered(&mut self, mem: &GuestMem, total: usize) -> io::Result<usize> {
        let segs = std::mem::take(&mut self.segs);
        let buf = self.bounce_buf();
        let len = total.min(buf.len());
        let result = chain::copy_from(mem, &segs, &mut buf[..len])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e));
        self.segs = segs;
        result?;
        self.tap_queue().write(&self.bounce[..len])
    }

    fn after_write(&mut self, written: io::Result<usize>, frame_len: usize) {
        let stats = &self.shared.stats;
        match written {
            Ok(_) => {
                PairStats::inc(&stats.tx_frames);
                PairStats::add(&stats.tx_bytes, u64::try_from(frame_len).unwrap_or(0));
            }
            Err(e) => {
                // EIO: the tap is down; EINVAL: the kernel refused the
                // header; EAGAIN: no room. The frame is lost, as on a wire.
                let refused = matches!(
                    e.raw_os_error(),
                    Some(libc::EINVAL | libc::EIO | libc::EAGAIN)
                );
                PairStats::inc(if refused {
                    &stats.tx_dropped
                } else {
                    &stats.tap_errors
                });
                guest_warn!(
                    self.log,
                    "queue pair {}: the tap refused a {frame_len}-byte frame: {e}",
                    self.index
                );
            }
        }
    }
}
