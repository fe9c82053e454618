//! pvio's HVM runtime: it turns an xl-style domain config into a running
//! guest (QEMU as the device model, pvio's PV backends for PV disks and NICs,
//! VFIO for passed-through devices), supervises it and changes it while it
//! runs. It also builds the `pvio` command.
//!
//! This is the only crate that knows about domains and configs; it must not
//! reach into a backend's data path, nor read PCI devices, drivers and IOMMU
//! groups from sysfs itself (those belong to `pvio-backends` and
//! `pvio-passthrough`). Host facts that are not about PCI devices (CPU flags,
//! loaded modules, bridges, `/dev/kvm`) it reads directly.

pub mod assign;
pub mod cli;
pub mod config;
pub mod domain;
pub mod fd_passing;
pub mod host;
pub mod migrate;
pub mod plan;
pub mod qmp;
pub mod report;
