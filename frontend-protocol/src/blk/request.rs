//! virtio-blk requests: header, types, status, discard / write-zeroes
//! segments, lifetime (virtio 1.2 §5.2.6).

use core::fmt;
use core::mem::size_of;

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Read sectors into the device-writable data buffers (virtio 1.2 §5.2.6).
pub const VIRTIO_BLK_T_IN: u32 = 0;
/// Write sectors from the device-readable data buffers (virtio 1.2 §5.2.6).
pub const VIRTIO_BLK_T_OUT: u32 = 1;
/// Make all completed writes durable (virtio 1.2 §5.2.6; needs
/// `VIRTIO_BLK_F_FLUSH`).
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
/// Return the device ID string, [`VIRTIO_BLK_ID_BYTES`] bytes (virtio 1.2
/// §5.2.6).
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;
/// Return a [`BlkLifetime`] (virtio 1.2 §5.2.6; needs `VIRTIO_BLK_F_LIFETIME`).
pub const VIRTIO_BLK_T_GET_LIFETIME: u32 = 10;
/// Discard ranges given as [`DiscardWriteZeroesSeg`]s (virtio 1.2 §5.2.6;
/// needs `VIRTIO_BLK_F_DISCARD`).
pub const VIRTIO_BLK_T_DISCARD: u32 = 11;
/// Zero ranges given as [`DiscardWriteZeroesSeg`]s (virtio 1.2 §5.2.6; needs
/// `VIRTIO_BLK_F_WRITE_ZEROES`).
pub const VIRTIO_BLK_T_WRITE_ZEROES: u32 = 13;
/// Securely erase ranges given as [`DiscardWriteZeroesSeg`]s (virtio 1.2
/// §5.2.6; needs `VIRTIO_BLK_F_SECURE_ERASE`).
pub const VIRTIO_BLK_T_SECURE_ERASE: u32 = 14;

/// Status: the request succeeded (virtio 1.2 §5.2.6).
pub const VIRTIO_BLK_S_OK: u8 = 0;
/// Status: the request failed with an I/O error (virtio 1.2 §5.2.6).
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
/// Status: the request type or its parameters are not supported (virtio 1.2
/// §5.2.6).
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;

/// log2 of the virtio-blk sector size: `sector` fields count 512-byte units
/// whatever `blk_size` is (virtio 1.2 §5.2.6).
pub const SECTOR_SHIFT: u32 = 9;
/// The virtio-blk sector size in bytes (virtio 1.2 §5.2.6).
pub const SECTOR_SIZE: u64 = 1 << SECTOR_SHIFT;
/// Length of the [`VIRTIO_BLK_T_GET_ID`] answer; shorter IDs are NUL-padded,
/// an ID of exactly this length has no NUL (virtio 1.2 §5.2.6).
pub const VIRTIO_BLK_ID_BYTES: usize = 20;
/// Length of the status byte that ends every request (virtio 1.2 §5.2.6).
pub const BLK_STATUS_LEN: usize = 1;

/// `flags` bit of a write-zeroes segment: the device may deallocate the range
/// instead of writing zeroes (virtio 1.2 §5.2.6).
pub const VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP: u32 = 1;

/// [`BlkLifetime::pre_eol_info`]: value not defined (virtio 1.2 §5.2.6).
pub const VIRTIO_BLK_PRE_EOL_INFO_UNDEFINED: u16 = 0;
/// [`BlkLifetime::pre_eol_info`]: under 80% of reserved blocks consumed.
pub const VIRTIO_BLK_PRE_EOL_INFO_NORMAL: u16 = 1;
/// [`BlkLifetime::pre_eol_info`]: 80% of reserved blocks consumed.
pub const VIRTIO_BLK_PRE_EOL_INFO_WARNING: u16 = 2;
/// [`BlkLifetime::pre_eol_info`]: 90% of reserved blocks consumed.
pub const VIRTIO_BLK_PRE_EOL_INFO_URGENT: u16 = 3;

/// The request type of a [`BlkReqHeader`] (virtio 1.2 §5.2.6).
///
/// `From<u32>` never fails: a type pvio does not know (legacy SCSI, zoned
/// commands, future ones) becomes [`RequestType::Unsupported`], which a
/// backend answers with [`VIRTIO_BLK_S_UNSUPP`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestType {
    /// [`VIRTIO_BLK_T_IN`].
    In,
    /// [`VIRTIO_BLK_T_OUT`].
    Out,
    /// [`VIRTIO_BLK_T_FLUSH`].
    Flush,
    /// [`VIRTIO_BLK_T_GET_ID`].
    GetId,
    /// [`VIRTIO_BLK_T_GET_LIFETIME`].
    GetLifetime,
    /// [`VIRTIO_BLK_T_DISCARD`].
    Discard,
    /// [`VIRTIO_BLK_T_WRITE_ZEROES`].
    WriteZeroes,
    /// [`VIRTIO_BLK_T_SECURE_ERASE`].
    SecureErase,
    /// Any other value, kept as it came.
    Unsupported(u32),
}

impl From<u32> for RequestType {
    fn from(value: u32) -> Self {
        match value {
            VIRTIO_BLK_T_IN => Self::In,
            VIRTIO_BLK_T_OUT => Self::Out,
            VIRTIO_BLK_T_FLUSH => Self::Flush,
            VIRTIO_BLK_T_GET_ID => Self::GetId,
            VIRTIO_BLK_T_GET_LIFETIME => Self::GetLifetime,
            VIRTIO_BLK_T_DISCARD => Self::Discard,
            VIRTIO_BLK_T_WRITE_ZEROES => Self::WriteZeroes,
            VIRTIO_BLK_T_SECURE_ERASE => Self::SecureErase,
            other => Self::Unsupported(other),
        }
    }
}

impl From<RequestType> for u32 {
    fn from(value: RequestType) -> Self {
        match value {
            RequestType::In => VIRTIO_BLK_T_IN,
            RequestType::Out => VIRTIO_BLK_T_OUT,
            RequestType::Flush => VIRTIO_BLK_T_FLUSH,
            RequestType::GetId => VIRTIO_BLK_T_GET_ID,
            RequestType::GetLifetime => VIRTIO_BLK_T_GET_LIFETIME,
            RequestType::Discard => VIRTIO_BLK_T_DISCARD,
            RequestType::WriteZeroes => VIRTIO_BLK_T_WRITE_ZEROES,
            RequestType::SecureErase => VIRTIO_BLK_T_SECURE_ERASE,
            RequestType::Unsupported(other) => other,
        }
    }
}

impl fmt::Display for RequestType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::In => f.write_str("in"),
            Self::Out => f.write_str("out"),
            Self::Flush => f.write_str("flush"),
            Self::GetId => f.write_str("get-id"),
            Self::GetLifetime => f.write_str("get-lifetime"),
            Self::Discard => f.write_str("discard"),
            Self::WriteZeroes => f.write_str("write-zeroes"),
            Self::SecureErase => f.write_str("secure-erase"),
            Self::Unsupported(t) => write!(f, "unsupported type {t}"),
        }
    }
}

/// The header that starts every virtio-blk request (virtio 1.2 §5.2.6, the
/// device-readable part of `struct virtio_blk_req`; Linux
/// `struct virtio_blk_outhdr`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct BlkReqHeader {
    /// `VIRTIO_BLK_T_*`; see [`Self::request_type`].
    pub type_: U32,
    /// Reserved in virtio 1.x (legacy `ioprio`); ignored by the device.
    pub reserved: U32,
    /// First sector, in 512-byte units, for `IN` and `OUT`; zero otherwise.
    pub sector: U64,
}
const _: () = assert!(size_of::<BlkReqHeader>() == 16);

impl BlkReqHeader {
    /// A header for `type_` (`VIRTIO_BLK_T_*`) at `sector`.
    #[must_use]
    pub const fn new(type_: u32, sector: u64) -> Self {
        Self {
            type_: U32::new(type_),
            reserved: U32::ZERO,
            sector: U64::new(sector),
        }
    }

    /// The request type.
    #[must_use]
    pub fn request_type(&self) -> RequestType {
        RequestType::from(self.type_.get())
    }

    /// The first sector, in 512-byte units.
    #[must_use]
    pub const fn sector(&self) -> u64 {
        self.sector.get()
    }

    /// The byte offset of [`Self::sector`], or `None` if it overflows `u64`
    /// (a guest can send any sector number).
    #[must_use]
    pub const fn byte_offset(&self) -> Option<u64> {
        sector_to_bytes(self.sector())
    }
}

/// `sectors * 512`, or `None` on overflow.
#[must_use]
pub const fn sector_to_bytes(sectors: u64) -> Option<u64> {
    sectors.checked_mul(SECTOR_SIZE)
}

/// The whole sectors in `bytes` (rounded down), e.g. a disk's `capacity`.
#[must_use]
pub const fn bytes_to_sectors(bytes: u64) -> u64 {
    bytes >> SECTOR_SHIFT
}

/// One range of a discard, write-zeroes or secure-erase request (virtio 1.2
/// §5.2.6, `struct virtio_blk_discard_write_zeroes`). The data part of such a
/// request is an array of these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct DiscardWriteZeroesSeg {
    /// First sector of the range, in 512-byte units.
    pub sector: U64,
    /// Length of the range in sectors.
    pub num_sectors: U32,
    /// Bit 0 is [`VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP`]; bits 1-31 are reserved
    /// and must be zero.
    pub flags: U32,
}
const _: () = assert!(size_of::<DiscardWriteZeroesSeg>() == 16);

impl DiscardWriteZeroesSeg {
    /// A segment with the given fields, stored little-endian.
    #[must_use]
    pub const fn new(sector: u64, num_sectors: u32, flags: u32) -> Self {
        Self {
            sector: U64::new(sector),
            num_sectors: U32::new(num_sectors),
            flags: U32::new(flags),
        }
    }

    /// First sector of the range.
    #[must_use]
    pub const fn sector(&self) -> u64 {
        self.sector.get()
    }

    /// Length of the range in sectors.
    #[must_use]
    pub const fn num_sectors(&self) -> u32 {
        self.num_sectors.get()
    }

    /// The raw `flags` word.
    #[must_use]
    pub const fn flags(&self) -> u32 {
        self.flags.get()
    }

    /// Whether the driver allows unmapping instead of writing zeroes.
    #[must_use]
    pub const fn unmap(&self) -> bool {
        self.flags() & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0
    }

    /// Whether reserved flag bits are set; the device requirements of
    /// virtio 1.2 §5.2.6 have it answer [`VIRTIO_BLK_S_UNSUPP`] then.
    #[must_use]
    pub const fn has_reserved_flags(&self) -> bool {
        self.flags() & !VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0
    }

    /// The sector one past the range, or `None` on overflow.
    #[must_use]
    pub const fn end_sector(&self) -> Option<u64> {
        // Lossless: u32 -> u64.
        self.sector().checked_add(self.num_sectors() as u64)
    }
}

/// The answer to [`VIRTIO_BLK_T_GET_LIFETIME`] (virtio 1.2 §5.2.6, `struct
/// virtio_blk_lifetime`), modelled on eMMC's health report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct BlkLifetime {
    /// `VIRTIO_BLK_PRE_EOL_INFO_*`.
    pub pre_eol_info: U16,
    /// Wear of type A memory in steps of 10% (1 = 0-10% ... 11 = beyond).
    pub device_lifetime_est_typ_a: U16,
    /// Wear of type B memory, same scale.
    pub device_lifetime_est_typ_b: U16,
}
const _: () = assert!(size_of::<BlkLifetime>() == 6);

/// The [`VIRTIO_BLK_T_GET_ID`] answer for `id`: its first
/// [`VIRTIO_BLK_ID_BYTES`] bytes, NUL-padded (virtio 1.2 §5.2.6).
#[must_use]
pub fn encode_blk_id(id: &[u8]) -> [u8; VIRTIO_BLK_ID_BYTES] {
    let mut out = [0u8; VIRTIO_BLK_ID_BYTES];
    let n = id.len().min(VIRTIO_BLK_ID_BYTES);
    out[..n].copy_from_slice(&id[..n]);
    out
}

#[cfg(test)]
mod tests {
    use core::mem::offset_of;

    use super::*;

    #[test]
    fn spec_5_2_6_request_type_values() {
        assert_eq!(VIRTIO_BLK_T_IN, 0);
        assert_eq!(VIRTIO_BLK_T_OUT, 1);
        assert_eq!(VIRTIO_BLK_T_FLUSH, 4);
        assert_eq!(VIRTIO_BLK_T_GET_ID, 8);
        assert_eq!(VIRTIO_BLK_T_GET_LIFETIME, 10);
        assert_eq!(VIRTIO_BLK_T_DISCARD, 11);
        assert_eq!(VIRTIO_BLK_T_WRITE_ZEROES, 13);
        assert_eq!(VIRTIO_BLK_T_SECURE_ERASE, 14);
    }

    #[test]
    fn spec_5_2_6_status_values() {
        assert_eq!(VIRTIO_BLK_S_OK, 0);
        assert_eq!(VIRTIO_BLK_S_IOERR, 1);
        assert_eq!(VIRTIO_BLK_S_UNSUPP, 2);
        assert_eq!(BLK_STATUS_LEN, 1);
    }

    #[test]
    fn spec_5_2_6_sector_is_512_bytes_and_id_is_20() {
        assert_eq!(SECTOR_SHIFT, 9);
        assert_eq!(SECTOR_SIZE, 512);
        assert_eq!(VIRTIO_BLK_ID_BYTES, 20);
        assert_eq!(VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP, 1);
        assert_eq!(
            [
                VIRTIO_BLK_PRE_EOL_INFO_UNDEFINED,
                VIRTIO_BLK_PRE_EOL_INFO_NORMAL,
                VIRTIO_BLK_PRE_EOL_INFO_WARNING,
                VIRTIO_BLK_PRE_EOL_INFO_URGENT
            ],
            [0, 1, 2, 3]
        );
    }

    #[test]
    fn spec_5_2_6_request_type_round_trips_through_u32() {
        for t in 0..=64u32 {
            assert_eq!(u32::from(RequestType::from(t)), t);
        }
        assert_eq!(
            RequestType::from(u32::MAX),
            RequestType::Unsupported(u32::MAX)
        );
        assert_eq!(
            RequestType::from(2),
            RequestType::Unsupported(2),
            "legacy SCSI"
        );
        assert_eq!(
            RequestType::from(15),
            RequestType::Unsupported(15),
            "zone append"
        );
        assert_eq!(RequestType::from(13), RequestType::WriteZeroes);
        assert_eq!(
            RequestType::Unsupported(99).to_string(),
            "unsupported type 99"
        );
        assert_eq!(RequestType::Flush.to_string(), "flush");
    }

    #[test]
    fn spec_5_2_6_req_header_layout() {
        assert_eq!(size_of::<BlkReqHeader>(), 16);
        assert_eq!(offset_of!(BlkReqHeader, type_), 0);
        assert_eq!(offset_of!(BlkReqHeader, reserved), 4);
        assert_eq!(offset_of!(BlkReqHeader, sector), 8);
    }

    #[test]
    fn spec_5_2_6_req_header_decodes_little_endian_bytes() {
        let bytes: [u8; 16] = [
            0x01, 0x00, 0x00, 0x00, // type OUT
            0xaa, 0xbb, 0xcc, 0xdd, // reserved: ignored
            0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // sector
        ];
        let hdr = BlkReqHeader::read_from_bytes(&bytes).expect("16 bytes");
        assert_eq!(hdr.request_type(), RequestType::Out);
        assert_eq!(hdr.sector(), 0x0102_0304_0506_0708);
        assert_eq!(hdr.reserved.get(), 0xddcc_bbaa);
        assert_eq!(hdr.as_bytes(), &bytes);
        assert_eq!(hdr.byte_offset(), None, "sector * 512 overflows u64");

        let built = BlkReqHeader::new(VIRTIO_BLK_T_IN, 2048);
        assert_eq!(
            built.as_bytes(),
            &[0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x08, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(built.byte_offset(), Some(1 << 20));
    }

    #[test]
    fn spec_5_2_6_req_header_is_read_from_a_chain_prefix() {
        let mut chain = [0u8; 16 + 512 + 1];
        chain[..16].copy_from_slice(BlkReqHeader::new(VIRTIO_BLK_T_FLUSH, 0).as_bytes());
        let (hdr, rest) = BlkReqHeader::read_from_prefix(&chain).expect("long enough");
        assert_eq!(hdr.request_type(), RequestType::Flush);
        assert_eq!(rest.len(), 513);
        assert!(BlkReqHeader::read_from_prefix(&chain[..15]).is_err());
    }

    #[test]
    fn sector_conversions_check_overflow() {
        assert_eq!(sector_to_bytes(1), Some(512));
        assert_eq!(sector_to_bytes(u64::MAX >> 9), Some((u64::MAX >> 9) << 9));
        assert_eq!(sector_to_bytes((u64::MAX >> 9) + 1), None);
        assert_eq!(bytes_to_sectors(1 << 30), 2 * 1024 * 1024);
        assert_eq!(bytes_to_sectors(1023), 1);
    }

    #[test]
    fn spec_5_2_6_discard_write_zeroes_seg_layout() {
        assert_eq!(size_of::<DiscardWriteZeroesSeg>(), 16);
        assert_eq!(offset_of!(DiscardWriteZeroesSeg, sector), 0);
        assert_eq!(offset_of!(DiscardWriteZeroesSeg, num_sectors), 8);
        assert_eq!(offset_of!(DiscardWriteZeroesSeg, flags), 12);
    }

    #[test]
    fn spec_5_2_6_discard_write_zeroes_seg_round_trips() {
        let bytes: [u8; 16] = [
            0x00, 0x01, 0, 0, 0, 0, 0, 0, // sector 256
            0x10, 0, 0, 0, // 16 sectors
            0x01, 0, 0, 0, // UNMAP
        ];
        let seg = DiscardWriteZeroesSeg::read_from_bytes(&bytes).expect("16 bytes");
        assert_eq!((seg.sector(), seg.num_sectors()), (256, 16));
        assert!(seg.unmap());
        assert!(!seg.has_reserved_flags());
        assert_eq!(seg.end_sector(), Some(272));
        assert_eq!(DiscardWriteZeroesSeg::new(256, 16, 1).as_bytes(), &bytes);

        let bad = DiscardWriteZeroesSeg::new(u64::MAX, 1, 2);
        assert!(bad.has_reserved_flags());
        assert!(!bad.unmap());
        assert_eq!(bad.end_sector(), None);
    }

    #[test]
    fn spec_5_2_6_segments_read_as_an_array() {
        let segs = [
            DiscardWriteZeroesSeg::new(0, 8, 0),
            DiscardWriteZeroesSeg::new(64, 8, 1),
        ];
        let bytes = segs.as_bytes();
        assert_eq!(bytes.len(), 32);
        let back = <[DiscardWriteZeroesSeg]>::ref_from_bytes(bytes).expect("multiple of 16");
        assert_eq!(back, &segs);
        assert!(<[DiscardWriteZeroesSeg]>::ref_from_bytes(&bytes[..20]).is_err());
    }

    #[test]
    fn spec_5_2_6_lifetime_layout() {
        assert_eq!(size_of::<BlkLifetime>(), 6);
        assert_eq!(offset_of!(BlkLifetime, pre_eol_info), 0);
        assert_eq!(offset_of!(BlkLifetime, device_lifetime_est_typ_a), 2);
        assert_eq!(offset_of!(BlkLifetime, device_lifetime_est_typ_b), 4);
    }

    #[test]
    fn spec_5_2_6_get_id_is_nul_padded_to_20_bytes() {
        let id = encode_blk_id(b"pvio-disk0");
        assert_eq!(&id[..10], b"pvio-disk0");
        assert!(id[10..].iter().all(|&b| b == 0));
        let long = encode_blk_id(b"0123456789abcdefghijKLMN");
        assert_eq!(&long, b"0123456789abcdefghij");
        assert_eq!(encode_blk_id(b""), [0; 20]);
    }
}
