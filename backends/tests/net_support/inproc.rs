//! The net backend in the test process: a `NetServer` on a tap inside a
//! namespace, served on its own thread, stopped and joined on drop.

#![allow(dead_code)]

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pvio_backends::net::{NetDevice, NetError, NetOptions, NetServer, StatsSnapshot};
use pvio_backends::vhost_user::StopHandle;
use pvio_net_driver::{DriverOptions, NetDriver};

use super::NetNs;

/// How long a test waits for anything.
pub const T: Duration = Duration::from_secs(5);

/// A backend serving a tap in a namespace, stopped and joined on drop.
pub struct Backend {
    pub stop: StopHandle,
    pub device: Arc<NetDevice>,
    pub thread: Option<JoinHandle<Result<(), NetError>>>,
    pub socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Backend {
    pub fn start(
        ns: &NetNs,
        tap: &str,
        tweak: impl FnOnce(&mut NetOptions) + Send + 'static,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("net.sock");
        let mut opts = NetOptions::new(&socket, tap);
        tweak(&mut opts);
        let server = ns.run(move || NetServer::new(&opts).expect("backend starts"));
        let stop = server.stop_handle();
        let device = Arc::clone(server.device());
        let thread = Some(std::thread::spawn(move || server.run()));
        Self {
            stop,
            device,
            thread,
            socket,
            _dir: dir,
        }
    }

    pub fn connect(&self, opts: &DriverOptions) -> NetDriver {
        NetDriver::connect(&self.socket, opts).expect("driver connects")
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.device.stats()
    }

    /// Waits until `f(stats)` holds.
    pub fn wait_stats(&self, what: &str, f: impl Fn(&StatsSnapshot) -> bool) -> StatsSnapshot {
        let end = Instant::now() + T;
        loop {
            let s = self.stats();
            if f(&s) {
                return s;
            }
            assert!(Instant::now() < end, "timed out waiting for {what}: {s:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let r = t.join().expect("server thread");
            if !std::thread::panicking() {
                r.expect("server ends cleanly");
            }
        }
    }
}
