//! pvio's paravirtual device backends: virtio-blk and virtio-net served over
//! vhost-user to QEMU, Cloud Hypervisor or crosvm, with the engines behind
//! them (image files and block devices, tap devices).
//!
//! This crate must not know about domains, config files, QEMU's device
//! model or PCI passthrough: it serves one device on one socket. It carries
//! no clients, drivers or harnesses (and no `blkio`): the benchmarks are in
//! `pvio-bench`, the no-VM net driver in `pvio-net-driver`, the fuzz body in
//! `pvio-testkit`. Everything here serves a guest.

pub mod blk;
pub mod inherit;
pub mod net;
pub mod sandbox;
pub mod vhost_user;
