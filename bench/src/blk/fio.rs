//! The host ceiling: `fio --ioengine=io_uring` on the image itself, with the
//! workload's block size and depth, one job per queue the backends get, the
//! same warm-up and measured time, and O_DIRECT when the backends have it.
//! No vhost-user, no guest memory: what the host's kernel does for one
//! thread per queue with the file the backends serve.
//!
//! It must not know about the backends.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{BenchError, Sample, Workload};

/// Whether `fio` can be run.
pub fn available() -> bool {
    Command::new("fio")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `wl` on `image` with `jobs` jobs and returns what fio measured.
pub fn run(
    image: &Path,
    jobs: usize,
    wl: Workload,
    direct: bool,
    warmup: Duration,
    measure: Duration,
) -> Result<Sample, BenchError> {
    let rw = match (wl.write, wl.random) {
        (false, true) => "randread",
        (true, true) => "randwrite",
        (false, false) => "read",
        (true, false) => "write",
    };
    let out = Command::new("fio")
        .args([
            "--name=ceiling",
            "--ioengine=io_uring",
            "--thread",
            "--group_reporting",
            "--time_based",
            "--output-format=terse",
            "--terse-version=3",
            "--norandommap",
            "--randrepeat=0",
        ])
        .arg(format!("--filename={}", image.display()))
        .arg(format!("--rw={rw}"))
        .arg(format!("--bs={}", wl.block))
        .arg(format!("--iodepth={}", wl.depth))
        .arg(format!("--numjobs={jobs}"))
        .arg(format!("--direct={}", u8::from(direct)))
        .arg(format!("--ramp_time={}ms", warmup.as_millis()))
        .arg(format!("--runtime={}ms", measure.as_millis()))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| BenchError::Peer(format!("cannot run fio ({e}); install the fio package")))?;
    if !out.status.success() {
        return Err(BenchError::Peer(format!(
            "fio failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    parse(&out.stdout, wl.write, measure)
}

/// Fields of one direction in fio's terse (version 3) line: reads start at
/// field 6 (1-based), writes 41 fields later.
const WRITE_SHIFT: usize = 41;
/// 0-based: the error field, IOPS, and the completion-latency percentiles.
const ERROR: usize = 4;
const IOPS: usize = 7;
const CLAT_PERCENTILES: std::ops::Range<usize> = 17..37;

/// The sample in fio's terse output (one group with `--group_reporting`):
/// IOPS and the median completion latency (µs) of the workload's direction.
fn parse(terse: &[u8], write: bool, measure: Duration) -> Result<Sample, BenchError> {
    let bad = |what: &str| BenchError::Peer(format!("fio's output lacks {what}"));
    let text = String::from_utf8_lossy(terse);
    // fio may print notes before its line.
    let line = text
        .lines()
        .find(|l| l.starts_with("3;"))
        .ok_or_else(|| bad("a terse line"))?;
    let fields: Vec<&str> = line.split(';').collect();
    let shift = if write { WRITE_SHIFT } else { 0 };
    let iops: f64 = fields
        .get(IOPS + shift)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| bad("IOPS"))?;
    let errors = fields.get(ERROR).and_then(|f| f.parse().ok()).unwrap_or(0);
    let median_us: f64 = fields
        .get(CLAT_PERCENTILES.start + shift..CLAT_PERCENTILES.end + shift)
        .unwrap_or_default()
        .iter()
        .find_map(|f| f.strip_prefix("50.000000%="))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad("a median latency"))?;
    Ok(Sample {
        ios: count_in(iops, measure),
        elapsed: measure,
        median: Duration::from_secs_f64((median_us / 1e6).max(0.0)),
        errors,
    })
}

/// Requests in `measure` at `iops` (whole requests; 0 for nonsense).
// No `try_from` from a float: the value is checked to be a whole number in
// range first, so the cast is exact.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn count_in(iops: f64, measure: Duration) -> u64 {
    let n = (iops * measure.as_secs_f64()).round();
    if n.is_finite() && (0.0..1e15).contains(&n) {
        n as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_iops_and_the_median_completion_latency() {
        // A read section of 41 fields and the start of a write one, as fio
        // 3.33 prints them.
        let mut f: Vec<String> = vec![
            "3".into(),
            "fio-3.33".into(),
            "c".into(),
            "0".into(),
            "0".into(),
        ];
        let side = |iops: &str, median: &str| {
            let mut s: Vec<String> = vec!["0".into(); 41];
            s[2] = iops.into();
            for (i, p) in [1, 5, 10, 20, 30, 40, 50, 60].iter().enumerate() {
                s[12 + i] = format!("{p}.000000%={}", if *p == 50 { median } else { "1" });
            }
            s
        };
        f.extend(side("79000.5", "72"));
        f.extend(side("1000", "9"));
        let line = format!("note: something\n{}\n", f.join(";"));
        let s = parse(line.as_bytes(), false, Duration::from_secs(2)).unwrap();
        assert_eq!(s.ios, 158_001);
        assert_eq!(s.median, Duration::from_micros(72));
        assert_eq!(s.errors, 0);
        let w = parse(line.as_bytes(), true, Duration::from_secs(2)).unwrap();
        assert_eq!((w.ios, w.median), (2000, Duration::from_micros(9)));
        assert!(parse(b"3;fio;c;0;0", true, Duration::from_secs(2)).is_err());
    }
}
