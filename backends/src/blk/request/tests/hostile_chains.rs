//! Chains that break the ring's or guest memory's rules: loops, links out
//! of the table, status bytes the device cannot write, buffers outside
//! guest memory, broken layouts and absurd lengths.

use super::*;

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
    let big = GuestMem::from_ranges(&[(GuestAddress(0), 48 << 20)]).unwrap();
    let d = DiskInfo {
        sectors: 1 << 20,
        ..disk()
    };
    header(&big, VIRTIO_BLK_T_IN, 0);
    let (r, req) = parse_descs(&big, &d, &read_chain(40 << 20));
    r.unwrap();
    assert_fails(&req, VIRTIO_BLK_S_IOERR, GuestError::BadLength);
}

/// Parses a read whose data is `segments` descriptors of 512 bytes, on a
/// queue long enough to hold the chain.
fn read_in_segments(segments: u64) -> Request {
    let mem = GuestMem::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
    let q = MockSplitQueue::new(&mem, 2048);
    let mut descs = vec![desc(0x80000, 16, R)];
    descs.extend((0..segments).map(|i| desc(0x90000 + i * 64, 512, W)));
    descs.push(desc(0x80100, 1, W));
    mem.write_slice(
        BlkReqHeader::new(VIRTIO_BLK_T_IN, 0).as_bytes(),
        GuestAddress(0x80000),
    )
    .unwrap();
    let chain = q.build_desc_chain(&descs).unwrap();
    let mut req = Request::new();
    let d = DiskInfo {
        sectors: 1 << 20,
        ..disk()
    };
    parse(chain, &mem, &d, &mut req).unwrap();
    req
}

#[track_caller]
fn assert_detail(req: &Request, want: &str) {
    match req.action {
        Action::Fail { detail, .. } => assert_eq!(detail, want),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn more_than_1024_data_segments_is_ioerr() {
    // 1024 segments are served; 1025 (a chain of 1027 descriptors, within
    // what the parser keeps) fail the segment check.
    let req = read_in_segments(1024);
    assert_eq!(req.action, Action::Read { offset: 0 });
    assert_eq!(req.iovecs.len(), 1024);
    let req = read_in_segments(1025);
    assert_fails(&req, VIRTIO_BLK_S_IOERR, GuestError::BadLength);
    assert_detail(&req, "more than 1024 data segments");
    assert!(req.iovecs.is_empty());
}

#[test]
fn more_than_1024_segments_after_splitting_at_region_edges_is_ioerr() {
    // 1000 descriptors, each across the edge of two adjacent regions: 2000
    // iovecs.
    let ranges: Vec<_> = (0..64u64)
        .map(|i| (GuestAddress(i * 0x1000), 0x1000))
        .collect();
    let mem = GuestMem::from_ranges(&ranges).unwrap();
    let q = MockSplitQueue::new(&mem, 2048);
    let mut descs = vec![desc(0x20000, 16, R)];
    descs.extend((0..1000).map(|i| desc(0x21000 - 256 + (i % 16) * 0x1000, 512, W)));
    descs.push(desc(0x20100, 1, W));
    mem.write_slice(
        BlkReqHeader::new(VIRTIO_BLK_T_IN, 0).as_bytes(),
        GuestAddress(0x20000),
    )
    .unwrap();
    let chain = q.build_desc_chain(&descs).unwrap();
    let mut req = Request::new();
    parse(chain, &mem, &disk(), &mut req).unwrap();
    assert_fails(&req, VIRTIO_BLK_S_IOERR, GuestError::BadLength);
    assert_detail(&req, "more than 1024 data segments");
}

#[test]
fn chain_longer_than_the_parser_keeps_is_ioerr() {
    // 1102 descriptors: more than MAX_DESCS, refused before any mapping.
    let req = read_in_segments(1100);
    assert_fails(&req, VIRTIO_BLK_S_IOERR, GuestError::BadLength);
    assert_detail(&req, "chain too long");
}
