//! virtio-net, the network device (virtio 1.2 §5.1).
//!
//! A network device has receive / transmit queue pairs (more than one with
//! [`VIRTIO_NET_F_MQ`]) and, with [`VIRTIO_NET_F_CTRL_VQ`], a control queue
//! after them. Every packet on a data queue starts with a [`NetHdr`].
//!
//! The items are split by idea: feature bits here, the packet header in
//! `hdr.rs`, the configuration space in `config.rs`, the control queue in
//! `ctrl.rs`; all are re-exported from this module.

mod config;
mod ctrl;
mod hdr;

pub use config::*;
pub use ctrl::*;
pub use hdr::*;

/// The device handles packets with a partial checksum (checksum offload on
/// transmit) (virtio 1.2 §5.1.3, bit 0).
pub const VIRTIO_NET_F_CSUM: u64 = 1 << 0;
/// The driver handles packets with a partial checksum (virtio 1.2 §5.1.3,
/// bit 1).
pub const VIRTIO_NET_F_GUEST_CSUM: u64 = 1 << 1;
/// Offloads can be reconfigured over the control queue (virtio 1.2 §5.1.3,
/// bit 2).
pub const VIRTIO_NET_F_CTRL_GUEST_OFFLOADS: u64 = 1 << 2;
/// The device reports its maximum MTU in `mtu` (virtio 1.2 §5.1.3, bit 3).
pub const VIRTIO_NET_F_MTU: u64 = 1 << 3;
/// The device has a MAC address in `mac` (virtio 1.2 §5.1.3, bit 5).
pub const VIRTIO_NET_F_MAC: u64 = 1 << 5;
/// The driver can receive TCP segmentation offload over IPv4 (virtio 1.2 §5.1.3, bit 7).
pub const VIRTIO_NET_F_GUEST_TSO4: u64 = 1 << 7;
/// The driver can receive TCP segmentation offload over IPv6 (virtio 1.2 §5.1.3, bit 8).
pub const VIRTIO_NET_F_GUEST_TSO6: u64 = 1 << 8;
/// The driver can receive TSO with ECN (virtio 1.2 §5.1.3, bit 9).
pub const VIRTIO_NET_F_GUEST_ECN: u64 = 1 << 9;
/// The driver can receive UFO (virtio 1.2 §5.1.3, bit 10).
pub const VIRTIO_NET_F_GUEST_UFO: u64 = 1 << 10;
/// The device can receive TCP segmentation offload over IPv4 from the driver (virtio 1.2 §5.1.3, bit 11).
pub const VIRTIO_NET_F_HOST_TSO4: u64 = 1 << 11;
/// The device can receive TCP segmentation offload over IPv6 from the driver (virtio 1.2 §5.1.3, bit 12).
pub const VIRTIO_NET_F_HOST_TSO6: u64 = 1 << 12;
/// The device can receive TSO with ECN (virtio 1.2 §5.1.3, bit 13).
pub const VIRTIO_NET_F_HOST_ECN: u64 = 1 << 13;
/// The device can receive UFO (virtio 1.2 §5.1.3, bit 14).
pub const VIRTIO_NET_F_HOST_UFO: u64 = 1 << 14;
/// The driver can merge receive buffers; `num_buffers` is meaningful
/// (virtio 1.2 §5.1.3, bit 15).
pub const VIRTIO_NET_F_MRG_RXBUF: u64 = 1 << 15;
/// `status` is valid (virtio 1.2 §5.1.3, bit 16).
pub const VIRTIO_NET_F_STATUS: u64 = 1 << 16;
/// There is a control queue (virtio 1.2 §5.1.3, bit 17).
pub const VIRTIO_NET_F_CTRL_VQ: u64 = 1 << 17;
/// Receive mode can be set over the control queue (virtio 1.2 §5.1.3, bit 18).
pub const VIRTIO_NET_F_CTRL_RX: u64 = 1 << 18;
/// VLAN filtering over the control queue (virtio 1.2 §5.1.3, bit 19).
pub const VIRTIO_NET_F_CTRL_VLAN: u64 = 1 << 19;
/// Extra receive modes over the control queue (virtio 1.2 §5.1.3, bit 20).
pub const VIRTIO_NET_F_CTRL_RX_EXTRA: u64 = 1 << 20;
/// The driver can send gratuitous packets on request (virtio 1.2 §5.1.3,
/// bit 21).
pub const VIRTIO_NET_F_GUEST_ANNOUNCE: u64 = 1 << 21;
/// Multiqueue with automatic receive steering; `max_virtqueue_pairs` is
/// valid (virtio 1.2 §5.1.3, bit 22).
pub const VIRTIO_NET_F_MQ: u64 = 1 << 22;
/// The MAC address can be set over the control queue (virtio 1.2 §5.1.3,
/// bit 23).
pub const VIRTIO_NET_F_CTRL_MAC_ADDR: u64 = 1 << 23;
/// The device can receive USO (virtio 1.2 §5.1.3, bit 56).
pub const VIRTIO_NET_F_HOST_USO: u64 = 1 << 56;
/// The device reports hash values in a longer header (virtio 1.2 §5.1.3,
/// bit 57; [`NET_HDR_LEN_HASH`]).
pub const VIRTIO_NET_F_HASH_REPORT: u64 = 1 << 57;
/// The driver gives exact `hdr_len` values (virtio 1.2 §5.1.3, bit 59).
pub const VIRTIO_NET_F_GUEST_HDRLEN: u64 = 1 << 59;
/// Receive-side scaling (virtio 1.2 §5.1.3, bit 60).
pub const VIRTIO_NET_F_RSS: u64 = 1 << 60;
/// Extended receive segment coalescing info (virtio 1.2 §5.1.3, bit 61).
pub const VIRTIO_NET_F_RSC_EXT: u64 = 1 << 61;
/// The device is a failover standby (virtio 1.2 §5.1.3, bit 62).
pub const VIRTIO_NET_F_STANDBY: u64 = 1 << 62;
/// `speed` and `duplex` are valid (virtio 1.2 §5.1.3, bit 63).
pub const VIRTIO_NET_F_SPEED_DUPLEX: u64 = 1 << 63;

/// Names of the virtio-net feature bits, for logs (see
/// [`crate::features::feature_names`]).
pub const NET_FEATURE_NAMES: &[(u64, &str)] = &[
    (VIRTIO_NET_F_CSUM, "NET_CSUM"),
    (VIRTIO_NET_F_GUEST_CSUM, "NET_GUEST_CSUM"),
    (VIRTIO_NET_F_CTRL_GUEST_OFFLOADS, "NET_CTRL_GUEST_OFFLOADS"),
    (VIRTIO_NET_F_MTU, "NET_MTU"),
    (VIRTIO_NET_F_MAC, "NET_MAC"),
    (VIRTIO_NET_F_GUEST_TSO4, "NET_GUEST_TSO4"),
    (VIRTIO_NET_F_GUEST_TSO6, "NET_GUEST_TSO6"),
    (VIRTIO_NET_F_GUEST_ECN, "NET_GUEST_ECN"),
    (VIRTIO_NET_F_GUEST_UFO, "NET_GUEST_UFO"),
    (VIRTIO_NET_F_HOST_TSO4, "NET_HOST_TSO4"),
    (VIRTIO_NET_F_HOST_TSO6, "NET_HOST_TSO6"),
    (VIRTIO_NET_F_HOST_ECN, "NET_HOST_ECN"),
    (VIRTIO_NET_F_HOST_UFO, "NET_HOST_UFO"),
    (VIRTIO_NET_F_MRG_RXBUF, "NET_MRG_RXBUF"),
    (VIRTIO_NET_F_STATUS, "NET_STATUS"),
    (VIRTIO_NET_F_CTRL_VQ, "NET_CTRL_VQ"),
    (VIRTIO_NET_F_CTRL_RX, "NET_CTRL_RX"),
    (VIRTIO_NET_F_CTRL_VLAN, "NET_CTRL_VLAN"),
    (VIRTIO_NET_F_CTRL_RX_EXTRA, "NET_CTRL_RX_EXTRA"),
    (VIRTIO_NET_F_GUEST_ANNOUNCE, "NET_GUEST_ANNOUNCE"),
    (VIRTIO_NET_F_MQ, "NET_MQ"),
    (VIRTIO_NET_F_CTRL_MAC_ADDR, "NET_CTRL_MAC_ADDR"),
    (VIRTIO_NET_F_HOST_USO, "NET_HOST_USO"),
    (VIRTIO_NET_F_HASH_REPORT, "NET_HASH_REPORT"),
    (VIRTIO_NET_F_GUEST_HDRLEN, "NET_GUEST_HDRLEN"),
    (VIRTIO_NET_F_RSS, "NET_RSS"),
    (VIRTIO_NET_F_RSC_EXT, "NET_RSC_EXT"),
    (VIRTIO_NET_F_STANDBY, "NET_STANDBY"),
    (VIRTIO_NET_F_SPEED_DUPLEX, "NET_SPEED_DUPLEX"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::{feature_names, unnamed_features, COMMON_FEATURE_NAMES};

    #[test]
    fn spec_5_1_3_feature_bit_numbers() {
        let bits = [
            (VIRTIO_NET_F_CSUM, 0),
            (VIRTIO_NET_F_GUEST_CSUM, 1),
            (VIRTIO_NET_F_CTRL_GUEST_OFFLOADS, 2),
            (VIRTIO_NET_F_MTU, 3),
            (VIRTIO_NET_F_MAC, 5),
            (VIRTIO_NET_F_GUEST_TSO4, 7),
            (VIRTIO_NET_F_GUEST_TSO6, 8),
            (VIRTIO_NET_F_GUEST_ECN, 9),
            (VIRTIO_NET_F_GUEST_UFO, 10),
            (VIRTIO_NET_F_HOST_TSO4, 11),
            (VIRTIO_NET_F_HOST_TSO6, 12),
            (VIRTIO_NET_F_HOST_ECN, 13),
            (VIRTIO_NET_F_HOST_UFO, 14),
            (VIRTIO_NET_F_MRG_RXBUF, 15),
            (VIRTIO_NET_F_STATUS, 16),
            (VIRTIO_NET_F_CTRL_VQ, 17),
            (VIRTIO_NET_F_CTRL_RX, 18),
            (VIRTIO_NET_F_CTRL_VLAN, 19),
            (VIRTIO_NET_F_CTRL_RX_EXTRA, 20),
            (VIRTIO_NET_F_GUEST_ANNOUNCE, 21),
            (VIRTIO_NET_F_MQ, 22),
            (VIRTIO_NET_F_CTRL_MAC_ADDR, 23),
            (VIRTIO_NET_F_HOST_USO, 56),
            (VIRTIO_NET_F_HASH_REPORT, 57),
            (VIRTIO_NET_F_GUEST_HDRLEN, 59),
            (VIRTIO_NET_F_RSS, 60),
            (VIRTIO_NET_F_RSC_EXT, 61),
            (VIRTIO_NET_F_STANDBY, 62),
            (VIRTIO_NET_F_SPEED_DUPLEX, 63),
        ];
        for (mask, bit) in bits {
            assert_eq!(mask, 1u64 << bit, "bit {bit}");
        }
    }

    #[test]
    fn net_names_cover_every_net_bit_and_miss_the_common_ones() {
        let all = NET_FEATURE_NAMES.iter().fold(0u64, |acc, &(bits, _)| {
            assert_eq!(acc & bits, 0, "bit named twice");
            acc | bits
        });
        assert_eq!(all.count_ones(), 29);
        assert_eq!(unnamed_features(all, NET_FEATURE_NAMES), 0);
        let common = COMMON_FEATURE_NAMES
            .iter()
            .fold(0, |acc, &(bits, _)| acc | bits);
        assert_eq!(all & common, 0, "device bits overlap reserved bits 24-40");
        assert_eq!(
            feature_names(
                VIRTIO_NET_F_MAC | VIRTIO_NET_F_SPEED_DUPLEX,
                NET_FEATURE_NAMES
            ),
            ["NET_MAC", "NET_SPEED_DUPLEX"]
        );
    }
}
