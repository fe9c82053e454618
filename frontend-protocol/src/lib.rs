//! The wire formats a guest driver speaks to pvio's PV backends.
//!
//! Virtio 1.2 split-ring structures, feature bits, virtio-blk and virtio-net
//! headers and config spaces, as `zerocopy` types whose sizes are checked at
//! compile time.
//!
//! This crate must not know about I/O, threads, sockets, guest memory
//! mappings, domains or configs: it is plain data shared by the backends, the
//! tests and the fuzz targets.
#![forbid(unsafe_code)]
