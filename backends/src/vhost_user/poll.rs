//! Adaptive polling of a queue before its thread goes to sleep.
//!
//! After a batch, the worker keeps notifications disabled and spins for a
//! short window watching the avail ring (and the engine's completions): a
//! driver that sees notifications disabled does not kick, so a request that
//! arrives in the window costs neither the driver's kick nor this thread's
//! wake-up. The window doubles when polling finds work and halves when it
//! does not, between [`MIN_WINDOW`] and [`MAX_WINDOW`].
//!
//! It must not know what it polls, nor which device uses it: the block
//! and net backends each decide whether their queues poll.

use std::time::{Duration, Instant};

/// The shortest window (polling never switches off entirely, so that it can
/// notice a workload that starts to benefit).
pub const MIN_WINDOW: Duration = Duration::from_micros(2);
/// The longest window.
pub const MAX_WINDOW: Duration = Duration::from_micros(64);
/// Where a queue starts.
const START_WINDOW: Duration = Duration::from_micros(16);

/// The polling window of one queue.
#[derive(Debug, Clone)]
pub struct Poller {
    window: Duration,
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
        }
    }

    /// A poller that never polls (each device decides when: an
    /// environment variable of its own, for measuring what polling buys).
    pub fn off() -> Self {
        Self {
            window: Duration::ZERO,
        }
    }

    /// The current window.
    pub fn window(&self) -> Duration {
        self.window
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
                self.window = (self.window * 2).min(MAX_WINDOW);
                return true;
            }
            if start.elapsed() >= self.window {
                self.window = (self.window / 2).max(MIN_WINDOW);
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
}
