//! Well-formed chains that ask for something the device must refuse:
//! wrong data direction, past the end of the disk, on a read-only disk,
//! not whole sectors, a type or flag not offered.

use super::*;

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
