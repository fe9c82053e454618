//! The PCI passthrough commands: `pci-list`, `pci-assignable-add`,
//! `pci-assignable-remove`, `pci-assignable-list`, `assign` and `release`.
//!
//! What they do is [`crate::assign`]'s (the host side through
//! `pvio_passthrough::Manager`, the domain side through the domain's
//! supervisor, the rollback when a hot-plug fails); this file only turns
//! arguments into calls, and results, the steps reported along the way
//! and warnings into lines.

use std::process::ExitCode;

use pvio_passthrough::{Bdf, BdfError, DeviceStatus, Options, Refusal, State};
use serde_json::json;

use super::args::{
    AssignArgs, JsonArg, PciAssignableAddArgs, PciAssignableRemoveArgs, PciListArgs, ReleaseArgs,
};
use crate::assign::{self, AssignError, Assigned, Progress};
use crate::plan::ids::vfio_pci_device;

/// A PCI passthrough command failed.
#[derive(Debug, thiserror::Error)]
pub enum PciError {
    /// The address typed is not a PCI address.
    #[error(transparent)]
    Bdf(#[from] BdfError),
    /// The operation refused or failed.
    #[error(transparent)]
    Assign(#[from] AssignError),
    /// JSON output failed.
    #[error("cannot write the output")]
    Json(#[source] serde_json::Error),
    /// A dry run found reasons the real run would refuse (each printed
    /// before, one line each).
    #[error("the dry run found {} (above): `pvio {command}` would refuse {bdf} and change nothing", count(*blockers, "blocker"))]
    Blocked {
        /// The command.
        command: &'static str,
        /// The device.
        bdf: Bdf,
        /// How many.
        blockers: usize,
    },
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Prints a dry run's blockers after its plan, one line each, and makes
/// them the command's error: the real run would stop at them.
fn blocked(command: &'static str, bdf: Bdf, blockers: &[Refusal]) -> Result<ExitCode> {
    if blockers.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for b in blockers {
        eprintln!("pvio: blocker: {b}");
    }
    Err(PciError::Blocked {
        command,
        bdf,
        blockers: blockers.len(),
    })
}

type Result<T> = std::result::Result<T, PciError>;

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
    let host = assign::host_devices(a.all)?;
    if a.json {
        print_json(&json!({ "iommu": host.iommu, "devices": host.devices }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if !host.iommu {
        println!(
            "IOMMU: off: no device can be assigned (VT-d/AMD-Vi in the firmware, \
             `intel_iommu=on` on the kernel command line)"
        );
    }
    for d in &host.devices {
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

/// Shows a step of `assign` or `release` when it happens.
fn show(step: Progress, dry_run: bool) {
    match step {
        Progress::Warning(w) => print_warnings(&[w]),
        Progress::HotPlugged { device, domain } => println!(
            "{} is assigned to `{domain}` and hot-plugged as {}",
            device.host, device.id
        ),
        Progress::HotUnplugged { bdf, owner } => println!("{bdf} is hot-unplugged from `{owner}`"),
        Progress::WouldSend(qmp) => println!("qmp {qmp}"),
        // Collected by the command and shown after the plan.
        Progress::Blocker(_) => {}
        Progress::OwnerNotRunning(owner) if dry_run => {
            println!("(`{owner}` is not running: nothing to hot-unplug)")
        }
        Progress::OwnerNotRunning(_) => {}
        Progress::NotGivenBack { error, .. } => {
            eprintln!("pvio: warning: {}", crate::cli::error_line(&error))
        }
    }
}

/// `pvio pci-assignable-add [--dry-run] [--force] [--group] BDF`.
pub fn assignable_add(a: PciAssignableAddArgs) -> Result<ExitCode> {
    let bdf = parse(&a.bdf)?;
    let opts = Options {
        force: a.force,
        group: a.group,
    };
    let out = assign::assignable_add(bdf, opts, a.dry_run)?;
    print_warnings(&out.warnings);
    if a.dry_run {
        println!("(dry run: nothing was changed)");
        return blocked("pci-assignable-add", bdf, &out.blockers);
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
    let back = assign::assignable_remove(bdf, a.rebind, a.dry_run)?;
    if a.dry_run {
        println!("(dry run: nothing was changed)");
    } else {
        match back.driver {
            Some(d) => println!("{bdf} is back on {d}"),
            None if a.rebind => println!("{bdf} had no driver before; it is left unbound"),
            None => println!("{bdf} is unbound (no driver); `-r` rebinds the driver it had"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `pvio pci-assignable-list [--json]`.
pub fn assignable_list(a: JsonArg) -> Result<ExitCode> {
    let records = assign::prepared()?;
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

/// `pvio assign [--dry-run] [--group] [--force] BDF DOMAIN`: prepare the
/// device and record DOMAIN as its owner; hot-plug it if DOMAIN runs,
/// otherwise it is added at the domain's next `pvio create`.
pub fn assign(a: AssignArgs) -> Result<ExitCode> {
    let bdf = parse(&a.bdf)?;
    let opts = Options {
        force: a.force,
        group: a.group,
    };
    let dry = a.dry_run;
    let name = &a.domain;
    let mut blockers = Vec::new();
    let assigned = assign::assign(bdf, name, opts, dry, &mut |p| match p {
        Progress::Blocker(b) => blockers.push(b),
        p => show(p, dry),
    })?;
    match assigned {
        Assigned::Reserved(devices) if dry => {
            for d in &devices {
                println!(
                    "qemu -device {} (not run now: `{name}` is not running; the device would be \
                     reserved for it and added at `{name}`'s next `pvio create`)",
                    vfio_pci_device(d, None)
                );
            }
            println!("(dry run: nothing was changed)");
        }
        Assigned::Reserved(devices) => {
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
        Assigned::Preview(lines) => {
            for line in &lines {
                println!("qmp {line}");
            }
            println!("(dry run: nothing was changed)");
        }
        Assigned::HotPlugged(plugged) => {
            if plugged.is_empty() {
                println!("{bdf} is already assigned to `{name}`");
            }
        }
    }
    blocked("assign", bdf, &blockers)
}

/// `pvio release [--dry-run] BDF`.
pub fn release(a: ReleaseArgs) -> Result<ExitCode> {
    let bdf = parse(&a.bdf)?;
    let dry = a.dry_run;
    let back = assign::release(bdf, dry, &mut |p| show(p, dry))?;
    if dry {
        println!("(dry run: nothing was changed)");
    } else {
        println!(
            "{bdf} is released{}",
            back.driver
                .map_or(String::new(), |d| format!(" and back on {d}"))
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

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
