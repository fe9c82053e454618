//! The net backend's checks of what a guest writes, from the fuzzer's
//! bytes: the transmit header against the acknowledged features
//! (`hdr::check_tx`), the control queue's command header and
//! `VQ_PAIRS_SET` data, and how a received frame spreads over mergeable
//! receive chains (`merge::spread`). Only the backends' public API is
//! used. Invariants: nothing panics, and what is accepted is what the
//! virtio spec allows (a checksum inside the frame, an offload that was
//! negotiated, a pair count in range, chains filled exactly).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pvio_backends::net::{hdr, merge, offload};
use pvio_frontend_protocol::net::{
    NetCtrlHdr, NetCtrlMq, NetHdr, VIRTIO_NET_F_CSUM, VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VIRTIO_NET_HDR_GSO_ECN, VIRTIO_NET_HDR_GSO_NONE,
};
use pvio_frontend_protocol::zerocopy::FromBytes;

/// Reads the input, yielding zeros once it is used up.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor(data);
    let acked = u64::from_le_bytes(c.take());
    let frame_len = usize::from(c.u16());

    // The transmit header.
    let raw: [u8; 12] = c.take();
    let h = NetHdr::read_from_bytes(&raw).expect("12 bytes are a header");
    if hdr::check_tx(&h, acked, frame_len).is_ok() {
        assert_eq!(h.flags & !VIRTIO_NET_HDR_F_NEEDS_CSUM, 0);
        if h.needs_csum() {
            assert_ne!(acked & VIRTIO_NET_F_CSUM, 0);
            let end = usize::from(h.csum_start()) + usize::from(h.csum_offset()) + 2;
            assert!(end <= frame_len, "checksum outside the frame accepted");
        }
        if h.gso_type & !VIRTIO_NET_HDR_GSO_ECN != VIRTIO_NET_HDR_GSO_NONE {
            assert!(
                h.needs_csum() && h.gso_size() > 0,
                "incomplete GSO accepted"
            );
        }
    }
    let limits = offload::frame_limits(acked, c.u16());
    let _ = (limits.rx, limits.tx);

    // A control command: header, then VQ_PAIRS_SET data.
    let cmd: [u8; 4] = c.take();
    let ch = NetCtrlHdr::read_from_bytes(&cmd[..2]).expect("2 bytes are a header");
    let mq = NetCtrlMq::read_from_bytes(&cmd[2..]).expect("2 bytes are the data");
    let max = c.u16();
    let _ = (ch.class, ch.cmd);
    if mq.is_valid_for(max) {
        let n = mq.virtqueue_pairs();
        assert!(
            n >= 1 && n <= max && n <= 0x8000,
            "{n} pairs of {max} accepted"
        );
    }

    // A received frame over mergeable receive chains.
    let len = usize::from(c.u16());
    let caps: Vec<usize> =
        c.0.chunks(2)
            .take(64)
            .map(|b| usize::from(b[0]) * 64 + usize::from(*b.get(1).unwrap_or(&0) & 63))
            .collect();
    if let Some(s) = merge::spread(len, caps.iter().copied()) {
        assert!(s.chains >= 1 && s.chains <= caps.len());
        let total: usize = caps
            .iter()
            .enumerate()
            .map(|(i, &cap)| s.used_len(i, cap))
            .sum();
        assert_eq!(total, len, "the chains hold more or less than the frame");
        for (i, &cap) in caps.iter().enumerate() {
            assert!(s.used_len(i, cap) <= cap, "chain {i} overfilled");
        }
        assert!(merge::num_buffers_le(s.chains).is_some());
    } else {
        assert!(len == 0 || caps.iter().sum::<usize>() < len);
    }
});
