//! `pvio bench blk`: pvio's block backend against qemu-storage-daemon's
//! vhost-user-blk export, optionally Cloud Hypervisor's `vhost_user_block`,
//! and pvio over the null engine (the protocol floor), driven by the same
//! libblkio client in the same run; and fio with io_uring on the same file
//! (the host ceiling) when fio is installed. The image is in tmpfs (the
//! page cache: storage is not what is measured) or, with `direct`, on a
//! disk filesystem opened with O_DIRECT by every backend and by fio.
//!
//! Workloads (per queue): 4 KiB random read and write at depth 1 and 32,
//! 128 KiB sequential read at depth 8; with one queue, then two (one client
//! thread, or fio job, per queue). For each: IOPS, MB/s, median latency, the
//! ratio pvio / each other row, and at the end which of issue 12's targets
//! were met. The client runs on the same cores as the backends.
//!
//! It must not shape a workload to a target: the same client and settings
//! go to every peer.

mod client;
mod fio;
mod peer;
pub mod report;

use std::io::{self, Write};
use std::time::Duration;

pub use client::{Sample, Workload};
pub use peer::{Peer, PeerSetup};

use pvio_backends::blk::BlkError;

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
    /// O_DIRECT in every backend and in fio (`dir` on a disk filesystem).
    pub direct: bool,
    /// Cloud Hypervisor's `vhost_user_block` binary, for its row.
    pub ch: Option<std::path::PathBuf>,
    /// The fio row (when fio is installed).
    pub fio: bool,
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
            direct: false,
            ch: None,
            fio: true,
        }
    }
}

impl BenchOptions {
    /// The defaults, with `PVIO_BENCH_SECONDS` (measured seconds per
    /// workload), `PVIO_BENCH_ROUNDS`, `PVIO_BENCH_ONLY` (workloads whose
    /// name contains it), `PVIO_BENCH_QUEUES` (`1`, `2` or `1,2`),
    /// `PVIO_BENCH_MIB` (image size) and `PVIO_BENCH_DIR` (image directory;
    /// with `direct` it defaults to `/var/tmp`) applied.
    pub fn from_env(direct: bool) -> Self {
        let mut o = Self {
            direct,
            ..Self::default()
        };
        if direct {
            o.dir = "/var/tmp".into();
        }
        if let Some(q) = std::env::var("PVIO_BENCH_QUEUES").ok().and_then(|s| {
            s.split(',')
                .map(|q| {
                    q.trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|q| (1..=16).contains(q))
                })
                .collect::<Option<Vec<_>>>()
        }) {
            o.queues = q;
        }
        if let Some(mib) = std::env::var("PVIO_BENCH_MIB")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|m| (8..=65536).contains(m))
        {
            o.image_mib = mib;
        }
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

/// The rows of each workload, in order: pvio first (the others' ratios are
/// to it).
fn peers(opts: &BenchOptions) -> Vec<Peer> {
    let mut p = vec![Peer::Pvio, Peer::Qsd];
    if opts.ch.is_some() {
        p.push(Peer::Ch);
    }
    p.push(Peer::PvioNull);
    if opts.fio && fio::available() {
        p.push(Peer::Fio);
    }
    // For profiling one backend: `PVIO_BENCH_PEERS=pvio,fio` keeps those
    // rows (keys: pvio, qsd, ch, null, fio).
    if let Ok(keep) = std::env::var("PVIO_BENCH_PEERS") {
        p.retain(|peer| keep.split(',').any(|w| w.trim() == peer.key()));
    }
    p
}

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
    if opts.direct && on_tmpfs(&opts.dir) {
        return Err(BenchError::Setup(format!(
            "--direct measures a disk filesystem, and {} is tmpfs: set PVIO_BENCH_DIR",
            opts.dir.display()
        )));
    }
    let dir = tempfile_dir(&opts.dir)?;
    let image = dir.path().join("bench.img");
    fill_image(&image, opts.image_mib)?;
    let image_len = opts.image_mib << 20;
    let say = |out: &mut dyn Write, s: &str| writeln!(out, "{s}").map_err(BenchError::Output);
    say(out, &format!("{}\n", machine_line(&opts.dir, opts.direct)))?;
    say(
        out,
        &format!(
            "{} rounds of {:?} per cell, peers alternating; the median round is shown, \
             with the IOPS range over the rounds in brackets.\n",
            opts.rounds.max(1),
            opts.measure
        ),
    )?;
    say(out, report::HEADER)?;
    let setup = PeerSetup {
        direct: opts.direct,
        ch: opts.ch.clone(),
    };
    let peers = peers(opts);
    let mut rows = Vec::new();
    for &queues in &opts.queues {
        // Backends that serve connection after connection run for the
        // whole queue count; Cloud Hypervisor's daemon exits when its
        // client leaves and is started for each round; fio is no backend.
        let mut running = Vec::new();
        for &peer in &peers {
            let r = match peer {
                Peer::Pvio | Peer::Qsd | Peer::PvioNull => {
                    Some(peer::start(peer, &setup, &image, dir.path(), queues)?)
                }
                Peer::Ch | Peer::Fio => None,
            };
            running.push((peer, r));
        }
        let only = opts.only.as_deref().unwrap_or("");
        for wl in WORKLOADS.into_iter().filter(|w| w.name.contains(only)) {
            // Rounds alternate the peers so that noise from the shared
            // machine falls on all of them alike; each peer's median round
            // is reported.
            let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); running.len()];
            for _ in 0..opts.rounds.max(1) {
                for ((peer, r), got) in running.iter().zip(samples.iter_mut()) {
                    let sample = match (peer, r) {
                        (Peer::Fio, _) => {
                            fio::run(&image, queues, wl, opts.direct, opts.warmup, opts.measure)?
                        }
                        (_, Some(r)) => client::run(
                            &r.socket,
                            queues,
                            wl,
                            image_len,
                            opts.warmup,
                            opts.measure,
                        )?,
                        (_, None) => {
                            let r = peer::start(*peer, &setup, &image, dir.path(), queues)?;
                            run_fresh(&r.socket, queues, wl, image_len, opts)?
                        }
                    };
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
                say(out, &report::format_row(&row, &rows))?;
                rows.push(row);
            }
        }
    }
    say(out, "")?;
    say(out, &report::targets(&rows, opts.direct))?;
    Ok(rows)
}

/// The client on a daemon just started: its socket file exists from its
/// `bind`, but it may not listen yet, so a refused connection is tried
/// again for up to 2 s (a probe would use up a one-connection daemon).
fn run_fresh(
    socket: &std::path::Path,
    queues: usize,
    wl: Workload,
    image_len: u64,
    opts: &BenchOptions,
) -> Result<Sample, BenchError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        match client::run(socket, queues, wl, image_len, opts.warmup, opts.measure) {
            Err(BenchError::Client(e))
                if e.starts_with("connect:") && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// Whether `dir` is on tmpfs.
fn on_tmpfs(dir: &std::path::Path) -> bool {
    rustix::fs::statfs(dir).is_ok_and(|s| s.f_type == libc::TMPFS_MAGIC)
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
fn machine_line(dir: &std::path::Path, direct: bool) -> String {
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
        "Machine: {model}, {cores} cores shared by the client and the backend; Linux {}; image in {}{}",
        kernel.trim(),
        dir.display(),
        if direct { ", opened with O_DIRECT" } else { "" }
    )
}
