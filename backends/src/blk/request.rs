//! One descriptor chain turned into a typed virtio-blk request: the header,
//! the data segments as host iovecs into guest memory, and where the status
//! byte goes; or, for anything malformed, the status to answer with, or an
//! error when not even a status can be written (the queue then needs a reset).
//!
//! The chain is read as the spec says a device must (virtio 1.2 §2.6.4,
//! message framing): as a device-readable byte stream followed by a
//! device-writable one, whatever the descriptor boundaries. The header is the
//! first 16 readable bytes, the status the last writable byte.
//!
//! Everything here is guest input: no arithmetic that can overflow, no index
//! that can panic, no host address outside a guest memory region. Shared by
//! the queue workers, the unit tests and the fuzz target; it must not know
//! about engines, threads or vhost-user.

use std::ops::Deref;

use crate::vhost_user::GuestMem;
use pvio_frontend_protocol::blk::{
    BlkReqHeader, DiscardWriteZeroesSeg, RequestType, SECTOR_SIZE, VIRTIO_BLK_ID_BYTES,
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_UNSUPP,
};
use pvio_frontend_protocol::zerocopy::FromBytes;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::DescriptorChain;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, GuestMemoryBackend};

use super::config::{DiskInfo, MAX_DATA_BYTES, MAX_DISCARD_SECTORS, MAX_DISCARD_SEG, MAX_SEGMENTS};
use super::metrics::GuestError;

/// Header length (`struct virtio_blk_outhdr`).
const HEADER_LEN: u64 = 16;
/// One discard / write-zeroes range.
const DWZ_SEG_LEN: u64 = 16;
/// Descriptors kept per chain: data segments plus header and status, with
/// room for a header or status split over several descriptors. A longer
/// chain is answered with IOERR.
const MAX_DESCS: usize = 1040;

/// A chain after which no status can be reported: the queue needs a reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The chain loops, points past the descriptor table, or has an invalid
    /// indirect table: it ends with a descriptor that says more follow.
    #[error("the descriptor chain loops or is cut short")]
    Truncated,
    /// The last descriptor is not device-writable, or is empty.
    #[error("the chain does not end with a device-writable status byte")]
    NoStatus,
    /// The status byte lies outside guest memory.
    #[error("the status byte is outside guest memory")]
    StatusOutsideMemory,
}

/// What a request asks for, once every check has passed, or how it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read `data_len` bytes at `offset` into the iovecs.
    Read {
        /// Byte offset in the disk.
        offset: u64,
    },
    /// Write the iovecs (`data_len` bytes) at `offset`.
    Write {
        /// Byte offset in the disk.
        offset: u64,
    },
    /// Make everything written so far durable.
    Flush,
    /// Write the serial (GET_ID) into the iovecs.
    GetId,
    /// Deallocate `len` bytes at `offset`.
    Discard {
        /// Byte offset.
        offset: u64,
        /// Length in bytes (may be 0).
        len: u64,
    },
    /// Zero `len` bytes at `offset`, deallocating them if `unmap`.
    WriteZeroes {
        /// Byte offset.
        offset: u64,
        /// Length in bytes (may be 0).
        len: u64,
        /// The driver allows deallocation.
        unmap: bool,
    },
    /// Answer at once with `status` (IOERR or UNSUPP).
    Fail {
        /// `VIRTIO_BLK_S_*`.
        status: u8,
        /// What the guest did wrong, for the counters.
        error: GuestError,
        /// A few words for the (rate-limited) log.
        detail: &'static str,
    },
}

/// A parsed request. Reused from one chain to the next so that the data path
/// does not allocate.
#[derive(Debug)]
pub struct Request {
    /// The chain's head descriptor index (what goes into the used ring).
    pub head: u16,
    /// What to do.
    pub action: Action,
    /// Where the status byte goes.
    pub status: GuestAddress,
    /// Host addresses of the data (reads and writes): guest memory, each
    /// iovec inside one region (a buffer that spans two adjacent regions
    /// becomes two iovecs).
    pub iovecs: Vec<libc::iovec>,
    /// Total bytes of the data.
    pub data_len: u64,
    descs: Vec<Piece>,
}

/// One descriptor's buffer, or part of one.
#[derive(Debug, Clone, Copy)]
struct Piece {
    addr: GuestAddress,
    len: u64,
    writable: bool,
}

// SAFETY: the raw pointers in `iovecs` are plain host addresses of guest
// memory; whoever dereferences them (an engine, under the contract of
// `Engine::push`) keeps the mapping alive. Moving the addresses to another
// thread is no different from moving integers.
unsafe impl Send for Request {}

impl Default for Request {
    fn default() -> Self {
        Self::new()
    }
}

impl Request {
    /// An empty request, to be filled by [`parse`].
    pub fn new() -> Self {
        Self {
            head: 0,
            action: Action::Flush,
            status: GuestAddress(0),
            iovecs: Vec::new(),
            data_len: 0,
            descs: Vec::new(),
        }
    }

    /// Bytes the device wrote into the chain when the request ends with
    /// `status_ok` (the used-ring length, virtio 1.2 §2.7.8): the data read
    /// and the status byte.
    pub fn used_len(&self, status_ok: bool) -> u32 {
        let data = match self.action {
            Action::Read { .. } | Action::GetId if status_ok => self.data_len,
            _ => 0,
        };
        u32::try_from(data.saturating_add(1)).unwrap_or(u32::MAX)
    }

    /// Writes the first [`data_len`](Self::data_len) bytes of `id` into the
    /// writable buffers of a GET_ID request.
    pub fn write_id(
        &self,
        mem: &GuestMem,
        id: &[u8; VIRTIO_BLK_ID_BYTES],
    ) -> Result<(), vm_memory::GuestMemoryError> {
        let want = usize::try_from(self.data_len).unwrap_or(0).min(id.len());
        let mut done = 0;
        for p in self.descs.iter().filter(|p| p.writable) {
            if done == want {
                break;
            }
            let n = usize::try_from(p.len)
                .unwrap_or(usize::MAX)
                .min(want - done);
            mem.write_slice(&id[done..done + n], p.addr)?;
            done += n;
        }
        Ok(())
    }

    fn fail(&mut self, status: u8, error: GuestError, detail: &'static str) {
        self.action = Action::Fail {
            status,
            error,
            detail,
        };
        self.iovecs.clear();
        self.data_len = 0;
    }
}

/// Parses `chain` into `req`, checking it against `disk`.
///
/// `Ok` means a status byte can be written: `req.action` says what to do,
/// possibly [`Action::Fail`]. `Err` means it cannot, and the queue must stop
/// until the driver resets it.
pub fn parse<M>(
    chain: DescriptorChain<M>,
    mem: &GuestMem,
    disk: &DiskInfo,
    req: &mut Request,
) -> Result<(), ChainError>
where
    M: Deref,
    M::Target: GuestMemory,
{
    parse_descriptors(chain.head_index(), chain, mem, disk, req)
}

/// [`parse`] for the descriptors of the chain at `head`, however they were
/// read (a chain resubmitted after a restart is read by its head, not from
/// the avail ring).
pub fn parse_descriptors(
    head: u16,
    chain: impl Iterator<Item = Descriptor>,
    mem: &GuestMem,
    disk: &DiskInfo,
    req: &mut Request,
) -> Result<(), ChainError> {
    req.head = head;
    req.iovecs.clear();
    req.data_len = 0;
    req.descs.clear();

    // The whole chain, remembering whether it ended where it said it would.
    let mut more_follow = true;
    let mut too_long = false;
    let mut last = None;
    for d in chain {
        more_follow = d.has_next();
        let piece = Piece {
            addr: d.addr(),
            len: u64::from(d.len()),
            writable: d.is_write_only(),
        };
        if req.descs.len() < MAX_DESCS {
            req.descs.push(piece);
        } else {
            too_long = true;
        }
        last = Some(piece);
    }
    let Some(last) = last.filter(|_| !more_follow) else {
        return Err(ChainError::Truncated);
    };

    // The status byte: the last byte of the last descriptor (§5.2.6).
    if !last.writable || last.len == 0 {
        return Err(ChainError::NoStatus);
    }
    req.status = last
        .addr
        .checked_add(last.len - 1)
        .ok_or(ChainError::StatusOutsideMemory)?;
    if mem.get_slice(req.status, 1).is_err() {
        return Err(ChainError::StatusOutsideMemory);
    }
    if too_long {
        req.fail(VIRTIO_BLK_S_IOERR, GuestError::BadLength, "chain too long");
        return Ok(());
    }
    // The rest of the chain, without the status byte.
    if let Some(end) = req.descs.last_mut() {
        end.len -= 1;
    }

    // §2.7.4.2: device-readable buffers come before device-writable ones.
    if req
        .descs
        .windows(2)
        .any(|w| w[0].writable && !w[1].writable)
    {
        req.fail(
            VIRTIO_BLK_S_IOERR,
            GuestError::BadLayout,
            "device-readable buffer after a device-writable one",
        );
        return Ok(());
    }

    let readable: u64 = req
        .descs
        .iter()
        .filter(|p| !p.writable)
        .map(|p| p.len)
        .sum();
    if readable < HEADER_LEN {
        req.fail(
            VIRTIO_BLK_S_IOERR,
            GuestError::BadLayout,
            "header shorter than 16 bytes",
        );
        return Ok(());
    }
    let mut header = [0u8; 16];
    if copy_from_stream(mem, &req.descs, false, 0, &mut header).is_err() {
        req.fail(
            VIRTIO_BLK_S_IOERR,
            GuestError::BadAddress,
            "header outside guest memory",
        );
        return Ok(());
    }
    let Ok(header) = BlkReqHeader::read_from_bytes(&header) else {
        req.fail(
            VIRTIO_BLK_S_IOERR,
            GuestError::BadLayout,
            "header unreadable",
        );
        return Ok(());
    };
    let out_len = readable - HEADER_LEN;
    let in_len: u64 = req.descs.iter().filter(|p| p.writable).map(|p| p.len).sum();

    match header.request_type() {
        RequestType::In => {
            if out_len > 0 {
                req.fail(
                    VIRTIO_BLK_S_IOERR,
                    GuestError::BadLayout,
                    "read with device-readable data",
                );
                return Ok(());
            }
            data_request(mem, disk, req, &header, true);
        }
        RequestType::Out => {
            if disk.read_only {
                req.fail(
                    VIRTIO_BLK_S_IOERR,
                    GuestError::WriteToReadOnly,
                    "write to a read-only disk",
                );
                return Ok(());
            }
            if in_len > 0 {
                req.fail(
                    VIRTIO_BLK_S_IOERR,
                    GuestError::BadLayout,
                    "write with device-writable data",
                );
                return Ok(());
            }
            data_request(mem, disk, req, &header, false);
        }
        RequestType::Flush => req.action = Action::Flush,
        RequestType::GetId => get_id(disk, req, in_len),
        kind @ (RequestType::Discard | RequestType::WriteZeroes) => {
            discard_write_zeroes(mem, disk, req, kind == RequestType::Discard, out_len);
        }
        RequestType::GetLifetime | RequestType::SecureErase | RequestType::Unsupported(_) => {
            req.fail(
                VIRTIO_BLK_S_UNSUPP,
                GuestError::Unsupported,
                "request type not offered",
            );
        }
    }
    Ok(())
}

/// Reads and writes: the data must be whole sectors, inside the disk, in at
/// most [`MAX_SEGMENTS`] pieces of mapped guest memory.
fn data_request(
    mem: &GuestMem,
    disk: &DiskInfo,
    req: &mut Request,
    header: &BlkReqHeader,
    read: bool,
) {
    let (skip, writable) = if read { (0, true) } else { (HEADER_LEN, false) };
    if let Err((error, detail)) = map_stream(mem, req, writable, skip) {
        req.fail(VIRTIO_BLK_S_IOERR, error, detail);
        return;
    }
    let len = req.data_len;
    if len % SECTOR_SIZE != 0 {
        req.fail(
            VIRTIO_BLK_S_IOERR,
            GuestError::BadLength,
            "data not a whole number of sectors",
        );
        return;
    }
    if len > MAX_DATA_BYTES {
        req.fail(
            VIRTIO_BLK_S_IOERR,
            GuestError::BadLength,
            "request larger than 32 MiB",
        );
        return;
    }
    let Some(offset) = in_disk(disk, header.sector(), len) else {
        req.fail(
            VIRTIO_BLK_S_IOERR,
            GuestError::OutOfRange,
            "request past the end of the disk",
        );
        return;
    };
    req.action = if read {
        Action::Read { offset }
    } else {
        Action::Write { offset }
    };
}

/// GET_ID: the serial, NUL-padded to 20 bytes, goes into the first bytes of
/// the writable data (§5.2.6: a shorter buffer gets what fits); see
/// [`Request::write_id`].
fn get_id(disk: &DiskInfo, req: &mut Request, in_len: u64) {
    if disk.serial.is_none() {
        req.fail(
            VIRTIO_BLK_S_UNSUPP,
            GuestError::Unsupported,
            "GET_ID without a serial",
        );
        return;
    }
    if in_len == 0 {
        req.fail(
            VIRTIO_BLK_S_IOERR,
            GuestError::BadLength,
            "GET_ID without a buffer",
        );
        return;
    }
    req.data_len = in_len.min(VIRTIO_BLK_ID_BYTES as u64);
    req.action = Action::GetId;
}

/// DISCARD and WRITE_ZEROES: one range (`max_*_seg` is 1), checked flags,
/// inside the disk, not on a read-only disk.
fn discard_write_zeroes(
    mem: &GuestMem,
    disk: &DiskInfo,
    req: &mut Request,
    discard: bool,
    out_len: u64,
) {
    if disk.read_only {
        req.fail(
            VIRTIO_BLK_S_IOERR,
            GuestError::WriteToReadOnly,
            "discard or write-zeroes on a read-only disk",
        );
        return;
    }
    if out_len == 0 || out_len % DWZ_SEG_LEN != 0 {
        req.fail(
            VIRTIO_BLK_S_IOERR,
            GuestError::BadLength,
            "range list not a whole number of segments",
        );
        return;
    }
    if out_len / DWZ_SEG_LEN > u64::from(MAX_DISCARD_SEG) {
        req.fail(
            VIRTIO_BLK_S_IOERR,
            GuestError::BadLength,
            "more ranges than max_discard_seg",
        );
        return;
    }
    let mut raw = [0u8; 16];
    if copy_from_stream(mem, &req.descs, false, HEADER_LEN, &mut raw).is_err() {
        req.fail(
            VIRTIO_BLK_S_IOERR,
            GuestError::BadAddress,
            "range outside guest memory",
        );
        return;
    }
    let Ok(seg) = DiscardWriteZeroesSeg::read_from_bytes(&raw) else {
        req.fail(
            VIRTIO_BLK_S_IOERR,
            GuestError::BadLayout,
            "range unreadable",
        );
        return;
    };
    // §5.2.6.2: unknown flags, and UNMAP on a discard, are UNSUPP.
    if seg.has_reserved_flags() || (discard && seg.unmap()) {
        req.fail(
            VIRTIO_BLK_S_UNSUPP,
            GuestError::Unsupported,
            "unknown range flags",
        );
        return;
    }
    if seg.num_sectors() > MAX_DISCARD_SECTORS {
        req.fail(
            VIRTIO_BLK_S_IOERR,
            GuestError::BadLength,
            "range larger than max_discard_sectors",
        );
        return;
    }
    let len = u64::from(seg.num_sectors()) * SECTOR_SIZE;
    let Some(offset) = in_disk(disk, seg.sector(), len) else {
        req.fail(
            VIRTIO_BLK_S_IOERR,
            GuestError::OutOfRange,
            "range past the end of the disk",
        );
        return;
    };
    req.action = if discard {
        Action::Discard { offset, len }
    } else {
        Action::WriteZeroes {
            offset,
            len,
            unmap: seg.unmap(),
        }
    };
}

/// The byte offset of `sector` if `len` bytes from there fit in the disk.
fn in_disk(disk: &DiskInfo, sector: u64, len: u64) -> Option<u64> {
    let offset = sector.checked_mul(SECTOR_SIZE)?;
    let end = offset.checked_add(len)?;
    (end <= disk.size_bytes()).then_some(offset)
}

/// Maps the readable (`writable == false`) or writable stream, from byte
/// `skip` on, into `req.iovecs` and `req.data_len`.
fn map_stream(
    mem: &GuestMem,
    req: &mut Request,
    writable: bool,
    mut skip: u64,
) -> Result<(), (GuestError, &'static str)> {
    let mut total: u64 = 0;
    for p in req.descs.iter().filter(|p| p.writable == writable) {
        let cut = skip.min(p.len);
        skip -= cut;
        let len = p.len - cut;
        if len == 0 {
            continue;
        }
        let addr = p
            .addr
            .checked_add(cut)
            .ok_or((GuestError::BadAddress, "buffer outside guest memory"))?;
        let size = usize::try_from(len).map_err(|_| (GuestError::BadLength, "buffer too large"))?;
        // One iovec per guest memory region the buffer covers; a gap in
        // guest memory is an error.
        for slice in GuestMemoryBackend::get_slices(mem, addr, size) {
            let slice =
                slice.map_err(|_| (GuestError::BadAddress, "buffer outside guest memory"))?;
            if req.iovecs.len() >= MAX_SEGMENTS as usize {
                return Err((GuestError::BadLength, "more than 1024 data segments"));
            }
            req.iovecs.push(libc::iovec {
                iov_base: slice.ptr_guard_mut().as_ptr().cast(),
                iov_len: slice.len(),
            });
        }
        total = total.saturating_add(len);
    }
    req.data_len = total;
    Ok(())
}

/// Copies `out.len()` bytes of the readable or writable stream, starting at
/// byte `skip`, out of guest memory.
fn copy_from_stream(
    mem: &GuestMem,
    descs: &[Piece],
    writable: bool,
    mut skip: u64,
    out: &mut [u8],
) -> Result<(), vm_memory::GuestMemoryError> {
    let mut filled = 0;
    for p in descs.iter().filter(|p| p.writable == writable) {
        if filled == out.len() {
            break;
        }
        let cut = skip.min(p.len);
        skip -= cut;
        let avail = usize::try_from(p.len - cut).unwrap_or(usize::MAX);
        let n = avail.min(out.len() - filled);
        if n == 0 {
            continue;
        }
        let addr = p
            .addr
            .checked_add(cut)
            .ok_or(vm_memory::GuestMemoryError::InvalidGuestAddress(p.addr))?;
        mem.read_slice(&mut out[filled..filled + n], addr)?;
        filled += n;
    }
    if filled == out.len() {
        Ok(())
    } else {
        Err(vm_memory::GuestMemoryError::PartialBuffer {
            expected: out.len(),
            completed: filled,
        })
    }
}

#[cfg(test)]
mod tests;
