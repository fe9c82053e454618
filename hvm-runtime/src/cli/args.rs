//! The arguments of each `pvio` command, as clap derive structs.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Subcommand};

/// `pvio create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Attach to the serial console once the domain runs.
    #[arg(short = 'c')]
    pub console: bool,
    /// Print the plan (backends, the device model's command line) and check
    /// that files exist, without starting anything.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
    /// The domain config file (xl syntax).
    pub file: PathBuf,
    /// `key=value` settings that override the file, as with `xl create`.
    pub overrides: Vec<String>,
}

/// A command that takes only a domain name.
#[derive(Debug, Args)]
pub struct DomainArg {
    /// The domain's name.
    pub name: String,
}

/// `pvio shutdown`.
#[derive(Debug, Args)]
pub struct ShutdownArgs {
    /// Wait until the domain has stopped.
    #[arg(short = 'w', long)]
    pub wait: bool,
    /// The domain's name.
    pub name: String,
}

/// `pvio reboot`.
#[derive(Debug, Args)]
pub struct RebootArgs {
    /// Reset the machine at once instead of asking the guest (as `xl reboot
    /// -F`); needed for guests that ignore the ACPI power button.
    #[arg(short = 'F', long)]
    pub force: bool,
    /// The domain's name.
    pub name: String,
}

/// `pvio list`, `pvio pci-list` and other listings.
#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `pvio bench blk`.
#[derive(Debug, Args)]
pub struct BenchBlkArgs {
    /// Print the figures as JSON on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Image on a disk filesystem (`/var/tmp` unless PVIO_BENCH_DIR says
    /// otherwise), opened with O_DIRECT by every backend and by fio.
    #[arg(long)]
    pub direct: bool,
    /// Cloud Hypervisor's `vhost_user_block` binary, built from its source,
    /// for a row of its own.
    #[arg(long, value_name = "PATH")]
    pub peer_ch: Option<PathBuf>,
}

/// `pvio block-attach`.
#[derive(Debug, Args)]
pub struct BlockAttachArgs {
    /// The domain's name.
    pub name: String,
    /// A disk spec as in a config's `disk = [...]`, e.g.
    /// `file:/img/data.raw,xvdb,w` or `target=/img/data.raw,vdev=xvdb`;
    /// or, as xm took it, the target alone followed by VDEV and MODE.
    pub diskspec: String,
    /// xm's form: the guest device (`hdc:cdrom`, `xvdb`).
    pub vdev: Option<String>,
    /// xm's form: `r` or `w`.
    pub mode: Option<String>,
}

impl BlockAttachArgs {
    /// The disk spec, xm's three-part form (`TARGET VDEV MODE`) joined as
    /// xl writes it (`TARGET,VDEV,MODE`).
    pub fn spec(&self) -> String {
        match (&self.vdev, &self.mode) {
            (Some(v), Some(m)) => format!("{},{v},{m}", self.diskspec),
            (Some(v), None) => format!("{},{v}", self.diskspec),
            _ => self.diskspec.clone(),
        }
    }
}

/// `pvio block-detach`, `pvio cd-eject`.
#[derive(Debug, Args)]
pub struct VdevArgs {
    /// The domain's name.
    pub name: String,
    /// The guest device name (`xvdb`, `hdc`, ...).
    pub vdev: String,
}

/// `pvio cd-insert`.
#[derive(Debug, Args)]
pub struct CdInsertArgs {
    /// The domain's name.
    pub name: String,
    /// The CD-ROM's device name (`hdc`).
    pub vdev: String,
    /// The ISO image to insert.
    pub path: PathBuf,
}

/// `pvio network-attach`.
#[derive(Debug, Args)]
pub struct NetworkAttachArgs {
    /// The domain's name.
    pub name: String,
    /// vif settings as in a config's `vif = [...]` (`bridge=`, `mac=`,
    /// `model=`, ...).
    pub settings: Vec<String>,
}

/// `pvio network-detach`.
#[derive(Debug, Args)]
pub struct NetworkDetachArgs {
    /// The domain's name.
    pub name: String,
    /// The NIC's MAC address or device number.
    pub nic: String,
}

/// `pvio pci-list`.
#[derive(Debug, Args)]
pub struct PciListArgs {
    /// List every device, not only endpoints that could be assigned.
    #[arg(long)]
    pub all: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `pvio pci-assignable-add`.
#[derive(Debug, Args)]
pub struct PciAssignableAddArgs {
    /// Print each sysfs write instead of making it.
    #[arg(long)]
    pub dry_run: bool,
    /// Take the device even when the host seems to need it.
    #[arg(long)]
    pub force: bool,
    /// Take every endpoint of the device's IOMMU group along.
    #[arg(long)]
    pub group: bool,
    /// The device's address, `[DDDD:]BB:SS.F`.
    pub bdf: String,
}

/// `pvio pci-assignable-remove`.
#[derive(Debug, Args)]
pub struct PciAssignableRemoveArgs {
    /// Rebind the host driver the device had before.
    #[arg(short = 'r')]
    pub rebind: bool,
    /// Print each sysfs write instead of making it.
    #[arg(long)]
    pub dry_run: bool,
    /// The device's address, `[DDDD:]BB:SS.F`.
    pub bdf: String,
}

/// `pvio assign`.
#[derive(Debug, Args)]
pub struct AssignArgs {
    /// Print each sysfs write and QMP command instead of making it.
    #[arg(long)]
    pub dry_run: bool,
    /// Take every endpoint of the device's IOMMU group along.
    #[arg(long)]
    pub group: bool,
    /// Take the device even when the host seems to need it.
    #[arg(long)]
    pub force: bool,
    /// The device's address, `[DDDD:]BB:SS.F`.
    pub bdf: String,
    /// The domain that gets it.
    pub domain: String,
}

/// `pvio release`.
#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// Print each sysfs write and QMP command instead of making it.
    #[arg(long)]
    pub dry_run: bool,
    /// The device's address, `[DDDD:]BB:SS.F`.
    pub bdf: String,
}

/// `pvio backend ...`: run one PV backend in the foreground.
#[derive(Debug, Subcommand)]
pub enum BackendCommand {
    /// Serve a virtio-blk device over vhost-user from an image file or block device.
    Blk(BlkBackendArgs),
    /// Serve a virtio-net device over vhost-user on a tap interface.
    Net(NetBackendArgs),
}

/// `pvio backend blk`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("listen").required(true).args(["socket", "listen_fd"])))]
#[command(group(ArgGroup::new("disk").required(true).args(["image", "image_fd"])))]
pub struct BlkBackendArgs {
    /// The vhost-user Unix socket to listen on.
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// An inherited Unix socket, already bound and listening (no file is
    /// created or removed).
    #[arg(long, value_name = "FD")]
    pub listen_fd: Option<i32>,
    /// The raw image file or block device.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// An inherited open image file or block device (read-write unless
    /// --read-only).
    #[arg(long, value_name = "FD")]
    pub image_fd: Option<i32>,
    /// Offer the disk read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Number of request queues.
    #[arg(long, default_value_t = 1)]
    pub num_queues: u16,
    /// Size of each queue (a power of two).
    #[arg(long, default_value_t = 256)]
    pub queue_size: u16,
    /// Open the image with O_DIRECT (bypass the host page cache); set on an
    /// inherited image with F_SETFL.
    #[arg(long)]
    pub direct: bool,
    /// The serial number the guest reads (GET_ID), at most 20 bytes.
    #[arg(long)]
    pub serial: Option<String>,
    /// The sandbox.
    #[command(flatten)]
    pub sandbox: SandboxArgs,
}

/// `pvio backend net`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("listen").required(true).args(["socket", "listen_fd"])))]
#[command(group(ArgGroup::new("tap_source").required(true).args(["tap", "tap_fd"])))]
pub struct NetBackendArgs {
    /// The vhost-user Unix socket to listen on.
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// An inherited Unix socket, already bound and listening (no file is
    /// created or removed).
    #[arg(long, value_name = "FD")]
    pub listen_fd: Option<i32>,
    /// The tap interface (created if missing).
    #[arg(long)]
    pub tap: Option<String>,
    /// An inherited queue of an existing tap, one per queue pair, in order
    /// (opened as `pvio_backends::net::tap::open_queues` does).
    #[arg(long, value_name = "FD")]
    pub tap_fd: Vec<i32>,
    /// Number of RX/TX queue pairs.
    #[arg(long, default_value_t = 1)]
    pub num_queue_pairs: u16,
    /// Size of each queue (a power of two).
    #[arg(long, default_value_t = 256)]
    pub queue_size: u16,
    /// The guest NIC's MAC address.
    #[arg(long)]
    pub mac: Option<String>,
    /// The MTU offered to the guest.
    #[arg(long)]
    pub mtu: Option<u16>,
    /// The sandbox.
    #[command(flatten)]
    pub sandbox: SandboxArgs,
}

/// The sandbox options of `pvio backend blk|net`.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Run without the sandbox (namespaces, dropped ids and capabilities,
    /// no_new_privs, Landlock, seccomp): for debugging only.
    #[arg(long)]
    pub no_sandbox: bool,
    /// Run with a warning when a sandbox layer is unavailable here, instead
    /// of exiting.
    #[arg(long, conflicts_with = "no_sandbox")]
    pub allow_partial_sandbox: bool,
    /// The uid and gid to run as when started as root (default
    /// 65534:65534); ignored when not root.
    #[arg(long, value_name = "UID:GID", conflicts_with = "no_sandbox")]
    pub user: Option<pvio_backends::sandbox::Ids>,
}

impl SandboxArgs {
    /// The sandbox to enter, `None` with `--no-sandbox`.
    pub fn options(&self) -> Option<pvio_backends::sandbox::SandboxOptions> {
        (!self.no_sandbox).then_some(pvio_backends::sandbox::SandboxOptions {
            user: self.user,
            allow_partial: self.allow_partial_sandbox,
        })
    }
}

/// `pvio bench ...`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// PV block backend against qemu-storage-daemon, Cloud Hypervisor's
    /// daemon (`--peer-ch`), the null engine and fio (the host ceiling), no
    /// VM (`--json`: the table on stderr, the figures as JSON on stdout).
    Blk(BenchBlkArgs),
    /// PV net backend alone, no VM: frames per second each way and the
    /// round trip (guests against QEMU's NICs: docs/benchmarks.md).
    Net,
}
