//! One request handed to the engine and not finished yet: where its status
//! goes, what remains to transfer, and the guest memory it points into.
//!
//! It must not know about queues, rings or engines.

use std::sync::Arc;

use crate::vhost_user::GuestMem;
use vm_memory::GuestAddress;

/// What a slot's operation is, for completion handling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SlotOp {
    Read,
    Write {
        dsync: bool,
    },
    Flush,
    Discard,
    /// `FALLOC_FL_ZERO_RANGE`.
    ZeroRange,
    /// Punch then allocate: write-zeroes where ZERO_RANGE is not supported
    /// (tmpfs) or UNMAP was allowed (then the allocate step is skipped).
    ZeroPunch {
        allocate: bool,
    },
    /// The allocate step after a punch.
    ZeroAllocate,
}

/// A request handed to the engine and not finished yet.
#[derive(Debug)]
pub(super) struct Slot {
    pub(super) head: u16,
    pub(super) status: GuestAddress,
    pub(super) used_len_ok: u32,
    pub(super) op: SlotOp,
    pub(super) offset: u64,
    /// Bytes still to transfer (reads, writes) or the fallocate length.
    pub(super) remaining: u64,
    pub(super) iovecs: Vec<libc::iovec>,
    /// First iovec not yet transferred.
    pub(super) first: usize,
    /// The guest memory the iovecs point into: kept mapped until the engine
    /// is done with them, even if the frontend sends a new memory table.
    pub(super) mem: Option<Arc<GuestMem>>,
}

// SAFETY: the iovecs are host addresses into the mapping held by `mem` in the
// same slot; a slot is only used by the thread that holds the queue's lock.
unsafe impl Send for Slot {}

impl Slot {
    pub(super) fn empty() -> Self {
        Self {
            head: 0,
            status: GuestAddress(0),
            used_len_ok: 1,
            op: SlotOp::Flush,
            offset: 0,
            remaining: 0,
            iovecs: Vec::new(),
            first: 0,
            mem: None,
        }
    }

    /// Skips `n` transferred bytes in the iovecs (after a short transfer).
    pub(super) fn advance(&mut self, mut n: u64) {
        self.offset = self.offset.saturating_add(n);
        self.remaining = self.remaining.saturating_sub(n);
        while let Some(v) = self.iovecs.get_mut(self.first) {
            let len = u64::try_from(v.iov_len).unwrap_or(u64::MAX);
            if n < len {
                let k = usize::try_from(n).unwrap_or(0);
                v.iov_base = v.iov_base.cast::<u8>().wrapping_add(k).cast();
                v.iov_len -= k;
                return;
            }
            n -= len;
            self.first += 1;
        }
    }
}
