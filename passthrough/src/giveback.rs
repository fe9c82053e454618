//! Giving devices back to the host: `pci-assignable-remove` (an unowned
//! device), `release` (from its owner, after the caller's hot-unplug
//! hook), and finishing an operation that stopped half-way. A stale record
//! (the device is back on a host driver, after a reboot say) is dropped
//! without touching the device.

use crate::bdf::Bdf;
use crate::inventory::InventoryError;
use crate::listing::stale;
use crate::manager::{BeforeGiveBack, Manager, ManagerError, StepRecorder};
use crate::ownership::{Operation, Progress, Record, Records};
use crate::sysfs::Sysfs;
use crate::viability::Refusal;

type Result<T> = std::result::Result<T, ManagerError>;

impl Manager {
    /// Gives a prepared, unowned device back (`pci-assignable-remove`):
    /// unbind vfio-pci, clear `driver_override`, and with `rebind` bind the
    /// driver it had. Also finishes a half-done preparation.
    pub fn give_back(&self, bdf: Bdf, rebind: bool) -> Result<()> {
        let records = self.state.load()?;
        match records.devices.get(&bdf) {
            Some(r) if r.owner.is_some() && r.progress() == Progress::Done => {
                Err(ManagerError::Refused {
                    bdf,
                    refusals: vec![Refusal::Owned {
                        owner: r.owner.clone().unwrap_or_default(),
                    }],
                })
            }
            Some(_) => self.finish_give_back(bdf, rebind, &mut |_| Ok(())),
            None => {
                let driver = self.host.sys.driver(bdf)?;
                if !self.host.sys.exists(bdf) {
                    return Err(InventoryError::NotFound(bdf).into());
                }
                if driver.as_deref() != Some(Sysfs::VFIO_PCI) {
                    return Err(ManagerError::NotManaged { bdf, driver });
                }
                // Prepared by hand or by another tool: pvio does not know the
                // old driver, so the kernel picks one.
                let fail = |source| ManagerError::Failed {
                    bdf,
                    rolled_back: false,
                    source,
                };
                self.binder()
                    .give_back(bdf, None, false, &mut |_| {})
                    .map_err(fail)?;
                if rebind {
                    self.binder().reprobe(bdf).map_err(fail)?;
                }
                Ok(())
            }
        }
    }

    /// Takes a device back from its owner and returns it to the driver it
    /// had (`release`). `before` runs first (the runtime's hot-unplug); a
    /// half-done operation is finished.
    pub fn release(&self, bdf: Bdf, before: BeforeGiveBack<'_>) -> Result<()> {
        let records = self.state.load()?;
        if !records.devices.contains_key(&bdf) {
            if !self.host.sys.exists(bdf) {
                return Err(InventoryError::NotFound(bdf).into());
            }
            return Err(ManagerError::NotManaged {
                bdf,
                driver: self.host.sys.driver(bdf)?,
            });
        }
        self.finish_give_back(bdf, true, before)
    }

    fn finish_give_back(&self, bdf: Bdf, rebind: bool, before: BeforeGiveBack<'_>) -> Result<()> {
        let dry = self.writer.is_dry_run();
        // Mark the device and the members taken along with it as being
        // given back, under the lock.
        let mark = |records: &mut Records| -> Result<Vec<Record>> {
            let r = records
                .devices
                .get(&bdf)
                .ok_or(ManagerError::NotManaged { bdf, driver: None })?;
            if r.progress() == Progress::Running {
                return Err(ManagerError::Refused {
                    bdf,
                    refusals: vec![Refusal::InProgress { what: r.describe() }],
                });
            }
            let mut list: Vec<Record> = records
                .devices
                .values()
                .filter(|m| m.group_of == Some(bdf))
                .cloned()
                .collect();
            list.push(r.clone());
            if !dry {
                for m in &list {
                    if let Some(x) = records.devices.get_mut(&m.bdf) {
                        x.operation = Operation::GiveBack;
                        x.done = false;
                        x.step = None;
                        x.stamp();
                    }
                }
            }
            Ok(list)
        };
        let list = if dry {
            mark(&mut self.state.load()?)?
        } else {
            self.state.update(mark)??
        };
        let primary = list.last().cloned();
        if let Some(r) = &primary {
            if let Err(source) = before(r) {
                if !dry {
                    self.state.update(|rs| {
                        for m in &list {
                            rs.devices.insert(m.bdf, m.clone());
                        }
                    })?;
                }
                return Err(ManagerError::Unplug {
                    bdf,
                    owner: r.owner.clone().unwrap_or_default(),
                    source: source.into(),
                });
            }
        }
        for r in &list {
            let driver = self.host.sys.driver(r.bdf).ok().flatten();
            let over = self.host.sys.driver_override(r.bdf).ok().flatten();
            if !self.host.sys.exists(r.bdf) {
                tracing::warn!("{} is gone from the host; dropping its record", r.bdf);
            } else if let Some(what) = stale(r, driver.as_deref(), over.as_deref()) {
                // Back with the host already: the record is all that is left.
                tracing::info!("{what}; dropping its record");
            } else {
                let mut steps = StepRecorder::new(self, r.bdf);
                let result = self.binder().give_back(
                    r.bdf,
                    r.previous_driver.as_deref(),
                    rebind,
                    &mut |s| steps.step(s),
                );
                steps.finish()?;
                result.map_err(|source| ManagerError::Failed {
                    bdf: r.bdf,
                    rolled_back: false,
                    source,
                })?;
            }
            if !dry {
                self.state.update(|rs| rs.devices.remove(&r.bdf))?;
            }
        }
        Ok(())
    }
}
