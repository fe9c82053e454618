//! The backends the benchmark compares, each serving the same image on its
//! own socket: pvio's backend (in this process, io_uring engine), pvio's
//! backend over the null engine (no I/O: the protocol floor),
//! qemu-storage-daemon's vhost-user-blk export with `aio=io_uring`, and
//! optionally Cloud Hypervisor's `vhost_user_block` daemon (a binary the
//! user built; it serves one connection and exits, so it is started anew
//! for every round). With `direct` every one of them opens the image with
//! O_DIRECT. fio, the host ceiling, is not a backend: see `fio.rs`.
//!
//! It must not know how they are measured.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use pvio_backends::blk::{BlkError, BlkOptions, BlkServer, EngineKind};
use pvio_backends::vhost_user::StopHandle;

use super::BenchError;

/// Which backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// pvio, io_uring engine.
    Pvio,
    /// qemu-storage-daemon, `aio=io_uring`, `cache.direct=off`.
    Qsd,
    /// Cloud Hypervisor's `vhost_user_block` (synchronous I/O, polling).
    Ch,
    /// pvio, null engine.
    PvioNull,
    /// `fio --ioengine=io_uring` on the image itself: the host ceiling.
    Fio,
}

impl Peer {
    /// The name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Pvio => "pvio",
            Peer::Qsd => "qemu-storage-daemon",
            Peer::Ch => "cloud-hypervisor",
            Peer::PvioNull => "pvio (null engine)",
            Peer::Fio => "fio (host ceiling)",
        }
    }

    /// A short key (`PVIO_BENCH_PEERS`).
    pub fn key(self) -> &'static str {
        match self {
            Peer::Pvio => "pvio",
            Peer::Qsd => "qsd",
            Peer::Ch => "ch",
            Peer::PvioNull => "null",
            Peer::Fio => "fio",
        }
    }
}

/// How every backend opens the image, and where a peer binary is.
#[derive(Clone, Debug, Default)]
pub struct PeerSetup {
    /// O_DIRECT in every backend.
    pub direct: bool,
    /// Cloud Hypervisor's `vhost_user_block` binary.
    pub ch: Option<PathBuf>,
}

/// A running peer; stopped on drop.
pub struct Running {
    /// Where it listens.
    pub socket: PathBuf,
    inner: Inner,
}

enum Inner {
    InProcess {
        stop: StopHandle,
        thread: Option<JoinHandle<Result<(), BlkError>>>,
    },
    Process(Child),
}

impl Drop for Running {
    fn drop(&mut self) {
        match &mut self.inner {
            Inner::InProcess { stop, thread } => {
                stop.stop();
                if let Some(t) = thread.take() {
                    let _ = t.join();
                }
            }
            Inner::Process(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Starts `peer` on `image` with `queues` queues, listening in `dir`.
pub fn start(
    peer: Peer,
    setup: &PeerSetup,
    image: &Path,
    dir: &Path,
    queues: usize,
) -> Result<Running, BenchError> {
    let socket = dir.join(match peer {
        Peer::Pvio => "pvio.sock",
        Peer::Qsd => "qsd.sock",
        Peer::Ch => "ch.sock",
        Peer::PvioNull => "null.sock",
        Peer::Fio => return Err(BenchError::Setup("fio is not a backend".into())),
    });
    match peer {
        Peer::Pvio | Peer::PvioNull => {
            let mut opts = BlkOptions::new(&socket, image);
            opts.num_queues =
                u16::try_from(queues).map_err(|_| BenchError::Setup("too many queues".into()))?;
            opts.direct = setup.direct;
            opts.engine = if peer == Peer::Pvio {
                EngineKind::Auto
            } else {
                EngineKind::Null
            };
            let server = BlkServer::new(&opts)?;
            let stop = server.stop_handle();
            let thread = thread::Builder::new()
                .name(format!("bench-{}", peer.name()))
                .spawn(move || server.run())
                .map_err(|e| BenchError::Setup(format!("thread: {e}")))?;
            Ok(Running {
                socket,
                inner: Inner::InProcess {
                    stop,
                    thread: Some(thread),
                },
            })
        }
        Peer::Qsd => start_qsd(image, dir, &socket, queues, setup.direct),
        Peer::Ch => {
            let bin = setup
                .ch
                .as_deref()
                .ok_or_else(|| BenchError::Setup("no --peer-ch binary".into()))?;
            start_ch(bin, image, dir, &socket, queues, setup.direct)
        }
        Peer::Fio => Err(BenchError::Setup("fio is not a backend".into())),
    }
}

fn start_qsd(
    image: &Path,
    dir: &Path,
    socket: &Path,
    queues: usize,
    direct: bool,
) -> Result<Running, BenchError> {
    let blockdev = format!(
        "driver=file,filename={},node-name=f,aio=io_uring,cache.direct={}",
        image.display(),
        if direct { "on" } else { "off" }
    );
    let export = format!(
        "type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path={},writable=on,num-queues={queues}",
        socket.display()
    );
    let mut cmd = Command::new("qemu-storage-daemon");
    cmd.args(["--blockdev", &blockdev, "--export", &export]);
    spawn_daemon(
        cmd,
        "qemu-storage-daemon",
        "install the qemu-system-x86 package",
        dir,
        socket,
    )
}

/// Cloud Hypervisor's daemon with its own defaults but for the queue size,
/// which matches the others'.
fn start_ch(
    bin: &Path,
    image: &Path,
    dir: &Path,
    socket: &Path,
    queues: usize,
    direct: bool,
) -> Result<Running, BenchError> {
    // A socket left by the previous round's daemon would look ready.
    let _ = std::fs::remove_file(socket);
    let arg = format!(
        "path={},socket={},num_queues={queues},queue_size=256,direct={direct}",
        image.display(),
        socket.display()
    );
    let mut cmd = Command::new(bin);
    cmd.args(["--block-backend", &arg]);
    spawn_daemon(
        cmd,
        "cloud-hypervisor's vhost_user_block",
        "check --peer-ch",
        dir,
        socket,
    )
}

/// Starts a daemon, its stderr in `dir`, and waits for its socket.
fn spawn_daemon(
    mut cmd: Command,
    name: &str,
    hint: &str,
    dir: &Path,
    socket: &Path,
) -> Result<Running, BenchError> {
    let log_path = dir.join(format!(
        "{}.log",
        socket
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("peer")
    ));
    let log = File::create(&log_path)
        .map_err(|e| BenchError::Setup(format!("{}: {e}", log_path.display())))?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| BenchError::Peer(format!("cannot run {name} ({e}); {hint}")))?;
    let mut running = Running {
        socket: socket.to_owned(),
        inner: Inner::Process(child),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        if let Inner::Process(child) = &mut running.inner {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(BenchError::Peer(format!(
                    "{name} exited with {status}: {}",
                    log.trim()
                )));
            }
        }
        if Instant::now() > deadline {
            return Err(BenchError::Peer(format!(
                "{name} did not create its socket in 10 s"
            )));
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(running)
}
