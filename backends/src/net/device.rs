//! The virtio-net device as `vhost-user-backend` sees it: features, config
//! space, memory updates, and each thread's events handed to its queue
//! pair's worker.
//!
//! Queues are laid out as virtio-net wants: `rx0, tx0, rx1, tx1, ...`, then
//! the control queue. Thread `i` serves pair `i`; thread 0 also serves the
//! control queue. `VhostUserBackend` takes `&self`: each pair's state sits
//! behind its own lock, taken by its own thread (and by the control path on
//! memory and feature changes), never a lock common to all queues.
//!
//! [`NetDevice`] outlives connections (the tap stays open); each connection
//! gets a fresh [`NetBackend`] with fresh workers.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use pvio_frontend_protocol::config_space::config_window;
use pvio_frontend_protocol::features::{feature_names, COMMON_FEATURE_NAMES};
use pvio_frontend_protocol::net::{NetConfig, NET_FEATURE_NAMES, NET_HDR_LEN};
use pvio_frontend_protocol::zerocopy::IntoBytes;
use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost_user_backend::VhostUserBackend;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

use super::ctrl::Ctrl;
use super::offload::tun_offload_flags;
use super::queue_pair::{Negotiated, QueuePair};
use super::shared::PairShared;
use super::stats::StatsSnapshot;
use super::tap::Tap;
use crate::vhost_user::{Device, LogBitmap, Vring, VringHandler, GM};

/// The device: the tap, what it offers, and the counters, across
/// connections.
pub struct NetDevice {
    tap: Arc<Tap>,
    queue_size: u16,
    mtu: u16,
    features: u64,
    config: NetConfig,
    pairs: Vec<Arc<PairShared>>,
    /// The backend of the connection being served.
    current: Mutex<Option<NetBackend>>,
}

impl std::fmt::Debug for NetDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetDevice")
            .field("tap", &self.tap.name())
            .field("pairs", &self.pairs.len())
            .finish_non_exhaustive()
    }
}

impl NetDevice {
    /// A device on `tap` (one tap queue per pair) offering `features` and
    /// `config`, with queues of `queue_size` and the tap's `mtu`.
    pub fn new(
        tap: Tap,
        features: u64,
        config: NetConfig,
        queue_size: u16,
        mtu: u16,
    ) -> io::Result<Self> {
        let pairs = (0..tap.queues().len())
            .map(|_| PairShared::new().map(Arc::new))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self {
            tap: Arc::new(tap),
            queue_size,
            mtu,
            features,
            config,
            pairs,
            current: Mutex::new(None),
        })
    }

    /// The tap.
    pub fn tap(&self) -> &Tap {
        &self.tap
    }

    /// The features offered.
    pub fn features(&self) -> u64 {
        self.features
    }

    /// The config space offered.
    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// The counters of all queue pairs, summed.
    pub fn stats(&self) -> StatsSnapshot {
        self.pairs.iter().fold(StatsSnapshot::default(), |acc, p| {
            acc.plus(p.stats.snapshot())
        })
    }

    /// The counters of each queue pair.
    pub fn pair_stats(&self) -> Vec<StatsSnapshot> {
        self.pairs.iter().map(|p| p.stats.snapshot()).collect()
    }

    fn current(&self) -> MutexGuard<'_, Option<NetBackend>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the vhost-user daemon drives for one connection (cloned into each
/// queue thread).
#[derive(Clone)]
pub struct NetBackend {
    inner: Arc<Inner>,
}

struct Inner {
    tap: Arc<Tap>,
    queue_size: u16,
    mtu: u16,
    features: u64,
    config: NetConfig,
    workers: Vec<Mutex<QueuePair>>,
    ctrl: Mutex<Ctrl>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl NetBackend {
    fn new(dev: &NetDevice) -> Self {
        let num_queues = 2 * dev.pairs.len() + 1;
        let tap_event = event_id(num_queues, 1);
        let wake_event = event_id(num_queues, 2);
        let neg = Negotiated::new(0, dev.mtu);
        let workers = dev
            .pairs
            .iter()
            .enumerate()
            .map(|(i, shared)| {
                Mutex::new(QueuePair::new(
                    i,
                    Arc::clone(&dev.tap),
                    Arc::clone(shared),
                    neg,
                    tap_event,
                    wake_event,
                ))
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                tap: Arc::clone(&dev.tap),
                queue_size: dev.queue_size,
                mtu: dev.mtu,
                features: dev.features,
                config: dev.config,
                workers,
                ctrl: Mutex::new(Ctrl::new(Arc::clone(&dev.tap), dev.pairs.clone())),
            }),
        }
    }

    fn num_pairs(&self) -> usize {
        self.inner.workers.len()
    }
}

/// The epoll id `offset` above the library's own ids (`0..=num_queues`).
fn event_id(num_queues: usize, offset: usize) -> u64 {
    u64::try_from(num_queues + offset).unwrap_or(u64::MAX)
}

impl VhostUserBackend for NetBackend {
    type Bitmap = LogBitmap;
    type Vring = Vring;

    fn num_queues(&self) -> usize {
        2 * self.num_pairs() + 1
    }

    fn max_queue_size(&self) -> usize {
        usize::from(self.inner.queue_size)
    }

    fn features(&self) -> u64 {
        self.inner.features
    }

    fn acked_features(&self, features: u64) {
        let neg = Negotiated::new(features, self.inner.mtu);
        let tap = &self.inner.tap;
        let offload = tap.set_offload(tun_offload_flags(features));
        let hdr = tap.set_vnet_hdr_len(neg.hdr_len);
        for result in [offload.map(drop), hdr] {
            if let Err(e) = result {
                tracing::warn!("{}", crate::net::error_chain(&e));
            }
        }
        let mut names = feature_names(features, COMMON_FEATURE_NAMES);
        names.extend(feature_names(features, NET_FEATURE_NAMES));
        tracing::info!(
            "guest features: {} (header {} bytes, receive offloads {:#x})",
            names.join(" "),
            neg.hdr_len,
            tun_offload_flags(features) & tap.offload_support()
        );
        for w in &self.inner.workers {
            lock(w).set_negotiated(neg);
        }
        lock(&self.inner.ctrl).set_acked(features);
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::LOG_SHMFD
    }

    fn set_event_idx(&self, _enabled: bool) {
        // The vrings know (the handler sets it on each queue).
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        config_window(self.inner.config.as_bytes(), offset, size)
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    }

    fn set_config(&self, _offset: u32, _buf: &[u8]) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the virtio-net config space is read-only",
        ))
    }

    fn update_memory(&self, mem: GM) -> io::Result<()> {
        for w in &self.inner.workers {
            lock(w).set_memory(mem.clone());
        }
        lock(&self.inner.ctrl).set_memory(mem);
        Ok(())
    }

    fn queues_per_thread(&self) -> Vec<u64> {
        let ctrl = 1u64 << (2 * self.num_pairs());
        (0..self.num_pairs())
            .map(|i| (0b11u64 << (2 * i)) | if i == 0 { ctrl } else { 0 })
            .collect()
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        new_event_consumer_and_notifier(EventFlag::NONBLOCK | EventFlag::CLOEXEC).ok()
    }

    fn handle_event(
        &self,
        device_event: u16,
        _evset: EventSet,
        vrings: &[Vring],
        thread_id: usize,
    ) -> io::Result<()> {
        let (Some(worker), Some(rx), Some(tx)) = (
            self.inner.workers.get(thread_id),
            vrings.first(),
            vrings.get(1),
        ) else {
            return Ok(());
        };
        let num_queues = self.num_queues();
        let event = u64::from(device_event);
        match device_event {
            0 => lock(worker).on_rx_kick(rx, tx),
            1 => lock(worker).on_tx_kick(rx, tx),
            2 if thread_id == 0 => {
                if let Some(ctrl) = vrings.get(2) {
                    lock(&self.inner.ctrl).process(ctrl);
                }
            }
            _ if event == event_id(num_queues, 1) => lock(worker).on_tap(rx, tx),
            _ if event == event_id(num_queues, 2) => {
                lock(worker).on_wake(rx, tx);
                if thread_id == 0 {
                    let mut ctrl = lock(&self.inner.ctrl);
                    if ctrl.has_more() {
                        if let Some(cq) = vrings.get(2) {
                            ctrl.process(cq);
                        }
                    }
                }
            }
            _ => {}
        }
        // Errors are the guest's or the tap's: counted, never fatal to the
        // queue thread.
        Ok(())
    }
}

impl Device for Arc<NetDevice> {
    type Backend = NetBackend;

    fn backend(&self) -> Self::Backend {
        let backend = NetBackend::new(self);
        *self.current() = Some(backend.clone());
        backend
    }

    fn attach(&self, handlers: &[VringHandler<Self::Backend>]) -> io::Result<()> {
        let current = self.current();
        let Some(backend) = current.as_ref() else {
            return Ok(());
        };
        for (worker, handler) in backend.inner.workers.iter().zip(handlers) {
            lock(worker).attach(handler)?;
        }
        Ok(())
    }

    fn relay_early_vring_enable(&self) -> bool {
        // QEMU's virtio-net enables rings before SET_FEATURES.
        true
    }

    fn detach(&self) {
        if let Some(backend) = self.current().take() {
            for w in &backend.inner.workers {
                lock(w).detach();
            }
        }
        // The next guest starts with every tap queue attached, and gets
        // what a freshly reset NIC gets: no offloaded frames until it
        // negotiates them, and none of the frames queued for the old guest
        // (GSO frames among them, which it may not take).
        for (i, shared) in self.pairs.iter().enumerate() {
            shared
                .in_use
                .store(true, std::sync::atomic::Ordering::Release);
            shared.set_attached(&self.tap, i, true);
        }
        let reset = self
            .tap
            .set_offload(0)
            .map(drop)
            .and_then(|()| self.tap.set_vnet_hdr_len(NET_HDR_LEN));
        if let Err(e) = reset {
            tracing::warn!("{}", crate::net::error_chain(&e));
        }
        let stale = self.tap.drain();
        if stale > 0 {
            tracing::info!("dropped {stale} frame(s) queued in the tap for the previous guest");
        }
        for (i, p) in self.pair_stats().iter().enumerate() {
            tracing::info!(
                "queue pair {i}: {} frames in, {} out; {} receive and {} transmit interrupts",
                p.rx_frames,
                p.tx_frames,
                p.rx_interrupts,
                p.tx_interrupts
            );
        }
        let s = self.stats();
        tracing::info!(
            "totals: {} frames in, {} out, {} guest errors, {} dropped",
            s.rx_frames,
            s.tx_frames,
            s.guest_errors(),
            s.rx_dropped + s.tx_dropped
        );
    }
}
