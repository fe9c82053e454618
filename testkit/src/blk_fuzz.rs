//! The body of the block request parser's fuzz target, shared by
//! `backends/fuzz` (cargo-fuzz, libFuzzer) and a stable-Rust test that runs
//! a generated seed corpus through it. It reaches the parser through
//! `pvio_backends::blk::request`, the queue workers' own entry point.
//!
//! Bytes become a guest: memory in three regions (two adjacent, one after a
//! hole), a split queue of 16 entries at guest address 0, one descriptor
//! chain (direct or indirect) and the request header and ranges in its
//! buffers. Like Cloud Hypervisor's block target, the decoder makes an input
//! invalid only rarely (a wild address, a wild `next`, an odd length), so
//! most inputs reach deep into the parser. [`run`] panics if the parser
//! breaks an invariant: a host address outside guest memory, data past the
//! end of the disk, a write accepted on a read-only disk, lengths that do not
//! add up.
//!
//! It must not know about engines, threads or vhost-user.

use pvio_backends::blk::config::{DiskInfo, MAX_DATA_BYTES, MAX_SEGMENTS};
use pvio_backends::blk::request::{parse, Action, Request};
use pvio_backends::vhost_user::GuestMem;
use pvio_frontend_protocol::blk::{
    encode_blk_id, BlkReqHeader, DiscardWriteZeroesSeg, SECTOR_SIZE, VIRTIO_BLK_T_DISCARD,
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_GET_LIFETIME, VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_SECURE_ERASE, VIRTIO_BLK_T_WRITE_ZEROES,
};
use pvio_frontend_protocol::ring::{VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use pvio_frontend_protocol::zerocopy::IntoBytes;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

const QUEUE_SIZE: u16 = 16;
const DESC_TABLE: u64 = 0;
const AVAIL: u64 = 0x400;
const USED: u64 = 0x800;
/// Indirect tables go here.
const INDIRECT: u64 = 0x1000;
/// Data buffers: 4 KiB slots from here.
const BUFFERS: u64 = 0x2000;
const REGIONS: [(u64, usize); 3] = [(0, 0x10000), (0x10000, 0x10000), (0x40000, 0x10000)];

/// Reads the input, yielding zeros once it is used up.
struct Cursor<'a> {
    data: &'a [u8],
}

impl Cursor<'_> {
    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }
}

/// One descriptor as the decoder chose it.
#[derive(Clone, Copy)]
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

impl Desc {
    fn bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[12..14].copy_from_slice(&self.flags.to_le_bytes());
        b[14..].copy_from_slice(&self.next.to_le_bytes());
        b
    }
}

fn pick_addr(c: &mut Cursor<'_>, slot: usize) -> u64 {
    match c.u8() {
        // Mostly a buffer slot of its own, sometimes at an offset in it.
        0..=233 => BUFFERS + 0x1000 * slot as u64 + u64::from(c.u8() & 0x0f) * 16,
        // Near the end of a region, or in the hole.
        234..=247 => [0xfff0, 0x1fff0, 0x20000, 0x3fff8, 0x4fff0][usize::from(c.u8() % 5)],
        _ => c.u64(),
    }
}

fn pick_len(c: &mut Cursor<'_>, role: Role) -> u32 {
    match (c.u8(), role) {
        (0..=239, Role::Status) => 1,
        (0..=219, Role::Header) => 16,
        (0..=219, Role::Ranges) => 16,
        (0..=219, Role::Data) => 512 * u32::from(1 + c.u8() % 8),
        (220..=234, _) => u32::from(c.u8()),
        (235..=249, _) => u32::from(c.u16()),
        _ => c.u32(),
    }
}

/// What a descriptor is meant to hold.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Header,
    Data,
    Ranges,
    Status,
}

fn pick_type(c: &mut Cursor<'_>) -> u32 {
    // Weighted toward what the device serves.
    const TYPES: [u32; 12] = [
        VIRTIO_BLK_T_IN,
        VIRTIO_BLK_T_IN,
        VIRTIO_BLK_T_IN,
        VIRTIO_BLK_T_OUT,
        VIRTIO_BLK_T_OUT,
        VIRTIO_BLK_T_OUT,
        VIRTIO_BLK_T_FLUSH,
        VIRTIO_BLK_T_GET_ID,
        VIRTIO_BLK_T_DISCARD,
        VIRTIO_BLK_T_WRITE_ZEROES,
        VIRTIO_BLK_T_GET_LIFETIME,
        VIRTIO_BLK_T_SECURE_ERASE,
    ];
    match c.u8() {
        b @ 0..=247 => TYPES[usize::from(b) % TYPES.len()],
        _ => c.u32(),
    }
}

fn pick_sector(c: &mut Cursor<'_>) -> u64 {
    match c.u8() {
        0..=199 => u64::from(c.u16()),
        _ => c.u64(),
    }
}

/// How far an input got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The queue yielded no chain.
    NoChain,
    /// The parser refused the chain (the queue would need a reset).
    ChainError,
    /// The request was answered with an error status, for this reason.
    Failed(&'static str),
    /// The request was accepted.
    Accepted,
}

/// Builds a guest from `data`, parses its chain and checks the result.
pub fn run(data: &[u8]) -> Outcome {
    let mut c = Cursor { data };
    let ranges: Vec<_> = REGIONS.iter().map(|&(a, l)| (GuestAddress(a), l)).collect();
    let Ok(mem) = GuestMem::from_ranges(&ranges) else {
        return Outcome::NoChain;
    };
    let flags = c.u8();
    let disk = DiskInfo {
        sectors: u64::from(c.u16()) + 1,
        read_only: flags & 7 == 7,
        logical_block: 512,
        physical_block: 4096,
        num_queues: 1,
        queue_size: QUEUE_SIZE,
        serial: (flags & 2 != 0).then(|| encode_blk_id(b"fuzz")),
    };
    let indirect = flags & 0xf0 == 0xf0;

    let type_ = pick_type(&mut c);
    let sector = match c.u8() {
        0..=199 => u64::from(c.u16()) % disk.sectors,
        _ => pick_sector(&mut c),
    };
    // Data the device writes for reads and GET_ID, reads for the others.
    let data_writable = matches!(type_, VIRTIO_BLK_T_IN | VIRTIO_BLK_T_GET_ID);
    let ranges = matches!(type_, VIRTIO_BLK_T_DISCARD | VIRTIO_BLK_T_WRITE_ZEROES);

    // The chain: header first, status last, direction bits mostly sane.
    let n = match c.u8() {
        0..=7 => 1,
        8..=239 if ranges => 3,
        8..=239 if type_ == VIRTIO_BLK_T_FLUSH => 2,
        b => 2 + usize::from(b % 7),
    };
    let mut descs = Vec::with_capacity(n);
    for i in 0..n {
        let addr = pick_addr(&mut c, i);
        let role = match i {
            0 => Role::Header,
            _ if i + 1 == n => Role::Status,
            1 if ranges => Role::Ranges,
            _ => Role::Data,
        };
        let len = pick_len(&mut c, role);
        let chaos = c.u8();
        let mut f = if i == 0 {
            0
        } else {
            VIRTQ_DESC_F_WRITE * u16::from(i == n - 1 || data_writable)
        };
        if chaos & 0x3e == 0x3e {
            f ^= VIRTQ_DESC_F_WRITE;
        }
        let last = i == n - 1;
        let mut next = u16::try_from(i + 1).unwrap_or(0);
        if !last {
            f |= VIRTQ_DESC_F_NEXT;
        }
        if chaos & 0xf8 == 0xf8 {
            // A wild link: a loop, past the table, or an early end.
            next = c.u16() % (2 * QUEUE_SIZE);
            f ^= VIRTQ_DESC_F_NEXT * u16::from(chaos & 0x10 != 0 && last);
        }
        descs.push(Desc {
            addr,
            len,
            flags: f,
            next,
        });
    }
    let header = BlkReqHeader::new(type_, sector);
    let seg_sector = match c.u8() {
        0..=199 => u64::from(c.u16()) % disk.sectors,
        _ => pick_sector(&mut c),
    };
    let seg_flags = match c.u8() {
        0..=199 => u32::from(type_ == VIRTIO_BLK_T_WRITE_ZEROES && c.u8() & 1 != 0),
        _ => c.u32(),
    };
    let seg = DiscardWriteZeroesSeg::new(seg_sector, c.u32() % 64, seg_flags);
    // Best effort: a wild address simply is not written.
    if let Some(d) = descs.first() {
        let _ = mem.write_slice(header.as_bytes(), GuestAddress(d.addr));
        let _ = mem.write_slice(seg.as_bytes(), GuestAddress(d.addr.wrapping_add(16)));
    }
    if let Some(d) = descs.get(1) {
        let _ = mem.write_slice(seg.as_bytes(), GuestAddress(d.addr));
    }
    // The rest of the input scribbles over a buffer.
    let _ = mem.write_slice(c.data, GuestAddress(BUFFERS + 0x1000 * 7));

    // Lay the chain out, directly or through an indirect table.
    let table = if indirect { INDIRECT } else { DESC_TABLE };
    for (i, d) in descs.iter().enumerate() {
        let _ = mem.write_slice(&d.bytes(), GuestAddress(table + 16 * i as u64));
    }
    if indirect {
        let len = u32::try_from(16 * descs.len()).unwrap_or(0);
        let head = Desc {
            addr: INDIRECT,
            len,
            flags: VIRTQ_DESC_F_INDIRECT,
            next: 0,
        };
        let _ = mem.write_slice(&head.bytes(), GuestAddress(DESC_TABLE));
    }
    // Avail ring: one entry, head 0.
    let _ = mem.write_obj(0u16, GuestAddress(AVAIL));
    let _ = mem.write_obj(1u16, GuestAddress(AVAIL + 2));
    let _ = mem.write_obj(0u16, GuestAddress(AVAIL + 4));

    let Ok(mut queue) = Queue::new(QUEUE_SIZE) else {
        return Outcome::NoChain;
    };
    queue.set_size(QUEUE_SIZE);
    queue.set_ready(true);
    let _ = queue.try_set_desc_table_address(GuestAddress(DESC_TABLE));
    let _ = queue.try_set_avail_ring_address(GuestAddress(AVAIL));
    let _ = queue.try_set_used_ring_address(GuestAddress(USED));
    let Some(chain) = queue.pop_descriptor_chain(&mem) else {
        return Outcome::NoChain;
    };
    let mut req = Request::new();
    if parse(chain, &mem, &disk, &mut req).is_err() {
        return Outcome::ChainError;
    }
    check(&mem, &disk, &req);
    assert!(queue.add_used(&mem, req.head, req.used_len(true)).is_ok());
    match req.action {
        Action::Fail { detail, .. } => Outcome::Failed(detail),
        _ => Outcome::Accepted,
    }
}

/// The parser's promises about an accepted request.
fn check(mem: &GuestMem, disk: &DiskInfo, req: &Request) {
    assert!(
        mem.get_slice(req.status, 1).is_ok(),
        "status byte outside guest memory"
    );
    let _ = req.used_len(true);
    let _ = req.used_len(false);
    let size = disk.size_bytes();
    match req.action {
        Action::Read { offset } | Action::Write { offset } => {
            assert!(
                !(disk.read_only && matches!(req.action, Action::Write { .. })),
                "write accepted on a read-only disk"
            );
            assert_eq!(req.data_len % SECTOR_SIZE, 0, "partial sector accepted");
            assert!(req.data_len <= MAX_DATA_BYTES, "oversized request accepted");
            assert!(
                offset
                    .checked_add(req.data_len)
                    .is_some_and(|end| end <= size),
                "request past the end accepted"
            );
            assert!(
                req.iovecs.len() <= MAX_SEGMENTS as usize,
                "too many segments"
            );
            let mut total = 0u64;
            for v in &req.iovecs {
                assert!(
                    inside_one_region(mem, v.iov_base as usize, v.iov_len),
                    "iovec outside guest memory"
                );
                total += u64::try_from(v.iov_len).unwrap_or(u64::MAX);
            }
            assert_eq!(
                total, req.data_len,
                "iovecs do not add up to the data length"
            );
        }
        Action::Discard { offset, len } | Action::WriteZeroes { offset, len, .. } => {
            assert!(!disk.read_only, "discard accepted on a read-only disk");
            assert!(
                offset.checked_add(len).is_some_and(|end| end <= size),
                "range past the end accepted"
            );
        }
        Action::GetId => {
            assert!(disk.serial.is_some());
            if let Some(id) = &disk.serial {
                // Writes only into the chain's writable buffers.
                let _ = req.write_id(mem, id);
            }
        }
        Action::Flush | Action::Fail { .. } => {}
    }
}

/// Whether `[addr, addr + len)` lies inside the host mapping of one region.
fn inside_one_region(mem: &GuestMem, addr: usize, len: usize) -> bool {
    mem.iter().any(|r| {
        let Ok(base) = mem.get_host_address(r.start_addr()) else {
            return false;
        };
        let base = base as usize;
        let Ok(rlen) = usize::try_from(r.len()) else {
            return false;
        };
        addr >= base && addr.checked_add(len).is_some_and(|end| end <= base + rlen)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator for the seed corpus.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// The seed corpus: `count` inputs of 0..200 bytes from `seed`.
    pub(crate) fn corpus(seed: u64, count: usize) -> Vec<Vec<u8>> {
        let mut s = seed | 1;
        (0..count)
            .map(|_| {
                let len = usize::try_from(xorshift(&mut s) % 200).unwrap_or(0);
                (0..len)
                    .map(|_| xorshift(&mut s).to_le_bytes()[3])
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_fuzz_body_holds_on_a_generated_corpus() {
        let mut seen = std::collections::HashMap::new();
        for input in corpus(0x9e37_79b9_7f4a_7c15, 20_000) {
            *seen.entry(run(&input)).or_insert(0u32) += 1;
        }
        eprintln!("outcomes: {seen:?}");
        // The decoder keeps most inputs valid enough to reach deep code.
        let accepted = seen.get(&Outcome::Accepted).copied().unwrap_or(0);
        let failed: u32 = seen
            .iter()
            .filter(|(k, _)| matches!(k, Outcome::Failed(_)))
            .map(|(_, &n)| n)
            .sum();
        assert!(accepted > 2_000 && failed > 2_000, "{seen:?}");
    }

    #[test]
    fn the_fuzz_body_holds_on_empty_and_extreme_inputs() {
        assert_ne!(run(&[]), Outcome::NoChain);
        run(&[0xff; 512]);
        run(&[0x00; 512]);
        for b in 0..=255u8 {
            run(&[b; 64]);
        }
    }
}
