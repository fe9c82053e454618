//! QMP, QEMU's control protocol, through the maintained `qapi` crate
//! (typed commands, replies and events generated from QEMU's schema).
//!
//! This module is a thin layer over `qapi::Qmp`: connecting with a retry
//! while QEMU creates its socket, reading the greeting without the crate's
//! panic on an early EOF, read timeouts so a hung QEMU cannot hang pvio,
//! event waits with deadlines (`DEVICE_DELETED`, `SHUTDOWN`), and a
//! blocking event reader for the supervisor's own connection.
//!
//! It must not know about domains, configs or backends: it talks to one
//! QEMU over one socket.

mod client;
mod events;

use std::path::PathBuf;
use std::time::Duration;

pub use client::{is_device_deleted, Qmp};
pub use events::{EventReader, Received};
/// The typed QMP commands, replies and events (QEMU's schema).
pub use qapi::qmp;

/// Errors of a QMP connection.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket did not accept a connection in time.
    #[error("cannot connect to QEMU's QMP socket {} within {:.1} s", path.display(), after.as_secs_f64())]
    Connect {
        /// The socket.
        path: PathBuf,
        /// How long pvio tried.
        after: Duration,
        /// The last error.
        #[source]
        source: std::io::Error,
    },
    /// QEMU went away before answering.
    #[error("QEMU closed the QMP connection")]
    Closed,
    /// Reading or writing the socket failed (a timeout included).
    #[error("QMP connection failed")]
    Io(#[source] std::io::Error),
    /// QEMU sent something that is not QMP.
    #[error("QEMU sent a QMP message pvio cannot read")]
    Protocol(#[source] serde_json::Error),
    /// QEMU refused a command; its message says why.
    #[error("QEMU refused {command}")]
    Refused {
        /// The command's QMP name.
        command: String,
        /// QEMU's error.
        #[source]
        source: qapi::Error,
    },
    /// An awaited event did not come.
    #[error("no {event} event from QEMU within {after:?}")]
    Timeout {
        /// What was awaited.
        event: String,
        /// How long pvio waited.
        after: Duration,
    },
}

/// A local `Result`.
pub type Result<T> = std::result::Result<T, QmpError>;

/// The event's QMP name (`SHUTDOWN`, `DEVICE_DELETED`, ...).
pub fn event_name(e: &qmp::Event) -> &'static str {
    use qapi::Event as _;
    use qmp::Event as E;
    match e {
        E::SHUTDOWN { .. } => qmp::SHUTDOWN::NAME,
        E::POWERDOWN { .. } => qmp::POWERDOWN::NAME,
        E::RESET { .. } => qmp::RESET::NAME,
        E::STOP { .. } => qmp::STOP::NAME,
        E::RESUME { .. } => qmp::RESUME::NAME,
        E::GUEST_PANICKED { .. } => qmp::GUEST_PANICKED::NAME,
        E::DEVICE_DELETED { .. } => qmp::DEVICE_DELETED::NAME,
        E::DEVICE_TRAY_MOVED { .. } => qmp::DEVICE_TRAY_MOVED::NAME,
        _ => "other",
    }
}
