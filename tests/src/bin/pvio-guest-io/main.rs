//! Runs inside a test guest: direct I/O on one block device at a fixed queue
//! depth through io_uring, for a fixed time, then one JSON line with the
//! figures. The block benchmark (`tests/tests/blk_bench.rs`) puts it in the
//! guest's initramfs and runs the same workloads on each kind of disk.
//!
//! `pvio-guest-io DEVICE randread|randwrite|read BLOCK_BYTES DEPTH SECONDS`
//!
//! Every request is `O_DIRECT` (no guest page cache); random offsets are
//! block-aligned over the whole device, sequential reads wrap at its end.
//!
//! `pvio-guest-io DEVICE verify BLOCK_BYTES DEPTH WRITES` is a verifying
//! workload instead (`verify.rs`): WRITES random block writes at DEPTH, each
//! block's content derived from its index and how often it was written,
//! then every block read back and checked. It prints `IO-PROGRESS N` every
//! 1000 writes and ends with the device's FNV-1a digest, for the host to
//! compare with the image.

use std::alloc::Layout;
use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use io_uring::{opcode, types, IoUring};

mod verify;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pattern {
    RandRead,
    RandWrite,
    SeqRead,
    Verify,
}

struct Args {
    device: String,
    pattern: Pattern,
    block: usize,
    depth: usize,
    seconds: u64,
}

fn parse() -> Result<Args, String> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [device, pattern, block, depth, seconds] = a.as_slice() else {
        return Err(
            "usage: pvio-guest-io DEVICE randread|randwrite|read BLOCK_BYTES DEPTH SECONDS".into(),
        );
    };
    let pattern = match pattern.as_str() {
        "randread" => Pattern::RandRead,
        "randwrite" => Pattern::RandWrite,
        "read" => Pattern::SeqRead,
        "verify" => Pattern::Verify,
        other => return Err(format!("unknown pattern {other}")),
    };
    let num = |s: &str, what: &str| {
        s.parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("bad {what} {s}"))
    };
    let block = num(block, "block size")?;
    if block % 512 != 0 {
        return Err(format!("block size {block} is not a multiple of 512"));
    }
    Ok(Args {
        device: device.clone(),
        pattern,
        block,
        depth: num(depth, "depth")?,
        // For `verify`: the number of writes.
        seconds: u64::try_from(num(seconds, "seconds")?).map_err(|e| e.to_string())?,
    })
}

fn main() -> ExitCode {
    let run = |a: Args| {
        if a.pattern == Pattern::Verify {
            verify::run(&a)
        } else {
            run(&a)
        }
    };
    match parse().and_then(run) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pvio-guest-io: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One aligned buffer per request slot, freed on drop.
pub(crate) struct Buffers {
    ptr: *mut u8,
    layout: Layout,
    block: usize,
}

impl Buffers {
    pub(crate) fn new(block: usize, depth: usize) -> Result<Self, String> {
        let layout = Layout::from_size_align(block * depth, 4096).map_err(|e| e.to_string())?;
        // SAFETY: the layout has a non-zero size (block and depth are > 0).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err("out of memory".into());
        }
        Ok(Self { ptr, layout, block })
    }

    pub(crate) fn slot(&self, i: usize) -> *mut u8 {
        self.ptr.wrapping_add(i * self.block)
    }
}

impl Drop for Buffers {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `alloc_zeroed` with this layout, and no
        // request is in flight any more (the ring is dropped first).
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}

/// xorshift64*: cheap, and the same offsets on every disk.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The device's size in bytes, from sysfs.
pub(crate) fn device_size(device: &str) -> Result<u64, String> {
    std::fs::read_to_string(format!(
        "/sys/class/block/{}/size",
        device.trim_start_matches("/dev/")
    ))
    .ok()
    .and_then(|s| s.trim().parse::<u64>().ok())
    .map(|sectors| sectors * 512)
    .ok_or_else(|| format!("cannot read the size of {device}"))
}

fn run(a: &Args) -> Result<String, String> {
    let write = a.pattern == Pattern::RandWrite;
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_DIRECT)
        .open(&a.device)
        .map_err(|e| format!("{}: {e}", a.device))?;
    let size = device_size(&a.device)?;
    let block = u64::try_from(a.block).map_err(|e| e.to_string())?;
    let blocks = size / block;
    if blocks == 0 {
        return Err(format!("{} is smaller than one block", a.device));
    }
    let len = u32::try_from(a.block).map_err(|e| e.to_string())?;
    let entries = u32::try_from(a.depth.next_power_of_two()).map_err(|e| e.to_string())?;
    let bufs = Buffers::new(a.block, a.depth)?;
    let mut ring = IoUring::new(entries).map_err(|e| format!("io_uring: {e}"))?;
    let fd = types::Fd(file.as_raw_fd());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut next_seq = 0u64;
    let mut offset = |rng: &mut Rng| match a.pattern {
        Pattern::SeqRead => {
            let o = next_seq * block;
            next_seq = (next_seq + 1) % blocks;
            o
        }
        _ => (rng.next() % blocks) * block,
    };
    let mut started = vec![Instant::now(); a.depth];
    let mut lat_ns: Vec<u64> = Vec::with_capacity(1 << 16);
    let mut submit = |ring: &mut IoUring, slot: usize, rng: &mut Rng, started: &mut [Instant]| {
        let off = offset(rng);
        let buf = bufs.slot(slot);
        let sqe = if write {
            opcode::Write::new(fd, buf, len).offset(off).build()
        } else {
            opcode::Read::new(fd, buf, len).offset(off).build()
        }
        .user_data(u64::try_from(slot).unwrap_or(0));
        started[slot] = Instant::now();
        // SAFETY: `buf` is slot `slot` of `bufs`, `len` bytes, which outlive
        // the ring; a slot is resubmitted only after its completion.
        unsafe { ring.submission().push(&sqe) }.map_err(|_| "submission queue full".to_owned())
    };
    for slot in 0..a.depth {
        submit(&mut ring, slot, &mut rng, &mut started)?;
    }
    let warmup = Duration::from_millis(500);
    let begin = Instant::now();
    let end = begin + warmup + Duration::from_secs(a.seconds);
    let mut measured_from = None;
    let mut done = 0u64;
    let mut in_flight = a.depth;
    while in_flight > 0 {
        ring.submit_and_wait(1)
            .map_err(|e| format!("io_uring: {e}"))?;
        let now = Instant::now();
        if measured_from.is_none() && now >= begin + warmup {
            measured_from = Some(now);
            done = 0;
            lat_ns.clear();
        }
        let completed: Vec<(usize, i32)> = ring
            .completion()
            .map(|c| (usize::try_from(c.user_data()).unwrap_or(0), c.result()))
            .collect();
        for (slot, res) in completed {
            in_flight -= 1;
            if res < 0 {
                return Err(format!(
                    "{}: {}",
                    a.device,
                    std::io::Error::from_raw_os_error(-res)
                ));
            }
            if usize::try_from(res).ok() != Some(a.block) {
                return Err(format!("{}: short transfer of {res} bytes", a.device));
            }
            done += 1;
            let ns = now.duration_since(started[slot]).as_nanos();
            lat_ns.push(u64::try_from(ns).unwrap_or(u64::MAX));
            if now < end {
                submit(&mut ring, slot.min(a.depth - 1), &mut rng, &mut started)?;
                in_flight += 1;
            }
        }
    }
    drop(ring);
    let secs = measured_from
        .map(|t| Instant::now().duration_since(t).as_secs_f64())
        .unwrap_or(0.0)
        .max(1e-3);
    lat_ns.sort_unstable();
    let pct = |p: usize| {
        lat_ns
            .get(lat_ns.len().saturating_sub(1) * p / 100)
            .copied()
            .unwrap_or(0)
    };
    let iops = float(done) / secs;
    Ok(format!(
        "{{\"iops\":{iops:.0},\"mbs\":{:.1},\"p50_us\":{:.1},\"p99_us\":{:.1},\"ops\":{done}}}",
        iops * float(block) / 1e6,
        float(pct(50)) / 1e3,
        float(pct(99)) / 1e3,
    ))
}

/// A count or nanoseconds as a float for figures (saturates at 2^32 - 1,
/// far beyond any count or latency here).
fn float(n: u64) -> f64 {
    f64::from(u32::try_from(n).unwrap_or(u32::MAX))
}
