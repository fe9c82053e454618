//! Request parsing against hand-built descriptor chains (virtio-queue's mock
//! split queue): the good cases and every malformed one, named after the
//! spec clause they check where they check one. The helpers live here; the
//! tests are split by concern.

mod bad_requests;
mod good;
mod hostile_chains;

use crate::vhost_user::GuestMem;
use pvio_frontend_protocol::blk::{
    BlkReqHeader, DiscardWriteZeroesSeg, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_UNSUPP,
    VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_GET_LIFETIME,
    VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_SECURE_ERASE, VIRTIO_BLK_T_WRITE_ZEROES,
    VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
};
use pvio_frontend_protocol::ring::{VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use pvio_frontend_protocol::zerocopy::IntoBytes;
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use super::*;

const R: u16 = 0;
const W: u16 = VIRTQ_DESC_F_WRITE;
const HDR: u64 = 0x4000;
const DATA: u64 = 0x5000;
const STATUS: u64 = 0x9000;
/// Guest memory: two adjacent regions, a hole, a third region.
const REGIONS: [(u64, usize); 3] = [(0, 0x10000), (0x10000, 0x10000), (0x40000, 0x10000)];

fn guest() -> GuestMem {
    let ranges: Vec<_> = REGIONS.iter().map(|&(a, l)| (GuestAddress(a), l)).collect();
    GuestMem::from_ranges(&ranges).unwrap()
}

fn disk() -> DiskInfo {
    DiskInfo {
        sectors: 2048,
        read_only: false,
        logical_block: 512,
        physical_block: 4096,
        num_queues: 1,
        queue_size: 256,
        serial: Some(pvio_frontend_protocol::blk::encode_blk_id(b"pvio-serial-1")),
    }
}

fn desc(addr: u64, len: u32, flags: u16) -> RawDescriptor {
    RawDescriptor::from(SplitDescriptor::new(addr, len, flags, 0))
}

fn linked(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
    RawDescriptor::from(SplitDescriptor::new(
        addr,
        len,
        flags | VIRTQ_DESC_F_NEXT,
        next,
    ))
}

fn header(mem: &GuestMem, type_: u32, sector: u64) {
    mem.write_slice(
        BlkReqHeader::new(type_, sector).as_bytes(),
        GuestAddress(HDR),
    )
    .unwrap();
}

/// Parses a chain made of `descs` (NEXT flags and links set for them).
fn parse_descs(
    mem: &GuestMem,
    disk: &DiskInfo,
    descs: &[RawDescriptor],
) -> (Result<(), ChainError>, Request) {
    let q = MockSplitQueue::new(mem, 16);
    let chain = q.build_desc_chain(descs).unwrap();
    let mut req = Request::new();
    let r = parse(chain, mem, disk, &mut req);
    (r, req)
}

/// Parses a chain laid out exactly as `descs` say (links included).
fn parse_raw(mem: &GuestMem, descs: &[RawDescriptor]) -> Result<(), ChainError> {
    let q = MockSplitQueue::new(mem, 16);
    let chain = q.build_multiple_desc_chains(descs).unwrap();
    parse(chain, mem, &disk(), &mut Request::new())
}

fn host(mem: &GuestMem, addr: u64) -> *mut libc::c_void {
    mem.get_host_address(GuestAddress(addr)).unwrap().cast()
}

#[track_caller]
fn assert_fails(req: &Request, want_status: u8, want: GuestError) {
    match req.action {
        Action::Fail { status, error, .. } => {
            assert_eq!((status, error), (want_status, want), "{:?}", req.action);
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(req.used_len(false), 1, "only the status byte is written");
}

fn read_chain(len: u32) -> [RawDescriptor; 3] {
    [desc(HDR, 16, R), desc(DATA, len, W), desc(STATUS, 1, W)]
}

/// A discard / write-zeroes chain with one range at `DATA`.
fn dwz_chain(mem: &GuestMem, sector: u64, num: u32, flags: u32) -> [RawDescriptor; 3] {
    let seg = DiscardWriteZeroesSeg::new(sector, num, flags);
    mem.write_slice(seg.as_bytes(), GuestAddress(DATA)).unwrap();
    [desc(HDR, 16, R), desc(DATA, 16, R), desc(STATUS, 1, W)]
}
