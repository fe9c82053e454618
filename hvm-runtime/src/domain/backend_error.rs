//! Why a PV backend could not be started for a device: each cause typed,
//! with its own error as the source, formatted once where it is shown.
//!
//! It must not know how the backends run.

use std::path::PathBuf;

use super::image_lock::ImageLockError;

/// What stopped a backend from starting.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The device has a backend already.
    #[error("a backend already serves {0}")]
    AlreadyServed(String),
    /// The disk's image cannot be opened or locked.
    #[error(transparent)]
    Image(#[from] ImageLockError),
    /// The image's descriptor cannot be duplicated for the backend.
    #[error("cannot pass {}", path.display())]
    PassImage {
        /// The image.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The tap's queue cannot be opened.
    #[error(transparent)]
    Tap(#[from] pvio_backends::net::tap::TapError),
    /// The tap gave no queue.
    #[error("tap {0} gave no queue")]
    NoQueue(String),
    /// Another process answers on the socket.
    #[error("another backend is already serving {}", .0.display())]
    SocketTaken(PathBuf),
    /// The socket cannot be bound.
    #[error("cannot listen on {}", path.display())]
    Listen {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The socket's mode or group cannot be set.
    #[error("cannot set the mode of {}", path.display())]
    SocketMode {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The backend's process cannot be started.
    #[error("cannot start its process")]
    Start(#[source] std::io::Error),
    /// The thread watching the process cannot be started.
    #[error("cannot watch its process")]
    Watch(#[source] std::io::Error),
}
