//! A real Linux guest on pvio's PV block backend: QEMU's
//! `vhost-user-blk-pci` on the socket of `pvio backend blk` (the real
//! binary), guest RAM from a shared memfd. Inside, the guest's own virtio_blk
//! driver writes with dd, syncs and reads back; the host then checks the
//! image byte for byte. Also the command itself with no guest: SIGTERM and
//! SIGINT (with and without a libblkio frontend connected), and the one-line
//! errors for images it cannot serve.
//!
//! Nothing is skipped: a missing QEMU, kernel package or `pvio` binary fails
//! the test with what to do. The guests run one at a time.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use pvio_tests::daemon::Daemon;
use pvio_tests::{pvio_bin, strict, Guest, GuestBuilder};

const MIB: usize = 1 << 20;
const IMAGE_LEN: usize = 32 * MIB;
/// Where the guest writes its pattern, and how much.
const PATTERN_AT: usize = MIB;
const PATTERN_LEN: usize = MIB;

/// One guest at a time on this 2-core machine.
static ONE_GUEST: Mutex<()> = Mutex::new(());

/// `pvio backend blk` running as a child process; stopped with a signal.
struct Backend(Daemon);

impl Backend {
    fn start(socket: &Path, image: &Path, extra: &[&str]) -> Self {
        let mut cmd = backend_blk(socket, image);
        cmd.args(extra);
        Self::from_command(cmd, socket)
    }

    /// Runs `cmd` and waits for it to create `socket`.
    fn from_command(cmd: Command, socket: &Path) -> Self {
        Self(Daemon::spawn("pvio", cmd, socket).unwrap_or_else(|e| panic!("{e}")))
    }

    /// SIGTERM, then the exit status must be success and the socket gone.
    fn stop(self) {
        self.stop_with(libc::SIGTERM);
    }

    /// Sends `sig`; the process must exit 0 within 10 s and remove its
    /// socket.
    fn stop_with(self, sig: libc::c_int) {
        let socket = self.0.socket().to_owned();
        let status = self.0.stop_with(sig).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            status.code(),
            Some(0),
            "pvio backend blk after signal {sig}"
        );
        assert!(!socket.exists(), "socket left behind after signal {sig}");
    }
}

/// A reproducible pattern: xorshift from `seed`.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[3]
        })
        .collect()
}

/// A guest with virtio_blk whose only disk is the vhost-user socket.
fn guest_on(socket: &Path, queues: u32) -> GuestBuilder {
    let chardev = format!("socket,id=c0,path={}", socket.display());
    let device = format!("vhost-user-blk-pci,chardev=c0,num-queues={queues}");
    Guest::builder()
        .shared_memory(true)
        .modules(&["virtio_pci", "virtio_blk"])
        .qemu_args(&["-chardev", &chardev, "-device", &device])
}

/// Writes the pattern at 1 MiB with dd, syncs, drops the caches and reads it
/// back through the device.
const WRITE_AND_READ_BACK: &str = "\
cat /sys/block/vda/size
dd if=/pattern.bin of=/dev/vda bs=64k seek=16 conv=fsync 2>/dev/null
sync
blockdev --flushbufs /dev/vda
echo 3 > /proc/sys/vm/drop_caches
dd if=/dev/vda of=/tmp/back.bin bs=64k skip=16 count=16 2>/dev/null
cmp /pattern.bin /tmp/back.bin
echo READBACK-OK
";

fn expected_image(data: &[u8]) -> Vec<u8> {
    let mut want = vec![0u8; IMAGE_LEN];
    want[PATTERN_AT..PATTERN_AT + PATTERN_LEN].copy_from_slice(data);
    want
}

fn new_image(dir: &Path, contents: &[u8]) -> PathBuf {
    let image = dir.join("disk.img");
    fs::write(&image, contents).unwrap();
    image
}

#[test]
fn guest_writes_with_dd_and_the_host_image_matches_byte_for_byte() {
    let _one = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let image = new_image(dir.path(), &vec![0u8; IMAGE_LEN]);
    let socket = dir.path().join("blk.sock");
    let backend = Backend::start(&socket, &image, &["--serial", "pvio-guest-test"]);
    let data = pattern(0x5eed, PATTERN_LEN);
    let script = format!("{WRITE_AND_READ_BACK}cat /sys/block/vda/serial; echo");
    let out = guest_on(&socket, 1)
        .file("/pattern.bin", data.clone(), 0o644)
        .run_strict(&strict(&script))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut lines = out.output.lines();
    assert_eq!(
        lines.next(),
        Some("65536"),
        "capacity in sectors; console:\n{}",
        out.console
    );
    assert!(
        out.output.contains("READBACK-OK"),
        "console:\n{}",
        out.console
    );
    assert!(
        out.output.contains("pvio-guest-test"),
        "GET_ID serial; console:\n{}",
        out.console
    );
    backend.stop();
    let got = fs::read(&image).unwrap();
    assert!(
        got == expected_image(&data),
        "the image differs from what the guest wrote"
    );
}

#[test]
fn two_queues_on_a_two_vcpu_guest_are_both_used() {
    let _one = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let image = new_image(dir.path(), &vec![0u8; IMAGE_LEN]);
    let socket = dir.path().join("blk.sock");
    let backend = Backend::start(&socket, &image, &["--num-queues", "2"]);
    let a = pattern(1, PATTERN_LEN);
    let b = pattern(2, PATTERN_LEN);
    // Each vCPU writes its own half; blk-mq maps each CPU to its own queue.
    let script = "\
ls -d /sys/block/vda/mq/* | wc -l
taskset 1 dd if=/a.bin of=/dev/vda bs=4k seek=256 oflag=direct 2>/dev/null &
taskset 2 dd if=/b.bin of=/dev/vda bs=4k seek=512 oflag=direct 2>/dev/null &
wait
sync
echo 3 > /proc/sys/vm/drop_caches
dd if=/dev/vda of=/tmp/a.bin bs=64k skip=16 count=16 2>/dev/null
dd if=/dev/vda of=/tmp/b.bin bs=64k skip=32 count=16 2>/dev/null
cmp /a.bin /tmp/a.bin
cmp /b.bin /tmp/b.bin
grep -- '-req\\.' /proc/interrupts
echo TWO-QUEUES-OK
";
    let out = guest_on(&socket, 2)
        .vcpus(2)
        .file("/a.bin", a.clone(), 0o644)
        .file("/b.bin", b.clone(), 0o644)
        .run_strict(&strict(script))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        out.output.lines().next(),
        Some("2"),
        "hardware queues; console:\n{}",
        out.console
    );
    assert!(
        out.output.contains("TWO-QUEUES-OK"),
        "console:\n{}",
        out.console
    );
    // Both queues completed requests: the backend signalled each queue's
    // interrupt (`virtioN-req.Q` lines of /proc/interrupts: the IRQ, one
    // count per vCPU, then the chip and the name).
    let used: Vec<u64> = out
        .output
        .lines()
        .filter(|l| l.contains("-req."))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .take(2)
                .filter_map(|n| n.parse::<u64>().ok())
                .sum()
        })
        .collect();
    assert_eq!(used.len(), 2, "console:\n{}", out.console);
    assert!(
        used.iter().all(|&n| n > 0),
        "a queue stayed idle: {used:?}; console:\n{}",
        out.console
    );
    backend.stop();
    let got = fs::read(&image).unwrap();
    assert!(got[MIB..2 * MIB] == a[..], "first half differs");
    assert!(got[2 * MIB..3 * MIB] == b[..], "second half differs");
    assert!(
        got[..MIB].iter().chain(&got[3 * MIB..]).all(|&x| x == 0),
        "bytes outside the writes changed"
    );
}

#[test]
fn read_only_disk_refuses_the_guests_writes_and_the_image_is_unchanged() {
    let _one = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let before = pattern(0xfeed, IMAGE_LEN);
    let image = new_image(dir.path(), &before);
    let socket = dir.path().join("blk.sock");
    let backend = Backend::start(&socket, &image, &["--read-only"]);
    let script = "\
cat /sys/block/vda/ro
if dd if=/dev/zero of=/dev/vda bs=4k count=16 oflag=direct 2>/dev/null; then echo WRITE-ACCEPTED; else echo WRITE-REFUSED; fi
dd if=/dev/vda bs=4k count=1 skip=3 2>/dev/null | od -An -tx1 -N16
";
    let out = guest_on(&socket, 1)
        .run_strict(&strict(script))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut lines = out.output.lines();
    assert_eq!(
        lines.next(),
        Some("1"),
        "the guest sees a read-only disk; console:\n{}",
        out.console
    );
    assert_eq!(
        lines.next(),
        Some("WRITE-REFUSED"),
        "console:\n{}",
        out.console
    );
    backend.stop();
    assert!(
        fs::read(&image).unwrap() == before,
        "a read-only image changed"
    );
    // The guest read the image's bytes.
    let read: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect();
    let want: Vec<String> = before[12288..12304]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(read, want, "console:\n{}", out.console);
}

/// A libblkio vhost-user-blk frontend on `socket`: writes `data` at 0,
/// flushes and reads it back, and stays connected while it lives.
struct Frontend {
    _blkio: blkio::Blkio,
}

fn connect_and_write(socket: &Path, data: &[u8]) -> Frontend {
    use blkio::{Blkio, Blkioq, ReqFlags};
    let mut b = Blkio::new("virtio-blk-vhost-user").unwrap();
    b.set_str("path", socket.to_str().unwrap()).unwrap();
    b.connect().unwrap();
    b.set_i32("num-queues", 1).unwrap();
    let mut started = b.start().unwrap();
    let region = b.alloc_mem_region(2 * data.len()).unwrap();
    b.map_mem_region(&region).unwrap();
    let base = region.addr as *mut u8;
    let len = data.len();
    // SAFETY: the region is a live mapping of `2 * len` bytes owned by the
    // client; no request is in flight while the slice is used.
    unsafe { std::slice::from_raw_parts_mut(base, len) }.copy_from_slice(data);
    // One request at a time: virtio does not order requests in flight.
    let wait_one = |q: &mut Blkioq, what: &str| {
        let mut done = [const { std::mem::MaybeUninit::uninit() }; 1];
        let mut timeout = Duration::from_secs(10);
        let n = q.do_io(&mut done, 1, Some(&mut timeout), None).unwrap();
        assert_eq!(n, 1, "{what} did not complete within 10 s");
        // SAFETY: do_io filled one completion.
        let c = unsafe { done[0].assume_init_read() };
        assert_eq!(c.ret, 0, "{what} failed");
    };
    let q = &mut started.queues[0];
    q.write(0, base, len, 1, ReqFlags::empty());
    wait_one(q, "write");
    q.flush(2, ReqFlags::empty());
    wait_one(q, "flush");
    // SAFETY: the second half of the same region.
    let back = unsafe { base.add(len) };
    q.read(0, back, len, 3, ReqFlags::empty());
    wait_one(q, "read");
    // SAFETY: as above; the read has completed.
    let got = unsafe { std::slice::from_raw_parts(back, len) };
    assert!(got == data, "read back differs");
    Frontend { _blkio: b }
}

#[test]
fn sigterm_and_sigint_stop_the_backend_cleanly_with_or_without_a_frontend() {
    for (sig, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        for connected in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let image = new_image(dir.path(), &vec![0u8; MIB]);
            let socket = dir.path().join("blk.sock");
            let backend = Backend::start(&socket, &image, &[]);
            let data = pattern(u64::try_from(sig).unwrap(), 64 * 1024);
            let frontend = connected.then(|| connect_and_write(&socket, &data));
            // The frontend is still connected when the signal arrives.
            backend.stop_with(sig);
            drop(frontend);
            if connected {
                let got = fs::read(&image).unwrap();
                assert!(got[..data.len()] == data[..], "{name}: image differs");
            }
        }
    }
}

/// Runs `pvio backend blk` to its end with `args` and a socket in `dir`;
/// returns (exit code, stderr lines, whether the socket was left).
fn run_to_failure(dir: &Path, program: &mut Command) -> (Option<i32>, Vec<String>, bool) {
    let out = program
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("cannot run pvio backend blk");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines = stderr.lines().map(String::from).collect();
    (out.status.code(), lines, dir.join("blk.sock").exists())
}

fn backend_blk(socket: &Path, image: &Path) -> Command {
    let mut c = Command::new(pvio_bin());
    // The data path under a real guest; the sandbox has its own tests
    // (sandbox.rs, runtime_security.rs). Sandboxed, a backend bound by
    // path cannot remove its socket at exit (docs/backends.md).
    c.args(["backend", "blk", "--no-sandbox", "--socket"])
        .arg(socket)
        .arg("--image")
        .arg(image);
    c
}

#[test]
fn bad_images_are_one_error_line_exit_1_and_no_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("blk.sock");
    let qcow2 = dir.path().join("disk.qcow2");
    let made = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&qcow2)
        .arg("1M")
        .status()
        .expect("qemu-img (package qemu-utils) is needed by this test");
    assert!(made.success());
    let missing = dir.path().join("none.img");
    for (image, says) in [
        (&missing, "does not exist"),
        (&qcow2, "is a qcow2 image; pvio serves raw images only"),
    ] {
        let (code, lines, socket_left) =
            run_to_failure(dir.path(), &mut backend_blk(&socket, image));
        assert_eq!(code, Some(1), "{lines:?}");
        assert_eq!(lines.len(), 1, "one stderr line: {lines:?}");
        assert!(lines[0].starts_with("pvio: "), "{lines:?}");
        assert!(lines[0].contains(says), "{lines:?}");
        assert!(!socket_left, "socket created for {}", image.display());
    }
}

/// A real image the process cannot open for writing, even as root: its
/// directory is bind-mounted read-only in a private mount namespace made
/// for the command (`unshare -m`), so nothing outside the test sees it.
#[test]
fn image_on_a_read_only_mount_needs_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    fs::create_dir(&ro).unwrap();
    let before = pattern(9, MIB);
    let image = new_image(&ro, &before);
    let socket = dir.path().join("blk.sock");
    let in_read_only_mount = |extra: &str| {
        let script = format!(
            "mount --bind \"$1\" \"$1\" && mount -o remount,bind,ro \"$1\" && exec \"$2\" backend blk --no-sandbox --socket \"$3\" --image \"$4\" {extra}"
        );
        let mut c = Command::new("unshare");
        c.args(["-m", "--propagation", "private", "sh", "-c", &script, "sh"])
            .arg(&ro)
            .arg(pvio_bin())
            .arg(&socket)
            .arg(&image);
        c
    };
    let (code, lines, socket_left) = run_to_failure(dir.path(), &mut in_read_only_mount(""));
    assert_eq!(code, Some(1), "{lines:?}");
    assert_eq!(lines.len(), 1, "one stderr line: {lines:?}");
    assert!(
        lines[0].contains("cannot be opened for writing; pass --read-only"),
        "{lines:?}"
    );
    assert!(!socket_left);
    // With --read-only the same image is served (read-only), and stops
    // cleanly.
    let mut cmd = in_read_only_mount("--read-only");
    cmd.env_remove("RUST_LOG");
    let backend = Backend::from_command(cmd, &socket);
    backend.stop();
    assert!(fs::read(&image).unwrap() == before);
}
