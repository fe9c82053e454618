//! One wake-up of a queue pair's thread, whatever woke it (a transmit
//! kick, the tap, a receive kick, the pair's wake eventfd):
//!
//! 1. send what the guest queued, with its kicks off;
//! 2. deliver what the tap holds, and, when frames were just sent, look at
//!    the tap at once: a local peer's answer (an ICMP echo reply, a TCP ACK)
//!    is queued before `writev` returns;
//! 3. interrupt the guest for the transmit queue only then, so that one
//!    interrupt covers both queues (with INTx every interrupt is a trip
//!    through the VMM's main loop and the guest's handler; sending the
//!    transmit interrupt first made a ping cost two);
//! 4. poll the transmit ring and the tap for a few microseconds (the block
//!    backend's adaptive [`Poller`]): work that comes in the window costs
//!    neither a guest kick nor a thread wake-up;
//! 5. turn the guest's transmit kicks on again, look once more, send the
//!    interrupts `EVENT_IDX` held back (`vhost_user::notify`), and sleep.
//!
//! `PVIO_NET_NO_POLL` in the environment turns step 4 off (for measuring
//! what polling buys; the block backend's `PVIO_BLK_NO_POLL` is its own).

use std::sync::atomic::Ordering;

use vhost_user_backend::VringT;
use virtio_queue::QueueT;
use vm_memory::GuestAddressSpace;

use super::QueuePair;
use crate::net::stats::{guest_warn, PairStats};
use crate::vhost_user::poll::Poller;
use crate::vhost_user::Vring;

/// Most rounds per wake-up: then the thread goes back to its epoll loop, so
/// that a steady flood of frames cannot keep it from its other events (the
/// control queue, the stop request).
const MAX_ROUNDS: usize = 16;

/// The poller of a new queue pair, unless polling is turned off.
pub(super) fn poller() -> Option<Poller> {
    if std::env::var_os("PVIO_NET_NO_POLL").is_some() {
        None
    } else {
        Some(Poller::new())
    }
}

impl QueuePair {
    /// Serves both queues until there is nothing left to do (see the
    /// module's doc). `rx_due`: the tap or a receive kick woke the thread.
    pub(super) fn serve(&mut self, rx: &Vring, tx: &Vring, mut rx_due: bool) {
        // Rounds in a row that moved nothing: a ring that looks busy yet
        // yields nothing (a broken available index) must not keep the
        // thread spinning.
        let mut idle = 0;
        for _ in 0..MAX_ROUNDS {
            let sent = self.transmit(tx);
            let mut received = 0;
            if rx_due || (sent.done > 0 && self.tap_ready()) {
                received = self.receive(rx);
            }
            if sent.notify {
                self.signal_tx(tx);
            }
            if sent.done == 0 && received == 0 {
                idle += 1;
                if idle > 1 {
                    self.tx_kicks_on(tx);
                    self.before_sleep(rx, tx);
                    return;
                }
            } else {
                idle = 0;
            }
            if sent.more {
                // Budget spent: the wake eventfd brings the thread back
                // after its other events (kicks stay off until then).
                self.shared.wake();
                return;
            }
            if self.poll_for_work(tx) {
                rx_due = self.tap_ready();
                continue;
            }
            if !self.tx_kicks_on(tx) {
                self.before_sleep(rx, tx);
                return;
            }
            rx_due = false;
        }
        // Out of rounds with work left: kicks on, and come back after the
        // other events (a readable tap brings epoll back by itself).
        if self.tx_kicks_on(tx) {
            self.shared.wake();
        }
    }

    /// The pair is about to sleep with nothing to do: interrupts that
    /// `EVENT_IDX` held back are sent now, so that a driver whose
    /// `used_event` write this thread did not see is not left waiting (see
    /// `vhost_user::notify`).
    fn before_sleep(&mut self, rx: &Vring, tx: &Vring) {
        if self.tx_held.at_idle() {
            self.signal_tx(tx);
        }
        if self.rx_held.at_idle() {
            PairStats::inc(&self.shared.stats.rx_interrupts);
            if let Err(e) = rx.get_ref().signal_used_queue() {
                guest_warn!(
                    self.log,
                    "queue pair {}: cannot interrupt the guest: {e}",
                    self.index
                );
            }
        }
    }

    /// Whether the tap is polled and holds a frame.
    fn tap_ready(&self) -> bool {
        self.tap_polled() && self.shared.attached.load(Ordering::Acquire) && {
            self.tap
                .queues()
                .get(self.index)
                .is_some_and(|q| q.readable())
        }
    }

    /// Spins for the poller's window, watching the transmit ring and the
    /// tap; true if work came.
    fn poll_for_work(&mut self, tx: &Vring) -> bool {
        let Some(mut poller) = self.poller.take() else {
            return false;
        };
        let Some(gm) = self.mem.clone() else {
            self.poller = Some(poller);
            return false;
        };
        let mem = gm.memory();
        let tap = self
            .tap_polled()
            .then(|| self.tap.queues().get(self.index))
            .flatten();
        let found = poller.poll(|| {
            let state = tx.get_ref();
            let q = state.get_queue();
            let tx_work = q.ready()
                && q.avail_idx(&*mem, Ordering::Acquire)
                    .is_ok_and(|idx| idx.0 != q.next_avail());
            tx_work || tap.is_some_and(|t| t.readable())
        });
        self.poller = Some(poller);
        found
    }
}
