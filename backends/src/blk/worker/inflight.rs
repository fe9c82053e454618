//! A queue worker's part in inflight I/O tracking (see
//! `vhost_user/inflight.rs`): a chain is marked in the shared region when it
//! is popped and cleared when its used entry is written, and a ring that
//! starts on a region a previous backend used first does again what that
//! backend left in flight, in the order it popped it, then goes on with the
//! avail ring where that backend stopped.

use std::sync::Arc;

use crate::vhost_user::GuestMem;
use vhost_user_backend::VringState;
use virtio_queue::QueueT;
use vm_memory::GuestAddress;

use super::super::chain::TableChain;
use super::super::request::parse_descriptors;
use super::QueueWorker;
use crate::vhost_user::inflight::InflightQueue;
use crate::vhost_user::GM;

impl QueueWorker {
    /// The ring starts: take this queue's part of the connection's inflight
    /// region, and if a previous backend left chains in flight there, queue
    /// them for resubmission and set the ring's indexes as
    /// `vu_check_queue_inflights` does (next avail = used index + chains in
    /// flight).
    pub(super) fn start_ring(&mut self, state: &mut VringState<GM>, mem: &GuestMem) {
        self.resubmit.clear();
        self.inflight = None;
        let Some(region) = self.inflight_cell.current() else {
            return;
        };
        let Some(mut part) = InflightQueue::new(region, self.index) else {
            return;
        };
        if part.start_fresh() {
            self.inflight = Some(part);
            return;
        }
        let queue = state.get_queue_mut();
        let used_idx = match queue.used_idx(mem, std::sync::atomic::Ordering::Acquire) {
            Ok(i) => i.0,
            Err(e) => {
                self.needs_reset(&format!("cannot read the used ring: {e}"));
                return;
            }
        };
        let heads = part.recover(used_idx, queue.size());
        let in_flight = u16::try_from(heads.len()).unwrap_or(u16::MAX);
        queue.set_next_used(used_idx);
        queue.set_next_avail(used_idx.wrapping_add(in_flight));
        if !heads.is_empty() {
            tracing::info!(
                "queue {}: resubmitting {} request(s) a previous backend left in flight",
                self.index,
                heads.len()
            );
        }
        self.resubmit = heads.into();
        self.inflight = Some(part);
    }

    /// Reads the chain at `head` from the descriptor table into
    /// `self.request`. False if the queue broke.
    pub(super) fn parse_resubmitted(
        &mut self,
        state: &mut VringState<GM>,
        mem: &Arc<GuestMem>,
        head: u16,
    ) -> bool {
        let queue = state.get_queue();
        let table = GuestAddress(queue.desc_table());
        let chain = TableChain::new(mem, table, queue.size(), head);
        if let Err(e) = parse_descriptors(head, chain, mem, &self.disk, &mut self.request) {
            self.reject_chain(&e);
            return false;
        }
        true
    }

    /// Writes a used entry, bracketed by the inflight region's updates
    /// (`vu_queue_inflight_pre_put` / `_post_put`, a batch of one).
    pub(super) fn add_used(
        &mut self,
        state: &mut VringState<GM>,
        mem: &GuestMem,
        head: u16,
        len: u32,
    ) -> bool {
        if let Some(part) = &self.inflight {
            part.pre_put(head);
        }
        let queue = state.get_queue_mut();
        if let Err(e) = queue.add_used(mem, head, len) {
            self.needs_reset(&format!("cannot add to the used ring: {e}"));
            return false;
        }
        if let Some(part) = &self.inflight {
            part.post_put(head, queue.next_used());
        }
        true
    }

    /// The ring stops or the frontend goes: the next start looks at the
    /// region again.
    pub(super) fn forget_inflight(&mut self) {
        self.started = false;
        self.inflight = None;
        self.resubmit.clear();
    }
}
