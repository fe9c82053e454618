//! The header in front of every virtio-net packet (virtio 1.2 §5.1.6,
//! `struct virtio_net_hdr`).

use core::mem::size_of;

use zerocopy::little_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{VIRTIO_NET_F_HASH_REPORT, VIRTIO_NET_F_MRG_RXBUF};
use crate::features::VIRTIO_F_VERSION_1;

/// Length of [`NetHdr`]: the header with `num_buffers`, used whenever
/// `VIRTIO_F_VERSION_1` or `VIRTIO_NET_F_MRG_RXBUF` is negotiated (virtio 1.2
/// §5.1.6).
pub const NET_HDR_LEN: usize = 12;
/// Length of the legacy header without `num_buffers` (legacy device without
/// `VIRTIO_NET_F_MRG_RXBUF`; virtio 1.2 §5.1.6, legacy interface).
pub const NET_HDR_LEN_LEGACY_NO_MRG: usize = 10;
/// Length of the header with `hash_value`, `hash_report` and
/// `padding_reserved` appended (with `VIRTIO_NET_F_HASH_REPORT`; virtio 1.2
/// §5.1.6).
pub const NET_HDR_LEN_HASH: usize = 20;

/// `flags`: the driver left a partial checksum; `csum_start` and
/// `csum_offset` are valid (virtio 1.2 §5.1.6).
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// `flags`: the device validated the checksum (receive only; virtio 1.2
/// §5.1.6).
pub const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;
/// `flags`: coalescing info is in `csum_start` / `csum_offset` (receive only,
/// `VIRTIO_NET_F_RSC_EXT`; virtio 1.2 §5.1.6).
pub const VIRTIO_NET_HDR_F_RSC_INFO: u8 = 4;

/// `gso_type`: not a GSO packet (virtio 1.2 §5.1.6).
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
/// `gso_type`: TCP over IPv4 segmentation (virtio 1.2 §5.1.6).
pub const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
/// `gso_type`: UDP fragmentation offload (virtio 1.2 §5.1.6).
pub const VIRTIO_NET_HDR_GSO_UDP: u8 = 3;
/// `gso_type`: TCP over IPv6 segmentation (virtio 1.2 §5.1.6).
pub const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
/// `gso_type`: UDP segmentation offload (virtio 1.2 §5.1.6).
pub const VIRTIO_NET_HDR_GSO_UDP_L4: u8 = 5;
/// `gso_type` bit: the TCP segments carry ECN (virtio 1.2 §5.1.6).
pub const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;

/// The virtio-net packet header, in its 12-byte virtio 1.x form (virtio 1.2
/// §5.1.6; Linux `struct virtio_net_hdr_v1`, bitwise the legacy
/// `virtio_net_hdr_mrg_rxbuf`).
///
/// It is also the layout of the vnet header a Linux tap device with
/// `TUNSETVNETHDRSZ` 12 reads and writes (little-endian on little-endian
/// hosts, elsewhere after `TUNSETVNETLE`), so a net backend can pass it
/// through. [`net_hdr_len`] tells the length for a negotiated feature set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct NetHdr {
    /// `VIRTIO_NET_HDR_F_*`.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*`.
    pub gso_type: u8,
    /// Length of the headers to copy into each segment.
    pub hdr_len: U16,
    /// Payload size of each segment.
    pub gso_size: U16,
    /// Where checksumming starts, from the start of the packet.
    pub csum_start: U16,
    /// Where to store the checksum, from `csum_start`.
    pub csum_offset: U16,
    /// Number of merged receive buffers (receive with `MRG_RXBUF`; 1 in
    /// virtio 1.x without it; 0 on transmit).
    pub num_buffers: U16,
}
const _: () = assert!(size_of::<NetHdr>() == NET_HDR_LEN);

impl NetHdr {
    /// A receive header with nothing offloaded and `num_buffers` set.
    #[must_use]
    pub const fn with_num_buffers(num_buffers: u16) -> Self {
        Self {
            flags: 0,
            gso_type: VIRTIO_NET_HDR_GSO_NONE,
            hdr_len: U16::ZERO,
            gso_size: U16::ZERO,
            csum_start: U16::ZERO,
            csum_offset: U16::ZERO,
            num_buffers: U16::new(num_buffers),
        }
    }

    /// `hdr_len`.
    #[must_use]
    pub const fn hdr_len(&self) -> u16 {
        self.hdr_len.get()
    }

    /// `gso_size`.
    #[must_use]
    pub const fn gso_size(&self) -> u16 {
        self.gso_size.get()
    }

    /// `csum_start`.
    #[must_use]
    pub const fn csum_start(&self) -> u16 {
        self.csum_start.get()
    }

    /// `csum_offset`.
    #[must_use]
    pub const fn csum_offset(&self) -> u16 {
        self.csum_offset.get()
    }

    /// `num_buffers`.
    #[must_use]
    pub const fn num_buffers(&self) -> u16 {
        self.num_buffers.get()
    }

    /// Whether [`VIRTIO_NET_HDR_F_NEEDS_CSUM`] is set.
    #[must_use]
    pub const fn needs_csum(&self) -> bool {
        self.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0
    }

    /// Whether the packet is a GSO packet (`gso_type` other than NONE, ECN
    /// bit aside).
    #[must_use]
    pub const fn is_gso(&self) -> bool {
        self.gso_type & !VIRTIO_NET_HDR_GSO_ECN != VIRTIO_NET_HDR_GSO_NONE
    }
}

/// The header length for the negotiated `features` (virtio 1.2 §5.1.6):
/// [`NET_HDR_LEN_HASH`] with `VIRTIO_NET_F_HASH_REPORT`, else [`NET_HDR_LEN`]
/// with `VIRTIO_F_VERSION_1` or `VIRTIO_NET_F_MRG_RXBUF`, else the legacy
/// [`NET_HDR_LEN_LEGACY_NO_MRG`].
#[must_use]
pub const fn net_hdr_len(features: u64) -> usize {
    if features & VIRTIO_NET_F_HASH_REPORT != 0 {
        NET_HDR_LEN_HASH
    } else if features & (VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MRG_RXBUF) != 0 {
        NET_HDR_LEN
    } else {
        NET_HDR_LEN_LEGACY_NO_MRG
    }
}

#[cfg(test)]
mod tests {
    use core::mem::offset_of;

    use super::*;

    #[test]
    fn spec_5_1_6_net_hdr_layout() {
        assert_eq!(size_of::<NetHdr>(), 12);
        assert_eq!(offset_of!(NetHdr, flags), 0);
        assert_eq!(offset_of!(NetHdr, gso_type), 1);
        assert_eq!(offset_of!(NetHdr, hdr_len), 2);
        assert_eq!(offset_of!(NetHdr, gso_size), 4);
        assert_eq!(offset_of!(NetHdr, csum_start), 6);
        assert_eq!(offset_of!(NetHdr, csum_offset), 8);
        assert_eq!(offset_of!(NetHdr, num_buffers), 10);
        assert_eq!(NET_HDR_LEN_LEGACY_NO_MRG, offset_of!(NetHdr, num_buffers));
    }

    #[test]
    fn spec_5_1_6_flag_and_gso_values() {
        assert_eq!(VIRTIO_NET_HDR_F_NEEDS_CSUM, 1);
        assert_eq!(VIRTIO_NET_HDR_F_DATA_VALID, 2);
        assert_eq!(VIRTIO_NET_HDR_F_RSC_INFO, 4);
        assert_eq!(VIRTIO_NET_HDR_GSO_NONE, 0);
        assert_eq!(VIRTIO_NET_HDR_GSO_TCPV4, 1);
        assert_eq!(VIRTIO_NET_HDR_GSO_UDP, 3);
        assert_eq!(VIRTIO_NET_HDR_GSO_TCPV6, 4);
        assert_eq!(VIRTIO_NET_HDR_GSO_UDP_L4, 5);
        assert_eq!(VIRTIO_NET_HDR_GSO_ECN, 0x80);
    }

    #[test]
    fn spec_5_1_6_net_hdr_decodes_little_endian_bytes() {
        // A TSOv4 packet with ECN and a partial checksum, as a guest sends it.
        let bytes: [u8; 12] = [
            0x01, 0x81, // NEEDS_CSUM, TCPV4 | ECN
            0x36, 0x00, // hdr_len 54
            0xa8, 0x05, // gso_size 1448
            0x22, 0x00, // csum_start 34
            0x10, 0x00, // csum_offset 16
            0x00, 0x00, // num_buffers 0
        ];
        let hdr = NetHdr::read_from_bytes(&bytes).expect("12 bytes");
        assert!(hdr.needs_csum());
        assert!(hdr.is_gso());
        assert_eq!(
            hdr.gso_type & !VIRTIO_NET_HDR_GSO_ECN,
            VIRTIO_NET_HDR_GSO_TCPV4
        );
        assert_eq!(hdr.hdr_len(), 54);
        assert_eq!(hdr.gso_size(), 1448);
        assert_eq!(hdr.csum_start(), 34);
        assert_eq!(hdr.csum_offset(), 16);
        assert_eq!(hdr.num_buffers(), 0);
        assert_eq!(hdr.as_bytes(), &bytes);
    }

    #[test]
    fn spec_5_1_6_receive_header_with_merged_buffers() {
        let hdr = NetHdr::with_num_buffers(3);
        assert_eq!(hdr.as_bytes(), &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0]);
        assert!(!hdr.needs_csum());
        assert!(!hdr.is_gso());
        let ecn_only = NetHdr {
            gso_type: VIRTIO_NET_HDR_GSO_ECN,
            ..NetHdr::default()
        };
        assert!(!ecn_only.is_gso());
    }

    #[test]
    fn spec_5_1_6_header_length_follows_features() {
        assert_eq!(net_hdr_len(VIRTIO_F_VERSION_1), 12);
        assert_eq!(net_hdr_len(VIRTIO_NET_F_MRG_RXBUF), 12);
        assert_eq!(net_hdr_len(0), 10);
        assert_eq!(
            net_hdr_len(VIRTIO_F_VERSION_1 | VIRTIO_NET_F_HASH_REPORT),
            20
        );
    }
}
