//! The state of one request queue and the thread that serves it: pops
//! descriptor chains, parses them, hands reads and writes to the queue's own
//! engine in one batch, and puts finished requests in the used ring.
//!
//! Nothing here is shared with other queues except read-only disk facts, the
//! write-cache flag (an atomic) and the error counters (atomics touched only
//! on errors): the per-request path takes no lock common to all queues.
//!
//! It must not know about the vhost-user protocol beyond the vring it is
//! given, nor about how the engine does its I/O.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::vhost_user::GuestMem;
use vhost_user_backend::{VringState, VringT};
use virtio_queue::{QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestAddressSpace};

use pvio_frontend_protocol::blk::{VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK};

use super::config::DiskInfo;
use super::engine::{Completion, Engine, Op};
use super::metrics::{GuestError, Metrics};
use super::polling::pollers;
use super::request::{parse, Action, ChainError, Request};
use super::slot::{Slot, SlotOp};
use crate::vhost_user::inflight::{InflightCell, InflightQueue};
use crate::vhost_user::notify::HeldBack;
use crate::vhost_user::poll::Poller;
use crate::vhost_user::{Vring, GM};

/// Reads and writes worth this many bytes, or this many of them, are
/// submitted (and whatever the engine finished at once is handed back)
/// before more chains are popped, so that the driver starts on the first
/// completions while the rest of the batch is still being done. On ext4,
/// where io_uring completes page-cache hits inside the submit call, a
/// batch submitted whole made a one-queue driver wait for all of it; 8
/// requests measured better than 4 or a whole batch (docs/benchmarks.md).
const EARLY_SUBMIT_BYTES: u64 = 128 * 1024;
const EARLY_SUBMIT_REQUESTS: usize = 8;

/// Everything one queue needs, behind that queue's own lock.
pub struct QueueWorker {
    index: usize,
    engine: Engine,
    disk: Arc<DiskInfo>,
    metrics: Arc<Metrics>,
    writethrough: Arc<AtomicBool>,
    mem: Option<GM>,
    vring: Option<Vring>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    max_in_flight: usize,
    request: Request,
    completions: Vec<Completion>,
    /// A chain without a status byte was seen: serve nothing until reset.
    broken: bool,
    /// Stopped popping chains at `max_in_flight`; resume on completions.
    throttled: bool,
    /// Polls for the engine with one operation in flight.
    poller: Poller,
    /// Polls for the driver's next request with nothing in flight, and
    /// learns how long the driver takes to send it (`vhost_user::poll`).
    idle_poller: Poller,
    held_back: HeldBack,
    /// Bytes of reads and writes pushed to the engine since its last submit.
    unsubmitted: u64,
    /// Reads and writes pushed since the last submit.
    unsubmitted_requests: usize,
    /// `EARLY_SUBMIT_BYTES` and `EARLY_SUBMIT_REQUESTS` (smaller in tests).
    early_submit: (u64, usize),
    /// Where the connection's inflight region is (see `worker/inflight.rs`).
    inflight_cell: Arc<InflightCell>,
    /// This queue's part of it, once the ring started with one.
    inflight: Option<InflightQueue>,
    /// Heads a previous backend left in flight, to do before new chains.
    resubmit: VecDeque<u16>,
    /// The ring's start (inflight recovery) is done.
    started: bool,
}

impl std::fmt::Debug for QueueWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueWorker")
            .field("index", &self.index)
            .field("engine", &self.engine.name())
            .field("in_flight", &(self.slots.len() - self.free.len()))
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl QueueWorker {
    /// A worker for queue `index`.
    pub fn new(
        index: usize,
        engine: Engine,
        disk: Arc<DiskInfo>,
        metrics: Arc<Metrics>,
        writethrough: Arc<AtomicBool>,
        inflight_cell: Arc<InflightCell>,
    ) -> Self {
        let max_in_flight = usize::from(disk.queue_size).max(1);
        let (poller, idle_poller) = pollers();
        Self {
            index,
            engine,
            disk,
            metrics,
            writethrough,
            mem: None,
            vring: None,
            slots: Vec::new(),
            free: Vec::new(),
            max_in_flight,
            request: Request::new(),
            completions: Vec::new(),
            broken: false,
            throttled: false,
            poller,
            idle_poller,
            held_back: HeldBack::default(),
            unsubmitted: 0,
            unsubmitted_requests: 0,
            early_submit: (EARLY_SUBMIT_BYTES, EARLY_SUBMIT_REQUESTS),
            inflight_cell,
            inflight: None,
            resubmit: VecDeque::new(),
            started: false,
        }
    }

    /// The engine, for registering its eventfd.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The guest memory of the current connection.
    pub fn set_memory(&mut self, mem: GM) {
        self.mem = Some(mem);
    }

    fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// The driver kicked the queue.
    pub fn handle_kick(&mut self, vring: &Vring) {
        if self.vring.is_none() {
            self.vring = Some(vring.clone());
        }
        self.idle_poller.woken();
        self.run(vring);
    }

    /// The engine's eventfd fired.
    pub fn handle_completions(&mut self, vring: &Vring) {
        self.engine.clear_event();
        self.run(vring);
    }

    /// Serves the queue until it is empty (and stays empty for the polling
    /// window), then leaves notifications enabled and returns.
    fn run(&mut self, vring: &Vring) {
        let Some(mem) = self.mem.as_ref().map(|m| m.memory().into_inner()) else {
            return;
        };
        let mut guard = vring.get_mut();
        let state = &mut *guard;
        // A ring being stopped (GET_VRING_BASE) is no longer ready: what is
        // in flight is finished by `stop`, and nothing may be popped. A
        // completion event handled now must neither spin on the avail ring
        // nor mark the queue broken.
        if !state.get_queue().ready() {
            return;
        }
        if !self.started {
            self.started = true;
            self.start_ring(state, &mem);
        }
        let mut used = false;
        loop {
            if !self.broken {
                if let Err(e) = state.disable_notification() {
                    self.needs_reset(&format!("cannot update the ring: {e}"));
                }
            }
            if !self.broken && !self.throttled {
                self.pop_all(state, &mem, &mut used);
            }
            self.submit();
            used |= self.reap(state, &mem);
            if self.throttled && self.in_flight() < self.max_in_flight {
                self.throttled = false;
                continue;
            }
            if used {
                self.signal(state);
                used = false;
            }
            if self.broken || self.throttled {
                break;
            }
            // Poll a little before sleeping: the avail ring (a driver that
            // sees notifications disabled does not kick) and, with one
            // operation in flight, the engine's completions. With more in
            // flight the thread sleeps until the engine's eventfd fires:
            // spinning then would take a core from the kernel workers doing
            // the copies (on 2 cores, 128 KiB reads at QD8 lost up to a
            // quarter of their throughput to it).
            // With nothing in flight the driver's next request is all there
            // is to wait for, and the idle poller learns how long that takes.
            if self.engine.in_flight() <= 1 {
                let poller = if self.engine.in_flight() == 0 {
                    &mut self.idle_poller
                } else {
                    &mut self.poller
                };
                let queue = state.get_queue();
                let engine = &mut self.engine;
                let has_work = || {
                    engine.has_completions()
                        || queue
                            .avail_idx(&*mem, Ordering::Acquire)
                            .map(|idx| idx.0 != queue.next_avail())
                            .unwrap_or(false)
                };
                if poller.poll(has_work) {
                    continue;
                }
            }
            // With one operation on the device, sleep with the driver's
            // notifications still off: the engine's completion wakes this
            // thread and the loop reads the avail ring then. The driver of
            // a depth-1 workload then sends its next request without a
            // kick (with EVENT_IDX, turning notifications on would make its
            // next request kick, polled for or not); a deeper driver's
            // requests wait for that one completion at most.
            if self.engine.in_flight() == 1 {
                break;
            }
            match state.enable_notification() {
                Ok(true) => continue,
                Ok(false) => {
                    if self.engine.in_flight() == 0 && self.held_back.at_idle() {
                        self.interrupt(state);
                    }
                    break;
                }
                Err(e) => {
                    self.needs_reset(&format!("cannot update the ring: {e}"));
                    break;
                }
            }
        }
    }

    /// Submits what was pushed to the engine.
    fn submit(&mut self) {
        self.unsubmitted = 0;
        self.unsubmitted_requests = 0;
        if let Err(e) = self.engine.submit() {
            self.metrics.record(
                GuestError::IoError,
                self.index,
                &format_args!("io_uring submit: {e}"),
            );
        }
    }

    /// Interrupts the driver for the used entries just added, if it asked
    /// (`EVENT_IDX`); otherwise remembers that it did not (see
    /// `vhost_user::notify`).
    fn signal(&mut self, state: &mut VringState<GM>) {
        if self.held_back.after_used(state.needs_notification()) {
            self.interrupt(state);
        }
    }

    fn interrupt(&self, state: &mut VringState<GM>) {
        if let Err(e) = state.signal_used_queue() {
            tracing::debug!("queue {}: cannot signal the driver: {e}", self.index);
        }
    }

    /// Pops and starts every available chain (up to `max_in_flight`).
    fn pop_all(&mut self, state: &mut VringState<GM>, mem: &Arc<GuestMem>, used: &mut bool) {
        loop {
            if self.in_flight() >= self.max_in_flight {
                self.throttled = true;
                return;
            }
            if let Some(head) = self.resubmit.pop_front() {
                if !self.parse_resubmitted(state, mem, head) {
                    return;
                }
            } else if !self.pop_one(state, mem) {
                return;
            }
            *used |= self.dispatch(state, mem);
            if self.unsubmitted >= self.early_submit.0
                || self.unsubmitted_requests >= self.early_submit.1
            {
                self.submit();
                *used |= self.reap(state, mem);
                if *used {
                    self.signal(state);
                    *used = false;
                }
            }
        }
    }

    /// Pops the next chain from the avail ring and parses it into
    /// `self.request`. False if there is none, or the queue broke.
    fn pop_one(&mut self, state: &mut VringState<GM>, mem: &Arc<GuestMem>) -> bool {
        let queue = state.get_queue_mut();
        // An avail index more than a ring ahead, or an avail ring that
        // cannot be read, is a broken driver: without stopping here the
        // polling loop would see work it can never pop and spin forever.
        // (The index is read first: a chain published between two reads
        // must not look like an unreadable ring.)
        match queue.avail_idx(&**mem, Ordering::Acquire) {
            Ok(idx) if idx.0 == queue.next_avail() => return false,
            Ok(_) => {}
            Err(e) => {
                self.needs_reset(&format!("cannot read the avail ring: {e}"));
                return false;
            }
        }
        let chain = match queue.iter(&**mem) {
            Ok(mut avail) => avail.next(),
            Err(e) => {
                self.needs_reset(&format!("the avail ring is invalid: {e}"));
                return false;
            }
        };
        let Some(chain) = chain else {
            self.needs_reset("cannot read the avail ring");
            return false;
        };
        if let Some(inflight) = &mut self.inflight {
            inflight.mark(chain.head_index());
        }
        if let Err(e) = parse(chain, mem, &self.disk, &mut self.request) {
            self.reject_chain(&e);
            return false;
        }
        true
    }

    /// Counts a chain the driver got wrong and asks for the device reset
    /// virtio prescribes.
    fn reject_chain(&mut self, e: &ChainError) {
        let kind = match e {
            ChainError::Truncated => GuestError::MalformedChain,
            ChainError::NoStatus => GuestError::NoStatus,
            ChainError::StatusOutsideMemory => GuestError::BadAddress,
        };
        self.metrics.record(kind, self.index, e);
        self.needs_reset(&e.to_string());
    }

    /// Starts the parsed request, or finishes it at once. True if it went
    /// into the used ring already.
    fn dispatch(&mut self, state: &mut VringState<GM>, mem: &Arc<GuestMem>) -> bool {
        let req = &mut self.request;
        let (op, offset, len) = match req.action {
            Action::Fail {
                status,
                error,
                detail,
            } => {
                self.metrics.record(error, self.index, &detail);
                return self.finish_now(state, mem, status);
            }
            Action::GetId => {
                let id = self.disk.serial.unwrap_or_default();
                let status = match req.write_id(mem, &id) {
                    Ok(()) => VIRTIO_BLK_S_OK,
                    Err(e) => {
                        self.metrics.record(GuestError::BadAddress, self.index, &e);
                        VIRTIO_BLK_S_IOERR
                    }
                };
                return self.finish_now(state, mem, status);
            }
            Action::Read { offset } => (SlotOp::Read, offset, req.data_len),
            Action::Write { offset } => (
                SlotOp::Write {
                    dsync: self.writethrough.load(Ordering::Relaxed),
                },
                offset,
                req.data_len,
            ),
            Action::Flush => (SlotOp::Flush, 0, 0),
            Action::Discard { offset, len } => (SlotOp::Discard, offset, len),
            Action::WriteZeroes { offset, len, unmap } => {
                let op = if unmap {
                    SlotOp::ZeroPunch { allocate: false }
                } else {
                    SlotOp::ZeroRange
                };
                (op, offset, len)
            }
        };
        let nothing_to_do = len == 0 && op != SlotOp::Flush;
        if nothing_to_do {
            return self.finish_now(state, mem, VIRTIO_BLK_S_OK);
        }
        let idx = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot::empty());
            self.slots.len() - 1
        });
        let Some(slot) = self.slots.get_mut(idx) else {
            return false;
        };
        slot.head = req.head;
        slot.status = req.status;
        slot.used_len_ok = req.used_len(true);
        slot.op = op;
        slot.offset = offset;
        slot.remaining = len;
        slot.first = 0;
        slot.mem = Some(Arc::clone(mem));
        std::mem::swap(&mut slot.iovecs, &mut req.iovecs);
        if matches!(op, SlotOp::Read | SlotOp::Write { .. }) {
            self.unsubmitted += len;
            self.unsubmitted_requests += 1;
        }
        self.start(idx);
        false
    }

    /// Writes `status`, puts the current request in the used ring.
    fn finish_now(&mut self, state: &mut VringState<GM>, mem: &GuestMem, status: u8) -> bool {
        let len = self.request.used_len(status == VIRTIO_BLK_S_OK);
        let head = self.request.head;
        let addr = self.request.status;
        self.put_used(state, mem, head, addr, status, len)
    }

    fn put_used(
        &mut self,
        state: &mut VringState<GM>,
        mem: &GuestMem,
        head: u16,
        status_addr: GuestAddress,
        status: u8,
        len: u32,
    ) -> bool {
        if let Err(e) = mem.write_obj(status, status_addr) {
            self.metrics.record(GuestError::BadAddress, self.index, &e);
        }
        self.add_used(state, mem, head, len)
    }

    /// Hands slot `idx`'s (next) operation to the engine; on failure the
    /// completion is an error, handled like any other.
    fn start(&mut self, idx: usize) {
        let Some(slot) = self.slots.get(idx) else {
            return;
        };
        let iov = slot.iovecs.get(slot.first..).unwrap_or_default();
        let iovcnt = u32::try_from(iov.len()).unwrap_or(0);
        let iov = iov.as_ptr();
        let offset = slot.offset;
        let len = slot.remaining;
        const KEEP: i32 = libc::FALLOC_FL_KEEP_SIZE;
        let op = match slot.op {
            SlotOp::Read => Op::Read {
                offset,
                iov,
                iovcnt,
            },
            SlotOp::Write { dsync } => Op::Write {
                offset,
                iov,
                iovcnt,
                dsync,
            },
            SlotOp::Flush => Op::Flush,
            SlotOp::Discard | SlotOp::ZeroPunch { .. } => Op::Fallocate {
                mode: libc::FALLOC_FL_PUNCH_HOLE | KEEP,
                offset,
                len,
            },
            SlotOp::ZeroRange => Op::Fallocate {
                mode: libc::FALLOC_FL_ZERO_RANGE | KEEP,
                offset,
                len,
            },
            SlotOp::ZeroAllocate => Op::Fallocate {
                mode: KEEP,
                offset,
                len,
            },
        };
        let tag = u64::try_from(idx).unwrap_or(u64::MAX);
        // SAFETY: the iovec array is owned by slot `idx` and is neither moved
        // nor changed until the engine returns the completion for `tag`; the
        // memory it describes belongs to the guest mapping held by `slot.mem`
        // for as long, and this process holds no Rust reference into it.
        let pushed = unsafe { self.engine.push(tag, op) };
        if let Err(e) = pushed {
            self.completions.push(Completion {
                tag,
                result: -e.raw_os_error().unwrap_or(libc::EIO),
            });
        }
    }

    fn needs_reset(&mut self, why: &str) {
        if !self.broken {
            self.broken = true;
            // A change of state, once per reset: never rate limited.
            self.metrics.record_unlimited(
                GuestError::QueueNeedsReset,
                self.index,
                &format_args!("{why}; the queue stops until the driver resets it"),
            );
        }
    }
}

mod completion;
mod inflight;
mod lifecycle;

#[cfg(test)]
mod tests;
