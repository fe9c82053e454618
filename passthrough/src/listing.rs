//! The verdict on each device for listings (`pvio pci-list`): the sysfs
//! assessment, plus what the ownership record says (owned, its IOMMU group
//! owned by another domain, busy, half-done, stale).

use serde::Serialize;

use crate::hostneeds::HostNeeds;
use crate::inventory::{Inventory, PciDevice};
use crate::ownership::{Operation, Progress, Record, Records};
use crate::sysfs::Sysfs;
use crate::viability::{assess, owner_refusals, Options, Refusal};

/// Where a device stands, for listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// With the host (its driver or none); pvio has no record.
    Host,
    /// On vfio-pci, prepared for guests, no owner.
    Prepared,
    /// Owned (reserved for or given to an owner).
    Assigned,
    /// A pvio process is working on it.
    Busy,
    /// An operation stopped half-way.
    HalfDone,
    /// Recorded as prepared, but no longer on vfio-pci (the host rebooted,
    /// or someone rebound it): `pvio release` clears the record.
    Stale,
}

/// Why a finished preparation no longer holds: the device is not on
/// vfio-pci (`driver` is where it is) and not waiting for it either (no
/// driver, with `driver_override` still vfio-pci, is a preparation whose
/// driver went away: giving it back clears the override). `None` if it
/// holds.
pub fn stale(r: &Record, driver: Option<&str>, driver_override: Option<&str>) -> Option<String> {
    let vfio = Some(Sysfs::VFIO_PCI);
    let holds = driver == vfio || (driver.is_none() && driver_override == vfio);
    if !r.done || r.operation != Operation::Prepare || holds {
        return None;
    }
    let what = match &r.owner {
        Some(o) => format!("{} is recorded as assigned to `{o}`", r.bdf),
        None => format!("{} is recorded as prepared for guests", r.bdf),
    };
    Some(format!(
        "{what} but is on {} (the host rebooted, or it was rebound by hand)",
        driver.unwrap_or("no driver")
    ))
}

/// A device with its verdict, for `pci-list`.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceStatus {
    /// The device.
    #[serde(flatten)]
    pub device: PciDevice,
    /// Whether it can be assigned now.
    pub assignable: bool,
    /// Why not.
    pub refusals: Vec<Refusal>,
    /// Where it stands.
    pub state: State,
    /// Its owner, if any.
    pub owner: Option<String>,
    /// What a half-done or running operation was doing.
    pub operation: Option<String>,
}

/// The verdict on one device, the record included.
pub(crate) fn status(
    dev: &PciDevice,
    inv: &Inventory,
    needs: &HostNeeds,
    records: &Records,
) -> DeviceStatus {
    let mut verdict = assess(dev, inv, needs, Options::default());
    let record = records.devices.get(&dev.bdf);
    let own = record.and_then(|r| r.owner.as_deref());
    verdict.refusals.extend(owner_refusals(dev, records, own));
    let stale =
        record.and_then(|r| stale(r, dev.driver.as_deref(), dev.driver_override.as_deref()));
    let (state, operation) = match (record, stale) {
        (None, _) => (State::Host, None),
        (Some(_), Some(what)) => {
            verdict.refusals.push(Refusal::Stale { what: what.clone() });
            (State::Stale, Some(what))
        }
        (Some(r), None) => match r.progress() {
            Progress::Running => {
                verdict
                    .refusals
                    .push(Refusal::InProgress { what: r.describe() });
                (State::Busy, Some(r.describe()))
            }
            Progress::HalfDone => {
                verdict
                    .refusals
                    .push(Refusal::HalfDone { what: r.describe() });
                (State::HalfDone, Some(r.describe()))
            }
            Progress::Done => match &r.owner {
                Some(o) => {
                    verdict.refusals.push(Refusal::Owned { owner: o.clone() });
                    (State::Assigned, None)
                }
                None => (State::Prepared, None),
            },
        },
    };
    DeviceStatus {
        device: dev.clone(),
        assignable: verdict.refusals.is_empty(),
        refusals: verdict.refusals,
        state,
        owner: record.and_then(|r| r.owner.clone()),
        operation,
    }
}
