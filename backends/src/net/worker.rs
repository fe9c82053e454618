//! One queue pair's worker: the state its thread owns (its tap queue, the
//! negotiated header and limits, scratch buffers, counters) and what each
//! event of that thread means.
//!
//! Events: a guest kick on the receive queue (buffers posted), a kick on the
//! transmit queue (frames to send), the tap queue readable (frames for the
//! guest), and the pair's own wake eventfd (more transmit work after a
//! budget, or the control queue re-attached the tap queue). The tap file is
//! polled only while the guest has receive buffers: when it runs out, pvio
//! stops polling and waits for the next receive kick, so frames wait in the
//! tap (no drop storm, no spin). Each wake-up is served by `serve.rs`;
//! receiving is in `rx.rs`, sending in `tx.rs`.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use vhost_user_backend::{VringEpollHandler, VringT};
use virtio_queue::QueueT;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::chain::Seg;
use super::device::NetBackend;
use super::offload::{frame_limits, hdr_len, mergeable_rx, FrameLimits, MAX_FRAME_LEN};
use super::rx::Receiver;
use super::stats::{PairStats, RateLimit};
use super::tap::Tap;
use crate::vhost_user::notify::HeldBack;
use crate::vhost_user::poll::Poller;
use crate::vhost_user::{Vring, GM};

/// The epoll loop of a queue pair's thread.
pub type Handler = VringEpollHandler<NetBackend>;

/// What the guest negotiated, as the data path needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The acknowledged features.
    pub acked: u64,
    /// The virtio-net header length.
    pub hdr_len: usize,
    /// Mergeable receive buffers.
    pub mrg: bool,
    /// Largest frames each way.
    pub limits: FrameLimits,
}

impl Negotiated {
    /// The data path parameters for `acked` features and `mtu`.
    pub fn new(acked: u64, mtu: u16) -> Self {
        Self {
            acked,
            hdr_len: hdr_len(acked),
            mrg: mergeable_rx(acked),
            limits: frame_limits(acked, mtu),
        }
    }
}

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

/// The worker of one queue pair.
pub struct QueuePair {
    pub(super) index: usize,
    pub(super) tap: Arc<Tap>,
    pub(super) mem: Option<GM>,
    pub(super) neg: Negotiated,
    pub(super) shared: Arc<PairShared>,
    handler: Weak<Handler>,
    tap_event: u64,
    wake_event: u64,
    tap_polled: bool,
    /// The receive side: held chains and a frame waiting for room.
    pub(super) rx: Receiver,
    /// Segments of the transmit chain being sent (reused).
    pub(super) segs: Vec<Seg>,
    /// Where a transmit chain of too many pieces is gathered.
    pub(super) bounce: Vec<u8>,
    /// Spins a little for more work before the thread sleeps (`serve.rs`).
    pub(super) poller: Option<Poller>,
    /// Receive and transmit interrupts `EVENT_IDX` held back, sent when the
    /// pair goes idle (`vhost_user::notify`).
    pub(super) rx_held: HeldBack,
    pub(super) tx_held: HeldBack,
    pub(super) log: RateLimit,
}

impl QueuePair {
    /// The worker of pair `index` of `tap`, waking on `tap_event` and
    /// `wake_event` (epoll ids above the queue count).
    pub fn new(
        index: usize,
        tap: Arc<Tap>,
        shared: Arc<PairShared>,
        neg: Negotiated,
        tap_event: u64,
        wake_event: u64,
    ) -> Self {
        Self {
            index,
            tap,
            mem: None,
            neg,
            rx: Receiver::new(index, neg, Arc::clone(&shared)),
            shared,
            handler: Weak::new(),
            tap_event,
            wake_event,
            tap_polled: false,
            segs: Vec::new(),
            bounce: Vec::new(),
            poller: super::serve::poller(),
            rx_held: HeldBack::default(),
            tx_held: HeldBack::default(),
            log: RateLimit::default(),
        }
    }

    /// The guest memory changed.
    pub fn set_memory(&mut self, mem: GM) {
        self.mem = Some(mem);
    }

    /// The guest acknowledged features.
    pub fn set_negotiated(&mut self, neg: Negotiated) {
        self.neg = neg;
        self.rx.set_negotiated(neg);
    }

    /// Hooks the pair into its thread's epoll loop: the wake eventfd for
    /// good, the tap file while the guest has receive buffers.
    pub fn attach(&mut self, handler: &Arc<Handler>) -> io::Result<()> {
        self.handler = Arc::downgrade(handler);
        handler.register_listener(self.shared.wake.as_raw_fd(), EventSet::IN, self.wake_event)?;
        self.resume_tap();
        Ok(())
    }

    /// The tap queue of this pair.
    pub(super) fn tap_queue(&self) -> &super::tap::TapQueue {
        &self.tap.queues()[self.index]
    }

    /// Starts polling the tap file (the guest posted receive buffers).
    pub(super) fn resume_tap(&mut self) {
        if self.tap_polled || !self.shared.attached.load(Ordering::Acquire) {
            return;
        }
        let Some(handler) = self.handler.upgrade() else {
            return;
        };
        let fd = self.tap_queue().as_fd().as_raw_fd();
        match handler.register_listener(fd, EventSet::IN, self.tap_event) {
            Ok(()) => self.tap_polled = true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => self.tap_polled = true,
            Err(e) => tracing::warn!("queue pair {}: cannot poll the tap: {e}", self.index),
        }
    }

    /// Stops polling the tap file: frames wait in the tap until the guest
    /// posts buffers (or the pair is enabled again).
    pub(super) fn pause_tap(&mut self) {
        if !self.tap_polled {
            return;
        }
        let Some(handler) = self.handler.upgrade() else {
            return;
        };
        let fd = self.tap_queue().as_fd().as_raw_fd();
        if let Err(e) = handler.unregister_listener(fd, EventSet::IN, self.tap_event) {
            tracing::warn!(
                "queue pair {}: cannot stop polling the tap: {e}",
                self.index
            );
        }
        self.tap_polled = false;
    }

    /// The guest kicked the receive queue: it posted buffers (or the queue
    /// was just enabled).
    pub fn on_rx_kick(&mut self, rx: &Vring, tx: &Vring) {
        if self.index > 0 && Self::usable(rx) && self.shared.in_use.load(Ordering::Acquire) {
            // Enabled again (after the frontend disabled the pair).
            self.shared.set_attached(&self.tap, self.index, true);
        }
        self.resume_tap();
        self.serve(rx, tx, true);
    }

    /// The tap file is readable.
    pub fn on_tap(&mut self, rx: &Vring, tx: &Vring) {
        if !self.shared.attached.load(Ordering::Acquire) {
            // A detached queue polls as an error: stop until re-attached.
            self.pause_tap();
            return;
        }
        self.serve(rx, tx, true);
    }

    /// The guest kicked the transmit queue.
    pub fn on_tx_kick(&mut self, rx: &Vring, tx: &Vring) {
        self.serve(rx, tx, false);
    }

    /// The pair's wake eventfd fired: more transmit work, or the tap queue
    /// was re-attached.
    pub fn on_wake(&mut self, rx: &Vring, tx: &Vring) {
        let _ = self.shared.wake.read();
        let mut rx_due = false;
        if self.shared.attached.load(Ordering::Acquire) && !self.tap_polled {
            self.resume_tap();
            rx_due = true;
        }
        self.serve(rx, tx, rx_due);
    }

    /// Whether the tap file is in the thread's epoll (the guest has
    /// receive buffers).
    pub(super) fn tap_polled(&self) -> bool {
        self.tap_polled
    }

    /// The receive queue cannot be used (not set up, or disabled because the
    /// guest uses fewer pairs): stop polling the tap and, for pairs after
    /// the first, detach the tap queue so the kernel steers its flows to
    /// pairs the guest reads.
    pub(super) fn rx_unusable(&mut self) {
        self.pause_tap();
        if self.index > 0 {
            self.shared.set_attached(&self.tap, self.index, false);
        }
    }

    /// Whether `vring` may be used: set up by the frontend and enabled.
    pub(super) fn usable(vring: &Vring) -> bool {
        let state = vring.get_ref();
        state.get_queue().ready() && state.is_enabled()
    }

    /// The transmit bounce buffer, grown to the largest frame on first use.
    pub(super) fn bounce_buf(&mut self) -> &mut [u8] {
        let len = MAX_FRAME_LEN + self.neg.hdr_len;
        if self.bounce.len() < len {
            self.bounce.resize(len, 0);
        }
        &mut self.bounce[..len]
    }

    /// The frontend went away: forget its memory and any frame held for it
    /// (the tap keeps the rest for the next one).
    pub fn detach(&mut self) {
        self.pause_tap();
        self.handler = Weak::new();
        self.mem = None;
        self.rx.reset();
        self.rx_held.reset();
        self.tx_held.reset();
    }
}
