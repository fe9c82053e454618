//! `pvio bench blk`: pvio's block backend against its peers and the host
//! ceiling, no VM (see `pvio_bench::blk` and `docs/benchmarks.md`), printed
//! as a Markdown table as it runs; with `--json`, the table goes to stderr
//! and the figures to stdout (for plots).
//!
//! It must not know how the backend works: it runs the library's benchmark
//! and prints its figures.

use std::process::ExitCode;

use pvio_bench::blk::{report, BenchOptions, Row};

use super::args::BenchBlkArgs;
use super::CliError;

/// Runs the block benchmark as `a` asks.
pub fn bench_blk(a: &BenchBlkArgs) -> Result<ExitCode, CliError> {
    let mut opts = BenchOptions::from_env(a.direct);
    opts.ch.clone_from(&a.peer_ch);
    // Not locked for the whole run: the backends it starts log to stderr.
    let rows = if a.json {
        pvio_bench::blk::run(&opts, &mut std::io::stderr())?
    } else {
        pvio_bench::blk::run(&opts, &mut std::io::stdout())?
    };
    if a.json {
        let figures: Vec<serde_json::Value> =
            rows.iter().map(|r| row(r, &rows, opts.direct)).collect();
        serde_json::to_writer_pretty(std::io::stdout().lock(), &figures)
            .map_err(CliError::Output)?;
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

/// One row of `pvio bench blk --json`, with pvio's IOPS and latency over
/// this row's (absent on pvio's own rows).
fn row(r: &Row, rows: &[Row], direct: bool) -> serde_json::Value {
    let s = &r.sample;
    let ratio = report::ratio(rows, r);
    serde_json::json!({
        "queues": r.queues,
        "workload": r.workload.name,
        "block": r.workload.block,
        "depth": r.workload.depth,
        "direct": direct,
        "backend": r.peer.name(),
        "iops": s.iops(),
        "iops_low": r.spread.0,
        "iops_high": r.spread.1,
        "mbs": s.mbps(r.workload.block),
        "median_us": s.median.as_secs_f64() * 1e6,
        "pvio_over_this_iops": ratio.map(|(iops, _)| iops),
        "pvio_over_this_latency": ratio.map(|(_, lat)| lat),
    })
}
