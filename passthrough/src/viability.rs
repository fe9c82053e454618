//! Whether a device can be given to a guest, and if not, why: the IOMMU is
//! off, it is not an endpoint, another member of its IOMMU group is in host
//! use, or the host needs it. Each reason says what to do about it.
//!
//! Ownership (a device already given to someone, a group that belongs to
//! another domain, a half-done assignment, a stale record) comes from the
//! ownership record: [`owner_refusals`] for the group, and the caller for
//! the device's own record, so that one list of reasons covers every check.

use std::fmt;

use serde::Serialize;

use crate::bdf::Bdf;
use crate::hostneeds::HostNeeds;
use crate::inventory::{Inventory, PciDevice};
use crate::ownership::Records;
use crate::sysfs::Sysfs;

/// Drivers that may hold another member of a device's IOMMU group while the
/// device is assigned: they do no DMA of their own.
pub const GROUP_SAFE_DRIVERS: [&str; 3] = [Sysfs::VFIO_PCI, "pci-stub", "pcieport"];

/// How to assess: what the user allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Take the device even when the host needs it (`--force`).
    pub force: bool,
    /// Take every endpoint of the IOMMU group along (`--group`).
    pub group: bool,
}

/// A member of an IOMMU group that keeps a device from being assigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blocker {
    /// The member.
    pub bdf: Bdf,
    /// Its driver.
    pub driver: String,
}

/// One reason a device cannot be assigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Refusal {
    /// `/sys/kernel/iommu_groups` is empty.
    NoIommu,
    /// The IOMMU is on but this device has no group.
    NoGroup,
    /// A bridge or other non-endpoint.
    NotEndpoint {
        /// Base class and subclass.
        class: u16,
        /// The class's name.
        class_name: String,
    },
    /// Other members of the IOMMU group are held by host drivers.
    GroupInUse {
        /// The group.
        group: u32,
        /// The members in the way.
        members: Vec<Blocker>,
    },
    /// A bridge of the group has a driver that is not known to be safe.
    GroupBridgeInUse {
        /// The bridge and its driver.
        member: Blocker,
    },
    /// The host needs the device (or a group member taken along).
    HostNeeds {
        /// The device needed.
        bdf: Bdf,
        /// What depends on it.
        reasons: Vec<String>,
    },
    /// Already owned.
    Owned {
        /// The owner.
        owner: String,
    },
    /// Another member of the IOMMU group belongs to another domain: a
    /// group is opened by one device model, so it belongs to one domain.
    GroupOwned {
        /// The group.
        group: u32,
        /// The member owned.
        member: Bdf,
        /// Its owner.
        owner: String,
    },
    /// The record says the device is prepared, but it is not on vfio-pci
    /// any more (the host rebooted, or it was rebound by hand).
    Stale {
        /// What the record says and where the device is.
        what: String,
    },
    /// Another pvio process is working on it right now.
    InProgress {
        /// What it is doing.
        what: String,
    },
    /// An assignment or a release stopped half-way.
    HalfDone {
        /// What was being done, and how far it got.
        what: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoIommu => write!(
                f,
                "the IOMMU is off (/sys/kernel/iommu_groups is empty): turn on VT-d (Intel) or \
                 AMD-Vi/IOMMU (AMD) in the firmware setup and boot Linux with `intel_iommu=on` \
                 (Intel; AMD enables it by default, else `amd_iommu=on`) on its command line"
            ),
            Self::NoGroup => write!(
                f,
                "it has no IOMMU group although the IOMMU is on, so it cannot be isolated"
            ),
            Self::NotEndpoint { class, class_name } => write!(
                f,
                "it is a {class_name} (class {class:04x}), not an endpoint: bridges cannot be \
                 assigned; assign the devices behind it"
            ),
            Self::GroupInUse { group, members } => {
                let list: Vec<String> = members
                    .iter()
                    .map(|m| format!("{} ({})", m.bdf, m.driver))
                    .collect();
                write!(
                    f,
                    "IOMMU group {group} has members in host use: {}; take them along with \
                     --group, or unbind them first",
                    list.join(", ")
                )
            }
            Self::GroupBridgeInUse { member } => write!(
                f,
                "bridge {} of its IOMMU group is held by {}, which is not known to be safe \
                 (vfio-pci, pci-stub or pcieport are)",
                member.bdf, member.driver
            ),
            Self::HostNeeds { bdf, reasons } => write!(
                f,
                "the host needs {bdf} for {}; use --force to take it anyway",
                reasons.join("; ")
            ),
            Self::Owned { owner } => write!(
                f,
                "it is already owned by `{owner}`; `pvio release` it first"
            ),
            Self::GroupOwned {
                group,
                member,
                owner,
            } => write!(
                f,
                "IOMMU group {group} belongs to `{owner}` ({member} is assigned to it), and a \
                 group can belong to only one domain: assign it to `{owner}`, or `pvio release \
                 {member}` first"
            ),
            Self::Stale { what } => write!(
                f,
                "the record is stale: {what}; `pvio release` clears the record"
            ),
            Self::InProgress { what } => write!(f, "busy: {what} is still running"),
            Self::HalfDone { what } => write!(
                f,
                "{what} stopped half-way; `pvio release` finishes giving it back"
            ),
        }
    }
}

/// The verdict on one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assessment {
    /// The device.
    pub bdf: Bdf,
    /// Why it cannot be assigned (empty: it can).
    pub refusals: Vec<Refusal>,
    /// Group members that go along with it (`--group`).
    pub take_along: Vec<Bdf>,
    /// What `--force` overrode.
    pub warnings: Vec<String>,
}

impl Assessment {
    /// Whether nothing stands in the way.
    pub fn assignable(&self) -> bool {
        self.refusals.is_empty()
    }

    /// Every refusal on one line.
    pub fn why_not(&self) -> String {
        let list: Vec<String> = self.refusals.iter().map(ToString::to_string).collect();
        list.join("; ")
    }
}

/// Assesses `dev` against the rest of the host.
pub fn assess(dev: &PciDevice, inv: &Inventory, needs: &HostNeeds, opts: Options) -> Assessment {
    assess_with(dev, inv, needs, opts, &[])
}

/// Assesses `dev` to be taken together with `along`: the members of its
/// IOMMU group listed there go along with it (as `--group` takes them
/// all) instead of being in the way. Devices of `along` outside its group
/// are not considered.
pub fn assess_with(
    dev: &PciDevice,
    inv: &Inventory,
    needs: &HostNeeds,
    opts: Options,
    along: &[Bdf],
) -> Assessment {
    let mut out = Assessment {
        bdf: dev.bdf,
        refusals: Vec::new(),
        take_along: Vec::new(),
        warnings: Vec::new(),
    };
    if !inv.iommu {
        out.refusals.push(Refusal::NoIommu);
    } else if dev.iommu_group.is_none() {
        out.refusals.push(Refusal::NoGroup);
    }
    if dev.is_bridge {
        out.refusals.push(Refusal::NotEndpoint {
            class: dev.class_code(),
            class_name: dev.class_name.clone(),
        });
    }
    let mut in_way = Vec::new();
    for &m in &dev.group_members {
        let Some(member) = inv.get(m) else { continue };
        let safe = member
            .driver
            .as_deref()
            .is_none_or(|d| GROUP_SAFE_DRIVERS.contains(&d));
        if member.is_bridge {
            if !safe {
                out.refusals.push(Refusal::GroupBridgeInUse {
                    member: Blocker {
                        bdf: m,
                        driver: member.driver.clone().unwrap_or_default(),
                    },
                });
            }
            continue;
        }
        if opts.group || along.contains(&m) {
            out.take_along.push(m);
        } else if !safe {
            in_way.push(Blocker {
                bdf: m,
                driver: member.driver.clone().unwrap_or_default(),
            });
        }
    }
    if !in_way.is_empty() {
        out.refusals.push(Refusal::GroupInUse {
            group: dev.iommu_group.unwrap_or_default(),
            members: in_way,
        });
    }
    for bdf in std::iter::once(dev.bdf).chain(out.take_along.clone()) {
        let reasons = needs.reasons(bdf);
        if reasons.is_empty() {
            continue;
        }
        if opts.force {
            out.warnings.push(format!(
                "--force: taking {bdf} although the host needs it for {}",
                reasons.join("; ")
            ));
        } else {
            out.refusals.push(Refusal::HostNeeds {
                bdf,
                reasons: reasons.to_vec(),
            });
        }
    }
    out
}

/// What the record says about `dev`'s IOMMU group for `owner` (`None`:
/// for guests with no owner, or for a listing): every other member owned
/// by another domain is a [`Refusal::GroupOwned`].
pub fn owner_refusals(dev: &PciDevice, records: &Records, owner: Option<&str>) -> Vec<Refusal> {
    dev.group_members
        .iter()
        .filter_map(|m| records.devices.get(m))
        .filter_map(|r| match (&r.owner, owner) {
            (Some(o), Some(n)) if o == n => None,
            (Some(o), _) => Some(Refusal::GroupOwned {
                group: dev.iommu_group.unwrap_or_default(),
                member: r.bdf,
                owner: o.clone(),
            }),
            (None, _) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Fixture;

    fn bdf(s: &str) -> Bdf {
        s.parse().unwrap()
    }

    fn verdict(fx: &Fixture, dev: &str, opts: Options) -> Assessment {
        let inv = Inventory::scan(&fx.sysfs()).unwrap();
        let needs = HostNeeds::scan(&fx.host()).unwrap();
        assess(inv.get(bdf(dev)).unwrap(), &inv, &needs, opts)
    }

    #[test]
    fn an_endpoint_alone_in_its_group_is_assignable() {
        let fx = Fixture::new();
        fx.device("0000:00:03.0", 0x1af4, 0x1005, 0x00ff00)
            .driver("virtio-pci")
            .group(3);
        let v = verdict(&fx, "00:03.0", Options::default());
        assert!(v.assignable(), "{v:?}");
        assert!(v.take_along.is_empty());
    }

    #[test]
    fn no_iommu_says_how_to_turn_it_on() {
        let fx = Fixture::new();
        fx.device("0000:00:03.0", 0x1af4, 0x1005, 0x00ff00)
            .driver("virtio-pci");
        let v = verdict(&fx, "00:03.0", Options::default());
        assert_eq!(v.refusals, [Refusal::NoIommu]);
        let text = v.why_not();
        assert!(
            text.contains("VT-d") && text.contains("intel_iommu=on"),
            "{text}"
        );
    }

    #[test]
    fn a_device_without_a_group_under_an_iommu_is_refused() {
        let fx = Fixture::new();
        fx.device("0000:00:02.0", 0x8086, 0x100e, 0x020000).group(1);
        fx.device("0000:00:03.0", 0x1af4, 0x1005, 0x00ff00);
        let v = verdict(&fx, "00:03.0", Options::default());
        assert_eq!(v.refusals, [Refusal::NoGroup]);
    }

    #[test]
    fn bridges_are_refused() {
        let fx = Fixture::new();
        fx.device("0000:00:1c.0", 0x8086, 0x2948, 0x060400)
            .driver("pcieport")
            .group(5);
        let v = verdict(&fx, "00:1c.0", Options::default());
        assert!(matches!(
            v.refusals.as_slice(),
            [Refusal::NotEndpoint { class: 0x0604, .. }]
        ));
        assert!(v.why_not().contains("not an endpoint"), "{}", v.why_not());
    }

    #[test]
    fn group_members_on_safe_drivers_or_unbound_do_not_block() {
        let fx = Fixture::new();
        fx.device("0000:00:1c.0", 0x8086, 0x2948, 0x060400)
            .driver("pcieport")
            .group(7);
        fx.device_behind("0000:00:1c.0", "0000:01:00.0", 0x10de, 0x1b80, 0x030000)
            .driver("nouveau")
            .group(7);
        fx.device_behind("0000:00:1c.0", "0000:01:00.1", 0x10de, 0x10f0, 0x040300)
            .driver("vfio-pci")
            .group(7);
        fx.device_behind("0000:00:1c.0", "0000:01:00.2", 0x10de, 0x1ad6, 0x0c0330)
            .group(7);
        fx.device_behind("0000:00:1c.0", "0000:01:00.3", 0x10de, 0x1ad7, 0x0c8000)
            .driver("pci-stub")
            .group(7);
        let v = verdict(&fx, "01:00.0", Options::default());
        assert!(v.assignable(), "{v:?}");
    }

    #[test]
    fn a_group_member_in_host_use_is_named_or_taken_with_group() {
        let fx = Fixture::new();
        fx.device("0000:01:00.0", 0x10de, 0x1b80, 0x030000)
            .driver("nouveau")
            .group(7);
        fx.device("0000:01:00.1", 0x10de, 0x10f0, 0x040300)
            .driver("snd_hda_intel")
            .group(7);
        let v = verdict(&fx, "01:00.0", Options::default());
        assert_eq!(
            v.refusals,
            [Refusal::GroupInUse {
                group: 7,
                members: vec![Blocker {
                    bdf: bdf("01:00.1"),
                    driver: "snd_hda_intel".into()
                }]
            }]
        );
        assert!(v.why_not().contains("0000:01:00.1 (snd_hda_intel)"));
        assert!(v.why_not().contains("--group"));
        let v = verdict(
            &fx,
            "01:00.0",
            Options {
                group: true,
                ..Options::default()
            },
        );
        assert!(v.assignable(), "{v:?}");
        assert_eq!(v.take_along, [bdf("01:00.1")]);
    }

    #[test]
    fn members_listed_together_go_along_and_others_stay_in_the_way() {
        let fx = Fixture::new();
        fx.device("0000:01:00.0", 0x10de, 0x1b80, 0x030000)
            .driver("nouveau")
            .group(7);
        fx.device("0000:01:00.1", 0x10de, 0x10f0, 0x040300)
            .driver("snd_hda_intel")
            .group(7);
        fx.device("0000:01:00.2", 0x10de, 0x1ad6, 0x0c0330)
            .driver("xhci_hcd")
            .group(7);
        let inv = Inventory::scan(&fx.sysfs()).unwrap();
        let needs = HostNeeds::scan(&fx.host()).unwrap();
        let gpu = inv.get(bdf("01:00.0")).unwrap();
        let v = assess_with(gpu, &inv, &needs, Options::default(), &[bdf("01:00.1")]);
        assert_eq!(v.take_along, [bdf("01:00.1")]);
        assert_eq!(
            v.refusals,
            [Refusal::GroupInUse {
                group: 7,
                members: vec![Blocker {
                    bdf: bdf("01:00.2"),
                    driver: "xhci_hcd".into()
                }]
            }]
        );
        let all = [bdf("01:00.1"), bdf("01:00.2"), bdf("00:09.0")];
        let v = assess_with(gpu, &inv, &needs, Options::default(), &all);
        assert!(v.assignable(), "{v:?}");
        assert_eq!(v.take_along, [bdf("01:00.1"), bdf("01:00.2")]);
    }

    #[test]
    fn a_group_belongs_to_one_owner() {
        use crate::ownership::{Operation, Record};
        let fx = Fixture::new();
        fx.device("0000:01:00.0", 0x10de, 0x1b80, 0x030000)
            .driver("vfio-pci")
            .group(7);
        fx.device("0000:01:00.1", 0x10de, 0x10f0, 0x040300)
            .driver("vfio-pci")
            .group(7);
        let inv = Inventory::scan(&fx.sysfs()).unwrap();
        let audio = inv.get(bdf("01:00.1")).unwrap();
        let mut records = Records::default();
        let mut r = Record::started(bdf("01:00.0"), Some("domA"), None, Operation::Prepare);
        r.done = true;
        records.devices.insert(r.bdf, r);
        assert!(owner_refusals(audio, &records, Some("domA")).is_empty());
        for owner in [Some("domB"), None] {
            let why = owner_refusals(audio, &records, owner);
            assert_eq!(
                why,
                [Refusal::GroupOwned {
                    group: 7,
                    member: bdf("01:00.0"),
                    owner: "domA".into()
                }]
            );
            let text = why[0].to_string();
            assert!(
                text.contains("IOMMU group 7 belongs to `domA` (0000:01:00.0 is assigned to it)"),
                "{text}"
            );
        }
        // A prepared member with no owner binds no one.
        records.devices.values_mut().for_each(|r| r.owner = None);
        assert!(owner_refusals(audio, &records, Some("domB")).is_empty());
    }

    #[test]
    fn a_bridge_with_an_unknown_driver_blocks_even_with_group() {
        let fx = Fixture::new();
        fx.device("0000:00:1c.0", 0x8086, 0x2948, 0x060400)
            .driver("shpchp")
            .group(7);
        fx.device("0000:01:00.0", 0x10de, 0x1b80, 0x030000).group(7);
        let v = verdict(
            &fx,
            "01:00.0",
            Options {
                group: true,
                force: true,
            },
        );
        assert!(matches!(
            v.refusals.as_slice(),
            [Refusal::GroupBridgeInUse { .. }]
        ));
    }

    #[test]
    fn host_needed_devices_are_refused_without_force() {
        let fx = Fixture::new();
        fx.device("0000:00:04.0", 0x1af4, 0x1001, 0x010000)
            .driver("virtio-pci")
            .group(4);
        fx.block_device("254:1", "vda1", "0000:00:04.0");
        fx.mount("254:1", "/", "ext4", "/dev/vda1");
        let v = verdict(&fx, "00:04.0", Options::default());
        assert_eq!(v.refusals.len(), 1, "{v:?}");
        let text = v.why_not();
        assert!(text.contains("the host needs 0000:00:04.0"), "{text}");
        assert!(text.contains("mounted on / (ext4 on /dev/vda1)"), "{text}");
        assert!(text.contains("--force"), "{text}");
        let v = verdict(
            &fx,
            "00:04.0",
            Options {
                force: true,
                ..Options::default()
            },
        );
        assert!(v.assignable());
        assert_eq!(v.warnings.len(), 1);
    }

    #[test]
    fn a_host_needed_member_taken_along_is_refused_too() {
        let fx = Fixture::new();
        fx.device("0000:00:1f.0", 0x8086, 0x2918, 0x000000).group(9);
        fx.device("0000:00:1f.2", 0x8086, 0x2922, 0x010601)
            .driver("ahci")
            .group(9);
        fx.block_device("8:1", "sda1", "0000:00:1f.2");
        fx.mount("8:1", "/", "ext4", "/dev/sda1");
        let v = verdict(
            &fx,
            "00:1f.0",
            Options {
                group: true,
                ..Options::default()
            },
        );
        assert!(
            matches!(v.refusals.as_slice(), [Refusal::HostNeeds { bdf: b, .. }] if *b == bdf("00:1f.2")),
            "{v:?}"
        );
    }
}
