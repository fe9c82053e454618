//! PCI passthrough on the host side: the PCI inventory read from sysfs (with
//! names from the `pci-ids` database), IOMMU groups and their viability,
//! unbinding and binding through `driver_override`, the ownership record, and
//! VFIO container/group handling.
//!
//! This crate must not know about domains' configs, QEMU or QMP: an owner is
//! an opaque name given by the caller, and the sysfs root is a parameter so
//! that tests run over a fixture tree.

pub mod bdf;
pub mod bind;
mod claim;
pub mod edu;
pub mod error;
mod giveback;
pub mod host;
pub mod hostneeds;
pub mod inventory;
pub mod listing;
pub mod manager;
pub mod owner_lifecycle;
pub mod ownership;
pub mod sysfs;
pub mod vfio;
pub mod viability;
pub mod write;

#[cfg(any(test, feature = "fixture"))]
#[allow(dead_code)] // a test kit: not every test uses every helper
pub mod fixture;

pub use bdf::{Bdf, BdfError};
pub use bind::{BindError, Binder, Prepared, Step};
pub use host::Host;
pub use hostneeds::{HostNeeds, HostNeedsError};
pub use inventory::{Inventory, InventoryError, PciDevice};
pub use listing::{DeviceStatus, State};
pub use manager::{HookError, Manager, ManagerError, Outcome};
pub use owner_lifecycle::{GivenBack, Returned};
pub use ownership::{Ownership, OwnershipError, Record};
pub use sysfs::{Sysfs, SysfsError};
pub use vfio::{DmaBuffer, VfioError, VfioHandle};
pub use viability::{Assessment, Options, Refusal};
pub use write::{SysfsWriter, WriteError};
