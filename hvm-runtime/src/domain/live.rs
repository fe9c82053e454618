//! The supervisor's shared state for one running domain: the record (kept
//! in memory and stored on every change), the QMP command connection, the
//! events QEMU sent (for waits such as `DEVICE_DELETED`), the PV backends,
//! and the channel to the supervisor's main loop.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::Sender;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::backends::Backends;
use super::files::RECORD;
use super::launch::LaunchSpec;
use super::record::DomainRecord;
use crate::qmp::{qmp, Qmp, QmpError};

/// How long a QMP (re)connection may take.
const QMP_CONNECT: Duration = Duration::from_secs(10);
/// Events kept for waiters.
const EVENTS_KEPT: usize = 256;

pub use super::msg::Msg;

/// Events QEMU sent, numbered, for waiters.
#[derive(Debug, Default)]
pub struct EventBus {
    inner: Mutex<(u64, VecDeque<(u64, qmp::Event)>)>,
    cv: Condvar,
}

impl EventBus {
    /// Adds an event.
    pub fn push(&self, e: qmp::Event) {
        let mut g = lock(&self.inner);
        g.0 += 1;
        let n = g.0;
        g.1.push_back((n, e));
        if g.1.len() > EVENTS_KEPT {
            g.1.pop_front();
        }
        self.cv.notify_all();
    }

    /// The number of the last event so far: wait for events after it.
    pub fn mark(&self) -> u64 {
        lock(&self.inner).0
    }

    /// Waits up to `timeout` for an event after `mark` that `pred` accepts.
    pub fn wait_after(
        &self,
        mark: u64,
        timeout: Duration,
        mut pred: impl FnMut(&qmp::Event) -> bool,
    ) -> Option<qmp::Event> {
        let start = Instant::now();
        let mut g = lock(&self.inner);
        loop {
            if let Some((_, e)) = g.1.iter().find(|(n, e)| *n > mark && pred(e)) {
                return Some(e.clone());
            }
            let left = timeout.checked_sub(start.elapsed())?;
            g = self
                .cv
                .wait_timeout(g, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// The running domain, shared by the supervisor's threads.
#[derive(Debug)]
pub struct LiveDomain {
    /// The domain's run dir (it changes once, when a domain migrated in
    /// on this host takes its name).
    dir: Mutex<PathBuf>,
    /// What was started.
    pub spec: LaunchSpec,
    record: Mutex<DomainRecord>,
    qmp: Mutex<Option<Qmp>>,
    /// QEMU's events.
    pub events: EventBus,
    /// The PV backends.
    pub backends: Mutex<Backends>,
    /// Serialises hot-plug operations.
    pub hotplug: Mutex<()>,
    /// `pvio reboot` pressed the power button: the guest's next power-off
    /// is a reboot (cleared by it, or by any reset).
    pub reboot_requested: AtomicBool,
    /// A save or migration is writing the domain's state: hot-plug waits.
    pub migrating: AtomicBool,
    tx: Mutex<Sender<Msg>>,
    qemu_release: std::sync::OnceLock<Option<(u32, u32)>>,
    /// Locks on the images of emulated disks, held while the domain runs.
    emulated_locks: Mutex<Vec<super::image_lock::LockedImage>>,
    /// Where hot-plugged devices go while a restored domain's devices are
    /// put back where they sat (`incoming.rs`).
    pinned: Mutex<Vec<super::saved::Placement>>,
}

impl LiveDomain {
    /// The state of a domain about to start.
    pub fn new(
        dir: PathBuf,
        spec: LaunchSpec,
        record: DomainRecord,
        tx: Sender<Msg>,
    ) -> LiveDomain {
        let backends = Backends::new(
            tx.clone(),
            &spec.identity.name,
            spec.backend_identity(),
            Some(spec.device_model().gid),
            dir.parent().unwrap_or(std::path::Path::new("/")),
        );
        LiveDomain {
            dir: Mutex::new(dir),
            spec,
            record: Mutex::new(record),
            qmp: Mutex::new(None),
            events: EventBus::default(),
            backends: Mutex::new(backends),
            hotplug: Mutex::new(()),
            reboot_requested: AtomicBool::new(false),
            migrating: AtomicBool::new(false),
            tx: Mutex::new(tx),
            qemu_release: std::sync::OnceLock::new(),
            emulated_locks: Mutex::new(Vec::new()),
            pinned: Mutex::new(Vec::new()),
        }
    }

    /// Devices hot-plugged from now on go where `places` say (empty: where
    /// there is room).
    pub fn pin_places(&self, places: Vec<super::saved::Placement>) {
        *lock(&self.pinned) = places;
    }

    /// Where device `id` must go, if pinned.
    pub fn pinned_place(&self, id: &str) -> Option<super::saved::Placement> {
        lock(&self.pinned).iter().find(|p| p.id == id).cloned()
    }

    /// The domain's run dir.
    pub fn dir(&self) -> PathBuf {
        lock(&self.dir).clone()
    }

    /// Moves the domain's run dir to `to` (it must not exist) and returns
    /// the old place; the record follows (`incoming::rename`).
    pub fn move_dir(&self, to: &std::path::Path) -> std::io::Result<PathBuf> {
        let mut d = lock(&self.dir);
        std::fs::rename(&*d, to)?;
        Ok(std::mem::replace(&mut *d, to.to_owned()))
    }

    /// The running QEMU's `(major, minor)`, read once.
    pub fn qemu_release(&self) -> Option<(u32, u32)> {
        *self
            .qemu_release
            .get_or_init(|| crate::host::qemu_release(&self.spec.qemu_binary))
    }

    /// The domain's name.
    pub fn name(&self) -> &str {
        &self.spec.identity.name
    }

    /// A copy of the record.
    pub fn record(&self) -> DomainRecord {
        lock(&self.record).clone()
    }

    /// Changes the record and stores it.
    pub fn update<T>(&self, f: impl FnOnce(&mut DomainRecord) -> T) -> T {
        let mut r = lock(&self.record);
        let out = f(&mut r);
        if let Err(e) = r.store(&self.dir().join(RECORD)) {
            tracing::error!("{}", crate::report::error_line(&e));
        }
        out
    }

    /// Runs `f` on the QMP command connection, connecting first if needed.
    /// A connection that failed is dropped, so the next call reconnects.
    pub fn qmp<T>(&self, f: impl FnOnce(&mut Qmp) -> Result<T, QmpError>) -> Result<T, QmpError> {
        let mut g = lock(&self.qmp);
        if g.is_none() {
            *g = Some(Qmp::connect(&self.spec.qmp_socket, QMP_CONNECT)?);
        }
        let Some(q) = g.as_mut() else {
            return Err(QmpError::Closed);
        };
        let out = f(q);
        if matches!(
            out,
            Err(QmpError::Io(_) | QmpError::Closed | QmpError::Protocol(_))
        ) {
            *g = None;
        }
        out
    }

    /// Locks the images of the domain's emulated disks (not CD media) as
    /// the PV backends' images are locked: one writer or several readers
    /// among pvio's disks. QEMU opens these images itself (its own OFD
    /// locks do not see these).
    pub fn lock_emulated_images(&self) -> Result<(), super::DomainError> {
        let dir = self.dir();
        let root = dir.parent().unwrap_or(std::path::Path::new("/"));
        let mut held = lock(&self.emulated_locks);
        for d in self
            .record()
            .disks
            .iter()
            .filter(|d| d.bus != "pv" && !d.cdrom)
        {
            let Some(image) = &d.image else { continue };
            let defer = self.spec.incoming.as_ref().is_some_and(|i| i.defer_locks);
            let l = if defer {
                super::image_lock::open_deferred(image, d.read_only)
            } else {
                super::image_lock::open_locked(image, d.read_only, root, self.name(), &d.vdev)
            }
            .map_err(|source| super::DomainError::Image {
                device: d.vdev.clone(),
                source,
            })?;
            held.push(l);
        }
        Ok(())
    }

    /// Takes the deferred locks of the emulated disks' images that are
    /// free now; true once all are held.
    pub fn take_deferred_locks(&self) -> bool {
        super::image_lock::take_deferred(lock(&self.emulated_locks).iter_mut())
    }

    /// Makes the record's CD media what QEMU reports (`query-block`),
    /// whoever changed them: `cd-insert`, `pvio monitor`, `pvio qmp`, the
    /// monitor socket, or the guest's eject. A medium pvio passed by
    /// descriptor (`/dev/fdset/N`) keeps the path the record names.
    pub fn refresh_media(&self) {
        let Ok(blocks) = self.qmp(|q| q.execute_raw("query-block", serde_json::Value::Null)) else {
            return;
        };
        let Some(blocks) = blocks.as_array() else {
            return;
        };
        self.update(|r| {
            for d in r.disks.iter_mut().filter(|d| d.cdrom) {
                let Some(b) = blocks.iter().find(|b| {
                    b.get("device").and_then(|v| v.as_str()) == Some(d.vdev.as_str())
                        || b.get("qdev").and_then(|v| v.as_str()) == Some(d.vdev.as_str())
                }) else {
                    continue;
                };
                match b.pointer("/inserted/file").and_then(|v| v.as_str()) {
                    None => d.image = None,
                    Some(f) if f.starts_with("/dev/fdset/") => {}
                    Some(f) => d.image = Some(std::path::PathBuf::from(f)),
                }
            }
        });
    }

    /// Writes the backends' current pids into the record (for a
    /// supervisor that adopts the domain later).
    pub fn refresh_backend_pids(&self) {
        let pids: std::collections::BTreeMap<String, u32> = self
            .backends()
            .list()
            .into_iter()
            .map(|(device, _, _, pid)| (device, pid))
            .collect();
        self.update(|r| r.backend_pids = pids);
    }

    /// Reads what QEMU queued on the command connection (events sent to
    /// every monitor), unless a request holds the connection now: a
    /// domain that runs for days keeps nothing piling up in QEMU's
    /// buffers or ours. Events read are kept for waiters, at most a few
    /// hundred (`qmp::client`).
    pub fn drain_qmp(&self) {
        let Ok(mut g) = self.qmp.try_lock() else {
            return;
        };
        if let Some(q) = g.as_mut() {
            if q.execute(&qmp::query_status {}).is_err() {
                *g = None;
            }
        }
    }

    /// Sets the QMP connection made at start.
    pub fn set_qmp(&self, q: Qmp) {
        *lock(&self.qmp) = Some(q);
    }

    /// Forgets the QMP connection (QEMU is gone).
    pub fn drop_qmp(&self) {
        *lock(&self.qmp) = None;
    }

    /// Sends `m` to the main loop.
    pub fn send(&self, m: Msg) {
        let _ = lock(&self.tx).send(m);
    }

    /// The backends, locked.
    pub fn backends(&self) -> MutexGuard<'_, Backends> {
        lock(&self.backends)
    }
}

/// Locks `m`, going on with the data if a thread panicked while holding it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deleted(id: &str) -> qmp::Event {
        serde_json::from_value(serde_json::json!({
            "event": "DEVICE_DELETED",
            "data": {"device": id, "path": format!("/machine/peripheral/{id}")},
            "timestamp": {"seconds": 1, "microseconds": 0}
        }))
        .unwrap()
    }

    #[test]
    fn waiters_see_only_events_after_their_mark() {
        let bus = std::sync::Arc::new(EventBus::default());
        bus.push(deleted("xvdb"));
        let mark = bus.mark();
        let is = |id: &'static str| move |e: &qmp::Event| crate::qmp::is_device_deleted(e, id);
        assert!(bus
            .wait_after(mark, Duration::from_millis(50), is("xvdb"))
            .is_none());
        let b2 = std::sync::Arc::clone(&bus);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            b2.push(deleted("xvdb"));
        });
        assert!(bus
            .wait_after(mark, Duration::from_secs(5), is("xvdb"))
            .is_some());
        t.join().unwrap();
    }
}
