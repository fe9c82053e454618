//! `pvio save`, `restore`, `migrate` and `migrate-receive`: arguments as
//! xl takes them, progress on the terminal, one line per result.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::domain::print_json;
use crate::domain::outgoing::AfterSave;
use crate::migrate::{self, file::RestoreOptions, wire::MigrateOptions, MigrateError};

/// `pvio save [-c] [-p] NAME FILE`.
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Keep the domain running after the save (as `xl save -c`).
    #[arg(short = 'c', conflicts_with = "paused")]
    pub keep: bool,
    /// Leave the domain paused after the save (as `xl save -p`).
    #[arg(short = 'p')]
    pub paused: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// The domain's name.
    pub name: String,
    /// The file to write (made with mode 0600; replaced if it exists).
    pub file: PathBuf,
}

/// `pvio restore [-p] [-e] FILE [CONFIG]`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Leave the restored domain paused.
    #[arg(short = 'p')]
    pub paused: bool,
    /// Do not wait for the domain to run (return once it is starting).
    #[arg(short = 'e')]
    pub no_wait: bool,
    /// Print the domain's record as JSON.
    #[arg(long)]
    pub json: bool,
    /// A file written by `pvio save`.
    pub file: PathBuf,
    /// A config to run the domain with instead of the one saved.
    pub config: Option<PathBuf>,
}

/// `pvio migrate [--ssh COMMAND] [-C CONFIG] NAME HOST`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The command that reaches HOST, run by `sh -c` with HOST and `pvio
    /// migrate-receive` after it (as `xl migrate -s`).
    #[arg(short = 's', long = "ssh", default_value = "ssh")]
    pub ssh: String,
    /// Run the domain with this config on the other side.
    #[arg(short = 'C')]
    pub config: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// The domain's name.
    pub name: String,
    /// The host to move it to.
    pub host: String,
}

/// `pvio migrate-receive` (run by `pvio migrate` through ssh).
#[derive(Debug, Args)]
pub struct MigrateReceiveArgs {}

/// Errors of these commands.
pub type Result<T> = std::result::Result<T, MigrateError>;

/// `pvio save`.
pub fn save(a: &SaveArgs) -> Result<ExitCode> {
    let after = match (a.keep, a.paused) {
        (true, _) => AfterSave::Run,
        (_, true) => AfterSave::Pause,
        _ => AfterSave::End,
    };
    let tty = std::io::stderr().is_terminal();
    let saved = migrate::file::save(&a.name, &a.file, after, |bytes| {
        if tty {
            eprint!("\rsaving {}: {} MiB written", a.name, bytes >> 20);
        }
    })?;
    if tty {
        eprintln!();
    }
    if a.json {
        print_json(&saved).map_err(|e| MigrateError::Refused(super::error_line(&e)))?;
    } else {
        let what = match after {
            AfterSave::End => "it has ended",
            AfterSave::Run => "it runs on",
            AfterSave::Pause => "it is paused",
        };
        println!(
            "{} saved to {} ({} MiB); {what}",
            saved.name,
            saved.file.display(),
            saved.bytes >> 20
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `pvio restore`.
pub fn restore(a: &RestoreArgs) -> Result<ExitCode> {
    let record = migrate::file::restore(
        &a.file,
        &RestoreOptions {
            config: a.config.clone(),
            paused: a.paused,
            no_wait: a.no_wait,
        },
    )?;
    if a.json {
        print_json(&record).map_err(|e| MigrateError::Refused(super::error_line(&e)))?;
    } else if a.no_wait {
        println!(
            "{} (id {}) is being restored",
            record.identity.name, record.identity.id
        );
    } else {
        println!(
            "{} (id {}) restored from {}; it is {}",
            record.identity.name,
            record.identity.id,
            a.file.display(),
            record.state
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `pvio migrate`.
pub fn migrate(a: &MigrateArgs) -> Result<ExitCode> {
    let tty = std::io::stderr().is_terminal();
    let done = migrate::wire::migrate(
        &a.name,
        &a.host,
        &MigrateOptions {
            ssh: a.ssh.clone(),
            config: a.config.clone(),
        },
        |sent, left| {
            if tty {
                eprint!(
                    "\rmigrating {}: {} MiB sent, {} MiB left",
                    a.name,
                    sent >> 20,
                    left >> 20
                );
            }
        },
    )?;
    if tty {
        eprintln!();
    }
    if a.json {
        print_json(&done).map_err(|e| MigrateError::Refused(super::error_line(&e)))?;
    } else {
        println!(
            "{} migrated to {} (runs there as {}; downtime {} ms)",
            done.name,
            done.host,
            done.remote_name,
            done.sent
                .downtime_ms
                .map_or_else(|| "?".to_owned(), |d| d.to_string())
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `pvio migrate-receive`.
pub fn receive(_: &MigrateReceiveArgs) -> Result<ExitCode> {
    migrate::wire::receive()?;
    Ok(ExitCode::SUCCESS)
}
