//! The block backend alone (not a test: `#[ignore]`, run by hand):
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo test --release -p pvio-tests --test blk_backend_bench -- --ignored --nocapture
//! ```
//!
//! Runs `pvio bench blk --json` (pvio, qemu-storage-daemon, pvio's null
//! engine and, with `PVIO_BENCH_PEER_CH` naming its binary, Cloud
//! Hypervisor's `vhost_user_block`, driven by the same libblkio client, no
//! VM; and fio on the same file; see `bench/src/blk/`), prints its
//! table, and writes the figures and a chart to `PVIO_BENCH_OUT` (default
//! `target/bench`) as `blk-backend.json` and `blk-backend.svg`; with
//! `PVIO_BENCH_DIRECT=1` the image is on a disk filesystem opened with
//! O_DIRECT (`--direct`) and the files are `blk-backend-direct.*`;
//! `PVIO_BENCH_FROM=figures.json` charts figures already measured instead.

use std::process::{Command, Stdio};

use pvio_tests::plot::{self, Panel};
use pvio_tests::pvio_bin;

#[test]
#[ignore = "a benchmark: run by hand, see the file's doc"]
fn pvio_vs_qemu_storage_daemon_vs_null_engine_without_a_vm() {
    let direct = std::env::var_os("PVIO_BENCH_DIRECT").is_some_and(|v| v == "1");
    // PVIO_BENCH_FROM=figures.json charts a run already made.
    let json = match std::env::var_os("PVIO_BENCH_FROM") {
        Some(path) => std::fs::read_to_string(path).expect("read PVIO_BENCH_FROM"),
        None => run_bench(direct),
    };
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json).expect("JSON rows");
    assert!(!rows.is_empty(), "no figures");
    let name = if direct {
        "blk-backend-direct"
    } else {
        "blk-backend"
    };
    plot::write_bench_file(&format!("{name}.json"), &json).expect("write the figures");

    // One panel per (queues, workload) in the order measured, one bar per
    // backend: IOPS for 4 KiB, MB/s for larger requests; and QD1 latency.
    let mut panels: Vec<Panel> = Vec::new();
    for r in &rows {
        let queues = r["queues"].as_u64().unwrap_or(0);
        let workload = r["workload"].as_str().unwrap_or("?");
        let backend = r["backend"].as_str().unwrap_or("?").to_owned();
        let large = r["block"].as_u64().unwrap_or(0) > 4096;
        let (unit, value) = if large {
            ("MB/s", r["mbs"].as_f64().unwrap_or(0.0))
        } else {
            ("IOPS", r["iops"].as_f64().unwrap_or(0.0))
        };
        let mut push = |title: String, unit: &str, lower: bool, v: f64| match panels
            .iter_mut()
            .find(|p| p.title == title)
        {
            Some(p) => p.bars.push((backend.clone(), v)),
            None => panels.push(Panel {
                title,
                unit: unit.to_owned(),
                lower_is_better: lower,
                bars: vec![(backend.clone(), v)],
            }),
        };
        let q = if queues == 1 { "queue" } else { "queues" };
        push(format!("{workload}, {queues} {q}"), unit, false, value);
        // pvio / this row, one panel per (queues, workload): above 1 means
        // pvio is ahead of that peer or ceiling.
        if let Some(ratio) = r["pvio_over_this_iops"].as_f64() {
            push(
                format!("{workload}, {queues} {q}: pvio / this (IOPS)"),
                "x",
                false,
                ratio,
            );
        }
        if r["depth"].as_u64() == Some(1) {
            push(
                format!("{workload}, {queues} {q}: median latency"),
                "µs",
                true,
                r["median_us"].as_f64().unwrap_or(0.0),
            );
        }
    }
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let image = if direct {
        "image on a disk filesystem, O_DIRECT"
    } else {
        "image on tmpfs"
    };
    let svg = plot::svg(
        "Block backends over vhost-user, no VM",
        &format!("libblkio client, {image}, no accelerator involved; {date}"),
        "pvio",
        &panels,
    );
    let path = plot::write_bench_file(&format!("{name}.svg"), &svg).expect("write the chart");
    println!("chart: {}", path.display());
}

/// `pvio bench blk --json`, its table on stderr; the figures.
fn run_bench(direct: bool) -> String {
    let mut cmd = Command::new(pvio_bin());
    cmd.args(["bench", "blk", "--json"]);
    if direct {
        cmd.arg("--direct");
    }
    if let Some(ch) = std::env::var_os("PVIO_BENCH_PEER_CH") {
        cmd.arg("--peer-ch").arg(ch);
    }
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .expect("run pvio bench blk");
    assert!(out.status.success(), "pvio bench blk failed");
    String::from_utf8(out.stdout).expect("UTF-8")
}
