//! Reading the device keys: `cpus`, `disk`, `vif` and `pci`, with the
//! duplicate checks across each list.

use super::Builder;
use crate::config::ast::ValueKind;
use crate::config::cpus::{parse_set, CpuAffinity, MAX_CPU};
use crate::config::disk;
use crate::config::fields::Located;
use crate::config::pci::{self, PciDefaults};
use crate::config::vif;

impl Builder<'_> {
    pub(super) fn cpus(&mut self) -> CpuAffinity {
        let Some(s) = self.f.take("cpus") else {
            return CpuAffinity::Any;
        };
        let at = s.value.at.clone();
        let one = |text: &str| parse_set(text);
        let result = match &s.value.kind {
            ValueKind::Str(text) if text.trim().is_empty() => {
                self.inert(
                    "cpus=\"\"".to_owned(),
                    &at,
                    "an empty cpus is xend's \"no pinning\", the default",
                );
                return CpuAffinity::Any;
            }
            ValueKind::Str(text) => {
                one(text).map(|set| set.map_or(CpuAffinity::Any, CpuAffinity::All))
            }
            ValueKind::Num(n) => {
                one(&n.to_string()).map(|set| set.map_or(CpuAffinity::Any, CpuAffinity::All))
            }
            ValueKind::List(items) => {
                let mut sets = Vec::new();
                for item in items {
                    match &item.kind {
                        ValueKind::Str(text) => match one(text) {
                            Ok(set) => sets.push(set.unwrap_or_else(|| (0..=MAX_CPU).collect())),
                            Err(e) => self.f.error(&item.at, "cpus", e),
                        },
                        _ => self.f.error(
                            &item.at,
                            "cpus",
                            format!("expected a string in the list, found {item}"),
                        ),
                    }
                }
                Ok(CpuAffinity::PerVcpu(sets))
            }
        };
        result.unwrap_or_else(|e| {
            self.f.error(&at, "cpus", e);
            CpuAffinity::Any
        })
    }

    pub(super) fn disks(&mut self) -> Vec<Located<disk::DiskSpec>> {
        let mut out: Vec<Located<disk::DiskSpec>> = Vec::new();
        for s in self.f.strings("disk").unwrap_or_default() {
            match disk::parse(&s.value) {
                Ok(p) => {
                    for n in p.notes {
                        self.f.warn(&s.at, "disk", format!("'{}': {n}", s.value));
                    }
                    if let Some(first) = out.iter().find(|d| d.value.vdev == p.disk.vdev) {
                        let line = first.at.line;
                        self.f.error(
                            &s.at,
                            "disk",
                            format!(
                                "'{}': {} is already used on line {line}",
                                s.value, p.disk.vdev
                            ),
                        );
                        continue;
                    }
                    out.push(Located {
                        value: p.disk,
                        at: s.at,
                    });
                }
                Err(e) => self.f.error(&s.at, "disk", format!("'{}': {e}", s.value)),
            }
        }
        out
    }

    pub(super) fn vifs(&mut self) -> Vec<Located<vif::VifSpec>> {
        let mut out: Vec<Located<vif::VifSpec>> = Vec::new();
        for (n, s) in self
            .f
            .strings("vif")
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let position = u32::try_from(n).unwrap_or(u32::MAX);
            match vif::parse(&s.value, position) {
                Ok(p) => {
                    for note in p.notes {
                        self.f.warn(&s.at, "vif", format!("'{}': {note}", s.value));
                    }
                    let v = &p.vif;
                    let clash = out.iter().find_map(|o| {
                        let o = &o.value;
                        if o.devid == v.devid {
                            Some(format!("devid {} is already used", v.devid))
                        } else if v.mac.is_some() && o.mac == v.mac {
                            Some(format!(
                                "MAC {} is already used",
                                o.mac.map(|m| m.to_string()).unwrap_or_default()
                            ))
                        } else if v.vifname.is_some() && o.vifname == v.vifname {
                            Some(format!(
                                "vifname {} is already used",
                                v.vifname.clone().unwrap_or_default()
                            ))
                        } else {
                            None
                        }
                    });
                    if let Some(c) = clash {
                        self.f.error(&s.at, "vif", format!("'{}': {c}", s.value));
                        continue;
                    }
                    out.push(Located {
                        value: p.vif,
                        at: s.at,
                    });
                }
                Err(e) => self.f.error(&s.at, "vif", format!("'{}': {e}", s.value)),
            }
        }
        out
    }

    pub(super) fn pci(&mut self) -> Vec<Located<pci::PciSpec>> {
        let defaults = PciDefaults {
            seize: self.f.boolean("pci_seize").unwrap_or(false),
            permissive: self.f.boolean("pci_permissive").unwrap_or(false),
        };
        if let (true, Some(s)) = (defaults.permissive, self.f.take("pci_permissive")) {
            let note = format!("pci_permissive=1 {}", pci::PERMISSIVE_NO_EFFECT);
            self.f.warn(&s.at, "pci_permissive", note);
        }
        let mut out: Vec<Located<pci::PciSpec>> = Vec::new();
        for s in self.f.strings("pci").unwrap_or_default() {
            match pci::parse(&s.value, defaults) {
                Ok(p) => {
                    for n in p.notes {
                        self.f.warn(&s.at, "pci", n);
                    }
                    let clash = out.iter().find_map(|o| {
                        if o.value.bdf == p.pci.bdf {
                            Some(format!("{} is already passed through", p.pci.bdf))
                        } else if p.pci.vslot.is_some() && o.value.vslot == p.pci.vslot {
                            Some(format!(
                                "guest slot {:x} is already taken",
                                p.pci.vslot.unwrap_or_default()
                            ))
                        } else {
                            None
                        }
                    });
                    if let Some(c) = clash {
                        self.f.error(&s.at, "pci", format!("'{}': {c}", s.value));
                        continue;
                    }
                    out.push(Located {
                        value: p.pci,
                        at: s.at,
                    });
                }
                Err(e) => self.f.error(&s.at, "pci", format!("'{}': {e}", s.value)),
            }
        }
        out
    }
}
