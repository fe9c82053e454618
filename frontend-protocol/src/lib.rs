//! The wire formats a guest driver speaks to pvio's PV backends.
//!
//! Virtio 1.2 split-ring structures, feature bits, virtio-blk and virtio-net
//! headers and config spaces, as `zerocopy` types whose sizes are checked at
//! compile time.
//!
//! This crate must not know about I/O, threads, sockets, guest memory
//! mappings, domains or configs: it is plain data shared by the backends, the
//! tests and the fuzz targets.
//!
//! # What is where
//!
//! - [`ring`]: the split virtqueue (virtio 1.2 §2.7): [`ring::VirtqDesc`],
//!   ring headers and elements, ring sizes and offsets, and the event-index
//!   notification rule [`ring::vring_need_event`].
//! - [`features`]: device-independent feature bits (virtio 1.2 §6) as `u64`
//!   masks, and [`features::feature_names`] for logs.
//! - [`blk`]: virtio-blk (virtio 1.2 §5.2): feature bits, the request header,
//!   types and status, discard / write-zeroes segments, the config space.
//! - [`net`]: virtio-net (virtio 1.2 §5.1): feature bits, the packet header,
//!   the config space, the control queue.
//! - [`ids`]: device IDs (virtio 1.2 §5).
//! - [`config_space`]: bounds-checked windows into a config space, for
//!   vhost-user `GET_CONFIG` / `SET_CONFIG`.
//!
//! # Conventions
//!
//! Every wire struct is `#[repr(C)]`, derives `zerocopy`'s `FromBytes`,
//! `IntoBytes`, `Immutable`, `KnownLayout` and `Unaligned`, and stores its
//! multi-byte fields as little-endian [`zerocopy::little_endian`] integers
//! (the spec's `le16` / `le32` / `le64`, virtio 1.2 §1.4). All of them have alignment
//! 1 and no padding, so they can be read from any offset of guest memory or a
//! byte buffer:
//!
//! ```
//! use pvio_frontend_protocol::blk::{BlkReqHeader, RequestType};
//! use pvio_frontend_protocol::zerocopy::FromBytes;
//! let bytes = [1, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0];
//! let (hdr, _rest) = BlkReqHeader::read_from_prefix(&bytes).unwrap();
//! assert_eq!(hdr.request_type(), RequestType::Out);
//! assert_eq!(hdr.sector(), 8);
//! ```
//!
//! Feature constants are masks (`1 << bit`), not bit numbers. Tests are named
//! after the spec section they check.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod blk;
pub mod config_space;
pub mod features;
pub mod ids;
pub mod net;
pub mod ring;

pub use ids::{VIRTIO_ID_BLOCK, VIRTIO_ID_NET};
/// The `zerocopy` this crate's types implement, so users call
/// `FromBytes::read_from_prefix` and friends with the same version.
pub use zerocopy;
