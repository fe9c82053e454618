//! The backends the benchmark compares, each serving the same image on its
//! own socket: pvio's backend (in this process, io_uring engine), pvio's
//! backend over the null engine (no I/O: the protocol floor), and
//! qemu-storage-daemon's vhost-user-blk export with `aio=io_uring`.
//!
//! It must not know how they are measured.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::BenchError;
use crate::blk::{BlkError, BlkOptions, BlkServer, EngineKind};
use crate::vhost_user::StopHandle;

/// Which backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// pvio, io_uring engine.
    Pvio,
    /// qemu-storage-daemon, `aio=io_uring`, `cache.direct=off`.
    Qsd,
    /// pvio, null engine.
    PvioNull,
}

impl Peer {
    /// The name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Pvio => "pvio",
            Peer::Qsd => "qemu-storage-daemon",
            Peer::PvioNull => "pvio (null engine)",
        }
    }
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
pub fn start(peer: Peer, image: &Path, dir: &Path, queues: usize) -> Result<Running, BenchError> {
    let socket = dir.join(match peer {
        Peer::Pvio => "pvio.sock",
        Peer::Qsd => "qsd.sock",
        Peer::PvioNull => "null.sock",
    });
    match peer {
        Peer::Pvio | Peer::PvioNull => {
            let mut opts = BlkOptions::new(&socket, image);
            opts.num_queues =
                u16::try_from(queues).map_err(|_| BenchError::Setup("too many queues".into()))?;
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
        Peer::Qsd => start_qsd(image, dir, &socket, queues),
    }
}

fn start_qsd(
    image: &Path,
    dir: &Path,
    socket: &Path,
    queues: usize,
) -> Result<Running, BenchError> {
    let log_path = dir.join("qsd.log");
    let log = File::create(&log_path)
        .map_err(|e| BenchError::Setup(format!("{}: {e}", log_path.display())))?;
    let blockdev = format!(
        "driver=file,filename={},node-name=f,aio=io_uring,cache.direct=off",
        image.display()
    );
    let export = format!(
        "type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path={},writable=on,num-queues={queues}",
        socket.display()
    );
    let child = Command::new("qemu-storage-daemon")
        .args(["--blockdev", &blockdev, "--export", &export])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| {
            BenchError::Peer(format!(
                "cannot run qemu-storage-daemon ({e}); install the qemu-system-x86 package"
            ))
        })?;
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
                    "qemu-storage-daemon exited with {status}: {}",
                    log.trim()
                )));
            }
        }
        if Instant::now() > deadline {
            return Err(BenchError::Peer(
                "qemu-storage-daemon did not create its socket in 10 s".into(),
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(running)
}
