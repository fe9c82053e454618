//! Counters of what went wrong on a guest's behalf (malformed requests, I/O
//! errors) and the warn lines about them, rate limited so that a guest can
//! never flood the host log: at most one line per second, which says how many
//! were left unsaid.
//!
//! Updated only on error paths (a relaxed atomic add), never on a good
//! request. It must not know how requests are parsed or served.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What a guest did wrong, or what failed while serving it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum GuestError {
    /// A descriptor chain that loops, is cut short or breaks the ring layout.
    MalformedChain,
    /// A buffer outside the guest's memory regions.
    BadAddress,
    /// A header shorter than 16 bytes, or a readable buffer after a writable one.
    BadLayout,
    /// No device-writable byte for the status.
    NoStatus,
    /// A request past the end of the disk.
    OutOfRange,
    /// A write, discard or write-zeroes on a read-only disk.
    WriteToReadOnly,
    /// A request type or flag the device does not offer.
    Unsupported,
    /// A length that is not a whole number of sectors, too many segments, or
    /// more data than a request may carry.
    BadLength,
    /// The host I/O failed.
    IoError,
    /// A queue stopped until the frontend resets it.
    QueueNeedsReset,
}

impl GuestError {
    const ALL: [GuestError; 10] = [
        GuestError::MalformedChain,
        GuestError::BadAddress,
        GuestError::BadLayout,
        GuestError::NoStatus,
        GuestError::OutOfRange,
        GuestError::WriteToReadOnly,
        GuestError::Unsupported,
        GuestError::BadLength,
        GuestError::IoError,
        GuestError::QueueNeedsReset,
    ];

    /// A stable name for logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            GuestError::MalformedChain => "malformed_chain",
            GuestError::BadAddress => "bad_address",
            GuestError::BadLayout => "bad_layout",
            GuestError::NoStatus => "no_status",
            GuestError::OutOfRange => "out_of_range",
            GuestError::WriteToReadOnly => "write_to_read_only",
            GuestError::Unsupported => "unsupported",
            GuestError::BadLength => "bad_length",
            GuestError::IoError => "io_error",
            GuestError::QueueNeedsReset => "queue_needs_reset",
        }
    }
}

const KINDS: usize = GuestError::ALL.len();

/// Minimum time between two warn lines.
const WARN_INTERVAL: Duration = Duration::from_secs(1);

/// The error counters of one device, shared by its queues.
#[derive(Debug, Default)]
pub struct Metrics {
    counts: [AtomicU64; KINDS],
    /// Milliseconds since [`epoch`] before which no warn line is printed.
    next_warn_ms: AtomicU64,
    /// Events not logged since the last warn line.
    suppressed: AtomicU64,
}

impl Metrics {
    /// New counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one event and logs it unless a line was logged less than a
    /// second ago.
    pub fn record(&self, kind: GuestError, queue: usize, detail: &dyn fmt::Display) {
        self.counts[kind as usize].fetch_add(1, Ordering::Relaxed);
        let now = now_ms();
        let next = self.next_warn_ms.load(Ordering::Relaxed);
        let interval = u64::try_from(WARN_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        if now < next
            || self
                .next_warn_ms
                .compare_exchange(
                    next,
                    now.saturating_add(interval),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        if suppressed > 0 {
            tracing::warn!(
                "queue {queue}: {}: {detail} ({suppressed} more guest errors not logged)",
                kind.name()
            );
        } else {
            tracing::warn!("queue {queue}: {}: {detail}", kind.name());
        }
    }

    /// Counts one event and always logs it, whatever the rate limit: for
    /// changes of state that happen at most once per driver reset (a queue
    /// that stops), which an operator must see even right after a burst of
    /// other errors. It neither uses nor moves the rate limiter's window.
    pub fn record_unlimited(&self, kind: GuestError, queue: usize, detail: &dyn fmt::Display) {
        self.counts[kind as usize].fetch_add(1, Ordering::Relaxed);
        tracing::warn!("queue {queue}: {}: {detail}", kind.name());
    }

    /// How many events of `kind` were counted.
    pub fn count(&self, kind: GuestError) -> u64 {
        self.counts[kind as usize].load(Ordering::Relaxed)
    }

    /// Every non-zero counter, by name.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        GuestError::ALL
            .iter()
            .map(|&k| (k.name(), self.count(k)))
            .filter(|&(_, n)| n > 0)
            .collect()
    }
}

/// Milliseconds since the first call, process-wide.
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Runs `f` with a subscriber that keeps the warn lines logged on this
/// thread, and returns them.
#[cfg(test)]
pub(crate) fn capture_warnings(f: impl FnOnce()) -> String {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = sink.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_is_counted_but_few_are_logged() {
        let m = Metrics::new();
        for _ in 0..1000 {
            m.record(GuestError::OutOfRange, 0, &"sector 9999");
        }
        assert_eq!(m.count(GuestError::OutOfRange), 1000);
        // One line went out; the rest wait for the next interval.
        assert_eq!(m.suppressed.load(Ordering::Relaxed), 999);
        assert_eq!(m.snapshot(), vec![("out_of_range", 1000)]);
    }

    #[test]
    fn a_queue_stopping_is_logged_even_inside_the_rate_limit_window() {
        let m = Metrics::new();
        let log = capture_warnings(|| {
            m.record(GuestError::MalformedChain, 0, &"loop");
            m.record(GuestError::BadAddress, 0, &"hole");
            m.record_unlimited(GuestError::QueueNeedsReset, 0, &"stopped");
            m.record(GuestError::OutOfRange, 0, &"past the end");
        });
        assert!(log.contains("malformed_chain: loop"), "{log}");
        assert!(log.contains("queue_needs_reset: stopped"), "{log}");
        // The others stay within the one line a second.
        assert!(!log.contains("bad_address"), "{log}");
        assert!(!log.contains("out_of_range"), "{log}");
        assert_eq!(log.lines().count(), 2, "{log}");
        assert_eq!(m.count(GuestError::QueueNeedsReset), 1);
        // Both suppressed lines are still owed to the next window.
        assert_eq!(m.suppressed.load(Ordering::Relaxed), 2);
    }
}
