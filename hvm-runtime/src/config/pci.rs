//! PCI passthrough specs (`pci = [ '0000:03:00.0@5,permissive=1' ]`):
//! `[DDDD:]BB:DD.F[@VSLOT][,key=value...]`.
//!
//! `seize=1` lets pvio take the device from its host driver; `permissive`,
//! `msitranslate`, `power_mgmt` and `rdm_policy` are Xen-specific and are
//! accepted with a note: QEMU's vfio-pci has its own config space policy.

use serde::Serialize;

use super::suggest::did_you_mean;

/// A PCI address: the passthrough manager's, with its parser and its
/// per-field errors (`pvio_passthrough::BdfError`).
pub use pvio_passthrough::Bdf;

/// Parses the address of a spec: `[DDDD:]BB:DD.F`, in hex.
fn parse_address(s: &str) -> Result<Bdf, String> {
    if let Some(head) = s.strip_suffix(".*") {
        return Err(format!(
            "{head}.*: all functions at once ('*') is not supported; list each function"
        ));
    }
    s.parse()
        .map_err(|e: pvio_passthrough::BdfError| e.to_string())
}

/// How reserved memory regions are handled (Xen's `rdm_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RdmPolicy {
    /// Fail when a region conflicts.
    Strict,
    /// Warn when a region conflicts.
    Relaxed,
}

/// One passed-through PCI device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PciSpec {
    /// The host device.
    pub bdf: Bdf,
    /// The guest slot (`@N`), if given.
    pub vslot: Option<u8>,
    /// Take the device from its host driver if it has one.
    pub seize: bool,
    /// Xen's permissive config space writes (recorded; no QEMU effect).
    pub permissive: bool,
    /// Xen's rdm_policy (recorded; no QEMU effect).
    pub rdm_policy: Option<RdmPolicy>,
}

/// Defaults for every device, from the config's `pci_seize` and
/// `pci_permissive`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PciDefaults {
    /// `pci_seize`.
    pub seize: bool,
    /// `pci_permissive`.
    pub permissive: bool,
}

/// A parsed PCI spec and its notes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedPci {
    /// The device.
    pub pci: PciSpec,
    /// Settings accepted without effect.
    pub notes: Vec<String>,
}

/// Why `permissive=1` (per device, or `pci_permissive = 1` for all) is
/// warned about.
pub const PERMISSIVE_NO_EFFECT: &str =
    "has no effect: QEMU's vfio-pci decides which config space writes reach the device";

const KEYS: &[&str] = &[
    "permissive",
    "seize",
    "rdm_policy",
    "msitranslate",
    "power_mgmt",
    "vslot",
];

/// Parses one PCI spec.
pub fn parse(spec: &str, defaults: PciDefaults) -> Result<ParsedPci, String> {
    let mut items = spec.split(',').map(str::trim);
    let first = items.next().unwrap_or_default();
    let (addr, vslot) = match first.split_once('@') {
        Some((a, v)) => (a, Some(parse_slot(v)?)),
        None => (first, None),
    };
    let mut pci = PciSpec {
        bdf: parse_address(addr)?,
        vslot,
        seize: defaults.seize,
        permissive: defaults.permissive,
        rdm_policy: None,
    };
    let mut notes = Vec::new();
    let flag = |v: &str, k: &str| match v {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(format!("{k}={v}: expected 0 or 1")),
    };
    for item in items.filter(|i| !i.is_empty()) {
        let Some((key, value)) = item.split_once('=') else {
            return Err(format!("'{item}' is not a key=value setting"));
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "seize" => pci.seize = flag(value, key)?,
            "permissive" => {
                pci.permissive = flag(value, key)?;
                if pci.permissive {
                    notes.push(format!("{}: permissive=1 {PERMISSIVE_NO_EFFECT}", pci.bdf));
                }
            }
            "rdm_policy" => {
                pci.rdm_policy = Some(match value {
                    "strict" => RdmPolicy::Strict,
                    "relaxed" => RdmPolicy::Relaxed,
                    other => return Err(format!("rdm_policy '{other}': use strict or relaxed")),
                });
                notes.push(format!(
                    "{}: rdm_policy has no effect: reserved regions are the host IOMMU driver's business under VFIO",
                    pci.bdf
                ));
            }
            "msitranslate" | "power_mgmt" => {
                flag(value, key)?;
                notes.push(format!("{}: {key} has no effect under pvio", pci.bdf));
            }
            "vslot" => pci.vslot = Some(parse_slot(value)?),
            other => {
                return Err(format!(
                    "unknown pci setting '{other}'{}",
                    did_you_mean(other, KEYS.iter().copied())
                ))
            }
        }
    }
    Ok(ParsedPci { pci, notes })
}

fn parse_slot(v: &str) -> Result<u8, String> {
    let digits = v.trim_start_matches("0x");
    u8::from_str_radix(digits, 16)
        .ok()
        .filter(|s| (1..32).contains(s))
        .ok_or_else(|| format!("guest slot '{v}' is not a hex number from 1 to 1f"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pci(spec: &str) -> PciSpec {
        parse(spec, PciDefaults::default())
            .unwrap_or_else(|e| panic!("{spec}: {e}"))
            .pci
    }

    #[test]
    fn addresses() {
        let p = pci("0000:03:00.0");
        assert_eq!(p.bdf.to_string(), "0000:03:00.0");
        assert_eq!(p.vslot, None);
        assert_eq!(pci("03:1f.7").bdf.to_string(), "0000:03:1f.7");
        assert_eq!(pci("000a:ff:00.1").bdf.domain, 10);
    }

    #[test]
    fn options_and_vslot() {
        let p = parse(
            "03:00.0,permissive=1,seize=1,rdm_policy=relaxed",
            PciDefaults::default(),
        )
        .unwrap();
        assert!(p.pci.seize && p.pci.permissive);
        assert_eq!(p.pci.rdm_policy, Some(RdmPolicy::Relaxed));
        assert_eq!(p.notes.len(), 2);
        assert_eq!(pci("0000:03:00.0@5").vslot, Some(5));
        assert_eq!(pci("0000:03:00.0@1f").vslot, Some(31));
        assert_eq!(pci("0000:03:00.0,vslot=0x6").vslot, Some(6));
        let d = parse(
            "03:00.0",
            PciDefaults {
                seize: true,
                permissive: false,
            },
        )
        .unwrap();
        assert!(d.pci.seize);
        assert!(!pci("03:00.0,seize=0").seize);
    }

    fn address_error(spec: &str) -> String {
        parse(spec, PciDefaults::default()).unwrap_err()
    }

    #[test]
    fn address_errors_are_the_passthrough_managers_per_field() {
        assert_eq!(
            address_error("3:00"),
            "`3:00` is not a PCI address: expected [DDDD:]BB:SS.F in hex, e.g. 0000:03:00.0"
        );
        assert_eq!(
            address_error("03:20.0"),
            "slot 0x20 in `03:20.0` is out of range: a PCI slot is 00 to 1f"
        );
        assert_eq!(
            address_error("03:00.8"),
            "function 8 in `03:00.8` is out of range: a PCI function is 0 to 7"
        );
        assert_eq!(
            address_error("100:00.0"),
            "`100` in `100:00.0` is not a valid bus: expected at most 2 hex digits"
        );
        // A sign is not a hex digit.
        assert_eq!(
            address_error("+3:00.0,seize=1"),
            "`+3` in `+3:00.0` is not a valid bus: expected at most 2 hex digits"
        );
        assert_eq!(
            address_error("0000:03:+1.0"),
            "`+1` in `0000:03:+1.0` is not a valid slot: expected at most 2 hex digits"
        );
        assert!(address_error("03:00.*").contains("'*'"));
    }

    #[test]
    fn errors() {
        assert!(parse("03:00.0@0", PciDefaults::default())
            .unwrap_err()
            .contains("1 to 1f"));
        assert!(parse("03:00.0@40", PciDefaults::default()).is_err());
        assert_eq!(
            parse("03:00.0,seise=1", PciDefaults::default()).unwrap_err(),
            "unknown pci setting 'seise' (did you mean 'seize'?)"
        );
        assert!(parse("03:00.0,seize=yes", PciDefaults::default())
            .unwrap_err()
            .contains("0 or 1"));
        assert!(parse("03:00.0,rdm_policy=lax", PciDefaults::default()).is_err());
    }
}
