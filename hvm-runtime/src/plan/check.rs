//! What the host lacks for a plan: images, ISOs, kernels and firmware that
//! do not exist, bridges that are missing, PCI devices the host does not
//! have, the device model or a keymap that is not installed. Each problem
//! names the config line it comes from and what to do.

use std::fmt;
use std::path::Path;

use serde::Serialize;

use super::host::{HostView, KEYMAP_DIR};
use super::DomainPlan;
use crate::config::options::Firmware;
use crate::config::{DomainSpec, Location};
use crate::host::media::Wanted;

/// One thing the host lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The config line it comes from, when it comes from one.
    pub at: Option<Location>,
    /// The key.
    pub key: Option<String>,
    /// What is missing and what to do.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.at, &self.key) {
            (Some(at), Some(key)) => write!(f, "{at}: key '{key}': {}", self.message),
            (Some(at), None) => write!(f, "{at}: {}", self.message),
            (None, Some(key)) => write!(f, "key '{key}': {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

fn problem(at: Option<&Location>, key: &str, message: String) -> Problem {
    Problem {
        at: at.cloned(),
        key: Some(key.to_owned()),
        message,
    }
}

/// Checks the host for `plan` (made from `spec`); empty when all is there.
/// The problems come in config line order, those of no line last.
pub fn check_host(spec: &DomainSpec, plan: &DomainPlan, host: &dyn HostView) -> Vec<Problem> {
    let mut out = Vec::new();
    let file = |at: Option<&Location>,
                key: &str,
                what: &str,
                path: &Path,
                wanted: Wanted,
                out: &mut Vec<Problem>| {
        if let Some(why) = host.unusable(path, wanted) {
            out.push(problem(at, key, format!("{what} {} {why}", path.display())));
        }
    };
    for d in &plan.disks {
        if let Some(img) = &d.image {
            let what = if d.cdrom {
                format!("{}: the CD-ROM image", d.vdev)
            } else {
                format!("{}: the image", d.vdev)
            };
            let wanted = Wanted::ImageOrBlockDevice;
            file(Some(&d.at), "disk", &what, img, wanted, &mut out);
        }
    }
    if let Some(k) = &spec.kernel {
        file(
            Some(&k.at),
            "kernel",
            "the kernel",
            &k.value,
            Wanted::ImageFile,
            &mut out,
        );
    }
    if let Some(r) = &spec.ramdisk {
        file(
            Some(&r.at),
            "ramdisk",
            "the ramdisk",
            &r.value,
            Wanted::ImageFile,
            &mut out,
        );
    }
    if let Some(f) = &spec.fda {
        file(
            Some(&f.at),
            "fda",
            "the floppy image",
            &f.value,
            Wanted::ImageOrBlockDevice,
            &mut out,
        );
    }
    match &spec.firmware {
        Firmware::Bios => {}
        Firmware::File(p) => file(
            spec.firmware_at.as_ref(),
            "firmware",
            "the firmware",
            p,
            Wanted::ImageFile,
            &mut out,
        ),
        Firmware::Uefi => {
            if let Some(p) = plan.firmware.as_deref().filter(|p| !host.exists(p)) {
                out.push(problem(
                    spec.firmware_at.as_ref(),
                    "firmware",
                    format!(
                        "UEFI needs OVMF, and {} does not exist; install it: apt-get install ovmf",
                        p.display()
                    ),
                ));
            }
        }
    }
    let mut bridges_seen: Vec<&str> = Vec::new();
    for n in &plan.nics {
        if bridges_seen.contains(&n.bridge.as_str()) {
            continue;
        }
        bridges_seen.push(&n.bridge);
        if !host.is_bridge(&n.bridge) {
            out.push(problem(
                Some(&n.at),
                "vif",
                format!(
                    "bridge {b} does not exist; create it: ip link add {b} type bridge && ip link set {b} up",
                    b = n.bridge
                ),
            ));
        }
    }
    for p in &plan.passthrough {
        if !host.has_pci_device(&p.bdf) {
            out.push(problem(
                Some(&p.at),
                "pci",
                format!(
                    "the host has no PCI device {}; `pvio pci-list` shows what it has",
                    p.bdf
                ),
            ));
            continue;
        }
        // What the start's passthrough checks would refuse: the IOMMU
        // off, the group in use, the host needing it, ...
        let along: Vec<_> = plan
            .passthrough
            .iter()
            .map(|q| q.bdf)
            .filter(|b| *b != p.bdf)
            .collect();
        for why in host.pci_blockers(&p.bdf, &along, &plan.name, p.seize) {
            out.push(problem(Some(&p.at), "pci", why));
        }
    }
    if let Some(k) = &spec.keymap {
        let path = Path::new(KEYMAP_DIR).join(k);
        if !host.exists(&path) {
            out.push(problem(
                None,
                "keymap",
                format!("QEMU has no keymap '{k}' (no {})", path.display()),
            ));
        }
    }
    if host.find_program(&plan.qemu.binary).is_none() {
        let at = spec.device_model_override.as_ref().map(|o| &o.at);
        let hint = if at.is_some() {
            "check device_model_override"
        } else {
            "install it: apt-get install qemu-system-x86"
        };
        out.push(Problem {
            at: at.cloned(),
            key: at.map(|_| "device_model_override".to_owned()),
            message: format!(
                "the device model {} is not found; {hint}",
                plan.qemu.binary.display()
            ),
        });
    }
    out.extend(super::offers::check(spec, plan, host));
    // A stable sort: the problems of one line keep the order above.
    out.sort_by_key(|p| {
        p.at.as_ref()
            .map_or((true, (false, 0)), |at| (false, super::location_key(at)))
    });
    out
}
