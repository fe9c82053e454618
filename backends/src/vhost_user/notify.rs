//! When a queue interrupts its driver.
//!
//! After used entries are added, the driver is interrupted unless
//! `VIRTIO_F_EVENT_IDX` says it has not asked yet (virtio 1.2 §2.7.10: the
//! `used_event` it published is ahead). That decision reads `used_event`
//! while the driver may be writing it; the driver then re-reads the used
//! index, and one of the two sides sees the other's write as long as both
//! order their store before their load. A guest whose barriers do not
//! reach the host CPU breaks that: QEMU's TCG with one vCPU emits no host
//! fence for the guest's `mfence` (nothing else runs its code), and pvio's
//! thread is another process. Both sides can then read the other's old
//! value: no interrupt, and a driver that sees no new entries waits for
//! ever on a queue that has finished everything.
//!
//! So a queue that goes idle (nothing in flight, nothing available) after
//! it held an interrupt back sends that interrupt anyway. A driver that did
//! see the entries gets one spurious interrupt per idle period, which virtio
//! drivers take (they find nothing new); one that did not is woken.
//!
//! Both backends use it: the block queues and the net queue pairs.
//!
//! It must not know about requests, frames or engines.

/// One queue's interrupt state: whether an interrupt was held back.
#[derive(Debug, Default)]
pub struct HeldBack(bool);

impl HeldBack {
    /// After used entries were added, with the `EVENT_IDX` decision
    /// (`needs_notification`; an error interrupts): whether to interrupt
    /// the driver now.
    pub fn after_used<E>(&mut self, needs: Result<bool, E>) -> bool {
        let now = !matches!(needs, Ok(false));
        self.0 = !now;
        now
    }

    /// The queue is about to sleep with nothing in flight: whether an
    /// interrupt held back since the last one sent must be sent now.
    pub fn at_idle(&mut self) -> bool {
        std::mem::take(&mut self.0)
    }

    /// An interrupt was sent for another reason: nothing is held back.
    pub fn sent(&mut self) {
        self.0 = false;
    }

    /// A new connection or a stopped ring: nothing is held back.
    pub fn reset(&mut self) {
        self.0 = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_back_until_idle_or_sent() {
        let mut h = HeldBack::default();
        assert!(!h.at_idle(), "nothing held back at first");
        assert!(h.after_used::<()>(Ok(true)));
        assert!(!h.at_idle());
        assert!(!h.after_used::<()>(Ok(false)));
        assert!(h.at_idle(), "sent at idle");
        assert!(!h.at_idle(), "once");
        assert!(!h.after_used::<()>(Ok(false)));
        assert!(h.after_used(Err(())), "an error interrupts");
        assert!(!h.at_idle());
        assert!(!h.after_used::<()>(Ok(false)));
        h.reset();
        assert!(!h.at_idle());
    }
}
