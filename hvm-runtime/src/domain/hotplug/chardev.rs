//! The `chardev-add` of a socket chardev that connects to a PV backend's
//! vhost-user socket (described as the plan's `-chardev` is,
//! `plan::qdev::SocketChardev`), and its removal.

use crate::plan::qdev::SocketChardev;
use crate::qmp::{qmp, Qmp, QmpError};

/// `chardev-add` with the arguments of a [`SocketChardev`]: the client
/// reconnects (`reconnect-ms`), which the typed schema of the QMP crate
/// predates.
#[derive(serde::Serialize)]
#[serde(transparent)]
struct ChardevAdd(serde_json::Map<String, serde_json::Value>);

impl qapi::Command for ChardevAdd {
    type Ok = serde_json::Value;
    const NAME: &'static str = "chardev-add";
    const ALLOW_OOB: bool = false;
}

/// Adds `chardev`, a client of a backend's Unix socket that reconnects
/// when its backend is restarted (`plan::reconnect`).
pub(super) fn add_socket(q: &mut Qmp, chardev: &SocketChardev) -> Result<(), QmpError> {
    q.execute(&ChardevAdd(chardev.to_qmp())).map(drop)
}

/// Removes chardev `id`; a failure is logged (the device is gone anyway).
pub(super) fn remove(q: &mut Qmp, id: &str) {
    if let Err(e) = q.execute(&qmp::chardev_remove { id: id.to_owned() }) {
        tracing::warn!("chardev-remove {id}: {}", crate::report::error_line(&e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chardev_add_carries_what_it_always_carried() {
        let c = SocketChardev {
            id: "chr-xvdb".to_owned(),
            path: "/run/pvio/.dm/d/blk-xvdb.sock".to_owned(),
            release: None,
        };
        let sent: serde_json::Value =
            serde_json::from_str(&super::super::device::wire_line(&ChardevAdd(c.to_qmp())))
                .unwrap();
        assert_eq!(
            sent,
            json!({"execute": "chardev-add", "arguments": {"id": "chr-xvdb", "backend": {
                "type": "socket", "data": {
                    "addr": {"type": "unix", "data": {"path": "/run/pvio/.dm/d/blk-xvdb.sock"}},
                    "server": false, "reconnect-ms": 1000}}}})
        );
    }
}
