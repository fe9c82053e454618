//! Guest buffers from descriptor chains: the descriptors of one chain as
//! segments of guest memory, checked (direction, inside guest memory, total
//! length), then turned into iovecs so that the tap reads and writes guest
//! memory directly.
//!
//! Guest input is untrusted: every check here returns an error, none panics.

use std::ops::Deref;

use crate::vhost_user::GuestMem;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, GuestMemoryBackend, VolatileSlice};

use virtio_queue::DescriptorChain;

/// One descriptor: a run of guest memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seg {
    /// Guest-physical start.
    pub addr: GuestAddress,
    /// Length in bytes.
    pub len: usize,
}

/// Why a chain cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A descriptor has the wrong direction (a device-writable buffer in a
    /// transmit chain, or a device-readable one in a receive chain).
    #[error("a descriptor has the wrong direction")]
    WrongDirection,
    /// A descriptor points outside guest memory.
    #[error("a descriptor points outside guest memory")]
    OutsideMemory,
    /// The chain has no bytes.
    #[error("the chain is empty")]
    Empty,
    /// The chain is longer than anything a frame needs.
    #[error("the chain is longer than {0} bytes")]
    TooLong(usize),
    /// The chain needs more iovecs than one system call takes.
    #[error("the chain needs more than {0} iovecs")]
    TooManySegments(usize),
}

/// Which way the device uses a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The device reads it (transmit, control requests).
    Readable,
    /// The device writes it (receive).
    Writable,
}

/// Appends the descriptors of `chain` to `segs`, checking that all go
/// `dir` and lie inside `mem`, and that together they hold at most `max`
/// bytes. Returns the chain's length in bytes; on error `segs` is left as
/// it was.
///
/// Zero-length descriptors are skipped. A chain that loops or is longer than
/// the queue is cut by `virtio-queue`, so it ends early here and fails a
/// length check later instead of hanging.
pub fn collect<M>(
    chain: DescriptorChain<M>,
    dir: Direction,
    mem: &GuestMem,
    max: usize,
    segs: &mut Vec<Seg>,
) -> Result<usize, ChainError>
where
    M: Deref,
    M::Target: GuestMemory,
{
    let start = segs.len();
    let result = collect_inner(chain, dir, mem, max, segs);
    if result.is_err() {
        segs.truncate(start);
    }
    result
}

fn collect_inner<M>(
    chain: DescriptorChain<M>,
    dir: Direction,
    mem: &GuestMem,
    max: usize,
    segs: &mut Vec<Seg>,
) -> Result<usize, ChainError>
where
    M: Deref,
    M::Target: GuestMemory,
{
    let mut total = 0usize;
    for desc in chain {
        if desc.is_write_only() != (dir == Direction::Writable) {
            return Err(ChainError::WrongDirection);
        }
        let len = usize::try_from(desc.len()).map_err(|_| ChainError::TooLong(max))?;
        if len == 0 {
            continue;
        }
        if !GuestMemoryBackend::check_range(mem, desc.addr(), len) {
            return Err(ChainError::OutsideMemory);
        }
        total = total
            .checked_add(len)
            .filter(|&t| t <= max)
            .ok_or(ChainError::TooLong(max))?;
        segs.push(Seg {
            addr: desc.addr(),
            len,
        });
    }
    if total == 0 {
        return Err(ChainError::Empty);
    }
    Ok(total)
}

/// Appends one iovec per contiguous host mapping of `segs` to `iov` (a
/// segment that crosses a memory region boundary takes two). Fails, leaving
/// `iov` as it was, when a segment is not in `mem` or `iov` would exceed
/// `max_iov` entries.
///
/// The iovecs point into `mem`'s mappings: they are valid as long as the
/// caller keeps `mem` (the guard of the guest memory) alive.
pub fn push_iovecs(
    mem: &GuestMem,
    segs: &[Seg],
    iov: &mut Vec<libc::iovec>,
    max_iov: usize,
) -> Result<(), ChainError> {
    let start = iov.len();
    let result = segs.iter().try_for_each(|seg| {
        for slice in GuestMemoryBackend::get_slices(mem, seg.addr, seg.len) {
            let slice: VolatileSlice<'_, _> = slice.map_err(|_| ChainError::OutsideMemory)?;
            if iov.len() >= max_iov {
                return Err(ChainError::TooManySegments(max_iov));
            }
            iov.push(libc::iovec {
                iov_base: slice.ptr_guard_mut().as_ptr().cast(),
                iov_len: slice.len(),
            });
        }
        Ok(())
    });
    if result.is_err() {
        iov.truncate(start);
    }
    result
}

/// The guest address of byte `offset` of the buffer made of `segs`.
pub fn addr_at(segs: &[Seg], mut offset: usize) -> Option<GuestAddress> {
    for seg in segs {
        if offset < seg.len {
            return seg.addr.checked_add(u64::try_from(offset).ok()?);
        }
        offset -= seg.len;
    }
    None
}

/// Copies bytes `offset..offset + out.len()` of the buffer made of `segs`
/// out of guest memory. Fails when the buffer is shorter or not in `mem`.
pub fn read_at(
    mem: &GuestMem,
    segs: &[Seg],
    offset: usize,
    out: &mut [u8],
) -> Result<(), ChainError> {
    for (i, byte) in out.iter_mut().enumerate() {
        let addr = addr_at(segs, offset + i).ok_or(ChainError::Empty)?;
        *byte = mem.read_obj(addr).map_err(|_| ChainError::OutsideMemory)?;
    }
    Ok(())
}

/// Writes `bytes` at `offset` of the buffer made of `segs` into guest
/// memory. Fails when the buffer is shorter or not in `mem`.
pub fn write_at(
    mem: &GuestMem,
    segs: &[Seg],
    offset: usize,
    bytes: &[u8],
) -> Result<(), ChainError> {
    for (i, &byte) in bytes.iter().enumerate() {
        let addr = addr_at(segs, offset + i).ok_or(ChainError::Empty)?;
        mem.write_obj(byte, addr)
            .map_err(|_| ChainError::OutsideMemory)?;
    }
    Ok(())
}

/// Copies the buffer made of `segs` out of guest memory into `out`, from
/// its start. Returns the bytes copied (all of `out` unless the buffer is
/// shorter).
pub fn copy_from(mem: &GuestMem, segs: &[Seg], out: &mut [u8]) -> Result<usize, ChainError> {
    let mut done = 0;
    for seg in segs {
        if done == out.len() {
            break;
        }
        let n = seg.len.min(out.len() - done);
        mem.read_slice(&mut out[done..done + n], seg.addr)
            .map_err(|_| ChainError::OutsideMemory)?;
        done += n;
    }
    Ok(done)
}

/// Copies `data` into the buffer made of `segs`, from its start. Returns
/// the bytes copied (all of `data` unless the buffer is shorter).
pub fn copy_into(mem: &GuestMem, segs: &[Seg], data: &[u8]) -> Result<usize, ChainError> {
    let mut done = 0;
    for seg in segs {
        if done == data.len() {
            break;
        }
        let n = seg.len.min(data.len() - done);
        mem.write_slice(&data[done..done + n], seg.addr)
            .map_err(|_| ChainError::OutsideMemory)?;
        done += n;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use virtio_queue::{Queue, QueueOwnedT};

    const F_NEXT: u16 = pvio_frontend_protocol::ring::VIRTQ_DESC_F_NEXT;
    const F_WRITE: u16 = pvio_frontend_protocol::ring::VIRTQ_DESC_F_WRITE;

    fn mem() -> GuestMem {
        // Two regions with a hole between them.
        GuestMem::from_ranges(&[
            (GuestAddress(0), 0x10_0000),
            (GuestAddress(0x10_0000), 0x1000),
            (GuestAddress(0x20_0000), 0x10_0000),
        ])
        .unwrap()
    }

    fn chain_of(mem: &GuestMem, descs: &[(u64, u32, u16)]) -> (Queue, Vec<Seg>) {
        let vq = MockSplitQueue::new(mem, 16);
        let raw: Vec<RawDescriptor> = descs
            .iter()
            .enumerate()
            .map(|(i, &(addr, len, flags))| {
                let last = i + 1 == descs.len();
                let flags = if last { flags } else { flags | F_NEXT };
                let next = u16::try_from(i + 1).unwrap();
                RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next))
            })
            .collect();
        vq.build_desc_chain(&raw).unwrap();
        let q: Queue = vq.create_queue().unwrap();
        (q, Vec::new())
    }

    fn run(
        mem: &GuestMem,
        descs: &[(u64, u32, u16)],
        dir: Direction,
        max: usize,
    ) -> (Result<usize, ChainError>, Vec<Seg>) {
        let (mut q, mut segs) = chain_of(mem, descs);
        let chain = q.iter(mem).unwrap().next().unwrap();
        let r = collect(chain, dir, mem, max, &mut segs);
        (r, segs)
    }

    #[test]
    fn collects_a_readable_chain() {
        let m = mem();
        let (r, segs) = run(
            &m,
            &[(0x8000, 12, 0), (0x9000, 100, 0)],
            Direction::Readable,
            1000,
        );
        assert_eq!(r, Ok(112));
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[1].addr, GuestAddress(0x9000));
    }

    #[test]
    fn spec_2_7_4_direction_is_checked() {
        let m = mem();
        let (r, segs) = run(
            &m,
            &[(0x8000, 12, 0), (0x9000, 100, F_WRITE)],
            Direction::Readable,
            1000,
        );
        assert_eq!(r, Err(ChainError::WrongDirection));
        assert!(segs.is_empty());
        let (r, _) = run(&m, &[(0x8000, 12, 0)], Direction::Writable, 1000);
        assert_eq!(r, Err(ChainError::WrongDirection));
    }

    #[test]
    fn buffers_outside_guest_memory_are_refused() {
        let m = mem();
        // In the hole between regions.
        let (r, _) = run(&m, &[(0x15_0000, 10, 0)], Direction::Readable, 1000);
        assert_eq!(r, Err(ChainError::OutsideMemory));
        // Past the end.
        let (r, _) = run(&m, &[(0x2f_fff0, 0x20, 0)], Direction::Readable, 1000);
        assert_eq!(r, Err(ChainError::OutsideMemory));
        // Wrapping the address space.
        let (r, _) = run(&m, &[(u64::MAX - 4, 16, 0)], Direction::Readable, 1000);
        assert_eq!(r, Err(ChainError::OutsideMemory));
    }

    #[test]
    fn lengths_are_bounded_and_empty_chains_refused() {
        let m = mem();
        let (r, _) = run(
            &m,
            &[(0x8000, 600, 0), (0x9000, 600, 0)],
            Direction::Readable,
            1000,
        );
        assert_eq!(r, Err(ChainError::TooLong(1000)));
        let (r, _) = run(&m, &[(0x8000, 0, 0)], Direction::Readable, 1000);
        assert_eq!(r, Err(ChainError::Empty));
    }

    #[test]
    fn a_segment_across_regions_takes_two_iovecs() {
        let m = mem();
        let segs = [
            Seg {
                addr: GuestAddress(0xf_fff0),
                len: 0x20,
            },
            Seg {
                addr: GuestAddress(0x20_0000),
                len: 8,
            },
        ];
        let mut iov = Vec::new();
        push_iovecs(&m, &segs, &mut iov, 16).unwrap();
        assert_eq!(
            iov.iter().map(|v| v.iov_len).collect::<Vec<_>>(),
            [0x10, 0x10, 8]
        );
        let mut iov = Vec::new();
        assert_eq!(
            push_iovecs(&m, &segs, &mut iov, 2),
            Err(ChainError::TooManySegments(2))
        );
        assert!(iov.is_empty());
        let outside = [Seg {
            addr: GuestAddress(0x15_0000),
            len: 4,
        }];
        assert_eq!(
            push_iovecs(&m, &outside, &mut iov, 16),
            Err(ChainError::OutsideMemory)
        );
    }

    #[test]
    fn bytes_at_offsets_cross_segment_boundaries() {
        let m = mem();
        let segs = [
            Seg {
                addr: GuestAddress(0x1000),
                len: 11,
            },
            Seg {
                addr: GuestAddress(0x3000),
                len: 5,
            },
        ];
        assert_eq!(addr_at(&segs, 0), Some(GuestAddress(0x1000)));
        assert_eq!(addr_at(&segs, 10), Some(GuestAddress(0x100a)));
        assert_eq!(addr_at(&segs, 11), Some(GuestAddress(0x3000)));
        assert_eq!(addr_at(&segs, 16), None);
        write_at(&m, &segs, 10, &[0xaa, 0xbb]).unwrap();
        let mut out = [0u8; 2];
        read_at(&m, &segs, 10, &mut out).unwrap();
        assert_eq!(out, [0xaa, 0xbb]);
        assert_eq!(m.read_obj::<u8>(GuestAddress(0x3000)).unwrap(), 0xbb);
        assert!(write_at(&m, &segs, 15, &[1, 2]).is_err());
        assert_eq!(copy_into(&m, &segs, &[7u8; 20]).unwrap(), 16);
        assert_eq!(m.read_obj::<u8>(GuestAddress(0x3004)).unwrap(), 7);
        let mut back = [0u8; 20];
        assert_eq!(copy_from(&m, &segs, &mut back).unwrap(), 16);
        assert_eq!(back[15], 7);
    }
}
