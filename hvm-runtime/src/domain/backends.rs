//! The domain's PV backends, run in the supervisor's process: one thread
//! per backend serving its vhost-user socket through the backends'
//! library entry points (`BlkServer`, `NetServer`), stopped through their stop handles
//! when a disk is detached or the domain ends.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use pvio_backends::blk::{BlkOptions, BlkServer};
use pvio_backends::net::{parse_mac, NetOptions, NetServer};
use pvio_backends::vhost_user::StopHandle;

use super::DomainError;

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
    stop: StopHandle,
    thread: Option<JoinHandle<()>>,
}

/// The backends of one domain, by guest device (`xvda`, `net0`).
#[derive(Debug, Default)]
pub struct Backends {
    running: Vec<Running>,
}

impl Backends {
    /// Starts a block backend for `device` on `socket`: the image is opened
    /// and the socket bound before this returns (so QEMU can connect at
    /// once), then a thread serves it.
    pub fn start_blk(
        &mut self,
        device: &str,
        socket: &Path,
        image: &Path,
        read_only: bool,
    ) -> Result<(), DomainError> {
        let mut opts = BlkOptions::new(socket, image);
        opts.read_only = read_only;
        // The guest finds the disk by its serial: the vdev name.
        opts.serial = Some(device.to_owned());
        let server = BlkServer::new(&opts).map_err(|e| DomainError::Backend {
            device: device.to_owned(),
            message: crate::cli::error_line(&e),
        })?;
        let stop = server.stop_handle();
        self.spawn(device, BackendKind::Blk, socket, stop, move || {
            server.run().map_err(|e| crate::cli::error_line(&e))
        })?;
        tracing::info!(
            "block backend {device} serves {} on {}",
            image.display(),
            socket.display()
        );
        Ok(())
    }

    /// Starts a net backend for `device` (`net0`) on `socket`, on tap
    /// `tap` (which must exist: the supervisor makes it and joins it to
    /// its bridge first).
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
        let mut opts = NetOptions::new(socket, tap);
        opts.mac = Some(parse_mac(mac).map_err(|e| fail(crate::cli::error_line(&e)))?);
        opts.mtu = mtu;
        let server = NetServer::new(&opts).map_err(|e| fail(crate::cli::error_line(&e)))?;
        let stop = server.stop_handle();
        self.spawn(device, BackendKind::Net, socket, stop, move || {
            server.run().map_err(|e| crate::cli::error_line(&e))
        })?;
        tracing::info!(
            "net backend {device} serves tap {tap} on {}",
            socket.display()
        );
        Ok(())
    }

    fn spawn(
        &mut self,
        device: &str,
        kind: BackendKind,
        socket: &Path,
        stop: StopHandle,
        serve: impl FnOnce() -> Result<(), String> + Send + 'static,
    ) -> Result<(), DomainError> {
        let name = device.to_owned();
        let thread = std::thread::Builder::new()
            .name(format!("backend-{device}"))
            .spawn(move || {
                if let Err(e) = serve() {
                    tracing::error!("backend {name}: {e}");
                }
            })
            .map_err(|e| DomainError::Backend {
                device: device.to_owned(),
                message: format!("cannot start its thread: {e}"),
            })?;
        self.running.push(Running {
            device: device.to_owned(),
            kind,
            socket: socket.to_owned(),
            stop,
            thread: Some(thread),
        });
        Ok(())
    }

    /// Whether a backend serves `device`.
    pub fn has(&self, device: &str) -> bool {
        self.running.iter().any(|r| r.device == device)
    }

    /// The devices served, with their kind and socket.
    pub fn list(&self) -> Vec<(String, BackendKind, PathBuf)> {
        self.running
            .iter()
            .map(|r| (r.device.clone(), r.kind, r.socket.clone()))
            .collect()
    }

    /// Stops the backend of `device` and waits for its thread; false if
    /// none serves it.
    pub fn stop(&mut self, device: &str) -> bool {
        let Some(i) = self.running.iter().position(|r| r.device == device) else {
            return false;
        };
        let mut r = self.running.remove(i);
        finish(&mut r);
        true
    }

    /// Stops every backend.
    pub fn stop_all(&mut self) {
        for r in &self.running {
            r.stop.stop();
        }
        for mut r in self.running.drain(..) {
            finish(&mut r);
        }
    }
}

fn finish(r: &mut Running) {
    r.stop.stop();
    if let Some(t) = r.thread.take() {
        if t.join().is_err() {
            tracing::error!("backend {} panicked", r.device);
        }
    }
    // The server removes its socket; make sure of it.
    let _ = std::fs::remove_file(&r.socket);
    tracing::info!("backend {} stopped", r.device);
}

impl Drop for Backends {
    fn drop(&mut self) {
        self.stop_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blk_backend_binds_serves_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
        let sock = dir.path().join("blk-xvda.sock");
        let mut b = Backends::default();
        b.start_blk("xvda", &sock, &img, false).unwrap();
        assert!(sock.exists());
        assert!(b.has("xvda"));
        let err = b.start_blk("xvdb", &sock, &img, false).unwrap_err();
        assert!(err.to_string().contains("xvdb"), "{err}");
        assert!(b.stop("xvda"));
        assert!(!sock.exists());
        assert!(!b.stop("xvda"));
    }

    #[test]
    fn a_missing_image_names_the_device() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Backends::default();
        let err = b
            .start_blk(
                "xvdb",
                &dir.path().join("s.sock"),
                &dir.path().join("nope.img"),
                false,
            )
            .unwrap_err();
        let line = err.to_string();
        assert!(line.starts_with("PV backend of xvdb: "), "{line}");
        assert!(line.contains("nope.img"), "{line}");
    }
}
