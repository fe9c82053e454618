//! Reading the kernel's PCI view from sysfs: a device's ids, class, driver,
//! `driver_override`, IOMMU group and `boot_vga`, the IOMMU groups, and the
//! PCI device behind any sysfs path.
//!
//! The root is a parameter (`/sys` on a host) so that unit tests run over a
//! fixture tree. Writing is not here: every write goes through
//! the writer in `write.rs`.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::bdf::Bdf;

/// A sysfs read that failed or gave something unexpected.
#[derive(Debug, thiserror::Error)]
pub enum SysfsError {
    /// A file or folder could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file held something that is not what the kernel writes there.
    #[error("unexpected value `{value}` in {}", path.display())]
    Value {
        /// The path.
        path: PathBuf,
        /// What it held.
        value: String,
    },
}

type Result<T> = std::result::Result<T, SysfsError>;

fn read_error(path: &Path) -> impl FnOnce(io::Error) -> SysfsError + '_ {
    move |source| SysfsError::Read {
        path: path.to_owned(),
        source,
    }
}

/// The sysfs tree, at `root` (`/sys` on a real host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysfs {
    /// Where sysfs is mounted.
    pub root: PathBuf,
}

impl Sysfs {
    /// The driver name that passthrough binds devices to.
    pub const VFIO_PCI: &'static str = "vfio-pci";

    /// Sysfs at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The host's sysfs, `/sys`.
    pub fn real() -> Self {
        Self::new("/sys")
    }

    /// `bus/pci/devices`.
    pub fn devices_dir(&self) -> PathBuf {
        self.root.join("bus/pci/devices")
    }

    /// `bus/pci/devices/<bdf>`.
    pub fn device_dir(&self, bdf: Bdf) -> PathBuf {
        self.devices_dir().join(bdf.to_string())
    }

    /// `bus/pci/devices/<bdf>/<name>`.
    pub fn device_file(&self, bdf: Bdf, name: &str) -> PathBuf {
        self.device_dir(bdf).join(name)
    }

    /// `bus/pci/drivers/<driver>`.
    pub fn driver_dir(&self, driver: &str) -> PathBuf {
        self.root.join("bus/pci/drivers").join(driver)
    }

    /// `bus/pci/drivers_probe`.
    pub fn drivers_probe(&self) -> PathBuf {
        self.root.join("bus/pci/drivers_probe")
    }

    /// `kernel/iommu_groups`.
    pub fn iommu_groups_dir(&self) -> PathBuf {
        self.root.join("kernel/iommu_groups")
    }

    /// Whether the PCI device exists.
    pub fn exists(&self, bdf: Bdf) -> bool {
        self.device_dir(bdf).exists()
    }

    /// Every PCI device, in address order.
    pub fn devices(&self) -> Result<Vec<Bdf>> {
        let dir = self.devices_dir();
        let mut out: Vec<Bdf> = list_names(&dir)?
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        out.sort();
        Ok(out)
    }

    /// A device attribute, trimmed; `None` if the file does not exist.
    pub fn attr(&self, bdf: Bdf, name: &str) -> Result<Option<String>> {
        read_optional(&self.device_file(bdf, name))
    }

    /// A hex attribute such as `vendor` (`0x8086`); `None` if missing.
    pub fn hex_attr(&self, bdf: Bdf, name: &str) -> Result<Option<u32>> {
        let path = self.device_file(bdf, name);
        let Some(text) = read_optional(&path)? else {
            return Ok(None);
        };
        let digits = text.strip_prefix("0x").unwrap_or(&text);
        u32::from_str_radix(digits, 16)
            .map(Some)
            .map_err(|_| SysfsError::Value { path, value: text })
    }

    /// The name a device symlink points to (`driver` -> `.../e1000` gives
    /// `e1000`); `None` if there is no such link.
    pub fn link_name(&self, bdf: Bdf, name: &str) -> Result<Option<String>> {
        link_target_name(&self.device_file(bdf, name))
    }

    /// The driver bound to the device, if any.
    pub fn driver(&self, bdf: Bdf) -> Result<Option<String>> {
        self.link_name(bdf, "driver")
    }

    /// The device's `driver_override`, if set (`(null)` means unset).
    pub fn driver_override(&self, bdf: Bdf) -> Result<Option<String>> {
        Ok(self
            .attr(bdf, "driver_override")?
            .filter(|s| !s.is_empty() && s != "(null)"))
    }

    /// The device's IOMMU group, if it has one.
    pub fn iommu_group(&self, bdf: Bdf) -> Result<Option<u32>> {
        let path = self.device_file(bdf, "iommu_group");
        let Some(name) = link_target_name(&path)? else {
            return Ok(None);
        };
        name.parse()
            .map(Some)
            .map_err(|_| SysfsError::Value { path, value: name })
    }

    /// Whether the IOMMU is on: `kernel/iommu_groups` exists and is not empty.
    pub fn iommu_enabled(&self) -> Result<bool> {
        let dir = self.iommu_groups_dir();
        if !dir.exists() {
            return Ok(false);
        }
        Ok(!list_names(&dir)?.is_empty())
    }

    /// The devices of an IOMMU group, in address order.
    pub fn group_devices(&self, group: u32) -> Result<Vec<Bdf>> {
        let dir = self
            .iommu_groups_dir()
            .join(group.to_string())
            .join("devices");
        let mut out: Vec<Bdf> = list_names(&dir)?
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        out.sort();
        Ok(out)
    }

    /// Whether the firmware used this device as the boot VGA device.
    pub fn boot_vga(&self, bdf: Bdf) -> Result<bool> {
        Ok(self.attr(bdf, "boot_vga")?.as_deref() == Some("1"))
    }

    /// The PCI device a sysfs path belongs to: `path` is resolved (symlinks
    /// followed) and the deepest component that is a PCI address is taken,
    /// so `/sys/dev/block/254:1` gives the virtio controller behind `vda1`.
    pub fn pci_device_of(&self, path: &Path) -> Option<Bdf> {
        let resolved = fs::canonicalize(path).ok()?;
        pci_in_path(&resolved)
    }
}

/// The deepest component of `path` that is a PCI address.
pub fn pci_in_path(path: &Path) -> Option<Bdf> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => name.to_str()?.parse::<Bdf>().ok(),
            _ => None,
        })
        .next_back()
}

/// A file's content, trimmed; `None` if it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(read_error(path)(e)),
    }
}

/// The last component of a symlink's target; `None` if there is no link.
pub fn link_target_name(path: &Path) -> Result<Option<String>> {
    match fs::read_link(path) {
        Ok(target) => Ok(target
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(read_error(path)(e)),
    }
}

/// The names in a folder (empty if it does not exist), sorted.
pub fn list_names(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_error(dir)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(read_error(dir))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Fixture;

    fn bdf(s: &str) -> Bdf {
        s.parse().unwrap()
    }

    #[test]
    fn reads_ids_driver_group_and_override() {
        let fx = Fixture::new();
        fx.device("0000:00:03.0", 0x1af4, 0x1005, 0x00ff00)
            .driver("virtio-pci")
            .group(4)
            .subsystem(0x1af4, 0x0004);
        let sys = fx.sysfs();
        let b = bdf("0000:00:03.0");
        assert!(sys.exists(b));
        assert_eq!(sys.devices().unwrap(), vec![b]);
        assert_eq!(sys.hex_attr(b, "vendor").unwrap(), Some(0x1af4));
        assert_eq!(sys.hex_attr(b, "class").unwrap(), Some(0x00ff00));
        assert_eq!(sys.hex_attr(b, "subsystem_device").unwrap(), Some(4));
        assert_eq!(sys.driver(b).unwrap().as_deref(), Some("virtio-pci"));
        assert_eq!(sys.driver_override(b).unwrap(), None);
        assert_eq!(sys.iommu_group(b).unwrap(), Some(4));
        assert_eq!(sys.group_devices(4).unwrap(), vec![b]);
        assert!(sys.iommu_enabled().unwrap());
        assert!(!sys.boot_vga(b).unwrap());
        fx.write(
            "sys/bus/pci/devices/0000:00:03.0/driver_override",
            "vfio-pci\n",
        );
        assert_eq!(sys.driver_override(b).unwrap().as_deref(), Some("vfio-pci"));
    }

    #[test]
    fn missing_things_are_none_and_bad_values_are_errors() {
        let fx = Fixture::new();
        fx.device("0000:00:04.0", 0x8086, 0x100e, 0x020000);
        let sys = fx.sysfs();
        let b = bdf("0000:00:04.0");
        assert_eq!(sys.driver(b).unwrap(), None);
        assert_eq!(sys.iommu_group(b).unwrap(), None);
        assert!(!sys.iommu_enabled().unwrap());
        assert!(!sys.exists(bdf("0000:00:05.0")));
        fx.write("sys/bus/pci/devices/0000:00:04.0/vendor", "zzz\n");
        let e = sys.hex_attr(b, "vendor").unwrap_err();
        assert!(e.to_string().contains("unexpected value `zzz`"), "{e}");
    }

    #[test]
    fn pci_device_of_takes_the_deepest_address() {
        let p = Path::new("/sys/devices/pci0000:00/0000:00:1c.0/0000:01:00.0/nvme/nvme0/nvme0n1");
        assert_eq!(pci_in_path(p), Some(bdf("0000:01:00.0")));
        assert_eq!(
            pci_in_path(Path::new("/sys/devices/virtual/block/dm-0")),
            None
        );
    }
}
