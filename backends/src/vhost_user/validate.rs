//! Checks of a frontend's control messages before the vhost-user daemon acts
//! on them: guest memory regions against the files that back them, queue
//! sizes against what the device accepts, and ring addresses against the
//! memory that is mapped.
//!
//! rust-vmm's handler maps whatever region it is given: a region longer than
//! its memfd maps, and the backend dies of SIGBUS the first time it touches
//! the part past the end. It also takes a queue size that is not a power of
//! two, and ring addresses whose rings run past the end of their region.
//! A [`Validator`] sees every message first (the relay calls it) and refuses
//! such a message; the relay then closes the connection, and the server
//! serves the next frontend.
//!
//! It must not know what device is served: the relay gives it the number of
//! queues and the largest queue size. It sees only control messages; the data
//! path (shared memory and eventfds) never passes here.

use std::os::fd::OwnedFd;

use rustix::fs::{fstat, FileType};

/// `VHOST_USER_SET_MEM_TABLE`.
pub const SET_MEM_TABLE: u32 = 5;
/// `VHOST_USER_SET_VRING_NUM`.
pub const SET_VRING_NUM: u32 = 8;
/// `VHOST_USER_SET_VRING_ADDR`.
pub const SET_VRING_ADDR: u32 = 9;
/// `VHOST_USER_SET_VRING_KICK`.
pub const SET_VRING_KICK: u32 = 12;
/// `VHOST_USER_SET_LOG_BASE`.
pub const SET_LOG_BASE: u32 = 6;
/// `VHOST_USER_ADD_MEM_REG`.
pub const ADD_MEM_REG: u32 = 37;
/// `VHOST_USER_REM_MEM_REG`.
pub const REM_MEM_REG: u32 = 38;

/// One memory region on the wire: guest address, size, the frontend's
/// address, offset into the fd.
const REGION_LEN: usize = 32;

/// Why a message was refused. The connection is closed after any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The payload is shorter or longer than the message needs.
    #[error("message {request} has a {len}-byte payload, which does not fit its layout")]
    Layout {
        /// The request code.
        request: u32,
        /// The payload length.
        len: usize,
    },
    /// The number of fds does not match the regions.
    #[error("{regions} memory region(s) came with {fds} fd(s)")]
    FdCount {
        /// Regions in the message.
        regions: usize,
        /// Fds with it.
        fds: usize,
    },
    /// The fd behind a region cannot be checked or is not a file.
    #[error("the fd behind memory region {index} is not a regular file (memfd, tmpfs or hugetlbfs file)")]
    NotAFile {
        /// The region's index in the message.
        index: usize,
    },
    /// A region is empty or runs past the end of its file.
    #[error("memory region {index} ({size} bytes at offset {offset}) runs past the end of its {file_size}-byte file")]
    PastEnd {
        /// The region's index in the message.
        index: usize,
        /// The region's size.
        size: u64,
        /// Its offset into the file.
        offset: u64,
        /// The file's size.
        file_size: u64,
    },
    /// A queue index beyond the device's queues.
    #[error("queue {index} does not exist; the device has {queues}")]
    QueueIndex {
        /// The index asked for.
        index: u32,
        /// The device's queues.
        queues: usize,
    },
    /// A queue size the device does not accept.
    #[error("queue {index}: size {num} is not a power of two between 1 and {max}")]
    QueueSize {
        /// The queue.
        index: u32,
        /// The size asked for.
        num: u32,
        /// The device's largest queue.
        max: usize,
    },
    /// The dirty log's fd is not a regular file, or the log is empty or runs
    /// past the end of it.
    #[error("the dirty log ({size} bytes at offset {offset}) does not lie inside its fd, a regular file of {file_size} bytes")]
    LogPastEnd {
        /// The log's size.
        size: u64,
        /// Its offset into the file.
        offset: u64,
        /// The file's size (0 if it is not a regular file).
        file_size: u64,
    },
    /// The dirty log has too few bits for the guest memory.
    #[error("the dirty log has {size} bytes; the guest memory needs {need}")]
    LogTooSmall {
        /// The log's size.
        size: u64,
        /// One bit per 4 KiB page up to the end of the highest region.
        need: u64,
    },
    /// A ring that does not lie inside one mapped region.
    #[error("queue {index}: the {ring} ring ({len} bytes at {addr:#x}) lies outside the mapped guest memory")]
    RingOutside {
        /// The queue.
        index: u32,
        /// "descriptor", "available" or "used".
        ring: &'static str,
        /// The frontend's address of the ring.
        addr: u64,
        /// Its length for the queue's size.
        len: u64,
    },
}

/// A mapped region, in the frontend's address space (the one ring addresses
/// are given in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Region {
    guest_addr: u64,
    user_addr: u64,
    size: u64,
}

/// One queue's state as far as the checks need it.
#[derive(Debug, Clone, Copy, Default)]
struct Queue {
    /// The size set by `SET_VRING_NUM` (the device's largest until then,
    /// as in the handler).
    num: Option<u32>,
    /// Descriptor table, used ring, available ring.
    addr: Option<(u64, u64, u64)>,
}

/// The state of one connection's checks.
#[derive(Debug)]
pub struct Validator {
    max_queue_size: usize,
    regions: Vec<Region>,
    queues: Vec<Queue>,
}

fn u32_at(p: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&p[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(p: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&p[at..at + 8]);
    u64::from_le_bytes(b)
}

impl Validator {
    /// Checks for a device with `num_queues` queues of at most
    /// `max_queue_size` descriptors.
    pub fn new(num_queues: usize, max_queue_size: usize) -> Self {
        Self {
            max_queue_size,
            regions: Vec::new(),
            queues: vec![Queue::default(); num_queues],
        }
    }

    /// Checks one request (its code, payload and fds) and records what later
    /// checks need. An `Err` means: do not pass it on, close the connection.
    pub fn check(&mut self, request: u32, payload: &[u8], fds: &[OwnedFd]) -> Result<(), Refusal> {
        let layout = |want: bool| {
            if want {
                Ok(())
            } else {
                Err(Refusal::Layout {
                    request,
                    len: payload.len(),
                })
            }
        };
        match request {
            SET_MEM_TABLE => {
                layout(payload.len() >= 8)?;
                let n = usize::try_from(u32_at(payload, 0)).unwrap_or(usize::MAX);
                layout(
                    n.checked_mul(REGION_LEN).and_then(|l| l.checked_add(8)) == Some(payload.len()),
                )?;
                if fds.len() != n {
                    return Err(Refusal::FdCount {
                        regions: n,
                        fds: fds.len(),
                    });
                }
                let mut regions = Vec::with_capacity(n);
                for (index, fd) in fds.iter().enumerate() {
                    regions.push(check_region(index, &payload[8 + index * REGION_LEN..], fd)?);
                }
                self.regions = regions;
            }
            ADD_MEM_REG => {
                layout(payload.len() == 8 + REGION_LEN)?;
                let [fd] = fds else {
                    return Err(Refusal::FdCount {
                        regions: 1,
                        fds: fds.len(),
                    });
                };
                let region = check_region(0, &payload[8..], fd)?;
                self.regions.push(region);
            }
            REM_MEM_REG => {
                layout(payload.len() == 8 + REGION_LEN)?;
                let gone = parse_region(&payload[8..]);
                self.regions
                    .retain(|r| (r.user_addr, r.size) != (gone.user_addr, gone.size));
            }
            SET_LOG_BASE => {
                layout(payload.len() == 16)?;
                let [fd] = fds else {
                    return Err(Refusal::FdCount {
                        regions: 1,
                        fds: fds.len(),
                    });
                };
                self.check_log(u64_at(payload, 0), u64_at(payload, 8), fd)?;
            }
            SET_VRING_NUM => {
                layout(payload.len() == 8)?;
                let (index, num) = (u32_at(payload, 0), u32_at(payload, 4));
                let max = self.max_queue_size;
                let queue = self.queue(index)?;
                let ok = num.is_power_of_two() && usize::try_from(num).is_ok_and(|n| n <= max);
                if !ok {
                    return Err(Refusal::QueueSize { index, num, max });
                }
                queue.num = Some(num);
            }
            SET_VRING_ADDR => {
                layout(payload.len() == 40)?;
                let index = u32_at(payload, 0);
                let addr = (u64_at(payload, 8), u64_at(payload, 16), u64_at(payload, 24));
                self.queue(index)?.addr = Some(addr);
                // Without a memory table the handler does not translate the
                // addresses yet; they are checked when the queue starts.
                if !self.regions.is_empty() {
                    self.check_rings(index)?;
                }
            }
            SET_VRING_KICK => {
                layout(payload.len() == 8)?;
                // The low byte is the queue; a kick fd starts the queue.
                let index = u32::try_from(u64_at(payload, 0) & 0xff).unwrap_or(u32::MAX);
                self.queue(index)?;
                self.check_rings(index)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// The dirty log of `SET_LOG_BASE`: inside its file (a log past the end
    /// would kill the backend with SIGBUS at the first mark), page aligned,
    /// and with a bit for every page of the memory mapped so far.
    fn check_log(&self, size: u64, offset: u64, fd: &OwnedFd) -> Result<(), Refusal> {
        let file_size = fstat(fd)
            .ok()
            .filter(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile)
            .map_or(0, |st| u64::try_from(st.st_size).unwrap_or(0));
        let fits = size > 0
            && offset % 4096 == 0
            && offset.checked_add(size).is_some_and(|end| end <= file_size);
        if !fits {
            return Err(Refusal::LogPastEnd {
                size,
                offset,
                file_size,
            });
        }
        let end = self
            .regions
            .iter()
            .map(|r| r.guest_addr.saturating_add(r.size))
            .max()
            .unwrap_or(0);
        let need = end.div_ceil(4096).div_ceil(8);
        if size < need {
            return Err(Refusal::LogTooSmall { size, need });
        }
        Ok(())
    }

    fn queue(&mut self, index: u32) -> Result<&mut Queue, Refusal> {
        let queues = self.queues.len();
        usize::try_from(index)
            .ok()
            .and_then(|i| self.queues.get_mut(i))
            .ok_or(Refusal::QueueIndex { index, queues })
    }

    /// The split rings of queue `index`, for its size, each inside one
    /// region. A queue whose addresses were never set is left to the handler
    /// (it refuses to start it).
    fn check_rings(&mut self, index: u32) -> Result<(), Refusal> {
        let max = u64::try_from(self.max_queue_size).unwrap_or(u64::MAX);
        let queue = *self.queue(index)?;
        let Some((desc, used, avail)) = queue.addr else {
            return Ok(());
        };
        let num = queue.num.map_or(max, u64::from);
        // virtio 1.x, 2.7: 16-byte descriptors; flags, idx, a ring of u16 and
        // used_event; flags, idx, a ring of 8-byte elements and avail_event.
        let rings = [
            ("descriptor", desc, 16 * num),
            ("available", avail, 6 + 2 * num),
            ("used", used, 6 + 8 * num),
        ];
        for (ring, addr, len) in rings {
            let inside = self.regions.iter().any(|r| {
                addr >= r.user_addr
                    && addr
                        .checked_add(len)
                        .zip(r.user_addr.checked_add(r.size))
                        .is_some_and(|(end, r_end)| end <= r_end)
            });
            if !inside {
                return Err(Refusal::RingOutside {
                    index,
                    ring,
                    addr,
                    len,
                });
            }
        }
        Ok(())
    }
}

fn parse_region(p: &[u8]) -> Region {
    Region {
        guest_addr: u64_at(p, 0),
        size: u64_at(p, 8),
        user_addr: u64_at(p, 16),
    }
}

/// A region from the wire, checked against the file that backs it: a
/// regular file (memfd, tmpfs, hugetlbfs), and `offset + size` within it.
fn check_region(index: usize, p: &[u8], fd: &OwnedFd) -> Result<Region, Refusal> {
    let region = parse_region(p);
    let offset = u64_at(p, 24);
    let st = fstat(fd).map_err(|_| Refusal::NotAFile { index })?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(Refusal::NotAFile { index });
    }
    let file_size = u64::try_from(st.st_size).unwrap_or(0);
    let fits = region.size > 0
        && offset
            .checked_add(region.size)
            .is_some_and(|end| end <= file_size)
        && region.user_addr.checked_add(region.size).is_some()
        && region.guest_addr.checked_add(region.size).is_some();
    if !fits {
        return Err(Refusal::PastEnd {
            index,
            size: region.size,
            offset,
            file_size,
        });
    }
    Ok(region)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memfd(len: u64) -> OwnedFd {
        let fd =
            rustix::fs::memfd_create("pvio-validate", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, len).unwrap();
        fd
    }

    fn region(gpa: u64, size: u64, uaddr: u64, offset: u64) -> Vec<u8> {
        [gpa, size, uaddr, offset]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    }

    fn table(regions: &[Vec<u8>]) -> Vec<u8> {
        let mut p = u32::try_from(regions.len()).unwrap().to_le_bytes().to_vec();
        p.extend_from_slice(&[0; 4]);
        for r in regions {
            p.extend_from_slice(r);
        }
        p
    }

    fn addr(index: u32, desc: u64, used: u64, avail: u64) -> Vec<u8> {
        let mut p = index.to_le_bytes().to_vec();
        p.extend_from_slice(&[0; 4]);
        for v in [desc, used, avail, 0] {
            p.extend_from_slice(&v.to_le_bytes());
        }
        p
    }

    fn num(index: u32, n: u32) -> Vec<u8> {
        let mut p = index.to_le_bytes().to_vec();
        p.extend_from_slice(&n.to_le_bytes());
        p
    }

    #[test]
    fn a_region_past_the_end_of_its_memfd_is_refused() {
        let mut v = Validator::new(1, 256);
        let fd = memfd(1 << 20);
        let big = table(&[region(0, 2 << 20, 0x1000_0000, 0)]);
        let err = v.check(SET_MEM_TABLE, &big, &[fd]).unwrap_err();
        assert!(matches!(err, Refusal::PastEnd { .. }), "{err}");
        let fd = memfd(1 << 20);
        let off = table(&[region(0, 1 << 20, 0x1000_0000, 4096)]);
        assert!(v.check(SET_MEM_TABLE, &off, &[fd]).is_err());
        let fd = memfd(1 << 20);
        let ok = table(&[region(0, 1 << 20, 0x1000_0000, 0)]);
        v.check(SET_MEM_TABLE, &ok, &[fd]).unwrap();
        let fd = memfd(4096);
        let mut add = vec![0; 8];
        add.extend(region(1 << 20, 8192, 0x2000_0000, 0));
        assert!(v.check(ADD_MEM_REG, &add, &[fd]).is_err());
    }

    #[test]
    fn regions_and_fds_must_match() {
        let mut v = Validator::new(1, 256);
        let t = table(&[region(0, 4096, 0, 0)]);
        assert!(matches!(
            v.check(SET_MEM_TABLE, &t, &[]),
            Err(Refusal::FdCount { .. })
        ));
        assert!(matches!(
            v.check(SET_MEM_TABLE, &t[..20], &[]),
            Err(Refusal::Layout { .. })
        ));
    }

    #[test]
    fn queue_sizes_follow_the_device() {
        let mut v = Validator::new(2, 256);
        for bad in [0, 100, 512] {
            assert!(matches!(
                v.check(SET_VRING_NUM, &num(0, bad), &[]),
                Err(Refusal::QueueSize { .. })
            ));
        }
        assert!(matches!(
            v.check(SET_VRING_NUM, &num(2, 8), &[]),
            Err(Refusal::QueueIndex { .. })
        ));
        v.check(SET_VRING_NUM, &num(1, 256), &[]).unwrap();
        v.check(SET_VRING_NUM, &num(0, 1), &[]).unwrap();
    }

    #[test]
    fn rings_must_lie_inside_mapped_memory() {
        let mut v = Validator::new(1, 256);
        let base = 0x7f00_0000_0000;
        let t = table(&[region(0, 1 << 16, base, 0)]);
        v.check(SET_MEM_TABLE, &t, &[memfd(1 << 16)]).unwrap();
        v.check(SET_VRING_NUM, &num(0, 256), &[]).unwrap();
        v.check(
            SET_VRING_ADDR,
            &addr(0, base, base + 0x2000, base + 0x1000),
            &[],
        )
        .unwrap();
        // The used ring (6 + 8 * 256 bytes) would end past the region.
        let late = base + (1 << 16) - 100;
        assert!(matches!(
            v.check(SET_VRING_ADDR, &addr(0, base, late, base + 0x1000), &[]),
            Err(Refusal::RingOutside { ring: "used", .. })
        ));
        assert!(v
            .check(SET_VRING_ADDR, &addr(0, 0x1000, base, base), &[])
            .is_err());
    }

    #[test]
    fn rings_set_before_the_memory_table_are_checked_at_the_kick() {
        let mut v = Validator::new(1, 256);
        v.check(SET_VRING_ADDR, &addr(0, 0x1000, 0x3000, 0x2000), &[])
            .unwrap();
        let t = table(&[region(0, 1 << 16, 0x10_0000, 0)]);
        v.check(SET_MEM_TABLE, &t, &[memfd(1 << 16)]).unwrap();
        assert!(matches!(
            v.check(SET_VRING_KICK, &0u64.to_le_bytes(), &[]),
            Err(Refusal::RingOutside { .. })
        ));
    }
}
