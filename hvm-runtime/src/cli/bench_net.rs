//! `pvio bench net`: the PV net backend alone, driven over its vhost-user
//! socket by pvio's no-VM driver, frames per second each way at 64 and 1500
//! bytes. The guest comparison (pvio vs QEMU's virtio-net, e1000, rtl8139)
//! boots guests and lives in `tests/tests/net_bench.rs`; see
//! `docs/benchmarks.md`.
//!
//! It must not know how the backend works: it runs the library's benchmark
//! and prints the figures, one line each, in a form scripts can read.

use std::process::ExitCode;
use std::time::Duration;

use pvio_bench::net::{frames_per_second, BenchError};

/// Frame sizes measured.
const SIZES: [usize; 2] = [64, 1500];
/// Time per direction and size.
const DURATION: Duration = Duration::from_secs(3);

/// Runs the measurement and prints `frames LEN tx FPS rx FPS offered FPS
/// rtt_us US` lines after a readable table.
pub fn bench_net() -> Result<ExitCode, BenchError> {
    println!(
        "pvio net backend alone (no VM; driver, backend and injector share this host's cores)"
    );
    println!(
        "{:>6}  {:>14}  {:>14}  {:>14}  {:>12}",
        "bytes", "tx frames/s", "rx frames/s", "rx offered/s", "rtt med. µs"
    );
    let mut lines = Vec::new();
    for len in SIZES {
        let r = frames_per_second(len, DURATION)?;
        println!(
            "{:>6}  {:>14.0}  {:>14.0}  {:>14.0}  {:>12.1}",
            r.frame_len, r.tx_fps, r.rx_fps, r.rx_offered_fps, r.rtt_median_us
        );
        lines.push(format!(
            "frames {} tx {:.0} rx {:.0} offered {:.0} rtt_us {:.1}",
            r.frame_len, r.tx_fps, r.rx_fps, r.rx_offered_fps, r.rtt_median_us
        ));
    }
    for l in lines {
        println!("{l}");
    }
    Ok(ExitCode::SUCCESS)
}
