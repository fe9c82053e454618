//! What the benchmark prints: one table row per measured cell with the
//! ratio pvio / that row (against every peer and the host ceiling), and
//! issue 12's targets, each said met or missed with its figure.
//!
//! It must not know how the figures were measured.

use std::fmt::Write as _;

use super::{Peer, Row, Sample};

/// The table's header.
pub const HEADER: &str =
    "| queues | workload | backend | IOPS [range] | MB/s | median latency | pvio / this |\n\
                          | ---: | --- | --- | ---: | ---: | ---: | ---: |";

/// pvio's IOPS and median latency over `row`'s, from the same run (`None`
/// for pvio's own row, or when pvio's is not measured yet).
pub fn ratio(rows: &[Row], row: &Row) -> Option<(f64, f64)> {
    if row.peer == Peer::Pvio {
        return None;
    }
    let p = find(rows, row.queues, row.workload.name, Peer::Pvio)?;
    Some(over(p, &row.sample))
}

/// `a`'s IOPS and median latency over `b`'s.
fn over(a: &Sample, b: &Sample) -> (f64, f64) {
    (
        a.iops() / b.iops().max(1e-9),
        a.median.as_secs_f64() / b.median.as_secs_f64().max(1e-12),
    )
}

/// One table row.
pub fn format_row(row: &Row, earlier: &[Row]) -> String {
    let s = &row.sample;
    let ratio = ratio(earlier, row)
        .map(|(iops, lat)| format!("{iops:.2}x IOPS, {lat:.2}x latency"))
        .unwrap_or_default();
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

/// Issue 12's targets for what `rows` measured: the page-cache set, or with
/// `direct` the O_DIRECT set. A target whose peer was not measured is left
/// out.
pub fn targets(rows: &[Row], direct: bool) -> String {
    let mut s = format!(
        "Targets ({}; pvio / peer, same run):\n",
        if direct {
            "O_DIRECT on a disk filesystem"
        } else {
            "page cache"
        }
    );
    let mut line = |what: String, got: f64, ok: bool| {
        let verdict = if ok { "met" } else { "MISSED" };
        let _ = writeln!(s, "- {what}: {got:.2}x, {verdict}");
    };
    let names: Vec<&str> = rows
        .iter()
        .filter(|r| r.queues == 1 && r.peer == Peer::Pvio)
        .map(|r| r.workload.name)
        .collect();
    for name in names {
        let Some(p) = find(rows, 1, name, Peer::Pvio) else {
            continue;
        };
        let small = name.contains(" 4k ");
        let qd32 = small && name.ends_with("QD32");
        for peer in [Peer::Qsd, Peer::Ch] {
            let Some(q) = find(rows, 1, name, peer) else {
                continue;
            };
            let want = match (direct, small, peer) {
                (true, _, _) => 1.0,
                (false, true, Peer::Qsd) => 1.5,
                (false, _, _) => 1.2,
            };
            let (r, _) = over(p, q);
            line(
                format!("{name} IOPS >= {want}x {}", peer.name()),
                r,
                r >= want,
            );
        }
        let Some(f) = find(rows, 1, name, Peer::Fio) else {
            continue;
        };
        let (r, lat) = over(p, f);
        if qd32 {
            let want = if direct { 0.95 } else { 0.8 };
            line(format!("{name} IOPS >= {want}x fio"), r, r >= want);
        }
        if direct && name.ends_with("QD1") {
            line(
                format!("{name} median latency <= 1.1x fio's"),
                lat,
                lat <= 1.1,
            );
        }
    }
    if !direct {
        for name in ["randread 4k QD32", "randwrite 4k QD32"] {
            if let (Some(one), Some(two)) = (
                find(rows, 1, name, Peer::Pvio),
                find(rows, 2, name, Peer::Pvio),
            ) {
                let (r, _) = over(two, one);
                line(format!("{name}, two queues >= 1.7x one queue"), r, r >= 1.7);
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::WORKLOADS;
    use super::*;

    fn row(queues: usize, w: usize, peer: Peer, ios: u64, median_us: u64) -> Row {
        Row {
            queues,
            workload: WORKLOADS[w],
            peer,
            sample: Sample {
                ios,
                elapsed: Duration::from_secs(1),
                median: Duration::from_micros(median_us),
                errors: 0,
            },
            spread: (0.0, 0.0),
        }
    }

    #[test]
    fn ratios_are_pvio_over_the_row_and_targets_name_each_peer() {
        // WORKLOADS[1] is randread 4k QD32.
        let rows = vec![
            row(1, 1, Peer::Pvio, 240, 100),
            row(1, 1, Peer::Qsd, 100, 200),
            row(1, 1, Peer::Ch, 250, 100),
            row(1, 1, Peer::Fio, 300, 50),
            row(2, 1, Peer::Pvio, 480, 100),
        ];
        assert_eq!(ratio(&rows, &rows[1]), Some((2.4, 0.5)));
        assert_eq!(ratio(&rows, &rows[0]), None);
        let t = targets(&rows, false);
        assert!(
            t.contains("randread 4k QD32 IOPS >= 1.5x qemu-storage-daemon: 2.40x, met"),
            "{t}"
        );
        assert!(
            t.contains("IOPS >= 1.2x cloud-hypervisor: 0.96x, MISSED"),
            "{t}"
        );
        assert!(t.contains("IOPS >= 0.8x fio: 0.80x, met"), "{t}");
        assert!(
            t.contains("two queues >= 1.7x one queue: 2.00x, met"),
            "{t}"
        );
        let d = targets(&rows, true);
        assert!(
            d.contains("IOPS >= 1x cloud-hypervisor: 0.96x, MISSED"),
            "{d}"
        );
        assert!(d.contains("IOPS >= 0.95x fio: 0.80x, MISSED"), "{d}");
        assert!(!d.contains("two queues"), "{d}");
    }
}
