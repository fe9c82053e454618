//! Claiming devices in the ownership record, under its lock: whether each
//! record lets the claimant have its device, whether the IOMMU group
//! belongs to another domain, and the records written before any sysfs
//! work. A device recorded before (prepared with no owner, or the
//! claimant's already) keeps the driver recorded for it then.

use std::collections::BTreeMap;

use crate::bdf::Bdf;
use crate::error::ManagerError;
use crate::inventory::{Inventory, PciDevice};
use crate::listing::stale;
use crate::ownership::{Operation, Progress, Record, Records};
use crate::sysfs::Sysfs;
use crate::viability::{owner_refusals, Refusal};

/// What a prepare wants: the primary device, every device to take (the
/// primary first, then the group members going along), for whom, and
/// what the sysfs assessment refused.
pub(crate) struct Wanted<'a> {
    pub primary: &'a PciDevice,
    pub devices: &'a [Bdf],
    pub owner: Option<&'a str>,
    pub inv: &'a Inventory,
    pub refusals: &'a [Refusal],
}

/// What the claim found.
pub(crate) enum Claim {
    /// Every device was prepared already: nothing to do on the host. The
    /// members going along (taken along with the primary earlier) are
    /// listed; `claimed` says whether the owner was recorded on any.
    Already { along: Vec<Bdf>, claimed: bool },
    /// The records are written (not in dry-run mode) and the sysfs work is
    /// to be done; `before` holds the records that existed already.
    Go {
        before: BTreeMap<Bdf, Record>,
        claimed: bool,
    },
}

impl Wanted<'_> {
    fn driver(&self, bdf: Bdf) -> Option<String> {
        self.inv.get(bdf).and_then(|d| d.driver.clone())
    }

    fn driver_override(&self, bdf: Bdf) -> Option<String> {
        self.inv.get(bdf).and_then(|d| d.driver_override.clone())
    }

    /// Checks the record and claims the devices in it (with `dry`, only
    /// checks).
    pub fn claim(&self, records: &mut Records, dry: bool) -> Result<Claim, ManagerError> {
        let bdf = self.primary.bdf;
        // A group can belong to one domain only: the primary's owner, if it
        // has one, speaks for it when none is asked for.
        let recorded_owner = records.devices.get(&bdf).and_then(|r| r.owner.clone());
        let owner = self.owner.or(recorded_owner.as_deref());
        let mut refusals = owner_refusals(self.primary, records, owner);
        let mut before = BTreeMap::new();
        for &d in self.devices {
            let Some(r) = records.devices.get(&d) else {
                continue;
            };
            let (driver, over) = (self.driver(d), self.driver_override(d));
            match claimable(r, self.owner, driver.as_deref(), over.as_deref()) {
                // A member's owner is named by the group refusal already.
                Err(Refusal::Owned { .. }) if d != bdf => {}
                Err(why) => refusals.push(why),
                Ok(()) => {}
            }
            before.insert(d, r.clone());
        }
        let all_recorded = before.len() == self.devices.len();
        if !all_recorded {
            refusals.splice(0..0, self.refusals.iter().cloned());
        }
        if !refusals.is_empty() {
            return Err(ManagerError::Refused { bdf, refusals });
        }
        if all_recorded {
            return Ok(self.claim_prepared(records, dry));
        }
        let claimed = self.owner.is_some();
        if dry {
            return Ok(Claim::Go { before, claimed });
        }
        for &d in self.devices {
            let old = before.get(&d);
            let previous = match old {
                Some(o) => o.previous_driver.clone(),
                None => self.driver(d).filter(|p| p != Sysfs::VFIO_PCI),
            };
            let mut r = Record::started(d, self.owner, previous, Operation::Prepare);
            r.group_of = old.and_then(|o| o.group_of).or((d != bdf).then_some(bdf));
            r.was_prepared =
                old.is_some_and(|o| o.was_prepared || (o.owner.is_none() && self.owner.is_some()));
            records.devices.insert(d, r);
        }
        Ok(Claim::Go { before, claimed })
    }

    /// Every device is prepared: record the owner on those without one,
    /// and on the members taken along with the primary earlier.
    fn claim_prepared(&self, records: &mut Records, dry: bool) -> Claim {
        let bdf = self.primary.bdf;
        let mut along: Vec<Bdf> = self.devices[1..].to_vec();
        along.extend(
            records
                .devices
                .values()
                .filter(|r| r.group_of == Some(bdf))
                .filter(|r| r.done && r.operation == Operation::Prepare)
                .filter(|r| r.owner.is_none() || r.owner.as_deref() == self.owner)
                .map(|r| r.bdf),
        );
        along.sort();
        along.dedup();
        let mut claimed = false;
        if let Some(owner) = self.owner {
            for d in std::iter::once(bdf).chain(along.iter().copied()) {
                let Some(r) = records.devices.get_mut(&d) else {
                    continue;
                };
                if r.owner.is_none() {
                    claimed = true;
                    if !dry {
                        r.owner = Some(owner.to_owned());
                        r.was_prepared = true;
                    }
                }
            }
        }
        Claim::Already { along, claimed }
    }
}

/// Whether a record lets `owner` have its device, now on `driver` with
/// `driver_override`; `Ok` means it is prepared and the claim changes
/// nothing on the host.
pub(crate) fn claimable(
    r: &Record,
    owner: Option<&str>,
    driver: Option<&str>,
    driver_override: Option<&str>,
) -> Result<(), Refusal> {
    if let Some(what) = stale(r, driver, driver_override) {
        return Err(Refusal::Stale { what });
    }
    match r.progress() {
        Progress::Running => Err(Refusal::InProgress { what: r.describe() }),
        Progress::HalfDone => Err(Refusal::HalfDone { what: r.describe() }),
        Progress::Done if r.operation == Operation::GiveBack => {
            Err(Refusal::HalfDone { what: r.describe() })
        }
        Progress::Done => match (&r.owner, owner) {
            (Some(o), Some(n)) if o != n => Err(Refusal::Owned { owner: o.clone() }),
            _ => Ok(()),
        },
    }
}
