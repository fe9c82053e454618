//! Well-formed requests: what each one is parsed into, down to the host
//! addresses of its data.

use super::*;

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
