//! The supervisor's link to a running QEMU: its two QMP connections
//! (commands, and events read by a thread of their own that hands them to
//! the main loop), and the monitor socket given to the operators. Made at
//! start and again when a new supervisor adopts a running QEMU.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::live::{LiveDomain, Msg};
use super::DomainError;
use crate::qmp::{EventReader, Qmp, QmpError, Received};
use crate::report::error_line;

/// How long QEMU may take to open its QMP sockets.
const QEMU_START: Duration = Duration::from_secs(30);

/// Connects the supervisor's two QMP connections (events, commands) to
/// QEMU, gives the monitor socket to the operators and starts reading
/// events: at start, and when a new supervisor adopts a running QEMU.
pub fn connect_qmp(live: &Arc<LiveDomain>, exited: &Arc<AtomicBool>) -> Result<(), DomainError> {
    let spec = &live.spec;
    let alive = || !exited.load(Ordering::SeqCst);
    let gone = |e: QmpError| {
        if exited.load(Ordering::SeqCst) {
            DomainError::QemuExited
        } else {
            e.into()
        }
    };
    let events =
        EventReader::connect_while(&spec.events_socket, QEMU_START, alive).map_err(gone)?;
    let q = Qmp::connect_while(&spec.qmp_socket, QEMU_START, alive).map_err(gone)?;
    live.set_qmp(q);
    protect_monitor(live);
    spawn_event_thread(live, events)
}

/// Gives the `monitor=1` socket QEMU made (root's, 0600) to the
/// operators: it grants everything QEMU can do.
fn protect_monitor(live: &LiveDomain) {
    let m = live.dir().join("monitor.sock");
    if m.exists() {
        if let Err(e) = super::access::protect(
            &m,
            super::access::SOCKET_MODE,
            super::access::operators_gid(),
        ) {
            tracing::warn!("cannot set the mode of {}: {e}", m.display());
        }
    }
}

fn spawn_event_thread(live: &Arc<LiveDomain>, mut events: EventReader) -> Result<(), DomainError> {
    let live = Arc::clone(live);
    std::thread::Builder::new()
        .name("qmp-events".to_owned())
        .spawn(move || loop {
            match events.next_event() {
                Ok(Received::Event(e)) => {
                    tracing::info!("event {}", crate::qmp::event_name(&e));
                    live.events.push((*e).clone());
                    live.send(Msg::Event(e));
                }
                Ok(Received::Unknown(text)) => tracing::debug!("unknown QMP message: {text}"),
                Ok(Received::Closed) => return,
                Err(e) => {
                    tracing::warn!("QMP events: {}", error_line(&e));
                    return;
                }
            }
        })
        .map_err(DomainError::Spawn)?;
    Ok(())
}
