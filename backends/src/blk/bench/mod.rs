//! `pvio bench blk`: pvio's block backend against qemu-storage-daemon's
//! vhost-user-blk export and against pvio over the null engine, driven by
//! the same libblkio client in the same run, on one image in tmpfs so that
//! storage is not what is measured.
//!
//! Workloads (per queue): 4 KiB random read and write at depth 1 and 32,
//! 128 KiB sequential read at depth 8; with one queue, then two (one client
//! thread per queue). For each: IOPS, MB/s, median latency, the ratio
//! pvio / qemu-storage-daemon, and at the end which of issue 3's targets
//! were met. The client runs on the same cores as the backends.
//!
//! Not used by the backend itself. It must not shape a workload to a
//! target: the same client and settings go to every peer.

mod client;
mod peer;

use std::fmt::Write as _;
use std::io::{self, Write};
use std::time::Duration;

pub use client::{Sample, Workload};
pub use peer::Peer;

use crate::blk::BlkError;

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The image, directory or threads could not be set up.
    #[error("benchmark set-up: {0}")]
    Setup(String),
    /// A peer could not start.
    #[error("{0}")]
    Peer(String),
    /// pvio's backend could not start.
    #[error(transparent)]
    Blk(#[from] BlkError),
    /// The libblkio client failed.
    #[error("client: {0}")]
    Client(String),
    /// Writing the report failed.
    #[error("cannot write the report")]
    Output(#[source] io::Error),
}

/// How long and on what the benchmark runs.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Image size in MiB (in `dir`).
    pub image_mib: u64,
    /// Where the image and sockets go (tmpfs).
    pub dir: std::path::PathBuf,
    /// Unmeasured time at the start of each workload.
    pub warmup: Duration,
    /// Measured time of each workload.
    pub measure: Duration,
    /// Queue counts to run, in order.
    pub queues: Vec<usize>,
    /// Rounds per workload and peer (the median is reported).
    pub rounds: usize,
    /// Run only the workloads whose name contains this.
    pub only: Option<String>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            image_mib: 256,
            dir: "/dev/shm".into(),
            warmup: Duration::from_millis(500),
            measure: Duration::from_secs(2),
            queues: vec![1, 2],
            rounds: 3,
            only: None,
        }
    }
}

impl BenchOptions {
    /// The defaults, with `PVIO_BENCH_SECONDS` (measured seconds per
    /// workload) and `PVIO_BENCH_DIR` (image directory) applied.
    pub fn from_env() -> Self {
        let mut o = Self::default();
        if let Some(secs) = std::env::var("PVIO_BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| *s > 0.0 && *s < 3600.0)
        {
            o.measure = Duration::from_secs_f64(secs);
        }
        if let Some(r) = std::env::var("PVIO_BENCH_ROUNDS")
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|r| (1..=99).contains(r))
        {
            o.rounds = r;
        }
        o.only = std::env::var("PVIO_BENCH_ONLY").ok();
        if let Some(dir) = std::env::var_os("PVIO_BENCH_DIR") {
            o.dir = dir.into();
        }
        o
    }
}

/// The workloads, in order.
pub const WORKLOADS: [Workload; 5] = [
    Workload {
        name: "randread 4k QD1",
        write: false,
        random: true,
        block: 4096,
        depth: 1,
    },
    Workload {
        name: "randread 4k QD32",
        write: false,
        random: true,
        block: 4096,
        depth: 32,
    },
    Workload {
        name: "randwrite 4k QD1",
        write: true,
        random: true,
        block: 4096,
        depth: 1,
    },
    Workload {
        name: "randwrite 4k QD32",
        write: true,
        random: true,
        block: 4096,
        depth: 32,
    },
    Workload {
        name: "seqread 128k QD8",
        write: false,
        random: false,
        block: 128 * 1024,
        depth: 8,
    },
];

const PEERS: [Peer; 3] = [Peer::Pvio, Peer::Qsd, Peer::PvioNull];

/// One measured cell.
#[derive(Clone, Debug)]
pub struct Row {
    /// Queues (and client threads).
    pub queues: usize,
    /// The workload.
    pub workload: Workload,
    /// The backend.
    pub peer: Peer,
    /// The median round.
    pub sample: Sample,
    /// Lowest and highest IOPS over the rounds.
    pub spread: (f64, f64),
}

/// The round with the median IOPS, with the median of the rounds' median
/// latencies.
fn median_round(mut rounds: Vec<Sample>) -> Sample {
    let mut lat: Vec<Duration> = rounds.iter().map(|s| s.median).collect();
    lat.sort_unstable();
    rounds.sort_by(|a, b| a.iops().total_cmp(&b.iops()));
    let mid = rounds.len() / 2;
    let mut s = rounds.swap_remove(mid);
    s.median = lat.get(lat.len() / 2).copied().unwrap_or_default();
    s
}

fn spread(rounds: &[Sample]) -> (f64, f64) {
    let iops = rounds.iter().map(Sample::iops);
    let lo = iops.clone().fold(f64::INFINITY, f64::min);
    let hi = iops.fold(0.0, f64::max);
    (lo, hi)
}

/// Runs everything, printing the table (Markdown) to `out` as it goes.
pub fn run(opts: &BenchOptions, out: &mut dyn Write) -> Result<Vec<Row>, BenchError> {
    let dir = tempfile_dir(&opts.dir)?;
    let image = dir.path().join("bench.img");
    fill_image(&image, opts.image_mib)?;
    let image_len = opts.image_mib << 20;
    let say = |out: &mut dyn Write, s: &str| writeln!(out, "{s}").map_err(BenchError::Output);
    say(out, &format!("{}\n", machine_line(&opts.dir)))?;
    say(
        out,
        &format!(
            "{} rounds of {:?} per cell, peers alternating; the median round is shown, \
             with the IOPS range over the rounds in brackets.\n",
            opts.rounds.max(1),
            opts.measure
        ),
    )?;
    say(
        out,
        "| queues | workload | backend | IOPS [range] | MB/s | median latency | pvio / qsd |",
    )?;
    say(out, "| ---: | --- | --- | ---: | ---: | ---: | ---: |")?;
    let mut rows = Vec::new();
    for &queues in &opts.queues {
        let mut running = Vec::new();
        for peer in PEERS {
            running.push((peer, peer::start(peer, &image, dir.path(), queues)?));
        }
        let only = opts.only.as_deref().unwrap_or("");
        for wl in WORKLOADS.into_iter().filter(|w| w.name.contains(only)) {
            // Rounds alternate the peers so that noise from the shared
            // machine falls on all of them alike; each peer's median round
            // is reported.
            let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); running.len()];
            for _ in 0..opts.rounds.max(1) {
                for ((peer, r), got) in running.iter().zip(samples.iter_mut()) {
                    let sample =
                        client::run(&r.socket, queues, wl, image_len, opts.warmup, opts.measure)?;
                    if sample.errors > 0 {
                        return Err(BenchError::Client(format!(
                            "{} failed {} requests in {}",
                            peer.name(),
                            sample.errors,
                            wl.name
                        )));
                    }
                    got.push(sample);
                }
            }
            for ((peer, _), got) in running.iter().zip(samples) {
                let row = Row {
                    queues,
                    workload: wl,
                    peer: *peer,
                    spread: spread(&got),
                    sample: median_round(got),
                };
                say(out, &format_row(&row, &rows))?;
                rows.push(row);
            }
        }
    }
    say(out, "")?;
    say(out, &targets(&rows))?;
    Ok(rows)
}

fn format_row(row: &Row, earlier: &[Row]) -> String {
    let s = &row.sample;
    let ratio = match row.peer {
        Peer::Qsd => find(earlier, row.queues, row.workload.name, Peer::Pvio)
            .map(|p| {
                format!(
                    "{:.2}x IOPS, {:.2}x latency",
                    p.iops() / s.iops().max(1e-9),
                    p.median.as_secs_f64() / s.median.as_secs_f64().max(1e-12)
                )
            })
            .unwrap_or_default(),
        _ => String::new(),
    };
    format!(
        "| {} | {} | {} | {:.0} [{:.0}-{:.0}] | {:.1} | {:.1} µs | {} |",
        row.queues,
        row.workload.name,
        row.peer.name(),
        s.iops(),
        row.spread.0,
        row.spread.1,
        s.mbps(row.workload.block),
        s.median.as_secs_f64() * 1e6,
        ratio
    )
}

fn find<'a>(rows: &'a [Row], queues: usize, workload: &str, peer: Peer) -> Option<&'a Sample> {
    rows.iter()
        .find(|r| r.queues == queues && r.workload.name == workload && r.peer == peer)
        .map(|r| &r.sample)
}

/// Issue 3's targets, each said met or missed with the figures.
pub fn targets(rows: &[Row]) -> String {
    let mut s = String::from("Targets (one queue, pvio vs qemu-storage-daemon):\n");
    let pair = |w: &str| Some((find(rows, 1, w, Peer::Pvio)?, find(rows, 1, w, Peer::Qsd)?));
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    if let Some((p, q)) = pair("randread 4k QD32") {
        let r = p.iops() / q.iops().max(1e-9);
        let _ = writeln!(
            s,
            "- 4 KiB random read QD32 IOPS >= 1.5x: {r:.2}x, {}",
            verdict(r >= 1.5)
        );
    }
    if let Some((p, q)) = pair("randread 4k QD1") {
        let r = p.median.as_secs_f64() / q.median.as_secs_f64().max(1e-12);
        let _ = writeln!(
            s,
            "- QD1 median latency <= 0.7x: {r:.2}x, {}",
            verdict(r <= 0.7)
        );
    }
    if let Some((p, q)) = pair("seqread 128k QD8") {
        let r = p.iops() / q.iops().max(1e-9);
        let _ = writeln!(
            s,
            "- 128 KiB sequential read MB/s >= 1.2x: {r:.2}x, {}",
            verdict(r >= 1.2)
        );
    }
    s
}

fn tempfile_dir(base: &std::path::Path) -> Result<TempDir, BenchError> {
    let path = base.join(format!("pvio-bench-blk-{}", std::process::id()));
    std::fs::create_dir_all(&path)
        .map_err(|e| BenchError::Setup(format!("{}: {e}", path.display())))?;
    Ok(TempDir(path))
}

/// A directory removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fully written image (no holes: reads hit real page-cache pages).
fn fill_image(path: &std::path::Path, mib: u64) -> Result<(), BenchError> {
    let mut f = std::fs::File::create(path)
        .map_err(|e| BenchError::Setup(format!("{}: {e}", path.display())))?;
    let mut chunk = vec![0u8; 1 << 20];
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    for b in chunk.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x.to_le_bytes()[0];
    }
    for _ in 0..mib {
        f.write_all(&chunk)
            .map_err(|e| BenchError::Setup(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

/// CPU model, core count, kernel and where the image is.
fn machine_line(dir: &std::path::Path) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown CPU");
    let cores = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "Machine: {model}, {cores} cores shared by the client and the backend; Linux {}; image in {}",
        kernel.trim(),
        dir.display()
    )
}
