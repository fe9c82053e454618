//! Device-independent feature bits (virtio 1.2 §6) and a helper to name
//! feature sets in logs.
//!
//! Every constant here is a `u64` mask (`1 << bit`), not a bit number, so
//! features combine with `|` and test with `&`. Device-specific bits live in
//! [`crate::blk`] and [`crate::net`].

/// Legacy: the device notifies when the available ring runs empty, even with
/// notifications suppressed (virtio 1.2 §6, legacy bit 24). Never offered by
/// pvio.
pub const VIRTIO_F_NOTIFY_ON_EMPTY: u64 = 1 << 24;
/// Legacy: the device accepts any message framing (virtio 1.2 §6, legacy bit
/// 27; §2.7.4). Implied by [`VIRTIO_F_VERSION_1`].
pub const VIRTIO_F_ANY_LAYOUT: u64 = 1 << 27;
/// The driver may use indirect descriptors (virtio 1.2 §6, bit 28;
/// §2.7.5.3).
pub const VIRTIO_F_INDIRECT_DESC: u64 = 1 << 28;
/// The same bit under its Linux `virtio_ring.h` name.
pub const VIRTIO_RING_F_INDIRECT_DESC: u64 = VIRTIO_F_INDIRECT_DESC;
/// `used_event` / `avail_event` replace the ring flags for notification
/// suppression (virtio 1.2 §6, bit 29; §2.7.7, §2.7.10).
pub const VIRTIO_F_EVENT_IDX: u64 = 1 << 29;
/// The same bit under its Linux `virtio_ring.h` name.
pub const VIRTIO_RING_F_EVENT_IDX: u64 = VIRTIO_F_EVENT_IDX;
/// vhost-user only: the backend speaks `VHOST_USER_GET_PROTOCOL_FEATURES`
/// (vhost-user spec, "Protocol features"). Bit 30 is not a virtio feature (it
/// was legacy `VIRTIO_F_BAD_FEATURE`): the frontend strips it before offering
/// features to the guest.
pub const VHOST_USER_F_PROTOCOL_FEATURES: u64 = 1 << 30;
/// The device complies with virtio 1.x, not the legacy interface (virtio 1.2
/// §6, bit 32). pvio devices always offer it.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// The device accesses memory through the platform's IOMMU / translation
/// (virtio 1.2 §6, bit 33).
pub const VIRTIO_F_ACCESS_PLATFORM: u64 = 1 << 33;
/// The packed virtqueue layout (virtio 1.2 §6, bit 34; §2.8).
pub const VIRTIO_F_RING_PACKED: u64 = 1 << 34;
/// The device uses buffers in the order they were made available (virtio 1.2
/// §6, bit 35; §2.7.9).
pub const VIRTIO_F_IN_ORDER: u64 = 1 << 35;
/// Memory accesses need platform ordering, as for real hardware (virtio 1.2
/// §6, bit 36).
pub const VIRTIO_F_ORDER_PLATFORM: u64 = 1 << 36;
/// The device supports PCI SR-IOV (virtio 1.2 §6, bit 37).
pub const VIRTIO_F_SR_IOV: u64 = 1 << 37;
/// The driver passes extra data in its available buffer notifications
/// (virtio 1.2 §6, bit 38).
pub const VIRTIO_F_NOTIFICATION_DATA: u64 = 1 << 38;
/// The driver's notifications carry a device-provided value (virtio 1.2 §6,
/// bit 39).
pub const VIRTIO_F_NOTIF_CONFIG_DATA: u64 = 1 << 39;
/// Individual virtqueues can be reset (virtio 1.2 §6, bit 40; §2.6.1).
pub const VIRTIO_F_RING_RESET: u64 = 1 << 40;

/// Names of the device-independent bits above, for logs. Combine with a
/// device table such as [`crate::blk::BLK_FEATURE_NAMES`].
pub const COMMON_FEATURE_NAMES: &[(u64, &str)] = &[
    (VIRTIO_F_NOTIFY_ON_EMPTY, "NOTIFY_ON_EMPTY"),
    (VIRTIO_F_ANY_LAYOUT, "ANY_LAYOUT"),
    (VIRTIO_F_INDIRECT_DESC, "INDIRECT_DESC"),
    (VIRTIO_F_EVENT_IDX, "EVENT_IDX"),
    (
        VHOST_USER_F_PROTOCOL_FEATURES,
        "VHOST_USER_PROTOCOL_FEATURES",
    ),
    (VIRTIO_F_VERSION_1, "VERSION_1"),
    (VIRTIO_F_ACCESS_PLATFORM, "ACCESS_PLATFORM"),
    (VIRTIO_F_RING_PACKED, "RING_PACKED"),
    (VIRTIO_F_IN_ORDER, "IN_ORDER"),
    (VIRTIO_F_ORDER_PLATFORM, "ORDER_PLATFORM"),
    (VIRTIO_F_SR_IOV, "SR_IOV"),
    (VIRTIO_F_NOTIFICATION_DATA, "NOTIFICATION_DATA"),
    (VIRTIO_F_NOTIF_CONFIG_DATA, "NOTIF_CONFIG_DATA"),
    (VIRTIO_F_RING_RESET, "RING_RESET"),
];

/// Whether every bit of `wanted` is set in `features`.
#[must_use]
pub const fn has_features(features: u64, wanted: u64) -> bool {
    features & wanted == wanted
}

/// The names from `table` whose mask is fully set in `mask`, in table order.
///
/// Entries with a zero mask never match. Bits that no entry names are not
/// reported; see [`unnamed_features`] for those.
///
/// ```
/// use pvio_frontend_protocol::features::*;
/// let names = feature_names(VIRTIO_F_VERSION_1 | VIRTIO_F_EVENT_IDX, COMMON_FEATURE_NAMES);
/// assert_eq!(names, ["EVENT_IDX", "VERSION_1"]);
/// ```
#[must_use]
pub fn feature_names<'a>(mask: u64, table: &[(u64, &'a str)]) -> Vec<&'a str> {
    table
        .iter()
        .filter(|&&(bits, _)| bits != 0 && has_features(mask, bits))
        .map(|&(_, name)| name)
        .collect()
}

/// The bits of `mask` that no entry of `table` names, for logging what a
/// peer offered that pvio does not know.
#[must_use]
pub fn unnamed_features(mask: u64, table: &[(u64, &str)]) -> u64 {
    table.iter().fold(mask, |rest, &(bits, _)| rest & !bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_6_reserved_feature_bit_numbers() {
        assert_eq!(VIRTIO_F_NOTIFY_ON_EMPTY, 1 << 24);
        assert_eq!(VIRTIO_F_ANY_LAYOUT, 1 << 27);
        assert_eq!(VIRTIO_F_INDIRECT_DESC, 1 << 28);
        assert_eq!(VIRTIO_F_EVENT_IDX, 1 << 29);
        assert_eq!(VIRTIO_F_VERSION_1, 1 << 32);
        assert_eq!(VIRTIO_F_ACCESS_PLATFORM, 1 << 33);
        assert_eq!(VIRTIO_F_RING_PACKED, 1 << 34);
        assert_eq!(VIRTIO_F_IN_ORDER, 1 << 35);
        assert_eq!(VIRTIO_F_ORDER_PLATFORM, 1 << 36);
        assert_eq!(VIRTIO_F_SR_IOV, 1 << 37);
        assert_eq!(VIRTIO_F_NOTIFICATION_DATA, 1 << 38);
        assert_eq!(VIRTIO_F_NOTIF_CONFIG_DATA, 1 << 39);
        assert_eq!(VIRTIO_F_RING_RESET, 1 << 40);
    }

    #[test]
    fn linux_ring_aliases_match_spec_names() {
        assert_eq!(VIRTIO_RING_F_EVENT_IDX, VIRTIO_F_EVENT_IDX);
        assert_eq!(VIRTIO_RING_F_INDIRECT_DESC, VIRTIO_F_INDIRECT_DESC);
    }

    #[test]
    fn vhost_user_protocol_features_is_bit_30() {
        assert_eq!(VHOST_USER_F_PROTOCOL_FEATURES, 0x4000_0000);
    }

    #[test]
    fn common_table_names_each_bit_once() {
        let all = COMMON_FEATURE_NAMES.iter().fold(0u64, |acc, &(bits, _)| {
            assert_eq!(bits.count_ones(), 1, "one bit per entry");
            assert_eq!(acc & bits, 0, "bit named twice");
            acc | bits
        });
        assert_eq!(unnamed_features(all, COMMON_FEATURE_NAMES), 0);
    }

    #[test]
    fn feature_names_lists_set_bits_in_table_order() {
        let mask = VIRTIO_F_VERSION_1 | VIRTIO_F_INDIRECT_DESC | (1 << 63);
        assert_eq!(
            feature_names(mask, COMMON_FEATURE_NAMES),
            ["INDIRECT_DESC", "VERSION_1"]
        );
        assert_eq!(unnamed_features(mask, COMMON_FEATURE_NAMES), 1 << 63);
        assert!(feature_names(0, COMMON_FEATURE_NAMES).is_empty());
    }

    #[test]
    fn feature_names_ignores_zero_and_partial_masks() {
        let table = [(0, "ZERO"), (0b11, "BOTH"), (0b01, "LOW")];
        assert_eq!(feature_names(0b01, &table), ["LOW"]);
        assert_eq!(feature_names(0b11, &table), ["BOTH", "LOW"]);
    }

    #[test]
    fn has_features_needs_every_bit() {
        let f = VIRTIO_F_VERSION_1 | VIRTIO_F_EVENT_IDX;
        assert!(has_features(f, VIRTIO_F_VERSION_1));
        assert!(has_features(f, f));
        assert!(!has_features(f, f | VIRTIO_F_IN_ORDER));
        assert!(has_features(f, 0));
    }
}
