//! The split virtqueue in guest memory (virtio 1.2 §2.7).
//!
//! A split virtqueue is three areas the driver allocates in guest RAM:
//!
//! | area | alignment | size in bytes |
//! | --- | --- | --- |
//! | descriptor table | 16 | `16 * queue_size` |
//! | available ring | 2 | `6 + 2 * queue_size` |
//! | used ring | 4 | `6 + 8 * queue_size` |
//!
//! The rings are a 4-byte header ([`VirtqAvailHeader`], [`VirtqUsedHeader`]),
//! then `queue_size` elements, then one trailing `le16` (`used_event` after
//! the available ring, `avail_event` after the used ring) that only has a
//! meaning when `VIRTIO_F_EVENT_IDX` is negotiated. Rust cannot express a
//! header followed by a runtime-sized array followed by a trailer as one type,
//! so this module gives the fixed parts as types and the rest as byte offsets
//! from the start of each area.
//!
//! All fields are little-endian (the spec's `le16` / `le32` / `le64`, virtio
//! 1.2 §1.4) and every type has alignment 1, so a value can be read from any
//! byte buffer with [`zerocopy::FromBytes`].

use core::mem::size_of;

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

// The layout arithmetic below multiplies a `u16` by at most 16 and adds a few
// bytes: that never overflows a `usize` of 32 bits or more.
const _: () = assert!(usize::BITS >= 32);

/// The largest queue size a split virtqueue may have (virtio 1.2 §2.7:
/// "The maximum Queue Size value is 32768").
pub const MAX_QUEUE_SIZE: u16 = 32768;

/// Required alignment of the descriptor table in guest memory (virtio 1.2 §2.7).
pub const DESC_ALIGN: usize = 16;
/// Required alignment of the available ring in guest memory (virtio 1.2 §2.7).
pub const AVAIL_ALIGN: usize = 2;
/// Required alignment of the used ring in guest memory (virtio 1.2 §2.7).
pub const USED_ALIGN: usize = 4;

/// Descriptor flag: the buffer continues in the descriptor named by `next`
/// (virtio 1.2 §2.7.5).
pub const VIRTQ_DESC_F_NEXT: u16 = 1;
/// Descriptor flag: the buffer is device write-only; otherwise it is device
/// read-only (virtio 1.2 §2.7.5).
pub const VIRTQ_DESC_F_WRITE: u16 = 2;
/// Descriptor flag: the buffer holds a table of indirect descriptors
/// (virtio 1.2 §2.7.5.3; needs `VIRTIO_F_INDIRECT_DESC`).
pub const VIRTQ_DESC_F_INDIRECT: u16 = 4;

/// Available-ring flag: the driver asks the device not to interrupt it when
/// it consumes a buffer (virtio 1.2 §2.7.7; ignored with `VIRTIO_F_EVENT_IDX`).
pub const VIRTQ_AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Used-ring flag: the device asks the driver not to notify (kick) it when it
/// adds a buffer (virtio 1.2 §2.7.10; ignored with `VIRTIO_F_EVENT_IDX`).
pub const VIRTQ_USED_F_NO_NOTIFY: u16 = 1;

/// Size in bytes of one descriptor table entry (virtio 1.2 §2.7.5).
pub const VIRTQ_DESC_SIZE: usize = 16;
/// Size in bytes of the available ring header, `flags` and `idx`
/// (virtio 1.2 §2.7.6).
pub const VIRTQ_AVAIL_HEADER_SIZE: usize = 4;
/// Size in bytes of one available ring element, a descriptor head index
/// (virtio 1.2 §2.7.6).
pub const VIRTQ_AVAIL_ELEM_SIZE: usize = 2;
/// Size in bytes of the used ring header, `flags` and `idx` (virtio 1.2 §2.7.8).
pub const VIRTQ_USED_HEADER_SIZE: usize = 4;
/// Size in bytes of one used ring element, [`VirtqUsedElem`] (virtio 1.2 §2.7.8).
pub const VIRTQ_USED_ELEM_SIZE: usize = 8;
/// Size in bytes of the `used_event` / `avail_event` trailer (virtio 1.2 §2.7.6,
/// §2.7.8).
pub const VIRTQ_EVENT_SIZE: usize = 2;

/// One entry of the descriptor table (virtio 1.2 §2.7.5, `struct virtq_desc`).
///
/// Describes one guest-physical buffer. The table holds `queue_size` of them;
/// an indirect table (§2.7.5.3) holds `len / 16` of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct VirtqDesc {
    /// Guest-physical address of the buffer.
    pub addr: U64,
    /// Length of the buffer in bytes.
    pub len: U32,
    /// `VIRTQ_DESC_F_*` bits.
    pub flags: U16,
    /// Index of the next descriptor of the chain, valid with
    /// [`VIRTQ_DESC_F_NEXT`].
    pub next: U16,
}
const _: () = assert!(size_of::<VirtqDesc>() == VIRTQ_DESC_SIZE);

impl VirtqDesc {
    /// A descriptor with the given fields, stored little-endian.
    #[must_use]
    pub const fn new(addr: u64, len: u32, flags: u16, next: u16) -> Self {
        Self {
            addr: U64::new(addr),
            len: U32::new(len),
            flags: U16::new(flags),
            next: U16::new(next),
        }
    }

    /// Guest-physical address of the buffer.
    #[must_use]
    pub const fn addr(&self) -> u64 {
        self.addr.get()
    }

    /// Length of the buffer in bytes.
    #[must_use]
    pub const fn len(&self) -> u32 {
        self.len.get()
    }

    /// Whether the buffer is zero bytes long.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len.get() == 0
    }

    /// The `VIRTQ_DESC_F_*` bits.
    #[must_use]
    pub const fn flags(&self) -> u16 {
        self.flags.get()
    }

    /// Index of the next descriptor; meaningful only if [`Self::has_next`].
    #[must_use]
    pub const fn next(&self) -> u16 {
        self.next.get()
    }

    /// Whether the chain continues at [`Self::next`] ([`VIRTQ_DESC_F_NEXT`]).
    #[must_use]
    pub const fn has_next(&self) -> bool {
        self.flags() & VIRTQ_DESC_F_NEXT != 0
    }

    /// Whether the device may write the buffer ([`VIRTQ_DESC_F_WRITE`]);
    /// otherwise the device may only read it.
    #[must_use]
    pub const fn is_write_only(&self) -> bool {
        self.flags() & VIRTQ_DESC_F_WRITE != 0
    }

    /// Whether the buffer is a table of indirect descriptors
    /// ([`VIRTQ_DESC_F_INDIRECT`], virtio 1.2 §2.7.5.3).
    #[must_use]
    pub const fn is_indirect(&self) -> bool {
        self.flags() & VIRTQ_DESC_F_INDIRECT != 0
    }
}

/// The fixed start of the available ring (virtio 1.2 §2.7.6, `struct
/// virtq_avail` without its arrays).
///
/// In guest memory it is followed by `ring[queue_size]` (`le16` descriptor
/// head indexes, see [`avail_ring_elem_offset`]) and then `used_event`
/// (`le16`, see [`used_event_offset`]). Written by the driver only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct VirtqAvailHeader {
    /// `VIRTQ_AVAIL_F_*` bits.
    pub flags: U16,
    /// Where the driver will put the next descriptor head, modulo the queue
    /// size; free-running and wrapping at 2^16.
    pub idx: U16,
}
const _: () = assert!(size_of::<VirtqAvailHeader>() == VIRTQ_AVAIL_HEADER_SIZE);

impl VirtqAvailHeader {
    /// A header with the given fields, stored little-endian.
    #[must_use]
    pub const fn new(flags: u16, idx: u16) -> Self {
        Self {
            flags: U16::new(flags),
            idx: U16::new(idx),
        }
    }

    /// The `VIRTQ_AVAIL_F_*` bits.
    #[must_use]
    pub const fn flags(&self) -> u16 {
        self.flags.get()
    }

    /// The driver's free-running available index.
    #[must_use]
    pub const fn idx(&self) -> u16 {
        self.idx.get()
    }
}

/// One element of the used ring (virtio 1.2 §2.7.8, `struct virtq_used_elem`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct VirtqUsedElem {
    /// Index of the head descriptor of the used chain. `le32` for padding
    /// reasons, although descriptor indexes fit 16 bits.
    pub id: U32,
    /// Bytes the device wrote into the chain's write-only buffers
    /// (virtio 1.2 §2.7.8.2).
    pub len: U32,
}
const _: () = assert!(size_of::<VirtqUsedElem>() == VIRTQ_USED_ELEM_SIZE);

impl VirtqUsedElem {
    /// An element with the given fields, stored little-endian.
    #[must_use]
    pub const fn new(id: u32, len: u32) -> Self {
        Self {
            id: U32::new(id),
            len: U32::new(len),
        }
    }

    /// Head descriptor index of the used chain.
    #[must_use]
    pub const fn id(&self) -> u32 {
        self.id.get()
    }

    /// Bytes written by the device.
    #[must_use]
    pub const fn len(&self) -> u32 {
        self.len.get()
    }

    /// Whether the device wrote nothing.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len.get() == 0
    }
}

/// The fixed start of the used ring (virtio 1.2 §2.7.8, `struct virtq_used`
/// without its arrays).
///
/// In guest memory it is followed by `ring[queue_size]` of [`VirtqUsedElem`]
/// (see [`used_ring_elem_offset`]) and then `avail_event` (`le16`, see
/// [`avail_event_offset`]). Written by the device only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct VirtqUsedHeader {
    /// `VIRTQ_USED_F_*` bits.
    pub flags: U16,
    /// Where the device will put the next used element, modulo the queue
    /// size; free-running and wrapping at 2^16.
    pub idx: U16,
}
const _: () = assert!(size_of::<VirtqUsedHeader>() == VIRTQ_USED_HEADER_SIZE);

impl VirtqUsedHeader {
    /// A header with the given fields, stored little-endian.
    #[must_use]
    pub const fn new(flags: u16, idx: u16) -> Self {
        Self {
            flags: U16::new(flags),
            idx: U16::new(idx),
        }
    }

    /// The `VIRTQ_USED_F_*` bits.
    #[must_use]
    pub const fn flags(&self) -> u16 {
        self.flags.get()
    }

    /// The device's free-running used index.
    #[must_use]
    pub const fn idx(&self) -> u16 {
        self.idx.get()
    }
}

/// Whether `n` is a valid split-virtqueue size: a power of two from 1 to
/// [`MAX_QUEUE_SIZE`] (virtio 1.2 §2.7).
#[must_use]
pub const fn is_valid_queue_size(n: u16) -> bool {
    n.is_power_of_two() && n <= MAX_QUEUE_SIZE
}

/// The ring slot a free-running index refers to: `idx % queue_size`
/// (virtio 1.2 §2.7.6, §2.7.8). Returns 0 for a queue size of 0 instead of
/// panicking, since the size may come from a guest.
#[must_use]
pub const fn ring_slot(idx: u16, queue_size: u16) -> u16 {
    match idx.checked_rem(queue_size) {
        Some(slot) => slot,
        None => 0,
    }
}

/// Size in bytes of the descriptor table: `16 * queue_size` (virtio 1.2 §2.7).
#[must_use]
pub const fn desc_table_size(queue_size: u16) -> usize {
    // Lossless: u16 -> usize (usize has at least 32 bits, checked above).
    VIRTQ_DESC_SIZE * (queue_size as usize)
}

/// Size in bytes of the available ring (virtio 1.2 §2.7).
///
/// With `event_idx` it is the spec's `6 + 2 * queue_size`, which includes the
/// trailing `used_event`; that is the size a driver allocates and the size to
/// map. Without it, `4 + 2 * queue_size`: the bytes a device reads when
/// `VIRTIO_F_EVENT_IDX` was not negotiated.
#[must_use]
pub const fn avail_ring_size(queue_size: u16, event_idx: bool) -> usize {
    used_event_offset(queue_size) + if event_idx { VIRTQ_EVENT_SIZE } else { 0 }
}

/// Size in bytes of the used ring (virtio 1.2 §2.7).
///
/// With `event_idx` it is the spec's `6 + 8 * queue_size`, which includes the
/// trailing `avail_event`; without it, `4 + 8 * queue_size`.
#[must_use]
pub const fn used_ring_size(queue_size: u16, event_idx: bool) -> usize {
    avail_event_offset(queue_size) + if event_idx { VIRTQ_EVENT_SIZE } else { 0 }
}

/// Offset of `ring[i]` from the start of the available ring (virtio 1.2 §2.7.6).
#[must_use]
pub const fn avail_ring_elem_offset(i: u16) -> usize {
    // Lossless: u16 -> usize.
    VIRTQ_AVAIL_HEADER_SIZE + VIRTQ_AVAIL_ELEM_SIZE * (i as usize)
}

/// Offset of `used_event` from the start of the available ring: right after
/// `ring[queue_size]` (virtio 1.2 §2.7.6, §2.7.7).
#[must_use]
pub const fn used_event_offset(queue_size: u16) -> usize {
    avail_ring_elem_offset(queue_size)
}

/// Offset of `ring[i]` from the start of the used ring (virtio 1.2 §2.7.8).
#[must_use]
pub const fn used_ring_elem_offset(i: u16) -> usize {
    // Lossless: u16 -> usize.
    VIRTQ_USED_HEADER_SIZE + VIRTQ_USED_ELEM_SIZE * (i as usize)
}

/// Offset of `avail_event` from the start of the used ring: right after
/// `ring[queue_size]` (virtio 1.2 §2.7.8, §2.7.10).
#[must_use]
pub const fn avail_event_offset(queue_size: u16) -> usize {
    used_ring_elem_offset(queue_size)
}

/// The event-index notification rule (virtio 1.2 §2.7.7.2 for used buffer
/// notifications, §2.7.10 for available buffer notifications).
///
/// The index moved from `old_idx` to `new_idx` since the last notification
/// check; the other side asked to be notified once the index passes
/// `event_idx`. Returns whether it has now passed it, that is whether
/// `event_idx` lies in `[old_idx, new_idx)`, computed with wrapping `u16`
/// arithmetic as `(new - event - 1) < (new - old)`.
///
/// A device calls it with `used_event` and its used index before and after
/// adding buffers; a driver with `avail_event` and its available index.
#[must_use]
pub const fn vring_need_event(event_idx: u16, new_idx: u16, old_idx: u16) -> bool {
    new_idx.wrapping_sub(event_idx).wrapping_sub(1) < new_idx.wrapping_sub(old_idx)
}

#[cfg(test)]
mod tests {
    use core::mem::offset_of;

    use super::*;

    #[test]
    fn spec_2_7_5_virtq_desc_layout() {
        assert_eq!(size_of::<VirtqDesc>(), 16);
        assert_eq!(offset_of!(VirtqDesc, addr), 0);
        assert_eq!(offset_of!(VirtqDesc, len), 8);
        assert_eq!(offset_of!(VirtqDesc, flags), 12);
        assert_eq!(offset_of!(VirtqDesc, next), 14);
        assert_eq!(core::mem::align_of::<VirtqDesc>(), 1);
    }

    #[test]
    fn spec_2_7_5_desc_flag_values() {
        assert_eq!(VIRTQ_DESC_F_NEXT, 1);
        assert_eq!(VIRTQ_DESC_F_WRITE, 2);
        assert_eq!(VIRTQ_DESC_F_INDIRECT, 4);
    }

    #[test]
    fn spec_2_7_6_and_2_7_8_ring_flag_values() {
        assert_eq!(VIRTQ_AVAIL_F_NO_INTERRUPT, 1);
        assert_eq!(VIRTQ_USED_F_NO_NOTIFY, 1);
    }

    #[test]
    fn spec_2_7_6_avail_header_layout() {
        assert_eq!(size_of::<VirtqAvailHeader>(), 4);
        assert_eq!(offset_of!(VirtqAvailHeader, flags), 0);
        assert_eq!(offset_of!(VirtqAvailHeader, idx), 2);
    }

    #[test]
    fn spec_2_7_8_used_layout() {
        assert_eq!(size_of::<VirtqUsedHeader>(), 4);
        assert_eq!(offset_of!(VirtqUsedHeader, flags), 0);
        assert_eq!(offset_of!(VirtqUsedHeader, idx), 2);
        assert_eq!(size_of::<VirtqUsedElem>(), 8);
        assert_eq!(offset_of!(VirtqUsedElem, id), 0);
        assert_eq!(offset_of!(VirtqUsedElem, len), 4);
    }

    #[test]
    fn spec_2_7_5_desc_decodes_little_endian_bytes() {
        let bytes: [u8; 16] = [
            0x00, 0x10, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, // addr 0x1_0000_1000
            0x00, 0x02, 0x00, 0x00, // len 512
            0x03, 0x00, // NEXT | WRITE
            0x07, 0x00, // next 7
        ];
        let desc = VirtqDesc::read_from_bytes(&bytes).expect("16 bytes");
        assert_eq!(desc.addr(), 0x1_0000_1000);
        assert_eq!(desc.len(), 512);
        assert_eq!(desc.flags(), 3);
        assert_eq!(desc.next(), 7);
        assert!(desc.has_next());
        assert!(desc.is_write_only());
        assert!(!desc.is_indirect());
        assert!(!desc.is_empty());
        assert_eq!(desc.as_bytes(), &bytes);
        assert_eq!(
            VirtqDesc::new(0x1_0000_1000, 512, 3, 7),
            desc,
            "new() builds the same bytes"
        );
    }

    #[test]
    fn spec_2_7_5_3_indirect_flag_reads_back() {
        let desc = VirtqDesc::new(0x2000, 48, VIRTQ_DESC_F_INDIRECT, 0);
        assert!(desc.is_indirect());
        assert!(!desc.has_next());
        assert!(!desc.is_write_only());
    }

    #[test]
    fn spec_2_7_8_used_elem_round_trips() {
        let elem = VirtqUsedElem::new(5, 4097);
        assert_eq!(elem.as_bytes(), &[5, 0, 0, 0, 0x01, 0x10, 0, 0]);
        let back = VirtqUsedElem::read_from_bytes(elem.as_bytes()).expect("8 bytes");
        assert_eq!((back.id(), back.len()), (5, 4097));
        assert!(VirtqUsedElem::new(1, 0).is_empty());
        let hdr = VirtqUsedHeader::new(VIRTQ_USED_F_NO_NOTIFY, 0xfffe);
        assert_eq!(hdr.as_bytes(), &[1, 0, 0xfe, 0xff]);
        assert_eq!((hdr.flags(), hdr.idx()), (1, 0xfffe));
    }

    #[test]
    fn spec_2_7_6_avail_header_decodes_from_a_prefix() {
        // Header followed by ring[0] = 3: the header is read from the prefix.
        let bytes = [0x01, 0x00, 0x2a, 0x00, 0x03, 0x00];
        let (hdr, rest) = VirtqAvailHeader::read_from_prefix(&bytes).expect("4 bytes");
        assert_eq!(hdr.flags(), VIRTQ_AVAIL_F_NO_INTERRUPT);
        assert_eq!(hdr.idx(), 42);
        assert_eq!(rest, &[3, 0]);
        assert_eq!(VirtqAvailHeader::new(1, 42).as_bytes(), &bytes[..4]);
    }

    #[test]
    fn spec_2_7_alignment_requirements() {
        assert_eq!(DESC_ALIGN, 16);
        assert_eq!(AVAIL_ALIGN, 2);
        assert_eq!(USED_ALIGN, 4);
    }

    #[test]
    fn spec_2_7_queue_size_is_a_power_of_two_up_to_32768() {
        assert_eq!(MAX_QUEUE_SIZE, 32768);
        for n in [1, 2, 4, 128, 256, 1024, 32768] {
            assert!(is_valid_queue_size(n), "{n}");
        }
        for n in [0, 3, 255, 257, 32767, 32769, 65535] {
            assert!(!is_valid_queue_size(n), "{n}");
        }
    }

    #[test]
    fn spec_2_7_ring_sizes_for_queue_size_1() {
        assert_eq!(desc_table_size(1), 16);
        assert_eq!(avail_ring_size(1, true), 8);
        assert_eq!(avail_ring_size(1, false), 6);
        assert_eq!(used_ring_size(1, true), 14);
        assert_eq!(used_ring_size(1, false), 12);
        assert_eq!(used_event_offset(1), 6);
        assert_eq!(avail_event_offset(1), 12);
    }

    #[test]
    fn spec_2_7_ring_sizes_for_queue_size_256() {
        assert_eq!(desc_table_size(256), 4096);
        assert_eq!(avail_ring_size(256, true), 6 + 2 * 256);
        assert_eq!(avail_ring_size(256, false), 4 + 2 * 256);
        assert_eq!(used_ring_size(256, true), 6 + 8 * 256);
        assert_eq!(used_ring_size(256, false), 4 + 8 * 256);
        assert_eq!(avail_ring_elem_offset(255), 4 + 2 * 255);
        assert_eq!(used_ring_elem_offset(255), 4 + 8 * 255);
        assert_eq!(used_event_offset(256), 516);
        assert_eq!(avail_event_offset(256), 2052);
    }

    #[test]
    fn spec_2_7_ring_sizes_for_queue_size_32768() {
        assert_eq!(desc_table_size(MAX_QUEUE_SIZE), 524_288);
        assert_eq!(avail_ring_size(MAX_QUEUE_SIZE, true), 65_542);
        assert_eq!(avail_ring_size(MAX_QUEUE_SIZE, false), 65_540);
        assert_eq!(used_ring_size(MAX_QUEUE_SIZE, true), 262_150);
        assert_eq!(used_ring_size(MAX_QUEUE_SIZE, false), 262_148);
        assert_eq!(used_event_offset(MAX_QUEUE_SIZE), 65_540);
        assert_eq!(avail_event_offset(MAX_QUEUE_SIZE), 262_148);
        // The largest u16 does not overflow either.
        assert_eq!(desc_table_size(u16::MAX), 16 * 65_535);
    }

    #[test]
    fn spec_2_7_8_used_elements_stay_4_byte_aligned() {
        for i in [0, 1, 2, 255, 32767] {
            assert_eq!(used_ring_elem_offset(i) % USED_ALIGN, 0, "{i}");
        }
    }

    #[test]
    fn spec_2_7_6_ring_slot_wraps_modulo_queue_size() {
        assert_eq!(ring_slot(0, 256), 0);
        assert_eq!(ring_slot(257, 256), 1);
        assert_eq!(ring_slot(u16::MAX, 256), 255);
        assert_eq!(ring_slot(u16::MAX, 1), 0);
        assert_eq!(ring_slot(5, 0), 0, "a zero queue size must not panic");
    }

    #[test]
    fn spec_2_7_7_2_notifies_when_new_idx_passes_used_event() {
        // The driver wants an interrupt once used entry 0 is written.
        assert!(vring_need_event(0, 1, 0));
        // used_event = 5: moving 0 -> 5 does not pass entry 5, 0 -> 6 does.
        assert!(!vring_need_event(5, 5, 0));
        assert!(vring_need_event(5, 6, 0));
        // event equal to the old index is passed by any progress.
        assert!(vring_need_event(10, 11, 10));
        // event already behind the old index: notified before, not again.
        assert!(!vring_need_event(9, 11, 10));
    }

    #[test]
    fn spec_2_7_7_2_no_progress_never_notifies() {
        for event in [0, 1, 0x7fff, 0x8000, u16::MAX] {
            for idx in [0, 1, 0x8000, u16::MAX] {
                assert!(
                    !vring_need_event(event, idx, idx),
                    "event {event} idx {idx}"
                );
            }
        }
    }

    #[test]
    fn spec_2_7_7_2_wraps_around_u16() {
        // Index moves 65534 -> 2 (four entries: 65534, 65535, 0, 1).
        assert!(vring_need_event(65534, 2, 65534));
        assert!(vring_need_event(65535, 2, 65534));
        assert!(vring_need_event(0, 2, 65534));
        assert!(vring_need_event(1, 2, 65534));
        assert!(!vring_need_event(2, 2, 65534), "entry 2 is not written yet");
        assert!(!vring_need_event(65533, 2, 65534), "passed before old_idx");
    }

    #[test]
    fn spec_2_7_10_driver_side_uses_the_same_rule() {
        // avail_event = 100: the device wants a kick once entry 100 is made
        // available. The driver moved avail idx 90 -> 101.
        assert!(vring_need_event(100, 101, 90));
        assert!(!vring_need_event(100, 100, 90));
        // A full 2^16 - 1 step still reports events inside it.
        assert!(vring_need_event(0, u16::MAX, 0));
    }
}
