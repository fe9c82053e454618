//! Domains while they run: the run dir and its records, the per-domain
//! supervisor process that owns QEMU and the PV backends, and the
//! lifecycle commands (`list`, `shutdown`, `reboot`, `destroy`, `pause`,
//! `unpause`, `console`, `vncviewer`) that reach it.
//!
//! | file | role |
//! | --- | --- |
//! | `access.rs` | modes and owners of the run dir, sandbox identities, control-socket peers |
//! | `adopt.rs` | a new supervisor for a domain whose QEMU outlived its own |
//! | `files.rs` | the names of the files in a domain's run dir |
//! | `rundir.rs` | the run dir layout and name reservation |
//! | `find.rs` | finding live domains: adopting or cleaning up after a dead supervisor |
//! | `record.rs` | the domain record (`domain.json`), written atomically |
//! | `saved.rs` | the save format: magic, version, the domain as it runs, the stream's place |
//! | `outgoing.rs` | `save` and `migrate` in the supervisor: the header, then QEMU's stream |
//! | `incoming.rs` | `restore` and `migrate-receive` in the supervisor: devices back in place, the stream in, the rename |
//! | `launch.rs` | what the supervisor starts (`launch.json`), made from the plan |
//! | `lock.rs` | `flock` locks: the supervisor's, and the global one |
//! | `handover.rs` | a new supervisor process, with the domain lock and an incoming stream on fixed descriptors |
//! | `start.rs` | `pvio create`: reserve, spawn the supervisor, wait until running |
//! | `qemu_link.rs` | the supervisor's QMP connections and event thread (at start and at adoption) |
//! | `supervisor.rs` | the supervisor process: start, watch, apply actions, tear down |
//! | `msg.rs` | what the supervisor's main loop is told |
//! | `live.rs` | the supervisor's shared state: record, QMP, events, backends |
//! | `guest_events.rs` | a guest's power-off, reboot or crash to an action |
//! | `control.rs` | the supervisor's control socket: JSON lines, server and client |
//! | `control_answers.rs` | the supervisor's answers to control requests (changes go to `hotplug/`) |
//! | `backends.rs` | PV backends, one sandboxed process each, started with open fds |
//! | `hotplug/` | disks, CD media, NICs and PCI devices changed in a running guest |
//! | `image_lock.rs` | one writer per image: `flock` on the images PV disks use |
//! | `taps.rs` | host taps made, joined to bridges, deleted |
//! | `passthrough.rs` | host PCI devices taken at the start, given back at the end |
//! | `pinning.rs` | vCPU threads bound to host CPUs (`cpus`) |
//! | `process.rs` | pids: alive, ours, signals |
//! | `cleanup.rs` | what a dead supervisor left behind |
//! | `lifecycle.rs` | the lifecycle commands, client side (over the control socket) |
//! | `console.rs` | `pvio console`: the serial port on the terminal |
//!
//! Nothing here parses configs or builds QEMU command lines: that is
//! `config/` and `plan/`.

pub mod access;
pub mod adopt;
pub mod backend_error;
pub mod backends;
pub mod cleanup;
pub mod console;
pub mod control;
pub mod control_answers;
pub mod files;
pub mod find;
pub mod guest_events;
pub mod handover;
pub mod hotplug;
pub mod image_lock;
pub mod incoming;
pub mod launch;
pub mod lifecycle;
pub mod live;
pub mod lock;
pub mod msg;
pub mod outgoing;
pub mod passthrough;
pub mod pinning;
pub mod process;
pub mod qemu_link;
pub mod record;
pub mod rundir;
pub mod saved;
pub mod start;
pub mod supervisor;
pub mod taps;

use std::path::PathBuf;
use std::time::Duration;

pub use record::{DomainIdentity, DomainRecord, DomainState};
pub use rundir::RunRoot;

use crate::qmp::QmpError;

/// Errors of the domain runtime, one line each with what to do next.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// No running domain has this name.
    #[error("no domain named '{0}' is running; `pvio list` shows the running ones")]
    NoSuchDomain(String),
    /// The name cannot name a domain.
    #[error("'{0}' cannot name a domain: use letters, digits, '-', '_', '.' or '+', at most 64")]
    BadName(String),
    /// The name is taken.
    #[error("a domain named '{name}' already exists{}; choose another name, e.g. `pvio create FILE name='{name}2'`", id.map_or_else(|| " (it is being created: another `pvio create` took the name a moment ago and has no id yet)".to_owned(), |id| format!(" (id {id})")))]
    Exists {
        /// The name.
        name: String,
        /// The domain's id; `None` while the `create` that took the name
        /// has not written its record yet (a race lost).
        id: Option<u32>,
    },
    /// The domain's supervisor died; pvio cleaned up after it.
    #[error("domain '{name}' is not running: {}", record.ended.as_ref().map_or("its supervisor died", |e| e.detail.as_str()))]
    SupervisorDied {
        /// The name.
        name: String,
        /// The record, now marked ended.
        record: Box<DomainRecord>,
    },
    /// A file in the run dir cannot be used.
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
    /// A record or launch file is damaged.
    #[error("{} is damaged; remove the domain's run dir", path.display())]
    Record {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The supervisor process could not be started.
    #[error("cannot start the domain's supervisor")]
    Spawn(#[source] std::io::Error),
    /// The domain did not come up.
    #[error("domain '{name}' did not start: {why}")]
    StartFailed {
        /// The name.
        name: String,
        /// What went wrong, with where to read more.
        why: String,
    },
    /// A device hot-plugged before a save could not be put back.
    #[error(
        "domain '{name}' did not start: cannot put back {device}, hot-plugged before the save"
    )]
    Replay {
        /// The name.
        name: String,
        /// The guest device.
        device: String,
        /// Why.
        #[source]
        source: Box<hotplug::HotplugError>,
    },
    /// QEMU could not be run.
    #[error("cannot run {}; install qemu-system-x86 (scripts/setup.sh)", binary.display())]
    QemuMissing {
        /// The device model binary.
        binary: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A vCPU thread could not be pinned.
    #[error(
        "cannot pin vCPU {vcpu} to host CPUs {}; check `cpus` against the host's CPUs (nproc)",
        crate::config::cpus::format_set(cpus)
    )]
    Pinning {
        /// The vCPU's index.
        vcpu: i64,
        /// The host CPUs it was to run on.
        cpus: Vec<u32>,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// QEMU did not run the guest after `cont`.
    #[error("QEMU does not run the guest (query-status: {0})")]
    NotRunning(String),
    /// QEMU exited before it opened its QMP sockets.
    #[error("QEMU exited at once")]
    QemuExited,
    /// The supervisor refused or failed a request.
    #[error("domain '{name}': {message}")]
    Refused {
        /// The name.
        name: String,
        /// The supervisor's message.
        message: String,
    },
    /// The supervisor's control socket failed.
    #[error("the supervisor of domain '{name}' does not answer")]
    Control {
        /// The name.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Something did not happen in time.
    #[error("{what} did not happen within {after:?}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long pvio waited.
        after: Duration,
    },
    /// A PV backend could not start.
    #[error("PV backend of {device}")]
    Backend {
        /// The guest device.
        device: String,
        /// Why.
        #[source]
        source: Box<backend_error::BackendError>,
    },
    /// A disk's image cannot be used (missing, or held by another disk).
    #[error("disk {device}")]
    Image {
        /// The guest device.
        device: String,
        /// Why.
        #[source]
        source: image_lock::ImageLockError,
    },
    /// A link (tap, bridge) could not be looked up or changed.
    #[error(transparent)]
    HostNet(#[from] pvio_backends::net::host::HostNetError),
    /// A tap could not be made.
    #[error(transparent)]
    Tap(#[from] pvio_backends::net::tap::TapError),
    /// QMP failed.
    #[error(transparent)]
    Qmp(#[from] QmpError),
    /// A host PCI device cannot be given to the domain.
    #[error(transparent)]
    Passthrough(#[from] Box<passthrough::PassthroughError>),
    /// The terminal or the console device failed.
    #[error("console: {what}")]
    Console {
        /// What failed.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
