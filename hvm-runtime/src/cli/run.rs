//! From a parsed command to the library call that does it.

use std::process::ExitCode;

use super::{domain, hotplug, pci, BackendCommand, BenchCommand, Cli, Command};
use crate::domain::control::Request;
use crate::host::check;

/// Errors the `pvio` command reports: one line each, with what to do next.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Writing the output failed.
    #[error("cannot write the output")]
    Output(#[source] serde_json::Error),
    /// The PV block backend failed (bad image, socket in use, ...).
    #[error(transparent)]
    Blk(#[from] pvio_backends::blk::BlkError),
    /// The block benchmark could not run.
    #[error(transparent)]
    BenchBlk(#[from] pvio_bench::blk::BenchError),
    /// The PV net backend failed (bad tap, socket in use, ...).
    #[error(transparent)]
    Net(#[from] pvio_backends::net::NetError),
    /// The net benchmark could not run.
    #[error(transparent)]
    BenchNet(#[from] pvio_bench::net::BenchError),
    /// A domain or hot-plug command refused or failed.
    #[error(transparent)]
    Domain(#[from] super::domain::DomainCliError),
    /// A PCI passthrough command refused or failed.
    #[error(transparent)]
    Pci(#[from] super::pci::PciError),
    /// A save, restore or migration refused or failed.
    #[error(transparent)]
    Migrate(#[from] crate::migrate::MigrateError),
}

/// Runs one command. `Ok` carries the exit code for commands whose success is
/// not all-or-nothing (`host-check` exits 1 when a check fails).
pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    use Command as C;
    match cli.command {
        C::HostCheck(a) => host_check(a.json),
        C::Create(a) if a.dry_run => Ok(super::create::dry_run(&a)),
        C::Create(a) => Ok(domain::create(&a)?),
        C::List(a) => Ok(domain::list(a.json)?),
        C::Shutdown(a) => Ok(domain::shutdown(&a)?),
        C::Reboot(a) => Ok(domain::reboot(&a)?),
        C::Destroy(a) => Ok(domain::destroy(&a)?),
        C::Pause(a) => Ok(domain::simple(&a, Request::Pause, "paused")?),
        C::Unpause(a) => Ok(domain::simple(&a, Request::Unpause, "running")?),
        C::Console(a) => Ok(domain::console(&a)?),
        C::Vncviewer(a) => Ok(domain::vncviewer(&a)?),
        C::Qmp(a) => Ok(domain::qmp(&a)?),
        C::Monitor(a) => Ok(domain::monitor(&a)?),
        C::BlockAttach(a) => Ok(hotplug::block_attach(&a)?),
        C::BlockDetach(a) => Ok(hotplug::block_detach(&a)?),
        C::BlockList(a) => Ok(hotplug::block_list(&a)?),
        C::CdInsert(a) => Ok(hotplug::cd_insert(&a)?),
        C::CdEject(a) => Ok(hotplug::cd_eject(&a)?),
        C::NetworkAttach(a) => Ok(hotplug::network_attach(&a)?),
        C::NetworkDetach(a) => Ok(hotplug::network_detach(&a)?),
        C::NetworkList(a) => Ok(hotplug::network_list(&a)?),
        C::Supervise(a) => Ok(domain::supervise(&a)?),
        C::Save(a) => Ok(super::migrate::save(&a)?),
        C::Restore(a) => Ok(super::migrate::restore(&a)?),
        C::Migrate(a) => Ok(super::migrate::migrate(&a)?),
        C::MigrateReceive(a) => Ok(super::migrate::receive(&a)?),
        C::PciList(a) => Ok(pci::pci_list(a)?),
        C::PciAssignableAdd(a) => Ok(pci::assignable_add(a)?),
        C::PciAssignableRemove(a) => Ok(pci::assignable_remove(a)?),
        C::PciAssignableList(a) => Ok(pci::assignable_list(a)?),
        C::Assign(a) => Ok(pci::assign(a)?),
        C::Release(a) => Ok(pci::release(a)?),
        C::Backend(BackendCommand::Blk(a)) => backend_blk(a),
        C::Backend(BackendCommand::Net(a)) => Ok(super::backend_net::backend_net(a)?),
        C::Bench(BenchCommand::Blk(a)) => super::bench_blk::bench_blk(&a),
        C::Bench(BenchCommand::Net) => Ok(super::bench_net::bench_net()?),
    }
}

fn host_check(json: bool) -> Result<ExitCode, CliError> {
    let report = check::run_checks(&crate::host::accel::host_root(), &check::qemu_version);
    if json {
        let text = serde_json::to_string_pretty(&report).map_err(CliError::Output)?;
        println!("{text}");
    } else {
        print!("{}", report.to_table());
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `pvio backend blk`: serves the image in the foreground until SIGTERM or
/// SIGINT, in the sandbox unless `--no-sandbox`.
fn backend_blk(a: super::args::BlkBackendArgs) -> Result<ExitCode, CliError> {
    use pvio_backends::blk::{BlkError, BlkOptions, ImageSource};
    use pvio_backends::inherit::{take_two, InheritError};
    use pvio_backends::vhost_user::Listen;
    // Inherited fds are taken over first, together (each number once).
    let (listen_fd, image_fd) = take_two(a.listen_fd, a.image_fd).map_err(BlkError::from)?;
    let neither = |what| BlkError::from(InheritError::Neither(what));
    let listen = match (a.socket, listen_fd) {
        (Some(path), _) => Listen::Path(path),
        (None, Some(fd)) => Listen::Fd(fd),
        (None, None) => return Err(neither("--socket or --listen-fd").into()),
    };
    let image = match (a.image, image_fd) {
        (Some(path), _) => ImageSource::Path(path),
        (None, Some(fd)) => ImageSource::Fd(fd),
        (None, None) => return Err(neither("--image or --image-fd").into()),
    };
    let mut opts = BlkOptions::with(listen, image);
    opts.read_only = a.read_only;
    opts.num_queues = a.num_queues;
    opts.queue_size = a.queue_size;
    opts.direct = a.direct;
    opts.serial = a.serial;
    pvio_backends::blk::serve_until_signal(&opts, a.sandbox.options().as_ref())?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_supervisor_command_parses_but_is_hidden() {
        let cli = crate::cli::try_parse_from(["pvio", "supervise", "/run/pvio/web"]).unwrap();
        assert!(matches!(cli.command, Command::Supervise(_)));
        let mut cmd = super::super::help::with_grouped_help(
            <crate::cli::Cli as clap::CommandFactory>::command(),
        );
        assert!(!cmd.render_help().to_string().contains("supervise"));
    }
}
