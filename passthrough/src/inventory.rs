//! The host's PCI devices as sysfs shows them, with vendor, device and class
//! names from the `pci-ids` database, their drivers and IOMMU groups.

use serde::Serialize;

use crate::bdf::Bdf;
use crate::sysfs::{Sysfs, SysfsError};

/// Reading the inventory failed.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// No device at that address.
    #[error("there is no PCI device {0} on this host (`pvio pci-list --all` lists them)")]
    NotFound(Bdf),
    /// A device's `vendor`, `device` or `class` file is missing.
    #[error("PCI device {bdf} has no `{file}` in sysfs")]
    Missing {
        /// The device.
        bdf: Bdf,
        /// The file.
        file: &'static str,
    },
    /// An id read from sysfs does not fit its field.
    #[error("PCI device {bdf} has an out-of-range `{file}` value {value:#x}")]
    Range {
        /// The device.
        bdf: Bdf,
        /// The file.
        file: &'static str,
        /// The value.
        value: u32,
    },
    /// Sysfs could not be read.
    #[error(transparent)]
    Sysfs(#[from] SysfsError),
}

type Result<T> = std::result::Result<T, InventoryError>;

/// One PCI device of the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PciDevice {
    /// Its address.
    pub bdf: Bdf,
    /// The 24-bit class code (base class, subclass, programming interface).
    pub class: u32,
    /// PCI vendor id.
    pub vendor_id: u16,
    /// PCI device id.
    pub device_id: u16,
    /// Subsystem vendor id.
    pub subsystem_vendor_id: u16,
    /// Subsystem device id.
    pub subsystem_device_id: u16,
    /// The vendor's name, if the database knows it.
    pub vendor_name: Option<String>,
    /// The device's name, if the database knows it.
    pub device_name: Option<String>,
    /// The class's name (`Ethernet controller`).
    pub class_name: String,
    /// The bound driver, if any.
    pub driver: Option<String>,
    /// The `driver_override`, if set.
    pub driver_override: Option<String>,
    /// The IOMMU group, if the IOMMU is on.
    pub iommu_group: Option<u32>,
    /// The other devices of its IOMMU group.
    pub group_members: Vec<Bdf>,
    /// Whether it is a bridge or otherwise not an endpoint.
    pub is_bridge: bool,
    /// Whether the firmware booted on it as the VGA device.
    pub boot_vga: bool,
}

impl PciDevice {
    /// Reads the device at `bdf`.
    pub fn read(sys: &Sysfs, bdf: Bdf) -> Result<Self> {
        if !sys.exists(bdf) {
            return Err(InventoryError::NotFound(bdf));
        }
        let id = |file: &'static str| -> Result<u32> {
            sys.hex_attr(bdf, file)?
                .ok_or(InventoryError::Missing { bdf, file })
        };
        let id16 = |file: &'static str, value: u32| -> Result<u16> {
            u16::try_from(value).map_err(|_| InventoryError::Range { bdf, file, value })
        };
        let vendor_id = id16("vendor", id("vendor")?)?;
        let device_id = id16("device", id("device")?)?;
        let class = id("class")?;
        if class > 0x00ff_ffff {
            return Err(InventoryError::Range {
                bdf,
                file: "class",
                value: class,
            });
        }
        let optional16 = |file: &'static str| -> Result<u16> {
            match sys.hex_attr(bdf, file)? {
                Some(v) => id16(file, v),
                None => Ok(0),
            }
        };
        let subsystem_vendor_id = optional16("subsystem_vendor")?;
        let subsystem_device_id = optional16("subsystem_device")?;
        let iommu_group = sys.iommu_group(bdf)?;
        let group_members = match iommu_group {
            Some(g) => sys
                .group_devices(g)?
                .into_iter()
                .filter(|m| *m != bdf)
                .collect(),
            None => Vec::new(),
        };
        let header_type = header_type(sys, bdf);
        Ok(Self {
            bdf,
            class,
            vendor_id,
            device_id,
            subsystem_vendor_id,
            subsystem_device_id,
            vendor_name: vendor_name(vendor_id),
            device_name: device_name(vendor_id, device_id),
            class_name: class_name(class),
            driver: sys.driver(bdf)?,
            driver_override: sys.driver_override(bdf)?,
            iommu_group,
            group_members,
            is_bridge: is_bridge_class(class) || matches!(header_type, Some(1 | 2)),
            boot_vga: sys.boot_vga(bdf)?,
        })
    }

    /// `Vendor Device` names, or the ids where the database has no name.
    pub fn description(&self) -> String {
        let vendor = self
            .vendor_name
            .clone()
            .unwrap_or_else(|| format!("vendor {:04x}", self.vendor_id));
        let device = self
            .device_name
            .clone()
            .unwrap_or_else(|| format!("device {:04x}", self.device_id));
        format!("{vendor} {device}")
    }

    /// The base class and subclass, `0x0604` for a PCI bridge.
    pub fn class_code(&self) -> u16 {
        let [_, base, sub, _] = self.class.to_be_bytes();
        u16::from_be_bytes([base, sub])
    }
}

/// Base class 0x06 (bridge) except 0x0680 ("other bridge", often an
/// endpoint in practice): host, ISA, PCI-to-PCI, CardBus and other bridges.
pub fn is_bridge_class(class: u32) -> bool {
    let [_, base, sub, _] = class.to_be_bytes();
    base == 0x06 && sub != 0x80
}

/// The header type from config space (0 endpoint, 1 PCI bridge, 2 CardBus),
/// when the `config` file can be read.
fn header_type(sys: &Sysfs, bdf: Bdf) -> Option<u8> {
    let config = std::fs::read(sys.device_file(bdf, "config")).ok()?;
    config.get(0x0e).map(|h| h & 0x7f)
}

/// The vendor's name from the `pci-ids` database.
pub fn vendor_name(vendor: u16) -> Option<String> {
    pci_ids::Vendors::iter()
        .find(|v| v.id() == vendor)
        .map(|v| v.name().to_owned())
}

/// The device's name from the `pci-ids` database.
pub fn device_name(vendor: u16, device: u16) -> Option<String> {
    pci_ids::Device::from_vid_pid(vendor, device).map(|d| d.name().to_owned())
}

/// The class's name: the subclass's if known, else the base class's, else
/// the number.
pub fn class_name(class: u32) -> String {
    let [_, base, sub, _] = class.to_be_bytes();
    if let Some(s) = pci_ids::Subclass::from_cid_sid(base, sub) {
        return s.name().to_owned();
    }
    pci_ids::Classes::iter()
        .find(|c| c.id() == base)
        .map(|c| c.name().to_owned())
        .unwrap_or_else(|| format!("class {base:02x}{sub:02x}"))
}

/// Every PCI device of the host, and whether the IOMMU is on.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    /// Whether `/sys/kernel/iommu_groups` has groups.
    pub iommu: bool,
    /// The devices, in address order.
    pub devices: Vec<PciDevice>,
}

impl Inventory {
    /// Reads every device. A device whose files cannot be read (one that
    /// is being removed, or an odd one) is left out with a warning rather
    /// than failing the whole listing.
    pub fn scan(sys: &Sysfs) -> Result<Self> {
        let mut devices = Vec::new();
        for bdf in sys.devices()? {
            match PciDevice::read(sys, bdf) {
                Ok(d) => devices.push(d),
                Err(e) => tracing::warn!("leaving {bdf} out of the inventory: {e}"),
            }
        }
        Ok(Self {
            iommu: sys.iommu_enabled()?,
            devices,
        })
    }

    /// The device at `bdf`.
    pub fn get(&self, bdf: Bdf) -> Option<&PciDevice> {
        self.devices.iter().find(|d| d.bdf == bdf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Fixture;

    #[test]
    fn names_come_from_the_database() {
        let fx = Fixture::new();
        fx.device("0000:00:02.0", 0x8086, 0x100e, 0x020000)
            .driver("e1000")
            .group(1);
        fx.device("0000:00:03.0", 0x1234, 0x11e8, 0x00ff00).group(1);
        let inv = Inventory::scan(&fx.sysfs()).unwrap();
        assert!(inv.iommu);
        let nic = inv.get("00:02.0".parse().unwrap()).unwrap();
        assert_eq!(nic.vendor_name.as_deref(), Some("Intel Corporation"));
        assert!(
            nic.device_name.as_deref().unwrap_or("").contains("82540EM"),
            "{nic:?}"
        );
        assert_eq!(nic.class_name, "Ethernet controller");
        assert_eq!(nic.driver.as_deref(), Some("e1000"));
        assert_eq!(nic.group_members, vec!["00:03.0".parse().unwrap()]);
        assert!(!nic.is_bridge);
        assert_eq!(nic.class_code(), 0x0200);
        let edu = inv.get("00:03.0".parse().unwrap()).unwrap();
        assert_eq!(edu.description(), "vendor 1234 device 11e8");
    }

    #[test]
    fn bridges_are_not_endpoints() {
        assert!(is_bridge_class(0x060400));
        assert!(is_bridge_class(0x060000));
        assert!(is_bridge_class(0x060100));
        assert!(!is_bridge_class(0x068000));
        assert!(!is_bridge_class(0x030000));
        let fx = Fixture::new();
        fx.device("0000:00:1c.0", 0x8086, 0x2948, 0x060400)
            .driver("pcieport");
        // An endpoint class but a type 1 header: still a bridge.
        fx.device("0000:00:1d.0", 0x8086, 0x1234, 0x088000);
        let mut config = vec![0u8; 64];
        config[0x0e] = 0x81;
        std::fs::write(
            fx.sysfs().device_file("00:1d.0".parse().unwrap(), "config"),
            config,
        )
        .unwrap();
        let inv = Inventory::scan(&fx.sysfs()).unwrap();
        assert!(inv.devices.iter().all(|d| d.is_bridge), "{inv:?}");
        assert!(!inv.iommu);
    }

    #[test]
    fn an_unreadable_device_is_left_out_of_the_scan() {
        let fx = Fixture::new();
        fx.device("0000:00:02.0", 0x8086, 0x100e, 0x020000);
        fx.device("0000:00:03.0", 0x8086, 0x100e, 0x020000);
        fx.write("sys/bus/pci/devices/0000:00:03.0/class", "bogus\n");
        let inv = Inventory::scan(&fx.sysfs()).unwrap();
        assert_eq!(inv.devices.len(), 1);
        assert!(PciDevice::read(&fx.sysfs(), "00:03.0".parse().unwrap()).is_err());
    }

    #[test]
    fn a_missing_device_says_so() {
        let fx = Fixture::new();
        let e = PciDevice::read(&fx.sysfs(), "00:09.0".parse().unwrap()).unwrap_err();
        assert!(matches!(e, InventoryError::NotFound(_)));
        assert!(e.to_string().contains("no PCI device 0000:00:09.0"), "{e}");
    }

    #[test]
    fn unknown_ids_fall_back_to_numbers() {
        assert_eq!(class_name(0xfe0000), "class fe00");
        assert_eq!(vendor_name(0x0002), None);
        let fx = Fixture::new();
        fx.device("0000:00:05.0", 0x0002, 0x0001, 0xff0000);
        let d = PciDevice::read(&fx.sysfs(), "00:05.0".parse().unwrap()).unwrap();
        assert_eq!(d.description(), "vendor 0002 device 0001");
    }
}
