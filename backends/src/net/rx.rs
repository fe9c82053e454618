//! Receive: frames from the tap into the guest's receive chains.
//!
//! The fast path reads a frame with one `readv` straight into guest memory:
//! enough chains are collected to hold the largest frame the tap can hand
//! over (several with mergeable buffers, one without), the frame lands in as
//! many as it needs, `num_buffers` is written into the first header, and the
//! chains it did not use go back to the ring. When the guest has posted less
//! room than the largest frame, the frame is read into a bounce buffer and
//! copied; if it does not fit yet it is held until the guest posts more.
//! When the guest has no buffers at all, the tap is left unread (see
//! `worker.rs`).

use std::io;

use vhost_user_backend::VringT;
use virtio_queue::{QueueOwnedT, QueueT};
use vm_memory::{GuestAddressSpace, GuestMemoryMmap};

use super::chain::{self, ChainError, Direction};
use super::merge::{num_buffers_le, spread, NUM_BUFFERS_OFFSET};
use super::stats::{guest_warn, PairStats};
use super::sys::IOV_MAX;
use super::worker::{QueuePair, RxChain};
use crate::vhost_user::Vring;

/// Most frames moved per event, so that transmit on the same thread gets its
/// turn (the tap stays readable and epoll comes back).
const RX_BUDGET: usize = 64;

/// How one round of the receive loop ended.
enum Round {
    /// A frame was delivered (or dropped): go on.
    Frame,
    /// The tap has nothing more.
    Drained,
    /// The guest has no buffers.
    NoBuffers,
    /// The guest has too little room for a held frame; a kick was asked for.
    TooLittleRoom,
    /// Something failed; try again on the next event.
    Stop,
}

impl QueuePair {
    /// Moves frames from the tap into the receive queue `rx` until the tap
    /// is empty, the guest runs out of buffers, or the budget is spent.
    pub(super) fn receive(&mut self, rx: &Vring) {
        if !Self::usable(rx) {
            self.rx_unusable();
            return;
        }
        let Some(gm) = self.mem.clone() else {
            self.pause_tap();
            return;
        };
        let mem = gm.memory();
        let mut used = 0usize;
        let mut state = rx.get_mut();
        // The tap drives receiving: no kick per posted buffer while it is
        // polled (a no-op with EVENT_IDX, whose event index stays behind).
        let _ = state.get_queue_mut().disable_notification(&*mem);
        for _ in 0..RX_BUDGET {
            let round = self.receive_one(state.get_queue_mut(), &mem, &mut used);
            match round {
                Round::Frame => continue,
                Round::Drained | Round::Stop => break,
                Round::TooLittleRoom => {
                    PairStats::inc(&self.shared.stats.rx_no_buffers);
                    self.pause_tap();
                    break;
                }
                Round::NoBuffers => {
                    PairStats::inc(&self.shared.stats.rx_no_buffers);
                    // Ask for a kick when buffers come; if some came
                    // meanwhile, go on instead of pausing.
                    match state.get_queue_mut().enable_notification(&*mem) {
                        Ok(true) => continue,
                        _ => {
                            self.pause_tap();
                            break;
                        }
                    }
                }
            }
        }
        if used > 0 {
            let notify = state
                .get_queue_mut()
                .needs_notification(&*mem)
                .unwrap_or(true);
            if notify {
                if let Err(e) = state.signal_used_queue() {
                    guest_warn!(
                        self.log,
                        "queue pair {}: cannot interrupt the guest: {e}",
                        self.index
                    );
                }
            }
        }
    }

    /// Delivers one frame (a held one first). `used` counts used-ring
    /// entries added.
    fn receive_one(
        &mut self,
        q: &mut virtio_queue::Queue,
        mem: &GuestMemoryMmap,
        used: &mut usize,
    ) -> Round {
        let hdr = self.neg.hdr_len;
        let need = self.pending.unwrap_or(hdr + self.neg.limits.rx);
        let max_chains = if self.neg.mrg {
            usize::from(q.size())
        } else {
            1
        };
        let (cap, iov) = self.collect_rx_chains(q, mem, need, max_chains, used);
        if self.chains.is_empty() {
            return Round::NoBuffers;
        }
        if let Some(len) = self.pending {
            return self.deliver_pending(q, mem, len, cap, used);
        }
        if cap >= need {
            // SAFETY: the iovecs point into the guest memory `mem` maps,
            // which stays mapped while the guard is held, and no Rust
            // reference to guest memory exists.
            let read = unsafe { self.tap_queue().read_vectored(&iov) };
            drop(iov);
            self.after_direct_read(q, mem, read, cap, used)
        } else {
            drop(iov);
            self.read_into_bounce(q, mem, cap, used)
        }
    }

    /// Pops receive chains until they hold `need` bytes, `max_chains` are
    /// taken, the ring is empty or the iovec limit is reached. Bad chains
    /// are completed empty and counted. Returns the room and the iovecs.
    fn collect_rx_chains(
        &mut self,
        q: &mut virtio_queue::Queue,
        mem: &GuestMemoryMmap,
        need: usize,
        max_chains: usize,
        used: &mut usize,
    ) -> (usize, Vec<libc::iovec>) {
        self.segs.clear();
        self.chains.clear();
        let mut iov = Vec::with_capacity(64);
        let mut cap = 0usize;
        let max_len = usize::try_from(u32::MAX).unwrap_or(usize::MAX);
        while cap < need && self.chains.len() < max_chains {
            let Some(desc_chain) = q.pop_descriptor_chain(mem) else {
                break;
            };
            let head = desc_chain.head_index();
            let start = self.segs.len();
            let result = chain::collect(
                desc_chain,
                Direction::Writable,
                mem,
                max_len,
                &mut self.segs,
            )
            .and_then(|len| {
                if len < self.neg.hdr_len {
                    // virtio 1.2 §5.1.6.3.1: every buffer holds a header.
                    return Err(ChainError::Empty);
                }
                chain::push_iovecs(mem, &self.segs[start..], &mut iov, IOV_MAX).map(|()| len)
            });
            match result {
                Ok(len) => {
                    self.chains.push(RxChain {
                        head,
                        cap: len,
                        segs: start..self.segs.len(),
                    });
                    cap += len;
                }
                Err(ChainError::TooManySegments(_)) if !self.chains.is_empty() => {
                    // The next frame starts with it.
                    self.segs.truncate(start);
                    q.go_to_previous_position();
                    break;
                }
                Err(e) => {
                    self.segs.truncate(start);
                    PairStats::inc(&self.shared.stats.bad_chains);
                    guest_warn!(
                        self.log,
                        "queue pair {}: bad receive chain {head}: {e}",
                        self.index
                    );
                    if q.add_used(mem, head, 0).is_ok() {
                        *used += 1;
                    }
                }
            }
        }
        (cap, iov)
    }

    /// Puts the last `n` collected chains back on the ring (they were
    /// popped in order, so they are the next to pop again).
    fn unpop(q: &mut virtio_queue::Queue, n: usize) {
        for _ in 0..n {
            q.go_to_previous_position();
        }
    }

    /// Completes the first chains for a frame of `len` bytes (header
    /// included) already in them, and returns the rest.
    fn complete_frame(
        &mut self,
        q: &mut virtio_queue::Queue,
        mem: &GuestMemoryMmap,
        len: usize,
        used: &mut usize,
    ) -> Round {
        let Some(s) = spread(len, self.chains.iter().map(|c| c.cap)) else {
            Self::unpop(q, self.chains.len());
            return Round::Stop;
        };
        if self.neg.hdr_len >= NUM_BUFFERS_OFFSET + 2 {
            let first = &self.segs[self.chains[0].segs.clone()];
            let nb = num_buffers_le(s.chains).unwrap_or([0xff, 0xff]);
            if let Err(e) = chain::write_at(mem, first, NUM_BUFFERS_OFFSET, &nb) {
                guest_warn!(
                    self.log,
                    "queue pair {}: cannot write num_buffers: {e}",
                    self.index
                );
            }
        }
        for (i, c) in self.chains.iter().take(s.chains).enumerate() {
            let n = u32::try_from(s.used_len(i, c.cap)).unwrap_or(u32::MAX);
            if q.add_used(mem, c.head, n).is_ok() {
                *used += 1;
            }
        }
        Self::unpop(q, self.chains.len() - s.chains);
        let stats = &self.shared.stats;
        PairStats::inc(&stats.rx_frames);
        PairStats::add(
            &stats.rx_bytes,
            u64::try_from(len - self.neg.hdr_len).unwrap_or(0),
        );
        Round::Frame
    }

    fn after_direct_read(
        &mut self,
        q: &mut virtio_queue::Queue,
        mem: &GuestMemoryMmap,
        read: io::Result<usize>,
        cap: usize,
        used: &mut usize,
    ) -> Round {
        match read {
            Ok(n) if n > self.neg.hdr_len && n <= cap => self.complete_frame(q, mem, n, used),
            Ok(n) => {
                // Cut short by the kernel (larger than the limit), or no frame.
                Self::unpop(q, self.chains.len());
                PairStats::inc(&self.shared.stats.rx_dropped);
                guest_warn!(
                    self.log,
                    "queue pair {}: dropped a {n}-byte frame from the tap (room {cap})",
                    self.index
                );
                Round::Frame
            }
            Err(e) => {
                Self::unpop(q, self.chains.len());
                self.read_error(e)
            }
        }
    }

    fn read_error(&mut self, e: io::Error) -> Round {
        if e.kind() == io::ErrorKind::WouldBlock {
            return Round::Drained;
        }
        if e.kind() == io::ErrorKind::Interrupted {
            return Round::Frame;
        }
        PairStats::inc(&self.shared.stats.tap_errors);
        guest_warn!(
            self.log,
            "queue pair {}: reading the tap failed: {e}",
            self.index
        );
        if e.raw_os_error() == Some(libc::EBADFD) {
            // Detached queue.
            self.pause_tap();
        }
        Round::Stop
    }

    /// The guest posted less room than the largest frame: read the frame
    /// into the bounce buffer, then copy it if it fits.
    fn read_into_bounce(
        &mut self,
        q: &mut virtio_queue::Queue,
        mem: &GuestMemoryMmap,
        cap: usize,
        used: &mut usize,
    ) -> Round {
        let read = {
            let tap = std::sync::Arc::clone(&self.tap);
            let index = self.index;
            let buf = self.bounce_buf();
            tap.queues()[index].read(buf)
        };
        match read {
            Ok(n) if n > self.neg.hdr_len => {
                self.pending = Some(n);
                self.deliver_pending(q, mem, n, cap, used)
            }
            Ok(_) => {
                Self::unpop(q, self.chains.len());
                Round::Frame
            }
            Err(e) => {
                Self::unpop(q, self.chains.len());
                self.read_error(e)
            }
        }
    }

    /// Copies the held frame of `len` bytes into the collected chains
    /// (`cap` bytes of room), or keeps holding it.
    fn deliver_pending(
        &mut self,
        q: &mut virtio_queue::Queue,
        mem: &GuestMemoryMmap,
        len: usize,
        cap: usize,
        used: &mut usize,
    ) -> Round {
        if cap >= len {
            let mut done = 0;
            for c in &self.chains {
                if done >= len {
                    break;
                }
                let segs = &self.segs[c.segs.clone()];
                match chain::copy_into(mem, segs, &self.bounce[done..len]) {
                    Ok(n) => done += n,
                    Err(_) => break,
                }
            }
            self.pending = None;
            if done < len {
                Self::unpop(q, self.chains.len());
                PairStats::inc(&self.shared.stats.rx_dropped);
                return Round::Frame;
            }
            return self.complete_frame(q, mem, len, used);
        }
        let whole_ring = self.chains.len() >= usize::from(q.size());
        if !self.neg.mrg || whole_ring {
            Self::unpop(q, self.chains.len());
            // It can never fit: one chain without mergeable buffers, or all
            // of the ring's buffers together.
            self.pending = None;
            PairStats::inc(&self.shared.stats.rx_dropped);
            guest_warn!(
                self.log,
                "queue pair {}: dropped a {len}-byte frame: the guest's receive buffers hold {cap} bytes",
                self.index
            );
            return Round::Frame;
        }
        // Every available chain is popped, so the event index now points
        // past the last one: the guest kicks when it posts the next. Then
        // the chains go back.
        let more = q.enable_notification(mem);
        Self::unpop(q, self.chains.len());
        match more {
            Ok(true) => Round::Frame,
            _ => Round::TooLittleRoom,
        }
    }
}
