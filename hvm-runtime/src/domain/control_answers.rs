//! The supervisor's answers to control requests: power and pause go to
//! QMP, `destroy` to the main loop, disks, CD-ROMs and NICs to
//! [`crate::domain::hotplug`].

use serde_json::{json, Value};
use std::sync::atomic::Ordering;

use std::os::fd::OwnedFd;

use super::control::{ControlError, Request};
use super::live::{LiveDomain, Msg};
use super::outgoing::{self, AfterSave};
use super::record::DomainState;
use crate::domain::hotplug;
use crate::qmp::qmp;
use crate::report::error_line;

/// Answers one request; an error is one line for the user, with its kind.
pub fn handle(live: &LiveDomain, req: Request, fd: Option<OwnedFd>) -> Result<Value, ControlError> {
    match req {
        Request::Save { .. } | Request::Migrate { .. } => {
            let fd = fd.ok_or_else(|| {
                ControlError::from("save and migrate need the descriptor to write to".to_owned())
            })?;
            stream(live, req, fd)
        }
        _ => answer(live, req),
    }
    .map_err(ControlError::from)
}

/// `save` and `migrate`: the header and the device model's stream into
/// `fd`, then what the request asks.
fn stream(live: &LiveDomain, req: Request, fd: OwnedFd) -> Result<Value, String> {
    let state = live.record().state;
    if !matches!(state, DomainState::Running | DomainState::Paused) {
        return Err(format!("the domain is {state}"));
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
            live.qmp(|q| q.execute(&qmp::cont {}))
                .map_err(|e| error_line(&e))?;
            live.update(|r| r.state = DomainState::Running);
        }
        // Paused: `pvio save -p`, and a migration waiting for the other
        // side's word.
        _ => {}
    }
    Ok(out)
}

fn answer(live: &LiveDomain, req: Request) -> Result<Value, String> {
    let state = live.record().state;
    let stopping = matches!(state, DomainState::Stopping | DomainState::Ended);
    if stopping && !matches!(req, Request::Status | Request::Destroy) {
        return Err(format!("the domain is {state}"));
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
        return Err("the domain's state is being saved or migrated; hot-plug after it".to_owned());
    }
    if needs_guest && state != DomainState::Running {
        // Hot-plug needs the guest's ACPI handler to run.
        return Err(format!(
            "the domain is {state}; hot-plug needs a running guest (`pvio unpause` it first)"
        ));
    }
    let qmp_err = |e: crate::qmp::QmpError| error_line(&e);
    match req {
        Request::Status => serde_json::to_value(live.record()).map_err(|e| e.to_string()),
        Request::Destroy => {
            live.send(Msg::Destroy);
            Ok(Value::Null)
        }
        Request::Shutdown | Request::Reboot { force: false } => {
            if state == DomainState::Paused {
                return Err(
                    "the domain is paused; `pvio unpause` it first, or `pvio destroy` it"
                        .to_owned(),
                );
            }
            if state == DomainState::Preserved {
                return Err(
                    "the guest has stopped and is preserved; `pvio destroy` ends it".to_owned(),
                );
            }
            if matches!(req, Request::Reboot { .. }) {
                // The guest shuts down cleanly; its power-off is then a
                // reboot (see `supervisor::on_event`).
                live.reboot_requested.store(true, Ordering::SeqCst);
            }
            live.qmp(|q| q.execute(&qmp::system_powerdown {}))
                .map_err(qmp_err)?;
            Ok(Value::Null)
        }
        Request::Reboot { force: true } => {
            live.qmp(|q| q.execute(&qmp::system_reset {}))
                .map_err(qmp_err)?;
            Ok(Value::Null)
        }
        Request::Pause => {
            if state != DomainState::Running {
                return Err(format!("the domain is {state}, not running"));
            }
            live.qmp(|q| q.execute(&qmp::stop {})).map_err(qmp_err)?;
            live.update(|r| r.state = DomainState::Paused);
            Ok(Value::Null)
        }
        Request::Unpause => {
            if state != DomainState::Paused {
                return Err(format!("the domain is {state}, not paused"));
            }
            live.qmp(|q| q.execute(&qmp::cont {})).map_err(qmp_err)?;
            live.update(|r| r.state = DomainState::Running);
            Ok(Value::Null)
        }
        Request::BlockAttach { spec, cwd } => hotplug::block::attach(live, &spec, &cwd)
            .map(|d| json!(d))
            .map_err(|e| error_line(&e)),
        Request::BlockDetach { vdev } => hotplug::block::detach(live, &vdev)
            .map(|()| Value::Null)
            .map_err(|e| error_line(&e)),
        Request::BlockList => Ok(json!(live.record().disks)),
        Request::CdInsert { vdev, path } => hotplug::cdrom::insert(live, &vdev, &path)
            .map(|()| Value::Null)
            .map_err(|e| error_line(&e)),
        Request::CdEject { vdev } => hotplug::cdrom::eject(live, &vdev)
            .map(|()| Value::Null)
            .map_err(|e| error_line(&e)),
        Request::NetworkAttach { settings } => hotplug::net::attach(live, &settings)
            .map(|n| json!(n))
            .map_err(|e| error_line(&e)),
        Request::NetworkDetach { nic } => hotplug::net::detach(live, &nic)
            .map(|()| Value::Null)
            .map_err(|e| error_line(&e)),
        Request::NetworkList => Ok(json!(live.record().nics)),
        Request::PciAttach { host, id } => hotplug::pci::attach(live, &host, &id)
            .map(|p| json!(p))
            .map_err(|e| error_line(&e)),
        Request::PciAttachPreview { devices } => hotplug::pci::preview(live, &devices)
            .map(|lines| json!(lines))
            .map_err(|e| error_line(&e)),
        Request::PciDetach { id } => hotplug::pci::detach(live, &id)
            .map(|()| Value::Null)
            .map_err(|e| error_line(&e)),
        Request::Qmp { command } => {
            let name = command
                .get("execute")
                .and_then(Value::as_str)
                .ok_or("a QMP command is {\"execute\": NAME, \"arguments\": {...}}")?
                .to_owned();
            let args = command.get("arguments").cloned().unwrap_or(Value::Null);
            tracing::info!("QMP from an operator: {name}");
            let out = live.qmp(|q| q.execute_raw(&name, args)).map_err(qmp_err);
            live.refresh_media();
            out
        }
        Request::Save { .. } | Request::Migrate { .. } => {
            Err("save and migrate need the descriptor to write to".to_owned())
        }
        Request::MigrationStatus => Ok(outgoing::progress(live)),
        Request::MigratedAway { to } => {
            live.send(Msg::End(
                "migrated".to_owned(),
                format!("migrated to {to} by `pvio migrate`"),
            ));
            Ok(Value::Null)
        }
        Request::Rename { name } => super::incoming::rename(live, &name).map(|()| Value::Null),
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
                .map_err(qmp_err);
            live.refresh_media();
            out
        }
    }
}
