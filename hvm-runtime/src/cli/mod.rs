//! The `pvio` command line: clap definitions, the grouped help, and the
//! dispatch from a parsed command to the library.

pub mod args;
mod backend_net;
mod bench_blk;
mod bench_net;
mod create;
pub mod domain;
mod help;
mod hotplug;
mod migrate;
mod pci;
mod run;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

pub use crate::report::error_line;
pub use run::{run, CliError};

use args::*;

/// pvio runs HVM guests with fast paravirtual I/O: PV disks and NICs over
/// vhost-user, emulated fallbacks, and PCI passthrough.
#[derive(Debug, Parser)]
#[command(name = "pvio", version, propagate_version = true)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). `RUST_LOG` also works.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Every `pvio` command. The help groups them (see `help.rs`).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a domain from an xl-style config file.
    Create(CreateArgs),
    /// List running domains.
    List(JsonArg),
    /// Ask a domain to power off (ACPI power button).
    Shutdown(ShutdownArgs),
    /// Ask a domain to reboot (ACPI power button; -F resets at once).
    Reboot(RebootArgs),
    /// Stop a domain at once, as pulling the plug.
    Destroy(DomainArg),
    /// Pause a domain's vCPUs.
    Pause(DomainArg),
    /// Resume a paused domain.
    Unpause(DomainArg),
    /// Attach to a domain's serial console (detach with Ctrl-]).
    Console(DomainArg),
    /// Show a domain's VNC address and start a viewer if one is installed.
    Vncviewer(DomainArg),
    /// Send one QMP command to a domain's QEMU (through its supervisor).
    Qmp(domain::QmpArgs),
    /// Send one human-monitor (HMP) command to a domain's QEMU.
    Monitor(domain::MonitorArgs),
    /// Save a domain's whole state into a file (it ends unless -c or -p).
    Save(migrate::SaveArgs),
    /// Restore a domain saved with `pvio save`.
    Restore(migrate::RestoreArgs),
    /// Move a running domain to another host over ssh.
    Migrate(migrate::MigrateArgs),
    /// Receive a migrating domain on stdin (run by `pvio migrate` through ssh).
    MigrateReceive(migrate::MigrateReceiveArgs),

    /// Hot-plug a PV disk into a running domain.
    BlockAttach(BlockAttachArgs),
    /// Hot-unplug a PV disk from a running domain.
    BlockDetach(VdevArgs),
    /// List a domain's disks.
    BlockList(DomainArg),

    /// Insert a medium into an emulated CD-ROM of a running domain.
    CdInsert(CdInsertArgs),
    /// Eject the medium of an emulated CD-ROM.
    CdEject(VdevArgs),

    /// Hot-plug a NIC into a running domain.
    NetworkAttach(NetworkAttachArgs),
    /// Hot-unplug a NIC from a running domain.
    NetworkDetach(NetworkDetachArgs),
    /// List a domain's NICs.
    NetworkList(DomainArg),

    /// List the host's PCI devices, their IOMMU groups and whether they can be assigned.
    PciList(PciListArgs),
    /// Prepare a PCI device for guests (bind it to vfio-pci).
    PciAssignableAdd(PciAssignableAddArgs),
    /// Give a prepared PCI device back to the host.
    PciAssignableRemove(PciAssignableRemoveArgs),
    /// List PCI devices prepared for guests.
    PciAssignableList(JsonArg),
    /// Give a PCI device to a domain (hot-plugged if it runs).
    Assign(AssignArgs),
    /// Take a PCI device back from its domain and return it to its host driver.
    Release(ReleaseArgs),

    /// Run a PV backend in the foreground.
    #[command(subcommand)]
    Backend(BackendCommand),

    /// Measure PV devices against emulated ones and peer backends.
    #[command(subcommand)]
    Bench(BenchCommand),

    /// Check what this host offers: KVM, IOMMU, vfio-pci, QEMU, tap, hugepages.
    HostCheck(JsonArg),

    /// Run a domain's supervisor (started by `pvio create`; not for users).
    #[command(hide = true)]
    Supervise(domain::SuperviseArgs),
}

/// Parses the process arguments, with the grouped help. `--help` and
/// `--version` print and exit 0; a usage error is one line on stderr
/// (what is wrong, clap's tip if it has one, and the usage) and exit code 2.
pub fn parse() -> Cli {
    match try_parse_from(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            eprintln!("pvio: {}", usage_error_line(&e));
            std::process::exit(2);
        }
    }
}

/// One line from clap's several-line usage error.
pub fn usage_error_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut what = Vec::new();
    let mut tip = None;
    let mut usage = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("error: ") {
            what.push(rest.to_owned());
        } else if let Some(rest) = trimmed.strip_prefix("tip: ") {
            tip = Some(rest.to_owned());
        } else if let Some(rest) = trimmed.strip_prefix("Usage: ") {
            usage = Some(rest.to_owned());
        } else if line.starts_with("  ") && !trimmed.is_empty() && tip.is_none() && usage.is_none()
        {
            // The items of "the following required arguments were not provided:".
            what.push(trimmed.to_owned());
        }
    }
    let mut out = what.join(" ");
    if let Some(t) = tip {
        out.push_str(&format!("; {t}"));
    }
    if let Some(u) = usage {
        out.push_str(&format!(" (usage: {u})"));
    }
    out
}

/// Parses `args` (the first is the program name), with the grouped help.
pub fn try_parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cmd = help::with_grouped_help(Cli::command());
    let matches = cmd.try_get_matches_from(args)?;
    Cli::from_arg_matches(&matches)
}
