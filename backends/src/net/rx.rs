//! Receive: frames from the tap into the guest's receive chains.
//!
//! The fast path reads a frame with one `readv` straight into guest memory:
//! enough chains are held to take the largest frame the tap can hand over
//! (several with mergeable buffers, one without), the frame lands in as many
//! as it needs, `num_buffers` is written into the first header, and the
//! chains it did not use stay held for the next frame. Chains still held
//! when the batch ends go back to the ring, so each is popped once per batch
//! however large the largest frame. When the guest has posted less room
//! than the largest frame, the frame is read into a bounce buffer and
//! copied; if it does not fit yet it is held until the guest posts more.
//! When the guest has no buffers at all, the tap is left unread (see
//! `worker.rs`).

use std::io;

use vhost_user_backend::VringT;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
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

/// What a receive batch works with: the queue, guest memory, the iovecs of
/// the held chains, and the used entries added.
struct Batch<'a> {
    q: &'a mut Queue,
    mem: &'a GuestMemoryMmap,
    iov: Vec<libc::iovec>,
    used: usize,
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
        let mut state = rx.get_mut();
        let mut b = Batch {
            q: state.get_queue_mut(),
            mem: &mem,
            iov: Vec::with_capacity(64),
            used: 0,
        };
        // The tap drives receiving: no kick per posted buffer while it is
        // polled (a no-op with EVENT_IDX, whose event index stays behind).
        let _ = b.q.disable_notification(b.mem);
        self.segs.clear();
        self.chains.clear();
        self.first = 0;
        for _ in 0..RX_BUDGET {
            match self.receive_one(&mut b) {
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
                    match b.q.enable_notification(b.mem) {
                        Ok(true) => continue,
                        _ => {
                            self.pause_tap();
                            break;
                        }
                    }
                }
            }
        }
        // Chains popped but not used go back (they are the last popped).
        for _ in self.first..self.chains.len() {
            b.q.go_to_previous_position();
        }
        let used = b.used;
        drop(b);
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

    /// Held chains not used yet.
    fn held(&self) -> &[RxChain] {
        &self.chains[self.first..]
    }

    /// Room in the held chains.
    fn held_cap(&self) -> usize {
        self.held().iter().map(|c| c.cap).sum()
    }

    /// Delivers one frame (a held one first).
    fn receive_one(&mut self, b: &mut Batch<'_>) -> Round {
        let hdr = self.neg.hdr_len;
        let need = self.pending.unwrap_or(hdr + self.neg.limits.rx);
        let max_chains = if self.neg.mrg {
            usize::from(b.q.size())
        } else {
            1
        };
        let cap = self.top_up(b, need, max_chains);
        if self.held().is_empty() {
            return Round::NoBuffers;
        }
        if let Some(len) = self.pending {
            return self.deliver_pending(b, len, cap);
        }
        if cap >= need {
            let start = self.held()[0].iovs.start;
            // SAFETY: the iovecs point into the guest memory `b.mem` maps,
            // which stays mapped while the guard is held, and no Rust
            // reference to guest memory exists.
            let read = unsafe { self.tap_queue().read_vectored(&b.iov[start..]) };
            self.after_direct_read(b, read, cap)
        } else {
            self.read_into_bounce(b, cap)
        }
    }

    /// Pops receive chains until the held ones have `need` bytes of room,
    /// `max_chains` are held, the ring is empty or the iovec limit is
    /// reached. Bad chains are completed empty and counted. Returns the room.
    fn top_up(&mut self, b: &mut Batch<'_>, need: usize, max_chains: usize) -> usize {
        let mut cap = self.held_cap();
        let max_len = usize::try_from(u32::MAX).unwrap_or(usize::MAX);
        while cap < need && self.held().len() < max_chains {
            let Some(desc_chain) = b.q.pop_descriptor_chain(b.mem) else {
                break;
            };
            let head = desc_chain.head_index();
            let seg_start = self.segs.len();
            let iov_start = b.iov.len();
            let iov_room = match self.held().first() {
                Some(c) => IOV_MAX.saturating_sub(iov_start - c.iovs.start),
                None => IOV_MAX,
            };
            let result = chain::collect(
                desc_chain,
                Direction::Writable,
                b.mem,
                max_len,
                &mut self.segs,
            )
            .and_then(|len| {
                if len < self.neg.hdr_len {
                    // virtio 1.2 §5.1.6.3.1: every buffer holds a header.
                    return Err(ChainError::Empty);
                }
                chain::push_iovecs(
                    b.mem,
                    &self.segs[seg_start..],
                    &mut b.iov,
                    iov_start + iov_room,
                )
                .map(|()| len)
            });
            match result {
                Ok(len) => {
                    self.chains.push(RxChain {
                        head,
                        cap: len,
                        segs: seg_start..self.segs.len(),
                        iovs: iov_start..b.iov.len(),
                    });
                    cap += len;
                }
                Err(ChainError::TooManySegments(_)) if !self.held().is_empty() => {
                    // A later frame starts with it.
                    self.segs.truncate(seg_start);
                    b.q.go_to_previous_position();
                    break;
                }
                Err(e) => {
                    self.segs.truncate(seg_start);
                    PairStats::inc(&self.shared.stats.bad_chains);
                    guest_warn!(
                        self.log,
                        "queue pair {}: bad receive chain {head}: {e}",
                        self.index
                    );
                    if b.q.add_used(b.mem, head, 0).is_ok() {
                        b.used += 1;
                    }
                }
            }
        }
        cap
    }

    /// Completes the first held chains for a frame of `len` bytes (header
    /// included) already in them; the rest stay held.
    fn complete_frame(&mut self, b: &mut Batch<'_>, len: usize) -> Round {
        let Some(s) = spread(len, self.held().iter().map(|c| c.cap)) else {
            return Round::Stop;
        };
        if self.neg.hdr_len >= NUM_BUFFERS_OFFSET + 2 {
            let first = &self.segs[self.held()[0].segs.clone()];
            let nb = num_buffers_le(s.chains).unwrap_or([0xff, 0xff]);
            if let Err(e) = chain::write_at(b.mem, first, NUM_BUFFERS_OFFSET, &nb) {
                guest_warn!(
                    self.log,
                    "queue pair {}: cannot write num_buffers: {e}",
                    self.index
                );
            }
        }
        for (i, c) in self.chains[self.first..].iter().take(s.chains).enumerate() {
            let n = u32::try_from(s.used_len(i, c.cap)).unwrap_or(u32::MAX);
            if b.q.add_used(b.mem, c.head, n).is_ok() {
                b.used += 1;
            }
        }
        self.first += s.chains;
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
        b: &mut Batch<'_>,
        read: io::Result<usize>,
        cap: usize,
    ) -> Round {
        match read {
            Ok(n) if n > self.neg.hdr_len && n <= cap => self.complete_frame(b, n),
            Ok(n) => {
                // Cut short by the kernel (larger than the limit), or no
                // frame; the held chains are used again.
                PairStats::inc(&self.shared.stats.rx_dropped);
                guest_warn!(
                    self.log,
                    "queue pair {}: dropped a {n}-byte frame from the tap (room {cap})",
                    self.index
                );
                Round::Frame
            }
            Err(e) => self.read_error(e),
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
    fn read_into_bounce(&mut self, b: &mut Batch<'_>, cap: usize) -> Round {
        let read = {
            let tap = std::sync::Arc::clone(&self.tap);
            let index = self.index;
            let buf = self.bounce_buf();
            tap.queues()[index].read(buf)
        };
        match read {
            Ok(n) if n > self.neg.hdr_len => {
                self.pending = Some(n);
                self.deliver_pending(b, n, cap)
            }
            Ok(_) => Round::Frame,
            Err(e) => self.read_error(e),
        }
    }

    /// Copies the held frame of `len` bytes into the held chains (`cap`
    /// bytes of room), or keeps holding it.
    fn deliver_pending(&mut self, b: &mut Batch<'_>, len: usize, cap: usize) -> Round {
        if cap >= len {
            let mut done = 0;
            for c in &self.chains[self.first..] {
                if done >= len {
                    break;
                }
                let segs = &self.segs[c.segs.clone()];
                match chain::copy_into(b.mem, segs, &self.bounce[done..len]) {
                    Ok(n) => done += n,
                    Err(_) => break,
                }
            }
            self.pending = None;
            if done < len {
                PairStats::inc(&self.shared.stats.rx_dropped);
                return Round::Frame;
            }
            return self.complete_frame(b, len);
        }
        let whole_ring = self.held().len() >= usize::from(b.q.size());
        if !self.neg.mrg || whole_ring {
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
        // Every available chain is held, so the event index now points past
        // the last one: the guest kicks when it posts the next (the held
        // chains go back when the batch ends).
        match b.q.enable_notification(b.mem) {
            Ok(true) => Round::Frame,
            _ => Round::TooLittleRoom,
        }
    }
}
