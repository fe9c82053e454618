//! The PV block backend: a virtio-blk device served over vhost-user from a
//! raw image file or a block device.
//!
//! The folder has fixed roles: `device.rs` (the `VhostUserBackend`),
//! `worker.rs` (one queue's state and loop), `slot.rs` (a request in
//! flight), `request.rs` (descriptor chain to typed request), `image.rs`
//! (opening and checking the image), `engine/` (io_uring, sync fallback,
//! null), `config.rs` (features and config space), `metrics.rs` (guest error
//! counters), `polling.rs` (which pollers a queue uses, from
//! `vhost_user::poll`). The parser's fuzz body is in `pvio-testkit`, the
//! benchmark (`pvio bench blk`) in `pvio-bench`.
//!
//! This module must not know about domains, QEMU command lines or configs:
//! [`BlkServer`] serves one image on one socket.

mod chain;
pub mod config;
pub mod device;
pub mod engine;
pub mod image;
pub mod metrics;
mod polling;
pub mod request;
mod slot;
mod worker;

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use pvio_frontend_protocol::blk::{encode_blk_id, VIRTIO_BLK_ID_BYTES};

use crate::sandbox::{self, Role, SandboxError, SandboxOptions};
use crate::vhost_user::{stop_on_signals, Listen, Server, ServerError, SignalError, StopHandle};
pub use config::DiskInfo;
pub use device::BlkDevice;
pub use engine::EngineKind;
pub use image::{Image, ImageError, ImageOptions};

/// Most queues a device may have (one thread each; the vhost-user library
/// maps queues to threads with a 64-bit mask).
pub const MAX_QUEUES: u16 = 64;

/// Errors of the block backend, each one line with what to do next.
#[derive(Debug, thiserror::Error)]
pub enum BlkError {
    /// `--num-queues` out of range.
    #[error("--num-queues must be between 1 and {MAX_QUEUES}, not {0}")]
    NumQueues(u16),
    /// `--queue-size` not a power of two in range.
    #[error("--queue-size must be a power of two between 2 and 32768, not {0}")]
    QueueSize(u16),
    /// `--serial` longer than the 20 bytes GET_ID returns.
    #[error("--serial is {0} bytes long; virtio-blk serials are at most 20 bytes")]
    SerialTooLong(usize),
    /// The image cannot be served.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The socket cannot be served.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// SIGTERM/SIGINT cannot be watched.
    #[error(transparent)]
    Signal(#[from] SignalError),
    /// The sandbox cannot be entered.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// Fds given by number cannot be taken over.
    #[error(transparent)]
    Inherit(#[from] crate::inherit::InheritError),
}

/// What a disk is served from.
#[derive(Debug)]
pub enum ImageSource {
    /// A raw image file or block device, opened by the backend.
    Path(PathBuf),
    /// An open image a supervisor passed (see [`Image::from_fd`]).
    Fd(OwnedFd),
}

/// What `pvio backend blk` takes.
#[derive(Debug)]
pub struct BlkOptions {
    /// Where frontends connect.
    pub listen: Listen,
    /// The raw image file or block device.
    pub image: ImageSource,
    /// Offer the disk read-only (for an inherited fd: how it was opened).
    pub read_only: bool,
    /// Number of request queues.
    pub num_queues: u16,
    /// Descriptors per queue (a power of two).
    pub queue_size: u16,
    /// Open the image with O_DIRECT (an inherited fd gets it with F_SETFL).
    pub direct: bool,
    /// The serial the guest reads with GET_ID.
    pub serial: Option<String>,
    /// The I/O engine (the default tries io_uring first).
    pub engine: EngineKind,
}

impl BlkOptions {
    /// Options with the CLI's defaults, a socket path and an image path.
    pub fn new(socket: impl Into<PathBuf>, image: impl Into<PathBuf>) -> Self {
        Self::with(Listen::Path(socket.into()), ImageSource::Path(image.into()))
    }

    /// Options with the CLI's defaults for any socket and image source.
    pub fn with(listen: Listen, image: ImageSource) -> Self {
        Self {
            listen,
            image,
            read_only: false,
            num_queues: 1,
            queue_size: 256,
            direct: false,
            serial: None,
            engine: EngineKind::Auto,
        }
    }

    fn check(&self) -> Result<Option<[u8; VIRTIO_BLK_ID_BYTES]>, BlkError> {
        if self.num_queues == 0 || self.num_queues > MAX_QUEUES {
            return Err(BlkError::NumQueues(self.num_queues));
        }
        if !self.queue_size.is_power_of_two() || self.queue_size < 2 {
            return Err(BlkError::QueueSize(self.queue_size));
        }
        match &self.serial {
            Some(s) if s.len() > VIRTIO_BLK_ID_BYTES => Err(BlkError::SerialTooLong(s.len())),
            Some(s) => Ok(Some(encode_blk_id(s.as_bytes()))),
            None => Ok(None),
        }
    }
}

/// A block device bound to its socket, ready to [`run`](Self::run).
pub struct BlkServer {
    server: Server<Arc<BlkDevice>>,
    device: Arc<BlkDevice>,
}

impl BlkServer {
    /// Checks the options, opens the image and binds the socket: every error
    /// a user can cause is reported here, before any frontend can connect.
    /// Inherited fds in `opts` are duplicated (close-on-exec); the options
    /// may be dropped afterwards.
    pub fn new(opts: &BlkOptions) -> Result<Self, BlkError> {
        let serial = opts.check()?;
        let image = match &opts.image {
            ImageSource::Path(path) => Image::open(&ImageOptions {
                path: path.clone(),
                read_only: opts.read_only,
                direct: opts.direct,
            })?,
            ImageSource::Fd(fd) => {
                let fd = fd.try_clone().map_err(|source| ImageError::Unreadable {
                    path: PathBuf::from(format!("inherited fd {}", fd.as_raw_fd())),
                    source,
                })?;
                Image::from_fd(fd, opts.read_only, opts.direct)?
            }
        };
        let disk = DiskInfo {
            sectors: image.sectors(),
            read_only: image.read_only(),
            logical_block: image.logical_block(),
            physical_block: image.physical_block(),
            num_queues: opts.num_queues,
            queue_size: opts.queue_size,
            serial,
        };
        let path = image.path().to_owned();
        let size = image.size();
        let file = Arc::new(image.into_file());
        let device = Arc::new(BlkDevice::new(disk, file, opts.engine));
        let server = Server::listen("pvio-blk", &opts.listen, Arc::clone(&device))?;
        tracing::info!(
            "serving {} ({} bytes{}) with {} queue(s) of {} on the {} engine",
            path.display(),
            size,
            if opts.read_only { ", read-only" } else { "" },
            opts.num_queues,
            opts.queue_size,
            device.engine_name(),
        );
        Ok(Self { server, device })
    }

    /// Stops [`run`](Self::run) from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.server.stop_handle()
    }

    /// The device (disk facts, error counters).
    pub fn device(&self) -> &Arc<BlkDevice> {
        &self.device
    }

    /// Serves frontends until stopped; the socket is removed on return.
    pub fn run(self) -> Result<(), BlkError> {
        self.server.run()?;
        Ok(())
    }
}

/// What `pvio backend blk` does: checks, opens, enters the sandbox (unless
/// `sandbox` is `None`), then serves in the calling thread until SIGTERM or
/// SIGINT. Call it before starting other threads: the sandbox's id changes
/// and Landlock apply to the calling thread and the threads it starts later
/// (see also [`stop_on_signals`]).
pub fn serve_until_signal(
    opts: &BlkOptions,
    sandbox: Option<&SandboxOptions>,
) -> Result<(), BlkError> {
    crate::vhost_user::block_stop_signals()?;
    let mut server = BlkServer::new(opts)?;
    if let Some(s) = sandbox {
        server.server.leave_socket_file();
        sandbox::enter(Role::Blk, s)?;
    }
    stop_on_signals(server.stop_handle())?;
    server.run()
}
