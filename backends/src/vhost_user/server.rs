//! The accept loop: one frontend at a time on a Unix socket, a fresh
//! `VhostUserDaemon` (and its queue threads) for each, and a clean stop.
//!
//! It must not know what the device does with its queues: that is behind
//! [`Device`].

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vhost::vhost_user::Listener;
use vhost_user_backend::{VhostUserBackend, VhostUserDaemon, VringEpollHandler, VringRwLock};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use super::dirty_log::{GuestMem, LogBitmap, GM};
use super::inflight::InflightCell;
use super::relay::{Relay, RelayPolicy};
use super::stop::StopHandle;

/// One virtqueue with the state the vhost-user handler keeps for it.
pub type Vring = VringRwLock<GM>;

/// The epoll loop of one queue thread; a device registers its own event
/// sources (an io_uring completion eventfd, a tap fd) in it.
pub type VringHandler<B> = Arc<VringEpollHandler<B>>;

/// Where a [`Server`] takes its frontends from.
#[derive(Debug)]
pub enum Listen {
    /// Bind a Unix socket at this path (a stale socket there is replaced);
    /// the file is removed when the server is dropped.
    Path(PathBuf),
    /// An inherited Unix socket that is already bound and listening (a
    /// supervisor made it). The server never creates or removes a file for
    /// it.
    Fd(OwnedFd),
}

impl Listen {
    /// How logs name it: the path, or `fd N`.
    pub fn describe(&self) -> String {
        match self {
            Self::Path(p) => p.display().to_string(),
            Self::Fd(fd) => format!("inherited fd {}", fd.as_raw_fd()),
        }
    }
}

/// A device served by a [`Server`]. The device outlives connections; each
/// connection gets [`Device::backend`], then [`Device::attach`] once its queue
/// threads exist, and [`Device::detach`] after they have stopped.
pub trait Device: Send + Sync + 'static {
    /// What the vhost-user daemon drives (cloned once per queue thread).
    type Backend: VhostUserBackend<Bitmap = LogBitmap, Vring = Vring> + Clone + 'static;

    /// The backend for the next connection.
    fn backend(&self) -> Self::Backend;

    /// Called with the queue threads' epoll loops (one per thread, in thread
    /// order) before the frontend is accepted.
    fn attach(&self, handlers: &[VringHandler<Self::Backend>]) -> io::Result<()>;

    /// Called after the frontend went away and the queue threads have
    /// stopped: finish in-flight I/O and forget the guest's memory.
    fn detach(&self);

    /// Whether frontends may send `SET_VRING_ENABLE` before `SET_FEATURES`
    /// (QEMU's virtio-net does), so that the [`Relay`] every connection goes
    /// through must hold those back. Off by default.
    fn relay_early_vring_enable(&self) -> bool {
        false
    }

    /// Where a device that tracks inflight I/O (vhost-user's
    /// `INFLIGHT_SHMFD`, see `inflight.rs`) finds the region its frontend
    /// hands over. `None` (the default): the feature is not offered.
    fn inflight(&self) -> Option<Arc<InflightCell>> {
        None
    }
}

/// Errors of the vhost-user server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Something that is not a socket sits at the socket path.
    #[error("{} exists and is not a socket; choose a free path for --socket", .0.display())]
    NotASocket(PathBuf),
    /// Another process listens on the socket path.
    #[error("another backend is already serving {}", .0.display())]
    InUse(PathBuf),
    /// A stale socket could not be removed.
    #[error("cannot remove the stale socket {}", .path.display())]
    RemoveStale {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The socket could not be created.
    #[error("cannot listen on {}", .path.display())]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The event loop that waits for frontends failed.
    #[error("cannot wait for a frontend")]
    Wait(#[source] io::Error),
    /// The vhost-user daemon for a connection could not be set up or run.
    #[error("vhost-user daemon: {0}")]
    Daemon(String),
    /// The device could not hook its events into the queue threads.
    #[error("cannot attach the device to its queue threads")]
    Attach(#[source] io::Error),
    /// The inherited fd is not a listening Unix stream socket.
    #[error("--listen-fd {fd} is not a listening Unix stream socket; pass a socket after bind() and listen()")]
    NotAListener {
        /// The fd number.
        fd: i32,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Local result type.
pub type Result<T> = std::result::Result<T, ServerError>;

const EV_LISTENER: u64 = 0;
const EV_STOP: u64 = 1;

/// A bound vhost-user socket and the device served on it. A socket file the
/// server bound is removed when the server is dropped; an inherited listener
/// leaves the filesystem alone.
pub struct Server<D: Device> {
    name: String,
    /// The socket file this server made, if it made one.
    path: Option<PathBuf>,
    /// How logs name the socket.
    describe: String,
    listener: Listener,
    device: D,
    stop: StopHandle,
    epoll: Epoll,
}

impl<D: Device> Server<D> {
    /// Binds the path, or serves a duplicate (close-on-exec) of the
    /// inherited listener.
    pub fn listen(name: &str, listen: &Listen, device: D) -> Result<Self> {
        match listen {
            Listen::Path(path) => Self::bind(name, path, device),
            Listen::Fd(fd) => {
                let dup = fd.try_clone().map_err(|source| ServerError::NotAListener {
                    fd: fd.as_raw_fd(),
                    source,
                })?;
                Self::from_listener(name, dup, device)
            }
        }
    }

    /// Serves on an inherited socket that is already bound and listening.
    /// Nothing in the filesystem is created or removed, on drop either.
    pub fn from_listener(name: &str, fd: OwnedFd, device: D) -> Result<Self> {
        let raw = fd.as_raw_fd();
        check_listener(&fd).map_err(|source| ServerError::NotAListener { fd: raw, source })?;
        let listener = UnixListener::from(fd);
        listener
            .set_nonblocking(false)
            .map_err(|source| ServerError::NotAListener { fd: raw, source })?;
        let (stop, epoll) = Self::events(&listener)?;
        Ok(Self {
            name: name.to_owned(),
            path: None,
            describe: format!("inherited fd {raw}"),
            listener: Listener::from(listener),
            device,
            stop,
            epoll,
        })
    }

    /// The stop handle and the epoll set that waits for a frontend or a stop.
    fn events(listener: &UnixListener) -> Result<(StopHandle, Epoll)> {
        let stop = StopHandle::new().map_err(ServerError::Wait)?;
        let epoll = Epoll::new().map_err(ServerError::Wait)?;
        epoll
            .ctl(
                ControlOperation::Add,
                listener.as_raw_fd(),
                EpollEvent::new(EventSet::IN, EV_LISTENER),
            )
            .map_err(ServerError::Wait)?;
        epoll
            .ctl(
                ControlOperation::Add,
                stop.wake_fd().as_raw_fd(),
                EpollEvent::new(EventSet::IN, EV_STOP),
            )
            .map_err(ServerError::Wait)?;
        Ok((stop, epoll))
    }

    /// Binds `path` (a stale socket left by a dead process is replaced; any
    /// other file there is an error). Nothing is accepted until [`run`](Self::run).
    pub fn bind(name: &str, path: &Path, device: D) -> Result<Self> {
        remove_stale_socket(path)?;
        let listener = UnixListener::bind(path).map_err(|source| ServerError::Bind {
            path: path.to_owned(),
            source,
        })?;
        // From here on the socket is ours: removed on drop (including on the
        // error paths below).
        let server_path = SocketFile(path.to_owned());
        let (stop, epoll) = Self::events(&listener)?;
        let path = server_path.take();
        Ok(Self {
            name: name.to_owned(),
            describe: path.display().to_string(),
            path: Some(path),
            // `From<UnixListener>` leaves the path to us: removed in `Drop`.
            listener: Listener::from(listener),
            device,
            stop,
            epoll,
        })
    }

    /// Leaves the socket file in place when the server is dropped: a
    /// sandboxed process may not remove it (Landlock), and a stale socket is
    /// replaced by the next [`bind`](Self::bind) anyway.
    pub fn leave_socket_file(&mut self) {
        self.path = None;
    }

    /// The handle that stops [`run`](Self::run) from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// The socket path, when the server bound one (not for an inherited
    /// listener).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Serves frontends one after the other until stopped. A frontend that
    /// disconnects or breaks the protocol ends its connection, not the
    /// server.
    pub fn run(mut self) -> Result<()> {
        tracing::info!("{}: listening on {}", self.name, self.describe);
        while self.wait_for_frontend()? {
            self.serve_one()?;
        }
        tracing::info!("{}: stopped", self.name);
        Ok(())
    }

    /// Waits until a frontend connects (true) or a stop is asked for (false).
    fn wait_for_frontend(&self) -> Result<bool> {
        let mut events = [EpollEvent::default(); 2];
        loop {
            if self.stop.is_stopped() {
                return Ok(false);
            }
            let n = match self.epoll.wait(-1, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ServerError::Wait(e)),
            };
            for ev in events.iter().take(n) {
                if ev.data() == EV_STOP {
                    return Ok(false);
                }
            }
            if n > 0 {
                return Ok(true);
            }
        }
    }

    fn serve_one(&mut self) -> Result<()> {
        // A connection starts without an inflight region until its frontend
        // sends one.
        let inflight = self.device.inflight();
        if let Some(cell) = &inflight {
            cell.clear();
        }
        let mem = GM::new(GuestMem::new());
        let mut daemon =
            VhostUserDaemon::new(self.name.clone(), self.device.backend(), mem.clone())
                .map_err(|e| ServerError::Daemon(e.to_string()))?;
        self.device
            .attach(&daemon.get_epoll_handlers())
            .map_err(ServerError::Attach)?;
        let relay = self.start_relayed(&mut daemon, mem)?;
        tracing::info!("{}: frontend connected", self.name);
        self.stop.set_current(daemon.shutdown_handle());
        let result = daemon.wait();
        self.stop.set_current(None);
        match result {
            Ok(()) => tracing::info!("{}: frontend disconnected", self.name),
            // A frontend that dies mid-message is a disconnect too.
            Err(e) => tracing::info!("{}: frontend connection ended: {e}", self.name),
        }
        // Dropping the daemon stops and joins its queue threads; only then may
        // the device drain in-flight I/O and drop the guest memory mappings.
        drop(daemon);
        relay.join();
        self.device.detach();
        if let Some(cell) = &inflight {
            cell.clear();
        }
        Ok(())
    }

    /// Accepts the frontend here and starts `daemon` on a private socket
    /// behind a [`Relay`], which checks every control message before the
    /// daemon sees it (see `validate.rs`).
    fn start_relayed(
        &mut self,
        daemon: &mut VhostUserDaemon<D::Backend>,
        memory: GM,
    ) -> Result<Relay> {
        let backend = self.device.backend();
        let policy = RelayPolicy {
            hold_early_vring_enable: self.device.relay_early_vring_enable(),
            num_queues: backend.num_queues(),
            max_queue_size: backend.max_queue_size(),
            inflight: self.device.inflight(),
            memory: Some(memory),
        };
        let frontend = loop {
            match self.listener.accept() {
                Ok(Some(s)) => break s,
                Ok(None) => continue,
                Err(e) => return Err(ServerError::Daemon(e.to_string())),
            }
        };
        // An abstract socket: nothing in the filesystem, gone with its fd
        // (and, in the sandbox, in the backend's own network namespace).
        let name = format!("pvio-relay-{}-{}", std::process::id(), self.describe);
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).map_err(ServerError::Wait)?;
        let mut inner = Listener::from(UnixListener::bind_addr(&addr).map_err(ServerError::Wait)?);
        let to_daemon = UnixStream::connect_addr(&addr).map_err(ServerError::Wait)?;
        daemon
            .start(&mut inner)
            .map_err(|e| ServerError::Daemon(e.to_string()))?;
        Relay::start(frontend, to_daemon, policy).map_err(ServerError::Wait)
    }
}

impl<D: Device> Drop for Server<D> {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = fs::remove_file(path);
        }
    }
}

/// An inherited fd must be a Unix stream socket that listens.
fn check_listener(fd: &OwnedFd) -> io::Result<()> {
    use rustix::net::{sockopt, AddressFamily, SocketType};
    let not = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
    if sockopt::socket_domain(fd)? != AddressFamily::UNIX {
        return Err(not("not a Unix socket"));
    }
    if sockopt::socket_type(fd)? != SocketType::STREAM {
        return Err(not("not a stream socket"));
    }
    if !sockopt::socket_acceptconn(fd)? {
        return Err(not("not listening"));
    }
    Ok(())
}

/// Removes the socket file on drop unless taken: keeps `bind`'s error paths
/// from leaving a socket behind.
struct SocketFile(PathBuf);

impl SocketFile {
    fn take(mut self) -> PathBuf {
        std::mem::take(&mut self.0)
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.0);
        }
    }
}

/// A socket left by a process that died is removed; a live one, or a file
/// that is not a socket, is an error (never delete a user's file).
fn remove_stale_socket(path: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ServerError::Bind {
                path: path.to_owned(),
                source,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(ServerError::NotASocket(path.to_owned()));
    }
    if UnixStream::connect(path).is_ok() {
        return Err(ServerError::InUse(path.to_owned()));
    }
    fs::remove_file(path).map_err(|source| ServerError::RemoveStale {
        path: path.to_owned(),
        source,
    })
}
