//! The lifecycle commands, client side: `list`, `shutdown [-w]`,
//! `reboot`, `destroy`, `pause`, `unpause`, and the VNC address. Each finds
//! the live domain in the run dir and asks its supervisor over the control
//! socket; waits watch the supervisor's lock (free means it is gone and has
//! cleaned up).

use std::time::Duration;

use serde_json::Value;

use super::control::{self, Request};
use super::lock::FileLock;
use super::record::{DomainRecord, Ending};
use super::rundir::{Found, RunRoot, LOCK};
use super::{cleanup, process, DomainError};

/// How long `destroy` waits for the supervisor to finish.
pub const DESTROY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `shutdown -w` waits for the guest to power off.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(300);

/// The running domains, by id; `dead` gets a line for each domain whose
/// supervisor died (it has been cleaned up).
pub fn list(root: &RunRoot, dead: &mut Vec<String>) -> Vec<DomainRecord> {
    root.live_domains(|r| {
        dead.push(format!(
            "domain '{}' (id {}) was not running any more: {}",
            r.identity.name,
            r.identity.id,
            r.ended
                .as_ref()
                .map_or("its supervisor died", |e| e.detail.as_str())
        ));
    })
    .into_iter()
    .map(|f| f.record)
    .collect()
}

/// Sends `req` to the supervisor of `name`.
pub fn request(root: &RunRoot, name: &str, req: &Request) -> Result<Value, DomainError> {
    let found = root.live(name)?;
    control::call(name, &found.record.control_socket, req)
}

/// Presses the power button; with `wait`, returns how the domain ended
/// (or that it stopped and is preserved, with `on_poweroff = "preserve"`).
pub fn shutdown(
    root: &RunRoot,
    name: &str,
    wait: Option<Duration>,
) -> Result<Option<Ending>, DomainError> {
    let found = root.live(name)?;
    control::call(name, &found.record.control_socket, &Request::Shutdown)?;
    let Some(timeout) = wait else {
        return Ok(None);
    };
    let lock = found.dir.join(LOCK);
    let start = std::time::Instant::now();
    loop {
        if !FileLock::is_held(&lock).unwrap_or(false) {
            return wait_ended(root, &found, Duration::ZERO, "the guest to power off").map(Some);
        }
        if root
            .record(name)
            .is_some_and(|r| r.state == super::DomainState::Preserved)
        {
            return Ok(Some(Ending {
                at: super::record::now_secs(),
                cause: "preserved".to_owned(),
                detail: "the guest stopped and is kept (on_poweroff = \"preserve\"); `pvio destroy` ends it"
                    .to_owned(),
            }));
        }
        if start.elapsed() > timeout {
            return Err(DomainError::Timeout {
                what: format!("the guest to power off (domain '{name}')"),
                after: timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Ends the domain now and waits until its supervisor has cleaned up. A
/// supervisor that does not answer is signalled, then killed, and its
/// leftovers cleaned here.
pub fn destroy(root: &RunRoot, name: &str) -> Result<Ending, DomainError> {
    let found = root.live(name)?;
    let asked = control::call(name, &found.record.control_socket, &Request::Destroy);
    if let Err(e) = &asked {
        tracing::warn!(
            "{}; signalling the supervisor",
            crate::report::error_line(e)
        );
        if let Some(pid) = found.record.supervisor_pid {
            process::signal(pid, libc::SIGTERM);
        }
    }
    match wait_ended(root, &found, DESTROY_TIMEOUT, "the domain to stop") {
        Ok(end) => Ok(end),
        Err(DomainError::Timeout { .. }) => {
            if let Some(pid) = found.record.supervisor_pid {
                tracing::warn!("the supervisor (pid {pid}) does not stop; killing it");
                process::signal(pid, libc::SIGKILL);
                process::wait_gone(pid, Duration::from_secs(5));
            }
            let mut r = root.record(name).unwrap_or(found.record);
            cleanup::reap_dead(&found.dir, &mut r);
            r.ended
                .ok_or_else(|| DomainError::NoSuchDomain(name.to_owned()))
        }
        Err(e) => Err(e),
    }
}

/// Waits until the supervisor of `found` is gone, then reads how the
/// domain ended.
fn wait_ended(
    root: &RunRoot,
    found: &Found,
    timeout: Duration,
    what: &str,
) -> Result<Ending, DomainError> {
    let lock = found.dir.join(LOCK);
    let free = FileLock::wait_free(&lock, timeout).map_err(|source| DomainError::Io {
        what: "watch the lock",
        path: lock.clone(),
        source,
    })?;
    if !free {
        return Err(DomainError::Timeout {
            what: format!("{what} (domain '{}')", found.record.identity.name),
            after: timeout,
        });
    }
    match root.live(&found.record.identity.name) {
        // A new domain took the name in the meantime: ours is gone.
        Ok(_) | Err(DomainError::NoSuchDomain(_)) => {}
        Err(DomainError::SupervisorDied { record, .. }) => {
            return record
                .ended
                .ok_or_else(|| DomainError::NoSuchDomain(found.record.identity.name.clone()))
        }
        Err(e) => return Err(e),
    }
    root.record(&found.record.identity.name)
        .and_then(|r| r.ended)
        .ok_or_else(|| DomainError::NoSuchDomain(found.record.identity.name.clone()))
}

/// The VNC address of `name` (`host:display`).
pub fn vnc_address(root: &RunRoot, name: &str) -> Result<String, DomainError> {
    let found = root.live(name)?;
    found.record.vnc.ok_or_else(|| DomainError::Refused {
        name: name.to_owned(),
        message: "it has no VNC display (vnc = 1 in its config)".to_owned(),
    })
}
