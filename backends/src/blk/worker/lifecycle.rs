//! The end of a ring or a connection for one queue worker: what is in
//! flight is finished (into the used ring when the driver keeps the ring,
//! dropped when the frontend is gone) and the queue's state is forgotten.

use vhost_user_backend::VringT;
use vm_memory::GuestAddressSpace;

use super::QueueWorker;
use crate::blk::polling::pollers;

impl QueueWorker {
    /// Finishes everything in flight. With `deliver`, finished requests go
    /// into the used ring (the ring is being stopped and the driver keeps
    /// it); without, they are dropped (the frontend is gone).
    pub fn drain(&mut self, deliver: bool) {
        let mut done = std::mem::take(&mut self.completions);
        loop {
            if let Err(e) = self.engine.wait_all(&mut done) {
                tracing::error!("queue {}: cannot wait for in-flight I/O: {e}", self.index);
                break;
            }
            if done.is_empty() {
                break;
            }
            let vring = if deliver { self.vring.clone() } else { None };
            let mem = self.mem.as_ref().map(|m| m.memory().into_inner());
            match (vring, mem) {
                (Some(vring), Some(mem)) => {
                    let mut guard = vring.get_mut();
                    let state = &mut *guard;
                    let mut used = false;
                    for c in done.drain(..) {
                        used |= self.complete(state, &mem, c);
                    }
                    if let Err(e) = self.engine.submit() {
                        tracing::error!("queue {}: cannot submit while draining: {e}", self.index);
                    }
                    if used {
                        self.signal(state);
                    }
                }
                _ => {
                    for c in done.drain(..) {
                        if let Some(slot) = usize::try_from(c.tag)
                            .ok()
                            .and_then(|i| self.slots.get_mut(i))
                        {
                            slot.mem = None;
                            slot.iovecs.clear();
                        }
                    }
                    self.free = (0..self.slots.len()).collect();
                }
            }
            done.append(&mut self.completions);
        }
        self.completions = done;
        self.completions.clear();
        self.throttled = false;
    }

    /// The driver stopped the ring (GET_VRING_BASE): finish what is in
    /// flight into the used ring and forget the broken state.
    pub fn stop(&mut self) {
        self.drain(true);
        self.forget_inflight();
        self.broken = false;
        (self.poller, self.idle_poller) = pollers();
        self.held_back.reset();
    }

    /// The frontend went away: finish what is in flight, drop it, and forget
    /// the connection.
    pub fn detach(&mut self) {
        self.drain(false);
        self.forget_inflight();
        self.slots.clear();
        self.free.clear();
        self.mem = None;
        self.vring = None;
        self.broken = false;
        (self.poller, self.idle_poller) = pollers();
        self.held_back.reset();
    }
}
