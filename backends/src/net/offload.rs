//! What the guest negotiated, translated for the tap: which virtio-net
//! offload features pvio offers given what the kernel's tun driver supports,
//! the `TUNSETOFFLOAD` flags that match the guest's acknowledged features,
//! the header length, and the largest frames each way.
//!
//! Pure functions of feature bits and numbers: no I/O.

use libc::c_uint;
use pvio_frontend_protocol::features::{
    VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1,
};
use pvio_frontend_protocol::net::{
    net_hdr_len, VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_ECN,
    VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_GUEST_UFO,
    VIRTIO_NET_F_HOST_ECN, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_HOST_UFO,
    VIRTIO_NET_F_MAC, VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_MTU, VIRTIO_NET_F_STATUS,
};

/// Every `TUN_F_*` offload flag pvio knows.
pub const TUN_F_ALL: c_uint = libc::TUN_F_CSUM
    | libc::TUN_F_TSO4
    | libc::TUN_F_TSO6
    | libc::TUN_F_TSO_ECN
    | libc::TUN_F_UFO
    | libc::TUN_F_USO4
    | libc::TUN_F_USO6;

/// Length of an Ethernet header (no VLAN tag).
pub const ETH_HLEN: usize = 14;
/// Length of one 802.1Q VLAN tag.
pub const VLAN_HLEN: usize = 4;
/// The largest packet Linux builds for segmentation offload (`GSO_MAX_SIZE`,
/// without BIG TCP).
pub const GSO_MAX_SIZE: usize = 65_536;
/// The largest frame either way, without the virtio-net header: a GSO packet
/// behind an Ethernet header with two VLAN tags.
pub const MAX_FRAME_LEN: usize = GSO_MAX_SIZE + ETH_HLEN + 2 * VLAN_HLEN;
/// The smallest frame a tap accepts: an Ethernet header.
pub const MIN_FRAME_LEN: usize = ETH_HLEN;
/// The MTU a virtio-net driver assumes when the device does not give one.
pub const DEFAULT_MTU: u16 = 1500;
/// The smallest MTU pvio offers (IPv4's minimum; virtio 1.2 §5.1.4.1 needs
/// at least 68).
pub const MIN_MTU: u16 = 68;

/// Guest-receive offloads: each needs a `TUN_F_*` flag to be deliverable.
const GUEST_OFFLOADS: [(u64, c_uint); 5] = [
    (VIRTIO_NET_F_GUEST_CSUM, libc::TUN_F_CSUM),
    (VIRTIO_NET_F_GUEST_TSO4, libc::TUN_F_TSO4),
    (VIRTIO_NET_F_GUEST_TSO6, libc::TUN_F_TSO6),
    (VIRTIO_NET_F_GUEST_ECN, libc::TUN_F_TSO_ECN),
    (VIRTIO_NET_F_GUEST_UFO, libc::TUN_F_UFO),
];

/// The device features pvio's net backend offers, given the `TUN_F_*` flags
/// the kernel accepts (`tun_support`), before MQ / CTRL_VQ (the device adds
/// those by queue count).
///
/// Transmit offloads (CSUM, HOST_TSO4/6, HOST_ECN) need nothing from the
/// kernel beyond `IFF_VNET_HDR`: a tap accepts partial checksums and GSO
/// frames with a virtio-net header. HOST_UFO is offered only where the
/// kernel still takes UFO (it does where it accepts `TUN_F_UFO`).
#[must_use]
pub fn offered_features(tun_support: c_uint) -> u64 {
    let mut features = VIRTIO_F_VERSION_1
        | VIRTIO_F_EVENT_IDX
        | VIRTIO_F_INDIRECT_DESC
        | VIRTIO_NET_F_MAC
        | VIRTIO_NET_F_MTU
        | VIRTIO_NET_F_STATUS
        | VIRTIO_NET_F_MRG_RXBUF
        | VIRTIO_NET_F_CSUM
        | VIRTIO_NET_F_HOST_TSO4
        | VIRTIO_NET_F_HOST_TSO6
        | VIRTIO_NET_F_HOST_ECN;
    if tun_support & libc::TUN_F_UFO != 0 {
        features |= VIRTIO_NET_F_HOST_UFO;
    }
    // A receive offload is useless without checksum offload (the kernel
    // ignores TSO flags without TUN_F_CSUM; virtio 1.2 §5.1.3.1 makes
    // GUEST_TSO* depend on GUEST_CSUM).
    if tun_support & libc::TUN_F_CSUM != 0 {
        for (feature, flag) in GUEST_OFFLOADS {
            if tun_support & flag != 0 {
                features |= feature;
            }
        }
    }
    features
}

/// The `TUNSETOFFLOAD` flags for what the guest acknowledged: the frames the
/// tap may hand pvio are exactly those the guest's driver can take.
///
/// Without GUEST_CSUM nothing is offloaded (the kernel then checksums and
/// segments every frame itself); GUEST_ECN only matters with a TSO flag.
#[must_use]
pub fn tun_offload_flags(acked: u64) -> c_uint {
    if acked & VIRTIO_NET_F_GUEST_CSUM == 0 {
        return 0;
    }
    let mut flags = GUEST_OFFLOADS
        .iter()
        .filter(|&&(feature, _)| acked & feature != 0)
        .fold(0, |acc, &(_, flag)| acc | flag);
    if flags & (libc::TUN_F_TSO4 | libc::TUN_F_TSO6) == 0 {
        flags &= !libc::TUN_F_TSO_ECN;
    }
    flags
}

/// Whether the guest takes merged receive buffers.
#[must_use]
pub const fn mergeable_rx(acked: u64) -> bool {
    acked & VIRTIO_NET_F_MRG_RXBUF != 0
}

/// The virtio-net header length for the acknowledged features (12 bytes
/// with VERSION_1 or MRG_RXBUF; the tap is told the same with
/// `TUNSETVNETHDRSZ`).
#[must_use]
pub const fn hdr_len(acked: u64) -> usize {
    net_hdr_len(acked)
}

/// The largest frames, without the virtio-net header, each way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// The largest frame the tap may hand pvio for the guest.
    pub rx: usize,
    /// The largest frame the guest may send; longer ones are dropped and
    /// counted.
    pub tx: usize,
}

/// The frame limits for the acknowledged features and the MTU.
///
/// Receive: GSO frames up to [`MAX_FRAME_LEN`] when the guest takes any
/// receive segmentation offload, else one MTU-sized packet behind an
/// Ethernet header with two VLAN tags. Transmit: the same rule with the
/// host offloads, and without VIRTIO_NET_F_MTU the guest may pick any MTU,
/// so only [`MAX_FRAME_LEN`] bounds it.
#[must_use]
pub fn frame_limits(acked: u64, mtu: u16) -> FrameLimits {
    let one_packet = usize::from(mtu.max(DEFAULT_MTU)) + ETH_HLEN + 2 * VLAN_HLEN;
    let guest_gso = VIRTIO_NET_F_GUEST_TSO4 | VIRTIO_NET_F_GUEST_TSO6 | VIRTIO_NET_F_GUEST_UFO;
    let host_gso = VIRTIO_NET_F_HOST_TSO4 | VIRTIO_NET_F_HOST_TSO6 | VIRTIO_NET_F_HOST_UFO;
    let rx = if acked & guest_gso != 0 {
        MAX_FRAME_LEN
    } else {
        one_packet.min(MAX_FRAME_LEN)
    };
    let tx = if acked & host_gso != 0 || acked & VIRTIO_NET_F_MTU == 0 {
        MAX_FRAME_LEN
    } else {
        one_packet.min(MAX_FRAME_LEN)
    };
    FrameLimits { rx, tx }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_BUT_UFO: c_uint = TUN_F_ALL & !libc::TUN_F_UFO;

    #[test]
    fn offers_the_issue_feature_set_on_a_modern_kernel() {
        let f = offered_features(TUN_F_ALL);
        for want in [
            VIRTIO_F_VERSION_1,
            VIRTIO_F_EVENT_IDX,
            VIRTIO_F_INDIRECT_DESC,
            VIRTIO_NET_F_MAC,
            VIRTIO_NET_F_MTU,
            VIRTIO_NET_F_STATUS,
            VIRTIO_NET_F_MRG_RXBUF,
            VIRTIO_NET_F_CSUM,
            VIRTIO_NET_F_GUEST_CSUM,
            VIRTIO_NET_F_HOST_TSO4,
            VIRTIO_NET_F_HOST_TSO6,
            VIRTIO_NET_F_GUEST_TSO4,
            VIRTIO_NET_F_GUEST_TSO6,
            VIRTIO_NET_F_GUEST_UFO,
            VIRTIO_NET_F_HOST_UFO,
        ] {
            assert_ne!(f & want, 0, "{want:#x}");
        }
    }

    #[test]
    fn ufo_is_offered_only_where_the_kernel_takes_it() {
        let f = offered_features(ALL_BUT_UFO);
        assert_eq!(f & (VIRTIO_NET_F_GUEST_UFO | VIRTIO_NET_F_HOST_UFO), 0);
        assert_ne!(f & VIRTIO_NET_F_GUEST_TSO4, 0);
    }

    #[test]
    fn spec_5_1_3_1_no_receive_offloads_without_checksum_offload() {
        let f = offered_features(TUN_F_ALL & !libc::TUN_F_CSUM);
        assert_eq!(
            f & (VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_GUEST_TSO4 | VIRTIO_NET_F_GUEST_TSO6),
            0
        );
        // Transmit offloads do not depend on the reader's flags.
        assert_ne!(f & VIRTIO_NET_F_HOST_TSO4, 0);
        assert_eq!(offered_features(0) & VIRTIO_NET_F_GUEST_CSUM, 0);
    }

    #[test]
    fn offload_flags_follow_the_guest_receive_features() {
        assert_eq!(tun_offload_flags(0), 0);
        assert_eq!(tun_offload_flags(VIRTIO_NET_F_GUEST_CSUM), libc::TUN_F_CSUM);
        assert_eq!(
            tun_offload_flags(
                VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_GUEST_TSO4 | VIRTIO_NET_F_GUEST_TSO6
            ),
            libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6
        );
        assert_eq!(
            tun_offload_flags(
                VIRTIO_NET_F_GUEST_CSUM
                    | VIRTIO_NET_F_GUEST_TSO4
                    | VIRTIO_NET_F_GUEST_ECN
                    | VIRTIO_NET_F_GUEST_UFO
            ),
            libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO_ECN | libc::TUN_F_UFO
        );
    }

    #[test]
    fn host_features_never_turn_on_tap_offloads() {
        // HOST_* are what the guest sends; TUNSETOFFLOAD is what pvio reads.
        let host = VIRTIO_NET_F_CSUM | VIRTIO_NET_F_HOST_TSO4 | VIRTIO_NET_F_HOST_TSO6;
        assert_eq!(tun_offload_flags(host), 0);
    }

    #[test]
    fn tso_without_checksum_or_ecn_without_tso_is_dropped() {
        assert_eq!(tun_offload_flags(VIRTIO_NET_F_GUEST_TSO4), 0);
        assert_eq!(
            tun_offload_flags(VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_GUEST_ECN),
            libc::TUN_F_CSUM
        );
    }

    #[test]
    fn spec_5_1_6_header_is_12_bytes_with_version_1() {
        assert_eq!(hdr_len(VIRTIO_F_VERSION_1), 12);
        assert_eq!(hdr_len(VIRTIO_NET_F_MRG_RXBUF), 12);
        assert_eq!(hdr_len(0), 10);
        assert!(mergeable_rx(VIRTIO_NET_F_MRG_RXBUF));
        assert!(!mergeable_rx(VIRTIO_F_VERSION_1));
    }

    #[test]
    fn frame_limits_follow_gso_and_mtu() {
        let base = VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MTU;
        assert_eq!(
            frame_limits(base, 1500),
            FrameLimits {
                rx: 1500 + 22,
                tx: 1500 + 22
            }
        );
        assert_eq!(frame_limits(base, 9000).rx, 9022);
        // A small MTU still takes a standard frame (the guest may not have
        // lowered its MTU yet).
        assert_eq!(frame_limits(base, 576).rx, 1522);
        let gso = base | VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_GUEST_TSO4;
        assert_eq!(frame_limits(gso, 1500).rx, MAX_FRAME_LEN);
        assert_eq!(frame_limits(gso, 1500).tx, 1522);
        let host = base | VIRTIO_NET_F_CSUM | VIRTIO_NET_F_HOST_TSO6;
        assert_eq!(frame_limits(host, 1500).tx, MAX_FRAME_LEN);
        // Without the MTU feature the guest may use any MTU.
        assert_eq!(frame_limits(VIRTIO_F_VERSION_1, 1500).tx, MAX_FRAME_LEN);
        assert_eq!(frame_limits(base, u16::MAX).rx, 65_535 + 22);
        assert_eq!(MAX_FRAME_LEN, 65_558);
    }
}
