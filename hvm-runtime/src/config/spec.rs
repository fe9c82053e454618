//! The typed domain description, [`DomainSpec`], that a config becomes,
//! with the warnings found on the way. `build/` makes it from the
//! settings; the plan (`crate::plan`) turns it into devices and a command
//! line.

use std::path::PathBuf;

use serde::Serialize;

use super::cpus::CpuAffinity;
use super::diag::{Diagnostic, Location, Origin};
use super::disk::DiskSpec;
use super::fields::Located;
use super::options::{
    Action, BootDevice, Firmware, Machine, Serial, SoundHw, UsbDevice, Vga, ViridianGroup,
};
use super::pci::PciSpec;
use super::vif::VifSpec;

/// A domain, as its config describes it. Every default is filled in;
/// nothing here has been checked against the host yet (files, bridges,
/// firmware): the plan does that.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainSpec {
    /// The config file it came from (`None` for a config given as text).
    pub source: Option<PathBuf>,
    /// The domain's name (safe as a file name).
    pub name: String,
    /// The UUID, if the config gives one (the plan makes one otherwise).
    pub uuid: Option<String>,
    /// RAM in MiB.
    pub memory_mib: u64,
    /// vCPUs at start.
    pub vcpus: u32,
    /// The most vCPUs the guest may have (at least `vcpus`).
    pub maxvcpus: u32,
    /// Where the vCPU threads may run.
    pub cpus: CpuAffinity,
    /// A kernel for direct boot.
    pub kernel: Option<Located<PathBuf>>,
    /// Its initrd.
    pub ramdisk: Option<Located<PathBuf>>,
    /// Its command line (from `cmdline`, or `root` + `extra`).
    pub cmdline: Option<String>,
    /// The firmware.
    pub firmware: Firmware,
    /// Where the firmware was chosen, when the config chose it.
    pub firmware_at: Option<Location>,
    /// The boot order.
    pub boot: Vec<BootDevice>,
    /// The disks, in config order.
    pub disks: Vec<Located<DiskSpec>>,
    /// The NICs, in config order.
    pub vifs: Vec<Located<VifSpec>>,
    /// The passed-through PCI devices.
    pub pci: Vec<Located<PciSpec>>,
    /// ACPI tables.
    pub acpi: bool,
    /// A local APIC.
    pub apic: bool,
    /// PAE (and long mode).
    pub pae: bool,
    /// The Hyper-V enlightenment groups (empty: none).
    pub viridian: Vec<ViridianGroup>,
    /// The RTC in local time.
    pub localtime: bool,
    /// `pvio save` and `pvio migrate` refuse the domain.
    pub nomigrate: bool,
    /// The RTC's offset in seconds.
    pub rtc_timeoffset: i64,
    /// The serial ports, in order (COM1 first).
    pub serials: Vec<Serial>,
    /// The VNC server, if any.
    pub vnc: Option<VncSpec>,
    /// An SDL window.
    pub sdl: bool,
    /// The SDL window full screen.
    pub full_screen: bool,
    /// The video card.
    pub vga: Vga,
    /// The video memory in MiB, if set.
    pub videoram_mib: Option<u32>,
    /// A USB controller.
    pub usb: bool,
    /// USB input devices.
    pub usbdevices: Vec<UsbDevice>,
    /// Sound cards.
    pub soundhw: Vec<SoundHw>,
    /// A floppy image.
    pub fda: Option<Located<PathBuf>>,
    /// QEMU's human monitor on a socket.
    pub monitor: bool,
    /// The VNC keyboard layout.
    pub keymap: Option<String>,
    /// On power-off.
    pub on_poweroff: Action,
    /// On reboot.
    pub on_reboot: Action,
    /// On crash.
    pub on_crash: Action,
    /// Extra QEMU arguments.
    pub device_model_args: Vec<String>,
    /// The QEMU binary, when not the default.
    pub device_model_override: Option<Located<PathBuf>>,
    /// The QEMU machine type.
    pub machine: Machine,
}

/// The VNC server's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VncSpec {
    /// The listen address.
    pub listen: String,
    /// The display number, if fixed.
    pub display: Option<u32>,
    /// Take the first free display from `display` (or 0) on.
    pub unused: bool,
    /// The password, set over QMP after start (never on the command line).
    #[serde(skip)]
    pub password: Option<String>,
}

/// A key (or a value of one) that the config sets and pvio accepts without
/// effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NoEffect {
    /// How it was written, shortened: `kernel="hvmloader"`, `vncconsole`.
    pub shown: String,
    /// Where.
    pub at: Location,
    /// Why it has no effect.
    pub why: String,
}

/// A config turned into a spec, with what the user should know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Loaded {
    /// The domain.
    pub spec: DomainSpec,
    /// Warnings, each with file, line and key.
    pub warnings: Vec<Diagnostic>,
    /// The keys that have no effect, for one summary line.
    pub no_effect: Vec<NoEffect>,
}

impl Loaded {
    /// One line naming every key with no effect, or `None` when there are
    /// none: `/etc/xen/winxp: keys with no effect under pvio: ...`.
    pub fn no_effect_line(&self) -> Option<String> {
        no_effect_line(self.spec.source.as_deref(), &self.no_effect)
    }
}

/// The no-effect line of `items` found in `source` (`None` when there are
/// none).
pub fn no_effect_line(source: Option<&std::path::Path>, items: &[NoEffect]) -> Option<String> {
    if items.is_empty() {
        return None;
    }
    let items: Vec<String> = items
        .iter()
        .map(|n| match &n.at.origin {
            Origin::File(_) => format!("{} (line {})", n.shown, n.at.line),
            Origin::CommandLine => format!("{} ({})", n.shown, n.at),
        })
        .collect();
    let file = source.map_or_else(|| "config".to_owned(), |p| p.display().to_string());
    Some(format!(
        "{file}: keys with no effect under pvio (see docs/config.md): {}",
        items.join(", ")
    ))
}
