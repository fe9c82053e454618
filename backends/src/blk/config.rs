//! What the block device offers: its feature bits, its virtio-blk config
//! space (`BlkConfig` from `pvio-frontend-protocol`) and the request limits
//! the parser enforces, all derived from the image and the options.
//!
//! It must not know about queues, engines or vhost-user messages.

use crate::vhost_user::dirty_log::VHOST_F_LOG_ALL;
use pvio_frontend_protocol::blk::{
    BlkConfig, BlkTopology, SECTOR_SIZE, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_CONFIG_WCE,
    VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_MQ, VIRTIO_BLK_F_RO,
    VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_TOPOLOGY, VIRTIO_BLK_F_WRITE_ZEROES,
    VIRTIO_BLK_ID_BYTES,
};
use pvio_frontend_protocol::features::{
    VHOST_USER_F_PROTOCOL_FEATURES, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1,
};

/// Largest data segment offered in `size_max` (bytes).
pub const SIZE_MAX: u32 = 1 << 20;
/// Most data segments in one request the engine takes (`IOV_MAX`).
pub const MAX_SEGMENTS: u32 = 1024;
/// Most data one read or write may carry (bytes): `seg_max * size_max` is
/// far more than any driver sends; this bounds what a guest can ask for.
pub const MAX_DATA_BYTES: u64 = 32 << 20;
/// The ring size frontends use unless told otherwise (QEMU's
/// `vhost-user-blk-pci` `queue-size`, Cloud Hypervisor's default).
pub const COMMON_RING: u16 = 128;
/// Largest discard / write-zeroes range, in sectors (1 GiB).
pub const MAX_DISCARD_SECTORS: u32 = (1 << 30) >> 9;
/// Ranges per discard / write-zeroes request.
pub const MAX_DISCARD_SEG: u32 = 1;
/// Discard alignment hint, in sectors (4 KiB, the page-cache granularity).
pub const DISCARD_ALIGNMENT: u32 = 8;

/// What the device is, as the parser and the config space need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskInfo {
    /// Capacity in 512-byte sectors.
    pub sectors: u64,
    /// Writes, discards and write-zeroes are refused.
    pub read_only: bool,
    /// Logical block size in bytes.
    pub logical_block: u32,
    /// Physical block size in bytes.
    pub physical_block: u32,
    /// Number of request queues.
    pub num_queues: u16,
    /// Descriptors per queue.
    pub queue_size: u16,
    /// The GET_ID answer (NUL-padded serial), if `--serial` was given.
    pub serial: Option<[u8; VIRTIO_BLK_ID_BYTES]>,
}

impl DiskInfo {
    /// The capacity in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.sectors.saturating_mul(SECTOR_SIZE)
    }

    /// `seg_max`: a request must fit the ring with its header and status
    /// when the driver does not use indirect descriptors. The ring is the
    /// frontend's choice, made after the driver read this, and is at most
    /// `queue_size`; QEMU's `vhost-user-blk-pci` and Cloud Hypervisor make
    /// it [`COMMON_RING`] by default, so that is the bound.
    ///
    /// The bound also decides how much a Linux guest merges: with 254, eight
    /// sequential 128 KiB direct reads became one 896 KiB request and one
    /// 128 KiB one, and the guest got 7 of its 8 reads back at once and then
    /// left the disk idle while it resubmitted them (128 KiB reads at depth
    /// 8 ran at half the speed they do with 126, where requests of up to
    /// 384 KiB keep some in flight while the guest handles the others).
    pub fn seg_max(&self) -> u32 {
        u32::from(self.queue_size.min(COMMON_RING))
            .saturating_sub(2)
            .clamp(1, MAX_SEGMENTS)
    }
}

/// The virtio feature bits offered.
pub fn features(disk: &DiskInfo) -> u64 {
    let mut f = VIRTIO_F_VERSION_1
        | VIRTIO_F_EVENT_IDX
        | VIRTIO_F_INDIRECT_DESC
        | VHOST_USER_F_PROTOCOL_FEATURES
        | VHOST_F_LOG_ALL
        | VIRTIO_BLK_F_SIZE_MAX
        | VIRTIO_BLK_F_SEG_MAX
        | VIRTIO_BLK_F_BLK_SIZE
        | VIRTIO_BLK_F_TOPOLOGY
        | VIRTIO_BLK_F_FLUSH
        | VIRTIO_BLK_F_CONFIG_WCE
        | VIRTIO_BLK_F_MQ
        | VIRTIO_BLK_F_DISCARD
        | VIRTIO_BLK_F_WRITE_ZEROES;
    if disk.read_only {
        f |= VIRTIO_BLK_F_RO;
    }
    f
}

/// The config space at reset (writeback cache on).
pub fn config_space(disk: &DiskInfo) -> BlkConfig {
    let per_physical = disk.physical_block / disk.logical_block.max(1);
    let physical_block_exp = u8::try_from(per_physical.max(1).trailing_zeros()).unwrap_or(0);
    BlkConfig::default()
        .with_capacity(disk.sectors)
        .with_size_max(SIZE_MAX)
        .with_seg_max(disk.seg_max())
        .with_blk_size(disk.logical_block)
        .with_topology(BlkTopology::new(physical_block_exp, 0, 1, 0))
        .with_writeback(true)
        .with_num_queues(disk.num_queues)
        .with_discard(MAX_DISCARD_SECTORS, MAX_DISCARD_SEG, DISCARD_ALIGNMENT)
        .with_write_zeroes(MAX_DISCARD_SECTORS, MAX_DISCARD_SEG, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvio_frontend_protocol::zerocopy::IntoBytes;

    fn disk(read_only: bool) -> DiskInfo {
        DiskInfo {
            sectors: 2048,
            read_only,
            logical_block: 512,
            physical_block: 4096,
            num_queues: 2,
            queue_size: 256,
            serial: None,
        }
    }

    #[test]
    fn spec_5_2_3_every_feature_is_offered_and_ro_only_for_read_only_disks() {
        let offered = [
            ("VERSION_1", VIRTIO_F_VERSION_1),
            ("SEG_MAX", VIRTIO_BLK_F_SEG_MAX),
            ("SIZE_MAX", VIRTIO_BLK_F_SIZE_MAX),
            ("BLK_SIZE", VIRTIO_BLK_F_BLK_SIZE),
            ("TOPOLOGY", VIRTIO_BLK_F_TOPOLOGY),
            ("FLUSH", VIRTIO_BLK_F_FLUSH),
            ("CONFIG_WCE", VIRTIO_BLK_F_CONFIG_WCE),
            ("DISCARD", VIRTIO_BLK_F_DISCARD),
            ("WRITE_ZEROES", VIRTIO_BLK_F_WRITE_ZEROES),
            ("MQ", VIRTIO_BLK_F_MQ),
            ("EVENT_IDX", VIRTIO_F_EVENT_IDX),
            ("INDIRECT_DESC", VIRTIO_F_INDIRECT_DESC),
            ("PROTOCOL_FEATURES", VHOST_USER_F_PROTOCOL_FEATURES),
            ("LOG_ALL", VHOST_F_LOG_ALL),
        ];
        let all = offered.iter().fold(0, |acc, &(_, bit)| acc | bit);
        for read_only in [false, true] {
            let f = features(&disk(read_only));
            for (name, bit) in offered {
                assert_ne!(f & bit, 0, "{name} not offered");
            }
            assert_eq!(f & VIRTIO_BLK_F_RO != 0, read_only, "RO");
            // Nothing else: no bit a driver could ack that the device does
            // not implement.
            let ro = if read_only { VIRTIO_BLK_F_RO } else { 0 };
            assert_eq!(f, all | ro, "unexpected bits {:#x}", f & !(all | ro));
        }
    }

    #[test]
    fn spec_5_2_4_config_carries_capacity_queues_and_topology() {
        let cfg = config_space(&disk(false));
        assert_eq!(cfg.capacity(), 2048);
        assert_eq!(cfg.num_queues(), 2);
        assert_eq!(cfg.blk_size(), 512);
        assert_eq!(cfg.topology.physical_block_exp, 3);
        assert!(cfg.writeback());
        // A 256-entry queue still offers what fits a 128-entry ring.
        assert_eq!(cfg.seg_max.get(), 126);
        assert_eq!(cfg.as_bytes()[BlkConfig::WRITEBACK_OFFSET], 1);
    }

    #[test]
    fn seg_max_fits_the_smaller_of_the_queue_and_a_common_ring() {
        let with = |queue_size| DiskInfo {
            queue_size,
            ..disk(false)
        };
        assert_eq!(with(2).seg_max(), 1);
        assert_eq!(with(4).seg_max(), 2);
        assert_eq!(with(64).seg_max(), 62);
        assert_eq!(with(128).seg_max(), 126);
        assert_eq!(with(32768).seg_max(), 126);
    }
}
