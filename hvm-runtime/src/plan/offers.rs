//! What the installed device model offers, checked against what a plan
//! needs, so that what passes the dry run also starts: the display
//! (`-display help`: Debian's SDL display lives in `qemu-system-gui`), the
//! device models (`-device help`) and the audio backend (`-audiodev
//! help`). Each missing one is a problem naming the package or the key to
//! change.
//!
//! It must not run QEMU itself: the host's view ([`HostView`]) answers.

use super::host::HostView;
use super::{DomainPlan, Problem};
use crate::config::DomainSpec;

pub use super::host::Listing;

/// Whether a `-device help` text lists the device model `name`
/// (`name "virtio-net-pci", bus PCI, ...`).
fn lists_device(text: &str, name: &str) -> bool {
    let quoted = format!("name \"{name}\"");
    text.lines().any(|l| l.trim_start().starts_with(&quoted))
}

/// Whether a `-display help` or `-audiodev help` text lists `name` (one
/// name a line, after a heading).
fn lists_word(text: &str, name: &str) -> bool {
    text.lines().any(|l| l.trim() == name)
}

/// The problems of `plan` with what the host's QEMU offers; none when the
/// host cannot say (no QEMU: another check reports that).
pub fn check(spec: &DomainSpec, plan: &DomainPlan, host: &dyn HostView) -> Vec<Problem> {
    let mut out = Vec::new();
    let qemu = &plan.qemu.binary;
    let args = &plan.qemu.args;
    let values = |flag: &str| -> Vec<&str> {
        args.iter()
            .zip(args.iter().skip(1))
            .filter(|(f, _)| *f == flag)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    if spec.sdl {
        if let Some(text) = host.qemu_offers(qemu, Listing::Displays) {
            if !lists_word(&text, "sdl") {
                out.push(Problem {
                    at: None,
                    key: Some("sdl".to_owned()),
                    message: "this QEMU has no SDL display: install it (Debian: apt-get install qemu-system-gui), or set sdl=0 and use vnc=1".to_owned(),
                });
            }
        }
    }
    if let Some(text) = host.qemu_offers(qemu, Listing::Devices) {
        let mut seen: Vec<&str> = Vec::new();
        for d in values("-device") {
            let model = d.split(',').next().unwrap_or_default();
            if model.is_empty() || seen.contains(&model) {
                continue;
            }
            seen.push(model);
            if !lists_device(&text, model) {
                out.push(Problem {
                    at: None,
                    key: None,
                    message: format!(
                        "this QEMU has no device model '{model}' (`{} -device help` lists what it has); change the key that asks for it or install a QEMU that has it",
                        qemu.display()
                    ),
                });
            }
        }
    }
    for a in values("-audiodev") {
        let driver = a.split(',').next().unwrap_or_default();
        if let Some(text) = host.qemu_offers(qemu, Listing::Audio) {
            if !lists_word(&text, driver) {
                out.push(Problem {
                    at: None,
                    key: Some("soundhw".to_owned()),
                    message: format!(
                        "this QEMU has no '{driver}' audio backend; remove soundhw or install the QEMU audio modules"
                    ),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_and_display_listings_are_read() {
        let devices = "Storage devices:\nname \"ide-cd\", bus IDE, desc \"virtual IDE CD-ROM\"\nname \"virtio-blk-pci\", bus PCI\n";
        assert!(lists_device(devices, "ide-cd"));
        assert!(!lists_device(devices, "ide"));
        assert!(!lists_device(devices, "sb16"));
        let displays = "Available display backend types:\nnone\ngtk\nvnc\n";
        assert!(lists_word(displays, "gtk"));
        assert!(!lists_word(displays, "sdl"));
    }
}
