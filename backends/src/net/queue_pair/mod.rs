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
//! tap (no drop storm, no spin).
//!
//! The pair's methods are spread over its children, each of which sees
//! only this module and the net folder's lower modules (chains, headers,
//! offloads, counters, the tap):
//!
//! | file | role |
//! | --- | --- |
//! | `serve.rs` | one wake-up: transmit, receive, one interrupt, poll, sleep |
//! | `rx.rs`, `rx/` | receive (tap to guest) |
//! | `tx.rs` | transmit (guest to tap) |
//!
//! It must not know the device (`device.rs`) that owns the pairs, its
//! vhost-user backend type, or the control queue: the thread's epoll loop
//! comes in as an [`EventLoop`], and what the pair shares with the control
//! path as a [`PairShared`].

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use vhost_user_backend::{VhostUserBackend, VringEpollHandler, VringT};
use virtio_queue::QueueT;
use vmm_sys_util::epoll::EventSet;

use super::chain::Seg;
use super::offload::{frame_limits, hdr_len, mergeable_rx, FrameLimits, MAX_FRAME_LEN};
use super::shared::PairShared;
use super::stats::RateLimit;
use super::tap::{Tap, TapQueue};
use crate::vhost_user::notify::HeldBack;
use crate::vhost_user::poll::Poller;
use crate::vhost_user::{Vring, GM};

mod rx;
mod serve;
mod tx;

use rx::Receiver;

/// The epoll loop of a queue pair's thread, as the pair uses it: its tap
/// and wake fds added and taken out. The loop the vhost-user daemon made
/// for the thread is one, whatever the device's backend type.
pub trait EventLoop {
    /// Watches `fd` for input, reporting it as event `data` (an id above
    /// the queues' own).
    fn register(&self, fd: RawFd, data: u64) -> io::Result<()>;

    /// Stops watching `fd`.
    fn unregister(&self, fd: RawFd, data: u64) -> io::Result<()>;
}

impl<B: VhostUserBackend> EventLoop for VringEpollHandler<B> {
    fn register(&self, fd: RawFd, data: u64) -> io::Result<()> {
        self.register_listener(fd, EventSet::IN, data)
    }

    fn unregister(&self, fd: RawFd, data: u64) -> io::Result<()> {
        self.unregister_listener(fd, EventSet::IN, data)
    }
}

/// The thread's epoll loop as the pair holds it: weakly (the loop holds the
/// backend, which holds the pair).
type LoopRef = Weak<dyn EventLoop + Send + Sync>;

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

/// The worker of one queue pair.
pub struct QueuePair {
    index: usize,
    tap: Arc<Tap>,
    mem: Option<GM>,
    neg: Negotiated,
    shared: Arc<PairShared>,
    handler: Option<LoopRef>,
    tap_event: u64,
    wake_event: u64,
    tap_polled: bool,
    /// The receive side: held chains and a frame waiting for room.
    rx: Receiver,
    /// Segments of the transmit chain being sent (reused).
    segs: Vec<Seg>,
    /// Where a transmit chain of too many pieces is gathered.
    bounce: Vec<u8>,
    /// Spins a little for more work before the thread sleeps (`serve.rs`).
    poller: Option<Poller>,
    /// Receive and transmit interrupts `EVENT_IDX` held back, sent when the
    /// pair goes idle (`vhost_user::notify`).
    rx_held: HeldBack,
    tx_held: HeldBack,
    log: RateLimit,
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
            handler: None,
            tap_event,
            wake_event,
            tap_polled: false,
            segs: Vec::new(),
            bounce: Vec::new(),
            poller: serve::poller(),
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
    pub fn attach<L>(&mut self, handler: &Arc<L>) -> io::Result<()>
    where
        L: EventLoop + Send + Sync + 'static,
    {
        let weak: Weak<L> = Arc::downgrade(handler);
        self.handler = Some(weak as LoopRef);
        handler.register(self.shared.wake.as_raw_fd(), self.wake_event)?;
        self.resume_tap();
        Ok(())
    }

    /// The tap queue of this pair.
    fn tap_queue(&self) -> &TapQueue {
        &self.tap.queues()[self.index]
    }

    /// Starts polling the tap file (the guest posted receive buffers).
    fn resume_tap(&mut self) {
        if self.tap_polled || !self.shared.attached.load(Ordering::Acquire) {
            return;
        }
        let Some(handler) = self.handler.as_ref().and_then(Weak::upgrade) else {
            return;
        };
        let fd = self.tap_queue().as_fd().as_raw_fd();
        match handler.register(fd, self.tap_event) {
            Ok(()) => self.tap_polled = true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => self.tap_polled = true,
            Err(e) => tracing::warn!("queue pair {}: cannot poll the tap: {e}", self.index),
        }
    }

    /// Stops polling the tap file: frames wait in the tap until the guest
    /// posts buffers (or the pair is enabled again).
    fn pause_tap(&mut self) {
        if !self.tap_polled {
            return;
        }
        let Some(handler) = self.handler.as_ref().and_then(Weak::upgrade) else {
            return;
        };
        let fd = self.tap_queue().as_fd().as_raw_fd();
        if let Err(e) = handler.unregister(fd, self.tap_event) {
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
    fn tap_polled(&self) -> bool {
        self.tap_polled
    }

    /// The receive queue cannot be used (not set up, or disabled because the
    /// guest uses fewer pairs): stop polling the tap and, for pairs after
    /// the first, detach the tap queue so the kernel steers its flows to
    /// pairs the guest reads.
    fn rx_unusable(&mut self) {
        self.pause_tap();
        if self.index > 0 {
            self.shared.set_attached(&self.tap, self.index, false);
        }
    }

    /// Whether `vring` may be used: set up by the frontend and enabled.
    fn usable(vring: &Vring) -> bool {
        let state = vring.get_ref();
        state.get_queue().ready() && state.is_enabled()
    }

    /// The transmit bounce buffer, grown to the largest frame on first use.
    fn bounce_buf(&mut self) -> &mut [u8] {
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
        self.handler = None;
        self.mem = None;
        self.rx.reset();
        self.rx_held.reset();
        self.tx_held.reset();
    }
}
