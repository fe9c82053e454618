use std::os::fd::AsFd;

use super::*;

/// Bytes of the file behind a region, read with `pread` (not through the
/// mapping under test).
fn file_bytes(fd: &OwnedFd, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    let n = rustix::io::pread(fd.as_fd(), &mut buf, 0).unwrap();
    assert_eq!(n, len);
    buf
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// A region made as for GET_INFLIGHT_FD and mapped as for SET_INFLIGHT_FD,
/// with a second fd on the same file to look at it.
fn region(num_queues: u16, queue_size: u16) -> (Arc<InflightRegion>, OwnedFd, usize) {
    let new = InflightRegion::create(num_queues, queue_size).unwrap();
    let look = new.fd.try_clone().unwrap();
    let size = usize::try_from(new.mmap_size).unwrap();
    let r = InflightRegion::open(new.fd, new.mmap_size, 0, num_queues, queue_size).unwrap();
    (Arc::new(r), look, size)
}

#[test]
fn queue_parts_are_sized_as_libvhost_user_sizes_them() {
    // ALIGN_UP(sizeof(VuDescStateSplit) * queue_size + sizeof(uint16_t), 64)
    assert_eq!(queue_region_size(128), 2112);
    assert_eq!(queue_region_size(256), 4160);
    assert_eq!(queue_region_size(8), 192);
    // The 16-byte header and every entry fit in the part.
    for qs in [1u16, 2, 3, 4, 64, 128, 1024, 32768] {
        assert!(queue_region_size(qs) >= 16 + 16 * u64::from(qs), "{qs}");
    }
    let new = InflightRegion::create(2, 128).unwrap();
    assert_eq!(new.mmap_size, 2 * 2112);
    assert_eq!(
        rustix::fs::fstat(&new.fd).unwrap().st_size,
        i64::try_from(new.mmap_size).unwrap()
    );
}

#[test]
fn spec_inflight_io_tracking_split_layout() {
    let (r, look, size) = region(2, 8);
    let stride = 192;
    let mut q1 = InflightQueue::new(Arc::clone(&r), 1).unwrap();
    assert!(q1.start_fresh());
    assert!(!q1.start_fresh(), "a used part is not fresh");
    q1.mark(3);
    q1.mark(6);
    q1.pre_put(3);
    q1.post_put(3, 1);
    let b = file_bytes(&look, size);
    // desc_num set for every queue at SET_INFLIGHT_FD; version only where
    // a queue started.
    assert_eq!(u16_at(&b, 10), 8);
    assert_eq!(u16_at(&b, stride + 10), 8);
    assert_eq!(u16_at(&b, 8), 0);
    assert_eq!(u16_at(&b, stride + 8), VERSION);
    assert_eq!(u16_at(&b, stride + 12), 3, "last_batch_head");
    assert_eq!(u16_at(&b, stride + 14), 1, "used_idx");
    let desc = |h: usize| stride + 16 + 16 * h;
    assert_eq!(b[desc(3)], 0, "3 was put in the used ring");
    assert_eq!(u64_at(&b, desc(3) + 8), 0, "counter of the first chain");
    assert_eq!(b[desc(6)], 1, "6 is in flight");
    assert_eq!(u64_at(&b, desc(6) + 8), 1, "counter of the second chain");
    // Queue 0's part is untouched.
    assert!(b[16..stride].iter().all(|&x| x == 0));
    assert!(InflightQueue::new(r, 2).is_none(), "no third queue");
}

#[test]
fn recovery_resubmits_in_pop_order_and_skips_a_put_that_was_not_cleared() {
    let (r, _look, _) = region(1, 16);
    let mut q = InflightQueue::new(Arc::clone(&r), 0).unwrap();
    assert!(q.start_fresh());
    for head in [5, 2, 9, 1, 12] {
        q.mark(head);
    }
    // 2 completed cleanly: used ring index 1.
    q.pre_put(2);
    q.post_put(2, 1);
    // 9's used entry was written (the guest's used index is 2) and then the
    // backend died before clearing its mark.
    q.pre_put(9);

    // The next backend, same region.
    let mut next = InflightQueue::new(Arc::clone(&r), 0).unwrap();
    assert!(!next.start_fresh());
    assert_eq!(next.recover(2, 16), [5, 1, 12]);
    // New chains count on from the last one resubmitted.
    next.mark(7);
    let mut again = InflightQueue::new(r, 0).unwrap();
    assert!(!again.start_fresh());
    assert_eq!(again.recover(2, 16), [5, 1, 12, 7]);
}

#[test]
fn a_region_the_file_cannot_hold_is_refused() {
    let new = InflightRegion::create(1, 128).unwrap();
    let size = new.mmap_size;
    let fd = new.fd.try_clone().unwrap();
    // More queues than the file holds, an offset past its end, a size too
    // small for the queues, no queues at all.
    for (mmap_size, offset, queues, qs) in [
        (size, 0, 2, 128),
        (size, 64, 1, 128),
        (size - 1, 0, 1, 128),
        (size, 0, 0, 128),
        (size, 0, 1, 0),
        (size, u64::MAX - 10, 1, 128),
    ] {
        let got =
            InflightRegion::open(fd.try_clone().unwrap(), mmap_size, offset, queues, qs).is_err();
        assert!(got, "{mmap_size} {offset} {queues} {qs}");
    }
    // Not a file.
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    assert!(InflightRegion::open(OwnedFd::from(a), 64, 0, 1, 1).is_err());
    // The memfd cannot be shrunk under a mapping.
    assert!(rustix::fs::ftruncate(&fd, 0).is_err());
    assert!(InflightRegion::open(fd, size, 0, 1, 128).is_ok());
}

#[test]
fn a_hostile_region_only_yields_heads_inside_the_ring() {
    let (r, look, _) = region(1, 64);
    // Every entry marked, last_batch_head out of range, used_idx off.
    let mut raw = vec![0u8; 16 + 64 * 16];
    raw[8..10].copy_from_slice(&VERSION.to_le_bytes());
    raw[10..12].copy_from_slice(&u16::MAX.to_le_bytes());
    raw[12..14].copy_from_slice(&u16::MAX.to_le_bytes());
    raw[14..16].copy_from_slice(&7u16.to_le_bytes());
    for h in 0..64 {
        raw[16 + 16 * h] = 1;
        raw[16 + 16 * h + 8..16 + 16 * h + 16].copy_from_slice(&(64 - h as u64).to_le_bytes());
    }
    rustix::io::pwrite(look.as_fd(), &raw, 0).unwrap();
    let mut q = InflightQueue::new(r, 0).unwrap();
    assert!(!q.start_fresh());
    // A ring of 16: heads 0..16 only, ordered by counter (descending heads).
    let heads = q.recover(0, 16);
    assert_eq!(heads, (0..16).rev().collect::<Vec<u16>>());
    q.mark(u16::MAX);
    q.pre_put(u16::MAX);
    q.post_put(u16::MAX, 0);
}
