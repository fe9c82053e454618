//! pvio's paravirtual device backends: virtio-blk and virtio-net served over
//! vhost-user to QEMU, Cloud Hypervisor or crosvm, with the engines behind
//! them (image files and block devices, tap devices).
//!
//! This crate must not know about domains, config files, QEMU's device
//! model or PCI passthrough: it serves one device on one socket. (The block
//! benchmark in `blk::bench` is the one place that starts a program of
//! QEMU's, `qemu-storage-daemon`, as the peer it measures against.)

pub mod blk;
pub mod inherit;
pub mod net;
pub mod sandbox;
pub mod vhost_user;
