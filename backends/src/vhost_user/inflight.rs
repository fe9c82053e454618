//! vhost-user's inflight I/O tracking (`VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD`)
//! for split rings: a shared region in which the backend marks every chain
//! it has popped and not yet put in the used ring, so that a backend started
//! after a crash finds those chains and does them again.
//!
//! The frontend keeps the region across backend restarts: it asks for one
//! once (`GET_INFLIGHT_FD`, answered with a fresh memfd) and hands it to
//! every backend it connects to (`SET_INFLIGHT_FD`). rust-vmm's
//! `vhost-user-backend` answers both with "not supported", so the relay
//! answers them itself (see `relay.rs`), and a device that opts in
//! ([`Device::inflight`](super::Device::inflight)) reads the region through
//! an [`InflightCell`].
//!
//! The layout is the spec's ("Inflight I/O tracking") and libvhost-user's,
//! per queue at a stride of [`queue_region_size`]:
//!
//! ```text
//! header  features u64 | version u16 | desc_num u16 | last_batch_head u16 | used_idx u16
//! desc[i] inflight u8 | padding [u8; 5] | next u16 | counter u64      (16 bytes each)
//! ```
//!
//! The algorithm is libvhost-user's (`vu_queue_inflight_get`, `_pre_put`,
//! `_post_put`, `vu_check_queue_inflights`), with a batch of one used entry.
//!
//! Nothing the frontend puts in the region can make the backend touch memory
//! outside it: the file's size is checked with `fstat`, every index is
//! bounded by the region's own queue size, and a memfd made here is sealed
//! against shrinking.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::atomic::{fence, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rustix::fs::{fstat, FileType, MemfdFlags, SealFlags};
use vm_memory::{Bytes, FileOffset, MmapRegion, VolatileMemory};

/// `VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD`.
pub const PROTOCOL_F_INFLIGHT_SHMFD: u64 = 1 << 12;
/// `VHOST_USER_GET_INFLIGHT_FD`.
pub const GET_INFLIGHT_FD: u32 = 31;
/// `VHOST_USER_SET_INFLIGHT_FD`.
pub const SET_INFLIGHT_FD: u32 = 32;

/// The header of one queue's part.
const HEADER_LEN: usize = 16;
/// One descriptor's entry.
const DESC_LEN: usize = 16;
const OFF_VERSION: usize = 8;
const OFF_DESC_NUM: usize = 10;
const OFF_LAST_BATCH_HEAD: usize = 12;
const OFF_USED_IDX: usize = 14;
/// Within a descriptor's entry.
const OFF_COUNTER: usize = 8;
/// The version a backend writes into a fresh queue part.
const VERSION: u16 = 1;
/// Each queue's part starts at a multiple of this.
const ALIGN: u64 = 64;
/// The largest split ring.
const MAX_QUEUE_SIZE: u16 = 32768;

/// The bytes of one queue's part, libvhost-user's `vu_inflight_queue_size`.
pub fn queue_region_size(queue_size: u16) -> u64 {
    let raw = (DESC_LEN as u64) * u64::from(queue_size) + 2;
    raw.div_ceil(ALIGN) * ALIGN
}

/// Why a region cannot be made or used.
#[derive(Debug, thiserror::Error)]
pub enum InflightError {
    /// Queue count or size out of range.
    #[error("{num_queues} queue(s) of {queue_size} descriptors is not a region pvio can track")]
    Shape {
        /// Queues asked for.
        num_queues: u16,
        /// Their size.
        queue_size: u16,
    },
    /// The frontend's fd is not a regular file, or smaller than the region.
    #[error("the inflight fd is not a file of at least {want} bytes past offset {offset}")]
    TooSmall {
        /// Bytes needed.
        want: u64,
        /// The offset given.
        offset: u64,
    },
    /// A system call failed.
    #[error("inflight region")]
    Io(#[source] std::io::Error),
    /// The mapping failed.
    #[error("cannot map the inflight region: {0}")]
    Map(String),
}

/// One region, mapped shared.
#[derive(Debug)]
pub struct InflightRegion {
    map: MmapRegion,
    num_queues: u16,
    queue_size: u16,
    stride: usize,
}

/// What `GET_INFLIGHT_FD` answers.
#[derive(Debug)]
pub struct NewRegion {
    /// The memfd (sealed against shrinking and growing).
    pub fd: OwnedFd,
    /// Its size.
    pub mmap_size: u64,
}

impl InflightRegion {
    fn total(num_queues: u16, queue_size: u16) -> Result<u64, InflightError> {
        if num_queues == 0 || queue_size == 0 || queue_size > MAX_QUEUE_SIZE {
            return Err(InflightError::Shape {
                num_queues,
                queue_size,
            });
        }
        Ok(queue_region_size(queue_size) * u64::from(num_queues))
    }

    /// A zeroed region for `num_queues` queues of `queue_size`
    /// (`GET_INFLIGHT_FD`).
    pub fn create(num_queues: u16, queue_size: u16) -> Result<NewRegion, InflightError> {
        let size = Self::total(num_queues, queue_size)?;
        let io = |e: rustix::io::Errno| InflightError::Io(e.into());
        let fd = rustix::fs::memfd_create(
            "pvio-inflight",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )
        .map_err(io)?;
        rustix::fs::ftruncate(&fd, size).map_err(io)?;
        // The frontend holds the fd: it must not be able to shrink the file
        // under a backend's mapping (SIGBUS).
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)
            .map_err(io)?;
        Ok(NewRegion {
            fd,
            mmap_size: size,
        })
    }

    /// Maps the region the frontend hands over (`SET_INFLIGHT_FD`), after
    /// checking that its file holds it.
    pub fn open(
        fd: OwnedFd,
        mmap_size: u64,
        mmap_offset: u64,
        num_queues: u16,
        queue_size: u16,
    ) -> Result<Self, InflightError> {
        let want = Self::total(num_queues, queue_size)?;
        let too_small = InflightError::TooSmall {
            want,
            offset: mmap_offset,
        };
        let st = fstat(&fd).map_err(|e| InflightError::Io(e.into()))?;
        let file_size = u64::try_from(st.st_size).unwrap_or(0);
        let is_file = FileType::from_raw_mode(st.st_mode) == FileType::RegularFile;
        let fits = mmap_offset
            .checked_add(want)
            .is_some_and(|end| end <= file_size);
        if !is_file || mmap_size < want || !fits {
            return Err(too_small);
        }
        let len = usize::try_from(want).map_err(|_| too_small)?;
        let map = MmapRegion::from_file(FileOffset::new(File::from(fd), mmap_offset), len)
            .map_err(|e| InflightError::Map(e.to_string()))?;
        let stride = usize::try_from(queue_region_size(queue_size))
            .map_err(|e| InflightError::Map(e.to_string()))?;
        let region = Self {
            map,
            num_queues,
            queue_size,
            stride,
        };
        // libvhost-user's vu_set_inflight_fd: every queue's size is the
        // region's.
        for q in 0..usize::from(num_queues) {
            region.store(q * stride + OFF_DESC_NUM, queue_size);
        }
        Ok(region)
    }

    /// The queues it covers.
    pub fn num_queues(&self) -> u16 {
        self.num_queues
    }

    fn store<T: vm_memory::AtomicAccess>(&self, at: usize, v: T) {
        // Offsets are computed from the region's own shape: always inside.
        let _ = self.map.as_volatile_slice().store(v, at, Ordering::Release);
    }

    fn load<T: vm_memory::AtomicAccess + Default>(&self, at: usize) -> T {
        self.map
            .as_volatile_slice()
            .load(at, Ordering::Acquire)
            .unwrap_or_default()
    }
}

/// The region the current connection was given, shared by the relay (which
/// installs it) and the device's queues (which use it).
#[derive(Debug, Default)]
pub struct InflightCell(Mutex<Option<Arc<InflightRegion>>>);

impl InflightCell {
    /// The current region, if the frontend gave one.
    pub fn current(&self) -> Option<Arc<InflightRegion>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Installs the region of `SET_INFLIGHT_FD`.
    pub fn set(&self, region: InflightRegion) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(region));
    }

    /// Forgets it (a new connection starts without one).
    pub fn clear(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// One queue's part of a region, as its worker uses it.
#[derive(Debug)]
pub struct InflightQueue {
    region: Arc<InflightRegion>,
    base: usize,
    /// The next chain's `counter` (the order chains were popped in).
    counter: u64,
}

impl InflightQueue {
    /// Queue `index`'s part, if the region has one.
    pub fn new(region: Arc<InflightRegion>, index: usize) -> Option<Self> {
        if index >= usize::from(region.num_queues) {
            return None;
        }
        let base = index * region.stride;
        Some(Self {
            region,
            base,
            counter: 0,
        })
    }

    fn desc(&self, head: u16) -> Option<usize> {
        (head < self.region.queue_size)
            .then(|| self.base + HEADER_LEN + usize::from(head) * DESC_LEN)
    }

    /// Starts a queue on this part: true if it was fresh (never used; it is
    /// marked as in use now), false if it holds a previous backend's state,
    /// which [`recover`](Self::recover) reads.
    pub fn start_fresh(&mut self) -> bool {
        if self.region.load::<u16>(self.base + OFF_VERSION) == 0 {
            self.region.store(self.base + OFF_VERSION, VERSION);
            self.counter = 0;
            return true;
        }
        false
    }

    /// `vu_queue_inflight_get`: chain `head` was popped.
    pub fn mark(&mut self, head: u16) {
        if let Some(at) = self.desc(head) {
            self.region.store(at + OFF_COUNTER, self.counter);
            self.counter = self.counter.wrapping_add(1);
            fence(Ordering::SeqCst);
            self.region.store(at, 1u8);
        }
    }

    /// `vu_queue_inflight_pre_put`: `head` is about to go into the used ring.
    pub fn pre_put(&self, head: u16) {
        self.region.store(self.base + OFF_LAST_BATCH_HEAD, head);
        fence(Ordering::SeqCst);
    }

    /// `vu_queue_inflight_post_put`: `head` is in the used ring, whose index
    /// is now `used_idx`.
    pub fn post_put(&self, head: u16, used_idx: u16) {
        fence(Ordering::SeqCst);
        if let Some(at) = self.desc(head) {
            self.region.store(at, 0u8);
        }
        fence(Ordering::SeqCst);
        self.region.store(self.base + OFF_USED_IDX, used_idx);
    }

    /// `vu_check_queue_inflights`: after a restart, with the used ring's
    /// index `used_idx` read from guest memory, the heads to do again in the
    /// order they were first popped. A chain whose used entry was written
    /// but not yet cleared here (the backend died in between) is not among
    /// them. Heads at or past `ring_size` are dropped (a hostile region).
    pub fn recover(&mut self, used_idx: u16, ring_size: u16) -> Vec<u16> {
        if self.region.load::<u16>(self.base + OFF_USED_IDX) != used_idx {
            let last = self.region.load::<u16>(self.base + OFF_LAST_BATCH_HEAD);
            if let Some(at) = self.desc(last) {
                self.region.store(at, 0u8);
            }
            fence(Ordering::SeqCst);
            self.region.store(self.base + OFF_USED_IDX, used_idx);
        }
        let desc_num = self
            .region
            .load::<u16>(self.base + OFF_DESC_NUM)
            .min(self.region.queue_size)
            .min(ring_size);
        let mut marked: Vec<(u64, u16)> = (0..desc_num)
            .filter_map(|head| {
                let at = self.desc(head)?;
                (self.region.load::<u8>(at) == 1)
                    .then(|| (self.region.load::<u64>(at + OFF_COUNTER), head))
            })
            .collect();
        marked.sort_unstable();
        self.counter = marked.last().map_or(0, |(c, _)| c.wrapping_add(1));
        marked.into_iter().map(|(_, head)| head).collect()
    }
}

#[cfg(test)]
mod tests;
