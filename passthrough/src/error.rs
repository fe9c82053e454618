//! Why a passthrough operation failed: one enum for the manager and the
//! steps it runs (claiming, binding, giving back), so that those steps
//! need not import the manager to report.

use crate::bdf::Bdf;
use crate::bind::BindError;
use crate::hostneeds::HostNeedsError;
use crate::inventory::InventoryError;
use crate::ownership::OwnershipError;
use crate::sysfs::SysfsError;
use crate::vfio::VfioError;
use crate::viability::Refusal;

/// A passthrough operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// Sysfs could not be read.
    #[error(transparent)]
    Sysfs(#[from] SysfsError),
    /// The inventory could not be read, or the device does not exist.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    /// Host needs could not be read.
    #[error(transparent)]
    HostNeeds(#[from] HostNeedsError),
    /// The record could not be used.
    #[error(transparent)]
    Ownership(#[from] OwnershipError),
    /// The device cannot be assigned.
    #[error("cannot take {bdf}: {}", join(refusals))]
    Refused {
        /// The device.
        bdf: Bdf,
        /// Why.
        refusals: Vec<Refusal>,
    },
    /// pvio did not prepare this device.
    #[error("pvio has no record of {bdf} (driver: {}): it was not prepared by pvio", driver.as_deref().unwrap_or("none"))]
    NotManaged {
        /// The device.
        bdf: Bdf,
        /// Its driver.
        driver: Option<String>,
    },
    /// A sysfs step failed; what was done is rolled back when possible.
    #[error("{}", failed_message(*bdf, *rolled_back))]
    Failed {
        /// The device.
        bdf: Bdf,
        /// Whether it is back where it was.
        rolled_back: bool,
        /// The step that failed.
        #[source]
        source: BindError,
    },
    /// The device is on vfio-pci but VFIO would not open its group.
    #[error("VFIO would not open the IOMMU group of {bdf}; {}", if *rolled_back { "it was given back to its driver".to_owned() } else { format!("giving it back failed: `pvio release {bdf}` finishes") })]
    Vfio {
        /// The device.
        bdf: Bdf,
        /// Whether it is back where it was.
        rolled_back: bool,
        /// What VFIO said.
        #[source]
        source: VfioError,
    },
    /// The hook that takes the device from its running owner failed.
    #[error("cannot take {bdf} from `{owner}` (nothing was changed on the host)")]
    Unplug {
        /// The device.
        bdf: Bdf,
        /// Its owner.
        owner: String,
        /// What the hook said (shared by the devices of one group).
        #[source]
        source: std::sync::Arc<dyn std::error::Error + Send + Sync>,
    },
}

fn join(refusals: &[Refusal]) -> String {
    let list: Vec<String> = refusals.iter().map(ToString::to_string).collect();
    list.join("; ")
}

fn failed_message(bdf: Bdf, rolled_back: bool) -> String {
    if rolled_back {
        format!("moving {bdf} failed and it was given back to its driver")
    } else {
        format!("moving {bdf} failed and it is left half-done: `pvio release {bdf}` finishes giving it back")
    }
}
