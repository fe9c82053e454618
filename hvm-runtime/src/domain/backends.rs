//! The domain's PV backends, each in its own process: `pvio backend blk`
//! / `pvio backend net` started by the supervisor with what they need
//! already open (the listening vhost-user socket, the image, the tap
//! queues) on fixed descriptor numbers, under the domain's backend
//! identity, sandboxed by themselves before they read a byte. The
//! supervisor keeps its own copies of those descriptors (and the image
//! locks on them) for the backend's whole life, watches each process and
//! stops it when its device goes or the domain ends.
//!
//! It must not know how a backend works: it opens, passes, starts and
//! stops.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::access::{self, Identity};
use super::backend_error::BackendError;
use super::image_lock::{self, LockedImage};
use super::msg::Msg;
use super::DomainError;
use crate::config::vif::Mac;

use crate::plan::backend_cmd::{blk_args, net_args, LISTEN_FD};

/// How long a backend may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The first pause before a dead backend is started again; it doubles
/// with each death of the same minute.
const RESTART_FIRST: Duration = Duration::from_millis(100);
/// Deaths within [`DEATH_WINDOW`] after which a backend is left down.
pub const MAX_DEATHS: usize = 5;
/// The window [`MAX_DEATHS`] counts in.
pub const DEATH_WINDOW: Duration = Duration::from_secs(60);

/// What a backend serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// A virtio-blk disk.
    Blk,
    /// A virtio-net NIC.
    Net,
}

/// One running backend.
#[derive(Debug)]
struct Running {
    device: String,
    kind: BackendKind,
    socket: PathBuf,
    /// The current process (it changes at each restart).
    pid: Arc<AtomicU32>,
    /// Set before a stop: the watcher then restarts nothing.
    stopping: Arc<AtomicBool>,
    exited: Receiver<ExitStatus>,
    /// The image's lock, held while the disk is attached.
    image: Option<LockedImage>,
}

/// The backends of one domain, by guest device (`xvda`, `net0`).
#[derive(Debug)]
pub struct Backends {
    /// Where restarts and give-ups are reported (the supervisor's loop).
    events: Option<mpsc::Sender<Msg>>,
    user: Identity,
    /// The group that may connect to the sockets: the device model's.
    socket_gid: Option<u32>,
    run_root: PathBuf,
    domain: String,
    running: Vec<Running>,
    /// Open images without waiting for their locks (a domain migrating
    /// in on this host; see [`Backends::take_deferred_locks`]).
    defer_locks: bool,
}

impl Backends {
    /// No backends yet; they will run as `user`, their sockets reachable
    /// by group `socket_gid`, their images locked against every domain
    /// under `run_root`.
    pub fn new(
        events: mpsc::Sender<Msg>,
        domain: &str,
        user: Identity,
        socket_gid: Option<u32>,
        run_root: &Path,
    ) -> Self {
        Backends {
            events: Some(events),
            user,
            socket_gid,
            run_root: run_root.to_owned(),
            domain: domain.to_owned(),
            running: Vec::new(),
            defer_locks: false,
        }
    }

    /// Starts a block backend for `device` on `socket`: the image is
    /// opened and locked (exclusively when writable) and the socket bound
    /// before this returns (so QEMU can connect at once); the backend
    /// process serves it.
    pub fn start_blk(
        &mut self,
        device: &str,
        socket: &Path,
        image: &Path,
        read_only: bool,
    ) -> Result<(), DomainError> {
        let fail = |source: BackendError| DomainError::Backend {
            device: device.to_owned(),
            source: Box::new(source),
        };
        if self.has(device) {
            return Err(fail(BackendError::AlreadyServed(device.to_owned())));
        }
        let locked = if self.defer_locks {
            image_lock::open_deferred(image, read_only)
        } else {
            image_lock::open_locked(image, read_only, &self.run_root, &self.domain, device)
        }
        .map_err(|e| fail(e.into()))?;
        let listener = self.bind(device, socket)?;
        let image_fd = locked.file().try_clone().map_err(|source| {
            fail(BackendError::PassImage {
                path: image.to_owned(),
                source,
            })
        })?;
        let fds = vec![OwnedFd::from(listener), OwnedFd::from(image_fd)];
        let args = blk_args(device, read_only, &self.user.arg());
        self.spawn(device, BackendKind::Blk, socket, args, fds, Some(locked))?;
        tracing::info!(
            "block backend {device} serves {} on {}",
            image.display(),
            socket.display()
        );
        Ok(())
    }

    /// Starts a net backend for `device` (`net0`) on `socket`, on tap
    /// `tap` (which must exist: the supervisor makes it and joins it to
    /// its bridge first). The supervisor opens the tap's queue; the
    /// backend never touches the host's network.
    pub fn start_net(
        &mut self,
        device: &str,
        socket: &Path,
        tap: &str,
        mac: Mac,
        mtu: Option<u16>,
    ) -> Result<(), DomainError> {
        let fail = |source: BackendError| DomainError::Backend {
            device: device.to_owned(),
            source: Box::new(source),
        };
        if self.has(device) {
            return Err(fail(BackendError::AlreadyServed(device.to_owned())));
        }
        let mut queues =
            pvio_backends::net::tap::open_queues(tap, 1).map_err(|e| fail(e.into()))?;
        let queue = queues
            .pop()
            .ok_or_else(|| fail(BackendError::NoQueue(tap.to_owned())))?;
        let listener = self.bind(device, socket)?;
        let fds = vec![OwnedFd::from(listener), queue];
        let args = net_args(&mac.to_string(), mtu, &self.user.arg());
        self.spawn(device, BackendKind::Net, socket, args, fds, None)?;
        tracing::info!(
            "net backend {device} serves tap {tap} on {}",
            socket.display()
        );
        Ok(())
    }

    /// Binds `socket` (a stale one is replaced) for the device model's
    /// group alone.
    fn bind(&self, device: &str, socket: &Path) -> Result<UnixListener, DomainError> {
        let fail = |source: BackendError| DomainError::Backend {
            device: device.to_owned(),
            source: Box::new(source),
        };
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Err(fail(BackendError::SocketTaken(socket.to_owned())));
        }
        let _ = std::fs::remove_file(socket);
        let l = UnixListener::bind(socket).map_err(|source| {
            fail(BackendError::Listen {
                path: socket.to_owned(),
                source,
            })
        })?;
        access::protect(socket, access::SOCKET_MODE, self.socket_gid).map_err(|source| {
            fail(BackendError::SocketMode {
                path: socket.to_owned(),
                source,
            })
        })?;
        Ok(l)
    }

    fn spawn(
        &mut self,
        device: &str,
        kind: BackendKind,
        socket: &Path,
        args: Vec<String>,
        fds: Vec<OwnedFd>,
        image: Option<LockedImage>,
    ) -> Result<(), DomainError> {
        let fail = |source: BackendError| DomainError::Backend {
            device: device.to_owned(),
            source: Box::new(source),
        };
        // The supervisor's own binary, even once an upgrade replaced the
        // file: backend and supervisor are always of one version.
        let exe = PathBuf::from("/proc/self/exe");
        let job = Arc::new(Job { exe, args, fds });
        tracing::info!("starting pvio {}", job.args.join(" "));
        let child = job.start().map_err(|e| fail(BackendError::Start(e)))?;
        let pid = Arc::new(AtomicU32::new(child.id()));
        let stopping = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let watch = Watch {
            device: device.to_owned(),
            job,
            pid: Arc::clone(&pid),
            stopping: Arc::clone(&stopping),
            done: tx,
            domain: self.events.clone(),
        };
        std::thread::Builder::new()
            .name(format!("watch-{device}"))
            .spawn(move || watch.run(child))
            .map_err(|e| fail(BackendError::Watch(e)))?;
        self.running.push(Running {
            device: device.to_owned(),
            kind,
            socket: socket.to_owned(),
            pid,
            stopping,
            exited: rx,
            image,
        });
        Ok(())
    }

    /// From now on, open images without waiting for their locks (`true`),
    /// or lock them at once (`false`, the default).
    pub fn defer_locks(&mut self, defer: bool) {
        self.defer_locks = defer;
    }

    /// Takes the deferred image locks that are free now; true once all
    /// are held.
    pub fn take_deferred_locks(&mut self) -> bool {
        image_lock::take_deferred(self.running.iter_mut().filter_map(|r| r.image.as_mut()))
    }

    /// Whether a backend serves `device`.
    pub fn has(&self, device: &str) -> bool {
        self.running.iter().any(|r| r.device == device)
    }

    /// The devices served, with their kind, socket and pid.
    pub fn list(&self) -> Vec<(String, BackendKind, PathBuf, u32)> {
        self.running
            .iter()
            .map(|r| {
                (
                    r.device.clone(),
                    r.kind,
                    r.socket.clone(),
                    r.pid.load(Ordering::SeqCst),
                )
            })
            .collect()
    }

    /// Stops the backend of `device` and waits for its process; false if
    /// none serves it.
    pub fn stop(&mut self, device: &str) -> bool {
        let Some(i) = self.running.iter().position(|r| r.device == device) else {
            return false;
        };
        let r = self.running.remove(i);
        finish(r);
        true
    }

    /// Stops every backend.
    pub fn stop_all(&mut self) {
        for r in &self.running {
            r.stopping.store(true, Ordering::SeqCst);
            super::process::signal(r.pid.load(Ordering::SeqCst), libc::SIGTERM);
        }
        for r in self.running.drain(..) {
            finish(r);
        }
    }
}

/// An exit status in words, naming a seccomp kill.
pub fn describe(status: ExitStatus) -> String {
    match status.signal() {
        Some(libc::SIGSYS) => {
            "was killed by SIGSYS: it made a system call outside its seccomp allowlist".to_owned()
        }
        Some(s) => format!("was killed by signal {s}"),
        None => format!("exited with {}", status.code().unwrap_or(-1)),
    }
}

fn finish(r: Running) {
    r.stopping.store(true, Ordering::SeqCst);
    super::process::signal(r.pid.load(Ordering::SeqCst), libc::SIGTERM);
    if r.exited.recv_timeout(STOP_GRACE).is_err() {
        tracing::warn!(
            "backend {} did not stop within {STOP_GRACE:?}; killing it",
            r.device
        );
        super::process::signal(r.pid.load(Ordering::SeqCst), libc::SIGKILL);
        let _ = r.exited.recv_timeout(STOP_GRACE);
    }
    // The supervisor bound the socket; it removes it.
    let _ = std::fs::remove_file(&r.socket);
    tracing::info!("backend {} stopped", r.device);
}

/// What starts a backend process, again and again: its arguments and the
/// supervisor's copies of its descriptors (the listening socket, the
/// image or tap queue), which outlive every process started from them.
#[derive(Debug)]
struct Job {
    exe: PathBuf,
    args: Vec<String>,
    fds: Vec<OwnedFd>,
}

impl Job {
    fn start(&self) -> std::io::Result<Child> {
        let mut c = Command::new(&self.exe);
        // Not killed with the supervisor: a new one adopts the domain.
        c.arg0("pvio")
            .process_group(0)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
        let sources: Vec<RawFd> = self.fds.iter().map(AsRawFd::as_raw_fd).collect();
        // SAFETY: the closure runs in the forked child before exec and
        // calls only fcntl and dup2, which are async-signal-safe,
        // on descriptors `self.fds` keeps open. Each source is first moved
        // above every target, so that placing one cannot close another;
        // dup2 clears close-on-exec on the copies.
        unsafe {
            c.pre_exec(move || {
                let mut high = [0 as RawFd; 8];
                for (i, fd) in sources.iter().enumerate().take(high.len()) {
                    let h = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 64);
                    if h < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    high[i] = h;
                }
                for (i, h) in high.iter().enumerate().take(sources.len()) {
                    let target = LISTEN_FD + RawFd::try_from(i).unwrap_or(0);
                    if libc::dup2(*h, target) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        c.spawn()
    }
}

/// A backend's watcher: waits for its process and, unless it is being
/// stopped, starts it again on the same descriptors after a back-off; a
/// backend that dies [`MAX_DEATHS`] times within [`DEATH_WINDOW`] is left
/// down and the domain told.
struct Watch {
    device: String,
    job: Arc<Job>,
    pid: Arc<AtomicU32>,
    stopping: Arc<AtomicBool>,
    done: mpsc::Sender<ExitStatus>,
    domain: Option<mpsc::Sender<Msg>>,
}

impl Watch {
    fn run(self, mut child: Child) {
        let mut deaths: Vec<Instant> = Vec::new();
        loop {
            let status = match child.wait() {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("backend {}: cannot wait for it: {e}", self.device);
                    return;
                }
            };
            let pid = child.id();
            if self.stopping.load(Ordering::SeqCst) {
                tracing::info!("backend {} (pid {pid}) {}", self.device, describe(status));
                let _ = self.done.send(status);
                return;
            }
            tracing::warn!("backend {} (pid {pid}) {}", self.device, describe(status));
            let now = Instant::now();
            deaths.retain(|t| now.duration_since(*t) < DEATH_WINDOW);
            deaths.push(now);
            if deaths.len() >= MAX_DEATHS {
                let why = format!(
                    "it died {} times within {}s (last: {}); it is left down: `pvio block-detach`/`network-detach` and attach again, or restart the domain",
                    deaths.len(),
                    DEATH_WINDOW.as_secs(),
                    describe(status)
                );
                self.tell(Some(why));
                let _ = self.done.send(status);
                return;
            }
            // 0.1 s, 0.2 s, 0.4 s, 0.8 s between the deaths of one minute.
            let exp = u32::try_from(deaths.len().saturating_sub(1)).unwrap_or(0);
            let pause = RESTART_FIRST.saturating_mul(1 << exp.min(4));
            std::thread::sleep(pause);
            if self.stopping.load(Ordering::SeqCst) {
                let _ = self.done.send(status);
                return;
            }
            match self.job.start() {
                Ok(c) => {
                    self.pid.store(c.id(), Ordering::SeqCst);
                    tracing::info!("backend {} restarted (pid {})", self.device, c.id());
                    child = c;
                    if self.stopping.load(Ordering::SeqCst) {
                        super::process::signal(child.id(), libc::SIGTERM);
                    }
                    self.tell(None);
                }
                Err(e) => {
                    self.tell(Some(format!("cannot start it again: {e}")));
                    let _ = self.done.send(status);
                    return;
                }
            }
        }
    }

    fn tell(&self, down: Option<String>) {
        if let Some(tx) = &self.domain {
            let _ = tx.send(Msg::Backend(self.device.clone(), down));
        }
    }
}

impl Drop for Backends {
    fn drop(&mut self) {
        self.stop_all();
    }
}
