//! What an owner (to the runtime: a domain) needs at its start and its end:
//! whether a device recorded for it can be handed to the device model as
//! it is, and giving back every device it owns, whatever state each is in.
//!
//! Owners stay opaque names here; which devices to give back (all, or only
//! those a failed start took) is the caller's choice. A device that was
//! prepared for guests with no owner before its owner claimed it (by
//! `pci-assignable-add`) is left as it was found: on vfio-pci, recorded,
//! with no owner. Only what the owner's claim took from the host goes back
//! to the host.

use crate::bdf::Bdf;
use crate::inventory::InventoryError;
use crate::manager::{BeforeGiveBack, Manager, ManagerError};
use crate::ownership::{Operation, Progress, Record};
use crate::sysfs::Sysfs;
use crate::viability::Refusal;

/// Where a device went when its owner let go of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Returned {
    /// Back to the host: on this driver (`None`: none, or unknown).
    Driver(Option<String>),
    /// It was prepared for guests before its owner claimed it: it stays
    /// on vfio-pci, recorded with no owner.
    Prepared,
}

/// What giving back one device did.
#[derive(Debug)]
pub struct GivenBack {
    /// The device.
    pub bdf: Bdf,
    /// Where it went, or the error that left it where it is (`pvio
    /// release` finishes then).
    pub result: Result<Returned, ManagerError>,
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
    /// those of `only` among them, with the members taken along with
    /// them): those prepared before the owner claimed them stay prepared
    /// with no owner; the others go back to the drivers they had and their
    /// records are dropped, members taken along with a device together
    /// with it. One device that fails does not stop the others. Nothing is
    /// hot-unplugged: the owner's device model must be gone.
    pub fn release_owner(&self, owner: &str, only: Option<&[Bdf]>) -> Vec<GivenBack> {
        self.give_back_owned(owner, only, &mut |_| Ok(()))
    }

    /// As [`Manager::release_owner`], with `before` run first on each
    /// device given back with the members taken along with it (the
    /// runtime's hot-unplug from a running owner); a device whose `before`
    /// fails is left as it is, with the error.
    pub fn give_back_owned(
        &self,
        owner: &str,
        only: Option<&[Bdf]>,
        before: BeforeGiveBack<'_>,
    ) -> Vec<GivenBack> {
        let records = match self.owned_by(owner) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("cannot read the devices of `{owner}`: {e}");
                return Vec::new();
            }
        };
        let chosen: Vec<Record> = records
            .into_iter()
            .filter(|r| {
                only.is_none_or(|o| {
                    o.contains(&r.bdf) || r.group_of.is_some_and(|p| o.contains(&p))
                })
            })
            .collect();
        // Members taken along go with their primary device.
        let heads: Vec<&Record> = chosen
            .iter()
            .filter(|r| {
                r.group_of
                    .is_none_or(|p| !chosen.iter().any(|x| x.bdf == p))
            })
            .collect();
        let mut out = Vec::new();
        let mut unplugged = Vec::new();
        for head in &heads {
            let team = chosen
                .iter()
                .filter(|r| r.bdf == head.bdf || r.group_of == Some(head.bdf));
            match before(head) {
                Ok(()) => unplugged.extend(team.map(|r| r.bdf)),
                Err(source) => {
                    let source: std::sync::Arc<dyn std::error::Error + Send + Sync> = source.into();
                    out.extend(team.map(|r| GivenBack {
                        bdf: r.bdf,
                        result: Err(ManagerError::Unplug {
                            bdf: r.bdf,
                            owner: owner.to_owned(),
                            source: source.clone(),
                        }),
                    }));
                }
            }
        }
        let kept: Vec<Bdf> = chosen
            .iter()
            .filter(|r| r.was_prepared && unplugged.contains(&r.bdf))
            .map(|r| r.bdf)
            .collect();
        for &bdf in &kept {
            let unclaimed = self.ownership().update(|rs| {
                if let Some(r) = rs.devices.get_mut(&bdf) {
                    r.owner = None;
                    r.group_of = None;
                    r.was_prepared = false;
                }
            });
            out.push(GivenBack {
                bdf,
                result: unclaimed
                    .map(|()| Returned::Prepared)
                    .map_err(ManagerError::from),
            });
        }
        for r in &chosen {
            let is_head = heads.iter().any(|h| h.bdf == r.bdf);
            // A member goes with its head, unless the head stays prepared.
            let head_kept = r.group_of.is_some_and(|p| kept.contains(&p));
            if kept.contains(&r.bdf) || !unplugged.contains(&r.bdf) || !(is_head || head_kept) {
                continue;
            }
            out.push(GivenBack {
                bdf: r.bdf,
                result: self
                    .release(r.bdf, &mut |_| Ok(()))
                    .map(|()| Returned::Driver(self.host().sys.driver(r.bdf).ok().flatten())),
            });
        }
        out
    }
}

#[cfg(test)]
#[path = "owner_lifecycle_tests.rs"]
mod tests;
