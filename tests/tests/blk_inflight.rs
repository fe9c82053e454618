//! A backend that dies with requests in flight, under a real guest: QEMU's
//! `vhost-user-blk-pci` on a reconnecting chardev (`reconnect-ms`), the real
//! `pvio backend blk`, and in the guest a depth-32 verifying random-write
//! workload (`pvio-guest-io verify`). The test SIGKILLs the backend several
//! times while the guest writes, each time once the guest has printed its
//! next progress marker, and starts a new one on the same socket. QEMU
//! hands the new backend the inflight region (`SET_INFLIGHT_FD`), which
//! does again what the dead one left in flight. The guest must see no I/O
//! error, every block must read back as last written, and the host image
//! must have the digest the guest computed.
//!
//! Nothing is skipped: a missing QEMU, kernel package or `pvio` binary fails
//! the test with what to do.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pvio_tests::daemon::Daemon;
use pvio_tests::{pvio_bin, Guest};

const MIB: usize = 1 << 20;
const IMAGE_LEN: usize = 32 * MIB;
const WRITES: u64 = 24_000;
/// The progress markers after which the backend is killed.
const KILL_AT: [u64; 4] = [3_000, 8_000, 13_000, 18_000];

fn start_backend(socket: &Path, image: &Path) -> Daemon {
    // A SIGKILLed backend leaves its socket file: remove it, so that the
    // wait for the new one's socket is a wait for the new one.
    let _ = fs::remove_file(socket);
    let mut c = Command::new(pvio_bin());
    c.args(["backend", "blk", "--no-sandbox", "--socket"])
        .arg(socket)
        .arg("--image")
        .arg(image)
        .env("RUST_LOG", "info");
    Daemon::spawn("pvio", c, socket).unwrap_or_else(|e| panic!("{e}"))
}

/// FNV-1a 64, as the guest program computes it.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A moment within the next 40 ms, different each time.
fn random_delay() -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Duration::from_micros(u64::from(nanos % 40_000))
}

#[test]
fn spec_inflight_io_tracking_sigkilled_backends_make_a_slow_disk_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    fs::write(&image, vec![0u8; IMAGE_LEN]).unwrap();
    let socket = dir.path().join("blk.sock");
    let mut backend = start_backend(&socket, &image);

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

    let mut logs = String::new();
    for at in KILL_AT {
        guest
            .wait_for_console_line(&format!("IO-PROGRESS {at}"), Duration::from_secs(300))
            .unwrap_or_else(|e| panic!("{e}"));
        std::thread::sleep(random_delay());
        logs.push_str(&backend.log());
        let status = backend.stop_with(libc::SIGKILL).unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        eprintln!("[test] backend killed after {at} writes; starting a new one");
        backend = start_backend(&socket, &image);
    }
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
    let errors = out
        .output
        .lines()
        .skip_while(|l| !l.contains("WORKLOAD-EXIT"))
        .nth(1)
        .unwrap_or("");
    assert_eq!(
        errors.trim(),
        "0",
        "guest kernel I/O errors:\n{}",
        out.console
    );

    let got = fs::read(&image).unwrap();
    let digest = format!("\"digest\":\"{:016x}\"", fnv(&got));
    assert!(
        result.contains(&digest),
        "the host image differs from what the guest read back: {result} vs {digest}"
    );

    // Each new backend was given the region, and the replay path ran.
    let installed = logs.matches("inflight region installed").count();
    assert!(
        installed > KILL_AT.len(),
        "inflight region installed {installed} times:\n{logs}"
    );
    assert!(
        logs.contains("left in flight"),
        "no backend had anything to resubmit after {} kills:\n{logs}",
        KILL_AT.len()
    );
}
