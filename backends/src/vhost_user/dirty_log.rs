//! Dirty-page logging for migration (vhost-user spec, "Migration"): while
//! the frontend migrates the guest, every guest page a backend writes (data
//! read from a disk, a received frame, the used ring) must be marked in the
//! log the frontend shares with `VHOST_USER_SET_LOG_BASE`: one bit per
//! 4 KiB page of guest physical memory.
//!
//! rust-vmm's handler maps the log and installs a per-region bitmap on the
//! guest memory (`BitmapReplace`); vm-memory then marks every write made
//! through its accessors. [`LogBitmap`] is that bitmap. With logging off a
//! mark is one relaxed load of a flag and a branch: no lock, no shared
//! counter, no per-byte work, so the data path costs what it did with no
//! bitmap. Slices borrow their region's bitmap instead of counting
//! references to it.
//!
//! Writes that do not go through vm-memory (the kernel filling iovecs, for
//! io_uring or `readv`) are marked by [`mark_iovecs`] once they are done.
//!
//! Logging stops when the frontend acks features without `VHOST_F_LOG_ALL`
//! (the relay calls [`stop`]); the handler itself ignores that.
//!
//! The guest memory types every backend, the server and the relay share
//! ([`GuestMem`], [`GM`]) live here, because their regions carry the log.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use vhost_user_backend::bitmap::{AtomicBitmapMmap, BitmapReplace, MemRegionBitmap, MmapLogReg};
use vm_memory::bitmap::{Bitmap, BitmapSlice, WithBitmapSlice};
use vm_memory::mmap::NewBitmap;
use vm_memory::{Address, GuestMemoryBackend, GuestMemoryRegion};

/// `VHOST_F_LOG_ALL`: the device logs its writes while migration asks it to.
pub const VHOST_F_LOG_ALL: u64 = 1 << 26;

/// Guest memory with a dirty log on each region: what every pvio backend
/// reads and writes.
pub type GuestMem = vm_memory::GuestMemoryMmap<LogBitmap>;

/// The guest memory as the vhost-user crates hand it out: swapped atomically
/// when the frontend sends a new memory table. Its regions carry the dirty
/// log of a migration.
pub type GM = vm_memory::GuestMemoryAtomic<GuestMem>;

/// The log's page (`VHOST_LOG_PAGE`).
const LOG_PAGE: usize = 0x1000;

/// The bitmap of one guest memory region: empty until the frontend sets a
/// log, then the region's part of it.
#[derive(Debug, Default, Clone)]
pub struct LogBitmap {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// A log is installed: the only thing a write looks at with logging off.
    on: AtomicBool,
    log: RwLock<Option<RegionLog>>,
}

impl LogBitmap {
    /// Whether writes to this region are logged now.
    #[inline]
    pub fn is_on(&self) -> bool {
        self.inner.on.load(Ordering::Relaxed)
    }

    /// Forgets the log: later writes are not marked.
    pub fn stop(&self) {
        let mut log = self
            .inner
            .log
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        self.inner.on.store(false, Ordering::Relaxed);
        *log = None;
    }

    fn mark(&self, offset: usize, len: usize) {
        if !self.is_on() {
            return;
        }
        let log = self
            .inner
            .log
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(log) = log.as_ref() {
            log.mark(offset, len);
        }
    }

    fn dirty(&self, offset: usize) -> bool {
        let log = self
            .inner
            .log
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        log.as_ref().is_some_and(|l| l.dirty(offset))
    }
}

impl<'a> WithBitmapSlice<'a> for LogBitmap {
    type S = LogSlice<'a>;
}

impl Bitmap for LogBitmap {
    #[inline]
    fn mark_dirty(&self, offset: usize, len: usize) {
        self.mark(offset, len);
    }

    fn dirty_at(&self, offset: usize) -> bool {
        self.dirty(offset)
    }

    #[inline]
    fn slice_at(&self, offset: usize) -> LogSlice<'_> {
        LogSlice {
            region: self,
            base: offset,
        }
    }
}

impl NewBitmap for LogBitmap {
    fn with_len(_len: usize) -> Self {
        Self::default()
    }
}

impl BitmapReplace for LogBitmap {
    type InnerBitmap = RegionLog;

    fn replace(&self, log: RegionLog) {
        let mut slot = self
            .inner
            .log
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        *slot = Some(log);
        self.inner.on.store(true, Ordering::Relaxed);
    }
}

/// A part of a region's bitmap, for a slice of the region starting `base`
/// bytes into it. Borrows the region's bitmap: making one costs nothing.
#[derive(Debug, Clone, Copy)]
pub struct LogSlice<'a> {
    region: &'a LogBitmap,
    base: usize,
}

impl<'a> LogSlice<'a> {
    /// The bitmap of the whole region.
    pub fn region(&self) -> &'a LogBitmap {
        self.region
    }
}

impl<'b> WithBitmapSlice<'b> for LogSlice<'_> {
    type S = Self;
}

impl BitmapSlice for LogSlice<'_> {}

impl Bitmap for LogSlice<'_> {
    #[inline]
    fn mark_dirty(&self, offset: usize, len: usize) {
        if self.region.is_on() {
            self.region.mark(self.base.wrapping_add(offset), len);
        }
    }

    fn dirty_at(&self, offset: usize) -> bool {
        self.region.dirty(self.base.wrapping_add(offset))
    }

    #[inline]
    fn slice_at(&self, offset: usize) -> Self {
        Self {
            region: self.region,
            base: self.base.wrapping_add(offset),
        }
    }
}

/// One region's window on the frontend's log.
#[derive(Debug)]
pub struct RegionLog {
    log: Arc<MmapLogReg>,
    /// The region's first page in guest physical pages.
    first_page: usize,
    /// Pages the region touches (a partial last page counts).
    pages: usize,
}

impl MemRegionBitmap for RegionLog {
    fn new<R: GuestMemoryRegion>(region: &R, log: Arc<MmapLogReg>) -> std::io::Result<Self> {
        // The crate's own check that the log covers the region (it refuses a
        // log too small for the region's last page).
        AtomicBitmapMmap::new(region, Arc::clone(&log))?;
        let bad = || std::io::Error::from(std::io::ErrorKind::InvalidData);
        let start = usize::try_from(region.start_addr().raw_value()).map_err(|_| bad())?;
        let len = usize::try_from(region.len()).map_err(|_| bad())?;
        let end = start.checked_add(len).ok_or_else(bad)?;
        let first_page = start / LOG_PAGE;
        Ok(Self {
            log,
            first_page,
            pages: end.div_ceil(LOG_PAGE) - first_page,
        })
    }
}

impl RegionLog {
    /// The log byte and bit of the page `offset` bytes into the region, if
    /// the region has it.
    fn bit(&self, offset: usize) -> Option<(&AtomicU8, u8)> {
        let page = offset / LOG_PAGE;
        if page >= self.pages {
            return None;
        }
        let page = self.first_page + page;
        // In range: `new` checked that the log covers the region's last page.
        Some((&self.log[page / 8], 1 << (page % 8)))
    }

    fn mark(&self, offset: usize, len: usize) {
        if len == 0 {
            return;
        }
        let last = offset.saturating_add(len - 1);
        let mut at = offset - offset % LOG_PAGE;
        while at <= last {
            let Some((byte, bit)) = self.bit(at) else {
                return;
            };
            byte.fetch_or(bit, Ordering::Relaxed);
            at = match at.checked_add(LOG_PAGE) {
                Some(a) => a,
                None => return,
            };
        }
    }

    fn dirty(&self, offset: usize) -> bool {
        self.bit(offset)
            .is_some_and(|(byte, bit)| byte.load(Ordering::Relaxed) & bit != 0)
    }
}

/// Whether any region of `mem` is logged now (a log covers every region or
/// none).
#[inline]
pub fn logging(mem: &GuestMem) -> bool {
    mem.iter().any(|r| r.bitmap().region().is_on())
}

/// Marks the first `written` bytes of `iov` (host addresses into `mem`'s
/// regions, filled by the kernel) as written, while logging is on. An iovec
/// outside every region is skipped: it cannot be guest memory.
pub fn mark_iovecs(mem: &GuestMem, iov: &[libc::iovec], written: usize) {
    if !logging(mem) {
        return;
    }
    let mut left = written;
    for v in iov {
        if left == 0 {
            break;
        }
        let len = v.iov_len.min(left);
        left -= len;
        let host = v.iov_base as usize;
        for r in mem.iter() {
            let start = r.as_ptr() as usize;
            let Some(offset) = host.checked_sub(start) else {
                continue;
            };
            if offset < r.size() {
                r.bitmap().mark_dirty(offset, len.min(r.size() - offset));
                break;
            }
        }
    }
}

/// Stops logging on every region of `mem` (the frontend acked features
/// without `VHOST_F_LOG_ALL`).
pub fn stop(mem: &GuestMem) {
    for r in mem.iter() {
        r.bitmap().region().stop();
    }
}
