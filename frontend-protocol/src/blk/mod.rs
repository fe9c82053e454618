//! virtio-blk, the block device (virtio 1.2 §5.2).
//!
//! A block device has one or more request queues (`num_queues` with
//! [`VIRTIO_BLK_F_MQ`]). Each request is one descriptor chain: a
//! device-readable [`BlkReqHeader`], then the data buffers (device-readable
//! for writes, device-writable for reads), then one device-writable status
//! byte (`VIRTIO_BLK_S_*`).
//!
//! The items are split by idea: feature bits here, the request formats in
//! `request.rs`, the configuration space in `config.rs`; all are re-exported
//! from this module.

mod config;
mod request;

pub use config::*;
pub use request::*;

/// Largest segment size is in `size_max` (virtio 1.2 §5.2.3, bit 1).
pub const VIRTIO_BLK_F_SIZE_MAX: u64 = 1 << 1;
/// Largest number of segments per request is in `seg_max` (virtio 1.2
/// §5.2.3, bit 2).
pub const VIRTIO_BLK_F_SEG_MAX: u64 = 1 << 2;
/// Disk geometry is in `geometry` (virtio 1.2 §5.2.3, bit 4).
pub const VIRTIO_BLK_F_GEOMETRY: u64 = 1 << 4;
/// The device is read-only (virtio 1.2 §5.2.3, bit 5).
pub const VIRTIO_BLK_F_RO: u64 = 1 << 5;
/// Logical block size is in `blk_size` (virtio 1.2 §5.2.3, bit 6).
pub const VIRTIO_BLK_F_BLK_SIZE: u64 = 1 << 6;
/// The device handles [`VIRTIO_BLK_T_FLUSH`] (virtio 1.2 §5.2.3, bit 9).
pub const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;
/// Optimal I/O alignment is in `topology` (virtio 1.2 §5.2.3, bit 10).
pub const VIRTIO_BLK_F_TOPOLOGY: u64 = 1 << 10;
/// The driver can switch the cache between writeback and writethrough through
/// `writeback` (virtio 1.2 §5.2.3, bit 11).
pub const VIRTIO_BLK_F_CONFIG_WCE: u64 = 1 << 11;
/// The device has `num_queues` request queues (virtio 1.2 §5.2.3, bit 12).
pub const VIRTIO_BLK_F_MQ: u64 = 1 << 12;
/// The device handles [`VIRTIO_BLK_T_DISCARD`] (virtio 1.2 §5.2.3, bit 13).
pub const VIRTIO_BLK_F_DISCARD: u64 = 1 << 13;
/// The device handles [`VIRTIO_BLK_T_WRITE_ZEROES`] (virtio 1.2 §5.2.3,
/// bit 14).
pub const VIRTIO_BLK_F_WRITE_ZEROES: u64 = 1 << 14;
/// The device handles [`VIRTIO_BLK_T_GET_LIFETIME`] (virtio 1.2 §5.2.3,
/// bit 15).
pub const VIRTIO_BLK_F_LIFETIME: u64 = 1 << 15;
/// The device handles [`VIRTIO_BLK_T_SECURE_ERASE`] (virtio 1.2 §5.2.3,
/// bit 16).
pub const VIRTIO_BLK_F_SECURE_ERASE: u64 = 1 << 16;
/// The device is a zoned block device (virtio 1.2 §5.2.3, bit 17). pvio does
/// not offer it; [`BlkZonedCharacteristics`] stays zero.
pub const VIRTIO_BLK_F_ZONED: u64 = 1 << 17;

/// Names of the virtio-blk feature bits, for logs (see
/// [`crate::features::feature_names`]).
pub const BLK_FEATURE_NAMES: &[(u64, &str)] = &[
    (VIRTIO_BLK_F_SIZE_MAX, "BLK_SIZE_MAX"),
    (VIRTIO_BLK_F_SEG_MAX, "BLK_SEG_MAX"),
    (VIRTIO_BLK_F_GEOMETRY, "BLK_GEOMETRY"),
    (VIRTIO_BLK_F_RO, "BLK_RO"),
    (VIRTIO_BLK_F_BLK_SIZE, "BLK_BLK_SIZE"),
    (VIRTIO_BLK_F_FLUSH, "BLK_FLUSH"),
    (VIRTIO_BLK_F_TOPOLOGY, "BLK_TOPOLOGY"),
    (VIRTIO_BLK_F_CONFIG_WCE, "BLK_CONFIG_WCE"),
    (VIRTIO_BLK_F_MQ, "BLK_MQ"),
    (VIRTIO_BLK_F_DISCARD, "BLK_DISCARD"),
    (VIRTIO_BLK_F_WRITE_ZEROES, "BLK_WRITE_ZEROES"),
    (VIRTIO_BLK_F_LIFETIME, "BLK_LIFETIME"),
    (VIRTIO_BLK_F_SECURE_ERASE, "BLK_SECURE_ERASE"),
    (VIRTIO_BLK_F_ZONED, "BLK_ZONED"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::{feature_names, unnamed_features};

    #[test]
    fn spec_5_2_3_feature_bit_numbers() {
        let bits = [
            (VIRTIO_BLK_F_SIZE_MAX, 1),
            (VIRTIO_BLK_F_SEG_MAX, 2),
            (VIRTIO_BLK_F_GEOMETRY, 4),
            (VIRTIO_BLK_F_RO, 5),
            (VIRTIO_BLK_F_BLK_SIZE, 6),
            (VIRTIO_BLK_F_FLUSH, 9),
            (VIRTIO_BLK_F_TOPOLOGY, 10),
            (VIRTIO_BLK_F_CONFIG_WCE, 11),
            (VIRTIO_BLK_F_MQ, 12),
            (VIRTIO_BLK_F_DISCARD, 13),
            (VIRTIO_BLK_F_WRITE_ZEROES, 14),
            (VIRTIO_BLK_F_LIFETIME, 15),
            (VIRTIO_BLK_F_SECURE_ERASE, 16),
            (VIRTIO_BLK_F_ZONED, 17),
        ];
        for (mask, bit) in bits {
            assert_eq!(mask, 1u64 << bit, "bit {bit}");
        }
    }

    #[test]
    fn blk_names_cover_every_blk_bit() {
        let all = BLK_FEATURE_NAMES
            .iter()
            .fold(0, |acc, &(bits, _)| acc | bits);
        assert_eq!(all.count_ones(), 14);
        assert_eq!(unnamed_features(all, BLK_FEATURE_NAMES), 0);
        assert_eq!(
            feature_names(VIRTIO_BLK_F_FLUSH | VIRTIO_BLK_F_RO, BLK_FEATURE_NAMES),
            ["BLK_RO", "BLK_FLUSH"]
        );
    }
}
