//! The vhost-user plumbing every pvio backend shares: a Unix socket served to
//! one frontend (QEMU, Cloud Hypervisor, crosvm, libblkio) at a time, the next
//! one accepted when it disconnects, a [`StopHandle`] for the code that started
//! the server, and SIGTERM/SIGINT turned into a clean stop.
//!
//! It is built on rust-vmm's `vhost-user-backend` (`VhostUserDaemon`): one
//! daemon, with one worker thread per queue, is made for each connection and
//! torn down when the frontend goes away. Every connection passes through a
//! relay that checks the control messages (memory regions against their
//! files, queue sizes, ring addresses) before the daemon acts on them.
//!
//! Imports point one way: `server` uses `relay`, which uses `validate`,
//! `inflight` and `dirty_log` (where the guest memory types live); the
//! relay never calls back into the server. `signal` uses `stop`.
//!
//! This module must not know about any device type (block, net): a device
//! plugs in through the [`Device`] trait.

pub mod dirty_log;
pub mod inflight;
pub mod notify;
pub mod poll;
mod relay;
mod server;
mod signal;
mod stop;
pub mod validate;

pub use dirty_log::{GuestMem, LogBitmap, GM};
pub use server::{Device, Listen, Server, ServerError, Vring, VringHandler};
pub use signal::{block_stop_signals, stop_on_signals, SignalError};
pub use stop::StopHandle;
pub use validate::Refusal;
