//! Host PCI devices given to domains and taken back while pvio runs: what
//! `pvio pci-assignable-add`, `pci-assignable-remove`, `assign` and
//! `release` do, without the command line.
//!
//! The host side (checks, vfio-pci, the ownership record) is
//! `pvio_passthrough::Manager` ([`crate::domain::passthrough::manager`]);
//! the domain side goes through the domain's supervisor: [`assign`]
//! hot-plugs into a running domain (`Request::PciAttach`, one device at a
//! time) and reserves the device for a stopped one's next `pvio create`;
//! when a hot-plug fails it gives back what it took. [`release`] first
//! hot-unplugs the device from a running owner
//! ([`unplug_from_running_owner`], `Request::PciDetach`).
//!
//! Nothing here prints. What happens along the way (a warning, a device
//! hot-plugged or unplugged, a device the rollback could not give back) is
//! handed to the caller's `report` as a [`Progress`] when it happens, so a
//! command can show each step in order even when a later one fails; the
//! end is the returned value or a typed [`AssignError`]. This module uses
//! `domain` and `plan`, never `cli`: the `pvio` command calls it.

use pvio_passthrough::ownership::Record;
use pvio_passthrough::{
    Bdf, BdfError, DeviceStatus, HookError, Manager, ManagerError, Options, Outcome, Refusal,
};

use crate::domain::control::Request;
use crate::domain::passthrough::manager;
use crate::domain::record::{DomainRecord, PciEntry};
use crate::domain::rundir::valid_name;
use crate::domain::{lifecycle, DomainError, RunRoot};
use crate::plan::ids::passthrough_id;

/// A passthrough operation refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AssignError {
    /// A PCI address does not parse.
    #[error(transparent)]
    Bdf(#[from] BdfError),
    /// The passthrough manager refused or failed.
    #[error(transparent)]
    Manager(#[from] ManagerError),
    /// The domain's state could not be read, or its supervisor refused.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The running domain did not take the device.
    #[error("cannot hot-plug {bdf} into `{domain}`{}", if *given_back { "; what this command took was given back (to its driver, or to pci-assignable-add's state if it was prepared before)" } else { "; it stays reserved for the domain" })]
    Attach {
        /// The device.
        bdf: Bdf,
        /// The domain.
        domain: String,
        /// Whether this command gave the device back.
        given_back: bool,
        /// What the supervisor said.
        #[source]
        source: DomainError,
    },
}

/// The result of this module's operations.
pub type Result<T> = std::result::Result<T, AssignError>;

/// One step of an operation, reported when it happens.
#[derive(Debug)]
pub enum Progress {
    /// The passthrough manager warns (what `--force` overrode, ...).
    Warning(String),
    /// A device was hot-plugged into a running domain.
    HotPlugged {
        /// The device and its QEMU id.
        device: PciEntry,
        /// The domain.
        domain: String,
    },
    /// A device was hot-unplugged from its running owner.
    HotUnplugged {
        /// The device.
        bdf: Bdf,
        /// Its owner.
        owner: String,
    },
    /// Dry run: the QMP command that would be sent, as one JSON line.
    WouldSend(String),
    /// Dry run: a reason the real run would refuse. The dry run goes on
    /// past it, so that the whole plan and every reason are shown.
    Blocker(Refusal),
    /// The owner of a device being given back is not running: there is
    /// nothing to hot-unplug.
    OwnerNotRunning(String),
    /// After a failed hot-plug, a device this operation took could not be
    /// given back; `pvio release` finishes it.
    NotGivenBack {
        /// The device.
        bdf: Bdf,
        /// Why.
        error: ManagerError,
    },
}

/// The host's PCI devices, as `pvio pci-list` shows them.
#[derive(Debug)]
pub struct HostDevices {
    /// Whether the host's IOMMU is on (no device can be assigned without).
    pub iommu: bool,
    /// The devices with their state and verdict.
    pub devices: Vec<DeviceStatus>,
}

/// Where a device went back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// The host driver it is on now; `None` when it has none, and in a
    /// dry run (nothing is read then).
    pub driver: Option<String>,
}

/// What [`assign`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assigned {
    /// The domain is not running: these devices (the one named, then the
    /// group members taken along) are reserved for it and added at its
    /// next `pvio create` (in a dry run: would be).
    Reserved(Vec<Bdf>),
    /// Dry run, the domain running: the QMP commands the hot-plug would
    /// send, one JSON line each (none when it has every device already).
    Preview(Vec<String>),
    /// The domain running: the devices hot-plugged now (each also
    /// reported as [`Progress::HotPlugged`]); none when it had them all.
    HotPlugged(Vec<PciEntry>),
}

/// The QMP id pvio gives a passed-through device: `pt-0000-03-00.0`, the
/// same as the plan gives a config's `pci` device ([`passthrough_id`]).
pub fn qmp_id(bdf: Bdf) -> String {
    passthrough_id(bdf)
}

/// The QMP command that hot-unplugs the device with QEMU id `id`.
pub fn qmp_device_del(id: &str) -> serde_json::Value {
    serde_json::json!({ "execute": "device_del", "arguments": { "id": id } })
}

/// The host's PCI devices (`all`: bridges and host-internal ones too).
pub fn host_devices(all: bool) -> Result<HostDevices> {
    let m = manager(false);
    let devices = m.list(all)?;
    let iommu = m.host().sys.iommu_enabled().unwrap_or(false);
    Ok(HostDevices { iommu, devices })
}

/// The records of the devices prepared for guests.
pub fn prepared() -> Result<Vec<Record>> {
    Ok(manager(false).prepared()?)
}

/// `pci-assignable-add`: prepares `bdf` for guests (the checks, then
/// vfio-pci), with no owner.
pub fn assignable_add(bdf: Bdf, opts: Options, dry_run: bool) -> Result<Outcome> {
    Ok(manager(dry_run).prepare(bdf, opts)?)
}

/// `pci-assignable-remove`: gives a prepared device with no owner back to
/// the host; `rebind` binds the driver it had before.
pub fn assignable_remove(bdf: Bdf, rebind: bool, dry_run: bool) -> Result<Released> {
    let m = manager(dry_run);
    m.give_back(bdf, rebind)?;
    Ok(released(&m, bdf, dry_run))
}

fn released(m: &Manager, bdf: Bdf, dry_run: bool) -> Released {
    let driver = if dry_run {
        None
    } else {
        m.host().sys.driver(bdf).ok().flatten()
    };
    Released { driver }
}

/// The record of `name` if it is running (or paused), `None` if it is not.
fn running(root: &RunRoot, name: &str) -> std::result::Result<Option<DomainRecord>, DomainError> {
    match root.live(name) {
        Ok(found) => Ok(Some(found.record)),
        Err(DomainError::NoSuchDomain(_) | DomainError::SupervisorDied { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `assign`: prepares `bdf` and records `domain` as its owner; hot-plugs
/// it (with the group members taken along) if `domain` runs, otherwise it
/// is added at the domain's next `pvio create`. When a hot-plug fails,
/// what this call took is given back (unplugging the group members
/// already added); a reservation made earlier stays, the domain's end
/// gives it back.
pub fn assign(
    bdf: Bdf,
    domain: &str,
    opts: Options,
    dry_run: bool,
    report: &mut dyn FnMut(Progress),
) -> Result<Assigned> {
    if !valid_name(domain) {
        return Err(DomainError::BadName(domain.to_owned()).into());
    }
    let root = RunRoot::from_env();
    let live = running(&root, domain)?;
    let m = manager(dry_run);
    let out = m.prepare_for(bdf, domain, opts)?;
    for w in &out.warnings {
        report(Progress::Warning(w.clone()));
    }
    for b in &out.blockers {
        report(Progress::Blocker(b.clone()));
    }
    let devices: Vec<Bdf> = std::iter::once(bdf)
        .chain(out.taken_along.iter().copied())
        .collect();
    let Some(record) = live else {
        return Ok(Assigned::Reserved(devices));
    };
    // The domain runs: hot-plug what it does not have yet.
    let missing: Vec<(Bdf, PciEntry)> = devices
        .iter()
        .filter(|d| !record.pci.iter().any(|p| p.host == **d))
        .map(|&d| {
            let entry = PciEntry {
                host: d,
                id: qmp_id(d),
            };
            (d, entry)
        })
        .collect();
    if dry_run {
        let mut qmp = Vec::new();
        if !missing.is_empty() {
            let req = Request::PciAttachPreview {
                devices: missing.iter().map(|(_, e)| e.clone()).collect(),
            };
            let lines = lifecycle::request(&root, domain, &req)?;
            for line in lines.as_array().into_iter().flatten() {
                qmp.push(line.as_str().unwrap_or_default().to_owned());
            }
        }
        return Ok(Assigned::Preview(qmp));
    }
    let mut plugged = Vec::new();
    for (d, entry) in missing {
        let req = Request::PciAttach {
            host: entry.host,
            id: entry.id.clone(),
        };
        if let Err(source) = lifecycle::request(&root, domain, &req) {
            if out.claimed {
                roll_back(&m, bdf, domain, report);
            }
            return Err(AssignError::Attach {
                bdf: d,
                domain: domain.to_owned(),
                given_back: out.claimed,
                source,
            });
        }
        report(Progress::HotPlugged {
            device: entry.clone(),
            domain: domain.to_owned(),
        });
        plugged.push(entry);
    }
    Ok(Assigned::HotPlugged(plugged))
}

/// Gives back what a failed `assign` took: to the host driver, or to the
/// prepared state it was in, unplugging the group members already added.
fn roll_back(m: &Manager, bdf: Bdf, domain: &str, report: &mut dyn FnMut(Progress)) {
    let given = m.give_back_owned(domain, Some(&[bdf]), &mut |r| {
        unplug_from_running_owner(m, r, false, &mut *report).map_err(HookError::from)
    });
    for g in given {
        if let Err(error) = g.result {
            report(Progress::NotGivenBack { bdf: g.bdf, error });
        }
    }
}

/// The hook a release runs before it unbinds anything: if the owner of
/// `record` runs, each of the devices (the one recorded and the group
/// members taken along with it) that its QEMU has is hot-unplugged (QMP
/// `device_del`, then the guest's `DEVICE_DELETED`) through its
/// supervisor. An error stops the release with nothing changed on the
/// host. In a dry run it reports the QMP commands instead.
pub fn unplug_from_running_owner(
    m: &Manager,
    record: &Record,
    dry_run: bool,
    report: &mut dyn FnMut(Progress),
) -> std::result::Result<(), DomainError> {
    let Some(owner) = &record.owner else {
        return Ok(());
    };
    let root = RunRoot::from_env();
    let Some(live) = running(&root, owner)? else {
        report(Progress::OwnerNotRunning(owner.clone()));
        return Ok(());
    };
    let mut hosts = vec![record.bdf];
    if let Ok(members) = m.owned_by(owner) {
        hosts.extend(
            members
                .iter()
                .filter(|r| r.group_of == Some(record.bdf))
                .map(|r| r.bdf),
        );
    }
    for h in hosts {
        let Some(entry) = live.pci.iter().find(|p| p.host == h) else {
            continue;
        };
        if dry_run {
            report(Progress::WouldSend(qmp_device_del(&entry.id).to_string()));
            continue;
        }
        let req = Request::PciDetach {
            id: entry.id.clone(),
        };
        lifecycle::request(&root, owner, &req)?;
        report(Progress::HotUnplugged {
            bdf: h,
            owner: owner.clone(),
        });
    }
    Ok(())
}

/// `release`: takes `bdf` from its owner (hot-unplugged first if the owner
/// runs) and gives it back to the driver it had; the record is dropped.
pub fn release(bdf: Bdf, dry_run: bool, report: &mut dyn FnMut(Progress)) -> Result<Released> {
    let m = manager(dry_run);
    m.release(bdf, &mut |r| {
        unplug_from_running_owner(&m, r, dry_run, &mut *report).map_err(HookError::from)
    })?;
    Ok(released(&m, bdf, dry_run))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qmp_commands_name_the_device() {
        let bdf: Bdf = "0000:03:00.0".parse().unwrap();
        assert_eq!(qmp_id(bdf), "pt-0000-03-00.0");
        assert_eq!(
            qmp_device_del(&qmp_id(bdf))["arguments"]["id"],
            "pt-0000-03-00.0"
        );
    }

    #[test]
    fn a_bad_domain_name_is_refused_before_anything_runs() {
        let bdf: Bdf = "0000:03:00.0".parse().unwrap();
        let mut steps = Vec::new();
        let err = assign(bdf, "../etc", Options::default(), true, &mut |p| {
            steps.push(p)
        })
        .unwrap_err();
        assert!(matches!(err, AssignError::Domain(DomainError::BadName(_))));
        assert!(steps.is_empty());
    }

    #[test]
    fn a_hook_error_keeps_its_causes_under_the_managers() {
        let err = AssignError::Attach {
            bdf: "0000:03:00.0".parse().unwrap(),
            domain: "web".into(),
            given_back: false,
            source: DomainError::NoSuchDomain("web".into()),
        };
        let err = ManagerError::Unplug {
            bdf: "0000:03:00.0".parse().unwrap(),
            owner: "web".into(),
            source: HookError::from(err).into(),
        };
        assert_eq!(
            crate::report::error_line(&err),
            "cannot take 0000:03:00.0 from `web` (nothing was changed on the host): \
             cannot hot-plug 0000:03:00.0 into `web`; it stays reserved for the domain: \
             no domain named 'web' is running; `pvio list` shows the running ones"
        );
    }
}
