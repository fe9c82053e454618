//! The I/O engines behind a block queue: io_uring (batched, the default), a
//! synchronous fallback used only when io_uring cannot be set up, and a null
//! engine that completes every request without I/O (the protocol floor the
//! benchmark measures).
//!
//! One engine belongs to one queue worker and is only used from its thread.
//! An engine moves bytes between host addresses and the image; it must not
//! know about guests, descriptor chains or virtio.

mod mapped;
mod null;
mod sync;
mod uring;

use std::fs::File;
use std::io;
use std::os::unix::io::RawFd;
use std::sync::Arc;

pub use null::NullEngine;
pub use sync::SyncEngine;
pub use uring::UringEngine;

/// Which engine a device uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EngineKind {
    /// io_uring, falling back to synchronous I/O (said once in the log) when
    /// io_uring cannot be set up.
    #[default]
    Auto,
    /// Synchronous system calls on the queue thread.
    Sync,
    /// No I/O at all: every request succeeds at once (benchmarks only).
    Null,
}

/// One operation on the image.
///
/// `iov` points to `iovcnt` iovecs describing host memory (guest memory
/// mapped into this process); see [`Engine::push`] for how long it must stay
/// valid.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    /// `preadv` at `offset`.
    Read {
        /// Byte offset in the image.
        offset: u64,
        /// The iovec array.
        iov: *const libc::iovec,
        /// Number of iovecs.
        iovcnt: u32,
    },
    /// `pwritev` at `offset`; with `dsync` the data is durable on completion
    /// (write-through cache mode).
    Write {
        /// Byte offset in the image.
        offset: u64,
        /// The iovec array.
        iov: *const libc::iovec,
        /// Number of iovecs.
        iovcnt: u32,
        /// `RWF_DSYNC`.
        dsync: bool,
    },
    /// `fdatasync`.
    Flush,
    /// `fallocate(mode)` over `len` bytes at `offset`.
    Fallocate {
        /// `FALLOC_FL_*` flags.
        mode: i32,
        /// Byte offset in the image.
        offset: u64,
        /// Length in bytes.
        len: u64,
    },
}

impl Op {
    /// Bytes a read or write transfers when it completes in full; 0 for the
    /// others.
    ///
    /// # Safety
    ///
    /// For reads and writes, `iov` must point to `iovcnt` readable iovecs.
    pub unsafe fn transfer_len(&self) -> usize {
        match *self {
            Op::Read { iov, iovcnt, .. } | Op::Write { iov, iovcnt, .. } => {
                let Ok(n) = usize::try_from(iovcnt) else {
                    return 0;
                };
                if n == 0 || iov.is_null() {
                    return 0;
                }
                // SAFETY: the caller guarantees `iov` points to `iovcnt`
                // readable iovecs.
                let iovs = unsafe { std::slice::from_raw_parts(iov, n) };
                iovs.iter().map(|v| v.iov_len).sum()
            }
            Op::Flush | Op::Fallocate { .. } => 0,
        }
    }
}

/// The result of one operation: bytes transferred, or `-errno`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The tag given to [`Engine::push`].
    pub tag: u64,
    /// Bytes transferred (reads and writes), 0 (others), or `-errno`.
    pub result: i32,
}

/// The engine of one queue.
#[derive(Debug)]
pub enum Engine {
    /// io_uring.
    Uring(Box<UringEngine>),
    /// Synchronous fallback.
    Sync(SyncEngine),
    /// No I/O.
    Null(NullEngine),
}

impl Engine {
    /// Makes the engine of `kind` for a queue of `depth` requests.
    pub fn new(kind: EngineKind, file: Arc<File>, depth: u32) -> Self {
        match kind {
            EngineKind::Null => Engine::Null(NullEngine::new()),
            EngineKind::Sync => Engine::Sync(SyncEngine::new(file)),
            EngineKind::Auto => match UringEngine::new(Arc::clone(&file), depth) {
                Ok(e) => Engine::Uring(Box::new(e)),
                Err(e) => {
                    warn_fallback_once(&e);
                    Engine::Sync(SyncEngine::new(file))
                }
            },
        }
    }

    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Engine::Uring(_) => "io_uring",
            Engine::Sync(_) => "sync",
            Engine::Null(_) => "null",
        }
    }

    /// Queues `op`; it starts at the latest on the next [`submit`](Self::submit).
    ///
    /// # Safety
    ///
    /// The iovec array of a read or write and the memory it describes must
    /// stay valid (mapped, and not otherwise accessed as Rust references)
    /// until this engine returns the completion for `tag` from
    /// [`reap`](Self::reap), [`wait_all`](Self::wait_all) or the engine is
    /// dropped after [`wait_all`](Self::wait_all).
    pub unsafe fn push(&mut self, tag: u64, op: Op) -> io::Result<()> {
        match self {
            // SAFETY: forwarded contract.
            Engine::Uring(e) => unsafe { e.push(tag, op) },
            // SAFETY: forwarded contract.
            Engine::Sync(e) => unsafe { e.push(tag, op) },
            // SAFETY: forwarded contract.
            Engine::Null(e) => unsafe { e.push(tag, op) },
        }
    }

    /// Starts what was pushed (one system call for the batch).
    pub fn submit(&mut self) -> io::Result<()> {
        match self {
            Engine::Uring(e) => e.submit(),
            Engine::Sync(_) | Engine::Null(_) => Ok(()),
        }
    }

    /// Moves finished operations into `out`.
    pub fn reap(&mut self, out: &mut Vec<Completion>) {
        match self {
            Engine::Uring(e) => e.reap(out),
            Engine::Sync(e) => e.reap(out),
            Engine::Null(e) => e.reap(out),
        }
    }

    /// Waits until every pushed operation has finished and moves them into
    /// `out`.
    pub fn wait_all(&mut self, out: &mut Vec<Completion>) -> io::Result<()> {
        match self {
            Engine::Uring(e) => e.wait_all(out),
            Engine::Sync(e) => {
                e.reap(out);
                Ok(())
            }
            Engine::Null(e) => {
                e.reap(out);
                Ok(())
            }
        }
    }

    /// Whether finished operations wait to be reaped (cheap: no system
    /// call).
    pub fn has_completions(&mut self) -> bool {
        match self {
            Engine::Uring(e) => e.has_completions(),
            Engine::Sync(e) => e.in_flight() > 0,
            Engine::Null(e) => e.has_completions(),
        }
    }

    /// Operations pushed and not yet reaped.
    pub fn in_flight(&self) -> usize {
        match self {
            Engine::Uring(e) => e.in_flight(),
            Engine::Sync(e) => e.in_flight(),
            Engine::Null(e) => e.in_flight(),
        }
    }

    /// The eventfd that becomes readable when operations finish, for engines
    /// that finish them in the background.
    pub fn event_fd(&self) -> Option<RawFd> {
        match self {
            Engine::Uring(e) => Some(e.event_fd()),
            Engine::Sync(_) | Engine::Null(_) => None,
        }
    }

    /// Resets the completion eventfd (after everything was reaped), so that
    /// completions already handled do not wake the thread again.
    pub fn clear_event(&mut self) {
        if let Engine::Uring(e) = self {
            e.clear_event();
        }
    }
}

/// Says once per process that io_uring is not available.
fn warn_fallback_once(err: &io::Error) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tracing::warn!("io_uring is not available ({err}); block I/O falls back to synchronous system calls on the queue threads");
    });
}
