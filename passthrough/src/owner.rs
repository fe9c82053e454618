//! What an owner (to the runtime: a domain) needs at its start and its end:
//! whether a device recorded for it can be handed to the device model as
//! it is, and giving back every device it owns, whatever state each is in.
//!
//! Owners stay opaque names here; which devices to give back (all, or only
//! those a failed start took) is the caller's choice.

use crate::bdf::Bdf;
use crate::inventory::InventoryError;
use crate::manager::{Manager, ManagerError};
use crate::ownership::{Operation, Progress};
use crate::sysfs::Sysfs;
use crate::viability::Refusal;

/// What giving back one device did.
#[derive(Debug)]
pub struct GivenBack {
    /// The device.
    pub bdf: Bdf,
    /// The driver it went back to (`None`: none, or unknown), or the error
    /// that left it where it is (`pvio release` finishes then).
    pub result: Result<Option<String>, ManagerError>,
}

impl Manager {
    /// Checks that `bdf`, recorded for `owner`, can be handed to the device
    /// model now: the IOMMU is on, the record is a finished preparation for
    /// `owner`, the device is on vfio-pci and its `/dev/vfio/<group>` exists.
    pub fn check_ready(&self, bdf: Bdf, owner: &str) -> Result<(), ManagerError> {
        let refuse = |refusal| {
            Err(ManagerError::Refused {
                bdf,
                refusals: vec![refusal],
            })
        };
        let sys = &self.host().sys;
        if !sys.iommu_enabled()? {
            return refuse(Refusal::NoIommu);
        }
        if !sys.exists(bdf) {
            return Err(InventoryError::NotFound(bdf).into());
        }
        let records = self.ownership().load()?;
        let Some(r) = records.devices.get(&bdf) else {
            return Err(ManagerError::NotManaged {
                bdf,
                driver: sys.driver(bdf)?,
            });
        };
        match (r.progress(), r.operation, r.owner.as_deref()) {
            (Progress::Done, Operation::Prepare, Some(o)) if o == owner => {}
            (Progress::Done, Operation::Prepare, Some(o)) => {
                return refuse(Refusal::Owned {
                    owner: o.to_owned(),
                })
            }
            (Progress::Running, _, _) => return refuse(Refusal::InProgress { what: r.describe() }),
            _ => return refuse(Refusal::HalfDone { what: r.describe() }),
        }
        let driver = sys.driver(bdf)?;
        let group = sys.iommu_group(bdf)?;
        let dev_ok = group.is_some_and(|g| self.host().vfio_group_dev(g).exists());
        if driver.as_deref() != Some(Sysfs::VFIO_PCI) || !dev_ok {
            return refuse(Refusal::HalfDone {
                what: format!(
                    "it is recorded as prepared but is on {} {}",
                    driver.as_deref().unwrap_or("no driver"),
                    group.map_or_else(
                        || "with no IOMMU group".to_owned(),
                        |g| format!("and /dev/vfio/{g} is missing"),
                    )
                ),
            });
        }
        Ok(())
    }

    /// Gives back every device recorded for `owner` (with `only`, just
    /// those of `only` among them): each goes back to the driver it had
    /// and its record is dropped; members taken along with a device go
    /// with it. One device that fails does not stop the others. Nothing is
    /// hot-unplugged: the owner's device model must be gone.
    pub fn release_owner(&self, owner: &str, only: Option<&[Bdf]>) -> Vec<GivenBack> {
        let records = match self.owned_by(owner) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("cannot read the devices of `{owner}`: {e}");
                return Vec::new();
            }
        };
        records
            .iter()
            // Members taken along go back with their primary device.
            .filter(|r| {
                r.group_of
                    .is_none_or(|p| !records.iter().any(|x| x.bdf == p))
            })
            .filter(|r| only.is_none_or(|o| o.contains(&r.bdf)))
            .map(|r| GivenBack {
                bdf: r.bdf,
                result: self
                    .release(r.bdf, &mut |_| Ok(()))
                    .map(|()| self.host().sys.driver(r.bdf).ok().flatten()),
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "owner_tests.rs"]
mod tests;
