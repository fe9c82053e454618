//! Mergeable receive buffers (virtio 1.2 §5.1.6.3, `VIRTIO_NET_F_MRG_RXBUF`):
//! one received frame spread over several receive chains, with the number of
//! chains used written into `num_buffers` of the header in the first.
//!
//! Pure arithmetic: which chains a frame fills and how much of each.

/// How a received frame (header included) fills a run of receive chains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spread {
    /// Chains used (the first `chains` of the run); the `num_buffers` value.
    pub chains: usize,
    /// Bytes written into the last chain used (every earlier one is full).
    pub last_len: usize,
}

impl Spread {
    /// Bytes written into chain `i` of the run, whose capacity is `cap`.
    #[must_use]
    pub fn used_len(&self, i: usize, cap: usize) -> usize {
        match (i + 1).cmp(&self.chains) {
            std::cmp::Ordering::Less => cap,
            std::cmp::Ordering::Equal => self.last_len,
            std::cmp::Ordering::Greater => 0,
        }
    }
}

/// How `len` bytes fill chains of capacities `caps`, in order (a read fills
/// each chain's buffers before the next). `None` when `len` is 0 or the
/// chains hold less than `len`.
#[must_use]
pub fn spread(len: usize, caps: impl IntoIterator<Item = usize>) -> Option<Spread> {
    if len == 0 {
        return None;
    }
    let mut left = len;
    for (i, cap) in caps.into_iter().enumerate() {
        if left <= cap {
            return Some(Spread {
                chains: i + 1,
                last_len: left,
            });
        }
        left -= cap;
    }
    None
}

/// The `num_buffers` field for `chains` chains, little-endian, or `None`
/// when it does not fit in 16 bits (a queue has at most 32768 entries, so a
/// correct caller never sees that).
#[must_use]
pub fn num_buffers_le(chains: usize) -> Option<[u8; 2]> {
    u16::try_from(chains).ok().map(u16::to_le_bytes)
}

/// Offset of `num_buffers` in the 12-byte header (virtio 1.2 §5.1.6).
pub const NUM_BUFFERS_OFFSET: usize = 10;

#[cfg(test)]
mod tests {
    use super::*;
    use pvio_frontend_protocol::net::{NetHdr, NET_HDR_LEN};
    use zerocopy::IntoBytes;

    #[test]
    fn spec_5_1_6_3_a_small_frame_takes_one_buffer() {
        let s = spread(NET_HDR_LEN + 60, [1536, 1536].iter().copied()).unwrap();
        assert_eq!(
            s,
            Spread {
                chains: 1,
                last_len: 72
            }
        );
        assert_eq!(s.used_len(0, 1536), 72);
        assert_eq!(s.used_len(1, 1536), 0);
    }

    #[test]
    fn spec_5_1_6_3_a_gso_frame_spreads_over_buffers() {
        // A 64 KiB TSO frame into Linux's typical 1536-byte buffers.
        let len = NET_HDR_LEN + 65_536 + 14;
        let caps = vec![1536; 64];
        let s = spread(len, caps.iter().copied()).unwrap();
        assert_eq!(s.chains, len.div_ceil(1536));
        let total: usize = (0..s.chains).map(|i| s.used_len(i, 1536)).sum();
        assert_eq!(total, len);
        assert!(s.last_len > 0 && s.last_len <= 1536);
    }

    #[test]
    fn exact_fits_and_uneven_buffers() {
        assert_eq!(
            spread(100, [100, 50].iter().copied()),
            Some(Spread {
                chains: 1,
                last_len: 100
            })
        );
        assert_eq!(
            spread(101, [100, 50].iter().copied()),
            Some(Spread {
                chains: 2,
                last_len: 1
            })
        );
        assert_eq!(
            spread(150, [100, 50].iter().copied()),
            Some(Spread {
                chains: 2,
                last_len: 50
            })
        );
        assert_eq!(
            spread(30, [12, 4000, 12].iter().copied()),
            Some(Spread {
                chains: 2,
                last_len: 18
            })
        );
    }

    #[test]
    fn too_little_room_or_nothing_to_place() {
        assert_eq!(spread(151, [100, 50].iter().copied()), None);
        assert_eq!(spread(1, [].iter().copied()), None);
        assert_eq!(spread(0, [100].iter().copied()), None);
    }

    #[test]
    fn spec_5_1_6_num_buffers_sits_at_byte_10() {
        let hdr = NetHdr::with_num_buffers(0x0203);
        let bytes = hdr.as_bytes();
        assert_eq!(
            bytes[NUM_BUFFERS_OFFSET..NUM_BUFFERS_OFFSET + 2],
            num_buffers_le(0x0203).unwrap()
        );
        assert_eq!(num_buffers_le(70_000), None);
    }
}
