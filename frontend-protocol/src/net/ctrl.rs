//! The virtio-net control queue (virtio 1.2 §5.1.6.5).
//!
//! A control command is one chain: a device-readable [`NetCtrlHdr`], the
//! command's device-readable data, then one device-writable ack byte
//! ([`VIRTIO_NET_OK`] or [`VIRTIO_NET_ERR`]).

use core::mem::size_of;

use zerocopy::little_endian::{U16, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Ack: the command succeeded (virtio 1.2 §5.1.6.5).
pub const VIRTIO_NET_OK: u8 = 0;
/// Ack: the command failed (virtio 1.2 §5.1.6.5).
pub const VIRTIO_NET_ERR: u8 = 1;

/// Class: receive filtering modes (virtio 1.2 §5.1.6.5, packet receive
/// filtering; `VIRTIO_NET_F_CTRL_RX`).
pub const VIRTIO_NET_CTRL_RX: u8 = 0;
/// Class: MAC address filtering (virtio 1.2 §5.1.6.5, MAC address filtering).
pub const VIRTIO_NET_CTRL_MAC: u8 = 1;
/// Class: VLAN filtering (virtio 1.2 §5.1.6.5, VLAN filtering;
/// `VIRTIO_NET_F_CTRL_VLAN`).
pub const VIRTIO_NET_CTRL_VLAN: u8 = 2;
/// Class: gratuitous packet announcement (virtio 1.2 §5.1.6.5, gratuitous packet
/// sending; `VIRTIO_NET_F_GUEST_ANNOUNCE`).
pub const VIRTIO_NET_CTRL_ANNOUNCE: u8 = 3;
/// Class: multiqueue (virtio 1.2 §5.1.6.5, automatic receive steering in
/// multiqueue mode; `VIRTIO_NET_F_MQ`).
pub const VIRTIO_NET_CTRL_MQ: u8 = 4;
/// Class: offload state (virtio 1.2 §5.1.6.5; `VIRTIO_NET_F_CTRL_GUEST_OFFLOADS`).
pub const VIRTIO_NET_CTRL_GUEST_OFFLOADS: u8 = 5;

/// `RX` command: promiscuous mode on / off (one `u8` of data).
pub const VIRTIO_NET_CTRL_RX_PROMISC: u8 = 0;
/// `RX` command: all-multicast on / off.
pub const VIRTIO_NET_CTRL_RX_ALLMULTI: u8 = 1;
/// `RX` command: all-unicast on / off (`VIRTIO_NET_F_CTRL_RX_EXTRA`).
pub const VIRTIO_NET_CTRL_RX_ALLUNI: u8 = 2;
/// `RX` command: no multicast (`VIRTIO_NET_F_CTRL_RX_EXTRA`).
pub const VIRTIO_NET_CTRL_RX_NOMULTI: u8 = 3;
/// `RX` command: no unicast (`VIRTIO_NET_F_CTRL_RX_EXTRA`).
pub const VIRTIO_NET_CTRL_RX_NOUNI: u8 = 4;
/// `RX` command: no broadcast (`VIRTIO_NET_F_CTRL_RX_EXTRA`).
pub const VIRTIO_NET_CTRL_RX_NOBCAST: u8 = 5;

/// `MAC` command: set the unicast and multicast filter tables.
pub const VIRTIO_NET_CTRL_MAC_TABLE_SET: u8 = 0;
/// `MAC` command: set the device's MAC address (`VIRTIO_NET_F_CTRL_MAC_ADDR`).
pub const VIRTIO_NET_CTRL_MAC_ADDR_SET: u8 = 1;

/// `VLAN` command: add a VLAN ID to the filter (one `le16` of data).
pub const VIRTIO_NET_CTRL_VLAN_ADD: u8 = 0;
/// `VLAN` command: remove a VLAN ID from the filter.
pub const VIRTIO_NET_CTRL_VLAN_DEL: u8 = 1;

/// `ANNOUNCE` command: the driver acknowledges `VIRTIO_NET_S_ANNOUNCE`.
pub const VIRTIO_NET_CTRL_ANNOUNCE_ACK: u8 = 0;

/// `MQ` command: set the number of queue pairs in use ([`NetCtrlMq`] data).
pub const VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET: u8 = 0;
/// `MQ` command: configure receive-side scaling (`VIRTIO_NET_F_RSS`).
pub const VIRTIO_NET_CTRL_MQ_RSS_CONFIG: u8 = 1;
/// `MQ` command: configure hash reporting (`VIRTIO_NET_F_HASH_REPORT`).
pub const VIRTIO_NET_CTRL_MQ_HASH_CONFIG: u8 = 2;
/// Smallest valid [`NetCtrlMq::virtqueue_pairs`] (virtio 1.2 §5.1.6.5).
pub const VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MIN: u16 = 1;
/// Largest valid [`NetCtrlMq::virtqueue_pairs`] (virtio 1.2 §5.1.6.5).
pub const VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX: u16 = 0x8000;

/// `GUEST_OFFLOADS` command: set the offloads in use ([`NetCtrlGuestOffloads`]
/// data).
pub const VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET: u8 = 0;

/// The header of a control command (virtio 1.2 §5.1.6.5, `class` and
/// `command` of `struct virtio_net_ctrl`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct NetCtrlHdr {
    /// `VIRTIO_NET_CTRL_*` class.
    pub class: u8,
    /// Command within the class.
    pub cmd: u8,
}
const _: () = assert!(size_of::<NetCtrlHdr>() == 2);

impl NetCtrlHdr {
    /// A header for `cmd` of `class`.
    #[must_use]
    pub const fn new(class: u8, cmd: u8) -> Self {
        Self { class, cmd }
    }
}

/// Data of [`VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET`] (virtio 1.2 §5.1.6.5, `struct
/// virtio_net_ctrl_mq`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct NetCtrlMq {
    /// Number of queue pairs the driver will use.
    pub virtqueue_pairs: U16,
}
const _: () = assert!(size_of::<NetCtrlMq>() == 2);

impl NetCtrlMq {
    /// A request for `pairs` queue pairs.
    #[must_use]
    pub const fn new(pairs: u16) -> Self {
        Self {
            virtqueue_pairs: U16::new(pairs),
        }
    }

    /// The requested number of queue pairs.
    #[must_use]
    pub const fn virtqueue_pairs(&self) -> u16 {
        self.virtqueue_pairs.get()
    }

    /// Whether the request can be granted by a device with
    /// `max_virtqueue_pairs`: from [`VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MIN`] to the
    /// smaller of `max_virtqueue_pairs` and
    /// [`VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX`] (virtio 1.2 §5.1.6.5).
    #[must_use]
    pub const fn is_valid_for(&self, max_virtqueue_pairs: u16) -> bool {
        let n = self.virtqueue_pairs();
        n >= VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MIN
            && n <= VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX
            && n <= max_virtqueue_pairs
    }
}

/// Data of [`VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET`]: the `VIRTIO_NET_F_GUEST_*`
/// offload bits to enable, as an `le64` (virtio 1.2 §5.1.6.5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct NetCtrlGuestOffloads {
    /// Feature-bit mask of the offloads to enable.
    pub offloads: U64,
}
const _: () = assert!(size_of::<NetCtrlGuestOffloads>() == 8);

impl NetCtrlGuestOffloads {
    /// The offload mask.
    #[must_use]
    pub const fn offloads(&self) -> u64 {
        self.offloads.get()
    }
}

#[cfg(test)]
mod tests {
    use core::mem::offset_of;

    use super::*;
    use crate::net::{VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4};

    #[test]
    fn spec_5_1_6_5_ack_and_class_values() {
        assert_eq!((VIRTIO_NET_OK, VIRTIO_NET_ERR), (0, 1));
        assert_eq!(
            [
                VIRTIO_NET_CTRL_RX,
                VIRTIO_NET_CTRL_MAC,
                VIRTIO_NET_CTRL_VLAN,
                VIRTIO_NET_CTRL_ANNOUNCE,
                VIRTIO_NET_CTRL_MQ,
                VIRTIO_NET_CTRL_GUEST_OFFLOADS
            ],
            [0, 1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn spec_5_1_6_5_command_values() {
        assert_eq!(
            [
                VIRTIO_NET_CTRL_RX_PROMISC,
                VIRTIO_NET_CTRL_RX_ALLMULTI,
                VIRTIO_NET_CTRL_RX_ALLUNI,
                VIRTIO_NET_CTRL_RX_NOMULTI,
                VIRTIO_NET_CTRL_RX_NOUNI,
                VIRTIO_NET_CTRL_RX_NOBCAST
            ],
            [0, 1, 2, 3, 4, 5]
        );
        assert_eq!(
            (VIRTIO_NET_CTRL_MAC_TABLE_SET, VIRTIO_NET_CTRL_MAC_ADDR_SET),
            (0, 1)
        );
        assert_eq!((VIRTIO_NET_CTRL_VLAN_ADD, VIRTIO_NET_CTRL_VLAN_DEL), (0, 1));
        assert_eq!(VIRTIO_NET_CTRL_ANNOUNCE_ACK, 0);
        assert_eq!(
            [
                VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET,
                VIRTIO_NET_CTRL_MQ_RSS_CONFIG,
                VIRTIO_NET_CTRL_MQ_HASH_CONFIG
            ],
            [0, 1, 2]
        );
        assert_eq!(VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MIN, 1);
        assert_eq!(VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX, 0x8000);
        assert_eq!(VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET, 0);
    }

    #[test]
    fn spec_5_1_6_5_ctrl_layouts() {
        assert_eq!(size_of::<NetCtrlHdr>(), 2);
        assert_eq!(offset_of!(NetCtrlHdr, class), 0);
        assert_eq!(offset_of!(NetCtrlHdr, cmd), 1);
        assert_eq!(size_of::<NetCtrlMq>(), 2);
        assert_eq!(offset_of!(NetCtrlMq, virtqueue_pairs), 0);
        assert_eq!(size_of::<NetCtrlGuestOffloads>(), 8);
    }

    #[test]
    fn spec_5_1_6_5_mq_command_decodes() {
        // class MQ, command VQ_PAIRS_SET, 4 pairs.
        let bytes = [4, 0, 4, 0];
        let (hdr, data) = NetCtrlHdr::read_from_prefix(&bytes).expect("2 bytes");
        assert_eq!(
            hdr,
            NetCtrlHdr::new(VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET)
        );
        let mq = NetCtrlMq::read_from_bytes(data).expect("2 bytes");
        assert_eq!(mq.virtqueue_pairs(), 4);
        assert_eq!(NetCtrlMq::new(4).as_bytes(), data);
        assert!(mq.is_valid_for(4));
        assert!(!mq.is_valid_for(3));
        assert!(!NetCtrlMq::new(0).is_valid_for(8));
        assert!(NetCtrlMq::new(0x8000).is_valid_for(u16::MAX));
        assert!(!NetCtrlMq::new(0x8001).is_valid_for(u16::MAX));
    }

    #[test]
    fn spec_5_1_6_5_guest_offloads_decodes() {
        let mask = VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_GUEST_TSO4;
        let bytes = mask.to_le_bytes();
        let off = NetCtrlGuestOffloads::read_from_bytes(&bytes).expect("8 bytes");
        assert_eq!(off.offloads(), mask);
    }
}
