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
    /// Operations a unit test holds on the "device" until it releases
    /// them (`Some` while holding).
    #[cfg(test)]
    held: Option<Vec<Completion>>,
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
        #[cfg(test)]
        if let Some(held) = &mut self.held {
            held.push(Completion { tag, result });
            return Ok(());
        }
        self.done.push(Completion { tag, result });
        Ok(())
    }

    /// Completions waiting to be reaped.
    pub fn has_completions(&self) -> bool {
        !self.done.is_empty()
    }

    /// Keeps what is pushed from now on in flight until [`Self::release`].
    #[cfg(test)]
    pub fn hold(&mut self) {
        self.held.get_or_insert_with(Vec::new);
    }

    /// Completes everything held, and stops holding.
    #[cfg(test)]
    pub fn release(&mut self) {
        if let Some(mut held) = self.held.take() {
            self.done.append(&mut held);
        }
    }

    /// Hands out what completed since the last call.
    pub fn reap(&mut self, out: &mut Vec<Completion>) {
        out.append(&mut self.done);
    }

    /// Operations pushed and not yet reaped.
    pub fn in_flight(&self) -> usize {
        #[cfg(test)]
        if let Some(held) = &self.held {
            return self.done.len() + held.len();
        }
        self.done.len()
    }
}
