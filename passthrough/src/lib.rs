//! PCI passthrough on the host side: the PCI inventory read from sysfs (with
//! names from the `pci-ids` database), IOMMU groups and their viability,
//! unbinding and binding through `driver_override`, the ownership record, and
//! VFIO container/group handling.
//!
//! This crate must not know about domains' configs, QEMU or QMP: an owner is
//! an opaque name given by the caller, and the sysfs root is a parameter so
//! that tests run over a fixture tree.
