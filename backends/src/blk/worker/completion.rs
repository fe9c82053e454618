//! What a queue worker does with a finished operation: a short transfer
//! or a second step (write-zeroes falling back to a punch, then an
//! allocation) goes back to the engine, anything else finishes its
//! request: the status written through the mapping the request was parsed
//! against, the chain put in the used ring.
//!
//! It must not know how the engine did the operation.

use vhost_user_backend::VringState;
use vm_memory::Bytes;

use pvio_frontend_protocol::blk::{VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK};

use super::QueueWorker;
use crate::blk::engine::Completion;
use crate::blk::metrics::GuestError;
use crate::blk::slot::SlotOp;
use crate::vhost_user::dirty_log::mark_iovecs;
use crate::vhost_user::{GuestMem, GM};

impl QueueWorker {
    /// Handles every finished operation. True if something went into the
    /// used ring.
    pub(super) fn reap(&mut self, state: &mut VringState<GM>, mem: &GuestMem) -> bool {
        let mut done = std::mem::take(&mut self.completions);
        self.engine.reap(&mut done);
        let mut used = false;
        // Resubmissions (short transfers, second steps) may add completions.
        while !done.is_empty() {
            for c in done.drain(..) {
                used |= self.complete(state, mem, c);
            }
            if let Err(e) = self.engine.submit() {
                self.metrics.record(
                    GuestError::IoError,
                    self.index,
                    &format_args!("io_uring submit: {e}"),
                );
            }
            done.append(&mut self.completions);
            self.engine.reap(&mut done);
        }
        self.completions = done;
        if self.engine.in_flight() == 0 {
            self.engine.clear_event();
        }
        used
    }

    /// One finished operation: continue it, or finish its request.
    pub(super) fn complete(
        &mut self,
        state: &mut VringState<GM>,
        mem: &GuestMem,
        c: Completion,
    ) -> bool {
        let Some(idx) = usize::try_from(c.tag)
            .ok()
            .filter(|&i| i < self.slots.len())
        else {
            return false;
        };
        let index = self.index;
        let Some(slot) = self.slots.get_mut(idx) else {
            return false;
        };
        let status = match (slot.op, c.result) {
            (SlotOp::Read | SlotOp::Write { .. }, n) if n > 0 => {
                let n = u64::try_from(n).unwrap_or(0);
                if slot.op == SlotOp::Read {
                    // The kernel wrote these bytes, not vm-memory: log them
                    // for a migration (a branch when none runs).
                    if let Some(m) = slot.mem.as_deref() {
                        let iov = slot.iovecs.get(slot.first..).unwrap_or_default();
                        mark_iovecs(m, iov, usize::try_from(n).unwrap_or(usize::MAX));
                    }
                }
                if n < slot.remaining {
                    slot.advance(n);
                    self.start(idx);
                    return false;
                }
                VIRTIO_BLK_S_OK
            }
            (SlotOp::Read | SlotOp::Write { .. }, 0) if slot.remaining > 0 => {
                self.metrics
                    .record(GuestError::IoError, index, &"no progress (end of image?)");
                VIRTIO_BLK_S_IOERR
            }
            // Discard is a hint: a device that cannot deallocate may ignore it.
            (SlotOp::Discard, r) if r == -libc::EOPNOTSUPP => VIRTIO_BLK_S_OK,
            (SlotOp::ZeroRange, r) if r == -libc::EOPNOTSUPP || r == -libc::EINVAL => {
                slot.op = SlotOp::ZeroPunch { allocate: true };
                self.start(idx);
                return false;
            }
            (SlotOp::ZeroPunch { allocate: true }, 0) => {
                slot.op = SlotOp::ZeroAllocate;
                self.start(idx);
                return false;
            }
            (op, r) if r < 0 => {
                let err = std::io::Error::from_raw_os_error(-r);
                self.metrics.record(
                    GuestError::IoError,
                    index,
                    &format_args!("{op:?} at {}: {err}", slot.offset),
                );
                VIRTIO_BLK_S_IOERR
            }
            _ => VIRTIO_BLK_S_OK,
        };
        let len = if status == VIRTIO_BLK_S_OK {
            slot.used_len_ok
        } else {
            1
        };
        let (head, status_addr) = (slot.head, slot.status);
        // Write the status through the mapping the request was parsed
        // against, then release it.
        let slot_mem = slot.mem.take();
        slot.iovecs.clear();
        self.free.push(idx);
        if let Some(m) = slot_mem.as_deref() {
            if let Err(e) = m.write_obj(status, status_addr) {
                self.metrics.record(GuestError::BadAddress, index, &e);
            }
        }
        if self.broken {
            return false;
        }
        self.add_used(state, mem, head, len)
    }
}
