//! Counters of one queue pair (frames, bytes, and every kind of bad guest
//! input) and the rate limiter for log lines a guest can trigger.
//!
//! Each queue pair owns its counters: the data path adds to them with
//! relaxed atomics nobody else writes, and readers sum them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a queue pair counts.
#[derive(Debug, Default)]
pub struct PairStats {
    /// Frames handed to the guest.
    pub rx_frames: AtomicU64,
    /// Bytes handed to the guest (frames, without the virtio-net header).
    pub rx_bytes: AtomicU64,
    /// Frames sent by the guest and written to the tap.
    pub tx_frames: AtomicU64,
    /// Bytes sent by the guest (frames, without the virtio-net header).
    pub tx_bytes: AtomicU64,
    /// Times the guest had no receive buffer and the tap was left unread
    /// until it posted more.
    pub rx_no_buffers: AtomicU64,
    /// Frames dropped on receive (too large for what the guest posted, or
    /// for any frame pvio takes).
    pub rx_dropped: AtomicU64,
    /// Good receive buffers completed empty because the guest posted a bad
    /// chain after them (they could not go back to the ring past it).
    pub rx_returned_empty: AtomicU64,
    /// Transmit frames the tap refused (bad offload header, link down).
    pub tx_dropped: AtomicU64,
    /// Malformed descriptor chains (wrong direction, outside guest memory,
    /// empty, too short for the header).
    pub bad_chains: AtomicU64,
    /// Transmit frames longer than the negotiated limit, or shorter than an
    /// Ethernet header.
    pub bad_frame_len: AtomicU64,
    /// Transmit headers asking for an offload the guest did not negotiate or
    /// pointing outside the frame.
    pub bad_headers: AtomicU64,
    /// Tap reads or writes that failed for another reason.
    pub tap_errors: AtomicU64,
    /// Used-buffer notifications sent for the receive queue.
    pub rx_interrupts: AtomicU64,
    /// Used-buffer notifications sent for the transmit queue.
    pub tx_interrupts: AtomicU64,
}

/// A plain copy of [`PairStats`] (or their sum), for reports and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// See [`PairStats::rx_frames`].
    pub rx_frames: u64,
    /// See [`PairStats::rx_bytes`].
    pub rx_bytes: u64,
    /// See [`PairStats::tx_frames`].
    pub tx_frames: u64,
    /// See [`PairStats::tx_bytes`].
    pub tx_bytes: u64,
    /// See [`PairStats::rx_no_buffers`].
    pub rx_no_buffers: u64,
    /// See [`PairStats::rx_dropped`].
    pub rx_dropped: u64,
    /// See [`PairStats::rx_returned_empty`].
    pub rx_returned_empty: u64,
    /// See [`PairStats::tx_dropped`].
    pub tx_dropped: u64,
    /// See [`PairStats::bad_chains`].
    pub bad_chains: u64,
    /// See [`PairStats::bad_frame_len`].
    pub bad_frame_len: u64,
    /// See [`PairStats::bad_headers`].
    pub bad_headers: u64,
    /// See [`PairStats::tap_errors`].
    pub tap_errors: u64,
    /// See [`PairStats::rx_interrupts`].
    pub rx_interrupts: u64,
    /// See [`PairStats::tx_interrupts`].
    pub tx_interrupts: u64,
}

impl PairStats {
    /// Adds `n` to `counter` (the queue pair's thread is the only writer).
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds 1 to `counter`.
    pub fn inc(counter: &AtomicU64) {
        Self::add(counter, 1);
    }

    /// The current values.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            rx_frames: get(&self.rx_frames),
            rx_bytes: get(&self.rx_bytes),
            tx_frames: get(&self.tx_frames),
            tx_bytes: get(&self.tx_bytes),
            rx_no_buffers: get(&self.rx_no_buffers),
            rx_dropped: get(&self.rx_dropped),
            rx_returned_empty: get(&self.rx_returned_empty),
            tx_dropped: get(&self.tx_dropped),
            bad_chains: get(&self.bad_chains),
            bad_frame_len: get(&self.bad_frame_len),
            bad_headers: get(&self.bad_headers),
            tap_errors: get(&self.tap_errors),
            rx_interrupts: get(&self.rx_interrupts),
            tx_interrupts: get(&self.tx_interrupts),
        }
    }
}

impl StatsSnapshot {
    /// The field-by-field sum.
    #[must_use]
    pub fn plus(self, o: Self) -> Self {
        Self {
            rx_frames: self.rx_frames + o.rx_frames,
            rx_bytes: self.rx_bytes + o.rx_bytes,
            tx_frames: self.tx_frames + o.tx_frames,
            tx_bytes: self.tx_bytes + o.tx_bytes,
            rx_no_buffers: self.rx_no_buffers + o.rx_no_buffers,
            rx_dropped: self.rx_dropped + o.rx_dropped,
            rx_returned_empty: self.rx_returned_empty + o.rx_returned_empty,
            tx_dropped: self.tx_dropped + o.tx_dropped,
            bad_chains: self.bad_chains + o.bad_chains,
            bad_frame_len: self.bad_frame_len + o.bad_frame_len,
            bad_headers: self.bad_headers + o.bad_headers,
            tap_errors: self.tap_errors + o.tap_errors,
            rx_interrupts: self.rx_interrupts + o.rx_interrupts,
            tx_interrupts: self.tx_interrupts + o.tx_interrupts,
        }
    }

    /// Guest input errors of every kind.
    #[must_use]
    pub fn guest_errors(&self) -> u64 {
        self.bad_chains + self.bad_frame_len + self.bad_headers
    }
}

/// How often a log line a guest can trigger may appear.
pub const LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Lets one warning through per [`LOG_INTERVAL`] and counts the rest, so a
/// guest cannot flood the host log.
#[derive(Debug)]
pub struct RateLimit {
    last: Option<Instant>,
    suppressed: u64,
    interval: Duration,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::new(LOG_INTERVAL)
    }
}

impl RateLimit {
    /// A limiter letting one line through per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            last: None,
            suppressed: 0,
            interval,
        }
    }

    /// `Some(n)` when a line may be logged now, `n` being how many were
    /// suppressed since the last one; `None` when this one is suppressed.
    pub fn check(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// Logs a warning about guest input through a [`RateLimit`].
macro_rules! guest_warn {
    ($limit:expr, $($arg:tt)+) => {
        if let Some(suppressed) = $limit.check(std::time::Instant::now()) {
            if suppressed == 0 {
                tracing::warn!($($arg)+);
            } else {
                tracing::warn!("{} ({} similar suppressed)", format_args!($($arg)+), suppressed);
            }
        }
    };
}
pub(crate) use guest_warn;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_the_rest_counted() {
        let mut rl = RateLimit::new(Duration::from_secs(5));
        let t0 = Instant::now();
        assert_eq!(rl.check(t0), Some(0));
        for i in 1..=100 {
            assert_eq!(rl.check(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(rl.check(t0 + Duration::from_secs(5)), Some(100));
        assert_eq!(rl.check(t0 + Duration::from_secs(6)), None);
        assert_eq!(rl.check(t0 + Duration::from_secs(11)), Some(1));
    }

    #[test]
    fn snapshots_add_up() {
        let s = PairStats::default();
        PairStats::add(&s.rx_frames, 3);
        PairStats::inc(&s.bad_chains);
        PairStats::inc(&s.bad_headers);
        let snap = s.snapshot();
        assert_eq!(snap.rx_frames, 3);
        assert_eq!(snap.guest_errors(), 2);
        assert_eq!(snap.plus(snap).rx_frames, 6);
    }
}
