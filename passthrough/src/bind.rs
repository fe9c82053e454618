//! Moving a device between its host driver and vfio-pci, in the order that
//! leaves no window for another driver to grab it:
//!
//! - prepare: load vfio-pci if needed, `driver_override` = vfio-pci first,
//!   then unbind from the current driver (with a timeout, naming the driver
//!   that did not let go), then `drivers_probe`; verify the `driver` link and
//!   `/dev/vfio/<group>`.
//! - give back: unbind from vfio-pci, clear `driver_override` (write "\n"),
//!   then bind to the driver it had before through that driver's `bind` file.
//!
//! Each step is reported to a callback so that the ownership record can say
//! how far a crashed run got.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::bdf::Bdf;
use crate::host::Host;
use crate::sysfs::{Sysfs, SysfsError};
use crate::write::{SysfsWriter, WriteError};

/// Moving a device between drivers failed.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Sysfs could not be read.
    #[error(transparent)]
    Sysfs(#[from] SysfsError),
    /// The device is gone.
    #[error("there is no PCI device {0} on this host")]
    NotFound(Bdf),
    /// The device has no IOMMU group.
    #[error("{0} has no IOMMU group: is the IOMMU on?")]
    NoGroup(Bdf),
    /// vfio-pci could not be loaded.
    #[error(
        "cannot load vfio-pci (is the module installed? `modprobe vfio-pci` by hand says more)"
    )]
    LoadVfio(#[source] WriteError),
    /// The driver's `unbind` did not return.
    #[error("driver {driver} did not let go of {bdf} within {after:?}: its unbind is stuck in the kernel; the device stays with {driver} (a reboot may be needed)")]
    UnbindStuck {
        /// The device.
        bdf: Bdf,
        /// The driver that holds it.
        driver: String,
        /// How long it was given.
        after: Duration,
    },
    /// A sysfs write failed.
    #[error("cannot {step} {bdf}")]
    Write {
        /// What was being done.
        step: &'static str,
        /// The device.
        bdf: Bdf,
        /// The failed write.
        #[source]
        source: WriteError,
    },
    /// After the writes, the device is not on the expected driver.
    #[error("{bdf} should now be bound to {expected} but its driver is {}", actual.as_deref().unwrap_or("none"))]
    NotBound {
        /// The device.
        bdf: Bdf,
        /// The driver wanted.
        expected: String,
        /// The driver it has.
        actual: Option<String>,
    },
    /// vfio-pci took the device but its group device did not appear.
    #[error("{bdf} is bound to vfio-pci but {} did not appear", path.display())]
    NoGroupDevice {
        /// The device.
        bdf: Bdf,
        /// The missing `/dev/vfio/N`.
        path: std::path::PathBuf,
    },
}

type Result<T> = std::result::Result<T, BindError>;

/// The steps of preparing and giving back, in order, as the ownership
/// record stores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// `driver_override` says vfio-pci.
    OverrideSet,
    /// The host driver let go.
    Unbound,
    /// vfio-pci has it and `/dev/vfio/N` exists.
    BoundToVfio,
    /// vfio-pci let go.
    UnboundFromVfio,
    /// `driver_override` is clear.
    OverrideCleared,
    /// Back on the driver it had (or left without one).
    Returned,
}

/// How long to wait for the kernel.
#[derive(Debug, Clone, Copy)]
pub struct Waits {
    /// How long a driver's bind or `/dev/vfio/N` may take to appear.
    pub settle: Duration,
    /// How often to look.
    pub poll: Duration,
}

impl Default for Waits {
    fn default() -> Self {
        Self {
            settle: Duration::from_secs(5),
            poll: Duration::from_millis(20),
        }
    }
}

/// What preparing a device found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The device.
    pub bdf: Bdf,
    /// The driver it had before (None: no driver, or already vfio-pci).
    pub previous_driver: Option<String>,
    /// Its IOMMU group (`None` only in a dry run on a host without one).
    pub group: Option<u32>,
}

/// Binds and unbinds devices under one host through one writer.
#[derive(Debug)]
pub struct Binder<'a> {
    host: &'a Host,
    writer: &'a SysfsWriter,
    waits: Waits,
}

impl<'a> Binder<'a> {
    /// A binder for `host` whose changes go through `writer`.
    pub fn new(host: &'a Host, writer: &'a SysfsWriter) -> Self {
        Self {
            host,
            writer,
            waits: Waits::default(),
        }
    }

    /// Sets how long to wait for the kernel.
    #[must_use]
    pub fn waits(mut self, waits: Waits) -> Self {
        self.waits = waits;
        self
    }

    fn sys(&self) -> &Sysfs {
        &self.host.sys
    }

    /// Loads vfio-pci if its driver folder is missing.
    pub fn ensure_vfio_pci(&self) -> Result<()> {
        let dir = self.sys().driver_dir(Sysfs::VFIO_PCI);
        if dir.exists() {
            return Ok(());
        }
        self.writer
            .run("modprobe", &["vfio-pci"])
            .map_err(BindError::LoadVfio)?;
        if !self.writer.is_dry_run() {
            self.wait_for(|| dir.exists());
        }
        Ok(())
    }

    /// Takes `bdf` from its driver and gives it to vfio-pci, reporting each
    /// step done to `on_step`.
    pub fn prepare(&self, bdf: Bdf, on_step: &mut dyn FnMut(Step)) -> Result<Prepared> {
        let sys = self.sys();
        if !sys.exists(bdf) {
            return Err(BindError::NotFound(bdf));
        }
        // A dry run goes on without a group (the IOMMU off), to show every
        // write; the caller's checks name that blocker.
        let group = sys.iommu_group(bdf)?;
        if group.is_none() && !self.writer.is_dry_run() {
            return Err(BindError::NoGroup(bdf));
        }
        self.ensure_vfio_pci()?;
        let current = sys.driver(bdf)?;
        if current.as_deref() == Some(Sysfs::VFIO_PCI) {
            if sys.driver_override(bdf)?.as_deref() != Some(Sysfs::VFIO_PCI) {
                self.write(
                    &sys.device_file(bdf, "driver_override"),
                    Sysfs::VFIO_PCI,
                    "set driver_override of",
                    bdf,
                )?;
            }
            on_step(Step::OverrideSet);
            on_step(Step::Unbound);
            self.verify_vfio(bdf, group)?;
            on_step(Step::BoundToVfio);
            return Ok(Prepared {
                bdf,
                previous_driver: None,
                group,
            });
        }
        self.write(
            &sys.device_file(bdf, "driver_override"),
            Sysfs::VFIO_PCI,
            "set driver_override of",
            bdf,
        )?;
        on_step(Step::OverrideSet);
        if let Some(driver) = &current {
            self.unbind(bdf, driver)?;
        }
        on_step(Step::Unbound);
        self.write(
            &sys.drivers_probe(),
            &bdf.to_string(),
            "probe drivers for",
            bdf,
        )?;
        self.verify_vfio(bdf, group)?;
        on_step(Step::BoundToVfio);
        Ok(Prepared {
            bdf,
            previous_driver: current,
            group,
        })
    }

    /// Gives `bdf` back: unbind from vfio-pci, clear `driver_override`, and
    /// with `rebind` bind it to `previous` (if it had a driver).
    pub fn give_back(
        &self,
        bdf: Bdf,
        previous: Option<&str>,
        rebind: bool,
        on_step: &mut dyn FnMut(Step),
    ) -> Result<()> {
        let sys = self.sys();
        if !sys.exists(bdf) {
            return Err(BindError::NotFound(bdf));
        }
        let current = sys.driver(bdf)?;
        if current.as_deref() == Some(Sysfs::VFIO_PCI) {
            self.unbind(bdf, Sysfs::VFIO_PCI)?;
        }
        on_step(Step::UnboundFromVfio);
        if sys.driver_override(bdf)?.is_some() || self.writer.is_dry_run() {
            self.write(
                &sys.device_file(bdf, "driver_override"),
                "\n",
                "clear driver_override of",
                bdf,
            )?;
        }
        on_step(Step::OverrideCleared);
        let target = previous.filter(|d| *d != Sysfs::VFIO_PCI);
        if let (true, Some(driver)) = (rebind, target) {
            let now = sys.driver(bdf)?;
            let dry = self.writer.is_dry_run();
            match now {
                Some(d) if d == driver => {}
                Some(other) if !dry => {
                    return Err(BindError::NotBound {
                        bdf,
                        expected: driver.to_owned(),
                        actual: Some(other),
                    });
                }
                _ => self.bind(bdf, driver)?,
            }
        }
        on_step(Step::Returned);
        Ok(())
    }

    /// Asks the kernel to find a driver for `bdf` (`drivers_probe`), for a
    /// device whose previous driver pvio does not know.
    pub fn reprobe(&self, bdf: Bdf) -> Result<()> {
        self.write(
            &self.sys().drivers_probe(),
            &bdf.to_string(),
            "probe drivers for",
            bdf,
        )
    }

    fn bind(&self, bdf: Bdf, driver: &str) -> Result<()> {
        let sys = self.sys();
        let dir = sys.driver_dir(driver);
        if !dir.exists() {
            // Driver and module names differ only in `-`/`_`, which modprobe
            // treats alike; if it fails, the bind below says so.
            let _ = self.writer.run("modprobe", &[driver]);
        }
        self.write(&dir.join("bind"), &bdf.to_string(), "rebind", bdf)?;
        if self.writer.is_dry_run() {
            return Ok(());
        }
        self.wait_for(|| sys.driver(bdf).ok().flatten().as_deref() == Some(driver));
        let actual = sys.driver(bdf)?;
        if actual.as_deref() != Some(driver) {
            return Err(BindError::NotBound {
                bdf,
                expected: driver.to_owned(),
                actual,
            });
        }
        Ok(())
    }

    fn unbind(&self, bdf: Bdf, driver: &str) -> Result<()> {
        let path = self.sys().driver_dir(driver).join("unbind");
        match self.writer.write(&path, &bdf.to_string()) {
            Ok(()) => {
                if !self.writer.is_dry_run() {
                    let sys = self.sys();
                    self.wait_for(|| sys.driver(bdf).ok().flatten().as_deref() != Some(driver));
                }
                Ok(())
            }
            Err(WriteError::Timeout { after, .. }) => Err(BindError::UnbindStuck {
                bdf,
                driver: driver.to_owned(),
                after,
            }),
            Err(source) => Err(BindError::Write {
                step: "unbind",
                bdf,
                source,
            }),
        }
    }

    fn write(&self, path: &Path, value: &str, step: &'static str, bdf: Bdf) -> Result<()> {
        self.writer
            .write(path, value)
            .map_err(|source| BindError::Write { step, bdf, source })
    }

    fn verify_vfio(&self, bdf: Bdf, group: Option<u32>) -> Result<()> {
        if self.writer.is_dry_run() {
            return Ok(());
        }
        let group = group.ok_or(BindError::NoGroup(bdf))?;
        let sys = self.sys();
        let bound = || sys.driver(bdf).ok().flatten().as_deref() == Some(Sysfs::VFIO_PCI);
        self.wait_for(bound);
        if !bound() {
            return Err(BindError::NotBound {
                bdf,
                expected: Sysfs::VFIO_PCI.to_owned(),
                actual: sys.driver(bdf)?,
            });
        }
        let dev = self.host.vfio_group_dev(group);
        self.wait_for(|| dev.exists());
        if !dev.exists() {
            return Err(BindError::NoGroupDevice { bdf, path: dev });
        }
        Ok(())
    }

    fn wait_for(&self, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() && start.elapsed() < self.waits.settle {
            std::thread::sleep(self.waits.poll);
        }
    }
}

#[cfg(test)]
#[path = "bind_tests.rs"]
mod tests;
