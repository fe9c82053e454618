//! A queue worker on a real vring over plain guest memory, with a tiny
//! driver: descriptors, avail entries and request buffers are written
//! straight into guest memory at fixed places, and the used ring is read back
//! from there.
//!
//! (virtio-queue's `MockSplitQueue` is not used: each `MockSplitQueue::new`
//! zeroes the avail and used indexes, which made the device see its avail
//! index go backwards.)

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::vhost_user::GuestMem;
use pvio_frontend_protocol::blk::{BlkReqHeader, VIRTIO_BLK_ID_BYTES};
use pvio_frontend_protocol::ring::{VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use pvio_frontend_protocol::zerocopy::IntoBytes;
use vhost_user_backend::VringT;
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use vm_memory::{Bytes, GuestAddress, GuestAddressSpace};

use crate::blk::config::DiskInfo;
use crate::blk::engine::{Engine, EngineKind};
use crate::blk::metrics::Metrics;
use crate::blk::worker::QueueWorker;
use crate::vhost_user::inflight::{InflightCell, InflightRegion};
use crate::vhost_user::{Vring, GM};

pub const QSIZE: u16 = 16;
const DESC_TABLE: u64 = 0;
pub const AVAIL: u64 = 0x1000;
pub const USED: u64 = 0x2000;
/// Request `i` has its header at `HEADERS + 0x20 * i`, its status byte at
/// `STATUSES + i` and its data at `DATA + 0x2000 * i` (8 KiB each).
const HEADERS: u64 = 0x4000;
const STATUSES: u64 = 0x6000;
const DATA: u64 = 0x10000;
const MEM_LEN: usize = 0x80000;
pub const IMAGE: usize = 1 << 20;
/// Device-writable.
pub const W: u16 = VIRTQ_DESC_F_WRITE;

pub fn header_addr(i: u64) -> u64 {
    HEADERS + 0x20 * i
}

pub fn status_addr(i: u64) -> u64 {
    STATUSES + i
}

pub fn data_addr(i: u64) -> u64 {
    DATA + 0x2000 * i
}

/// The image's initial content at byte `i`.
pub fn image_byte(i: usize) -> u8 {
    u8::try_from(i % 251).unwrap()
}

/// What the rig's disk is.
pub struct Setup {
    pub kind: EngineKind,
    pub read_only: bool,
    pub serial: Option<[u8; VIRTIO_BLK_ID_BYTES]>,
    /// Serve this file instead of a patterned temporary image.
    pub file: Option<File>,
}

impl Setup {
    pub fn new(kind: EngineKind) -> Self {
        Self {
            kind,
            read_only: false,
            serial: None,
            file: None,
        }
    }
}

pub struct Rig {
    pub gm: GM,
    pub vring: Vring,
    pub worker: QueueWorker,
    pub metrics: Arc<Metrics>,
    pub writethrough: Arc<AtomicBool>,
    /// The image file (the temporary one unless `Setup::file` was given).
    pub image: Option<PathBuf>,
    /// The connection's inflight region, when a test installs one.
    pub inflight: Arc<InflightCell>,
    kind: EngineKind,
    file: Arc<File>,
    disk: Arc<DiskInfo>,
    _tmp: Option<tempfile::NamedTempFile>,
    next_desc: u16,
    avail_idx: u16,
}

pub fn rig(kind: EngineKind) -> Rig {
    rig_with(Setup::new(kind))
}

pub fn rig_with(setup: Setup) -> Rig {
    let mem = GuestMem::from_ranges(&[(GuestAddress(0), MEM_LEN)]).unwrap();
    let gm = GM::new(mem);
    let vring = new_vring(&gm);
    let (file, tmp) = match setup.file {
        Some(f) => (f, None),
        None => {
            let mut tmp = tempfile::NamedTempFile::new().unwrap();
            let bytes: Vec<u8> = (0..IMAGE).map(image_byte).collect();
            tmp.write_all(&bytes).unwrap();
            (tmp.reopen().unwrap(), Some(tmp))
        }
    };
    let disk = Arc::new(DiskInfo {
        sectors: u64::try_from(IMAGE / 512).unwrap(),
        read_only: setup.read_only,
        logical_block: 512,
        physical_block: 4096,
        num_queues: 1,
        queue_size: QSIZE,
        serial: setup.serial,
    });
    let metrics = Arc::new(Metrics::new());
    let writethrough = Arc::new(AtomicBool::new(false));
    let file = Arc::new(file);
    let engine = Engine::new(setup.kind, Arc::clone(&file), u32::from(QSIZE));
    let inflight = Arc::new(InflightCell::default());
    let mut worker = QueueWorker::new(
        0,
        engine,
        Arc::clone(&disk),
        Arc::clone(&metrics),
        Arc::clone(&writethrough),
        Arc::clone(&inflight),
    );
    worker.set_memory(gm.clone());
    Rig {
        gm,
        vring,
        worker,
        metrics,
        writethrough,
        image: tmp.as_ref().map(|t| t.path().to_owned()),
        inflight,
        kind: setup.kind,
        file,
        disk,
        _tmp: tmp,
        next_desc: 0,
        avail_idx: 0,
    }
}

fn new_vring(gm: &GM) -> Vring {
    let vring = Vring::new(gm.clone(), QSIZE).unwrap();
    vring.set_queue_size(QSIZE);
    vring.set_queue_info(DESC_TABLE, AVAIL, USED).unwrap();
    vring.set_queue_ready(true);
    vring.set_enabled(true);
    vring
}

impl Rig {
    /// Installs a fresh inflight region (GET_INFLIGHT_FD, then
    /// SET_INFLIGHT_FD with what it returned).
    pub fn with_inflight(self) -> Self {
        let new = InflightRegion::create(1, QSIZE).unwrap();
        let region = InflightRegion::open(new.fd, new.mmap_size, 0, 1, QSIZE).unwrap();
        self.inflight.set(region);
        self
    }

    /// The backend dies (nothing is finished or detached) and a new one
    /// starts on the same guest memory, image and inflight region. Its ring
    /// starts where the frontend puts it after losing the backend: next
    /// avail at the used ring's index (QEMU's
    /// `virtio_queue_restore_last_avail_idx`).
    pub fn restart(&mut self) {
        let used: u16 = self.mem().read_obj(GuestAddress(USED + 2)).unwrap();
        self.vring = new_vring(&self.gm);
        self.vring.set_queue_next_avail(used);
        let engine = Engine::new(self.kind, Arc::clone(&self.file), u32::from(QSIZE));
        let mut worker = QueueWorker::new(
            0,
            engine,
            Arc::clone(&self.disk),
            Arc::clone(&self.metrics),
            Arc::clone(&self.writethrough),
            Arc::clone(&self.inflight),
        );
        worker.set_memory(self.gm.clone());
        // The old worker's process is gone: whatever it did stays done, and
        // nothing it held goes into the used ring.
        self.worker = worker;
    }

    pub fn mem(&self) -> Arc<GuestMem> {
        self.gm.memory().into_inner()
    }

    fn store_desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let d = RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next));
        let at = DESC_TABLE + 16 * u64::from(i % QSIZE);
        self.mem().write_obj(d, GuestAddress(at)).unwrap();
    }

    /// Puts `head` in the next avail entry and publishes it.
    pub fn publish(&mut self, head: u16) {
        let slot = u64::from(self.avail_idx % QSIZE);
        let mem = self.mem();
        mem.write_obj(head, GuestAddress(AVAIL + 4 + 2 * slot))
            .unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem.write_obj(self.avail_idx, GuestAddress(AVAIL + 2))
            .unwrap();
    }

    /// Sets the avail index to `idx` without writing any entry (what a
    /// broken driver might do).
    pub fn set_avail_idx(&mut self, idx: u16) {
        self.avail_idx = idx;
        self.mem().write_obj(idx, GuestAddress(AVAIL + 2)).unwrap();
    }

    /// Writes `descs` (addr, len, flags) as one chain and publishes it;
    /// returns its head.
    pub fn add_chain(&mut self, descs: &[(u64, u32, u16)]) -> u16 {
        let head = self.next_desc;
        let n = u16::try_from(descs.len()).unwrap();
        for (i, &(addr, len, flags)) in (0u16..).zip(descs) {
            let this = head.wrapping_add(i) % QSIZE;
            if i + 1 < n {
                let next = this.wrapping_add(1) % QSIZE;
                self.store_desc(this, addr, len, flags | VIRTQ_DESC_F_NEXT, next);
            } else {
                self.store_desc(this, addr, len, flags, 0);
            }
        }
        self.next_desc = head.wrapping_add(n) % QSIZE;
        self.publish(head);
        head
    }

    /// Publishes a two-descriptor chain whose second descriptor links back
    /// to the first.
    pub fn add_loop(&mut self, i: u64) -> u16 {
        let head = self.next_desc;
        let second = (head + 1) % QSIZE;
        let f = VIRTQ_DESC_F_NEXT;
        self.store_desc(head, header_addr(i), 16, f, second);
        self.store_desc(second, status_addr(i), 1, f | W, head);
        self.next_desc = (head + 2) % QSIZE;
        self.publish(head);
        head
    }

    /// Writes request `i`'s header and presets its status byte to a value
    /// the device must overwrite.
    pub fn header(&self, i: u64, type_: u32, sector: u64) {
        let mem = self.mem();
        mem.write_slice(
            BlkReqHeader::new(type_, sector).as_bytes(),
            GuestAddress(header_addr(i)),
        )
        .unwrap();
        mem.write_obj(0xffu8, GuestAddress(status_addr(i))).unwrap();
    }

    /// Request `i`: header, `len` bytes of data (device-writable for reads)
    /// unless `len` is 0, status.
    pub fn request(
        &mut self,
        i: u64,
        type_: u32,
        sector: u64,
        len: u32,
        device_writes: bool,
    ) -> u16 {
        self.header(i, type_, sector);
        let mut descs = vec![(header_addr(i), 16, 0)];
        if len > 0 {
            descs.push((data_addr(i), len, if device_writes { W } else { 0 }));
        }
        descs.push((status_addr(i), 1, W));
        self.add_chain(&descs)
    }

    /// The used ring: (head, length) in order.
    pub fn used(&self) -> Vec<(u32, u32)> {
        let mem = self.mem();
        let n: u16 = mem.read_obj(GuestAddress(USED + 2)).unwrap();
        (0..u64::from(n))
            .map(|i| {
                let at = USED + 4 + 8 * (i % u64::from(QSIZE));
                let id: u32 = mem.read_obj(GuestAddress(at)).unwrap();
                let len: u32 = mem.read_obj(GuestAddress(at + 4)).unwrap();
                (id, len)
            })
            .collect()
    }

    /// Kicks, then lets completions arrive until `want` requests are used
    /// (at most 5 s).
    pub fn kick_until(&mut self, want: usize) -> Vec<(u32, u32)> {
        self.worker.handle_kick(&self.vring);
        self.complete_until(want)
    }

    /// Handles completions until `want` requests are used (at most 5 s).
    pub fn complete_until(&mut self, want: usize) -> Vec<(u32, u32)> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.used().len() < want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
            self.worker.handle_completions(&self.vring);
        }
        self.used()
    }

    pub fn status(&self, i: u64) -> u8 {
        self.mem().read_obj(GuestAddress(status_addr(i))).unwrap()
    }

    pub fn data(&self, i: u64, len: usize) -> Vec<u8> {
        let mut got = vec![0u8; len];
        self.mem()
            .read_slice(&mut got, GuestAddress(data_addr(i)))
            .unwrap();
        got
    }

    pub fn fill_data(&self, i: u64, bytes: &[u8]) {
        self.mem()
            .write_slice(bytes, GuestAddress(data_addr(i)))
            .unwrap();
    }

    pub fn on_disk(&self) -> Vec<u8> {
        std::fs::read(self.image.as_ref().unwrap()).unwrap()
    }

    /// What a kick does up to the engine's submission, without reaping
    /// anything: the requests stay in flight.
    pub fn start_without_reaping(&mut self) {
        let mem = self.mem();
        let vring = self.vring.clone();
        self.worker.vring = Some(vring.clone());
        let mut guard = vring.get_mut();
        let mut used = false;
        self.worker.pop_all(&mut guard, &mem, &mut used);
        self.worker.engine.submit().unwrap();
    }
}
