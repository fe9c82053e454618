//! The PV NIC: a virtio-net device served over vhost-user, moving frames
//! between the guest's split rings and a host tap device.
//!
//! The folder has fixed roles:
//!
//! | file | role |
//! | --- | --- |
//! | `device.rs` | the `VhostUserBackend`: features, config space, events to workers |
//! | `queue_pair/` | one queue pair's worker: its state, its events, when the tap is polled |
//! | `queue_pair/serve.rs` | one wake-up: transmit, receive, one interrupt, poll, sleep |
//! | `queue_pair/rx.rs` / `tx.rs` | receive (tap to guest) and transmit (guest to tap) |
//! | `ctrl.rs` | the control queue (`VQ_PAIRS_SET`) |
//! | `shared.rs` | what a queue pair shares with the device and the control queue |
//! | `tap/` | open or create the tap, offloads, header length, MTU, link up; persistent taps |
//! | `host/` | links over rtnetlink: look up, MTU, up, join a bridge, delete, in any namespace |
//! | `sys.rs` | the raw ioctls and vectored reads / writes behind the tap |
//! | `offload.rs` | features offered, guest features to `TUNSETOFFLOAD`, frame limits |
//! | `chain.rs` | descriptor chains as checked guest memory segments and iovecs |
//! | `merge.rs` | mergeable receive buffers: how a frame spreads over chains |
//! | `hdr.rs` | the transmit header checked against the negotiated features |
//! | `config.rs` | options, MAC address, feature set, config space |
//! | `stats.rs` | per queue pair counters, rate-limited guest warnings |
//!
//! The no-VM driver its tests use is `pvio-net-driver`; `pvio bench net` is
//! in `pvio-bench`.
//!
//! Imports point one way: `device` uses `queue_pair` and `ctrl`, both of
//! which use `shared`; below them sit `tap`, `sys`, `offload`, `chain`,
//! `merge`, `hdr`, `stats` and `config`, which use none of the modules above.
//!
//! This module must not know about domains, QEMU command lines or configs:
//! [`NetServer`] serves one tap on one socket.

pub mod chain;
pub mod config;
mod ctrl;
pub mod device;
pub mod hdr;
pub mod host;
pub mod merge;
pub mod offload;
mod queue_pair;
mod shared;
pub mod stats;
mod sys;
pub mod tap;

use std::sync::Arc;

pub use config::{parse_mac, ConfigError, NetOptions, TapSource};
pub use device::{NetBackend, NetDevice};
pub use stats::StatsSnapshot;
pub use tap::{Tap, TapError, TapQueue};

use crate::sandbox::{self, Role, SandboxError, SandboxOptions};
use crate::vhost_user::{stop_on_signals, Server, ServerError, SignalError, StopHandle};

/// Errors of the net backend, each one line with what to do next.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// An option is out of range.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The tap cannot be used.
    #[error(transparent)]
    Tap(#[from] TapError),
    /// The device's eventfds cannot be made.
    #[error("cannot create the queue pairs' eventfds")]
    Setup(#[source] std::io::Error),
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
    /// An inherited tap fd cannot be duplicated.
    #[error("cannot take over the --tap-fd descriptors")]
    TapFd(#[source] std::io::Error),
}

/// A net device bound to its socket, ready to [`run`](Self::run).
pub struct NetServer {
    server: Server<Arc<NetDevice>>,
    device: Arc<NetDevice>,
}

impl NetServer {
    /// Checks the options, opens (or creates) the tap, sets its MTU and
    /// brings it up, then binds the socket: every error a user can cause is
    /// reported here, before any frontend can connect. Inherited fds are
    /// duplicated (close-on-exec); a tap given by fds is only reconfigured
    /// where it differs (its MTU, its link state), which needs no privilege
    /// when the supervisor set both.
    pub fn new(opts: &NetOptions) -> Result<Self, NetError> {
        opts.check()?;
        let tap = match &opts.tap {
            TapSource::Name(name) => Tap::open(name, opts.queue_pairs)?,
            TapSource::Fds(fds) => {
                let dups = fds
                    .iter()
                    .map(std::os::fd::OwnedFd::try_clone)
                    .collect::<std::io::Result<Vec<_>>>()
                    .map_err(NetError::TapFd)?;
                Tap::from_fds(dups)?
            }
        };
        if let Some(mtu) = opts.mtu {
            if tap.mtu()? != mtu {
                tap.set_mtu(mtu)?;
            }
        }
        let mtu = tap.mtu()?;
        tap.set_up()?;
        let mac = opts.mac_or_default(tap.name());
        let features = config::features(tap.offload_support());
        let cfg = config::config_space(mac, opts.queue_pairs, mtu);
        let tap_name = tap.name().to_owned();
        let device = Arc::new(
            NetDevice::new(tap, features, cfg, opts.queue_size, mtu).map_err(NetError::Setup)?,
        );
        let server = Server::listen("pvio-net", &opts.listen, Arc::clone(&device))?;
        tracing::info!(
            "serving tap {tap_name} (MTU {mtu}, MAC {}) with {} queue pair(s) of {}",
            pvio_frontend_protocol::net::format_mac(&mac),
            opts.queue_pairs,
            opts.queue_size,
        );
        Ok(Self { server, device })
    }

    /// Stops [`run`](Self::run) from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.server.stop_handle()
    }

    /// The device (tap, features, counters).
    pub fn device(&self) -> &Arc<NetDevice> {
        &self.device
    }

    /// Serves frontends until stopped; the socket is removed on return (the
    /// tap too, if pvio created it, once the last reference is dropped).
    pub fn run(self) -> Result<(), NetError> {
        self.server.run()?;
        Ok(())
    }
}

/// What `pvio backend net` does: checks, opens, enters the sandbox (unless
/// `sandbox` is `None`), then serves in the calling thread until SIGTERM or
/// SIGINT. Call it before starting other threads (see
/// [`sandbox::enter`] and [`stop_on_signals`]).
pub fn serve_until_signal(
    opts: &NetOptions,
    sandbox: Option<&SandboxOptions>,
) -> Result<(), NetError> {
    crate::vhost_user::block_stop_signals()?;
    let mut server = NetServer::new(opts)?;
    if let Some(s) = sandbox {
        server.server.leave_socket_file();
        sandbox::enter(Role::Net, s)?;
    }
    stop_on_signals(server.stop_handle())?;
    server.run()
}

/// An error and its causes on one line.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        line.push_str(": ");
        line.push_str(&s.to_string());
        source = s.source();
    }
    line
}
