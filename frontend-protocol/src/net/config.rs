//! The virtio-net configuration space (virtio 1.2 §5.1.4, `struct
//! virtio_net_config`) and MAC address helpers.
//!
//! [`NetConfig`] is the whole virtio 1.2 layout, 24 bytes, RSS fields
//! included. The spec and Linux declare it packed; the little-endian field
//! types here have alignment 1, so `repr(C)` gives the same offsets with no
//! padding, checked by the tests.

use core::fmt::Write as _;
use core::mem::size_of;

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Size of [`NetConfig`].
pub const NET_CONFIG_SIZE: usize = 24;

/// `status` bit: the link is up (virtio 1.2 §5.1.4; `VIRTIO_NET_F_STATUS`).
pub const VIRTIO_NET_S_LINK_UP: u16 = 1;
/// `status` bit: the device asks the driver to announce itself (virtio 1.2
/// §5.1.4; `VIRTIO_NET_F_GUEST_ANNOUNCE`).
pub const VIRTIO_NET_S_ANNOUNCE: u16 = 2;

/// `duplex`: half duplex (virtio 1.2 §5.1.4).
pub const VIRTIO_NET_DUPLEX_HALF: u8 = 0;
/// `duplex`: full duplex (virtio 1.2 §5.1.4).
pub const VIRTIO_NET_DUPLEX_FULL: u8 = 1;
/// `duplex`: unknown; any value other than 0 and 1 means that (virtio 1.2
/// §5.1.4).
pub const VIRTIO_NET_DUPLEX_UNKNOWN: u8 = 0xff;
/// `speed`: unknown; values above `0x7fff_ffff` mean that (virtio 1.2 §5.1.4).
pub const VIRTIO_NET_SPEED_UNKNOWN: u32 = 0xffff_ffff;

/// The smallest `mtu` a device may report (virtio 1.2 §5.1.4, device
/// requirements: between 68 and 65535).
pub const VIRTIO_NET_MIN_MTU: u16 = 68;

/// Length of a MAC address.
pub const MAC_LEN: usize = 6;

/// The virtio-net configuration space (virtio 1.2 §5.1.4).
///
/// `NetConfig::default()` is all zeroes; fill it with the `with_*` methods:
///
/// ```
/// use pvio_frontend_protocol::net::{NetConfig, VIRTIO_NET_S_LINK_UP};
/// let cfg = NetConfig::default()
///     .with_mac([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])
///     .with_status(VIRTIO_NET_S_LINK_UP)
///     .with_mtu(1500);
/// assert!(cfg.link_up());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct NetConfig {
    /// MAC address (`VIRTIO_NET_F_MAC`).
    pub mac: [u8; MAC_LEN],
    /// `VIRTIO_NET_S_*` bits (`VIRTIO_NET_F_STATUS`).
    pub status: U16,
    /// Number of receive / transmit queue pairs, 1 to 0x8000
    /// (`VIRTIO_NET_F_MQ` or `VIRTIO_NET_F_RSS`).
    pub max_virtqueue_pairs: U16,
    /// Maximum MTU the driver should use (`VIRTIO_NET_F_MTU`).
    pub mtu: U16,
    /// Link speed in Mbit/s (`VIRTIO_NET_F_SPEED_DUPLEX`).
    pub speed: U32,
    /// `VIRTIO_NET_DUPLEX_*` (`VIRTIO_NET_F_SPEED_DUPLEX`).
    pub duplex: u8,
    /// Largest RSS key in bytes (`VIRTIO_NET_F_RSS`).
    pub rss_max_key_size: u8,
    /// Largest RSS indirection table (`VIRTIO_NET_F_RSS`).
    pub rss_max_indirection_table_length: U16,
    /// `VIRTIO_NET_RSS_HASH_TYPE_*` bits (`VIRTIO_NET_F_RSS` or
    /// `VIRTIO_NET_F_HASH_REPORT`).
    pub supported_hash_types: U32,
}
const _: () = assert!(size_of::<NetConfig>() == NET_CONFIG_SIZE);

impl NetConfig {
    /// Sets `mac`.
    #[must_use]
    pub const fn with_mac(mut self, mac: [u8; MAC_LEN]) -> Self {
        self.mac = mac;
        self
    }

    /// Sets `status` (`VIRTIO_NET_S_*` bits).
    #[must_use]
    pub const fn with_status(mut self, status: u16) -> Self {
        self.status = U16::new(status);
        self
    }

    /// Sets or clears [`VIRTIO_NET_S_LINK_UP`], keeping the other status bits.
    #[must_use]
    pub const fn with_link_up(self, up: bool) -> Self {
        let status = self.status();
        let status = if up {
            status | VIRTIO_NET_S_LINK_UP
        } else {
            status & !VIRTIO_NET_S_LINK_UP
        };
        self.with_status(status)
    }

    /// Sets `max_virtqueue_pairs`.
    #[must_use]
    pub const fn with_max_virtqueue_pairs(mut self, pairs: u16) -> Self {
        self.max_virtqueue_pairs = U16::new(pairs);
        self
    }

    /// Sets `mtu`.
    #[must_use]
    pub const fn with_mtu(mut self, mtu: u16) -> Self {
        self.mtu = U16::new(mtu);
        self
    }

    /// Sets `speed` (Mbit/s) and `duplex` (`VIRTIO_NET_DUPLEX_*`).
    #[must_use]
    pub const fn with_speed_duplex(mut self, speed: u32, duplex: u8) -> Self {
        self.speed = U32::new(speed);
        self.duplex = duplex;
        self
    }

    /// The MAC address.
    #[must_use]
    pub const fn mac(&self) -> [u8; MAC_LEN] {
        self.mac
    }

    /// The `status` bits.
    #[must_use]
    pub const fn status(&self) -> u16 {
        self.status.get()
    }

    /// Whether [`VIRTIO_NET_S_LINK_UP`] is set.
    #[must_use]
    pub const fn link_up(&self) -> bool {
        self.status() & VIRTIO_NET_S_LINK_UP != 0
    }

    /// `max_virtqueue_pairs`.
    #[must_use]
    pub const fn max_virtqueue_pairs(&self) -> u16 {
        self.max_virtqueue_pairs.get()
    }

    /// `mtu`.
    #[must_use]
    pub const fn mtu(&self) -> u16 {
        self.mtu.get()
    }

    /// `speed` in Mbit/s, or `None` if unknown (above `0x7fff_ffff`).
    #[must_use]
    pub const fn speed(&self) -> Option<u32> {
        match self.speed.get() {
            s @ 0..=0x7fff_ffff => Some(s),
            _ => None,
        }
    }
}

/// Whether `mtu` may be reported in `mtu` (virtio 1.2 §5.1.4, device
/// requirements: 68 to 65535).
#[must_use]
pub const fn is_valid_mtu(mtu: u16) -> bool {
    mtu >= VIRTIO_NET_MIN_MTU
}

/// Whether `mac` is a multicast (or broadcast) address: bit 0 of the first
/// octet (IEEE 802).
#[must_use]
pub const fn is_multicast_mac(mac: &[u8; MAC_LEN]) -> bool {
    mac[0] & 0x01 != 0
}

/// Whether `mac` is locally administered: bit 1 of the first octet (IEEE
/// 802). Generated addresses should be.
#[must_use]
pub const fn is_locally_administered_mac(mac: &[u8; MAC_LEN]) -> bool {
    mac[0] & 0x02 != 0
}

/// Whether `mac` can be a device's own address: unicast and not all zero.
#[must_use]
pub const fn is_valid_unicast_mac(mac: &[u8; MAC_LEN]) -> bool {
    !is_multicast_mac(mac) && (mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]) != 0
}

/// `mac` as `52:54:00:12:34:56`, for logs.
#[must_use]
pub fn format_mac(mac: &[u8; MAC_LEN]) -> String {
    let mut out = String::with_capacity(3 * MAC_LEN);
    for (i, byte) in mac.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use core::mem::offset_of;

    use super::*;

    #[test]
    fn spec_5_1_4_config_field_offsets() {
        // Offsets of Linux include/uapi/linux/virtio_net.h (a packed struct).
        assert_eq!(offset_of!(NetConfig, mac), 0);
        assert_eq!(offset_of!(NetConfig, status), 6);
        assert_eq!(offset_of!(NetConfig, max_virtqueue_pairs), 8);
        assert_eq!(offset_of!(NetConfig, mtu), 10);
        assert_eq!(offset_of!(NetConfig, speed), 12);
        assert_eq!(offset_of!(NetConfig, duplex), 16);
        assert_eq!(offset_of!(NetConfig, rss_max_key_size), 17);
        assert_eq!(offset_of!(NetConfig, rss_max_indirection_table_length), 18);
        assert_eq!(offset_of!(NetConfig, supported_hash_types), 20);
        assert_eq!(size_of::<NetConfig>(), 24);
    }

    #[test]
    fn spec_5_1_4_status_duplex_speed_values() {
        assert_eq!(VIRTIO_NET_S_LINK_UP, 1);
        assert_eq!(VIRTIO_NET_S_ANNOUNCE, 2);
        assert_eq!(VIRTIO_NET_DUPLEX_HALF, 0);
        assert_eq!(VIRTIO_NET_DUPLEX_FULL, 1);
        assert_eq!(VIRTIO_NET_DUPLEX_UNKNOWN, 0xff);
        assert_eq!(VIRTIO_NET_SPEED_UNKNOWN, u32::MAX);
    }

    #[test]
    fn spec_5_1_4_default_config_is_all_zero() {
        assert!(NetConfig::default().as_bytes().iter().all(|&b| b == 0));
    }

    #[test]
    fn spec_5_1_4_builder_writes_little_endian_at_spec_offsets() {
        let cfg = NetConfig::default()
            .with_mac([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef])
            .with_status(VIRTIO_NET_S_ANNOUNCE)
            .with_link_up(true)
            .with_max_virtqueue_pairs(4)
            .with_mtu(9000)
            .with_speed_duplex(10_000, VIRTIO_NET_DUPLEX_FULL);
        let b = cfg.as_bytes();
        assert_eq!(&b[0..6], &[0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]);
        assert_eq!(&b[6..8], &[3, 0]);
        assert_eq!(&b[8..10], &[4, 0]);
        assert_eq!(&b[10..12], &[0x28, 0x23]);
        assert_eq!(&b[12..16], &[0x10, 0x27, 0, 0]);
        assert_eq!(b[16], 1);
        assert!(b[17..].iter().all(|&x| x == 0));

        let back = NetConfig::read_from_bytes(b).expect("24 bytes");
        assert_eq!(back, cfg);
        assert_eq!(back.mac(), [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]);
        assert!(back.link_up());
        assert_eq!(back.max_virtqueue_pairs(), 4);
        assert_eq!(back.mtu(), 9000);
        assert_eq!(back.speed(), Some(10_000));
        let down = back.with_link_up(false);
        assert!(!down.link_up());
        assert_eq!(down.status(), VIRTIO_NET_S_ANNOUNCE, "other bits kept");
    }

    #[test]
    fn spec_5_1_4_unknown_speed() {
        let cfg = NetConfig::default().with_speed_duplex(VIRTIO_NET_SPEED_UNKNOWN, 0xff);
        assert_eq!(cfg.speed(), None);
        let cfg = cfg.with_speed_duplex(0x8000_0000, 0);
        assert_eq!(cfg.speed(), None);
        assert_eq!(cfg.with_speed_duplex(0, 0).speed(), Some(0));
    }

    #[test]
    fn spec_5_1_4_mtu_range() {
        assert!(!is_valid_mtu(0));
        assert!(!is_valid_mtu(67));
        assert!(is_valid_mtu(68));
        assert!(is_valid_mtu(1500));
        assert!(is_valid_mtu(u16::MAX));
    }

    #[test]
    fn mac_helpers() {
        let qemu = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
        assert!(is_valid_unicast_mac(&qemu));
        assert!(is_locally_administered_mac(&qemu));
        assert!(!is_multicast_mac(&qemu));
        assert!(is_multicast_mac(&[0xff; 6]));
        assert!(!is_valid_unicast_mac(&[0xff; 6]));
        assert!(!is_valid_unicast_mac(&[0; 6]));
        assert!(!is_locally_administered_mac(&[0x00, 0x16, 0x3e, 0, 0, 1]));
        assert_eq!(format_mac(&qemu), "52:54:00:12:34:56");
    }
}
