//! The verifying workload: random block writes at a fixed depth whose
//! content says which block and which write it is, then every block read
//! back and checked, and the device's digest for the host.
//!
//! No two writes to one block are in flight at once, so each block's last
//! completed write is what must be on the disk. A write lost, done twice
//! out of order or finished with an error shows: the read-back differs, or
//! the program stops with the error.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};

use io_uring::{opcode, types, IoUring};

use super::{device_size, Args, Buffers, Rng};

/// `IO-PROGRESS N` every this many writes.
const PROGRESS_EVERY: u64 = 1000;

/// Word `j` of block `b` after its `gen`-th write (gen 0: never written,
/// zeroes).
fn word(b: u64, gen: u32, j: u64) -> u64 {
    if gen == 0 {
        return 0;
    }
    let mut x = (b << 32 | u64::from(gen)) ^ j.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // splitmix64's finaliser.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn fill(buf: &mut [u8], b: u64, gen: u32) {
    for (j, w) in (0u64..).zip(buf.chunks_exact_mut(8)) {
        w.copy_from_slice(&word(b, gen, j).to_le_bytes());
    }
}

/// FNV-1a 64 over `bytes`, continuing from `h`.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &x in bytes {
        h ^= u64::from(x);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// What the workload knows about each block and each request slot.
struct State {
    rng: Rng,
    /// Per block: the last completed write's number (0: none).
    gens: Vec<u32>,
    /// Per block: a write is in flight.
    busy: Vec<bool>,
    /// Per slot: the block and write number in flight.
    pending: Vec<(usize, u32)>,
    submitted: u64,
}

impl State {
    /// The next write for `slot`: a random block with no write in flight.
    fn next(&mut self, slot: usize) -> (usize, u32) {
        let n = self.gens.len() as u64;
        let b = loop {
            let b = usize::try_from(self.rng.next() % n).unwrap_or(0);
            if !self.busy[b] {
                break b;
            }
        };
        self.busy[b] = true;
        let gen = self.gens[b] + 1;
        self.pending[slot] = (b, gen);
        self.submitted += 1;
        (b, gen)
    }
}

pub(crate) fn run(a: &Args) -> Result<String, String> {
    let writes = a.seconds;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&a.device)
        .map_err(|e| format!("{}: {e}", a.device))?;
    let block = u64::try_from(a.block).map_err(|e| e.to_string())?;
    let blocks = usize::try_from(device_size(&a.device)? / block).map_err(|e| e.to_string())?;
    if blocks <= a.depth {
        return Err(format!(
            "{} has too few blocks for depth {}",
            a.device, a.depth
        ));
    }
    let len = u32::try_from(a.block).map_err(|e| e.to_string())?;
    let bufs = Buffers::new(a.block, a.depth)?;
    let slot_buf = |slot: usize| {
        // SAFETY: slot `slot` of `bufs` is `block` bytes that live as long
        // as `bufs`; only one request uses it at a time, and it is not in
        // flight while this slice is used.
        unsafe { std::slice::from_raw_parts_mut(bufs.slot(slot), a.block) }
    };
    let entries = u32::try_from(a.depth.next_power_of_two()).map_err(|e| e.to_string())?;
    let mut ring = IoUring::new(entries).map_err(|e| format!("io_uring: {e}"))?;
    let fd = types::Fd(file.as_raw_fd());
    let mut st = State {
        rng: Rng(0x2545_f491_4f6c_dd1d),
        gens: vec![0u32; blocks],
        busy: vec![false; blocks],
        pending: vec![(0usize, 0u32); a.depth],
        submitted: 0,
    };
    let submit = |ring: &mut IoUring, st: &mut State, slot: usize| {
        let (b, gen) = st.next(slot);
        fill(slot_buf(slot), b as u64, gen);
        let sqe = opcode::Write::new(fd, bufs.slot(slot), len)
            .offset(b as u64 * block)
            .build()
            .user_data(slot as u64);
        // SAFETY: the buffer is slot `slot` of `bufs`, `len` bytes, which
        // outlive the ring; a slot is reused only after its completion.
        unsafe { ring.submission().push(&sqe) }.map_err(|_| "submission queue full".to_owned())
    };
    for slot in 0..a.depth.min(usize::try_from(writes).unwrap_or(usize::MAX)) {
        submit(&mut ring, &mut st, slot)?;
    }
    let mut in_flight = st.submitted;
    let mut done = 0u64;
    let mut out = std::io::stdout();
    while in_flight > 0 {
        ring.submit_and_wait(1)
            .map_err(|e| format!("io_uring: {e}"))?;
        let completed: Vec<(usize, i32)> = ring
            .completion()
            .map(|c| (usize::try_from(c.user_data()).unwrap_or(0), c.result()))
            .collect();
        for (slot, res) in completed {
            in_flight -= 1;
            let (b, gen) = st.pending[slot];
            if res < 0 {
                let e = std::io::Error::from_raw_os_error(-res);
                return Err(format!("{}: write of block {b}: {e}", a.device));
            }
            if usize::try_from(res).ok() != Some(a.block) {
                return Err(format!("{}: short write of {res} bytes", a.device));
            }
            st.gens[b] = gen;
            st.busy[b] = false;
            done += 1;
            if done % PROGRESS_EVERY == 0 {
                let _ = writeln!(out, "IO-PROGRESS {done}");
                let _ = out.flush();
            }
            if st.submitted < writes {
                submit(&mut ring, &mut st, slot)?;
                in_flight += 1;
            }
        }
    }
    drop(ring);
    // Read every block back through the device and check it.
    let buf = slot_buf(0);
    let mut want = vec![0u8; a.block];
    let mut digest = 0xcbf2_9ce4_8422_2325u64;
    let mut written = 0usize;
    for (b, &gen) in st.gens.iter().enumerate() {
        file.read_exact_at(buf, b as u64 * block)
            .map_err(|e| format!("{}: read of block {b}: {e}", a.device))?;
        fill(&mut want, b as u64, gen);
        if *buf != want[..] {
            return Err(format!(
                "block {b} differs from its write {gen} (first word {:#x})",
                u64::from_le_bytes(buf[..8].try_into().unwrap_or_default())
            ));
        }
        written += usize::from(gen > 0);
        digest = fnv(digest, buf);
    }
    Ok(format!(
        "{{\"writes\":{done},\"blocks\":{blocks},\"written_blocks\":{written},\"digest\":\"{digest:016x}\"}}"
    ))
}
