//! The benchmark's client: libblkio's `virtio-blk-vhost-user` driver (the
//! `blkio` crate) on a backend's socket, one thread per queue, each keeping
//! its queue at the workload's depth for a fixed time.
//!
//! The same client drives every peer. It must not know which peer it is
//! talking to.

use std::mem::MaybeUninit;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use blkio::{Blkio, Blkioq, Completion, ReqFlags};

use super::BenchError;

/// One workload: what each queue does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Short name for the table (`randread`, ...).
    pub name: &'static str,
    /// Writes rather than reads.
    pub write: bool,
    /// Random offsets rather than sequential.
    pub random: bool,
    /// Bytes per request.
    pub block: usize,
    /// Requests in flight per queue.
    pub depth: usize,
}

/// What one run of a workload measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Requests completed in the measured window.
    pub ios: u64,
    /// The window.
    pub elapsed: Duration,
    /// Median completion latency over all queues.
    pub median: Duration,
    /// Requests that failed (must be zero).
    pub errors: u64,
}

impl Sample {
    /// Requests per second.
    pub fn iops(&self) -> f64 {
        count_f64(self.ios) / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Megabytes (10^6) per second for `block`-sized requests.
    pub fn mbps(&self, block: usize) -> f64 {
        self.iops() * count_f64(u64::try_from(block).unwrap_or(0)) / 1e6
    }
}

/// A count as a float for rates (exact up to 2^53, far beyond any count here).
fn count_f64(n: u64) -> f64 {
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    f64::from(n)
}

/// Runs `wl` on `queues` queues of the backend at `socket` for `warmup`
/// plus `measure`, counting only `measure`.
pub fn run(
    socket: &Path,
    queues: usize,
    wl: Workload,
    image_len: u64,
    warmup: Duration,
    measure: Duration,
) -> Result<Sample, BenchError> {
    let err = |what: &str, e: blkio::Error| BenchError::Client(format!("{what}: {e}"));
    let mut b = Blkio::new("virtio-blk-vhost-user").map_err(|e| err("blkio", e))?;
    let path = socket
        .to_str()
        .ok_or_else(|| BenchError::Setup("socket path is not UTF-8".into()))?;
    b.set_str("path", path).map_err(|e| err("path", e))?;
    b.connect().map_err(|e| err("connect", e))?;
    let nq = i32::try_from(queues).map_err(|_| BenchError::Setup("too many queues".into()))?;
    b.set_i32("num-queues", nq)
        .map_err(|e| err("num-queues", e))?;
    let started = b.start().map_err(|e| err("start", e))?;
    let per_queue = wl.block * wl.depth;
    let align = usize::try_from(
        b.get_u64("mem-region-alignment")
            .map_err(|e| err("alignment", e))?,
    )
    .unwrap_or(4096)
    .max(4096);
    let region_len = per_queue.div_ceil(align) * align;
    let mut regions = Vec::new();
    for _ in 0..queues {
        let r = b
            .alloc_mem_region(region_len)
            .map_err(|e| err("alloc", e))?;
        b.map_mem_region(&r).map_err(|e| err("map", e))?;
        regions.push(r.addr);
    }
    let start = Instant::now() + Duration::from_millis(50);
    let results: Vec<Result<QueueResult, BenchError>> = thread::scope(|s| {
        let handles: Vec<_> = started
            .queues
            .into_iter()
            .zip(regions)
            .enumerate()
            .map(|(i, (q, buf))| {
                let seed = 0x9e37_79b9_7f4a_7c15_u64 ^ (u64::try_from(i).unwrap_or(0) << 32);
                s.spawn(move || {
                    drive(
                        q,
                        buf,
                        wl,
                        image_len,
                        seed,
                        start + warmup,
                        start + warmup + measure,
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(BenchError::Client("a client thread panicked".into())))
            })
            .collect()
    });
    let mut total = Sample {
        elapsed: measure,
        ..Sample::default()
    };
    let mut lat = Vec::new();
    for r in results {
        let r = r?;
        total.ios += r.ios;
        total.errors += r.errors;
        lat.extend(r.latencies);
    }
    lat.sort_unstable();
    total.median = lat.get(lat.len() / 2).copied().unwrap_or_default();
    drop(b);
    Ok(total)
}

struct QueueResult {
    ios: u64,
    errors: u64,
    latencies: Vec<Duration>,
}

/// Offsets: xorshift over the image for random, wrapping for sequential.
struct Offsets {
    state: u64,
    next: u64,
    blocks: u64,
    block: u64,
    random: bool,
}

impl Offsets {
    fn next(&mut self) -> u64 {
        let b = if self.random {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            self.state % self.blocks
        } else {
            let b = self.next;
            self.next = (self.next + 1) % self.blocks;
            b
        };
        b * self.block
    }
}

fn drive(
    mut q: Blkioq,
    buf: usize,
    wl: Workload,
    image_len: u64,
    seed: u64,
    measure_from: Instant,
    until: Instant,
) -> Result<QueueResult, BenchError> {
    let block = u64::try_from(wl.block).unwrap_or(u64::MAX);
    let mut offsets = Offsets {
        state: seed | 1,
        next: 0,
        blocks: (image_len / block).max(1),
        block,
        random: wl.random,
    };
    let submit = |q: &mut Blkioq, slot: usize, off: u64| {
        let addr = (buf + slot * wl.block) as *mut u8;
        if wl.write {
            q.write(off, addr, wl.block, slot, ReqFlags::empty());
        } else {
            q.read(off, addr, wl.block, slot, ReqFlags::empty());
        }
    };
    let mut started = vec![Instant::now(); wl.depth];
    for (slot, t) in started.iter_mut().enumerate() {
        *t = Instant::now();
        submit(&mut q, slot, offsets.next());
    }
    let mut out = QueueResult {
        ios: 0,
        errors: 0,
        latencies: Vec::with_capacity(1 << 16),
    };
    let mut done: Vec<MaybeUninit<Completion>> =
        (0..wl.depth).map(|_| MaybeUninit::uninit()).collect();
    let mut in_flight = wl.depth;
    let mut stopping = false;
    while in_flight > 0 {
        let mut timeout = Duration::from_secs(10);
        let n = q
            .do_io(&mut done, 1, Some(&mut timeout), None)
            .map_err(|e| BenchError::Client(format!("do_io: {e}")))?;
        if n == 0 {
            return Err(BenchError::Client("no completion within 10 s".into()));
        }
        let now = Instant::now();
        if now >= until {
            stopping = true;
        }
        for c in done.iter().take(n) {
            // SAFETY: do_io initialised the first `n` completions.
            let c = unsafe { c.assume_init_read() };
            let slot = c.user_data;
            in_flight -= 1;
            if c.ret < 0 {
                out.errors += 1;
            }
            if let Some(t) = started.get_mut(slot) {
                if *t >= measure_from && now < until {
                    out.ios += 1;
                    out.latencies.push(now - *t);
                }
                if !stopping {
                    *t = Instant::now();
                    submit(&mut q, slot, offsets.next());
                    in_flight += 1;
                }
            }
        }
    }
    Ok(out)
}
