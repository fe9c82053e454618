//! The virtio-blk configuration space (virtio 1.2 §5.2.4, `struct
//! virtio_blk_config`).
//!
//! [`BlkConfig`] is the whole virtio 1.2 layout, 96 bytes, including the
//! zoned-device part at offset 72 that came with virtio 1.2. A VMM reads a
//! prefix of it whose length depends on the headers it was built with: 60
//! bytes before secure erase, [`BLK_CONFIG_SIZE_NO_ZONED`] (72) before zoned
//! devices, [`BLK_CONFIG_SIZE`] (96) after. Keeping the zoned part, all zero
//! since pvio never offers `VIRTIO_BLK_F_ZONED`, lets a backend answer every
//! one of those reads from one value.
//!
//! A field is meaningful only if its feature bit was negotiated; the driver
//! may write only `writeback` (with `VIRTIO_BLK_F_CONFIG_WCE`).

use core::mem::{offset_of, size_of};

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Size of [`BlkConfig`], the full virtio 1.2 configuration space.
pub const BLK_CONFIG_SIZE: usize = 96;
/// Size of the configuration space before the zoned characteristics (what
/// VMMs built against pre-zoned headers, such as QEMU 7.2, read).
pub const BLK_CONFIG_SIZE_NO_ZONED: usize = 72;

/// `zoned.model`: not a zoned device (virtio 1.2 §5.2.4).
pub const VIRTIO_BLK_Z_NONE: u8 = 0;
/// `zoned.model`: host-managed zoned device (virtio 1.2 §5.2.4).
pub const VIRTIO_BLK_Z_HM: u8 = 1;
/// `zoned.model`: host-aware zoned device (virtio 1.2 §5.2.4).
pub const VIRTIO_BLK_Z_HA: u8 = 2;

/// Legacy disk geometry (virtio 1.2 §5.2.4, `struct virtio_blk_geometry`;
/// `VIRTIO_BLK_F_GEOMETRY`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct BlkGeometry {
    /// Number of cylinders.
    pub cylinders: U16,
    /// Number of heads.
    pub heads: u8,
    /// Sectors per track.
    pub sectors: u8,
}
const _: () = assert!(size_of::<BlkGeometry>() == 4);

impl BlkGeometry {
    /// A geometry with the given values.
    #[must_use]
    pub const fn new(cylinders: u16, heads: u8, sectors: u8) -> Self {
        Self {
            cylinders: U16::new(cylinders),
            heads,
            sectors,
        }
    }
}

/// I/O alignment hints (virtio 1.2 §5.2.4, `struct virtio_blk_topology`;
/// `VIRTIO_BLK_F_TOPOLOGY`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct BlkTopology {
    /// log2 of logical blocks per physical block.
    pub physical_block_exp: u8,
    /// Offset of the first aligned logical block.
    pub alignment_offset: u8,
    /// Suggested minimum I/O size, in logical blocks.
    pub min_io_size: U16,
    /// Optimal (suggested maximum) I/O size, in logical blocks.
    pub opt_io_size: U32,
}
const _: () = assert!(size_of::<BlkTopology>() == 8);

impl BlkTopology {
    /// A topology with the given values.
    #[must_use]
    pub const fn new(
        physical_block_exp: u8,
        alignment_offset: u8,
        min_io_size: u16,
        opt_io_size: u32,
    ) -> Self {
        Self {
            physical_block_exp,
            alignment_offset,
            min_io_size: U16::new(min_io_size),
            opt_io_size: U32::new(opt_io_size),
        }
    }
}

/// Zoned block device characteristics (virtio 1.2 §5.2.4, `struct
/// virtio_blk_zoned_characteristics`; `VIRTIO_BLK_F_ZONED`). pvio leaves it
/// zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct BlkZonedCharacteristics {
    /// Zone size in sectors.
    pub zone_sectors: U32,
    /// Maximum number of open zones.
    pub max_open_zones: U32,
    /// Maximum number of active zones.
    pub max_active_zones: U32,
    /// Maximum sectors of one zone append request.
    pub max_append_sectors: U32,
    /// Write granularity in bytes.
    pub write_granularity: U32,
    /// `VIRTIO_BLK_Z_*`.
    pub model: u8,
    /// Padding.
    pub unused2: [u8; 3],
}
const _: () = assert!(size_of::<BlkZonedCharacteristics>() == 24);

/// The virtio-blk configuration space (virtio 1.2 §5.2.4).
///
/// `BlkConfig::default()` is all zeroes; fill it with the `with_*` methods:
///
/// ```
/// use pvio_frontend_protocol::blk::BlkConfig;
/// use pvio_frontend_protocol::zerocopy::IntoBytes;
/// let cfg = BlkConfig::default().with_capacity(2048).with_blk_size(4096).with_num_queues(2);
/// assert_eq!(cfg.capacity(), 2048);
/// assert_eq!(cfg.as_bytes().len(), 96);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct BlkConfig {
    /// Size of the device in 512-byte sectors (always valid).
    pub capacity: U64,
    /// Largest size of one data segment in bytes (`VIRTIO_BLK_F_SIZE_MAX`).
    pub size_max: U32,
    /// Largest number of data segments per request (`VIRTIO_BLK_F_SEG_MAX`).
    pub seg_max: U32,
    /// Legacy geometry (`VIRTIO_BLK_F_GEOMETRY`).
    pub geometry: BlkGeometry,
    /// Logical block size in bytes (`VIRTIO_BLK_F_BLK_SIZE`).
    pub blk_size: U32,
    /// Alignment hints (`VIRTIO_BLK_F_TOPOLOGY`).
    pub topology: BlkTopology,
    /// Cache mode, 0 writethrough, 1 writeback (`VIRTIO_BLK_F_CONFIG_WCE`;
    /// the one field the driver writes).
    pub writeback: u8,
    /// Padding.
    pub unused0: u8,
    /// Number of request queues (`VIRTIO_BLK_F_MQ`).
    pub num_queues: U16,
    /// Largest discard length of one segment, in sectors
    /// (`VIRTIO_BLK_F_DISCARD`).
    pub max_discard_sectors: U32,
    /// Largest number of discard segments per request.
    pub max_discard_seg: U32,
    /// Discard alignment, in sectors.
    pub discard_sector_alignment: U32,
    /// Largest write-zeroes length of one segment, in sectors
    /// (`VIRTIO_BLK_F_WRITE_ZEROES`).
    pub max_write_zeroes_sectors: U32,
    /// Largest number of write-zeroes segments per request.
    pub max_write_zeroes_seg: U32,
    /// 1 if a write-zeroes request with UNMAP may deallocate.
    pub write_zeroes_may_unmap: u8,
    /// Padding.
    pub unused1: [u8; 3],
    /// Largest secure-erase length of one segment, in sectors
    /// (`VIRTIO_BLK_F_SECURE_ERASE`).
    pub max_secure_erase_sectors: U32,
    /// Largest number of secure-erase segments per request.
    pub max_secure_erase_seg: U32,
    /// Secure-erase alignment, in sectors.
    pub secure_erase_sector_alignment: U32,
    /// Zoned characteristics (`VIRTIO_BLK_F_ZONED`); zero in pvio.
    pub zoned: BlkZonedCharacteristics,
}
const _: () = assert!(size_of::<BlkConfig>() == BLK_CONFIG_SIZE);
const _: () = assert!(offset_of!(BlkConfig, zoned) == BLK_CONFIG_SIZE_NO_ZONED);

impl BlkConfig {
    /// Offset of `writeback`, the only field a driver writes.
    pub const WRITEBACK_OFFSET: usize = offset_of!(BlkConfig, writeback);

    /// Sets `capacity`, in 512-byte sectors.
    #[must_use]
    pub const fn with_capacity(mut self, sectors: u64) -> Self {
        self.capacity = U64::new(sectors);
        self
    }

    /// Sets `size_max`, in bytes.
    #[must_use]
    pub const fn with_size_max(mut self, bytes: u32) -> Self {
        self.size_max = U32::new(bytes);
        self
    }

    /// Sets `seg_max`.
    #[must_use]
    pub const fn with_seg_max(mut self, segments: u32) -> Self {
        self.seg_max = U32::new(segments);
        self
    }

    /// Sets `geometry`.
    #[must_use]
    pub const fn with_geometry(mut self, geometry: BlkGeometry) -> Self {
        self.geometry = geometry;
        self
    }

    /// Sets `blk_size`, in bytes.
    #[must_use]
    pub const fn with_blk_size(mut self, bytes: u32) -> Self {
        self.blk_size = U32::new(bytes);
        self
    }

    /// Sets `topology`.
    #[must_use]
    pub const fn with_topology(mut self, topology: BlkTopology) -> Self {
        self.topology = topology;
        self
    }

    /// Sets `writeback`: `true` for a writeback cache, `false` for
    /// writethrough.
    #[must_use]
    pub const fn with_writeback(mut self, writeback: bool) -> Self {
        self.writeback = if writeback { 1 } else { 0 };
        self
    }

    /// Sets `num_queues`.
    #[must_use]
    pub const fn with_num_queues(mut self, queues: u16) -> Self {
        self.num_queues = U16::new(queues);
        self
    }

    /// Sets the three discard limits, in sectors and segments.
    #[must_use]
    pub const fn with_discard(mut self, max_sectors: u32, max_seg: u32, alignment: u32) -> Self {
        self.max_discard_sectors = U32::new(max_sectors);
        self.max_discard_seg = U32::new(max_seg);
        self.discard_sector_alignment = U32::new(alignment);
        self
    }

    /// Sets the write-zeroes limits and whether UNMAP may deallocate.
    #[must_use]
    pub const fn with_write_zeroes(
        mut self,
        max_sectors: u32,
        max_seg: u32,
        may_unmap: bool,
    ) -> Self {
        self.max_write_zeroes_sectors = U32::new(max_sectors);
        self.max_write_zeroes_seg = U32::new(max_seg);
        self.write_zeroes_may_unmap = if may_unmap { 1 } else { 0 };
        self
    }

    /// Sets the three secure-erase limits, in sectors and segments.
    #[must_use]
    pub const fn with_secure_erase(
        mut self,
        max_sectors: u32,
        max_seg: u32,
        alignment: u32,
    ) -> Self {
        self.max_secure_erase_sectors = U32::new(max_sectors);
        self.max_secure_erase_seg = U32::new(max_seg);
        self.secure_erase_sector_alignment = U32::new(alignment);
        self
    }

    /// `capacity`, in 512-byte sectors.
    #[must_use]
    pub const fn capacity(&self) -> u64 {
        self.capacity.get()
    }

    /// `blk_size`, in bytes.
    #[must_use]
    pub const fn blk_size(&self) -> u32 {
        self.blk_size.get()
    }

    /// `num_queues`.
    #[must_use]
    pub const fn num_queues(&self) -> u16 {
        self.num_queues.get()
    }

    /// Whether `writeback` selects a writeback cache (any non-zero value).
    #[must_use]
    pub const fn writeback(&self) -> bool {
        self.writeback != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_5_2_4_geometry_and_topology_layout() {
        assert_eq!(size_of::<BlkGeometry>(), 4);
        assert_eq!(offset_of!(BlkGeometry, cylinders), 0);
        assert_eq!(offset_of!(BlkGeometry, heads), 2);
        assert_eq!(offset_of!(BlkGeometry, sectors), 3);
        assert_eq!(size_of::<BlkTopology>(), 8);
        assert_eq!(offset_of!(BlkTopology, physical_block_exp), 0);
        assert_eq!(offset_of!(BlkTopology, alignment_offset), 1);
        assert_eq!(offset_of!(BlkTopology, min_io_size), 2);
        assert_eq!(offset_of!(BlkTopology, opt_io_size), 4);
    }

    #[test]
    fn spec_5_2_4_zoned_characteristics_layout() {
        assert_eq!(size_of::<BlkZonedCharacteristics>(), 24);
        assert_eq!(offset_of!(BlkZonedCharacteristics, zone_sectors), 0);
        assert_eq!(offset_of!(BlkZonedCharacteristics, max_open_zones), 4);
        assert_eq!(offset_of!(BlkZonedCharacteristics, max_active_zones), 8);
        assert_eq!(offset_of!(BlkZonedCharacteristics, max_append_sectors), 12);
        assert_eq!(offset_of!(BlkZonedCharacteristics, write_granularity), 16);
        assert_eq!(offset_of!(BlkZonedCharacteristics, model), 20);
        assert_eq!(offset_of!(BlkZonedCharacteristics, unused2), 21);
        assert_eq!(
            (VIRTIO_BLK_Z_NONE, VIRTIO_BLK_Z_HM, VIRTIO_BLK_Z_HA),
            (0, 1, 2)
        );
    }

    #[test]
    fn spec_5_2_4_config_field_offsets() {
        // Offsets of Linux include/uapi/linux/virtio_blk.h (a packed struct).
        let expected = [
            (offset_of!(BlkConfig, capacity), 0),
            (offset_of!(BlkConfig, size_max), 8),
            (offset_of!(BlkConfig, seg_max), 12),
            (offset_of!(BlkConfig, geometry), 16),
            (offset_of!(BlkConfig, blk_size), 20),
            (offset_of!(BlkConfig, topology), 24),
            (offset_of!(BlkConfig, writeback), 32),
            (offset_of!(BlkConfig, unused0), 33),
            (offset_of!(BlkConfig, num_queues), 34),
            (offset_of!(BlkConfig, max_discard_sectors), 36),
            (offset_of!(BlkConfig, max_discard_seg), 40),
            (offset_of!(BlkConfig, discard_sector_alignment), 44),
            (offset_of!(BlkConfig, max_write_zeroes_sectors), 48),
            (offset_of!(BlkConfig, max_write_zeroes_seg), 52),
            (offset_of!(BlkConfig, write_zeroes_may_unmap), 56),
            (offset_of!(BlkConfig, unused1), 57),
            (offset_of!(BlkConfig, max_secure_erase_sectors), 60),
            (offset_of!(BlkConfig, max_secure_erase_seg), 64),
            (offset_of!(BlkConfig, secure_erase_sector_alignment), 68),
            (offset_of!(BlkConfig, zoned), 72),
        ];
        for (i, (got, want)) in expected.into_iter().enumerate() {
            assert_eq!(got, want, "field {i}");
        }
        assert_eq!(size_of::<BlkConfig>(), 96);
        assert_eq!(BLK_CONFIG_SIZE_NO_ZONED, 72);
        assert_eq!(BlkConfig::WRITEBACK_OFFSET, 32);
    }

    #[test]
    fn spec_5_2_4_default_config_is_all_zero() {
        assert!(BlkConfig::default().as_bytes().iter().all(|&b| b == 0));
    }

    #[test]
    fn spec_5_2_4_builder_writes_little_endian_at_spec_offsets() {
        let cfg = BlkConfig::default()
            .with_capacity(0x0102_0304_0506_0708)
            .with_size_max(0x1000)
            .with_seg_max(126)
            .with_geometry(BlkGeometry::new(0x0203, 16, 63))
            .with_blk_size(4096)
            .with_topology(BlkTopology::new(3, 0, 8, 256))
            .with_writeback(true)
            .with_num_queues(4)
            .with_discard(0xffff, 1, 8)
            .with_write_zeroes(0xffff, 1, true)
            .with_secure_erase(0x10, 2, 1);
        let b = cfg.as_bytes();
        assert_eq!(&b[0..8], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&b[8..12], &[0x00, 0x10, 0, 0]);
        assert_eq!(&b[12..16], &[126, 0, 0, 0]);
        assert_eq!(&b[16..20], &[0x03, 0x02, 16, 63]);
        assert_eq!(&b[20..24], &[0x00, 0x10, 0, 0]);
        assert_eq!(&b[24..32], &[3, 0, 8, 0, 0x00, 0x01, 0, 0]);
        assert_eq!(b[32], 1);
        assert_eq!(&b[34..36], &[4, 0]);
        assert_eq!(&b[36..48], &[0xff, 0xff, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0]);
        assert_eq!(&b[48..56], &[0xff, 0xff, 0, 0, 1, 0, 0, 0]);
        assert_eq!(b[56], 1);
        assert_eq!(&b[60..72], &[0x10, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0]);
        assert!(b[72..].iter().all(|&x| x == 0), "zoned part stays zero");

        let back = BlkConfig::read_from_bytes(b).expect("96 bytes");
        assert_eq!(back, cfg);
        assert_eq!(back.capacity(), 0x0102_0304_0506_0708);
        assert_eq!(back.blk_size(), 4096);
        assert_eq!(back.num_queues(), 4);
        assert!(back.writeback());
        assert!(!back.with_writeback(false).writeback());
    }

    #[test]
    fn spec_5_2_4_pre_zoned_prefix_decodes() {
        // A VMM built on pre-zoned headers reads (and shows) only 72 bytes.
        let cfg = BlkConfig::default().with_capacity(8).with_num_queues(1);
        let (prefix, _) = cfg.as_bytes().split_at(BLK_CONFIG_SIZE_NO_ZONED);
        let mut full = [0u8; BLK_CONFIG_SIZE];
        full[..BLK_CONFIG_SIZE_NO_ZONED].copy_from_slice(prefix);
        assert_eq!(
            BlkConfig::read_from_bytes(&full[..]).expect("96 bytes"),
            cfg
        );
    }
}
