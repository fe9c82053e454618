//! The plan as a person reads it (`pvio create --dry-run`): the domain,
//! its disks and NICs and where each goes, the backends and taps to set
//! up, the device model's command line (one option per line, shell
//! quoted), the warnings, and what the host lacks.

use std::fmt::Write as _;

use super::{DomainPlan, Problem};
use crate::config::cpus::{format_set, CpuAffinity};
use crate::config::diag::escape_controls;
use crate::config::disk::DiskBus;
use crate::config::options::Serial;
use crate::config::Loaded;

/// Quotes `s` for a POSIX shell when it needs it; a value with control
/// characters gets `$'...'` with them escaped, so that none reaches the
/// terminal as it is.
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+%^".contains(c));
    if safe {
        s.to_owned()
    } else if s.chars().any(char::is_control) {
        let mut out = String::from("$'");
        for c in s.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                // Unicode's control characters are all below U+0100.
                c if c.is_control() => {
                    let _ = write!(out, "\\x{:02x}", u32::from(c));
                }
                c => out.push(c),
            }
        }
        out.push('\'');
        out
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The QEMU command line, one option and its value per line.
pub fn command_line(plan: &DomainPlan) -> String {
    let mut out = shell_quote(&plan.qemu.binary.to_string_lossy());
    let mut args = plan.qemu.args.iter().peekable();
    while let Some(a) = args.next() {
        out.push_str(" \\\n    ");
        out.push_str(&shell_quote(a));
        if a.starts_with('-') {
            if let Some(v) = args.next_if(|v| !v.starts_with('-')) {
                out.push(' ');
                out.push_str(&shell_quote(v));
            }
        }
    }
    out
}

fn bus_text(bus: &DiskBus, cdrom: bool) -> String {
    match bus {
        DiskBus::Ide { channel, unit } => {
            let ch = if *channel == 0 {
                "primary"
            } else {
                "secondary"
            };
            let role = if *unit == 0 { "master" } else { "slave" };
            let what = if cdrom { "IDE CD-ROM" } else { "IDE disk" };
            format!("emulated {what}, {ch} channel {role} (ide.{channel} unit {unit})")
        }
        DiskBus::Scsi { target } => format!("emulated SCSI disk, target {target}"),
        DiskBus::Pv { .. } => "PV disk (virtio-blk over vhost-user, pvio block backend)".to_owned(),
    }
}

fn serial_text(s: &Serial) -> String {
    match s {
        Serial::Pty => "pty".to_owned(),
        Serial::Null => "null".to_owned(),
        Serial::File(p) => format!("file:{}", p.display()),
        Serial::Unix(r) => format!("unix:{r}"),
        Serial::Tcp(r) => format!("tcp:{r}"),
        Serial::Udp(r) => format!("udp:{r}"),
        Serial::HostDevice(p) => p.display().to_string(),
    }
}

/// The whole dry-run report.
pub fn report(plan: &DomainPlan, loaded: &Loaded, problems: &[Problem]) -> String {
    let mut o = String::new();
    let source = loaded.spec.source.as_ref().map_or_else(String::new, |p| {
        format!(" from {}", escape_controls(&p.display().to_string()))
    });
    let _ = writeln!(o, "domain {} (uuid {}){source}", plan.name, plan.uuid);
    let _ = writeln!(
        o,
        "  machine {} ({}), accelerator {}, {} MiB, {} vCPU{}{}",
        plan.machine.qemu_name(),
        match plan.machine {
            crate::config::options::Machine::Pc => "i440fx + PIIX3",
            crate::config::options::Machine::Q35 => "q35 + ICH9",
        },
        plan.accel.accel,
        plan.memory_mib,
        plan.vcpus,
        if plan.vcpus == 1 { "" } else { "s" },
        if plan.maxvcpus > plan.vcpus {
            format!(" (up to {})", plan.maxvcpus)
        } else {
            String::new()
        }
    );
    let _ = writeln!(o, "  run dir {}", plan.run_dir.display());
    match &plan.cpu_pinning {
        CpuAffinity::Any => {}
        CpuAffinity::All(set) => {
            let _ = writeln!(o, "  vCPUs pinned to host CPUs {}", format_set(set));
        }
        CpuAffinity::PerVcpu(sets) => {
            for (i, set) in sets.iter().enumerate() {
                let _ = writeln!(o, "  vCPU {i} pinned to host CPUs {}", format_set(set));
            }
        }
    }
    let _ = writeln!(
        o,
        "  on_poweroff {}, on_reboot {}, on_crash {}",
        plan.on_poweroff, plan.on_reboot, plan.on_crash
    );

    let spec = &loaded.spec;
    let boot = if spec.kernel.is_some() {
        "direct kernel boot".to_owned()
    } else {
        let order: String = spec.boot.iter().map(|b| b.letter()).collect();
        format!("boot order {order}")
    };
    let display = match &spec.vnc {
        Some(v) => format!(
            "VNC on {} display {}{}",
            v.listen,
            v.display.unwrap_or(0),
            if v.unused {
                " (or the next free one)"
            } else {
                ""
            }
        ),
        None => "no VNC".to_owned(),
    };
    let serial: Vec<String> = spec.serials.iter().map(serial_text).collect();
    let serial = if serial.is_empty() {
        "no serial port".to_owned()
    } else {
        format!("serial {}", serial.join(", "))
    };
    let _ = writeln!(o, "  {boot}; {display}; {serial}");

    let _ = writeln!(o, "\ndisks:");
    if plan.disks.is_empty() {
        let _ = writeln!(o, "  none");
    }
    for d in &plan.disks {
        let image = d.image.as_ref().map_or_else(
            || "(empty drive)".to_owned(),
            |p| escape_controls(&p.display().to_string()).into_owned(),
        );
        let mode = if d.read_only {
            "read-only"
        } else {
            "read-write"
        };
        let _ = writeln!(
            o,
            "  {:<5} {}: {image} ({}, {mode})",
            d.vdev,
            bus_text(&d.bus, d.cdrom),
            d.format.qemu_name()
        );
    }
    let _ = writeln!(o, "\nnics:");
    if plan.nics.is_empty() {
        let _ = writeln!(o, "  none");
    }
    for n in &plan.nics {
        let kind = if n.model.is_pv() {
            "PV virtio-net (vhost-user, pvio net backend)".to_owned()
        } else {
            format!("emulated {}", n.model.qemu_device())
        };
        let _ = writeln!(
            o,
            "  nic{} {kind}, mac {}{}, tap {} on bridge {}",
            n.devid,
            n.mac,
            if n.random_mac { " (random)" } else { "" },
            n.tap,
            n.bridge
        );
    }
    if !plan.passthrough.is_empty() {
        let _ = writeln!(o, "\npci passthrough:");
        for p in &plan.passthrough {
            let slot = p
                .vslot
                .map_or_else(String::new, |s| format!(" at guest slot {s:#x}"));
            let seize = if p.seize {
                " (seized from its host driver)"
            } else {
                ""
            };
            let _ = writeln!(o, "  {} via vfio-pci{slot}{seize}", p.bdf);
        }
    }

    let _ = writeln!(o, "\nto start first:");
    let none = plan.taps.is_empty() && plan.blk_backends.is_empty() && plan.net_backends.is_empty();
    if none {
        let _ = writeln!(o, "  nothing");
    }
    for t in &plan.taps {
        let mtu = t.mtu.map_or_else(String::new, |m| format!(", mtu {m}"));
        let _ = writeln!(o, "  tap {} on bridge {}{mtu}", t.name, t.bridge);
    }
    for b in plan.blk_backends.iter().chain(&plan.net_backends) {
        let args: Vec<String> = b.args.iter().map(|a| shell_quote(a)).collect();
        let _ = writeln!(o, "  pvio {}", args.join(" "));
    }

    let _ = writeln!(
        o,
        "\ndevice model:\n  {}",
        command_line(plan).replace('\n', "\n  ")
    );

    let mut warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    warnings.extend(loaded.no_effect_line());
    warnings.extend(plan.notes.iter().cloned());
    if !warnings.is_empty() {
        let _ = writeln!(o, "\nwarnings:");
        for w in warnings {
            let _ = writeln!(o, "  {}", escape_controls(&w));
        }
    }
    if !problems.is_empty() {
        let _ = writeln!(o, "\nthe host is not ready:");
        for p in problems {
            let _ = writeln!(o, "  {}", escape_controls(&p.to_string()));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("-vnc"), "-vnc");
        assert_eq!(shell_quote("file=/a b"), "'file=/a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
        // Control characters never reach the terminal raw.
        assert_eq!(
            shell_quote("file=/img/a\u{1b}[2Jb\n.iso"),
            "$'file=/img/a\\x1b[2Jb\\n.iso'"
        );
        assert_eq!(shell_quote("it's\t\\"), "$'it\\'s\\t\\\\'");
        assert_eq!(shell_quote("a\u{9b}b"), "$'a\\x9bb'");
    }
}
