//! The supervisor's half of `pvio save` and `pvio migrate`: the domain's
//! header (the domain as it runs now), then QEMU's migration stream into
//! the descriptor the caller passed (a file, or the pipe to `ssh`), and
//! what follows: a saved domain ends, stays paused (`-p`) or runs on
//! (`-c`); a migrated one waits paused until the caller says whether the
//! other side runs it.
//!
//! A domain with a host PCI device is refused: the device holds state the
//! host cannot copy. Hot-plug is refused while the stream is written.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::live::LiveDomain;
use super::record::DomainState;
use super::saved::{self, Placement, SavedDomain};
use crate::qmp::{qmp, QmpError};

/// How long a migration may make no progress before it is cancelled.
const STALL: Duration = Duration::from_secs(120);
/// How often the stream's progress is read.
const POLL: Duration = Duration::from_millis(100);
/// QEMU's name for the descriptor it writes the stream to.
const FD_NAME: &str = "pvio-migrate";

/// Why a domain was not saved or moved.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    /// A host PCI device is passed through to it.
    #[error("host PCI device {host} ({id}) is passed through to the domain: its state cannot be saved or moved; `pvio release {host}` it first")]
    PassedThrough {
        /// The host address.
        host: pvio_passthrough::Bdf,
        /// The guest device's id.
        id: String,
    },
    /// Its config says `nomigrate = 1`.
    #[error("the domain's config says nomigrate = 1: it is neither saved nor moved")]
    NoMigrate,
    /// Its config passes host PCI devices through.
    #[error("the domain's config passes host PCI devices through (pci = [...]): their state cannot be saved or moved")]
    ConfigPassthrough,
    /// It is neither running nor paused.
    #[error("the domain is {0}; only a running or paused domain can be saved or moved")]
    State(DomainState),
    /// The header could not be written.
    #[error("cannot write the header")]
    Header(#[source] std::io::Error),
    /// QMP failed.
    #[error(transparent)]
    Qmp(#[from] QmpError),
    /// QEMU's stream failed (its own words).
    #[error("the device model's stream failed: {0}")]
    Failed(String),
    /// The stream stopped moving and was cancelled.
    #[error("the stream made no progress for {}s (the other side stopped reading); cancelled", .0.as_secs())]
    Stalled(Duration),
}

/// What becomes of a saved domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AfterSave {
    /// It ends (`pvio save`).
    End,
    /// It runs on (`-c`).
    Run,
    /// It stays paused (`-p`).
    Pause,
}

/// What a finished stream reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sent {
    /// Where the stream starts in what was written (the header's length).
    pub stream_at: u64,
    /// Bytes QEMU sent.
    pub transferred: u64,
    /// Guest pages sent whole (QEMU's `normal`; zero pages cost a few
    /// bytes each and are not counted).
    #[serde(default)]
    pub pages: u64,
    /// Milliseconds from start to end.
    pub total_ms: u64,
    /// Milliseconds the guest was stopped (QEMU's figure).
    pub downtime_ms: Option<u64>,
}

/// The header of the domain as it runs now. Refused for a domain with a
/// host PCI device, naming it.
pub fn describe(live: &LiveDomain) -> Result<SavedDomain, MoveError> {
    let r = live.record();
    if let Some(p) = r.pci.first() {
        return Err(MoveError::PassedThrough {
            host: p.host,
            id: p.id.clone(),
        });
    }
    if live.spec.nomigrate {
        return Err(MoveError::NoMigrate);
    }
    if !live.spec.passthrough.is_empty() {
        return Err(MoveError::ConfigPassthrough);
    }
    let placements = placements(live)?;
    let image_sizes = r
        .disks
        .iter()
        .filter(|d| !d.cdrom)
        .filter_map(|d| d.image.clone())
        .filter_map(|p| {
            let len = std::fs::metadata(&p).ok().map(|m| image_len(&p, &m))?;
            Some((p, len))
        })
        .collect();
    Ok(SavedDomain {
        name: r.identity.name.clone(),
        uuid: r.identity.uuid.clone(),
        config_text: live.spec.config_text.clone().unwrap_or_default(),
        config_path: live.spec.identity.config.clone(),
        overrides: live.spec.overrides.clone(),
        memory_mib: r.identity.memory_mib,
        vcpus: r.identity.vcpus,
        disks: r.disks.clone(),
        nics: r.nics.clone(),
        placements,
        image_sizes,
        paused: r.state == DomainState::Paused,
        saved_at: super::record::now_secs(),
    })
}

/// The size of image `p` (a block device's from its descriptor).
pub fn image_len(p: &std::path::Path, m: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::FileTypeExt;
    if m.file_type().is_block_device() {
        if let Ok(mut f) = std::fs::File::open(p) {
            return std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)).unwrap_or(0);
        }
    }
    m.len()
}

/// Where each hot-plugged device sits (`query-pci`): its bus (a root
/// port, or the root bus) and slot.
fn placements(live: &LiveDomain) -> Result<Vec<Placement>, QmpError> {
    let r = live.record();
    let wanted: Vec<String> = r
        .disks
        .iter()
        .filter(|d| d.hotplugged)
        .map(|d| d.vdev.clone())
        .chain(
            r.nics
                .iter()
                .filter(|n| n.hotplugged)
                .map(|n| crate::plan::qdev::nic_id(n.devid)),
        )
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let buses = live.qmp(|q| q.execute(&qmp::query_pci {}))?;
    let mut out = Vec::new();
    for b in &buses {
        find(&b.devices, None, &wanted, &mut out);
    }
    Ok(out)
}

fn find(
    devices: &[qmp::PciDeviceInfo],
    parent: Option<&str>,
    wanted: &[String],
    out: &mut Vec<Placement>,
) {
    for d in devices {
        if wanted.contains(&d.qdev_id) {
            out.push(Placement {
                id: d.qdev_id.clone(),
                bus: parent.map(str::to_owned),
                slot: u8::try_from(d.slot).unwrap_or(0),
            });
        }
        if let Some(behind) = d.pci_bridge.as_ref().and_then(|b| b.devices.as_ref()) {
            find(behind, Some(&d.qdev_id), wanted, out);
        }
    }
}

/// Writes the header to `out`, then QEMU's stream. A save stops the
/// guest first; a migration copies it while it runs. On success the
/// guest is left stopped (QEMU's `postmigrate`), the record says paused.
/// On failure the guest runs on as before (QEMU resumes it; a save's
/// stop is undone).
/// `config` replaces the config the header carries (`migrate -C`).
pub fn send(
    live: &LiveDomain,
    out: OwnedFd,
    save: bool,
    config: Option<String>,
) -> Result<(SavedDomain, Sent), MoveError> {
    let _no_hotplug = super::live::lock(&live.hotplug);
    let mut header = describe(live)?;
    if let Some(text) = config {
        header.config_text = text;
        header.overrides.clear();
    }
    let was = live.record().state;
    if !matches!(was, DomainState::Running | DomainState::Paused) {
        return Err(MoveError::State(was));
    }
    let mut file = std::fs::File::from(out);
    let stream_at = saved::write_header(&mut file, &header)
        .and_then(|n| file.flush().map(|()| n))
        .map_err(MoveError::Header)?;
    if save && was == DomainState::Running {
        live.qmp(|q| q.execute(&qmp::stop {}))?;
        live.update(|r| r.state = DomainState::Paused);
    }
    live.migrating.store(true, Ordering::SeqCst);
    let result = stream(live, &file);
    live.migrating.store(false, Ordering::SeqCst);
    match result {
        Ok(mut sent) => {
            sent.stream_at = stream_at;
            live.update(|r| r.state = DomainState::Paused);
            Ok((header, sent))
        }
        Err(e) => {
            if was == DomainState::Running {
                // A failed migration resumes the guest itself; a save's
                // stop is ours to undo. `cont` on a running guest is a
                // no-op.
                if let Err(c) = live.qmp(|q| q.execute(&qmp::cont {})) {
                    tracing::warn!("cannot resume the guest: {}", crate::report::error_line(&c));
                }
                live.update(|r| r.state = DomainState::Running);
            }
            Err(e)
        }
    }
}

/// Hands `out` to QEMU and runs `migrate` into it until it completes,
/// fails, or makes no progress for [`STALL`].
fn stream(live: &LiveDomain, out: &std::fs::File) -> Result<Sent, MoveError> {
    live.qmp(|q| {
        q.getfd(FD_NAME, out.as_fd())?;
        q.execute_raw("migrate", json!({ "uri": format!("fd:{FD_NAME}") }))
    })?;
    let start = Instant::now();
    let mut last = (0u64, Instant::now());
    loop {
        std::thread::sleep(POLL);
        let info = live.qmp(|q| q.execute_raw("query-migrate", Value::Null))?;
        let status = info["status"].as_str().unwrap_or("none");
        let transferred = info["ram"]["transferred"].as_u64().unwrap_or(0);
        match status {
            "completed" => {
                return Ok(Sent {
                    stream_at: 0,
                    transferred,
                    pages: info["ram"]["normal"].as_u64().unwrap_or(0),
                    total_ms: info["total-time"].as_u64().unwrap_or_else(|| {
                        u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
                    }),
                    downtime_ms: info["downtime"].as_u64(),
                })
            }
            "failed" | "cancelled" => {
                let why = info["error-desc"].as_str().unwrap_or(status).to_owned();
                return Err(MoveError::Failed(why));
            }
            _ => {}
        }
        if transferred != last.0 {
            last = (transferred, Instant::now());
        } else if last.1.elapsed() > STALL {
            let _ = live.qmp(|q| q.execute_raw("migrate_cancel", Value::Null));
            return Err(MoveError::Stalled(STALL));
        }
    }
}

/// The stream's progress now (for the terminal).
pub fn progress(live: &LiveDomain) -> Value {
    match live.qmp(|q| q.execute_raw("query-migrate", Value::Null)) {
        Ok(info) => json!({
            "status": info["status"],
            "transferred": info["ram"]["transferred"],
            "remaining": info["ram"]["remaining"],
            "total": info["ram"]["total"],
        }),
        Err(e) => json!({ "status": crate::report::error_line(&e) }),
    }
}
