//! The supervisor's answers to control requests: power and pause go to
//! QMP, `destroy` to the main loop, disks, CD-ROMs and NICs to
//! [`crate::domain::hotplug`].

use serde_json::{json, Value};
use std::sync::atomic::Ordering;

use std::os::fd::OwnedFd;

use super::control::{ControlError, Request};
use super::incoming::RenameError;
use super::live::{LiveDomain, Msg};
use super::outgoing::MoveError;
use super::outgoing::{self, AfterSave};
use super::record::DomainState;
use crate::domain::hotplug::{self, HotplugError};
use crate::qmp::{qmp, QmpError};
use crate::report::error_line;

/// Why a request was refused or failed, typed until it is answered.
#[derive(Debug, thiserror::Error)]
enum AnswerError {
    /// The domain's state, or the request itself, does not allow it
    /// (pvio's own words, with what to do instead).
    #[error("{0}")]
    Refused(String),
    /// QMP failed.
    #[error(transparent)]
    Qmp(#[from] QmpError),
    /// Hot-plug failed.
    #[error(transparent)]
    Hotplug(#[from] HotplugError),
    /// Saving or moving failed.
    #[error(transparent)]
    Move(#[from] MoveError),
    /// The rename after a migration failed.
    #[error(transparent)]
    Rename(#[from] RenameError),
    /// The record cannot be serialized.
    #[error("cannot describe the domain")]
    Status(#[source] serde_json::Error),
}

impl From<&str> for AnswerError {
    fn from(message: &str) -> Self {
        AnswerError::Refused(message.to_owned())
    }
}

impl From<String> for AnswerError {
    fn from(message: String) -> Self {
        AnswerError::Refused(message)
    }
}

/// Answers one request; an error becomes one line for the user here,
/// with its kind.
pub fn handle(live: &LiveDomain, req: Request, fd: Option<OwnedFd>) -> Result<Value, ControlError> {
    match req {
        Request::Save { .. } | Request::Migrate { .. } => match fd {
            Some(fd) => stream(live, req, fd),
            None => Err("save and migrate need the descriptor to write to".into()),
        },
        _ => answer(live, req),
    }
    .map_err(|e| ControlError::from(error_line(&e)))
}

/// `save` and `migrate`: the header and the device model's stream into
/// `fd`, then what the request asks.
fn stream(live: &LiveDomain, req: Request, fd: OwnedFd) -> Result<Value, AnswerError> {
    let state = live.record().state;
    if !matches!(state, DomainState::Running | DomainState::Paused) {
        return Err(format!("the domain is {state}").into());
    }
    let (save, config) = match &req {
        Request::Migrate { config } => (false, config.clone()),
        _ => (true, None),
    };
    let (header, sent) = outgoing::send(live, fd, save, config)?;
    let out = json!({ "name": header.name, "sent": sent });
    match req {
        Request::Save {
            after: AfterSave::End,
        } => live.send(Msg::End(
            "saved".to_owned(),
            "saved by `pvio save`".to_owned(),
        )),
        Request::Save {
            after: AfterSave::Run,
        } => {
            live.qmp(|q| q.execute(&qmp::cont {}))?;
            live.update(|r| r.state = DomainState::Running);
        }
        // Paused: `pvio save -p`, and a migration waiting for the other
        // side's word.
        _ => {}
    }
    Ok(out)
}

fn answer(live: &LiveDomain, req: Request) -> Result<Value, AnswerError> {
    let state = live.record().state;
    let stopping = matches!(state, DomainState::Stopping | DomainState::Ended);
    if stopping && !matches!(req, Request::Status | Request::Destroy) {
        return Err(format!("the domain is {state}").into());
    }
    let needs_guest = matches!(
        req,
        Request::BlockAttach { .. }
            | Request::BlockDetach { .. }
            | Request::NetworkAttach { .. }
            | Request::NetworkDetach { .. }
            | Request::PciAttach { .. }
            | Request::PciAttachPreview { .. }
            | Request::PciDetach { .. }
    );
    if needs_guest && live.migrating.load(Ordering::SeqCst) {
        return Err("the domain's state is being saved or migrated; hot-plug after it".into());
    }
    if needs_guest && state != DomainState::Running {
        // Hot-plug needs the guest's ACPI handler to run.
        return Err(format!(
            "the domain is {state}; hot-plug needs a running guest (`pvio unpause` it first)"
        )
        .into());
    }
    match req {
        Request::Status => serde_json::to_value(live.record()).map_err(AnswerError::Status),
        Request::Destroy => {
            live.send(Msg::Destroy);
            Ok(Value::Null)
        }
        Request::Shutdown | Request::Reboot { force: false } => {
            if state == DomainState::Paused {
                return Err(
                    "the domain is paused; `pvio unpause` it first, or `pvio destroy` it".into(),
                );
            }
            if state == DomainState::Preserved {
                return Err(
                    "the guest has stopped and is preserved; `pvio destroy` ends it".into(),
                );
            }
            if matches!(req, Request::Reboot { .. }) {
                // The guest shuts down cleanly; its power-off is then a
                // reboot (see `supervisor::on_event`).
                live.reboot_requested.store(true, Ordering::SeqCst);
            }
            live.qmp(|q| q.execute(&qmp::system_powerdown {}))?;
            Ok(Value::Null)
        }
        Request::Reboot { force: true } => {
            live.qmp(|q| q.execute(&qmp::system_reset {}))?;
            Ok(Value::Null)
        }
        Request::Pause => {
            if state != DomainState::Running {
                return Err(format!("the domain is {state}, not running").into());
            }
            live.qmp(|q| q.execute(&qmp::stop {}))?;
            live.update(|r| r.state = DomainState::Paused);
            Ok(Value::Null)
        }
        Request::Unpause => {
            if state != DomainState::Paused {
                return Err(format!("the domain is {state}, not paused").into());
            }
            live.qmp(|q| q.execute(&qmp::cont {}))?;
            live.update(|r| r.state = DomainState::Running);
            Ok(Value::Null)
        }
        Request::BlockAttach { spec, cwd } => hotplug::block::attach(live, &spec, &cwd)
            .map(|d| json!(d))
            .map_err(AnswerError::from),
        Request::BlockDetach { vdev } => hotplug::block::detach(live, &vdev)
            .map(|()| Value::Null)
            .map_err(AnswerError::from),
        Request::BlockList => Ok(json!(live.record().disks)),
        Request::CdInsert { vdev, path } => hotplug::cdrom::insert(live, &vdev, &path)
            .map(|()| Value::Null)
            .map_err(AnswerError::from),
        Request::CdEject { vdev } => hotplug::cdrom::eject(live, &vdev)
            .map(|()| Value::Null)
            .map_err(AnswerError::from),
        Request::NetworkAttach { settings } => hotplug::net::attach(live, &settings)
            .map(|n| json!(n))
            .map_err(AnswerError::from),
        Request::NetworkDetach { nic } => hotplug::net::detach(live, &nic)
            .map(|()| Value::Null)
            .map_err(AnswerError::from),
        Request::NetworkList => Ok(json!(live.record().nics)),
        Request::PciAttach { host, id } => hotplug::pci::attach(live, host, &id)
            .map(|p| json!(p))
            .map_err(AnswerError::from),
        Request::PciAttachPreview { devices } => hotplug::pci::preview(live, &devices)
            .map(|lines| json!(lines))
            .map_err(AnswerError::from),
        Request::PciDetach { id } => hotplug::pci::detach(live, &id)
            .map(|()| Value::Null)
            .map_err(AnswerError::from),
        Request::Qmp { command } => {
            let name = command
                .get("execute")
                .and_then(Value::as_str)
                .ok_or("a QMP command is {\"execute\": NAME, \"arguments\": {...}}")?
                .to_owned();
            let args = command.get("arguments").cloned().unwrap_or(Value::Null);
            tracing::info!("QMP from an operator: {name}");
            let out = live
                .qmp(|q| q.execute_raw(&name, args))
                .map_err(AnswerError::from);
            live.refresh_media();
            out
        }
        Request::Save { .. } | Request::Migrate { .. } => {
            Err("save and migrate need the descriptor to write to".into())
        }
        Request::MigrationStatus => Ok(outgoing::progress(live)),
        Request::MigratedAway { to } => {
            live.send(Msg::End(
                "migrated".to_owned(),
                format!("migrated to {to} by `pvio migrate`"),
            ));
            Ok(Value::Null)
        }
        Request::Rename { name } => {
            super::incoming::rename(live, &name)?;
            Ok(Value::Null)
        }
        Request::Monitor { command_line } => {
            tracing::info!("monitor command from an operator: {command_line}");
            let out = live
                .qmp(|q| {
                    q.execute(&qmp::human_monitor_command {
                        command_line,
                        cpu_index: None,
                    })
                })
                .map(Value::String)
                .map_err(AnswerError::from);
            live.refresh_media();
            out
        }
    }
}
