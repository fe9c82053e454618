//! pvio-net-driver: a minimal virtio-net driver that speaks vhost-user to a
//! net backend with no VM. Guest memory is a memfd shared with the backend,
//! rings are laid out with `pvio-frontend-protocol`, and frames go in and out
//! as a guest's driver would send them. It is the guest of `pvio bench net`
//! (`pvio-bench`) and of the net backend's socket-level and unit tests; it is
//! not a VMM.
//!
//! It must not know pvio's backends: it drives one from the outside, over
//! its socket, as QEMU would, so that it depends on the wire formats and
//! rust-vmm's frontend only and `pvio-backends` can take it as a
//! dev-dependency without a cycle. The `pvio` binary links it only through
//! `pvio-bench`.
//!
//! The handshake is QEMU's order: owner, features, protocol features, queue
//! count, config, memory table, then each ring's size, addresses, base,
//! call and kick eventfds, and enable.
//!
//! | file | role |
//! | --- | --- |
//! | `lib.rs` | options, errors, the driver's state and accessors |
//! | `setup.rs` | the vhost-user handshake and the memfd guest memory |
//! | `vq.rs` | one split virtqueue as a driver sees it |
//! | `tx.rs` | queueing frames, reclaiming transmit chains |
//! | `rx.rs` | posting receive buffers, taking delivered frames |
//! | `ctrl.rs` | control commands |

mod ctrl;
mod rx;
mod setup;
mod tx;
mod vq;

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use pvio_frontend_protocol::features::VIRTIO_F_EVENT_IDX;
use pvio_frontend_protocol::net::NetConfig;
pub use pvio_frontend_protocol::net::NetHdr;
use vhost::vhost_user::Frontend;
use vhost::VhostBackend;
use vm_memory::GuestMemoryMmap;

pub use vq::{Buf, DriverQueue};

/// Errors of the test driver.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// A vhost-user request failed.
    #[error("vhost-user {0}")]
    Vhost(String),
    /// Guest memory could not be made or accessed.
    #[error("guest memory: {0}")]
    Memory(String),
    /// A system call failed.
    #[error("system call")]
    Io(#[source] io::Error),
    /// The backend said something unexpected.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Nothing came in time.
    #[error("timed out")]
    Timeout,
}

impl From<vm_memory::GuestMemoryError> for DriverError {
    fn from(e: vm_memory::GuestMemoryError) -> Self {
        Self::Memory(e.to_string())
    }
}

fn vhost<T>(what: &str, r: Result<T, vhost::Error>) -> Result<T, DriverError> {
    r.map_err(|e| DriverError::Vhost(format!("{what}: {e}")))
}

/// How to set the device up.
#[derive(Debug, Clone)]
pub struct DriverOptions {
    /// Queue pairs to use.
    pub queue_pairs: u16,
    /// Entries per queue.
    pub queue_size: u16,
    /// Bytes per receive buffer (one descriptor each).
    pub rx_buf_len: u32,
    /// Bytes per transmit buffer slot.
    pub tx_buf_len: u32,
    /// Features wanted (kept where the device offers them).
    pub features: u64,
}

impl Default for DriverOptions {
    fn default() -> Self {
        Self {
            queue_pairs: 1,
            queue_size: 256,
            rx_buf_len: 2048,
            tx_buf_len: 2048,
            features: u64::MAX,
        }
    }
}

/// A frame the device delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Its header.
    pub hdr: NetHdr,
    /// The frame.
    pub frame: Vec<u8>,
    /// Receive buffers it took.
    pub buffers: usize,
}

/// A driver connected to a backend.
pub struct NetDriver {
    fe: Frontend,
    mem: GuestMemoryMmap,
    queues: Vec<DriverQueue>,
    acked: u64,
    hdr_len: usize,
    config: NetConfig,
    pairs: u16,
    /// Receive buffers the device handed back without a frame.
    empty_rx: usize,
}

impl NetDriver {
    /// The negotiated features.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// The config space the device gave.
    pub fn config(&self) -> NetConfig {
        self.config
    }

    /// The virtio-net header length in use.
    pub fn hdr_len(&self) -> usize {
        self.hdr_len
    }

    /// Guest memory (to plant malformed chains in tests).
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// The queue `i` (`2p` receive, `2p + 1` transmit, last the control).
    pub fn queue(&mut self, i: usize) -> Result<&mut DriverQueue, DriverError> {
        self.queues
            .get_mut(i)
            .ok_or_else(|| DriverError::Protocol(format!("no queue {i}")))
    }

    /// Adds a chain to queue `q` without notifying.
    pub fn add_chain(&mut self, q: usize, bufs: &[Buf]) -> Result<Option<u16>, DriverError> {
        let mem = &self.mem;
        let queue = self
            .queues
            .get_mut(q)
            .ok_or_else(|| DriverError::Protocol(format!("no queue {q}")))?;
        queue.add(mem, bufs)
    }

    /// Notifies the device about queue `q`.
    pub fn kick(&self, q: usize) -> Result<(), DriverError> {
        self.queues
            .get(q)
            .ok_or_else(|| DriverError::Protocol(format!("no queue {q}")))?
            .notify()
    }

    /// Receive buffers the device handed back without a frame (too short
    /// for a header and an Ethernet header, as Linux counts them), reposted.
    pub fn empty_rx(&self) -> usize {
        self.empty_rx
    }

    /// Notifies the device about queue `q` if it asked to be, for what was
    /// published since available index `old`.
    pub fn kick_if_needed(&self, q: usize, old: u16) -> Result<(), DriverError> {
        let queue = self
            .queues
            .get(q)
            .ok_or_else(|| DriverError::Protocol(format!("no queue {q}")))?;
        if queue.needs_kick(&self.mem, old, self.acked & VIRTIO_F_EVENT_IDX != 0)? {
            queue.notify()?;
        }
        Ok(())
    }

    /// Waits up to `timeout` for queue `q`'s call eventfd.
    pub fn wait_call(&self, q: usize, timeout: Duration) -> Result<bool, DriverError> {
        let call = &self
            .queues
            .get(q)
            .ok_or_else(|| DriverError::Protocol("no queue".into()))?
            .call;
        let mut pfd = libc::pollfd {
            fd: call.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `pfd` is one live pollfd for the call.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n > 0 {
            let _ = call.read();
        }
        Ok(n > 0)
    }

    /// With EVENT_IDX, asks queue `q` for no interrupt (its `used_event`
    /// one behind the used elements seen).
    pub fn hold_interrupts(&self, q: usize) -> Result<(), DriverError> {
        self.queues
            .get(q)
            .ok_or_else(|| DriverError::Protocol(format!("no queue {q}")))?
            .hold_used_event(&self.mem)
    }

    /// Sends `VHOST_USER_GET_VRING_BASE` for every queue (stops the rings),
    /// as a frontend does before it goes away.
    pub fn stop(&mut self) -> Result<(), DriverError> {
        for i in 0..self.queues.len() {
            vhost("GET_VRING_BASE", self.fe.get_vring_base(i))?;
        }
        Ok(())
    }
}
