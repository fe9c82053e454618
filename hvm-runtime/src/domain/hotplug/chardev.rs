//! The `chardev-add` of a socket chardev that connects to a PV backend's
//! vhost-user socket, and its removal.

use std::path::Path;

use serde_json::json;

use crate::qmp::{qmp, Qmp, QmpError};

/// `chardev-add` as QEMU 10 takes it: the client reconnects
/// (`reconnect-ms`), which the typed schema of the QMP crate predates.
#[derive(serde::Serialize)]
struct ChardevAdd {
    id: String,
    backend: serde_json::Value,
}

impl qapi::Command for ChardevAdd {
    type Ok = serde_json::Value;
    const NAME: &'static str = "chardev-add";
    const ALLOW_OOB: bool = false;
}

/// Adds chardev `id`, a client of the Unix socket `path` that reconnects
/// when its backend is restarted (`plan::reconnect`).
pub(super) fn add_socket(
    q: &mut Qmp,
    id: &str,
    path: &Path,
    release: Option<(u32, u32)>,
) -> Result<(), QmpError> {
    let mut data = json!({
        "addr": { "type": "unix", "data": { "path": path.to_string_lossy() } },
        "server": false,
    });
    let every = crate::plan::reconnect::RECONNECT_MS;
    if crate::plan::reconnect::takes_ms(release) {
        data["reconnect-ms"] = json!(every);
    } else {
        data["reconnect"] = json!(every.div_ceil(1000));
    }
    q.execute(&ChardevAdd {
        id: id.to_owned(),
        backend: json!({ "type": "socket", "data": data }),
    })
    .map(drop)
}

/// Removes chardev `id`; a failure is logged (the device is gone anyway).
pub(super) fn remove(q: &mut Qmp, id: &str) {
    if let Err(e) = q.execute(&qmp::chardev_remove { id: id.to_owned() }) {
        tracing::warn!("chardev-remove {id}: {}", crate::report::error_line(&e));
    }
}
