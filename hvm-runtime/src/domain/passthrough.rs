//! Host PCI devices a domain owns while it runs. The supervisor takes them
//! before QEMU starts: the config `pci` devices are prepared for the
//! domain (`Manager::prepare_for`: the checks, then vfio-pci), those of one
//! IOMMU group together (a GPU and its audio function), and each device
//! `pvio assign` reserved for it is checked and added to QEMU's command
//! line. All are named [`ids::passthrough_id`] in QEMU. When the domain
//! ends, however it ends, they go back to the drivers they had and their
//! records are dropped, except devices prepared with `pci-assignable-add`
//! before the domain took them: those stay prepared, with no owner. A
//! start that fails gives back only what it took, and reservations stay
//! for the next `pvio create`.
//!
//! The host side is `pvio-passthrough`'s; the owner is the domain's name.

use pvio_passthrough::{Bdf, Host, Manager, ManagerError, Options, Ownership};
use pvio_passthrough::{Returned, Sysfs, SysfsWriter};
use serde::{Deserialize, Serialize};

use super::record::PciEntry;
use crate::host::accel::host_root;
use crate::plan::ids;
use crate::plan::DomainPlan;
use crate::report::error_line;

/// A config `pci` device, as the supervisor gets it in `launch.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciLaunch {
    /// The host device (`0000:03:00.0`).
    pub bdf: Bdf,
    /// `seize=1`: take it from a host driver.
    pub seize: bool,
    /// The config line, for errors.
    pub at: String,
}

impl PciLaunch {
    /// The config's devices of `plan`.
    pub fn from_plan(plan: &DomainPlan) -> Vec<PciLaunch> {
        plan.passthrough
            .iter()
            .map(|p| PciLaunch {
                bdf: p.bdf,
                seize: p.seize,
                at: p.at.to_string(),
            })
            .collect()
    }
}

/// A device cannot be given to the domain.
#[derive(Debug, thiserror::Error)]
pub enum PassthroughError {
    /// A config device was refused or could not be moved.
    #[error("{at}: key 'pci'")]
    Config {
        /// The config line.
        at: String,
        /// What the passthrough manager said.
        #[source]
        source: ManagerError,
    },
    /// A config device is held by a host driver and `seize` is off.
    #[error("{at}: key 'pci': {bdf} is on {driver}, a host driver; add seize=1 to its spec (or pci_seize=1) to let pvio take it, or run `pvio pci-assignable-add {bdf}` first")]
    NotSeized {
        /// The config line.
        at: String,
        /// The device.
        bdf: Bdf,
        /// Its driver.
        driver: String,
    },
    /// A device reserved by `pvio assign` cannot be used now.
    #[error("{bdf} is reserved for `{owner}` by `pvio assign` but cannot be given to it; the reservation is kept (`pvio release {bdf}` drops it)")]
    Reserved {
        /// The device.
        bdf: Bdf,
        /// The domain.
        owner: String,
        /// Why.
        #[source]
        source: ManagerError,
    },
}

/// The passthrough manager of this host: `PVIO_HOST_ROOT` (default `/`)
/// for sysfs, procfs and `/dev`, `PVIO_STATE_DIR` (default
/// `/var/lib/pvio`) for the record.
pub fn manager(dry_run: bool) -> Manager {
    let writer = if dry_run {
        SysfsWriter::dry_run()
    } else {
        SysfsWriter::apply()
    };
    Manager::new(Host::under(&host_root()), Ownership::from_env(), writer)
}

/// What a domain's start took.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Taken {
    /// The config's devices (already on the plan's command line).
    pub config: Vec<Bdf>,
    /// Devices reserved by `pvio assign` (added to the command line here).
    pub reserved: Vec<Bdf>,
}

impl Taken {
    /// The `-device` arguments of the reserved devices.
    pub fn extra_qemu_args(&self) -> Vec<String> {
        self.reserved
            .iter()
            .flat_map(|b| ["-device".to_owned(), ids::vfio_pci_device(b, None)])
            .collect()
    }

    /// The domain record's entries of every device.
    pub fn entries(&self) -> Vec<PciEntry> {
        self.config
            .iter()
            .chain(&self.reserved)
            .map(|b| PciEntry {
                host: *b,
                id: ids::passthrough_id(b),
            })
            .collect()
    }
}

/// Prepares the config's devices for `owner` and checks the devices
/// reserved for it. On an error, the config devices taken so far are
/// given back; reservations stay.
pub fn take(m: &Manager, owner: &str, config: &[PciLaunch]) -> Result<Taken, PassthroughError> {
    let mut taken = Taken::default();
    let result = take_into(m, owner, config, &mut taken);
    if result.is_err() && !taken.config.is_empty() {
        for line in give_back_lines(m, owner, Some(&taken.config)) {
            tracing::warn!("{line}");
        }
    }
    result.map(|()| taken)
}

fn take_into(
    m: &Manager,
    owner: &str,
    config: &[PciLaunch],
    taken: &mut Taken,
) -> Result<(), PassthroughError> {
    let mut devices = Vec::new();
    for p in config {
        devices.push((p.bdf, p));
    }
    for set in by_group(m, &devices) {
        let (bdf, p) = set[0];
        for &(d, q) in &set {
            check_seize(m, d, q)?;
        }
        let along: Vec<Bdf> = set[1..].iter().map(|(d, _)| *d).collect();
        let out = m
            .prepare_together_for(bdf, &along, owner, Options::default())
            .map_err(|e| config_error(p, e))?;
        for w in &out.warnings {
            tracing::warn!("{w}");
        }
        for (d, q) in set {
            taken.config.push(d);
            tracing::info!("{d} is on vfio-pci for `{owner}` ({})", q.at);
        }
    }
    let reserved = m
        .owned_by(owner)
        .map_err(|source| PassthroughError::Config {
            at: "the ownership record".to_owned(),
            source,
        })?;
    for r in reserved {
        if taken.config.contains(&r.bdf) {
            continue;
        }
        m.check_ready(r.bdf, owner)
            .map_err(|source| PassthroughError::Reserved {
                bdf: r.bdf,
                owner: owner.to_owned(),
                source,
            })?;
        tracing::info!("{} (reserved by `pvio assign`) goes to `{owner}`", r.bdf);
        taken.reserved.push(r.bdf);
    }
    Ok(())
}

/// A config device with its spec.
type Named<'p> = (Bdf, &'p PciLaunch);

/// The config devices in sets to prepare together: those of one IOMMU
/// group (a GPU and its audio function), in config order, the first of
/// each set first. A device without a group (or not found) is alone; the
/// prepare says why it cannot be taken.
fn by_group<'p>(m: &Manager, devices: &[Named<'p>]) -> Vec<Vec<Named<'p>>> {
    let group = |b: Bdf| m.host().sys.iommu_group(b).ok().flatten();
    let mut sets: Vec<(Option<u32>, Vec<Named<'p>>)> = Vec::new();
    for &(b, p) in devices {
        let g = group(b);
        match sets.iter_mut().find(|(sg, _)| g.is_some() && *sg == g) {
            Some((_, set)) => set.push((b, p)),
            None => sets.push((g, vec![(b, p)])),
        }
    }
    sets.into_iter().map(|(_, set)| set).collect()
}

/// A device held by a host driver needs `seize` (or a record: prepared
/// before by pvio).
fn check_seize(m: &Manager, bdf: Bdf, p: &PciLaunch) -> Result<(), PassthroughError> {
    if p.seize {
        return Ok(());
    }
    let recorded = m
        .ownership()
        .load()
        .map_err(|e| config_error(p, e.into()))?
        .devices
        .contains_key(&bdf);
    if recorded {
        return Ok(());
    }
    let driver = m
        .host()
        .sys
        .driver(bdf)
        .map_err(|e| config_error(p, e.into()))?;
    match driver.filter(|d| d != Sysfs::VFIO_PCI) {
        Some(driver) => Err(PassthroughError::NotSeized {
            at: p.at.clone(),
            bdf,
            driver,
        }),
        None => Ok(()),
    }
}

fn config_error(p: &PciLaunch, source: ManagerError) -> PassthroughError {
    PassthroughError::Config {
        at: p.at.clone(),
        source,
    }
}

/// Gives back the devices of `owner` whose device model is gone: all of
/// them, or with `only`, those among `only`. Returns a line for each.
pub fn give_back_lines(m: &Manager, owner: &str, only: Option<&[Bdf]>) -> Vec<String> {
    m.release_owner(owner, only)
        .into_iter()
        .map(|g| match g.result {
            Ok(Returned::Driver(Some(driver))) => format!("gave {} back to {driver}", g.bdf),
            Ok(Returned::Driver(None)) => format!("gave {} back (no driver)", g.bdf),
            Ok(Returned::Prepared) => format!(
                "left {} on vfio-pci, prepared for guests as it was before `{owner}` took it",
                g.bdf
            ),
            Err(e) => format!("could not give {} back: {}", g.bdf, error_line(&e)),
        })
        .collect()
}

/// The config devices of a launch spec.
pub fn config_bdfs(config: &[PciLaunch]) -> Vec<Bdf> {
    config.iter().map(|p| p.bdf).collect()
}

/// Gives back what the domain `owner` owned once its device model is
/// gone: everything if it ran (`ran`), otherwise only its config devices
/// (a failed start keeps the reservations of `pvio assign`).
pub fn domain_ended(owner: &str, config: &[PciLaunch], ran: bool) -> Vec<String> {
    let m = manager(false);
    let only = config_bdfs(config);
    let lines = give_back_lines(&m, owner, (!ran).then_some(only.as_slice()));
    for l in &lines {
        tracing::info!("{l}");
    }
    lines
}

#[cfg(test)]
#[path = "passthrough_tests.rs"]
mod tests;
