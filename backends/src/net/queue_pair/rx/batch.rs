//! One receive batch: chains popped and held, frames read straight into
//! them or through the bounce buffer, completed, and the unused chains
//! returned (see `rx.rs`).

use std::io;
use std::sync::Arc;

use crate::vhost_user::dirty_log::mark_iovecs;
use crate::vhost_user::GuestMem;
use virtio_queue::{Queue, QueueOwnedT, QueueT};

use super::super::Negotiated;
use super::FrameSource;
use crate::net::chain::{self, ChainError, Direction, Seg};
use crate::net::merge::{num_buffers_le, spread, NUM_BUFFERS_OFFSET};
use crate::net::offload::MAX_FRAME_LEN;
use crate::net::shared::PairShared;
use crate::net::stats::{guest_warn, PairStats, RateLimit};
use crate::net::sys::IOV_MAX;

/// Most frames moved per event, so that transmit on the same thread gets its
/// turn (the tap stays readable and epoll comes back).
const RX_BUDGET: usize = 64;

/// How one round of the receive loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    /// A frame was delivered (or dropped): go on.
    Frame,
    /// The guest posted buffers since the ring was last seen empty: look
    /// again.
    Retry,
    /// The tap has nothing more.
    Drained,
    /// The guest has no buffers, or too little room for a held frame; a
    /// kick was asked for.
    Wait,
    /// Something failed; try again on the next event.
    Stop,
    /// The tap queue is detached: stop polling it.
    Detached,
}

/// How a receive batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchEnd {
    /// Used entries added (the guest needs an interrupt if > 0).
    pub used: usize,
    /// The guest lacks buffers: stop polling the tap until it kicks.
    pub pause: bool,
}

/// A receive chain collected for a frame.
#[derive(Debug, Clone)]
struct RxChain {
    /// Head descriptor index.
    head: u16,
    /// Writable bytes.
    cap: usize,
    /// Its segments in `Receiver::segs`.
    segs: std::ops::Range<usize>,
    /// Its iovecs in the batch's iovec list, if it got any (once the list is
    /// full, later chains get none until every held chain is used).
    iovs: Option<std::ops::Range<usize>>,
}

/// What a receive batch works with: the queue, guest memory, the iovecs of
/// the held chains, and what was done.
struct Batch<'a> {
    q: &'a mut Queue,
    mem: &'a GuestMem,
    iov: Vec<libc::iovec>,
    /// No more iovecs for the held chains (`IOV_MAX` reached).
    iov_full: bool,
    used: usize,
    popped: usize,
}

/// The receive side of a queue pair: held chains, the bounce buffer and a
/// frame waiting in it, reused from batch to batch.
#[derive(Debug)]
pub(crate) struct Receiver {
    index: usize,
    neg: Negotiated,
    shared: Arc<PairShared>,
    log: RateLimit,
    /// Segments of the chains popped in this batch.
    segs: Vec<Seg>,
    /// Chains popped in this batch; those from `first` on are held (not
    /// used yet) and go back to the ring when the batch ends.
    chains: Vec<RxChain>,
    first: usize,
    /// A frame read from the tap that did not fit the guest's buffers yet
    /// (`pending` bytes, header included); delivered before anything else is
    /// read.
    bounce: Vec<u8>,
    pending: Option<usize>,
}

impl Receiver {
    /// The receive side of pair `index`, counting into `shared`.
    pub(crate) fn new(index: usize, neg: Negotiated, shared: Arc<PairShared>) -> Self {
        Self {
            index,
            neg,
            shared,
            log: RateLimit::default(),
            segs: Vec::new(),
            chains: Vec::new(),
            first: 0,
            bounce: Vec::new(),
            pending: None,
        }
    }

    /// The guest acknowledged features.
    pub(crate) fn set_negotiated(&mut self, neg: Negotiated) {
        self.neg = neg;
    }

    /// Forgets a frame held for a frontend that went away.
    pub(crate) fn reset(&mut self) {
        self.pending = None;
        self.chains.clear();
        self.segs.clear();
        self.first = 0;
    }

    /// Whether a frame waits in the bounce buffer.
    #[cfg(test)]
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// One batch: frames from `source` into `q` until the source is empty,
    /// the guest runs out of room, or the budget is spent. Unused chains go
    /// back to the ring.
    pub(crate) fn run<S: FrameSource + ?Sized>(
        &mut self,
        q: &mut Queue,
        mem: &GuestMem,
        source: &S,
    ) -> BatchEnd {
        let mut b = Batch {
            q,
            mem,
            iov: Vec::with_capacity(64),
            iov_full: false,
            used: 0,
            popped: 0,
        };
        // The tap drives receiving: no kick per posted buffer while it is
        // polled (a no-op with EVENT_IDX, whose event index stays behind).
        let _ = b.q.disable_notification(b.mem);
        self.segs.clear();
        self.chains.clear();
        self.first = 0;
        let mut pause = false;
        // Chains popped when the last retry was decided: a retry that pops
        // nothing twice in a row means the ring cannot be read (a broken
        // available index), so wait for a kick instead of spinning.
        let mut retried_at = None;
        for _ in 0..RX_BUDGET {
            match self.receive_one(&mut b, source) {
                Round::Frame => {}
                Round::Retry => {
                    if retried_at == Some(b.popped) {
                        pause = true;
                        break;
                    }
                    retried_at = Some(b.popped);
                }
                Round::Drained | Round::Stop => break,
                Round::Detached => {
                    pause = true;
                    break;
                }
                Round::Wait => {
                    PairStats::inc(&self.shared.stats.rx_no_buffers);
                    pause = true;
                    break;
                }
            }
        }
        // Chains popped but not used go back (they are the last popped).
        for _ in self.first..self.chains.len() {
            b.q.go_to_previous_position();
        }
        BatchEnd {
            used: b.used,
            pause,
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

    /// Room in the held chains that have iovecs (a prefix of them).
    fn held_iov_cap(&self) -> usize {
        self.held()
            .iter()
            .take_while(|c| c.iovs.is_some())
            .map(|c| c.cap)
            .sum()
    }

    /// Asks for a kick when the guest posts more buffers: `Retry` if some
    /// came meanwhile, else `Wait`.
    fn ask_for_buffers(b: &mut Batch<'_>) -> Round {
        match b.q.enable_notification(b.mem) {
            Ok(true) => Round::Retry,
            _ => Round::Wait,
        }
    }

    /// Delivers one frame (a held one first).
    fn receive_one<S: FrameSource + ?Sized>(&mut self, b: &mut Batch<'_>, source: &S) -> Round {
        let hdr = self.neg.hdr_len;
        let need = self.pending.unwrap_or(hdr + self.neg.limits.rx);
        let max_chains = if self.neg.mrg {
            usize::from(b.q.size())
        } else {
            1
        };
        let cap = self.top_up(b, need, max_chains);
        if self.held().is_empty() {
            return Self::ask_for_buffers(b);
        }
        if let Some(len) = self.pending {
            return self.deliver_pending(b, len, cap);
        }
        if self.held_iov_cap() >= need {
            let start = self.held()[0].iovs.as_ref().map_or(0, |r| r.start);
            let end = self
                .held()
                .iter()
                .map_while(|c| c.iovs.as_ref())
                .last()
                .map_or(start, |r| r.end);
            // SAFETY: the iovecs point into the guest memory `b.mem` maps,
            // which stays mapped while the guard is held, and no Rust
            // reference to guest memory exists.
            let read = unsafe { source.read_frame_vectored(&b.iov[start..end]) };
            // The kernel wrote the frame, not vm-memory: log it for a
            // migration (a branch when none runs).
            if let Ok(n) = read {
                mark_iovecs(b.mem, &b.iov[start..end], n);
            }
            self.after_direct_read(b, read, self.held_iov_cap())
        } else {
            self.read_into_bounce(b, source, cap)
        }
    }

    /// Pops receive chains until the held ones have `need` bytes of room,
    /// `max_chains` are held or the ring is empty. Returns the room.
    fn top_up(&mut self, b: &mut Batch<'_>, need: usize, max_chains: usize) -> usize {
        if self.held().is_empty() {
            // Every chain popped so far is used: start the iovecs afresh.
            b.iov.clear();
            b.iov_full = false;
        }
        let mut cap = self.held_cap();
        let max_len = usize::try_from(u32::MAX).unwrap_or(usize::MAX);
        while cap < need && self.held().len() < max_chains {
            let Some(desc_chain) = b.q.pop_descriptor_chain(b.mem) else {
                break;
            };
            b.popped += 1;
            let head = desc_chain.head_index();
            let seg_start = self.segs.len();
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
                Ok(len)
            });
            match result {
                Ok(len) => {
                    let iovs = self.push_iovecs(b, seg_start);
                    self.chains.push(RxChain {
                        head,
                        cap: len,
                        segs: seg_start..self.segs.len(),
                        iovs,
                    });
                    cap += len;
                }
                Err(e) => {
                    self.segs.truncate(seg_start);
                    self.bad_chain(b, head, e);
                    cap = 0;
                }
            }
        }
        cap
    }

    /// The iovecs of the chain whose segments start at `seg_start`, unless
    /// the held chains already have all the iovecs one `readv` takes.
    fn push_iovecs(&self, b: &mut Batch<'_>, seg_start: usize) -> Option<std::ops::Range<usize>> {
        if b.iov_full {
            return None;
        }
        let iov_start = b.iov.len();
        let held_start = self
            .held()
            .first()
            .and_then(|c| c.iovs.as_ref())
            .map_or(iov_start, |r| r.start);
        let limit = held_start + IOV_MAX;
        match chain::push_iovecs(b.mem, &self.segs[seg_start..], &mut b.iov, limit) {
            Ok(()) => Some(iov_start..b.iov.len()),
            Err(_) => {
                // Too many pieces (or, in theory, a segment that left guest
                // memory since `collect` checked it): this and later chains
                // take frames through the bounce buffer.
                b.iov_full = true;
                None
            }
        }
    }

    /// A bad chain: the held chains are completed empty first (they hold no
    /// data yet, and could not go back to the ring past the bad one), then
    /// the bad one.
    fn bad_chain(&mut self, b: &mut Batch<'_>, head: u16, e: ChainError) {
        let stats = &self.shared.stats;
        PairStats::inc(&stats.bad_chains);
        guest_warn!(
            self.log,
            "queue pair {}: bad receive chain {head}: {e}",
            self.index
        );
        for c in &self.chains[self.first..] {
            PairStats::inc(&stats.rx_returned_empty);
            if b.q.add_used(b.mem, c.head, 0).is_ok() {
                b.used += 1;
            }
        }
        self.first = self.chains.len();
        if b.q.add_used(b.mem, head, 0).is_ok() {
            b.used += 1;
        }
        // No held chain refers to the iovecs any more.
        b.iov.clear();
        b.iov_full = false;
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
                self.dropped(n, cap);
                Round::Frame
            }
            Err(e) => self.read_error(e),
        }
    }

    fn dropped(&mut self, n: usize, room: usize) {
        PairStats::inc(&self.shared.stats.rx_dropped);
        guest_warn!(
            self.log,
            "queue pair {}: dropped a {n}-byte frame from the tap (room {room})",
            self.index
        );
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
            return Round::Detached;
        }
        Round::Stop
    }

    /// The held chains have less room than the largest frame (or too many
    /// pieces for one `readv`): read the frame into the bounce buffer, then
    /// copy it if it fits.
    fn read_into_bounce<S: FrameSource + ?Sized>(
        &mut self,
        b: &mut Batch<'_>,
        source: &S,
        cap: usize,
    ) -> Round {
        let len = MAX_FRAME_LEN + self.neg.hdr_len;
        if self.bounce.len() < len {
            self.bounce.resize(len, 0);
        }
        let buf = &mut self.bounce[..len];
        match source.read_frame(buf) {
            Ok(n) if n > len => {
                // Cut short: longer than any frame pvio takes.
                self.dropped(n, len);
                Round::Frame
            }
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
        let Some(frame) = self.bounce.get(..len) else {
            // Not reached: `read_into_bounce` bounds `len`.
            self.pending = None;
            return Round::Frame;
        };
        if cap >= len {
            let mut done = 0;
            for c in &self.chains[self.first..] {
                if done >= len {
                    break;
                }
                let segs = &self.segs[c.segs.clone()];
                match chain::copy_into(b.mem, segs, &frame[done..]) {
                    Ok(n) => done += n,
                    Err(_) => break,
                }
            }
            self.pending = None;
            if done < len {
                self.dropped(len, done);
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
        Self::ask_for_buffers(b)
    }
}
