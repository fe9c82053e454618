//! What the plan needs to know about the host, behind a trait so that
//! tests can describe a host: whether files exist, which bridges and PCI
//! devices there are, where a program is, where OVMF is.
//!
//! sysfs is read under the host root (`PVIO_HOST_ROOT`, `/` by default);
//! the files a config names (images, kernels) are the real paths.

use std::path::{Path, PathBuf};

use crate::config::pci::Bdf;
use crate::host::media::Wanted;

/// Where Debian's `ovmf` package puts a firmware image QEMU takes with
/// `-bios` (code and variables in one file).
pub const OVMF_CANDIDATES: &[&str] = &[
    "/usr/share/ovmf/OVMF.fd",
    "/usr/share/OVMF/OVMF.fd",
    "/usr/share/qemu/OVMF.fd",
];

/// Where QEMU's keymaps live.
pub const KEYMAP_DIR: &str = "/usr/share/qemu/keymaps";

/// The host, as the plan's checks see it.
pub trait HostView {
    /// The file (or device, or directory) exists.
    fn exists(&self, path: &Path) -> bool;
    /// Why `path` cannot be used as `wanted` ("does not exist", "is a
    /// directory", ...), or `None` when it can. By default only whether
    /// it exists.
    fn unusable(&self, path: &Path, _wanted: Wanted) -> Option<String> {
        (!self.exists(path)).then(|| "does not exist".to_owned())
    }
    /// A network bridge of that name exists.
    fn is_bridge(&self, name: &str) -> bool;
    /// The PCI device exists on the host.
    fn has_pci_device(&self, bdf: &Bdf) -> bool;
    /// The program, searched in `PATH` when the name has no `/`.
    fn find_program(&self, name: &Path) -> Option<PathBuf>;
    /// What QEMU `qemu` lists for `what` (`-device help`, ...); `None`
    /// when that cannot be asked (then nothing is checked).
    fn qemu_offers(&self, _qemu: &Path, _what: Listing) -> Option<String> {
        None
    }
    /// Why the start would not get the host PCI device `bdf` for the
    /// domain `owner`, one reason each (the IOMMU off, its group in use,
    /// the host needing it, a host driver holding it without `seize`...);
    /// `along`: the config's other devices, taken with it where they
    /// share its IOMMU group. Empty when it would (and by default).
    fn pci_blockers(&self, _bdf: &Bdf, _along: &[Bdf], _owner: &str, _seize: bool) -> Vec<String> {
        Vec::new()
    }
}

/// The real host.
#[derive(Debug, Clone)]
pub struct RealHost {
    /// The root under which `sys/` is read.
    pub root: PathBuf,
}

impl RealHost {
    /// The host at `PVIO_HOST_ROOT` (or `/`).
    pub fn new() -> RealHost {
        RealHost {
            root: crate::host::accel::host_root(),
        }
    }
}

impl Default for RealHost {
    fn default() -> Self {
        RealHost::new()
    }
}

impl HostView for RealHost {
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn unusable(&self, path: &Path, wanted: Wanted) -> Option<String> {
        crate::host::media::unusable(path, wanted)
    }

    fn is_bridge(&self, name: &str) -> bool {
        self.root
            .join("sys/class/net")
            .join(name)
            .join("bridge")
            .is_dir()
    }

    fn has_pci_device(&self, bdf: &Bdf) -> bool {
        pvio_passthrough::Sysfs::new(self.root.join("sys")).exists(*bdf)
    }

    fn pci_blockers(&self, bdf: &Bdf, along: &[Bdf], owner: &str, seize: bool) -> Vec<String> {
        use pvio_passthrough::{Host, Manager, Options, Ownership, Sysfs, SysfsWriter};
        // The start's own checks, run as a silent dry run: nothing changes.
        let m = Manager::new(
            Host::under(&self.root),
            Ownership::from_env(),
            SysfsWriter::with_sink(true, Box::new(|_| {})),
        );
        let mut out = Vec::new();
        let recorded = m
            .ownership()
            .load()
            .is_ok_and(|r| r.devices.contains_key(bdf));
        if !seize && !recorded {
            if let Ok(Some(driver)) = m.host().sys.driver(*bdf) {
                if driver != Sysfs::VFIO_PCI {
                    out.push(format!(
                        "{bdf} is on {driver}, a host driver; add seize=1 to its spec (or \
                         pci_seize=1) to let pvio take it, or run `pvio pci-assignable-add {bdf}` first"
                    ));
                }
            }
        }
        match m.prepare_together_for(*bdf, along, owner, Options::default()) {
            Ok(o) => out.extend(o.blockers.iter().map(|b| format!("{bdf}: {b}"))),
            // A record this user cannot read is the start's to read (the
            // supervisor runs as root); it is no problem of the host.
            Err(pvio_passthrough::ManagerError::Ownership(_)) => {}
            Err(e) => out.push(e.to_string()),
        }
        out
    }

    fn qemu_offers(&self, qemu: &Path, what: Listing) -> Option<String> {
        let out = std::process::Command::new(self.find_program(qemu)?)
            .args([what.option(), "help"])
            .stdin(std::process::Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn find_program(&self, name: &Path) -> Option<PathBuf> {
        if name.components().count() > 1 {
            return name.is_file().then(|| name.to_owned());
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    }
}

/// The first OVMF image that exists, or the usual Debian path when none
/// does (the checks then say to install `ovmf`).
pub fn ovmf_path(host: &dyn HostView) -> PathBuf {
    OVMF_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| host.exists(p))
        .unwrap_or_else(|| PathBuf::from(OVMF_CANDIDATES[0]))
}

/// One of QEMU's `help` listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// `-display help`.
    Displays,
    /// `-device help`.
    Devices,
    /// `-audiodev help`.
    Audio,
}

impl Listing {
    /// The option whose `help` lists it.
    pub fn option(self) -> &'static str {
        match self {
            Listing::Displays => "-display",
            Listing::Devices => "-device",
            Listing::Audio => "-audiodev",
        }
    }
}
