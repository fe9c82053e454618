//! The virtio-blk device as `vhost-user-backend` sees it: features, config
//! space, memory updates, and the events of each queue thread handed to that
//! queue's own worker.
//!
//! `VhostUserBackend` takes `&self`: per-queue state lives in one lock per
//! queue, taken by that queue's thread (and by the control path when the
//! frontend stops the ring or goes away), never a lock common to all queues.
//!
//! It must not know how requests are parsed or how I/O is done.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use pvio_frontend_protocol::blk::BlkConfig;
use pvio_frontend_protocol::config_space::config_window;
use pvio_frontend_protocol::zerocopy::IntoBytes;
use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost_user_backend::VhostUserBackend;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

use super::config::{config_space, features, DiskInfo};
use super::engine::{Engine, EngineKind};
use super::metrics::Metrics;
use super::worker::QueueWorker;
use crate::vhost_user::inflight::InflightCell;
use crate::vhost_user::{Device, LogBitmap, Vring, VringHandler, GM};

/// The epoll event id of a queue's engine completions (ids up to the number
/// of queues are the library's own).
fn completion_event(num_queues: usize) -> u16 {
    u16::try_from(num_queues + 1).unwrap_or(u16::MAX)
}

/// A virtio-blk device served over vhost-user.
pub struct BlkDevice {
    disk: Arc<DiskInfo>,
    features: u64,
    /// The config space; only `writeback` changes. Control path only.
    config: Mutex<BlkConfig>,
    /// `writeback == 0`: every write is made durable before it completes.
    writethrough: Arc<AtomicBool>,
    queues: Vec<Mutex<QueueWorker>>,
    metrics: Arc<Metrics>,
    engine_name: &'static str,
    /// The inflight region of the current connection (see
    /// `vhost_user/inflight.rs`).
    inflight: Arc<InflightCell>,
}

impl std::fmt::Debug for BlkDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlkDevice")
            .field("disk", &self.disk)
            .field("engine", &self.engine_name)
            .finish_non_exhaustive()
    }
}

impl BlkDevice {
    /// A device on `file` described by `disk`, with one engine of `kind` per
    /// queue.
    pub fn new(disk: DiskInfo, file: Arc<std::fs::File>, kind: EngineKind) -> Self {
        let disk = Arc::new(disk);
        let metrics = Arc::new(Metrics::new());
        let writethrough = Arc::new(AtomicBool::new(false));
        let inflight = Arc::new(InflightCell::default());
        let depth = u32::from(disk.queue_size);
        let queues: Vec<_> = (0..usize::from(disk.num_queues))
            .map(|i| {
                let engine = Engine::new(kind, Arc::clone(&file), depth);
                Mutex::new(QueueWorker::new(
                    i,
                    engine,
                    Arc::clone(&disk),
                    Arc::clone(&metrics),
                    Arc::clone(&writethrough),
                    Arc::clone(&inflight),
                ))
            })
            .collect();
        let engine_name = queues
            .first()
            .map(|q| lock(q).engine().name())
            .unwrap_or("none");
        Self {
            features: features(&disk),
            config: Mutex::new(config_space(&disk)),
            disk,
            writethrough,
            queues,
            metrics,
            engine_name,
            inflight,
        }
    }

    /// What the device serves.
    pub fn disk(&self) -> &DiskInfo {
        &self.disk
    }

    /// The error counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The engine the queues use (`io_uring`, `sync` or `null`).
    pub fn engine_name(&self) -> &'static str {
        self.engine_name
    }
}

impl BlkDevice {
    /// Back to the write cache mode of a device reset (writeback): a driver
    /// that turned CONFIG_WCE off must not leave the next one write-through.
    fn reset_write_cache(&self) {
        let mut config = self.config.lock().unwrap_or_else(PoisonError::into_inner);
        config.writeback = 1;
        self.writethrough.store(false, Ordering::Relaxed);
    }
}

fn lock(q: &Mutex<QueueWorker>) -> MutexGuard<'_, QueueWorker> {
    q.lock().unwrap_or_else(PoisonError::into_inner)
}

impl VhostUserBackend for BlkDevice {
    type Bitmap = LogBitmap;
    type Vring = Vring;

    fn num_queues(&self) -> usize {
        self.queues.len()
    }

    fn max_queue_size(&self) -> usize {
        usize::from(self.disk.queue_size)
    }

    fn features(&self) -> u64 {
        self.features
    }

    fn acked_features(&self, features: u64) {
        tracing::debug!("frontend acked features {features:#x}");
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::LOG_SHMFD
            | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS
    }

    fn reset_device(&self) {
        for q in &self.queues {
            lock(q).stop();
        }
        self.reset_write_cache();
    }

    fn set_event_idx(&self, _enabled: bool) {
        // The vrings know (the handler sets it on each queue).
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        let config = self.config.lock().unwrap_or_else(PoisonError::into_inner);
        config_window(config.as_bytes(), offset, size)
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    }

    fn set_config(&self, offset: u32, buf: &[u8]) -> io::Result<()> {
        // Only `writeback` is writable (VIRTIO_BLK_F_CONFIG_WCE).
        let at_writeback = usize::try_from(offset).ok() == Some(BlkConfig::WRITEBACK_OFFSET);
        match (at_writeback, buf) {
            (true, &[wce]) => {
                let mut config = self.config.lock().unwrap_or_else(PoisonError::into_inner);
                config.writeback = u8::from(wce != 0);
                self.writethrough.store(wce == 0, Ordering::Relaxed);
                tracing::info!(
                    "driver set the write cache to {}",
                    if wce != 0 {
                        "writeback"
                    } else {
                        "writethrough"
                    }
                );
                Ok(())
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "only the writeback byte of the config space is writable",
            )),
        }
    }

    fn update_memory(&self, mem: GM) -> io::Result<()> {
        for q in &self.queues {
            lock(q).set_memory(mem.clone());
        }
        Ok(())
    }

    fn queues_per_thread(&self) -> Vec<u64> {
        // One thread per queue.
        (0..self.queues.len()).map(|i| 1u64 << i).collect()
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        new_event_consumer_and_notifier(EventFlag::NONBLOCK | EventFlag::CLOEXEC).ok()
    }

    fn stop_vring(&self, queue_index: u32) -> io::Result<()> {
        if let Some(q) = usize::try_from(queue_index)
            .ok()
            .and_then(|i| self.queues.get(i))
        {
            lock(q).stop();
        }
        Ok(())
    }

    fn handle_event(
        &self,
        device_event: u16,
        _evset: EventSet,
        vrings: &[Vring],
        thread_id: usize,
    ) -> io::Result<()> {
        let (Some(queue), Some(vring)) = (self.queues.get(thread_id), vrings.first()) else {
            return Ok(());
        };
        let mut worker = lock(queue);
        if device_event == 0 {
            worker.handle_kick(vring);
        } else if device_event == completion_event(self.queues.len()) {
            worker.handle_completions(vring);
        }
        // Errors are the guest's or the I/O's: counted, never fatal to the
        // queue thread.
        Ok(())
    }
}

impl Device for Arc<BlkDevice> {
    type Backend = Arc<BlkDevice>;

    fn backend(&self) -> Self::Backend {
        Arc::clone(self)
    }

    fn attach(&self, handlers: &[VringHandler<Self::Backend>]) -> io::Result<()> {
        let event = u64::from(completion_event(self.queues.len()));
        for (q, handler) in self.queues.iter().zip(handlers) {
            if let Some(fd) = lock(q).engine().event_fd() {
                handler.register_listener(fd, EventSet::IN, event)?;
            }
        }
        Ok(())
    }

    /// In-flight requests survive a backend restart: the frontend keeps
    /// the region and hands it to the next backend, which does them again.
    fn inflight(&self) -> Option<Arc<InflightCell>> {
        Some(Arc::clone(&self.inflight))
    }

    fn detach(&self) {
        for q in &self.queues {
            lock(q).detach();
        }
        // The next frontend starts from a reset device.
        self.reset_write_cache();
        let counts = self.metrics.snapshot();
        if !counts.is_empty() {
            tracing::info!("guest errors so far: {counts:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Arc<BlkDevice> {
        let disk = DiskInfo {
            sectors: 8,
            read_only: false,
            logical_block: 512,
            physical_block: 4096,
            num_queues: 2,
            queue_size: 16,
            serial: None,
        };
        let file = Arc::new(tempfile::tempfile().unwrap());
        Arc::new(BlkDevice::new(disk, file, EngineKind::Sync))
    }

    fn writeback_byte(d: &BlkDevice) -> u8 {
        let offset = u32::try_from(BlkConfig::WRITEBACK_OFFSET).unwrap();
        d.get_config(offset, 1)[0]
    }

    fn turn_the_write_cache_off(d: &BlkDevice) {
        d.set_config(u32::try_from(BlkConfig::WRITEBACK_OFFSET).unwrap(), &[0])
            .unwrap();
        assert_eq!(writeback_byte(d), 0);
        assert!(d.writethrough.load(Ordering::Relaxed));
    }

    #[test]
    fn spec_5_2_5_write_cache_mode_does_not_outlive_its_frontend() {
        let d = device();
        assert_eq!(writeback_byte(&d), 1, "writeback at start");
        turn_the_write_cache_off(&d);
        // The frontend goes away: the next one sees a device as after reset.
        Device::detach(&d);
        assert_eq!(writeback_byte(&d), 1);
        assert!(!d.writethrough.load(Ordering::Relaxed));
    }

    #[test]
    fn spec_5_2_5_reset_restores_writeback() {
        let d = device();
        turn_the_write_cache_off(&d);
        d.reset_device();
        assert_eq!(writeback_byte(&d), 1);
        assert!(!d.writethrough.load(Ordering::Relaxed));
    }

    #[test]
    fn vhost_user_protocol_features_include_config_and_mq() {
        let p = device().protocol_features();
        assert!(p.contains(VhostUserProtocolFeatures::CONFIG));
        assert!(p.contains(VhostUserProtocolFeatures::MQ));
        let want = VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::LOG_SHMFD
            | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS;
        assert_eq!(p, want);
        // And the virtio features are the config module's.
        let d = device();
        assert_eq!(d.features(), features(d.disk()));
    }

    #[test]
    fn only_the_writeback_byte_is_writable() {
        let d = device();
        assert!(d.set_config(0, &[0; 8]).is_err());
        let offset = u32::try_from(BlkConfig::WRITEBACK_OFFSET).unwrap();
        assert!(d.set_config(offset, &[0, 0]).is_err());
        assert_eq!(writeback_byte(&d), 1);
    }
}
