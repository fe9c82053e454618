//! What the supervisor's main loop is told, by QEMU's event thread, the
//! signal thread, the control socket and the backends' watchers: one type
//! the lowest of them can name.

use crate::qmp::qmp;

/// What the supervisor's main loop reacts to.
#[derive(Debug)]
pub enum Msg {
    /// An event from QEMU.
    Event(Box<qmp::Event>),
    /// QEMU exited (its status as text).
    QemuExited(String),
    /// `pvio destroy`.
    Destroy,
    /// End the domain for another reason than `destroy` (cause, detail):
    /// it was saved, or migrated away.
    End(String, String),
    /// SIGTERM, SIGINT or SIGHUP.
    Signal(i32),
    /// A PV backend was restarted (`None`) or left down (`Some(why)`).
    Backend(String, Option<String>),
}
