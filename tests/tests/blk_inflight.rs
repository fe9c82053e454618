//! A backend that dies with requests in flight, under a real guest: QEMU's
//! `vhost-user-blk-pci` on a reconnecting chardev (`reconnect-ms`), the real
//! `pvio backend blk`, and in the guest a depth-32 verifying random-write
//! workload (`pvio-guest-io verify`, completions out of order). The test
//! SIGKILLs the backend ten times while the guest writes, each time at a
//! random moment after a randomly chosen progress marker the guest printed
//! (0-40 ms on, then the first moment the inflight region shows a request
//! the backend has taken and not completed), and starts a new one on the
//! same socket. The backend writes its image with `--direct`, so that its
//! requests take long enough to be caught. QEMU hands the new backend the
//! inflight region (`SET_INFLIGHT_FD`), which does again what the dead one
//! left in flight. The guest must see no I/O error, every block must read
//! back as last written, and the host image must have the digest the guest
//! computed.
//!
//! Two variants: one queue and one vCPU; two queues (`--num-queues 2`,
//! `num-queues=2`) and two vCPUs, with one workload pinned to each vCPU on
//! a partition of its own, so that both queues carry requests when the
//! backend dies (the guest's interrupt counts show it).
//!
//! Every kill lands while the guest writes: it follows a progress marker
//! below the workload's last, and no workload has printed its last marker
//! when the backend is dead (a workload cannot finish without a backend).
//!
//! Nothing is skipped: a missing QEMU, kernel package or `pvio` binary fails
//! the test with what to do.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pvio_hvm_runtime::domain::lock::FileLock;
use pvio_tests::daemon::Daemon;
use pvio_tests::{pvio_bin, Guest, RunningGuest};

const MIB: usize = 1 << 20;
const KILLS: u64 = 10;
/// The machine-wide "one guest at a time" lock of the guest-booting tests.
const ONE_GUEST_LOCK: &str = "/tmp/pvio-one-guest.lock";

fn start_backend(socket: &Path, image: &Path, queues: u16) -> Daemon {
    // A SIGKILLed backend leaves its socket file: remove it, so that the
    // wait for the new one's socket is a wait for the new one.
    let _ = fs::remove_file(socket);
    let mut c = Command::new(pvio_bin());
    c.args(["backend", "blk", "--no-sandbox", "--socket"])
        .arg(socket)
        .arg("--image")
        .arg(image)
        .args(["--num-queues", &queues.to_string()])
        // The image's own writes take a while (no host page cache), so a
        // kill finds requests the backend has taken and not completed.
        .arg("--direct")
        .env("RUST_LOG", "info");
    Daemon::spawn("pvio", c, socket).unwrap_or_else(|e| panic!("{e}"))
}

/// FNV-1a 64, as the guest program computes it.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// xorshift64, seeded from the clock (the seed is printed).
struct Rng(u64);

impl Rng {
    fn from_clock() -> Rng {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs().wrapping_mul(1_000_000_007) ^ u64::from(d.subsec_nanos()))
            .unwrap_or(1)
            | 1;
        eprintln!("[test] kill schedule seed {seed:#x}");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A moment within the next 40 ms.
    fn delay(&mut self) -> Duration {
        Duration::from_micros(self.next() % 40_000)
    }
}

/// The progress markers (multiples of 1000 writes) after which the backend
/// is killed: kill `k` falls at random within its own stretch of `stride`
/// thousand writes, which starts after `first` thousand.
fn kill_schedule(rng: &mut Rng, first: u64, stride: u64) -> Vec<u64> {
    (0..KILLS)
        .map(|k| 1000 * (first + k * stride + rng.next() % stride))
        .collect()
}

/// QEMU's descriptor of the inflight region (the memfd the first backend
/// made for `GET_INFLIGHT_FD`), opened again.
fn inflight_region(qemu: u32) -> Option<fs::File> {
    fs::read_dir(format!("/proc/{qemu}/fd"))
        .ok()?
        .filter_map(Result::ok)
        .find(|e| {
            fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().contains("pvio-inflight"))
        })
        .and_then(|e| fs::File::open(e.path()).ok())
}

/// Whether the region marks some request as taken by the backend and not
/// yet completed (the spec's layout: per queue a 16-byte header with
/// `desc_num` at offset 10, then 16 bytes per descriptor, `inflight` first;
/// queues at a stride of `16 desc_num + 2` rounded up to 64).
fn backend_holds_requests(region: &fs::File) -> bool {
    let len = region.metadata().map_or(0, |m| m.len());
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
    if std::os::unix::fs::FileExt::read_exact_at(region, &mut buf, 0).is_err() {
        return false;
    }
    let mut off = 0;
    while off + 16 <= buf.len() {
        let n = usize::from(u16::from_le_bytes([buf[off + 10], buf[off + 11]]));
        if n == 0 {
            break;
        }
        if (0..n).any(|i| buf.get(off + 16 + 16 * i).is_some_and(|b| *b != 0)) {
            return true;
        }
        off += (16 * n + 2).div_ceil(64) * 64;
    }
    false
}

/// Kills the backend after each marker of `schedule` and starts a new one;
/// returns the last backend, still running, and what the others logged.
fn kill_repeatedly(
    guest: &mut RunningGuest,
    mut backend: Daemon,
    schedule: &[u64],
    last_marker: u64,
    start: impl Fn() -> Daemon,
    rng: &mut Rng,
) -> (Daemon, String) {
    let mut logs = String::new();
    let last_line = format!("IO-PROGRESS {last_marker}");
    for &at in schedule {
        assert!(at < last_marker, "kill {at} after the last marker");
        guest
            .wait_for_console_line(&format!("IO-PROGRESS {at}"), Duration::from_secs(300))
            .unwrap_or_else(|e| panic!("{e}"));
        std::thread::sleep(rng.delay());
        // From there, the first moment the backend holds requests (at most
        // 5 s on: a guest that stops writing gets its kill all the same).
        let region = inflight_region(guest.pid()).expect("QEMU holds the inflight region");
        let since = Instant::now();
        while !backend_holds_requests(&region) && since.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_micros(100));
        }
        logs.push_str(&backend.log());
        let status = backend.stop_with(libc::SIGKILL).unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        // The backend is dead: no workload can reach its last marker now,
        // so none had reached it, and this kill fell among its writes.
        let console = guest.console();
        assert!(
            !console.lines().any(|l| l.trim() == last_line),
            "a workload had finished its writes when the backend was killed after {at}:\n{console}"
        );
        eprintln!("[test] backend killed after {at} writes; starting a new one");
        backend = start();
    }
    (backend, logs)
}

/// What the backends logged about the inflight region: every new backend
/// got it, and some backend found requests left in flight; returns those
/// log lines.
fn assert_replays(logs: &str) -> Vec<&str> {
    let installed = logs.matches("inflight region installed").count();
    assert!(
        installed > usize::try_from(KILLS).unwrap(),
        "inflight region installed {installed} times:\n{logs}"
    );
    let replays: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("left in flight"))
        .collect();
    assert!(
        !replays.is_empty(),
        "no backend had anything to resubmit after {KILLS} kills:\n{logs}"
    );
    eprintln!(
        "[test] {} resubmission(s) after {KILLS} kills:\n{}",
        replays.len(),
        replays.join("\n")
    );
    replays
}

/// The guest kernel logged no I/O error: the line after `after` (a
/// `dmesg | grep -c` count) is 0.
fn assert_no_kernel_errors(output: &str, console: &str, after: &str) {
    let errors = output
        .lines()
        .skip_while(|l| !l.contains(after))
        .nth(1)
        .unwrap_or("");
    assert_eq!(errors.trim(), "0", "guest kernel I/O errors:\n{console}");
}

#[test]
fn spec_inflight_io_tracking_sigkilled_backends_make_a_slow_disk_not_an_error() {
    const IMAGE_LEN: usize = 32 * MIB;
    const WRITES: u64 = 44_000;
    let _one_guest = FileLock::exclusive(Path::new(ONE_GUEST_LOCK)).expect("the one-guest lock");
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    fs::write(&image, vec![0u8; IMAGE_LEN]).unwrap();
    let socket = dir.path().join("blk.sock");
    let backend = start_backend(&socket, &image, 1);

    let chardev = format!("socket,id=c0,path={},reconnect-ms=100", socket.display());
    let script = format!(
        "pvio-guest-io /dev/vda verify 4096 32 {WRITES}; echo WORKLOAD-EXIT=$?\n\
         dmesg | grep -ciE 'I/O error|blk_update_request|critical' || true\n"
    );
    let mut guest = Guest::builder()
        .shared_memory(true)
        .memory_mib(512)
        .timeout(Duration::from_secs(900))
        .modules(&["virtio_pci", "virtio_blk"])
        .host_binary(env!("CARGO_BIN_EXE_pvio-guest-io"))
        .qemu_args(&[
            "-chardev",
            &chardev,
            "-device",
            "vhost-user-blk-pci,chardev=c0,num-queues=1",
        ])
        .spawn(&script)
        .unwrap_or_else(|e| panic!("{e}"));

    let mut rng = Rng::from_clock();
    // Kill k after 3000 + 4000 k to 6000 + 4000 k writes: the last by 42,000.
    let schedule = kill_schedule(&mut rng, 3, 4);
    let (backend, mut logs) = kill_repeatedly(
        &mut guest,
        backend,
        &schedule,
        WRITES,
        || start_backend(&socket, &image, 1),
        &mut rng,
    );
    let out = guest
        .wait(Duration::from_secs(600))
        .unwrap_or_else(|e| panic!("{e}"));
    logs.push_str(&backend.log());
    backend.stop().unwrap();

    assert!(
        out.output.contains("WORKLOAD-EXIT=0"),
        "the workload failed:\n{}",
        out.output
    );
    let result = out
        .output
        .lines()
        .find(|l| l.contains("\"digest\""))
        .unwrap_or_else(|| panic!("no result line:\n{}", out.output));
    assert!(result.contains(&format!("\"writes\":{WRITES}")), "{result}");
    assert_no_kernel_errors(&out.output, &out.console, "WORKLOAD-EXIT");

    let got = fs::read(&image).unwrap();
    let digest = format!("\"digest\":\"{:016x}\"", fnv(&got));
    assert!(
        result.contains(&digest),
        "the host image differs from what the guest read back: {result} vs {digest}"
    );
    // Each new backend was given the region, and the replay path ran.
    let _ = assert_replays(&logs);
}

/// The partitions of the two-queue test's disk: (first byte, length). Their
/// sizes differ, so each result line says which it is by its block count.
const PARTS: [(usize, usize); 2] = [(MIB, 24 * MIB), (25 * MIB, 32 * MIB)];

/// An MBR with [`PARTS`] as two Linux partitions.
fn mbr() -> [u8; 512] {
    let mut s = [0u8; 512];
    for (i, (start, len)) in PARTS.iter().enumerate() {
        let e = &mut s[446 + 16 * i..446 + 16 * (i + 1)];
        e[4] = 0x83;
        e[8..12].copy_from_slice(&u32::try_from(start / 512).unwrap().to_le_bytes());
        e[12..16].copy_from_slice(&u32::try_from(len / 512).unwrap().to_le_bytes());
    }
    s[510] = 0x55;
    s[511] = 0xaa;
    s
}

/// The completions counted on the guest's interrupt line of queue `q`
/// (`virtioN-req.Q` in `/proc/interrupts`, summed over the CPUs).
fn queue_interrupts(output: &str, q: usize) -> Option<u64> {
    let name = format!("-req.{q}");
    let line = output
        .lines()
        .find(|l| l.contains("virtio") && l.trim_end().ends_with(&name))?;
    let counts = line.split_once(':')?.1;
    Some(
        counts
            .split_whitespace()
            .map_while(|w| w.parse::<u64>().ok())
            .sum(),
    )
}

#[test]
fn spec_inflight_io_tracking_two_queues_two_vcpus_survive_ten_sigkills() {
    const IMAGE_LEN: usize = 57 * MIB;
    const WRITES: u64 = 24_000;
    let _one_guest = FileLock::exclusive(Path::new(ONE_GUEST_LOCK)).expect("the one-guest lock");
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    let mut bytes = vec![0u8; IMAGE_LEN];
    bytes[..512].copy_from_slice(&mbr());
    fs::write(&image, bytes).unwrap();
    let socket = dir.path().join("blk.sock");
    let backend = start_backend(&socket, &image, 2);

    let chardev = format!("socket,id=c0,path={},reconnect-ms=100", socket.display());
    let script = format!(
        "i=0; while [ ! -b /dev/vda2 ] && [ $i -lt 1200 ]; do i=$((i+1)); sleep 0.1; done\n\
         echo HW-QUEUES=$(ls /sys/block/vda/mq | wc -l)\n\
         taskset 1 pvio-guest-io /dev/vda1 verify 4096 32 {WRITES} & a=$!\n\
         taskset 2 pvio-guest-io /dev/vda2 verify 4096 32 {WRITES} & b=$!\n\
         wait $a; echo VDA1-EXIT=$?\n\
         wait $b; echo VDA2-EXIT=$?\n\
         grep virtio /proc/interrupts\n\
         echo KERNEL-ERRORS\n\
         dmesg | grep -ciE 'I/O error|blk_update_request|critical' || true\n"
    );
    let mut guest = Guest::builder()
        .shared_memory(true)
        .memory_mib(512)
        .vcpus(2)
        .timeout(Duration::from_secs(900))
        .modules(&["virtio_pci", "virtio_blk"])
        .host_binary(env!("CARGO_BIN_EXE_pvio-guest-io"))
        .qemu_args(&[
            "-chardev",
            &chardev,
            "-device",
            "vhost-user-blk-pci,chardev=c0,num-queues=2",
        ])
        .spawn(&script)
        .unwrap_or_else(|e| panic!("{e}"));

    let mut rng = Rng::from_clock();
    // Markers of either workload; kill k after 2000 + 2000 k or 3000 +
    // 2000 k writes: the last by 21,000, 3,000 before either ends.
    let schedule = kill_schedule(&mut rng, 2, 2);
    let (backend, mut logs) = kill_repeatedly(
        &mut guest,
        backend,
        &schedule,
        WRITES,
        || start_backend(&socket, &image, 2),
        &mut rng,
    );
    let out = guest
        .wait(Duration::from_secs(600))
        .unwrap_or_else(|e| panic!("{e}"));
    logs.push_str(&backend.log());
    backend.stop().unwrap();

    assert!(out.output.contains("HW-QUEUES=2"), "{}", out.output);
    for dev in ["VDA1", "VDA2"] {
        assert!(
            out.output.contains(&format!("{dev}-EXIT=0")),
            "the workload on {dev} failed:\n{}",
            out.output
        );
    }
    assert_no_kernel_errors(&out.output, &out.console, "KERNEL-ERRORS");
    // Both queues completed requests.
    for q in 0..2 {
        let n = queue_interrupts(&out.output, q)
            .unwrap_or_else(|| panic!("no interrupt line for queue {q}:\n{}", out.output));
        assert!(n > 0, "queue {q} completed nothing:\n{}", out.output);
    }

    let got = fs::read(&image).unwrap();
    for (start, len) in PARTS {
        let blocks = len / 4096;
        let result = out
            .output
            .lines()
            .find(|l| l.contains("\"digest\"") && l.contains(&format!("\"blocks\":{blocks},")))
            .unwrap_or_else(|| panic!("no result line for {blocks} blocks:\n{}", out.output));
        assert!(result.contains(&format!("\"writes\":{WRITES}")), "{result}");
        let digest = format!("\"digest\":\"{:016x}\"", fnv(&got[start..start + len]));
        assert!(
            result.contains(&digest),
            "the host image differs from what the guest read back: {result} vs {digest}"
        );
    }
    // Both queues had requests in flight at some kill.
    let replays = assert_replays(&logs);
    for q in 0..2 {
        assert!(
            replays
                .iter()
                .any(|l| l.contains(&format!("queue {q}: resubmitting"))),
            "queue {q} never had a request left in flight:\n{}",
            replays.join("\n")
        );
    }
}
