//! Which pollers a block queue uses (`vhost_user::poll`): one for the
//! engine while one operation is in flight, and a learning one for the
//! driver's next request while nothing is. `PVIO_BLK_NO_POLL` in the
//! environment switches both off, for measuring what polling buys.
//!
//! It must not know what the worker does between polls.

use crate::vhost_user::poll::Poller;

/// The engine's poller and the idle (learning) poller of a new or reset
/// queue.
pub(super) fn pollers() -> (Poller, Poller) {
    if std::env::var_os("PVIO_BLK_NO_POLL").is_some() {
        (Poller::off(), Poller::off())
    } else {
        (Poller::new(), Poller::learning())
    }
}
