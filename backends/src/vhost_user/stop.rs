//! The handle that stops a running [`Server`](super::Server) from another
//! thread: wakes its accept loop and shuts the current connection down.
//!
//! It must not know what the server serves.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use vhost_user_backend::ShutdownHandle;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// What the server and its stop handles share.
struct StopState {
    stopped: AtomicBool,
    /// Readable once a stop was asked for; the accept loop waits on it.
    wake: EventFd,
    /// The connection being served, if any.
    current: Mutex<Option<ShutdownHandle>>,
}

/// Stops a [`Server`](super::Server): cheap to clone, usable from any thread,
/// and stopping twice is harmless.
#[derive(Clone)]
pub struct StopHandle {
    state: Arc<StopState>,
}

impl std::fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopHandle")
            .field("stopped", &self.is_stopped())
            .finish_non_exhaustive()
    }
}

impl StopHandle {
    pub(super) fn new() -> std::io::Result<Self> {
        Ok(Self {
            state: Arc::new(StopState {
                stopped: AtomicBool::new(false),
                wake: EventFd::new(EFD_NONBLOCK)?,
                current: Mutex::new(None),
            }),
        })
    }

    /// Asks the server to stop: the frontend being served (if any) is
    /// disconnected, in-flight requests are drained, the socket is removed and
    /// [`Server::run`](super::Server::run) returns.
    pub fn stop(&self) {
        self.state.stopped.store(true, Ordering::SeqCst);
        // A full eventfd counter (EAGAIN) is already a wake-up.
        let _ = self.state.wake.write(1);
        let current = self
            .state
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(conn) = current.as_ref() {
            conn.shutdown();
        }
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.state.stopped.load(Ordering::SeqCst)
    }

    pub(super) fn wake_fd(&self) -> &EventFd {
        &self.state.wake
    }

    /// Records the connection being served; shuts it at once if a stop came
    /// in before it was recorded.
    pub(super) fn set_current(&self, conn: Option<ShutdownHandle>) {
        let mut current = self
            .state
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let (Some(c), true) = (conn.as_ref(), self.is_stopped()) {
            c.shutdown();
        }
        *current = conn;
    }
}
