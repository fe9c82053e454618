//! Adaptive polling of a queue before its thread goes to sleep.
//!
//! After a batch, the worker keeps notifications disabled and spins for a
//! short window watching the avail ring (and the engine's completions): a
//! driver that sees notifications disabled does not kick, so a request that
//! arrives in the window costs neither the driver's kick nor this thread's
//! wake-up. The window doubles when polling finds work and halves when it
//! does not, between [`MIN_WINDOW`] and [`MAX_WINDOW`].
//!
//! A poller that waits for the driver's next request after answering the
//! last one can also *learn*: when it gave up and the request came a little
//! later (the thread was woken for it within [`LEARNED_MAX`] of the poll's
//! start), the window widens to that gap, so that a driver that always
//! answers after one wake-up of its own (a depth-1 workload on a device
//! slower than the window) is caught without a second wake-up here.
//!
//! It must not know what it polls, nor which device uses it: the block
//! and net backends each decide whether their queues poll.

use std::time::{Duration, Instant};

/// The shortest window (polling never switches off entirely, so that it can
/// notice a workload that starts to benefit).
pub const MIN_WINDOW: Duration = Duration::from_micros(2);
/// The longest window.
pub const MAX_WINDOW: Duration = Duration::from_micros(64);
/// The longest window a learning poller widens to for a gap it saw.
pub const LEARNED_MAX: Duration = Duration::from_micros(128);
/// Where a queue starts.
const START_WINDOW: Duration = Duration::from_micros(16);

/// The polling window of one queue.
#[derive(Debug, Clone)]
pub struct Poller {
    window: Duration,
    /// The most the window grows to: [`MAX_WINDOW`], or [`LEARNED_MAX`]
    /// for a learning poller.
    ceiling: Duration,
    /// A learning poller: when its last poll gave up, where it started.
    gave_up: Option<Option<Instant>>,
}

impl Default for Poller {
    fn default() -> Self {
        Self::new()
    }
}

impl Poller {
    /// A poller at its starting window.
    pub fn new() -> Self {
        Self {
            window: START_WINDOW,
            ceiling: MAX_WINDOW,
            gave_up: None,
        }
    }

    /// A poller that learns from [`Poller::woken`] how long the driver
    /// takes to answer.
    pub fn learning() -> Self {
        Self {
            window: START_WINDOW,
            ceiling: LEARNED_MAX,
            gave_up: Some(None),
        }
    }

    /// A poller that never polls (each device decides when: an
    /// environment variable of its own, for measuring what polling buys).
    pub fn off() -> Self {
        Self {
            window: Duration::ZERO,
            ceiling: Duration::ZERO,
            gave_up: None,
        }
    }

    /// The current window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The thread was woken for the work its last poll gave up on: if that
    /// came within [`LEARNED_MAX`] of the poll's start, a learning poller
    /// widens its window to catch it next time (a quarter more than the
    /// gap, which includes this thread's own wake-up).
    pub fn woken(&mut self) {
        // The clock is read only when there is something to learn: a kick
        // the poll caught (or a plain poller) costs nothing here.
        if matches!(self.gave_up, Some(Some(_))) {
            self.woken_at(Instant::now());
        }
    }

    fn woken_at(&mut self, now: Instant) {
        let Some(gave_up) = &mut self.gave_up else {
            return;
        };
        if let Some(start) = gave_up.take() {
            let gap = now.saturating_duration_since(start);
            if gap <= self.ceiling {
                self.window = self.window.max(gap + gap / 4).min(self.ceiling);
            }
        }
    }

    /// Spins until `ready()` is true (returns true) or the window ends
    /// (returns false), and adapts the window.
    pub fn poll(&mut self, mut ready: impl FnMut() -> bool) -> bool {
        if self.window.is_zero() {
            return false;
        }
        let start = Instant::now();
        loop {
            if ready() {
                self.window = (self.window * 2).min(self.ceiling);
                return true;
            }
            if start.elapsed() >= self.window {
                self.window = (self.window / 2).max(MIN_WINDOW);
                if let Some(gave_up) = &mut self.gave_up {
                    *gave_up = Some(start);
                }
                return false;
            }
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_grows_on_hits_and_shrinks_on_misses() {
        let mut p = Poller::new();
        assert!(p.poll(|| true));
        assert_eq!(p.window(), START_WINDOW * 2);
        for _ in 0..10 {
            assert!(p.poll(|| true));
        }
        assert_eq!(p.window(), MAX_WINDOW);
        for _ in 0..10 {
            assert!(!p.poll(|| false));
        }
        assert_eq!(p.window(), MIN_WINDOW);
    }

    #[test]
    fn a_learning_poller_widens_to_a_gap_it_missed() {
        let mut p = Poller::learning();
        for _ in 0..10 {
            assert!(!p.poll(|| false));
        }
        assert_eq!(p.window(), MIN_WINDOW);
        let start = p.gave_up.flatten().expect("the last poll gave up");
        p.woken_at(start + Duration::from_micros(40));
        assert_eq!(p.window(), Duration::from_micros(50));
        // Woken again without a poll that gave up: nothing to learn.
        p.woken_at(start + Duration::from_micros(80));
        assert_eq!(p.window(), Duration::from_micros(50));
        // A hit doubles it up to the learned ceiling.
        assert!(p.poll(|| true));
        assert!(p.poll(|| true));
        assert_eq!(p.window(), LEARNED_MAX);
    }

    #[test]
    fn a_gap_past_the_ceiling_teaches_nothing() {
        let mut p = Poller::learning();
        assert!(!p.poll(|| false));
        let w = p.window();
        let start = p.gave_up.flatten().expect("the last poll gave up");
        p.woken_at(start + LEARNED_MAX * 2);
        assert_eq!(p.window(), w);
    }

    #[test]
    fn a_plain_poller_does_not_learn() {
        let mut p = Poller::new();
        assert!(!p.poll(|| false));
        let w = p.window();
        p.woken();
        assert_eq!(p.window(), w);
    }
}
