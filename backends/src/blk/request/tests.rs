//! Request parsing against hand-built descriptor chains (virtio-queue's mock
//! split queue): the good cases and every malformed one, named after the
//! spec clause they check where they check one.

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
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::*;

const R: u16 = 0;
const W: u16 = VIRTQ_DESC_F_WRITE;
const HDR: u64 = 0x4000;
const DATA: u64 = 0x5000;
const STATUS: u64 = 0x9000;
/// Guest memory: two adjacent regions, a hole, a third region.
const REGIONS: [(u64, usize); 3] = [(0, 0x10000), (0x10000, 0x10000), (0x40000, 0x10000)];

fn guest() -> GuestMemoryMmap {
    let ranges: Vec<_> = REGIONS.iter().map(|&(a, l)| (GuestAddress(a), l)).collect();
    GuestMemoryMmap::from_ranges(&ranges).unwrap()
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

fn header(mem: &GuestMemoryMmap, type_: u32, sector: u64) {
    mem.write_slice(
        BlkReqHeader::new(type_, sector).as_bytes(),
        GuestAddress(HDR),
    )
    .unwrap();
}

/// Parses a chain made of `descs` (NEXT flags and links set for them).
fn parse_descs(
    mem: &GuestMemoryMmap,
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
fn parse_raw(mem: &GuestMemoryMmap, descs: &[RawDescriptor]) -> Result<(), ChainError> {
    let q = MockSplitQueue::new(mem, 16);
    let chain = q.build_multiple_desc_chains(descs).unwrap();
    parse(chain, mem, &disk(), &mut Request::new())
}

fn host(mem: &GuestMemoryMmap, addr: u64) -> *mut libc::c_void {
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

#[test]
fn spec_5_2_6_read_maps_data_straight_to_guest_memory() {
    let mem = guest();
    header(&mem, VIRTIO_BLK_T_IN, 8);
    let (r, req) = parse_descs(&mem, &disk(), &read_chain(4096));
    r.unwrap();
    assert_eq!(req.action, Action::Read { offset: 8 * 512 });
    assert_eq!(req.status, GuestAddress(STATUS));
    assert_eq!(req.data_len, 4096);
    assert_eq!(req.iovecs.len(), 1);
    assert_eq!(req.iovecs[0].iov_base, host(&mem, DATA));
    assert_eq!(req.iovecs[0].iov_len, 4096);
    // §2.7.8: used length counts the data and the status byte.
    assert_eq!(req.used_len(true), 4097);
}

#[test]
fn spec_5_2_6_write_with_several_data_segments() {
    let mem = guest();
    header(&mem, VIRTIO_BLK_T_OUT, 100);
    let descs = [
        desc(HDR, 16, R),
        desc(DATA, 512, R),
        desc(0x7000, 1024, R),
        desc(0x40000, 2048, R),
        desc(STATUS, 1, W),
    ];
    let (r, req) = parse_descs(&mem, &disk(), &descs);
    r.unwrap();
    assert_eq!(req.action, Action::Write { offset: 100 * 512 });
    assert_eq!(req.data_len, 3584);
    let got: Vec<_> = req.iovecs.iter().map(|v| (v.iov_base, v.iov_len)).collect();
    let want = vec![
        (host(&mem, DATA), 512),
        (host(&mem, 0x7000), 1024),
        (host(&mem, 0x40000), 2048),
    ];
    assert_eq!(got, want);
    assert_eq!(
        req.used_len(true),
        1,
        "a write reports only the status byte"
    );
}

#[test]
fn spec_2_6_4_any_layout_header_data_and_status_share_descriptors() {
    let mem = guest();
    // Header and data in one readable descriptor, status at the end of the
    // only writable one.
    header(&mem, VIRTIO_BLK_T_OUT, 0);
    let (r, req) = parse_descs(&mem, &disk(), &[desc(HDR, 16 + 512, R), desc(STATUS, 1, W)]);
    r.unwrap();
    assert_eq!(req.action, Action::Write { offset: 0 });
    assert_eq!(req.iovecs[0].iov_base, host(&mem, HDR + 16));
    assert_eq!(req.iovecs[0].iov_len, 512);
    // Data and status in one writable descriptor.
    header(&mem, VIRTIO_BLK_T_IN, 0);
    let (r, req) = parse_descs(&mem, &disk(), &[desc(HDR, 16, R), desc(DATA, 513, W)]);
    r.unwrap();
    assert_eq!(req.action, Action::Read { offset: 0 });
    assert_eq!(req.status, GuestAddress(DATA + 512));
    assert_eq!(req.data_len, 512);
}

#[test]
fn spec_2_6_4_header_split_over_two_descriptors() {
    let mem = guest();
    header(&mem, VIRTIO_BLK_T_IN, 3);
    let descs = [
        desc(HDR, 8, R),
        desc(HDR + 8, 8, R),
        desc(DATA, 512, W),
        desc(STATUS, 1, W),
    ];
    let (r, req) = parse_descs(&mem, &disk(), &descs);
    r.unwrap();
    assert_eq!(req.action, Action::Read { offset: 3 * 512 });
}

#[test]
fn buffer_spanning_two_adjacent_regions_becomes_two_iovecs() {
    let mem = guest();
    header(&mem, VIRTIO_BLK_T_IN, 0);
    let descs = [
        desc(HDR, 16, R),
        desc(0xF000, 0x2000, W),
        desc(STATUS, 1, W),
    ];
    let (r, req) = parse_descs(&mem, &disk(), &descs);
    r.unwrap();
    let got: Vec<_> = req.iovecs.iter().map(|v| (v.iov_base, v.iov_len)).collect();
    assert_eq!(
        got,
        vec![(host(&mem, 0xF000), 0x1000), (host(&mem, 0x10000), 0x1000)]
    );
}

#[test]
fn buffer_reaching_into_a_hole_in_guest_memory_is_ioerr() {
    let mem = guest();
    header(&mem, VIRTIO_BLK_T_IN, 0);
    // 0x1F000..0x21000 runs past the second region into the hole.
    let descs = [
        desc(HDR, 16, R),
        desc(0x1F000, 0x2000, W),
        desc(STATUS, 1, W),
    ];
    let (r, req) = parse_descs(&mem, &disk(), &descs);
    r.unwrap();
    assert_fails(&req, VIRTIO_BLK_S_IOERR, GuestError::BadAddress);
    assert!(req.iovecs.is_empty());
}

#[test]
fn buffer_outside_guest_memory_is_ioerr() {
    let mem = guest();
    header(&mem, VIRTIO_BLK_T_OUT, 0);
    for addr in [0x30000, 0x1_0000_0000, u64::MAX - 100] {
        let descs = [desc(HDR, 16, R), desc(addr, 512, R), desc(STATUS, 1, W)];
        let (r, req) = parse_descs(&mem, &disk(), &descs);
        r.unwrap();
        assert_fails(&req, VIRTIO_BLK_S_IOERR, GuestError::BadAddress);
    }
}

#[test]
fn header_outside_guest_memory_is_ioerr() {
    let mem = guest();
    let descs = [desc(0x30000, 16, R), desc(STATUS, 1, W)];
    let (r, req) = parse_descs(&mem, &disk(), &descs);
    r.unwrap();
    assert_fails(&req, VIRTIO_BLK_S_IOERR, GuestError::BadAddress);
}

#[test]
fn spec_2_7_5_looping_chain_stops_the_queue() {
    let mem = guest();
    let descs = [linked(HDR, 16, R, 1), linked(STATUS, 1, W, 0)];
    assert_eq!(parse_raw(&mem, &descs), Err(ChainError::Truncated));
}

#[test]
fn spec_2_7_5_next_index_past_the_table_stops_the_queue() {
    let mem = guest();
    let descs = [linked(HDR, 16, R, 200), desc(STATUS, 1, W)];
    assert_eq!(parse_raw(&mem, &descs), Err(ChainError::Truncated));
}

#[test]
fn spec_5_2_6_status_not_device_writable_stops_the_queue() {
    let mem = guest();
    header(&mem, VIRTIO_BLK_T_IN, 0);
    let (r, _) = parse_descs(&mem, &disk(), &[desc(HDR, 16, R), desc(STATUS, 1, R)]);
    assert_eq!(r, Err(ChainError::NoStatus));
    let (r, _) = parse_descs(&mem, &disk(), &[desc(HDR, 16, R), desc(STATUS, 0, W)]);
    assert_eq!(r, Err(ChainError::NoStatus));
}

#[test]
fn status_outside_guest_memory_stops_the_queue() {
    let mem = guest();
    header(&mem, VIRTIO_BLK_T_FLUSH, 0);
    let (r, _) = parse_descs(&mem, &disk(), &[desc(HDR, 16, R), desc(0x30000, 1, W)]);
    assert_eq!(r, Err(ChainError::StatusOutsideMemory));
    let (r, _) = parse_descs(&mem, &disk(), &[desc(HDR, 16, R), desc(u64::MAX, 2, W)]);
    assert_eq!(r, Err(ChainError::StatusOutsideMemory));
}

#[test]
fn spec_5_2_6_short_header_is_ioerr() {
    let mem = guest();
    header(&mem, VIRTIO_BLK_T_IN, 0);
    let (r, req) = parse_descs(
        &mem,
        &disk(),
        &[desc(HDR, 8, R), desc(DATA, 512, W), desc(STATUS, 1, W)],
    );
    r.unwrap();
    assert_fails(&req, VIRTIO_BLK_S_IOERR, GuestError::BadLayout);
    // No readable descriptor at all.
    let (r, req) = parse_descs(&mem, &disk(), &[desc(STATUS, 1, W)]);
    r.unwrap();
    assert_fails(&req, VIRTIO_BLK_S_IOERR, GuestError::BadLayout);
}

#[test]
fn spec_2_7_4_2_readable_after_writable_is_ioerr() {
    let mem = guest();
    header(&mem, VIRTIO_BLK_T_OUT, 0);
    let descs = [
        desc(HDR, 16, R),
        desc(DATA, 512, W),
        desc(0x7000, 512, R),
        desc(STATUS, 1, W),
    ];
    let (r, req) = parse_descs(&mem, &disk(), &descs);
    r.unwrap();
    assert_fails(&req, VIRTIO_BLK_S_IOERR, GuestError::BadLayout);
}

#[test]
fn spec_5_2_6_wrong_data_direction_is_ioerr() {
    let mem = guest();
    // A read whose data the device would have to read.
    header(&mem, VIRTIO_BLK_T_IN, 0);
    let (r, req) = parse_descs(
        &mem,
        &disk(),
        &[desc(HDR, 16, R), desc(DATA, 512, R), desc(STATUS, 1, W)],
    );
    r.unwrap();
    assert_fails(&req, VIRTIO_BLK_S_IOERR, GuestError::BadLayout);
    // A write whose data the device would have to write.
    header(&mem, VIRTIO_BLK_T_OUT, 0);
    let (r, req) = parse_descs(
        &mem,
        &disk(),
        &[desc(HDR, 16, R), desc(DATA, 512, W), desc(STATUS, 1, W)],
    );
    r.unwrap();
    assert_fails(&req, VIRTIO_BLK_S_IOERR, GuestError::BadLayout);
}

#[test]
fn spec_5_2_6_sector_past_the_end_is_ioerr() {
    let mem = guest();
    let d = disk();
    // The last sector is fine, one more is not.
    header(&mem, VIRTIO_BLK_T_IN, d.sectors - 1);
    let (r, req) = parse_descs(&mem, &d, &read_chain(512));
    r.unwrap();
    assert_eq!(
        req.action,
        Action::Read {
            offset: (d.sectors - 1) * 512
        }
    );
    // Starting past the end, running past it, and overflowing the byte offset.
    for (sector, len) in [
        (d.sectors, 512),
        (d.sectors - 1, 1024),
        (u64::MAX, 512),
        (u64::MAX / 512, 512),
    ] {
        header(&mem, VIRTIO_BLK_T_IN, sector);
        let (r, req) = parse_descs(&mem, &d, &read_chain(len));
        r.unwrap();
        assert_fails(&req, VIRTIO_BLK_S_IOERR, GuestError::OutOfRange);
    }
}

#[test]
fn spec_5_2_6_1_write_to_read_only_disk_is_ioerr() {
    let mem = guest();
    let d = DiskInfo {
        read_only: true,
        ..disk()
    };
    header(&mem, VIRTIO_BLK_T_OUT, 0);
    let (r, req) = parse_descs(
        &mem,
        &d,
        &[desc(HDR, 16, R), desc(DATA, 512, R), desc(STATUS, 1, W)],
    );
    r.unwrap();
    assert_fails(&req, VIRTIO_BLK_S_IOERR, GuestError::WriteToReadOnly);
    for t in [VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES] {
        header(&mem, t, 0);
        let (r, req) = parse_descs(&mem, &d, &dwz_chain(&mem, 0, 8, 0));
        r.unwrap();
        assert_fails(&req, VIRTIO_BLK_S_IOERR, GuestError::WriteToReadOnly);
    }
    // Reads and flushes still work.
    header(&mem, VIRTIO_BLK_T_IN, 0);
    let (r, req) = parse_descs(&mem, &d, &read_chain(512));
    r.unwrap();
    assert_eq!(req.action, Action::Read { offset: 0 });
}

#[test]
fn spec_5_2_6_data_not_whole_sectors_is_ioerr() {
    let mem = guest();
    header(&mem, VIRTIO_BLK_T_IN, 0);
    let (r, req) = parse_descs(&mem, &disk(), &read_chain(513));
    r.unwrap();
    assert_fails(&req, VIRTIO_BLK_S_IOERR, GuestError::BadLength);
}

#[test]
fn absurd_lengths_are_ioerr() {
    let mem = guest();
    header(&mem, VIRTIO_BLK_T_IN, 0);
    // Larger than guest memory.
    let (r, req) = parse_descs(&mem, &disk(), &read_chain(u32::MAX - 64));
    r.unwrap();
    assert_fails(&req, VIRTIO_BLK_S_IOERR, GuestError::BadAddress);
    // §2.7.5.2: a chain of more than 2^32 bytes ends where it overflows;
    // then no status byte can be trusted.
    let (r, _) = parse_descs(&mem, &disk(), &read_chain(u32::MAX));
    assert_eq!(r, Err(ChainError::Truncated));
    // Inside guest memory but over the per-request limit.
    let big = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 48 << 20)]).unwrap();
    let d = DiskInfo {
        sectors: 1 << 20,
        ..disk()
    };
    header(&big, VIRTIO_BLK_T_IN, 0);
    let (r, req) = parse_descs(&big, &d, &read_chain(40 << 20));
    r.unwrap();
    assert_fails(&req, VIRTIO_BLK_S_IOERR, GuestError::BadLength);
}

#[test]
fn more_than_1024_data_segments_is_ioerr() {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
    let q = MockSplitQueue::new(&mem, 2048);
    let mut descs = vec![desc(0x80000, 16, R)];
    descs.extend((0..1100).map(|i| desc(0x90000 + i * 64, 512, W)));
    descs.push(desc(0x80100, 1, W));
    mem.write_slice(
        BlkReqHeader::new(VIRTIO_BLK_T_IN, 0).as_bytes(),
        GuestAddress(0x80000),
    )
    .unwrap();
    let chain = q.build_desc_chain(&descs).unwrap();
    let mut req = Request::new();
    parse(
        chain,
        &mem,
        &DiskInfo {
            sectors: 1 << 20,
            ..disk()
        },
        &mut req,
    )
    .unwrap();
    assert_fails(&req, VIRTIO_BLK_S_IOERR, GuestError::BadLength);
}

#[test]
fn zero_length_descriptors_in_the_middle_are_skipped() {
    let mem = guest();
    header(&mem, VIRTIO_BLK_T_IN, 0);
    let descs = [
        desc(HDR, 16, R),
        desc(DATA, 0, W),
        desc(DATA, 512, W),
        desc(0x30000, 0, W),
        desc(STATUS, 1, W),
    ];
    let (r, req) = parse_descs(&mem, &disk(), &descs);
    r.unwrap();
    assert_eq!(req.iovecs.len(), 1);
    assert_eq!(req.data_len, 512);
}

#[test]
fn spec_2_7_5_3_indirect_table_is_followed() {
    let mem = guest();
    header(&mem, VIRTIO_BLK_T_IN, 2);
    let table = 0x8000;
    let entries = [
        linked(HDR, 16, R, 1),
        linked(DATA, 1024, W, 2),
        desc(STATUS, 1, W),
    ];
    for (i, e) in entries.iter().enumerate() {
        mem.write_obj(*e, GuestAddress(table + 16 * i as u64))
            .unwrap();
    }
    let q = MockSplitQueue::new(&mem, 16);
    let chain = q
        .build_desc_chain(&[desc(table, 48, VIRTQ_DESC_F_INDIRECT)])
        .unwrap();
    let mut req = Request::new();
    parse(chain, &mem, &disk(), &mut req).unwrap();
    assert_eq!(req.action, Action::Read { offset: 1024 });
    assert_eq!(req.data_len, 1024);
}

#[test]
fn spec_5_2_6_flush_has_no_data() {
    let mem = guest();
    header(&mem, VIRTIO_BLK_T_FLUSH, 0);
    let (r, req) = parse_descs(&mem, &disk(), &[desc(HDR, 16, R), desc(STATUS, 1, W)]);
    r.unwrap();
    assert_eq!(req.action, Action::Flush);
    assert_eq!(req.used_len(true), 1);
}

#[test]
fn spec_5_2_6_get_id_writes_the_nul_padded_serial() {
    let mem = guest();
    header(&mem, VIRTIO_BLK_T_GET_ID, 0);
    mem.write_slice(&[0xff; 20], GuestAddress(DATA)).unwrap();
    let (r, req) = parse_descs(
        &mem,
        &disk(),
        &[desc(HDR, 16, R), desc(DATA, 20, W), desc(STATUS, 1, W)],
    );
    r.unwrap();
    assert_eq!(req.action, Action::GetId);
    req.write_id(&mem, &disk().serial.unwrap()).unwrap();
    let mut got = [0u8; 20];
    mem.read_slice(&mut got, GuestAddress(DATA)).unwrap();
    assert_eq!(&got[..13], b"pvio-serial-1");
    assert!(got[13..].iter().all(|&b| b == 0));
    assert_eq!(req.used_len(true), 21);
    // A shorter buffer gets what fits, and nothing past it.
    mem.write_slice(&[0xff; 20], GuestAddress(DATA)).unwrap();
    let (r, req) = parse_descs(
        &mem,
        &disk(),
        &[desc(HDR, 16, R), desc(DATA, 4, W), desc(STATUS, 1, W)],
    );
    r.unwrap();
    req.write_id(&mem, &disk().serial.unwrap()).unwrap();
    mem.read_slice(&mut got, GuestAddress(DATA)).unwrap();
    assert_eq!(&got[..5], b"pvio\xff");
}

#[test]
fn get_id_without_a_serial_is_unsupp() {
    let mem = guest();
    header(&mem, VIRTIO_BLK_T_GET_ID, 0);
    let d = DiskInfo {
        serial: None,
        ..disk()
    };
    let (r, req) = parse_descs(
        &mem,
        &d,
        &[desc(HDR, 16, R), desc(DATA, 20, W), desc(STATUS, 1, W)],
    );
    r.unwrap();
    assert_fails(&req, VIRTIO_BLK_S_UNSUPP, GuestError::Unsupported);
}

#[test]
fn spec_5_2_6_types_not_offered_are_unsupp() {
    let mem = guest();
    for t in [
        VIRTIO_BLK_T_GET_LIFETIME,
        VIRTIO_BLK_T_SECURE_ERASE,
        2,
        3,
        0x8000_0000,
        u32::MAX,
    ] {
        header(&mem, t, 0);
        let (r, req) = parse_descs(
            &mem,
            &disk(),
            &[desc(HDR, 16, R), desc(DATA, 512, W), desc(STATUS, 1, W)],
        );
        r.unwrap();
        assert_fails(&req, VIRTIO_BLK_S_UNSUPP, GuestError::Unsupported);
    }
}

/// A discard / write-zeroes chain with one range at `DATA`.
fn dwz_chain(mem: &GuestMemoryMmap, sector: u64, num: u32, flags: u32) -> [RawDescriptor; 3] {
    let seg = DiscardWriteZeroesSeg::new(sector, num, flags);
    mem.write_slice(seg.as_bytes(), GuestAddress(DATA)).unwrap();
    [desc(HDR, 16, R), desc(DATA, 16, R), desc(STATUS, 1, W)]
}

#[test]
fn spec_5_2_6_discard_and_write_zeroes_ranges() {
    let mem = guest();
    header(&mem, VIRTIO_BLK_T_DISCARD, 0);
    let (r, req) = parse_descs(&mem, &disk(), &dwz_chain(&mem, 16, 8, 0));
    r.unwrap();
    assert_eq!(
        req.action,
        Action::Discard {
            offset: 16 * 512,
            len: 8 * 512
        }
    );
    header(&mem, VIRTIO_BLK_T_WRITE_ZEROES, 0);
    let (r, req) = parse_descs(
        &mem,
        &disk(),
        &dwz_chain(&mem, 0, 1, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP),
    );
    r.unwrap();
    assert_eq!(
        req.action,
        Action::WriteZeroes {
            offset: 0,
            len: 512,
            unmap: true
        }
    );
}

#[test]
fn spec_5_2_6_2_unknown_range_flags_and_unmap_on_discard_are_unsupp() {
    let mem = guest();
    header(&mem, VIRTIO_BLK_T_DISCARD, 0);
    let (r, req) = parse_descs(
        &mem,
        &disk(),
        &dwz_chain(&mem, 0, 8, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP),
    );
    r.unwrap();
    assert_fails(&req, VIRTIO_BLK_S_UNSUPP, GuestError::Unsupported);
    header(&mem, VIRTIO_BLK_T_WRITE_ZEROES, 0);
    let (r, req) = parse_descs(&mem, &disk(), &dwz_chain(&mem, 0, 8, 2));
    r.unwrap();
    assert_fails(&req, VIRTIO_BLK_S_UNSUPP, GuestError::Unsupported);
}

#[test]
fn discard_ranges_past_the_end_too_long_or_too_many_are_ioerr() {
    let mem = guest();
    let d = disk();
    header(&mem, VIRTIO_BLK_T_DISCARD, 0);
    let (r, req) = parse_descs(&mem, &d, &dwz_chain(&mem, d.sectors - 4, 8, 0));
    r.unwrap();
    assert_fails(&req, VIRTIO_BLK_S_IOERR, GuestError::OutOfRange);
    let (r, req) = parse_descs(&mem, &d, &dwz_chain(&mem, 0, u32::MAX, 0));
    r.unwrap();
    assert_fails(&req, VIRTIO_BLK_S_IOERR, GuestError::BadLength);
    // Two ranges where max_discard_seg is 1, and a partial range.
    for len in [32, 24, 0] {
        let descs = [desc(HDR, 16, R), desc(DATA, len, R), desc(STATUS, 1, W)];
        let (r, req) = parse_descs(&mem, &d, &descs);
        r.unwrap();
        assert_fails(&req, VIRTIO_BLK_S_IOERR, GuestError::BadLength);
    }
}

#[test]
fn a_request_is_reusable_after_a_failure() {
    let mem = guest();
    let mut req = Request::new();
    let q = MockSplitQueue::new(&mem, 16);
    header(&mem, VIRTIO_BLK_T_IN, 0);
    let chain = q.build_desc_chain(&read_chain(513)).unwrap();
    parse(chain, &mem, &disk(), &mut req).unwrap();
    assert_fails(&req, VIRTIO_BLK_S_IOERR, GuestError::BadLength);
    let chain = q.build_desc_chain(&read_chain(512)).unwrap();
    parse(chain, &mem, &disk(), &mut req).unwrap();
    assert_eq!(req.action, Action::Read { offset: 0 });
    assert_eq!(req.iovecs.len(), 1);
}
