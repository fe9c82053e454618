//! The passthrough operations as commands use them: list the host's devices
//! with their verdicts, prepare a device (for guests, or for a named owner),
//! give it back, release it. Each checks viability, claims the device in the
//! ownership record under its lock, does the sysfs work outside the lock,
//! records every step, and rolls back what it did if a step fails.
//!
//! Owners are opaque names: the caller (the runtime) knows what a domain is.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::bdf::Bdf;
use crate::bind::{Binder, Step, Waits};
use crate::claim::{Claim, Wanted};
use crate::host::Host;
use crate::hostneeds::HostNeeds;
use crate::inventory::{Inventory, InventoryError, PciDevice};
use crate::listing::{status, DeviceStatus};
use crate::ownership::{Operation, Ownership, OwnershipError, Record};
use crate::sysfs::Sysfs;
use crate::vfio::VfioHandle;
use crate::viability::{assess_with, Options, Refusal};
use crate::write::SysfsWriter;

pub use crate::error::ManagerError;

type Result<T> = std::result::Result<T, ManagerError>;

/// What preparing did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The device.
    pub bdf: Bdf,
    /// Whether it was already prepared (nothing to do on the host).
    pub already: bool,
    /// The group members taken along.
    pub taken_along: Vec<Bdf>,
    /// What `--force` overrode.
    pub warnings: Vec<String>,
    /// Its IOMMU group.
    pub group: Option<u32>,
    /// Whether the group was opened through VFIO and found VIABLE.
    pub viable: bool,
    /// Whether this call recorded the owner on a device that did not have
    /// it (taken from the host, or prepared before with no owner): what a
    /// caller that fails afterwards gives back.
    pub claimed: bool,
    /// Dry run only: every reason the real run would refuse (empty when
    /// it would go ahead). The dry run prints its whole plan all the same;
    /// outside a dry run a refusal is [`ManagerError::Refused`].
    pub blockers: Vec<Refusal>,
}

/// Called with the record before a release unbinds a device, so that the
/// runtime can hot-unplug it from a running owner first. `Err` stops the
/// release with nothing changed; it becomes the source of
/// [`ManagerError::Unplug`].
pub type BeforeGiveBack<'h> = &'h mut dyn FnMut(&Record) -> std::result::Result<(), HookError>;

/// What the hook before a give-back says went wrong.
pub type HookError = Box<dyn std::error::Error + Send + Sync>;

/// The passthrough operations on one host.
#[derive(Debug)]
pub struct Manager {
    pub(crate) host: Host,
    pub(crate) state: Ownership,
    pub(crate) writer: SysfsWriter,
    waits: Waits,
    open_vfio: bool,
}

impl Manager {
    /// Operations on `host`, recorded in `state`, with changes through `writer`.
    pub fn new(host: Host, state: Ownership, writer: SysfsWriter) -> Self {
        let open_vfio = host.is_real();
        Self {
            host,
            state,
            writer,
            waits: Waits::default(),
            open_vfio,
        }
    }

    /// Whether to open each prepared group through VFIO to confirm it is
    /// VIABLE (on by default for the running host, off for fixture trees).
    #[must_use]
    pub fn open_vfio(mut self, on: bool) -> Self {
        self.open_vfio = on;
        self
    }

    /// Sets how long to wait for the kernel.
    #[must_use]
    pub fn waits(mut self, waits: Waits) -> Self {
        self.waits = waits;
        self
    }

    /// The host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The writer.
    pub fn writer(&self) -> &SysfsWriter {
        &self.writer
    }

    /// The record.
    pub fn ownership(&self) -> &Ownership {
        &self.state
    }

    pub(crate) fn binder(&self) -> Binder<'_> {
        Binder::new(&self.host, &self.writer).waits(self.waits)
    }

    /// Every device (`all`), or every endpoint, with its verdict.
    pub fn list(&self, all: bool) -> Result<Vec<DeviceStatus>> {
        let inv = Inventory::scan(&self.host.sys)?;
        let needs = HostNeeds::scan(&self.host)?;
        let records = self.state.load()?;
        Ok(inv
            .devices
            .iter()
            .filter(|d| all || !d.is_bridge)
            .map(|d| status(d, &inv, &needs, &records))
            .collect())
    }

    /// The verdict on one device.
    pub fn status(&self, bdf: Bdf) -> Result<DeviceStatus> {
        let inv = Inventory::scan(&self.host.sys)?;
        let dev = device(&self.host.sys, &inv, bdf)?;
        let needs = HostNeeds::scan(&self.host)?;
        Ok(status(dev, &inv, &needs, &self.state.load()?))
    }

    /// Devices prepared for guests (owned or not), from the record.
    pub fn prepared(&self) -> Result<Vec<Record>> {
        Ok(self
            .state
            .load()?
            .devices
            .into_values()
            .filter(|r| r.operation == Operation::Prepare && r.done)
            .collect())
    }

    /// The devices recorded for `owner` (prepared, half-done or not), for
    /// the runtime: what to add at the domain's `create`, and what to
    /// release when it ends.
    pub fn owned_by(&self, owner: &str) -> Result<Vec<Record>> {
        Ok(self
            .state
            .load()?
            .devices
            .into_values()
            .filter(|r| r.owner.as_deref() == Some(owner))
            .collect())
    }

    /// Prepares `bdf` for guests with no owner (`pci-assignable-add`).
    pub fn prepare(&self, bdf: Bdf, opts: Options) -> Result<Outcome> {
        self.prepare_inner(bdf, &[], None, opts)
    }

    /// Prepares `bdf` and records `owner` as its owner (`assign`).
    pub fn prepare_for(&self, bdf: Bdf, owner: &str, opts: Options) -> Result<Outcome> {
        self.prepare_inner(bdf, &[], Some(owner), opts)
    }

    /// Prepares `bdf` together with the members of its IOMMU group listed
    /// in `along` (a GPU and its audio function named together in a
    /// domain's config), all for `owner`: as `--group` does, but only for
    /// those members. Members of `along` outside its group are ignored.
    pub fn prepare_together_for(
        &self,
        bdf: Bdf,
        along: &[Bdf],
        owner: &str,
        opts: Options,
    ) -> Result<Outcome> {
        self.prepare_inner(bdf, along, Some(owner), opts)
    }

    fn prepare_inner(
        &self,
        bdf: Bdf,
        along: &[Bdf],
        owner: Option<&str>,
        opts: Options,
    ) -> Result<Outcome> {
        let inv = Inventory::scan(&self.host.sys)?;
        let dev = device(&self.host.sys, &inv, bdf)?;
        let needs = HostNeeds::scan(&self.host)?;
        let verdict = assess_with(dev, &inv, &needs, opts, along);
        let devices: Vec<Bdf> = std::iter::once(bdf)
            .chain(verdict.take_along.iter().copied())
            .collect();
        let dry = self.writer.is_dry_run();
        let wanted = Wanted {
            primary: dev,
            devices: &devices,
            owner,
            inv: &inv,
            refusals: &verdict.refusals,
        };
        // Check and claim under the lock, so one of two racing claims wins.
        // A dry run keeps the refusals and shows its plan all the same.
        let mut blockers = Vec::new();
        let claimed = if dry {
            match wanted.claim(&mut self.state.load()?, true) {
                Err(ManagerError::Refused { refusals, .. }) => {
                    blockers = refusals;
                    Claim::Go {
                        before: BTreeMap::new(),
                        claimed: owner.is_some(),
                    }
                }
                other => other?,
            }
        } else {
            self.state.update(|rs| wanted.claim(rs, false))??
        };
        let (before, claimed) = match claimed {
            Claim::Already { along, claimed } => {
                return Ok(Outcome {
                    bdf,
                    already: true,
                    taken_along: along,
                    warnings: Vec::new(),
                    group: dev.iommu_group,
                    viable: false,
                    claimed,
                    blockers,
                })
            }
            Claim::Go { before, claimed } => (before, claimed),
        };
        for (i, &d) in devices.iter().enumerate() {
            let mut steps = StepRecorder::new(self, d);
            let result = self.binder().prepare(d, &mut |s| steps.step(s));
            let recorded = steps.finish();
            if let Err(source) = result {
                let rolled_back = self.roll_back(&devices[..=i], &before);
                return Err(ManagerError::Failed {
                    bdf: d,
                    rolled_back,
                    source,
                });
            }
            recorded?;
        }
        let viable = self.open_vfio && !dry;
        if viable {
            if let Err(source) = VfioHandle::open(&self.host, bdf) {
                let rolled_back = self.roll_back(&devices, &before);
                return Err(ManagerError::Vfio {
                    bdf,
                    rolled_back,
                    source,
                });
            }
        }
        if !dry {
            self.state.update(|rs| {
                for d in &devices {
                    if let Some(r) = rs.devices.get_mut(d) {
                        r.done = true;
                    }
                }
            })?;
        }
        Ok(Outcome {
            bdf,
            already: false,
            taken_along: verdict.take_along,
            warnings: verdict.warnings,
            group: dev.iommu_group,
            viable,
            claimed,
            blockers,
        })
    }

    /// Gives back what a failed prepare did; true if all went back. A
    /// device that was recorded before (prepared, on vfio-pci) gets its
    /// old record back and stays on vfio-pci.
    fn roll_back(&self, devices: &[Bdf], before: &BTreeMap<Bdf, Record>) -> bool {
        let records = self.state.load().unwrap_or_default();
        let mut all = true;
        for &d in devices.iter().rev() {
            if let Some(old) = before.get(&d) {
                if let Err(e) = self.state.update(|rs| rs.devices.insert(d, old.clone())) {
                    tracing::warn!("cannot restore the record of {d}: {e}");
                    all = false;
                }
                continue;
            }
            let previous = records
                .devices
                .get(&d)
                .and_then(|r| r.previous_driver.clone());
            match self
                .binder()
                .give_back(d, previous.as_deref(), true, &mut |_| {})
            {
                Ok(()) => {
                    let _ = self.state.update(|rs| rs.devices.remove(&d));
                }
                Err(e) => {
                    tracing::warn!("cannot roll back {d}: {e}");
                    all = false;
                }
            }
        }
        all
    }
}

/// The device from the inventory, or the reason it is not there (absent,
/// or its sysfs files unreadable).
pub(crate) fn device<'i>(sys: &Sysfs, inv: &'i Inventory, bdf: Bdf) -> Result<&'i PciDevice> {
    match inv.get(bdf) {
        Some(d) => Ok(d),
        None => {
            PciDevice::read(sys, bdf)?;
            Err(InventoryError::NotFound(bdf).into())
        }
    }
}

/// Writes each step done into the record (not in dry-run mode), keeping the
/// first error for after the sysfs work.
pub(crate) struct StepRecorder<'m> {
    manager: &'m Manager,
    bdf: Bdf,
    error: Option<OwnershipError>,
}

impl<'m> StepRecorder<'m> {
    pub(crate) fn new(manager: &'m Manager, bdf: Bdf) -> Self {
        Self {
            manager,
            bdf,
            error: None,
        }
    }

    pub(crate) fn step(&mut self, step: Step) {
        if self.manager.writer.is_dry_run() || self.error.is_some() {
            return;
        }
        let bdf = self.bdf;
        if let Err(e) = self.manager.state.update(|rs| {
            if let Some(r) = rs.devices.get_mut(&bdf) {
                r.step = Some(step);
            }
        }) {
            self.error = Some(e);
        }
    }

    pub(crate) fn finish(self) -> Result<()> {
        match self.error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
#[path = "manager_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "manager_group_tests.rs"]
mod group_tests;
