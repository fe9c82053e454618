//! PCI passthrough specs (`pci = [ '0000:03:00.0@5,permissive=1' ]`):
//! `[DDDD:]BB:DD.F[@VSLOT][,key=value...]`.
//!
//! `seize=1` lets pvio take the device from its host driver; `permissive`,
//! `msitranslate`, `power_mgmt` and `rdm_policy` are Xen-specific and are
//! accepted with a note: QEMU's vfio-pci has its own config space policy.

use std::fmt;

use serde::Serialize;

use super::suggest::did_you_mean;

/// A PCI address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Bdf {
    /// The PCI segment (domain).
    pub domain: u16,
    /// The bus.
    pub bus: u8,
    /// The device (slot), 0 to 31.
    pub device: u8,
    /// The function, 0 to 7.
    pub function: u8,
}

impl Bdf {
    /// Parses `[DDDD:]BB:DD.F`.
    pub fn parse(s: &str) -> Result<Bdf, String> {
        let bad = || format!("'{s}' is not a PCI address ([DDDD:]BB:DD.F, such as 0000:03:00.0)");
        let parts: Vec<&str> = s.split(':').collect();
        let (domain, bus, devfn) = match parts.as_slice() {
            [d, b, df] => (*d, *b, *df),
            [b, df] => ("0", *b, *df),
            _ => return Err(bad()),
        };
        let (dev, func) = devfn.split_once('.').ok_or_else(bad)?;
        let hex = |t: &str, max_len: usize| {
            if t.is_empty() || t.len() > max_len {
                None
            } else {
                u16::from_str_radix(t, 16).ok()
            }
        };
        let domain = hex(domain, 4).ok_or_else(bad)?;
        let bus = hex(bus, 2)
            .and_then(|b| u8::try_from(b).ok())
            .ok_or_else(bad)?;
        let device = hex(dev, 2)
            .and_then(|d| u8::try_from(d).ok())
            .filter(|d| *d < 32)
            .ok_or_else(bad)?;
        if func == "*" {
            return Err(format!(
                "{s}: all functions at once ('*') is not supported; list each function"
            ));
        }
        let function = hex(func, 1)
            .and_then(|f| u8::try_from(f).ok())
            .filter(|f| *f < 8)
            .ok_or_else(bad)?;
        Ok(Bdf {
            domain,
            bus,
            device,
            function,
        })
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
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
        bdf: Bdf::parse(addr)?,
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
                    notes.push(format!(
                        "{}: permissive=1 has no effect: QEMU's vfio-pci decides which config space writes reach the device",
                        pci.bdf
                    ));
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

    #[test]
    fn errors() {
        assert!(Bdf::parse("3:00")
            .unwrap_err()
            .contains("not a PCI address"));
        assert!(Bdf::parse("03:20.0").is_err());
        assert!(Bdf::parse("03:00.8").is_err());
        assert!(Bdf::parse("100:00.0").is_err());
        assert!(Bdf::parse("03:00.*").unwrap_err().contains("'*'"));
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
