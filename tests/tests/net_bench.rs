//! The net benchmark (not a test: `#[ignore]`, run by hand):
//!
//! ```text
//! cargo build --release -p pvio-hvm-runtime
//! cargo test --release -p pvio-tests --test net_bench -- --ignored --nocapture
//! ```
//!
//! In one run, with the same guest kernel, guest size and accelerator, one
//! guest after the other on the same tap (10.99.0.1/24 in a namespace the
//! benchmark makes, the guest 10.99.0.2): ping latency (20 pings) and TCP
//! throughput of 64 MiB guest to host (pulled from the guest's `httpd`) and
//! host to guest (`nc`), for
//!
//! - pvio: `pvio backend net` + QEMU `-netdev vhost-user` + `virtio-net-pci`;
//! - QEMU's own virtio-net on the tap (`-netdev tap,vhost=off`), the
//!   userspace peer;
//! - the emulated `e1000` and `rtl8139` NICs on the tap, the fallbacks.
//!
//! Both virtio-net rows use `vectors=0` (INTx): QEMU 7.2 under TCG crashes
//! when a vhost-user virtio-net unmasks an MSI-X vector, so pvio cannot use
//! MSI-X there; the QEMU virtio-net row with MSI-X is printed too. Then
//! `pvio bench net` measures the backend alone (frames per second at 64 and
//! 1500 bytes). It prints a Markdown table with the ratios pvio / each peer,
//! and for each NIC the spread of its ping times (min, median, 90th
//! percentile, max: an average hides a long tail) and the interrupts the
//! guest took from the NIC per ping.
//!
//! For investigations, environment variables narrow a run:
//! `PVIO_NET_BENCH_ROWS` takes a comma-separated list of rows to measure
//! (`pvio`, `virtio`, `virtio-msix`, `e1000`, `rtl8139`; all by default, and
//! `pvio bench net` only then); `PVIO_NET_BENCH_VIRTIO_OPTS` is appended to
//! both virtio-net devices' options (for example `,event_idx=off`);
//! `PVIO_NET_BENCH_PINGS` sets the number of pings (20 by default); and
//! `PVIO_BIN` picks the `pvio` binary (to compare two builds).

mod net_support;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use std::io::{Read, Write};

use net_support::{serve, Backend, NetNs, OneGuest, HOST_IP, MIB};
use pvio_tests::plot::{self, Panel};
use pvio_tests::{accel, pvio_bin, Guest, GuestBuilder};

const TAP: &str = "pvb0";
const BYTES: usize = 64 * MIB;

/// What one NIC measured.
#[derive(Debug, Clone)]
struct Row {
    name: &'static str,
    ping_avg_ms: f64,
    /// Every ping's round trip, sorted.
    pings_ms: Vec<f64>,
    /// The NIC's interrupts in the guest during the pings, per ping.
    irqs_per_ping: f64,
    to_host_mbs: f64,
    to_guest_mbs: f64,
}

/// Guest to host: the host pulls 64 MiB from the guest's busybox `httpd`
/// (which sends with `sendfile`: a busybox `nc` reading a pipe would be the
/// bottleneck under TCG); host to guest: the guest reads 64 MiB with `nc`.
/// The connection to port 5009 only tells the host that `httpd` is up, and
/// its close tells the guest that the pull is over.
const SCRIPT: &str = "\
ip link set lo up
ip link set eth0 up
ip addr add 10.99.0.2/24 dev eth0
ping -c 3 -W 5 10.99.0.1 >/dev/null
grep -E 'virtio|eth0' /proc/interrupts | sed 's/^/IRQS-BEFORE /'
ping -c PINGS -i 0.2 10.99.0.1
grep -E 'virtio|eth0' /proc/interrupts | sed 's/^/IRQS-AFTER /'
mkdir -p /www
dd if=/dev/zero of=/www/blob bs=1M count=64 2>/dev/null
httpd -p 8080 -h /www
nc 10.99.0.1 5009 </dev/null >/dev/null
nc 10.99.0.1 5002 </dev/null >/dev/null
echo BENCH-OK
";

/// Waits for the guest on port 5009, pulls `/blob` from its `httpd`, then
/// lets the guest go on. Returns the pull's duration.
fn pull_from_guest(ns: &NetNs) -> std::thread::JoinHandle<Duration> {
    let listener = ns
        .spawn(|| std::net::TcpListener::bind((HOST_IP, 5009)).expect("bind"))
        .join()
        .unwrap();
    ns.spawn(move || {
        let (sync, _) = listener.accept().expect("accept");
        let mut s = std::net::TcpStream::connect(("10.99.0.2", 8080)).expect("connect to httpd");
        let start = std::time::Instant::now();
        s.write_all(b"GET /blob HTTP/1.0\r\n\r\n").unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0usize;
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(e) => panic!("pull: {e}"),
            }
        }
        let took = start.elapsed();
        assert!(total >= BYTES, "pulled {total} bytes");
        drop(sync);
        took
    })
}

fn base() -> GuestBuilder {
    Guest::builder()
        .memory_mib(512)
        .timeout(Duration::from_secs(900))
        // QEMU's rtl8139 is an RTL8139C+: 8139cp drives it, not 8139too.
        .modules(&["virtio_pci", "virtio_net", "e1000", "8139cp"])
}

/// A QEMU that runs inside the namespace (for `-netdev tap` on its tap).
fn qemu_in(ns: &NetNs, dir: &Path) -> std::path::PathBuf {
    let wrapper = dir.join("qemu-in-netns");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec ip netns exec {} qemu-system-x86_64 \"$@\"\n",
            ns.name()
        ),
    )
    .unwrap();
    let mut perm = std::fs::metadata(&wrapper).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&wrapper, perm).unwrap();
    wrapper
}

fn mbs(d: Duration) -> f64 {
    64.0 * 1.048_576 / d.as_secs_f64()
}

fn measure(name: &'static str, ns: &NetNs, guest: &GuestBuilder) -> Row {
    let to_host = pull_from_guest(ns);
    let to_guest = serve(ns, 5002, vec![0x5a; BYTES]);
    let pings = std::env::var("PVIO_NET_BENCH_PINGS").unwrap_or_else(|_| "20".to_owned());
    let out = guest
        .run_strict(&SCRIPT.replace("PINGS", &pings))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(
        out.output.contains("BENCH-OK"),
        "{name}: {}\n{}",
        out.output,
        out.console
    );
    let host_took = to_host.join().unwrap();
    let guest_took = to_guest.join().unwrap();
    // "round-trip min/avg/max = 1.1/5.5/13.9 ms"
    let ping_avg_ms = out
        .output
        .lines()
        .find_map(|l| l.split("= ").nth(1))
        .and_then(|v| v.split('/').nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    // "64 bytes from 10.99.0.1: seq=0 ttl=64 time=0.912 ms"
    let mut pings_ms: Vec<f64> = out
        .output
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|v| v.trim_end_matches(" ms").trim().parse().ok())
        .collect();
    pings_ms.sort_by(f64::total_cmp);
    let irqs = |tag: &str| -> u32 {
        out.output
            .lines()
            .filter_map(|l| l.split(tag).nth(1))
            .flat_map(|l| {
                l.split_whitespace()
                    .skip(1)
                    .map_while(|n| n.parse::<u32>().ok())
            })
            .sum()
    };
    let pinged = u32::try_from(pings_ms.len()).unwrap_or(u32::MAX).max(1);
    let irqs_per_ping =
        f64::from(irqs("IRQS-AFTER ").saturating_sub(irqs("IRQS-BEFORE "))) / f64::from(pinged);
    let row = Row {
        name,
        ping_avg_ms,
        pings_ms,
        irqs_per_ping,
        to_host_mbs: mbs(host_took),
        to_guest_mbs: mbs(guest_took),
    };
    eprintln!("[bench] {row:?}");
    row
}

/// "min / median / p90 / max" of sorted ping times.
fn spread(sorted: &[f64]) -> String {
    if sorted.is_empty() {
        return "no ping times".to_owned();
    }
    let at = |q: f64| {
        let last = sorted.len() - 1;
        // Index of quantile `q`: small non-negative numbers, no loss.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((last as f64) * q).round() as usize;
        sorted[i.min(last)]
    };
    format!(
        "{:.2} / {:.2} / {:.2} / {:.2} ms",
        at(0.0),
        at(0.5),
        at(0.9),
        at(1.0)
    )
}

/// Whether row `key` is to be measured (`PVIO_NET_BENCH_ROWS`).
fn wanted(key: &str) -> bool {
    match std::env::var("PVIO_NET_BENCH_ROWS") {
        Ok(list) => list.split(',').any(|k| k.trim() == key),
        Err(_) => true,
    }
}

#[test]
#[ignore = "a benchmark: run by hand, see the file's doc"]
fn pvio_vs_qemu_virtio_net_vs_emulated_nics() {
    let _one = OneGuest::take();
    let dir = tempfile::tempdir().unwrap();
    let ns = NetNs::new("nb");
    ns.ip(&["tuntap", "add", "mode", "tap", "name", TAP]);
    ns.ip(&["addr", "add", &format!("{HOST_IP}/24"), "dev", TAP]);
    ns.ip(&["link", "set", TAP, "up"]);
    let qemu_ns = qemu_in(&ns, dir.path());
    let tap_netdev = format!("tap,id=net0,ifname={TAP},script=no,downscript=no,vhost=off");
    let mut rows = Vec::new();

    let virtio_opts = std::env::var("PVIO_NET_BENCH_VIRTIO_OPTS").unwrap_or_default();

    // pvio.
    if wanted("pvio") {
        let socket = dir.path().join("net.sock");
        let backend = Backend::start(&ns, TAP, &socket, &[]);
        let chardev = format!("socket,id=n0,path={}", socket.display());
        let device = format!("virtio-net-pci,netdev=net0,vectors=0{virtio_opts}");
        let pvio = base().shared_memory(true).qemu_args(&[
            "-chardev",
            &chardev,
            "-netdev",
            "vhost-user,id=net0,chardev=n0",
            "-device",
            &device,
        ]);
        rows.push(measure("pvio vhost-user-net", &ns, &pvio));
        backend.stop();
    }

    // QEMU's own NICs on the same tap, QEMU inside the namespace.
    for (key, name, device) in [
        (
            "virtio",
            "QEMU virtio-net (tap)",
            format!("virtio-net-pci,netdev=net0,vectors=0{virtio_opts}"),
        ),
        (
            "virtio-msix",
            "QEMU virtio-net (tap, MSI-X)",
            format!("virtio-net-pci,netdev=net0{virtio_opts}"),
        ),
        ("e1000", "e1000 (emulated)", "e1000,netdev=net0".to_owned()),
        (
            "rtl8139",
            "rtl8139 (emulated)",
            "rtl8139,netdev=net0".to_owned(),
        ),
    ] {
        if !wanted(key) {
            continue;
        }
        let g =
            base()
                .qemu_binary(&qemu_ns)
                .qemu_args(&["-netdev", &tap_netdev, "-device", &device]);
        rows.push(measure(name, &ns, &g));
    }
    assert!(!rows.is_empty(), "PVIO_NET_BENCH_ROWS selects no row");

    // The backend alone, unless the run was narrowed to some rows.
    let alone = if std::env::var_os("PVIO_NET_BENCH_ROWS").is_none() {
        let out = Command::new(pvio_bin())
            .args(["bench", "net"])
            .output()
            .expect("pvio bench net");
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        String::new()
    };

    // Ratios are against the first row measured (pvio unless left out).
    let pvio = rows[0].clone();
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| NIC | ping avg (ms) | guest→host (MB/s) | host→guest (MB/s) | pvio/peer ping | pvio/peer →host | pvio/peer →guest |"
    );
    let _ = writeln!(t, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in &rows {
        let _ = writeln!(
            t,
            "| {} | {:.2} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} |",
            r.name,
            r.ping_avg_ms,
            r.to_host_mbs,
            r.to_guest_mbs,
            pvio.ping_avg_ms / r.ping_avg_ms,
            pvio.to_host_mbs / r.to_host_mbs,
            pvio.to_guest_mbs / r.to_guest_mbs,
        );
    }
    println!("\n{t}");
    println!("(ping ratio below 1 = pvio faster; throughput ratio above 1 = pvio faster)\n");
    println!("ping min / median / p90 / max, and the NIC's guest interrupts per ping:");
    for r in &rows {
        println!(
            "  {}: {}, {:.2} interrupts",
            r.name,
            spread(&r.pings_ms),
            r.irqs_per_ping
        );
    }
    println!();
    println!("{alone}");
    chart(&rows);
}

/// The figures as JSON and a chart, in the benchmark output folder.
fn chart(rows: &[Row]) {
    let median = |r: &Row| r.pings_ms.get(r.pings_ms.len() / 2).copied().unwrap_or(0.0);
    let panel = |title: &str, unit: &str, lower: bool, f: &dyn Fn(&Row) -> f64| Panel {
        title: title.to_owned(),
        unit: unit.to_owned(),
        lower_is_better: lower,
        bars: rows.iter().map(|r| (r.name.to_owned(), f(r))).collect(),
    };
    let panels = [
        panel("ping guest to host, median", "ms", true, &median),
        panel("TCP guest to host, 64 MiB", "MB/s", false, &|r| {
            r.to_host_mbs
        }),
        panel("TCP host to guest, 64 MiB", "MB/s", false, &|r| {
            r.to_guest_mbs
        }),
    ];
    let accel = accel::detect().accel;
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let svg = plot::svg(
        "NICs in a guest",
        &format!("one guest per NIC, same tap and kernel; accelerator {accel}; {date}"),
        "pvio",
        &panels,
    );
    let path = plot::write_bench_file("net-guest.svg", &svg).expect("write the chart");
    let json: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "  {{\"nic\":\"{}\",\"ping_avg_ms\":{:.3},\"ping_median_ms\":{:.3},\"irqs_per_ping\":{:.2},\"to_host_mbs\":{:.1},\"to_guest_mbs\":{:.1}}}",
                r.name,
                r.ping_avg_ms,
                median(r),
                r.irqs_per_ping,
                r.to_host_mbs,
                r.to_guest_mbs
            )
        })
        .collect();
    plot::write_bench_file("net-guest.json", &format!("[\n{}\n]\n", json.join(",\n")))
        .expect("write the figures");
    println!("chart: {}", path.display());
}
