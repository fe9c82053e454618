//! The verdict on each device for listings (`pvio pci-list`): the sysfs
//! assessment, plus what the ownership record says (owned, busy, half-done).

use serde::Serialize;

use crate::hostneeds::HostNeeds;
use crate::inventory::{Inventory, PciDevice};
use crate::ownership::{Progress, Records};
use crate::viability::{assess, Options, Refusal};

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
    let (state, operation) = match record.map(|r| (r, r.progress())) {
        None => (State::Host, None),
        Some((r, Progress::Running)) => {
            verdict
                .refusals
                .push(Refusal::InProgress { what: r.describe() });
            (State::Busy, Some(r.describe()))
        }
        Some((r, Progress::HalfDone)) => {
            verdict
                .refusals
                .push(Refusal::HalfDone { what: r.describe() });
            (State::HalfDone, Some(r.describe()))
        }
        Some((r, Progress::Done)) => match &r.owner {
            Some(o) => {
                verdict.refusals.push(Refusal::Owned { owner: o.clone() });
                (State::Assigned, None)
            }
            None => (State::Prepared, None),
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
