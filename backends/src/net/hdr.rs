//! The virtio-net header of a transmitted frame, checked against what the
//! guest negotiated (virtio 1.2 §5.1.6.2) before the frame goes to the tap.
//!
//! The tap reads the same header layout, so a valid header passes through
//! untouched; an invalid one is the guest's error, counted and dropped.

use pvio_frontend_protocol::net::{
    NetHdr, VIRTIO_NET_F_CSUM, VIRTIO_NET_F_HOST_ECN, VIRTIO_NET_F_HOST_TSO4,
    VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_HOST_UFO, VIRTIO_NET_F_HOST_USO,
    VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_ECN, VIRTIO_NET_HDR_GSO_NONE,
    VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6, VIRTIO_NET_HDR_GSO_UDP,
    VIRTIO_NET_HDR_GSO_UDP_L4,
};

/// What is wrong with a transmit header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HdrError {
    /// Flags other than NEEDS_CSUM (DATA_VALID and RSC_INFO are receive only).
    #[error("flags {0:#x} are not valid on transmit")]
    Flags(u8),
    /// NEEDS_CSUM without VIRTIO_NET_F_CSUM.
    #[error("partial checksum without VIRTIO_NET_F_CSUM")]
    CsumNotNegotiated,
    /// The checksum would be stored past the end of the frame.
    #[error("checksum at {start}+{offset} is outside the {len}-byte frame")]
    CsumOutsideFrame {
        /// `csum_start`.
        start: u16,
        /// `csum_offset`.
        offset: u16,
        /// Frame length.
        len: usize,
    },
    /// A `gso_type` virtio does not define.
    #[error("unknown gso_type {0:#x}")]
    UnknownGso(u8),
    /// A segmentation offload the guest did not negotiate.
    #[error("gso_type {0:#x} was not negotiated")]
    GsoNotNegotiated(u8),
    /// GSO without NEEDS_CSUM or with a zero segment size.
    #[error("GSO needs NEEDS_CSUM and a non-zero gso_size")]
    GsoIncomplete,
}

/// Checks the header of a transmitted frame of `frame_len` bytes (header
/// excluded) against the acknowledged features.
pub fn check_tx(hdr: &NetHdr, acked: u64, frame_len: usize) -> Result<(), HdrError> {
    if hdr.flags & !VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
        return Err(HdrError::Flags(hdr.flags));
    }
    if hdr.needs_csum() {
        if acked & VIRTIO_NET_F_CSUM == 0 {
            return Err(HdrError::CsumNotNegotiated);
        }
        let end = usize::from(hdr.csum_start()) + usize::from(hdr.csum_offset()) + 2;
        if end > frame_len {
            return Err(HdrError::CsumOutsideFrame {
                start: hdr.csum_start(),
                offset: hdr.csum_offset(),
                len: frame_len,
            });
        }
    }
    let gso = hdr.gso_type & !VIRTIO_NET_HDR_GSO_ECN;
    let needed = match gso {
        VIRTIO_NET_HDR_GSO_NONE => {
            return if hdr.gso_type & VIRTIO_NET_HDR_GSO_ECN != 0 {
                Err(HdrError::UnknownGso(hdr.gso_type))
            } else {
                Ok(())
            };
        }
        VIRTIO_NET_HDR_GSO_TCPV4 => VIRTIO_NET_F_HOST_TSO4,
        VIRTIO_NET_HDR_GSO_TCPV6 => VIRTIO_NET_F_HOST_TSO6,
        VIRTIO_NET_HDR_GSO_UDP => VIRTIO_NET_F_HOST_UFO,
        VIRTIO_NET_HDR_GSO_UDP_L4 => VIRTIO_NET_F_HOST_USO,
        _ => return Err(HdrError::UnknownGso(hdr.gso_type)),
    };
    let ecn = if hdr.gso_type & VIRTIO_NET_HDR_GSO_ECN != 0 {
        VIRTIO_NET_F_HOST_ECN
    } else {
        0
    };
    if acked & (needed | ecn) != needed | ecn {
        return Err(HdrError::GsoNotNegotiated(hdr.gso_type));
    }
    if !hdr.needs_csum() || hdr.gso_size() == 0 {
        return Err(HdrError::GsoIncomplete);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvio_frontend_protocol::net::{VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_HDR_F_RSC_INFO};
    use zerocopy::little_endian::U16;

    const ALL: u64 = VIRTIO_NET_F_CSUM
        | VIRTIO_NET_F_HOST_TSO4
        | VIRTIO_NET_F_HOST_TSO6
        | VIRTIO_NET_F_HOST_ECN
        | VIRTIO_NET_F_HOST_UFO;

    fn tso4() -> NetHdr {
        NetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
            hdr_len: U16::new(66),
            gso_size: U16::new(1448),
            csum_start: U16::new(34),
            csum_offset: U16::new(16),
            num_buffers: U16::new(0),
        }
    }

    #[test]
    fn a_plain_header_passes() {
        assert_eq!(check_tx(&NetHdr::default(), 0, 60), Ok(()));
    }

    #[test]
    fn spec_5_1_6_2_gso_packets_need_the_feature_and_a_partial_checksum() {
        assert_eq!(check_tx(&tso4(), ALL, 65_000), Ok(()));
        assert_eq!(
            check_tx(&tso4(), VIRTIO_NET_F_CSUM | VIRTIO_NET_F_HOST_TSO6, 65_000),
            Err(HdrError::GsoNotNegotiated(VIRTIO_NET_HDR_GSO_TCPV4))
        );
        let no_csum = NetHdr { flags: 0, ..tso4() };
        assert_eq!(
            check_tx(&no_csum, ALL, 65_000),
            Err(HdrError::GsoIncomplete)
        );
        let no_mss = NetHdr {
            gso_size: U16::new(0),
            ..tso4()
        };
        assert_eq!(check_tx(&no_mss, ALL, 65_000), Err(HdrError::GsoIncomplete));
        let v6 = NetHdr {
            gso_type: VIRTIO_NET_HDR_GSO_TCPV6,
            ..tso4()
        };
        assert_eq!(check_tx(&v6, ALL, 65_000), Ok(()));
        let uso = NetHdr {
            gso_type: VIRTIO_NET_HDR_GSO_UDP_L4,
            ..tso4()
        };
        assert_eq!(
            check_tx(&uso, ALL, 65_000),
            Err(HdrError::GsoNotNegotiated(VIRTIO_NET_HDR_GSO_UDP_L4))
        );
    }

    #[test]
    fn spec_5_1_6_2_ecn_needs_host_ecn() {
        let ecn = NetHdr {
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN,
            ..tso4()
        };
        assert_eq!(check_tx(&ecn, ALL, 65_000), Ok(()));
        assert!(check_tx(&ecn, ALL & !VIRTIO_NET_F_HOST_ECN, 65_000).is_err());
        let bare_ecn = NetHdr {
            gso_type: VIRTIO_NET_HDR_GSO_ECN,
            ..NetHdr::default()
        };
        assert!(check_tx(&bare_ecn, ALL, 100).is_err());
    }

    #[test]
    fn spec_5_1_6_2_receive_only_flags_are_refused() {
        for f in [VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_HDR_F_RSC_INFO, 0x80] {
            let h = NetHdr {
                flags: f,
                ..NetHdr::default()
            };
            assert_eq!(check_tx(&h, ALL, 100), Err(HdrError::Flags(f)));
        }
    }

    #[test]
    fn checksum_offload_is_checked() {
        let h = NetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            csum_start: U16::new(34),
            csum_offset: U16::new(6),
            ..NetHdr::default()
        };
        assert_eq!(check_tx(&h, VIRTIO_NET_F_CSUM, 42), Ok(()));
        assert_eq!(check_tx(&h, 0, 42), Err(HdrError::CsumNotNegotiated));
        assert!(matches!(
            check_tx(&h, VIRTIO_NET_F_CSUM, 41),
            Err(HdrError::CsumOutsideFrame { .. })
        ));
        let huge = NetHdr {
            csum_start: U16::new(u16::MAX),
            csum_offset: U16::new(u16::MAX),
            ..h
        };
        assert!(check_tx(&huge, VIRTIO_NET_F_CSUM, 65_000).is_err());
    }

    #[test]
    fn unknown_gso_types_are_refused() {
        for t in [2u8, 6, 0x7f] {
            let h = NetHdr {
                gso_type: t,
                ..tso4()
            };
            assert_eq!(
                check_tx(&h, ALL | VIRTIO_NET_F_HOST_USO, 65_000),
                Err(HdrError::UnknownGso(t))
            );
        }
    }
}
