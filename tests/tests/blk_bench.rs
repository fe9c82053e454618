//! The block benchmark in a guest (not a test: `#[ignore]`, run by hand):
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo test --release -p pvio-tests --test blk_bench -- --ignored --nocapture
//! ```
//!
//! In one run, with the same guest kernel, guest size, accelerator and image
//! (256 MiB, fully written, on tmpfs so that storage is not what is
//! measured), one guest after the other, the guest's own drivers do the same
//! direct I/O (`pvio-guest-io`, io_uring with `O_DIRECT` in the guest) on
//!
//! - pvio: `pvio backend blk` + QEMU `vhost-user-blk-pci`;
//! - qemu-storage-daemon's vhost-user-blk export (`aio=io_uring`), the
//!   userspace vhost-user peer, + the same `vhost-user-blk-pci`;
//! - QEMU's built-in virtio-blk (`aio=io_uring`), the in-VMM peer;
//! - an emulated IDE disk (`ide-hd` on the i440fx machine's PIIX
//!   controller), the fallback for guests without PV drivers.
//!
//! Workloads: 4 KiB random read and write at queue depth 1, 4 KiB random read
//! at depth 32, 128 KiB sequential read at depth 8. It prints a Markdown
//! table with the ratios pvio / each peer, and writes the figures as JSON
//! and an SVG chart to `PVIO_BENCH_OUT` (default `target/bench`).
//! `PVIO_BENCH_SECONDS` sets the seconds per workload (default 3).
//!
//! To narrow a run (when looking into one figure), `PVIO_BLK_BENCH_ROWS`
//! takes a comma-separated list of disks among `pvio`, `qsd`, `virtio` and
//! `ide` (in that order, pvio first when present: the ratios are against the
//! first row), and `PVIO_BLK_BENCH_ONLY` a comma-separated list of workload
//! names or parts of them (`128k`, `QD32`, `randread 4k QD1`); with
//! `PVIO_BLK_BENCH_ROUNDS=N` the chosen disks take turns N times (pvio, qsd,
//! pvio, qsd, ...) so that noise falls on all of them, and every round is
//! printed. `PVIO_BLK_BENCH_ARGS` adds (space-separated) options to the
//! `pvio backend blk` command line, e.g. `--queue-size 128`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pvio_tests::daemon::Daemon;
use pvio_tests::plot::{self, Panel};
use pvio_tests::{accel, pvio_bin, Guest, GuestBuilder};

const IMAGE_MIB: usize = 256;

/// (name, pattern, block bytes, depth).
type Workload = (&'static str, &'static str, u32, u32);

const WORKLOADS: [Workload; 4] = [
    ("randread 4k QD1", "randread", 4096, 1),
    ("randwrite 4k QD1", "randwrite", 4096, 1),
    ("randread 4k QD32", "randread", 4096, 32),
    ("read 128k QD8", "read", 131_072, 8),
];

/// One workload's figures, as `pvio-guest-io` prints them.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    iops: f64,
    mbs: f64,
    p50_us: f64,
    /// The disk's guest interrupts per request (warm-up included in the
    /// interrupts but not in the requests: an upper bound).
    irqs_per_req: f64,
}

#[derive(Debug, Clone)]
struct Row {
    name: &'static str,
    results: Vec<Figures>,
}

/// The workloads `PVIO_BLK_BENCH_ONLY` picks (all without it).
fn workloads() -> Vec<Workload> {
    let only = std::env::var("PVIO_BLK_BENCH_ONLY").unwrap_or_default();
    let wanted: Vec<String> = only
        .split(',')
        .map(|w| w.trim().to_lowercase())
        .filter(|w| !w.is_empty())
        .collect();
    let chosen: Vec<Workload> = WORKLOADS
        .iter()
        .copied()
        .filter(|w| wanted.is_empty() || wanted.iter().any(|x| w.0.to_lowercase().contains(x)))
        .collect();
    assert!(
        !chosen.is_empty(),
        "PVIO_BLK_BENCH_ONLY={only} matches no workload; the workloads are {:?}",
        WORKLOADS.map(|w| w.0)
    );
    chosen
}

/// The disks `PVIO_BLK_BENCH_ROWS` picks (all without it), in table order.
fn disks() -> Vec<&'static str> {
    const ALL: [&str; 4] = ["pvio", "qsd", "virtio", "ide"];
    let rows = std::env::var("PVIO_BLK_BENCH_ROWS").unwrap_or_default();
    let wanted: Vec<String> = rows
        .split(',')
        .map(|w| w.trim().to_lowercase())
        .filter(|w| !w.is_empty())
        .collect();
    for w in &wanted {
        assert!(
            ALL.contains(&w.as_str()),
            "PVIO_BLK_BENCH_ROWS: unknown disk {w}; the disks are {ALL:?}"
        );
    }
    ALL.into_iter()
        .filter(|d| wanted.is_empty() || wanted.iter().any(|w| w == d))
        .collect()
}

fn rounds() -> u32 {
    std::env::var("PVIO_BLK_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s| *s > 0)
        .unwrap_or(1)
}

fn seconds() -> u32 {
    std::env::var("PVIO_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s| *s > 0)
        .unwrap_or(3)
}

/// The guest script: every workload on `dev`, one `RESULT i {json}` line
/// each.
fn script(dev: &str, workloads: &[Workload]) -> String {
    let secs = seconds();
    // The disk's interrupts (virtio or IDE lines of /proc/interrupts, all
    // CPUs) before and after each workload.
    let mut s = String::from(
        "irqs() { grep -E 'virtio|ata_piix|ide' /proc/interrupts | \
         awk '{ for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i } END { print n + 0 }'; }\n",
    );
    for (i, (_, pattern, bs, qd)) in workloads.iter().enumerate() {
        let _ = writeln!(
            s,
            "a=$(irqs); r=$(pvio-guest-io /dev/{dev} {pattern} {bs} {qd} {secs}); \
             b=$(irqs); echo \"RESULT {i} $r $((b - a))\""
        );
    }
    s
}

/// A JSON number field from `pvio-guest-io`'s one-line output.
fn field(json: &str, key: &str) -> Option<f64> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &json[at..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

fn parse(output: &str, workloads: &[Workload]) -> Vec<Figures> {
    let mut results = vec![Figures::default(); workloads.len()];
    for line in output.lines() {
        let Some(rest) = line.strip_prefix("RESULT ") else {
            continue;
        };
        let (i, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        let i: usize = i.parse().expect("workload index");
        let (json, irqs) = rest.rsplit_once("} ").unwrap_or((rest, "0"));
        let ops = field(json, "ops").unwrap_or(0.0);
        let irqs: f64 = irqs.trim().parse().unwrap_or(0.0);
        results[i] = Figures {
            iops: field(json, "iops").unwrap_or_else(|| panic!("no iops in {line}")),
            mbs: field(json, "mbs").unwrap_or(0.0),
            p50_us: field(json, "p50_us").unwrap_or(0.0),
            irqs_per_req: if ops > 0.0 { irqs / ops } else { 0.0 },
        };
    }
    results
}

/// The i440fx machine (`pc`), whose PIIX IDE controller is the emulated
/// disk of a guest without PV drivers (q35 would give AHCI); every contender
/// runs on it.
fn base() -> GuestBuilder {
    Guest::builder()
        .machine("pc")
        .memory_mib(512)
        .timeout(Duration::from_secs(300))
        .modules(&["virtio_pci", "virtio_blk", "ata_piix", "sd_mod"])
        .host_binary(env!("CARGO_BIN_EXE_pvio-guest-io"))
}

fn measure(name: &'static str, dev: &str, guest: GuestBuilder, workloads: &[Workload]) -> Row {
    eprintln!("[bench] {name}");
    let out = guest
        .run_strict(&script(dev, workloads))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let results = parse(&out.output, workloads);
    for (w, f) in workloads.iter().zip(&results) {
        assert!(f.iops > 0.0, "{name} {}: no result\n{}", w.0, out.output);
    }
    eprintln!("[bench] {name}: {results:?}");
    Row { name, results }
}

fn filled_image(path: &Path) {
    let mut data = vec![0u8; IMAGE_MIB << 20];
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(path, &data).expect("write the image");
}

fn vhost_user_guest(socket: &Path) -> GuestBuilder {
    let chardev = format!("socket,id=c0,path={}", socket.display());
    base().shared_memory(true).qemu_args(&[
        "-chardev",
        &chardev,
        "-device",
        "vhost-user-blk-pci,chardev=c0,num-queues=1",
    ])
}

fn qemu_drive_guest(image: &Path, device: &str) -> GuestBuilder {
    let blockdev = format!(
        "driver=file,filename={},node-name=f,aio=io_uring,cache.direct=off",
        image.display()
    );
    base().qemu_args(&["-blockdev", &blockdev, "-device", device])
}

#[test]
#[ignore = "a benchmark: run by hand, see the file's doc"]
fn pvio_vs_qemu_storage_daemon_vs_virtio_blk_vs_ide_in_a_guest() {
    let dir = tempfile::Builder::new()
        .prefix("pvio-blk-bench")
        .tempdir_in("/dev/shm")
        .expect("a directory on tmpfs");
    let image = dir.path().join("disk.img");
    filled_image(&image);
    let workloads = workloads();
    let disks = disks();
    let rounds = rounds();
    for round in 1..=rounds {
        let mut rows = Vec::new();
        for disk in &disks {
            rows.push(run_disk(disk, dir.path(), &image, &workloads));
        }
        if rounds > 1 {
            println!("\nround {round} of {rounds}");
        }
        report(&rows, &workloads);
    }
}

/// One disk's guest run, with its backend started before and stopped after.
fn run_disk(disk: &str, dir: &Path, image: &Path, workloads: &[Workload]) -> Row {
    match disk {
        "pvio" => {
            let socket = dir.join("pvio.sock");
            let mut cmd = Command::new(pvio_bin());
            cmd.args(["backend", "blk", "--socket"])
                .arg(&socket)
                .arg("--image")
                .arg(image)
                .args(
                    std::env::var("PVIO_BLK_BENCH_ARGS")
                        .unwrap_or_default()
                        .split_whitespace(),
                );
            let backend = Daemon::spawn("pvio", cmd, &socket).unwrap_or_else(|e| panic!("{e}"));
            let row = measure(
                "pvio (vhost-user-blk)",
                "vda",
                vhost_user_guest(&socket),
                workloads,
            );
            assert!(backend.stop().expect("stop pvio").success());
            row
        }
        "qsd" => {
            let socket = dir.join("qsd.sock");
            let mut cmd = Command::new("qemu-storage-daemon");
            cmd.arg("--blockdev")
                .arg(format!(
                    "driver=file,filename={},node-name=f,aio=io_uring,cache.direct=off",
                    image.display()
                ))
                .arg("--export")
                .arg(format!(
                    "type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path={},writable=on,num-queues=1",
                    socket.display()
                ));
            let qsd = Daemon::spawn("qsd", cmd, &socket).unwrap_or_else(|e| panic!("{e}"));
            let row = measure(
                "qemu-storage-daemon (vhost-user-blk)",
                "vda",
                vhost_user_guest(&socket),
                workloads,
            );
            drop(qsd);
            row
        }
        "virtio" => measure(
            "QEMU virtio-blk (built-in)",
            "vda",
            qemu_drive_guest(image, "virtio-blk-pci,drive=f"),
            workloads,
        ),
        _ => measure(
            "IDE (emulated)",
            "sda",
            qemu_drive_guest(image, "ide-hd,drive=f,bus=ide.0"),
            workloads,
        ),
    }
}

fn report(rows: &[Row], workloads: &[Workload]) {
    let accel = accel::detect().accel;
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let pvio = &rows[0];
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| workload | disk | IOPS | MB/s | median latency (µs) | interrupts / request | pvio / this (IOPS) | pvio / this (latency) |"
    );
    let _ = writeln!(t, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (i, w) in workloads.iter().enumerate() {
        for r in rows {
            let f = r.results[i];
            let p = pvio.results[i];
            let _ = writeln!(
                t,
                "| {} | {} | {:.0} | {:.1} | {:.1} | {:.2} | {:.2}x | {:.2}x |",
                w.0,
                r.name,
                f.iops,
                f.mbs,
                f.p50_us,
                f.irqs_per_req,
                p.iops / f.iops,
                p.p50_us / f.p50_us,
            );
        }
    }
    println!("\nBlock, in a guest, accelerator {accel}, {date}:\n\n{t}");
    println!("(IOPS ratio above 1 and latency ratio below 1 mean pvio is faster)\n");

    let mut panels = Vec::new();
    for (i, w) in workloads.iter().enumerate() {
        // Small requests count in IOPS, large ones in MB/s.
        let (unit, pick): (&str, fn(&Figures) -> f64) = if w.2 > 4096 {
            ("MB/s", |f| f.mbs)
        } else {
            ("IOPS", |f| f.iops)
        };
        panels.push(Panel {
            title: w.0.to_owned(),
            unit: unit.to_owned(),
            lower_is_better: false,
            bars: rows
                .iter()
                .map(|r| (r.name.to_owned(), pick(&r.results[i])))
                .collect(),
        });
        if w.3 == 1 {
            panels.push(Panel {
                title: format!("{} median latency", w.0),
                unit: "µs".to_owned(),
                lower_is_better: true,
                bars: rows
                    .iter()
                    .map(|r| (r.name.to_owned(), r.results[i].p50_us))
                    .collect(),
            });
        }
    }
    let svg = plot::svg(
        "Block devices in a guest",
        &format!(
            "guest direct I/O (io_uring, O_DIRECT), image on tmpfs; accelerator {accel}; {date}"
        ),
        "pvio",
        &panels,
    );
    let svg_path = plot::write_bench_file("blk-guest.svg", &svg).expect("write the chart");
    let mut json = String::from("[");
    for (ri, r) in rows.iter().enumerate() {
        for (i, w) in workloads.iter().enumerate() {
            let f = r.results[i];
            let sep = if ri + i == 0 { "" } else { "," };
            let _ = write!(
                json,
                "{sep}\n  {{\"disk\":\"{}\",\"workload\":\"{}\",\"iops\":{:.0},\"mbs\":{:.1},\"p50_us\":{:.1}}}",
                r.name, w.0, f.iops, f.mbs, f.p50_us
            );
        }
    }
    json.push_str("\n]\n");
    plot::write_bench_file("blk-guest.json", &json).expect("write the figures");
    println!("chart: {}", svg_path.display());
}
