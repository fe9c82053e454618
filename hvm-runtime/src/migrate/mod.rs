//! Domains stopped into a file and brought back, and moved to another
//! host while they run: what `pvio save`, `restore`, `migrate` and
//! `migrate-receive` do, without the command line.
//!
//! | file | role |
//! | --- | --- |
//! | `mod.rs` | errors; the plan of a domain from its saved header |
//! | `file.rs` | `save` into a file, `restore` from one |
//! | `wire.rs` | `migrate` over `ssh`, `migrate-receive` on the other side |
//!
//! The supervisor does the streaming (`domain::outgoing`,
//! `domain::incoming`); this module opens the file or the `ssh` pipes,
//! checks the header against the host, and makes the plan of the
//! restored domain from the config it ran with. It uses `domain`,
//! `config` and `plan`, never `cli`.

pub mod file;
pub mod wire;

use std::path::{Path, PathBuf};

use crate::config::{self, ConfigError, Loaded, Origin as ConfigOrigin};
use crate::domain::launch::Incoming;
use crate::domain::record::Origin;
use crate::domain::saved::{SavedDomain, SavedError};
use crate::domain::DomainError;
use crate::plan::{self, DomainPlan, OsEntropy, PlanError, PlanOptions, RealHost};

/// A save, restore or migration refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The save file cannot be used.
    #[error("{} {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: SavedError,
    },
    /// A file could not be opened, written or read.
    #[error("cannot {what} {}", path.display())]
    Io {
        /// What pvio tried.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The config the domain ran with cannot be used here.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No plan can be made, or the host lacks something.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The domain runtime refused or failed.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// An image the domain used is missing or changed.
    #[error("{0}")]
    Image(String),
    /// The other side refused or failed.
    #[error("{0}")]
    Remote(String),
    /// Refused before anything started.
    #[error("{0}")]
    Refused(String),
}

/// The result of this module's operations.
pub type Result<T> = std::result::Result<T, MigrateError>;

/// Checks that every image of `saved` is here, under the same path and
/// with the same size; `remote` words the error for a migration.
pub fn check_images(saved: &SavedDomain, remote: bool) -> Result<()> {
    for (path, size) in &saved.image_sizes {
        let m = std::fs::metadata(path).map_err(|e| {
            MigrateError::Image(if remote {
                format!(
                    "image {} is not reachable here ({e}): migration needs the domain's storage shared under the same paths on both hosts",
                    path.display()
                )
            } else {
                format!(
                    "image {} of the saved domain is missing ({e}); restore needs the images it used",
                    path.display()
                )
            })
        })?;
        let now = crate::domain::outgoing::image_len(path, &m);
        if now != *size {
            return Err(MigrateError::Image(format!(
                "image {} is {now} bytes, but the domain was saved with {size}: restoring on a changed disk would corrupt it",
                path.display()
            )));
        }
    }
    Ok(())
}

/// The domain of `saved` loaded again: its config (or `config`, the
/// user's replacement, as `xl restore FILE CONFIG`), named `name`, with
/// the UUID, MACs and CD media it ran with, less the devices it had
/// lost, and the devices hot-plugged since its start as the
/// [`Incoming`] replay.
pub fn load(
    saved: &SavedDomain,
    config: Option<&Path>,
    name: Option<&str>,
    origin: Origin,
) -> Result<(Loaded, Incoming)> {
    let mut loaded = match config {
        Some(p) => config::load(p, &[])?,
        None => {
            let from = saved
                .config_path
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{}.cfg", saved.name)));
            config::load_str(
                &saved.config_text,
                &ConfigOrigin::File(from),
                &saved.overrides,
            )?
        }
    };
    let spec = &mut loaded.spec;
    if let Some(n) = name {
        spec.name = n.to_owned();
    } else if config.is_none() {
        spec.name = saved.name.clone();
    }
    spec.uuid = Some(saved.uuid.clone());
    spec.disks.retain_mut(|d| {
        let Some(was) = saved.disks.iter().find(|s| s.vdev == d.value.vdev) else {
            return false;
        };
        if d.value.cdrom {
            d.value.target = was.image.clone();
        }
        true
    });
    spec.vifs.retain_mut(|v| {
        let Some(was) = saved.nics.iter().find(|n| n.devid == v.value.devid) else {
            return false;
        };
        v.value.mac = Some(was.mac);
        true
    });
    let incoming = Incoming {
        origin,
        paused: saved.paused,
        defer_locks: false,
        disks: saved
            .disks
            .iter()
            .filter(|d| d.hotplugged)
            .cloned()
            .collect(),
        nics: saved
            .nics
            .iter()
            .filter(|n| n.hotplugged)
            .cloned()
            .collect(),
        placements: saved.placements.clone(),
    };
    Ok((loaded, incoming))
}

/// Waits until domain `name` has ended (its supervisor tore it down).
pub fn wait_gone(name: &str) -> Result<()> {
    let root = crate::domain::RunRoot::from_env();
    let start = std::time::Instant::now();
    let limit = std::time::Duration::from_secs(60);
    while root
        .live(name)
        .is_ok_and(|f| f.record.state != crate::domain::DomainState::Ended)
    {
        if start.elapsed() > limit {
            return Err(DomainError::Timeout {
                what: format!("the end of domain '{name}'"),
                after: limit,
            }
            .into());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(())
}

/// The plan of `loaded` on this host, checked.
pub fn plan(loaded: &Loaded) -> Result<DomainPlan> {
    let host = RealHost::new();
    let mut entropy = OsEntropy;
    let mut opts = PlanOptions::for_host(&host, &mut entropy);
    let mut plan = plan::plan(&loaded.spec, &mut opts)?;
    let problems = plan::check_host(&loaded.spec, &plan, &host);
    if !problems.is_empty() {
        return Err(PlanError::Host(problems).into());
    }
    plan.qemu.args = append_serial_files(&plan.qemu.args);
    Ok(plan)
}

/// `-serial file:PATH` as a file chardev that appends: the console of a
/// restored or migrated-in guest goes on after what it wrote before
/// (`-serial file:` truncates, and on one host the source may still be
/// writing to the same file).
fn append_serial_files(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len() + 2);
    let mut n = 0;
    let mut i = 0;
    while i < args.len() {
        match (
            args[i].as_str(),
            args.get(i + 1).and_then(|v| v.strip_prefix("file:")),
        ) {
            ("-serial", Some(path)) => {
                let id = format!("pvio-serial{n}");
                n += 1;
                out.push("-chardev".to_owned());
                out.push(format!(
                    "file,id={id},path={},append=on",
                    path.replace(',', ",,")
                ));
                out.push("-serial".to_owned());
                out.push(format!("chardev:{id}"));
                i += 2;
            }
            _ => {
                out.push(args[i].clone());
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_files_append_and_other_ports_stay() {
        let args: Vec<String> = [
            "-m",
            "256",
            "-serial",
            "file:/tmp/a,b.log",
            "-serial",
            "pty",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        assert_eq!(
            append_serial_files(&args),
            [
                "-m",
                "256",
                "-chardev",
                "file,id=pvio-serial0,path=/tmp/a,,b.log,append=on",
                "-serial",
                "chardev:pvio-serial0",
                "-serial",
                "pty"
            ]
        );
    }
}
