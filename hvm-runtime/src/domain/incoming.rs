//! The supervisor's half of `pvio restore` and of a migration's receiving
//! end (`pvio migrate-receive`): QEMU started with `-incoming defer`, the
//! devices hot-plugged before the save put back where they sat, the
//! stream read from the descriptor the command handed over
//! ([`INCOMING_FD`]), and, for a domain that came in under a temporary
//! name on the host it left, the rename once that one has gone.
//!
//! It must not know where the stream comes from (a file, `ssh`): it
//! reads a descriptor.

use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::launch::Incoming;
use super::live::LiveDomain;
use super::rundir::{valid_name, RunRoot, LOCK};
use super::DomainError;
use crate::domain::hotplug;

pub use super::handover::INCOMING_FD;
/// QEMU's name for the descriptor it reads the stream from.
const FD_NAME: &str = "pvio-incoming";
/// How often the incoming stream's state is read.
const POLL: Duration = Duration::from_millis(100);

/// The stream the supervisor inherited on [`INCOMING_FD`]; call before
/// anything else opens descriptors.
pub fn take_inherited() -> Result<OwnedFd, DomainError> {
    // SAFETY: fcntl(F_GETFD) on a descriptor number only asks whether it
    // is open; it changes nothing.
    let rc = unsafe { libc::fcntl(INCOMING_FD, libc::F_GETFD) };
    if rc < 0 {
        return Err(DomainError::StartFailed {
            name: String::new(),
            why:
                "the supervisor of an incoming domain was started without its stream (descriptor 4)"
                    .to_owned(),
        });
    }
    // SAFETY: the descriptor is open (checked above), was handed to this
    // process for this purpose by `pvio restore`/`migrate-receive`, and
    // nothing else in the process owns it; it is taken once, first thing.
    let fd = unsafe { OwnedFd::from_raw_fd(INCOMING_FD) };
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC).map_err(|e| {
        DomainError::StartFailed {
            name: String::new(),
            why: format!("cannot keep the incoming stream from QEMU's children: {e}"),
        }
    })?;
    Ok(fd)
}

/// Puts the hot-plugged devices back, then reads the stream into QEMU
/// (started with `-incoming defer`) until it is all in. The guest stays
/// stopped; the caller resumes it.
pub fn receive(
    live: &Arc<LiveDomain>,
    inc: &Incoming,
    stream: OwnedFd,
    exited: &Arc<AtomicBool>,
) -> Result<(), DomainError> {
    replay(live, inc)?;
    let failed = |why: String| DomainError::StartFailed {
        name: live.name().to_owned(),
        why,
    };
    live.qmp(|q| {
        q.getfd(FD_NAME, stream.as_fd())?;
        q.execute_raw(
            "migrate-incoming",
            json!({ "uri": format!("fd:{FD_NAME}") }),
        )
    })?;
    drop(stream);
    tracing::info!("reading the domain's state");
    loop {
        std::thread::sleep(POLL);
        if exited.load(Ordering::SeqCst) {
            return Err(DomainError::QemuExited);
        }
        let info = live.qmp(|q| q.execute_raw("query-migrate", Value::Null))?;
        match info["status"].as_str().unwrap_or("none") {
            "completed" => break,
            "failed" | "cancelled" => {
                let why = info["error-desc"].as_str().unwrap_or("failed");
                return Err(failed(format!(
                    "the saved state could not be loaded: {why}"
                )));
            }
            _ => {}
        }
    }
    tracing::info!("the domain's state is in");
    if inc.defer_locks {
        watch_locks(live);
    }
    Ok(())
}

/// The disks and NICs hot-plugged before the save, each where it sat.
fn replay(live: &Arc<LiveDomain>, inc: &Incoming) -> Result<(), DomainError> {
    let failed = |dev: &str, e: hotplug::HotplugError| DomainError::Replay {
        name: live.name().to_owned(),
        device: dev.to_owned(),
        source: Box::new(e),
    };
    live.pin_places(inc.placements.clone());
    for d in &inc.disks {
        let spec = disk_spec(d);
        hotplug::block::attach(live, &spec, Path::new("/")).map_err(|e| failed(&d.vdev, e))?;
    }
    for n in &inc.nics {
        let settings = nic_settings(n, live.name());
        hotplug::net::attach(live, &settings)
            .map_err(|e| failed(&crate::plan::qdev::nic_id(n.devid), e))?;
    }
    live.pin_places(Vec::new());
    Ok(())
}

/// The disk spec that hot-plugs `d` again.
pub fn disk_spec(d: &super::record::DiskEntry) -> String {
    format!(
        "format=raw,vdev={},access={},target={}",
        d.vdev,
        if d.read_only { "ro" } else { "rw" },
        d.image
            .as_deref()
            .unwrap_or(Path::new(""))
            .to_string_lossy()
    )
}

/// The vif settings that hot-plug `n` again: its devid, MAC, model and
/// bridge; its tap name when the user chose it (pvio's own is made from
/// the domain's name again).
pub fn nic_settings(n: &super::record::NicEntry, domain: &str) -> Vec<String> {
    let model = if n.model == "virtio-net-pci" {
        "virtio"
    } else {
        n.model.as_str()
    };
    let mut v = vec![
        format!("devid={}", n.devid),
        format!("mac={}", n.mac),
        format!("model={model}"),
        format!("bridge={}", n.bridge),
    ];
    if crate::plan::ids::tap_name(domain, n.devid).as_deref() != Some(n.tap.as_str())
        && !n.tap.starts_with("pv")
    {
        v.push(format!("vifname={}", n.tap));
    }
    v
}

/// Takes the image locks the domain's source held once it lets go (a
/// migration on one host), in the background.
fn watch_locks(live: &Arc<LiveDomain>) {
    let live = Arc::clone(live);
    let spawned = std::thread::Builder::new()
        .name("image-locks".to_owned())
        .spawn(move || {
            let mut waited = Duration::ZERO;
            loop {
                let disks = live.backends().take_deferred_locks();
                let emulated = live.take_deferred_locks();
                if disks && emulated {
                    tracing::info!("the image locks are held");
                    return;
                }
                if waited.as_secs() > 0 && waited.as_secs() % 60 == 0 && waited.subsec_millis() == 0
                {
                    tracing::warn!("still waiting for the source to let go of the images");
                }
                std::thread::sleep(POLL);
                waited += POLL;
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot watch the image locks: {e}");
    }
}

/// Why a domain that came in under a temporary name cannot take its own.
#[derive(Debug, thiserror::Error)]
pub enum RenameError {
    /// A domain of that name still runs on this host.
    #[error("a domain named '{0}' still runs here")]
    StillRuns(String),
    /// The old run dir of that name cannot be removed.
    #[error("cannot remove the old {}", path.display())]
    RemoveOld {
        /// The run dir.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The run dir cannot be moved.
    #[error("cannot move {} to {}", from.display(), to.display())]
    Move {
        /// Where it is.
        from: PathBuf,
        /// Where it was to go.
        to: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The name, the lock or the launch spec.
    #[error(transparent)]
    Domain(#[from] DomainError),
}

/// Gives the domain the name `name`: its run dir moves (the device
/// model's sockets stay where they are), the record and the launch spec
/// follow. Refused while a domain of that name runs.
pub fn rename(live: &LiveDomain, name: &str) -> Result<(), RenameError> {
    if !valid_name(name) {
        return Err(DomainError::BadName(name.to_owned()).into());
    }
    let old = live.dir();
    let root = RunRoot::new(old.parent().unwrap_or(Path::new("/")));
    let to = root.domain_dir(name);
    let _global = root.lock_global()?;
    if to.exists() {
        if super::lock::FileLock::is_held(&to.join(LOCK)).unwrap_or(false) {
            return Err(RenameError::StillRuns(name.to_owned()));
        }
        std::fs::remove_dir_all(&to).map_err(|source| RenameError::RemoveOld {
            path: to.clone(),
            source,
        })?;
    }
    live.move_dir(&to).map_err(|source| RenameError::Move {
        from: old.clone(),
        to: to.clone(),
        source,
    })?;
    let moved = |p: &Path| -> PathBuf {
        p.strip_prefix(&old)
            .map_or_else(|_| p.to_owned(), |rest| to.join(rest))
    };
    live.update(|r| {
        r.identity.name = name.to_owned();
        r.qmp_socket = moved(&r.qmp_socket);
        r.control_socket = moved(&r.control_socket);
    });
    // A supervisor that adopts the domain later reads these.
    let mut spec = live.spec.clone();
    spec.identity.name = name.to_owned();
    spec.qmp_socket = moved(&spec.qmp_socket);
    spec.events_socket = moved(&spec.events_socket);
    spec.control_socket = moved(&spec.control_socket);
    spec.store(&to)?;
    tracing::info!("renamed to {name} (run dir {})", to.display());
    Ok(())
}
