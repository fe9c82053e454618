//! From a [`DomainSpec`] to a [`DomainPlan`]: which disks and NICs are PV
//! (a pvio backend to start, on a vhost-user socket in the domain's run
//! dir), which are emulated by QEMU and where they sit, which PCI devices
//! are passed through, and the device model's full command line.
//!
//! Building a plan touches nothing on the host; [`check::check_host`]
//! then says what the host lacks (a missing image, bridge, firmware...),
//! each problem with the config line it comes from.

pub mod backend_cmd;
mod bootorder;
pub mod check;
mod devices;
pub mod host;
pub mod ids;
pub mod msix;
pub mod offers;
pub mod pcie;
pub mod qdev;
mod qemu;
pub mod reconnect;
pub use qemu::{DM_USER_PLACEHOLDER, SANDBOX_ARG};
pub mod render;
mod rtc;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::cpus::CpuAffinity;
use crate::config::disk::{DiskBus, DiskFormat};
use crate::config::options::{Action, Firmware, Machine};
use crate::config::pci::Bdf;
use crate::config::vif::{Mac, NicModel};
use crate::config::{DomainSpec, Location};
use crate::host::accel::AccelDecision;

pub use check::{check_host, Problem};
pub use host::{HostView, RealHost};
pub use ids::{Entropy, FixedEntropy, OsEntropy};

/// The default root of runtime state.
pub const DEFAULT_RUN_DIR: &str = "/run/pvio";
/// The default device model.
pub const DEFAULT_QEMU: &str = "qemu-system-x86_64";
/// The longest Unix socket path Linux takes (`sun_path` less the NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Why a plan cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A path the command line needs is not UTF-8.
    #[error("the path {} is not UTF-8; QEMU's options cannot carry it", .0.display())]
    NotUtf8(PathBuf),
    /// A socket path is longer than a Unix socket address allows.
    #[error("the socket path {} is longer than {MAX_SOCKET_PATH} bytes; set PVIO_RUN_DIR to a shorter directory", .0.display())]
    SocketPathTooLong(PathBuf),
    /// A setting the plan cannot honour, with where it was set.
    #[error("{at}: key '{key}': {message}")]
    Unsupported {
        /// Where.
        at: Location,
        /// The key.
        key: &'static str,
        /// Why.
        message: String,
    },
    /// A VNC password longer than VNC authentication takes.
    #[error("key 'vncpasswd': the password is {0} characters long; VNC authentication uses at most 8 and would silently cut it; choose one of 8 or fewer")]
    VncPassword(usize),
    /// Several settings the plan cannot honour, every one, in config line
    /// order.
    #[error("{} settings cannot be planned:{}", .0.len(), .0.iter().map(|e| format!("\n  {e}")).collect::<String>())]
    Several(Vec<PlanError>),
    /// The host lacks what the plan needs (every problem listed).
    #[error("the host is not ready for this domain:{}", .0.iter().map(|p| format!("\n  {p}")).collect::<String>())]
    Host(Vec<Problem>),
}

impl PlanError {
    /// The config line the error is about, if any.
    pub fn at(&self) -> Option<&Location> {
        match self {
            PlanError::Unsupported { at, .. } => Some(at),
            _ => None,
        }
    }

    /// One error for all of `errors` (none: `Ok`): the only one, or
    /// [`PlanError::Several`] in line order.
    fn from_all(mut errors: Vec<PlanError>) -> Result<(), PlanError> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => {
                errors.sort_by_key(|e| e.at().map(location_key));
                Err(PlanError::Several(errors))
            }
        }
    }
}

/// The order of config places: file lines first, then command-line
/// arguments.
pub fn location_key(at: &Location) -> (bool, u32) {
    (
        matches!(at.origin, crate::config::Origin::CommandLine),
        at.line,
    )
}

/// The dir, under the run root, of the device models' own dirs: the
/// vhost-user sockets a domain's QEMU connects to live in
/// `<run root>/.dm/<name>/`, the only place of the run dir its
/// unprivileged QEMU may reach (`domain::access`).
pub const DM_DIR: &str = ".dm";

/// The device-model dir of domain `name`.
pub fn dm_dir(run_root: &Path, name: &str) -> PathBuf {
    run_root.join(DM_DIR).join(name)
}

/// The file of the second QMP socket, the supervisor's for events, in
/// the domain's run dir.
pub const EVENTS_SOCKET: &str = "qmp-events.sock";

/// What the plan needs besides the spec.
pub struct PlanOptions<'a> {
    /// The root of runtime state (`PVIO_RUN_DIR`); the domain's dir is
    /// `<run_root>/<name>`.
    pub run_root: PathBuf,
    /// The accelerator and why.
    pub accel: AccelDecision,
    /// The OVMF image for `firmware = "uefi"`.
    pub ovmf: PathBuf,
    /// Now, for `rtc_timeoffset`.
    pub now: std::time::SystemTime,
    /// Random bytes for MACs and the UUID.
    pub entropy: &'a mut dyn Entropy,
    /// The installed QEMU's `(major, minor)`; `None` takes the baseline
    /// (10.0 or later).
    pub qemu_release: Option<(u32, u32)>,
}

impl<'a> PlanOptions<'a> {
    /// Options for this host: `PVIO_RUN_DIR`, the detected accelerator,
    /// the installed OVMF, the clock.
    pub fn for_host(host: &dyn HostView, entropy: &'a mut dyn Entropy) -> PlanOptions<'a> {
        PlanOptions {
            run_root: run_root(),
            accel: crate::host::accel::detect(),
            ovmf: host::ovmf_path(host),
            now: std::time::SystemTime::now(),
            entropy,
            qemu_release: crate::host::qemu_release(std::path::Path::new(DEFAULT_QEMU)),
        }
    }
}

/// `PVIO_RUN_DIR`, or `/run/pvio`.
pub fn run_root() -> PathBuf {
    std::env::var_os("PVIO_RUN_DIR").map_or_else(|| PathBuf::from(DEFAULT_RUN_DIR), PathBuf::from)
}

/// Everything needed to start a domain.
#[derive(Debug, Clone, Serialize)]
pub struct DomainPlan {
    /// The domain's name.
    pub name: String,
    /// Its UUID (from the config, or made up).
    pub uuid: String,
    /// The domain's runtime directory (sockets live here).
    pub run_dir: PathBuf,
    /// The accelerator and why.
    pub accel: AccelDecision,
    /// The QEMU machine.
    pub machine: Machine,
    /// RAM in MiB.
    pub memory_mib: u64,
    /// vCPUs at start and at most.
    pub vcpus: u32,
    /// The most vCPUs.
    pub maxvcpus: u32,
    /// The disks, in config order.
    pub disks: Vec<DiskPlan>,
    /// The NICs, in config order.
    pub nics: Vec<NicPlan>,
    /// The passed-through PCI devices.
    pub passthrough: Vec<PassthroughPlan>,
    /// PV block backends to start before QEMU.
    pub blk_backends: Vec<BackendPlan>,
    /// PV net backends to start before QEMU.
    pub net_backends: Vec<BackendPlan>,
    /// Taps to create (and add to their bridge) before the backends and
    /// QEMU start.
    pub taps: Vec<TapPlan>,
    /// vCPU pinning, applied after QEMU starts (thread ids from QMP).
    pub cpu_pinning: CpuAffinity,
    /// QEMU's QMP socket.
    pub qmp_socket: PathBuf,
    /// QEMU's second QMP socket, the supervisor's for events.
    pub events_socket: PathBuf,
    /// The VNC password to set over QMP after start (never printed).
    #[serde(skip)]
    pub vnc_password: Option<String>,
    /// What to do on power-off, reboot and crash.
    pub on_poweroff: Action,
    /// On reboot.
    pub on_reboot: Action,
    /// On crash.
    pub on_crash: Action,
    /// The firmware image given to QEMU (`-bios`), when not SeaBIOS.
    pub firmware: Option<PathBuf>,
    /// The device model's command line.
    pub qemu: QemuCommand,
    /// What the user should know about the plan (one line each).
    pub notes: Vec<String>,
}

/// One disk and how it reaches the guest.
#[derive(Debug, Clone, Serialize)]
pub struct DiskPlan {
    /// The guest device name.
    pub vdev: String,
    /// Where the guest sees it.
    pub bus: DiskBus,
    /// The image, or `None` for an empty CD-ROM drive.
    pub image: Option<PathBuf>,
    /// The image format.
    pub format: DiskFormat,
    /// Read-only.
    pub read_only: bool,
    /// A CD-ROM.
    pub cdrom: bool,
    /// The vhost-user socket of its PV backend (PV disks only).
    pub socket: Option<PathBuf>,
    /// The config line.
    pub at: Location,
}

/// One NIC and how it reaches the guest.
#[derive(Debug, Clone, Serialize)]
pub struct NicPlan {
    /// The NIC's number.
    pub devid: u32,
    /// The model (virtio is PV).
    pub model: NicModel,
    /// The MAC.
    pub mac: Mac,
    /// The MAC was made up (none in the config).
    pub random_mac: bool,
    /// The host tap.
    pub tap: String,
    /// The bridge the tap joins.
    pub bridge: String,
    /// The MTU, if set.
    pub mtu: Option<u16>,
    /// The vhost-user socket of its PV backend (PV NICs only).
    pub socket: Option<PathBuf>,
    /// The config line.
    pub at: Location,
}

/// A tap interface the supervisor creates and adds to a bridge.
#[derive(Debug, Clone, Serialize)]
pub struct TapPlan {
    /// The interface name.
    pub name: String,
    /// The bridge it joins.
    pub bridge: String,
    /// The MTU, if set.
    pub mtu: Option<u16>,
}

/// A PV backend process: `pvio backend blk|net ...`.
#[derive(Debug, Clone, Serialize)]
pub struct BackendPlan {
    /// The guest device it serves (`xvda`, `nic0`).
    pub device: String,
    /// Its vhost-user socket.
    pub socket: PathBuf,
    /// The arguments after `pvio` (`backend blk --socket ...`).
    pub args: Vec<String>,
}

/// A passed-through PCI device.
#[derive(Debug, Clone, Serialize)]
pub struct PassthroughPlan {
    /// The host device.
    pub bdf: Bdf,
    /// The guest slot, if fixed.
    pub vslot: Option<u8>,
    /// Take it from its host driver.
    pub seize: bool,
    /// The config line.
    pub at: Location,
}

/// The device model's command line.
#[derive(Debug, Clone, Serialize)]
pub struct QemuCommand {
    /// The program.
    pub binary: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
}

/// Makes the plan for `spec`. Touches nothing on the host.
pub fn plan(spec: &DomainSpec, opts: &mut PlanOptions<'_>) -> Result<DomainPlan, PlanError> {
    let run_dir = opts.run_root.join(&spec.name);
    let uuid = spec
        .uuid
        .clone()
        .unwrap_or_else(|| ids::random_uuid(opts.entropy));
    let qmp_socket = socket(&run_dir, "qmp.sock")?;
    let events_socket = socket(&run_dir, EVENTS_SOCKET)?;
    // Every setting the plan cannot honour is reported, not the first.
    let mut errors = Vec::new();
    let dm_dir = dm_dir(&opts.run_root, &spec.name);
    let devs = devices::plan_devices(
        spec,
        &dm_dir,
        (opts.accel.accel, opts.qemu_release),
        opts.entropy,
        &mut errors,
    );
    let mut notes = Vec::new();
    let places = qemu::Places {
        run_dir: &run_dir,
        qmp: &qmp_socket,
        events: &events_socket,
    };
    let qemu = qemu::command_line(spec, &devs, &places, &uuid, opts, &mut notes, &mut errors);
    PlanError::from_all(errors)?;
    let qemu = qemu?;
    Ok(DomainPlan {
        name: spec.name.clone(),
        uuid,
        run_dir,
        accel: opts.accel.clone(),
        machine: spec.machine,
        memory_mib: spec.memory_mib,
        vcpus: spec.vcpus,
        maxvcpus: spec.maxvcpus,
        disks: devs.disks,
        nics: devs.nics,
        passthrough: devs.passthrough,
        blk_backends: devs.blk_backends,
        net_backends: devs.net_backends,
        taps: devs.taps,
        cpu_pinning: spec.cpus.clone(),
        qmp_socket,
        events_socket,
        vnc_password: spec.vnc.as_ref().and_then(|v| v.password.clone()),
        on_poweroff: spec.on_poweroff,
        on_reboot: spec.on_reboot,
        on_crash: spec.on_crash,
        firmware: match &spec.firmware {
            Firmware::Bios => None,
            Firmware::Uefi => Some(opts.ovmf.clone()),
            Firmware::File(p) => Some(p.clone()),
        },
        qemu,
        notes,
    })
}

/// A socket path in `dir`, checked against the Unix socket limit.
pub fn socket(run_dir: &Path, file: &str) -> Result<PathBuf, PlanError> {
    let p = run_dir.join(file);
    if p.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(PlanError::SocketPathTooLong(p));
    }
    Ok(p)
}

/// A path as text for a command line.
fn text(p: &Path) -> Result<String, PlanError> {
    p.to_str()
        .map(str::to_owned)
        .ok_or_else(|| PlanError::NotUtf8(p.to_owned()))
}

/// A path as a QEMU option value: commas doubled (QEMU's escape).
fn qemu_path(p: &Path) -> Result<String, PlanError> {
    Ok(text(p)?.replace(',', ",,"))
}

#[cfg(test)]
mod console_tests;
#[cfg(test)]
mod error_tests;
#[cfg(test)]
mod tests;
