//! The domain record, `<run dir>/<name>/domain.json`: what `pvio list` and
//! every other command read about a domain, written by `pvio create`
//! first and by the supervisor from then on. Writes are atomic (a
//! temporary file renamed over the old one), so a reader never sees half a
//! record.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::DomainError;
use crate::config::vif::Mac;
use crate::host::accel::Accel;
use pvio_passthrough::Bdf;

/// Who a domain is and what it runs with, as its launch spec and its
/// record both say (each carries it flattened, so the files keep their
/// keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainIdentity {
    /// The domain's name.
    pub name: String,
    /// A small number, unique among the domains of this run dir.
    pub id: u32,
    /// The UUID.
    pub uuid: String,
    /// RAM in MiB.
    pub memory_mib: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// The accelerator (`kvm` or `tcg` in the files).
    pub accel: Accel,
    /// The config it came from.
    pub config: Option<PathBuf>,
}

/// Where a domain is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainState {
    /// The supervisor is starting the backends and QEMU.
    Starting,
    /// The guest runs.
    Running,
    /// The vCPUs are stopped (`pvio pause`).
    Paused,
    /// The guest stopped and is kept for inspection (`preserve`).
    Preserved,
    /// The supervisor is tearing the domain down.
    Stopping,
    /// The domain is gone; [`DomainRecord::ended`] says how.
    Ended,
}

impl std::fmt::Display for DomainState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DomainState::Starting => "starting",
            DomainState::Running => "running",
            DomainState::Paused => "paused",
            DomainState::Preserved => "preserved",
            DomainState::Stopping => "stopping",
            DomainState::Ended => "ended",
        })
    }
}

/// Where a domain came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// `pvio create`.
    #[default]
    Created,
    /// `pvio restore`.
    Restored,
    /// `pvio migrate` from another host (or this one).
    MigratedIn,
}

/// How a domain ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ending {
    /// When (seconds since the epoch).
    pub at: u64,
    /// What ended it: `poweroff`, `reboot`, `crash`, `destroy`,
    /// `device-model-exit`, `start-failed`, `supervisor-died`.
    pub cause: String,
    /// One line for a human.
    pub detail: String,
}

/// Where the first serial port can be reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "path")]
pub enum SerialEndpoint {
    /// A pseudo-terminal.
    Pty(PathBuf),
    /// A Unix socket QEMU listens on.
    Unix(PathBuf),
    /// A file the output goes to (no input).
    File(PathBuf),
}

/// One disk of a running domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskEntry {
    /// The guest device name (also QEMU's device id).
    pub vdev: String,
    /// `pv`, `ide`, `scsi`.
    pub bus: String,
    /// A CD-ROM drive.
    pub cdrom: bool,
    /// The image or medium, if any.
    pub image: Option<PathBuf>,
    /// Read-only.
    pub read_only: bool,
    /// The PV backend's vhost-user socket.
    pub socket: Option<PathBuf>,
    /// Hot-plugged (not in the config).
    pub hotplugged: bool,
}

/// One NIC of a running domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicEntry {
    /// The NIC's number (`nic<devid>` is QEMU's device id).
    pub devid: u32,
    /// The MAC address.
    pub mac: Mac,
    /// QEMU's device model (`virtio-net-pci` for PV).
    pub model: String,
    /// The host tap.
    pub tap: String,
    /// The bridge the tap joins.
    pub bridge: String,
    /// The PV backend's vhost-user socket.
    pub socket: Option<PathBuf>,
    /// Hot-plugged (not in the config).
    pub hotplugged: bool,
}

/// A PCI device passed through to a running domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciEntry {
    /// The host device (`0000:03:00.0`).
    pub host: Bdf,
    /// QEMU's device id.
    pub id: String,
}

/// Everything pvio keeps about a domain while it runs and after it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainRecord {
    /// Who the domain is (the launch spec's own, flattened: the file keeps
    /// its keys).
    #[serde(flatten)]
    pub identity: DomainIdentity,
    /// When the domain was created (seconds since the epoch).
    pub started_at: u64,
    /// The supervisor's pid.
    pub supervisor_pid: Option<u32>,
    /// QEMU's pid.
    pub qemu_pid: Option<u32>,
    /// QEMU's QMP socket for commands.
    pub qmp_socket: PathBuf,
    /// The supervisor's control socket.
    pub control_socket: PathBuf,
    /// The first serial port.
    pub serial: Option<SerialEndpoint>,
    /// The VNC address (`host:display`).
    pub vnc: Option<String>,
    /// The disks.
    pub disks: Vec<DiskEntry>,
    /// The NICs.
    pub nics: Vec<NicEntry>,
    /// PCI devices hot-plugged with `pvio assign`.
    #[serde(default)]
    pub pci: Vec<PciEntry>,
    /// Taps pvio created (and removes at the end).
    pub taps_created: Vec<String>,
    /// The network namespace the taps were made in (`net:[inode]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// PV backends left down after dying too often (device, why).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends_down: Vec<BackendDown>,
    /// Backend restarts so far.
    #[serde(default)]
    pub backend_restarts: u32,
    /// The PV backends' processes, by device.
    #[serde(default)]
    pub backend_pids: std::collections::BTreeMap<String, u32>,
    /// How often a new supervisor adopted the running domain.
    #[serde(default)]
    pub adopted: u32,
    /// Guest reboots so far.
    pub reboots: u32,
    /// Where the domain came from.
    #[serde(default)]
    pub origin: Origin,
    /// The state.
    pub state: DomainState,
    /// How it ended, once it has.
    pub ended: Option<Ending>,
}

/// A PV backend the supervisor stopped restarting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendDown {
    /// The guest device (`xvda`, `net0`).
    pub device: String,
    /// Why, in words.
    pub why: String,
}

impl DomainRecord {
    /// Reads the record at `path`.
    pub fn load(path: &Path) -> Result<DomainRecord, DomainError> {
        let text = fs::read(path).map_err(|source| DomainError::Io {
            what: "read the domain record",
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_slice(&text).map_err(|source| DomainError::Record {
            path: path.to_owned(),
            source,
        })
    }

    /// Writes the record to `path` atomically.
    pub fn store(&self, path: &Path) -> Result<(), DomainError> {
        let text = serde_json::to_vec_pretty(self).map_err(|source| DomainError::Record {
            path: path.to_owned(),
            source,
        })?;
        write_atomic(path, &text)
    }

    /// Marks the record ended now, with the cause and a line for a human.
    pub fn end(&mut self, cause: &str, detail: impl Into<String>) {
        self.state = DomainState::Ended;
        self.qemu_pid = None;
        self.ended = Some(Ending {
            at: now_secs(),
            cause: cause.to_owned(),
            detail: detail.into(),
        });
    }

    /// Seconds since the domain was created.
    pub fn uptime_secs(&self) -> u64 {
        now_secs().saturating_sub(self.started_at)
    }
}

/// Writes `data` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), DomainError> {
    write_atomic_mode(
        path,
        data,
        super::access::RECORD_MODE,
        super::access::operators_gid(),
    )
}

/// [`write_atomic`] with the file's mode and group given: they are set on
/// the new file before it takes the name, whatever the umask.
pub fn write_atomic_mode(
    path: &Path,
    data: &[u8],
    mode: u32,
    gid: Option<u32>,
) -> Result<(), DomainError> {
    let io = |source| DomainError::Io {
        what: "write",
        path: path.to_owned(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(data).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    super::access::protect(&tmp, mode, gid).map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

/// Seconds since the epoch (0 if the clock is before it).
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `1d 02:03:04`, `02:03:04`: an uptime as `xl list` prints times.
pub fn format_uptime(secs: u64) -> String {
    let (d, rest) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rest / 3600, rest % 3600 / 60, rest % 60);
    if d > 0 {
        format!("{d}d {h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

#[cfg(test)]
pub(crate) fn sample(name: &str) -> DomainRecord {
    DomainRecord {
        identity: DomainIdentity {
            name: name.to_owned(),
            id: 1,
            uuid: "8f1e8a0e-0000-4000-8000-000000000001".to_owned(),
            memory_mib: 256,
            vcpus: 1,
            accel: Accel::Tcg,
            config: None,
        },
        started_at: now_secs(),
        supervisor_pid: None,
        qemu_pid: None,
        qmp_socket: PathBuf::from("/nonexistent/qmp.sock"),
        control_socket: PathBuf::from("/nonexistent/control.sock"),
        serial: Some(SerialEndpoint::Pty(PathBuf::from("/dev/pts/9"))),
        vnc: None,
        disks: Vec::new(),
        nics: Vec::new(),
        pci: Vec::new(),
        taps_created: Vec::new(),
        netns: None,
        backends_down: Vec::new(),
        backend_restarts: 0,
        backend_pids: std::collections::BTreeMap::new(),
        adopted: 0,
        reboots: 0,
        origin: Origin::Created,
        state: DomainState::Running,
        ended: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("domain.json");
        let mut r = sample("web");
        r.store(&p).unwrap();
        assert_eq!(DomainRecord::load(&p).unwrap(), r);
        r.end("poweroff", "the guest powered off");
        r.store(&p).unwrap();
        let back = DomainRecord::load(&p).unwrap();
        assert_eq!(back.state, DomainState::Ended);
        assert_eq!(back.ended.unwrap().cause, "poweroff");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("domain.json")]);
    }

    #[test]
    fn a_damaged_record_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("domain.json");
        fs::write(&p, b"{ not json").unwrap();
        assert!(matches!(
            DomainRecord::load(&p),
            Err(DomainError::Record { .. })
        ));
    }

    #[test]
    fn uptimes_read_like_xl() {
        assert_eq!(format_uptime(0), "00:00:00");
        assert_eq!(format_uptime(3725), "01:02:05");
        assert_eq!(format_uptime(90_061), "1d 01:01:01");
    }
}
