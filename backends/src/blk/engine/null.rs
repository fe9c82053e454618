//! The null engine: every operation succeeds at once and moves no data.
//! It measures the protocol floor (ring handling, notifications) in the
//! benchmark; it is never what a guest's disk runs on.
//!
//! It must not know about guests or virtio.

use std::io;

use super::{Completion, Op};

/// Completes without I/O.
#[derive(Debug, Default)]
pub struct NullEngine {
    done: Vec<Completion>,
}

impl NullEngine {
    /// A new engine.
    pub fn new() -> Self {
        Self::default()
    }

    /// Completes `op` at once with its full length.
    ///
    /// # Safety
    ///
    /// A read or write's `iov` must point to `iovcnt` readable iovecs (the
    /// memory they describe is not touched).
    pub unsafe fn push(&mut self, tag: u64, op: Op) -> io::Result<()> {
        // SAFETY: forwarded contract: only the iovec array is read.
        let len = unsafe { op.transfer_len() };
        let result = i32::try_from(len).unwrap_or(-libc::EOVERFLOW);
        self.done.push(Completion { tag, result });
        Ok(())
    }

    /// Hands out what completed since the last call.
    pub fn reap(&mut self, out: &mut Vec<Completion>) {
        out.append(&mut self.done);
    }

    /// Operations completed and not yet reaped.
    pub fn in_flight(&self) -> usize {
        self.done.len()
    }
}
