//! The `chardev-add` of a socket chardev that connects to a PV backend's
//! vhost-user socket, and its removal.

use std::path::Path;

use crate::qmp::{qmp, Qmp, QmpError};

/// Adds chardev `id`, a client of the Unix socket `path`.
pub(super) fn add_socket(q: &mut Qmp, id: &str, path: &Path) -> Result<(), QmpError> {
    let addr = qmp::SocketAddressLegacy::unix(qmp::UnixSocketAddressWrapper {
        data: qmp::UnixSocketAddress {
            abstract_: None,
            tight: None,
            path: path.to_string_lossy().into_owned(),
        },
    });
    let socket = qmp::ChardevSocket {
        base: qmp::ChardevCommon {
            logappend: None,
            logfile: None,
        },
        nodelay: None,
        reconnect: None,
        server: Some(false),
        telnet: None,
        tls_authz: None,
        tls_creds: None,
        tn3270: None,
        wait: None,
        websocket: None,
        addr,
    };
    q.execute(&qmp::chardev_add {
        id: id.to_owned(),
        backend: qmp::ChardevBackend::socket(qmp::ChardevSocketWrapper { data: socket }),
    })
    .map(drop)
}

/// Removes chardev `id`; a failure is logged (the device is gone anyway).
pub(super) fn remove(q: &mut Qmp, id: &str) {
    if let Err(e) = q.execute(&qmp::chardev_remove { id: id.to_owned() }) {
        tracing::warn!("chardev-remove {id}: {}", crate::cli::error_line(&e));
    }
}
