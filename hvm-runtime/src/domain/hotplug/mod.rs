//! Changing a running domain, done inside its supervisor (where the PV
//! backends live): PV disks hot-plugged as `vhost-user-blk-pci` and
//! unplugged after the guest lets go (`DEVICE_DELETED`), CD-ROM media
//! changed, NICs hot-plugged (PV through the net backend, emulated through
//! a tap `netdev`) and unplugged.
//!
//! | file | role |
//! | --- | --- |
//! | `block.rs` | `block-attach`, `block-detach` |
//! | `cdrom.rs` | `cd-insert`, `cd-eject` |
//! | `net.rs` | `network-attach`, `network-detach` |
//! | `pci.rs` | `vfio-pci` hot-plug for `pvio assign` / `pvio release` |
//! | `chardev.rs` | the vhost-user socket chardev a PV device connects through |
//! | `device.rs` | `device_add`, behind a free spare PCIe root port on q35 |
//!
//! Every device, chardev and netdev sent here is built by the constructor
//! the plan uses for the command line (`plan::qdev`), so a device
//! hot-plugged has the properties it would have had at start; hot-plug
//! adds only where it goes (`device.rs`). QEMU device ids follow the plan:
//! a disk's is its vdev (`xvdb`), its chardev `chr-xvdb`; NIC `N` is
//! device `nicN` on netdev `netN` (chardev `chr-netN` when PV).

pub mod block;
pub mod cdrom;
mod chardev;
mod device;
pub mod net;
pub mod pci;

use std::path::PathBuf;
use std::time::Duration;

use crate::domain::DomainError;
use crate::qmp::QmpError;

/// How long the guest may take to let go of a device on `device_del`.
pub const UNPLUG_TIMEOUT: Duration = Duration::from_secs(60);

/// Errors of hot-plug, one line each with what to do next.
#[derive(Debug, thiserror::Error)]
pub enum HotplugError {
    /// The disk or vif spec is wrong.
    #[error("'{spec}': {message}")]
    BadSpec {
        /// The spec as typed.
        spec: String,
        /// Why.
        message: String,
    },
    /// The device name is taken.
    #[error("{vdev} is already in use in this domain ({by}); choose another device name")]
    InUse {
        /// The device name.
        vdev: String,
        /// What uses it.
        by: String,
    },
    /// The device cannot be hot-plugged or unplugged.
    #[error("{vdev}: {why}")]
    NotHotpluggable {
        /// The device name.
        vdev: String,
        /// Why, and what to do instead.
        why: String,
    },
    /// No such disk.
    #[error("this domain has no disk {0}; `pvio block-list` shows its disks")]
    NoSuchDisk(String),
    /// No such NIC.
    #[error("this domain has no NIC {0}; `pvio network-list` shows its NICs")]
    NoSuchNic(String),
    /// No such passed-through device.
    #[error("this domain has no passed-through PCI device {0}")]
    NoSuchPci(String),
    /// An image or ISO cannot be used: it does not exist, is a directory,
    /// a FIFO, ... ([`crate::host::media::unusable`]), or cannot be opened.
    #[error("{} {what}", .path.display())]
    Unusable {
        /// The path as resolved.
        path: PathBuf,
        /// What it is, or why it cannot be opened.
        what: String,
    },
    /// The guest did not release a device.
    #[error("the guest did not release {vdev} within {after:?} (it needs ACPI PCI hot-plug; is the device still in use in the guest?)")]
    UnplugTimeout {
        /// The device.
        vdev: String,
        /// How long pvio waited.
        after: Duration,
    },
    /// The ownership record does not give the device to this domain.
    #[error("{0} is not assigned to this domain; `pvio assign {0} DOMAIN` gives it first")]
    NotOwned(String),
    /// The tap's queue could not be opened for QEMU.
    #[error(transparent)]
    Tap(#[from] pvio_backends::net::tap::TapError),
    /// The tap gave no queue.
    #[error("tap {0} gave no queue")]
    NoQueue(String),
    /// A backend, tap or record step failed.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// QEMU refused or QMP failed.
    #[error(transparent)]
    Qmp(#[from] QmpError),
}

/// A local `Result`.
pub type Result<T> = std::result::Result<T, HotplugError>;
