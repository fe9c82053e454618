//! The PCI passthrough commands: `pci-list`, `pci-assignable-add`,
//! `pci-assignable-remove`, `pci-assignable-list`, `assign` and `release`.
//!
//! The host side (sysfs, vfio-pci, the ownership record) is
//! `pvio_passthrough::Manager`; this file only turns arguments into calls and
//! results into lines. The domain side of `assign` and `release` goes
//! through the domain's supervisor: `assign` hot-plugs into a running
//! domain (`Request::PciAttach`) and reserves the device for a stopped
//! one's next `pvio create`; `release` first hot-unplugs it from a running
//! owner ([`hot_unplug_from_running_owner`], `Request::PciDetach`).

use std::process::ExitCode;

use pvio_passthrough::ownership::Record;
use pvio_passthrough::{
    Bdf, BdfError, DeviceStatus, Manager, ManagerError, Options, Refusal, State,
};
use serde_json::json;

use super::args::{
    AssignArgs, JsonArg, PciAssignableAddArgs, PciAssignableRemoveArgs, PciListArgs, ReleaseArgs,
};
use crate::domain::control::Request;
use crate::domain::record::{DomainRecord, PciEntry};
use crate::domain::rundir::valid_name;
use crate::domain::{actions, DomainError, RunRoot};
use crate::plan::ids::{passthrough_id, vfio_pci_device};

/// A PCI passthrough command failed.
#[derive(Debug, thiserror::Error)]
pub enum PciError {
    /// The address typed is not a PCI address.
    #[error(transparent)]
    Bdf(#[from] BdfError),
    /// The passthrough manager refused or failed.
    #[error(transparent)]
    Manager(#[from] ManagerError),
    /// JSON output failed.
    #[error("cannot write the output")]
    Json(#[source] serde_json::Error),
    /// The domain's state could not be read.
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

type Result<T> = std::result::Result<T, PciError>;

/// The manager for this host: `PVIO_HOST_ROOT` (default `/`) for sysfs,
/// procfs and `/dev`, `PVIO_STATE_DIR` (default `/var/lib/pvio`) for the
/// record.
fn manager(dry_run: bool) -> Manager {
    crate::domain::passthrough::manager(dry_run)
}

fn parse(bdf: &str) -> Result<Bdf> {
    Ok(bdf.parse()?)
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(PciError::Json)?;
    println!("{text}");
    Ok(())
}

/// `pvio pci-list [--all] [--json]`.
pub fn pci_list(a: PciListArgs) -> Result<ExitCode> {
    let m = manager(false);
    let list = m.list(a.all)?;
    let iommu = m.host().sys.iommu_enabled().unwrap_or(false);
    if a.json {
        print_json(&json!({ "iommu": iommu, "devices": list }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if !iommu {
        println!(
            "IOMMU: off: no device can be assigned (VT-d/AMD-Vi in the firmware, \
             `intel_iommu=on` on the kernel command line)"
        );
    }
    for d in &list {
        print!("{}", device_lines(d));
    }
    Ok(ExitCode::SUCCESS)
}

/// Two lines per device, as `lspci` and then the verdict.
fn device_lines(d: &DeviceStatus) -> String {
    let dev = &d.device;
    let group = match dev.iommu_group {
        None => "no IOMMU group".to_owned(),
        Some(g) if dev.group_members.is_empty() => format!("IOMMU group {g} (alone)"),
        Some(g) => {
            let members: Vec<String> = dev.group_members.iter().map(Bdf::to_string).collect();
            format!("IOMMU group {g} with {}", members.join(", "))
        }
    };
    let why = || {
        let why: Vec<String> = d
            .refusals
            .iter()
            .map(|r| match r {
                Refusal::NoIommu => "the IOMMU is off (see above)".to_owned(),
                other => other.to_string(),
            })
            .collect();
        why.join("; ")
    };
    let verdict = match (d.state, d.assignable) {
        (State::Prepared, true) => "prepared for guests".to_owned(),
        (State::Prepared, false) => format!("prepared for guests, but not assignable: {}", why()),
        (State::Assigned, _) => format!("assigned to `{}`", d.owner.as_deref().unwrap_or_default()),
        (State::HalfDone, _) => format!(
            "HALF-DONE: {}; `pvio release {}` finishes giving it back",
            d.operation.as_deref().unwrap_or_default(),
            dev.bdf
        ),
        (State::Stale, _) => format!(
            "STALE: {}; `pvio release {}` clears the record",
            d.operation.as_deref().unwrap_or_default(),
            dev.bdf
        ),
        (_, true) => "assignable".to_owned(),
        (_, false) => format!("not assignable: {}", why()),
    };
    format!(
        "{} {} [{:04x}]: {} [{:04x}:{:04x}]\n    driver {}, {group}, {verdict}\n",
        dev.bdf,
        dev.class_name,
        dev.class_code(),
        dev.description(),
        dev.vendor_id,
        dev.device_id,
        dev.driver.as_deref().unwrap_or("none"),
    )
}

fn print_warnings(warnings: &[String]) {
    for w in warnings {
        eprintln!("pvio: warning: {w}");
    }
}

/// `pvio pci-assignable-add [--dry-run] [--force] [--group] BDF`.
pub fn assignable_add(a: PciAssignableAddArgs) -> Result<ExitCode> {
    let bdf = parse(&a.bdf)?;
    let m = manager(a.dry_run);
    let opts = Options {
        force: a.force,
        group: a.group,
    };
    let out = m.prepare(bdf, opts)?;
    print_warnings(&out.warnings);
    if a.dry_run {
        println!("(dry run: nothing was changed)");
    } else if out.already {
        println!("{bdf} is already prepared for guests");
    } else {
        let mut line = format!("{bdf} is bound to vfio-pci");
        if let Some(g) = out.group {
            line.push_str(&format!(" (IOMMU group {g}, /dev/vfio/{g}"));
            line.push_str(if out.viable { ", VIABLE)" } else { ")" });
        }
        println!("{line}");
        for t in &out.taken_along {
            println!("{t} is bound to vfio-pci (same IOMMU group)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `pvio pci-assignable-remove [-r] [--dry-run] BDF`.
pub fn assignable_remove(a: PciAssignableRemoveArgs) -> Result<ExitCode> {
    let bdf = parse(&a.bdf)?;
    let m = manager(a.dry_run);
    m.give_back(bdf, a.rebind)?;
    if a.dry_run {
        println!("(dry run: nothing was changed)");
    } else {
        let driver = m.host().sys.driver(bdf).ok().flatten();
        match driver {
            Some(d) => println!("{bdf} is back on {d}"),
            None if a.rebind => println!("{bdf} had no driver before; it is left unbound"),
            None => println!("{bdf} is unbound (no driver); `-r` rebinds the driver it had"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `pvio pci-assignable-list [--json]`.
pub fn assignable_list(a: JsonArg) -> Result<ExitCode> {
    let records = manager(false).prepared()?;
    if a.json {
        print_json(&records)?;
        return Ok(ExitCode::SUCCESS);
    }
    for r in &records {
        println!(
            "{}  owner {}  (was on {})",
            r.bdf,
            r.owner
                .as_deref()
                .map_or("-".to_owned(), |o| format!("`{o}`")),
            r.previous_driver.as_deref().unwrap_or("no driver")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The QMP id pvio gives a passed-through device: `pt-0000-03-00.0`, the
/// same as the plan gives a config's `pci` device ([`passthrough_id`]).
pub fn qmp_id(bdf: Bdf) -> String {
    passthrough_id(bdf)
}

/// The QMP command that hot-unplugs the device with QEMU id `id`.
pub fn qmp_device_del(id: &str) -> serde_json::Value {
    json!({ "execute": "device_del", "arguments": { "id": id } })
}

/// The record of `name` if it is running (or paused), `None` if it is not.
fn running(root: &RunRoot, name: &str) -> Result<Option<DomainRecord>> {
    match root.live(name) {
        Ok(found) => Ok(Some(found.record)),
        Err(DomainError::NoSuchDomain(_) | DomainError::SupervisorDied { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `pvio assign [--dry-run] [--group] [--force] BDF DOMAIN`: prepare the
/// device and record DOMAIN as its owner; hot-plug it if DOMAIN runs,
/// otherwise it is added at the domain's next `pvio create`.
pub fn assign(a: AssignArgs) -> Result<ExitCode> {
    let bdf = parse(&a.bdf)?;
    if !valid_name(&a.domain) {
        return Err(DomainError::BadName(a.domain.clone()).into());
    }
    let root = RunRoot::from_env();
    let live = running(&root, &a.domain)?;
    let m = manager(a.dry_run);
    let opts = Options {
        force: a.force,
        group: a.group,
    };
    let out = m.prepare_for(bdf, &a.domain, opts)?;
    print_warnings(&out.warnings);
    let devices: Vec<Bdf> = std::iter::once(bdf)
        .chain(out.taken_along.iter().copied())
        .collect();
    let name = &a.domain;
    let Some(record) = live else {
        if a.dry_run {
            for d in &devices {
                println!(
                    "qemu -device {} (not run now: `{name}` is not running; the device would be \
                     reserved for it and added at `{name}`'s next `pvio create`)",
                    vfio_pci_device(d, None)
                );
            }
            println!("(dry run: nothing was changed)");
        } else {
            let list: Vec<String> = devices.iter().map(Bdf::to_string).collect();
            println!(
                "{} reserved for `{name}`; it is added at `{name}`'s next `pvio create`",
                if list.len() == 1 {
                    format!("{} is", list[0])
                } else {
                    format!("{} are", list.join(", "))
                }
            );
        }
        return Ok(ExitCode::SUCCESS);
    };
    // The domain runs: hot-plug what it does not have yet.
    let missing: Vec<PciEntry> = devices
        .iter()
        .filter(|d| !record.pci.iter().any(|p| p.host == d.to_string()))
        .map(|d| PciEntry {
            host: d.to_string(),
            id: qmp_id(*d),
        })
        .collect();
    if a.dry_run {
        if !missing.is_empty() {
            let req = Request::PciAttachPreview {
                devices: missing.clone(),
            };
            let lines = actions::request(&root, name, &req)?;
            for line in lines.as_array().into_iter().flatten() {
                println!("qmp {}", line.as_str().unwrap_or_default());
            }
        }
        println!("(dry run: nothing was changed)");
        return Ok(ExitCode::SUCCESS);
    }
    for d in &missing {
        let req = Request::PciAttach {
            host: d.host.clone(),
            id: d.id.clone(),
        };
        if let Err(source) = actions::request(&root, name, &req) {
            // Give back what this command took (unplugging the group
            // members already added): to the host driver, or to the
            // prepared state it was in; a reservation made earlier stays
            // (the domain's end gives it back).
            if out.claimed {
                for g in m.give_back_owned(name, Some(&[bdf]), &mut |r| {
                    hot_unplug_from_running_owner(&m, r, false)
                }) {
                    if let Err(e) = g.result {
                        eprintln!("pvio: warning: {}", crate::cli::error_line(&e));
                    }
                }
            }
            return Err(PciError::Attach {
                bdf: parse(&d.host)?,
                domain: name.clone(),
                given_back: out.claimed,
                source,
            });
        }
        println!(
            "{} is assigned to `{name}` and hot-plugged as {}",
            d.host, d.id
        );
    }
    if missing.is_empty() {
        println!("{bdf} is already assigned to `{name}`");
    }
    Ok(ExitCode::SUCCESS)
}

/// The hook `release` runs before it unbinds anything: if the owner runs,
/// each of the devices (the one named and the group members taken along
/// with it) that its QEMU has is hot-unplugged (QMP `device_del`, then the
/// guest's `DEVICE_DELETED`) through its supervisor. An error stops the
/// release with nothing changed on the host. In dry-run mode it prints
/// the QMP commands instead.
pub fn hot_unplug_from_running_owner(
    m: &Manager,
    record: &Record,
    dry_run: bool,
) -> std::result::Result<(), String> {
    let Some(owner) = &record.owner else {
        return Ok(());
    };
    let root = RunRoot::from_env();
    let live = running(&root, owner).map_err(|e| crate::cli::error_line(&e))?;
    let Some(live) = live else {
        if dry_run {
            println!("(`{owner}` is not running: nothing to hot-unplug)");
        }
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
        let Some(entry) = live.pci.iter().find(|p| p.host == h.to_string()) else {
            continue;
        };
        if dry_run {
            let del = qmp_device_del(&entry.id);
            println!("qmp {del}");
            continue;
        }
        let req = Request::PciDetach {
            id: entry.id.clone(),
        };
        actions::request(&root, owner, &req).map_err(|e| crate::cli::error_line(&e))?;
        println!("{h} is hot-unplugged from `{owner}`");
    }
    Ok(())
}

/// `pvio release [--dry-run] BDF`.
pub fn release(a: ReleaseArgs) -> Result<ExitCode> {
    let bdf = parse(&a.bdf)?;
    let m = manager(a.dry_run);
    let dry = a.dry_run;
    m.release(bdf, &mut |r| hot_unplug_from_running_owner(&m, r, dry))?;
    if dry {
        println!("(dry run: nothing was changed)");
    } else {
        let driver = m.host().sys.driver(bdf).ok().flatten();
        println!(
            "{bdf} is released{}",
            driver.map_or(String::new(), |d| format!(" and back on {d}"))
        );
    }
    Ok(ExitCode::SUCCESS)
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

    fn status(state: State, refusals: Vec<Refusal>) -> DeviceStatus {
        DeviceStatus {
            device: pvio_passthrough::PciDevice {
                bdf: "0000:01:00.0".parse().unwrap(),
                class: 0x030000,
                vendor_id: 0x10de,
                device_id: 0x1b80,
                subsystem_vendor_id: 0,
                subsystem_device_id: 0,
                vendor_name: Some("NVIDIA Corporation".into()),
                device_name: Some("GP104 [GeForce GTX 1080]".into()),
                class_name: "VGA compatible controller".into(),
                driver: Some("nouveau".into()),
                driver_override: None,
                iommu_group: Some(7),
                group_members: vec!["0000:01:00.1".parse().unwrap()],
                is_bridge: false,
                boot_vga: false,
            },
            assignable: refusals.is_empty(),
            refusals,
            state,
            owner: None,
            operation: Some("assigning 0000:01:00.0 to `win` (pid 7) after step `unbound`".into()),
        }
    }

    #[test]
    fn device_lines_show_names_group_and_verdict() {
        let text = device_lines(&status(State::Host, vec![Refusal::NoIommu]));
        assert_eq!(
            text,
            "0000:01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP104 [GeForce GTX 1080] [10de:1b80]\n    \
             driver nouveau, IOMMU group 7 with 0000:01:00.1, not assignable: the IOMMU is off (see above)\n"
        );
        let text = device_lines(&status(State::HalfDone, vec![]));
        assert!(
            text.contains("HALF-DONE: assigning 0000:01:00.0 to `win` (pid 7) after step `unbound`; `pvio release 0000:01:00.0` finishes"),
            "{text}"
        );
        assert!(device_lines(&status(State::Host, vec![])).ends_with("assignable\n"));
        let text = device_lines(&status(State::Stale, vec![]));
        assert!(
            text.contains("STALE: assigning 0000:01:00.0 to `win`")
                && text.contains("`pvio release 0000:01:00.0` clears the record"),
            "{text}"
        );
        let owned = Refusal::GroupOwned {
            group: 7,
            member: "0000:01:00.1".parse().unwrap(),
            owner: "domA".into(),
        };
        let text = device_lines(&status(State::Prepared, vec![owned]));
        assert!(
            text.contains(
                "prepared for guests, but not assignable: IOMMU group 7 belongs to `domA`"
            ),
            "{text}"
        );
        assert!(device_lines(&status(State::Prepared, vec![])).ends_with(", prepared for guests\n"));
    }

    #[test]
    fn bad_addresses_fail_before_anything_runs() {
        let cli =
            crate::cli::try_parse_from(["pvio", "pci-assignable-add", "0000:03:20.0"]).unwrap();
        let err = crate::cli::run(cli).unwrap_err();
        let line = crate::cli::error_line(&err);
        assert!(line.contains("slot 0x20"), "{line}");
        let cli = crate::cli::try_parse_from(["pvio", "release", "--dry-run", "zz"]).unwrap();
        let line = crate::cli::error_line(&crate::cli::run(cli).unwrap_err());
        assert!(line.contains("not a PCI address"), "{line}");
        // A domain name the runtime would refuse is an error, not a
        // reservation.
        for name in ["../etc", ".hidden", "web server", ""] {
            let cli = crate::cli::try_parse_from(["pvio", "assign", "--dry-run", "03:00.0", name])
                .unwrap();
            let line = crate::cli::error_line(&crate::cli::run(cli).unwrap_err());
            assert!(line.contains("cannot name a domain"), "{name}: {line}");
        }
    }
}
