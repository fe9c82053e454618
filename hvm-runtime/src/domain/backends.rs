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
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use super::access::{self, Identity};
use super::image_lock::{self, LockedImage};
use super::DomainError;

use crate::plan::backend_cmd::{blk_args, net_args, LISTEN_FD};

/// How long a backend may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What a backend serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// A virtio-blk disk.
    Blk,
    /// A virtio-net NIC.
    Net,
}

/// A backend process to start: its command line (exactly what runs) and
/// the descriptors it gets, in order from [`LISTEN_FD`].
#[derive(Debug)]
pub struct BackendCommand {
    /// `backend blk ...` / `backend net ...` (after the `pvio` binary).
    pub args: Vec<String>,
    /// Passed on `LISTEN_FD`, `LISTEN_FD + 1`, ...
    pub fds: Vec<OwnedFd>,
}

/// One running backend.
#[derive(Debug)]
struct Running {
    device: String,
    kind: BackendKind,
    socket: PathBuf,
    pid: u32,
    exited: Receiver<ExitStatus>,
    /// The supervisor's copies: the listener, the image (with its lock) or
    /// the tap queues, kept open while the backend lives.
    _held: Vec<OwnedFd>,
    _image: Option<LockedImage>,
}

/// The backends of one domain, by guest device (`xvda`, `net0`).
#[derive(Debug)]
pub struct Backends {
    user: Identity,
    /// The group that may connect to the sockets: the device model's.
    socket_gid: Option<u32>,
    run_root: PathBuf,
    domain: String,
    running: Vec<Running>,
}

impl Backends {
    /// No backends yet; they will run as `user`, their sockets reachable
    /// by group `socket_gid`, their images locked against every domain
    /// under `run_root`.
    pub fn new(domain: &str, user: Identity, socket_gid: Option<u32>, run_root: &Path) -> Self {
        Backends {
            user,
            socket_gid,
            run_root: run_root.to_owned(),
            domain: domain.to_owned(),
            running: Vec::new(),
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
        let fail = |message: String| DomainError::Backend {
            device: device.to_owned(),
            message,
        };
        if self.has(device) {
            return Err(fail(format!("a backend already serves {device}")));
        }
        let locked =
            image_lock::open_locked(image, read_only, &self.run_root, &self.domain, device)
                .map_err(|e| fail(crate::cli::error_line(&e)))?;
        let listener = self.bind(device, socket)?;
        let image_fd = locked
            .file()
            .try_clone()
            .map_err(|e| fail(format!("cannot pass {}: {e}", image.display())))?;
        let cmd = BackendCommand {
            args: blk_args(device, read_only, &self.user.arg()),
            fds: vec![
                OwnedFd::from(listener.try_clone().map_err(|e| fail(e.to_string()))?),
                OwnedFd::from(image_fd),
            ],
        };
        self.spawn(
            device,
            BackendKind::Blk,
            socket,
            cmd,
            vec![OwnedFd::from(listener)],
            Some(locked),
        )?;
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
        mac: &str,
        mtu: Option<u16>,
    ) -> Result<(), DomainError> {
        let fail = |message: String| DomainError::Backend {
            device: device.to_owned(),
            message,
        };
        if self.has(device) {
            return Err(fail(format!("a backend already serves {device}")));
        }
        let mut queues = pvio_backends::net::tap::open_queues(tap, 1)
            .map_err(|e| fail(crate::cli::error_line(&e)))?;
        let queue = queues
            .pop()
            .ok_or_else(|| fail(format!("tap {tap} gave no queue")))?;
        let listener = self.bind(device, socket)?;
        let cmd = BackendCommand {
            args: net_args(mac, mtu, &self.user.arg()),
            fds: vec![
                OwnedFd::from(listener.try_clone().map_err(|e| fail(e.to_string()))?),
                queue.try_clone().map_err(|e| fail(e.to_string()))?,
            ],
        };
        self.spawn(
            device,
            BackendKind::Net,
            socket,
            cmd,
            vec![OwnedFd::from(listener), queue],
            None,
        )?;
        tracing::info!(
            "net backend {device} serves tap {tap} on {}",
            socket.display()
        );
        Ok(())
    }

    /// Binds `socket` (a stale one is replaced) for the device model's
    /// group alone.
    fn bind(&self, device: &str, socket: &Path) -> Result<UnixListener, DomainError> {
        let fail = |message: String| DomainError::Backend {
            device: device.to_owned(),
            message,
        };
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Err(fail(format!(
                "another backend is already serving {}",
                socket.display()
            )));
        }
        let _ = std::fs::remove_file(socket);
        let l = UnixListener::bind(socket)
            .map_err(|e| fail(format!("cannot listen on {}: {e}", socket.display())))?;
        access::protect(socket, access::SOCKET_MODE, self.socket_gid)
            .map_err(|e| fail(format!("cannot set the mode of {}: {e}", socket.display())))?;
        Ok(l)
    }

    fn spawn(
        &mut self,
        device: &str,
        kind: BackendKind,
        socket: &Path,
        cmd: BackendCommand,
        held: Vec<OwnedFd>,
        image: Option<LockedImage>,
    ) -> Result<(), DomainError> {
        let fail = |message: String| DomainError::Backend {
            device: device.to_owned(),
            message,
        };
        let exe = std::env::current_exe().map_err(|e| fail(format!("cannot find pvio: {e}")))?;
        let mut c = Command::new(exe);
        c.args(&cmd.args)
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
        let sources: Vec<RawFd> = cmd.fds.iter().map(AsRawFd::as_raw_fd).collect();
        // SAFETY: the closure runs in the forked child before exec and
        // calls only fcntl, dup2 and prctl, which are async-signal-safe,
        // on descriptors `cmd.fds` keeps open until spawn returns. Each
        // source is first moved above every target, so that placing one
        // cannot close another; dup2 clears close-on-exec on the copies.
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
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        tracing::info!("starting pvio {}", cmd.args.join(" "));
        let mut child = c
            .spawn()
            .map_err(|e| fail(format!("cannot start its process: {e}")))?;
        drop(cmd.fds);
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        let name = device.to_owned();
        std::thread::Builder::new()
            .name(format!("wait-{device}"))
            .spawn(move || {
                if let Ok(status) = child.wait() {
                    tracing::info!("backend {name} (pid {pid}) {}", describe(status));
                    let _ = tx.send(status);
                }
            })
            .map_err(|e| fail(format!("cannot watch its process: {e}")))?;
        self.running.push(Running {
            device: device.to_owned(),
            kind,
            socket: socket.to_owned(),
            pid,
            exited: rx,
            _held: held,
            _image: image,
        });
        Ok(())
    }

    /// Whether a backend serves `device`.
    pub fn has(&self, device: &str) -> bool {
        self.running.iter().any(|r| r.device == device)
    }

    /// The devices served, with their kind, socket and pid.
    pub fn list(&self) -> Vec<(String, BackendKind, PathBuf, u32)> {
        self.running
            .iter()
            .map(|r| (r.device.clone(), r.kind, r.socket.clone(), r.pid))
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
            super::process::signal(r.pid, libc::SIGTERM);
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
    super::process::signal(r.pid, libc::SIGTERM);
    if r.exited.recv_timeout(STOP_GRACE).is_err() {
        tracing::warn!(
            "backend {} did not stop within {STOP_GRACE:?}; killing it",
            r.device
        );
        super::process::signal(r.pid, libc::SIGKILL);
        let _ = r.exited.recv_timeout(STOP_GRACE);
    }
    // The supervisor bound the socket; it removes it.
    let _ = std::fs::remove_file(&r.socket);
    tracing::info!("backend {} stopped", r.device);
}

impl Drop for Backends {
    fn drop(&mut self) {
        self.stop_all();
    }
}
