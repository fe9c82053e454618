//! A real Linux guest on pvio's PV net backend: QEMU's `-netdev vhost-user`
//! with `virtio-net-pci` on the socket of `pvio backend net` (the real
//! binary), guest RAM from a shared memfd. The tap sits in a network
//! namespace the test makes, with 10.99.0.1/24 on it; the guest takes
//! 10.99.0.2/24, pings the host side, and 64 MiB go over TCP each way (busybox
//! `nc` in the guest, a Rust listener in the namespace), compared by MD5 on
//! both ends. Also with two queue pairs on a two-vCPU guest, one flow per
//! vCPU each way, and every queue used. No address outside the namespace is
//! ever used.
//!
//! Nothing is skipped: a missing QEMU, kernel package or `pvio` binary fails
//! the test with what to do. One guest at a time, machine-wide (an flock).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use pvio_tests::{pvio_bin, strict, Guest};

const MIB: usize = 1 << 20;
const HOST_IP: &str = "10.99.0.1";
const TAP: &str = "pviog0";

/// Holds the machine-wide "one guest at a time" lock (other test binaries
/// booting guests take the same file).
struct OneGuest {
    _lock: File,
}

impl OneGuest {
    fn take() -> Self {
        let f = File::create("/tmp/pvio-one-guest.lock").expect("lock file");
        // SAFETY: flock on a descriptor we own; blocks until the lock is ours.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock");
        Self { _lock: f }
    }
}

/// A network namespace made by the test, removed on drop (with the tap).
struct NetNs(String);

impl NetNs {
    fn new() -> Self {
        let name = format!("pvio-ng-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        run("ip", &["netns", "add", &name]);
        let ns = Self(name);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.0.as_str()];
        all.extend_from_slice(args);
        run("ip", &all);
    }

    /// Runs `f` on a thread inside the namespace.
    fn spawn<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> JoinHandle<R> {
        let path = format!("/var/run/netns/{}", self.0);
        thread::spawn(move || {
            let file = File::open(path).expect("netns file");
            // SAFETY: setns with a descriptor we own; it moves only this
            // thread into the namespace.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns");
            f()
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().expect(program);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `pvio backend net` in the namespace; SIGTERM on stop.
struct Backend {
    child: Option<Child>,
    socket: PathBuf,
    log: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl Backend {
    fn start(ns: &NetNs, socket: &Path, extra: &[&str]) -> Self {
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.0])
            .arg(pvio_bin())
            .args(["backend", "net", "--tap", TAP, "--socket"])
            .arg(socket)
            .args(extra)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start pvio backend net");
        let mut child = child;
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        let reader = thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[pvio] {line}");
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let backend = Self {
            child: Some(child),
            socket: socket.to_owned(),
            log,
            reader: Some(reader),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "the backend did not create its socket"
            );
            thread::sleep(Duration::from_millis(20));
        }
        backend
    }

    /// Stops the backend and returns what it logged.
    fn stop(mut self) -> String {
        let mut child = self.child.take().unwrap();
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        // SAFETY: kill sends a signal to our own child.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "pvio backend net ignored SIGTERM"
            );
            thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "pvio backend net exited with {status}");
        assert!(!self.socket.exists(), "socket left behind");
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        let log = self.log.lock().unwrap().clone();
        log
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A reproducible pattern.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// MD5 of `data` as `md5sum` prints it.
fn md5(data: &[u8]) -> String {
    let mut child = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("md5sum (coreutils)");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Serves `data` to the first client on `port`, in the namespace.
fn serve(ns: &NetNs, port: u16, data: Vec<u8>) -> JoinHandle<()> {
    let listener = ns
        .spawn(move || TcpListener::bind((HOST_IP, port)).expect("bind"))
        .join()
        .unwrap();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.write_all(&data).expect("send to the guest");
        let _ = s.shutdown(Shutdown::Write);
        // Wait for the guest to close (its reads are done then).
        let mut sink = [0u8; 64];
        let _ = s.read(&mut sink);
    })
}

/// Receives `len` bytes from the first client on `port`, in the namespace.
fn sink(ns: &NetNs, port: u16, len: usize) -> JoinHandle<Vec<u8>> {
    let listener = ns
        .spawn(move || TcpListener::bind((HOST_IP, port)).expect("bind"))
        .join()
        .unwrap();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut got = vec![0u8; len];
        s.read_exact(&mut got).expect("receive from the guest");
        let _ = s.shutdown(Shutdown::Both);
        got
    })
}

/// The namespace, the backend and the host address, ready for a guest.
fn setup(extra: &[&str]) -> (NetNs, Backend, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ns = NetNs::new();
    let socket = dir.path().join("net.sock");
    let backend = Backend::start(&ns, &socket, extra);
    ns.ip(&["addr", "add", &format!("{HOST_IP}/24"), "dev", TAP]);
    (ns, backend, dir)
}

fn guest(socket: &Path, pairs: u32, vcpus: u32) -> pvio_tests::GuestBuilder {
    let chardev = format!("socket,id=n0,path={}", socket.display());
    let netdev = format!("vhost-user,id=net0,chardev=n0,queues={pairs}");
    // vectors=0 (INTx): QEMU 7.2 under TCG segfaults in
    // kvm_virtio_pci_irqfd_use when a vhost-user virtio-net unmasks an
    // MSI-X vector (no irqfd without KVM). With KVM, use 2 * pairs + 2.
    let device = format!(
        "virtio-net-pci,netdev=net0,mac=52:54:00:99:00:02,mq={},vectors=0",
        if pairs > 1 { "on" } else { "off" },
    );
    Guest::builder()
        .shared_memory(true)
        .memory_mib(512)
        .vcpus(vcpus)
        .timeout(Duration::from_secs(600))
        .modules(&["virtio_pci", "virtio_net"])
        .qemu_args(&["-chardev", &chardev, "-netdev", &netdev, "-device", &device])
}

const NET_UP: &str = "\
ip link set lo up
ip link set eth0 up
ip addr add 10.99.0.2/24 dev eth0
cat /sys/class/net/eth0/address
ping -c 3 -W 5 10.99.0.1
";

/// The MD5 sums the guest printed after `tag=`.
fn sums(output: &str, tag: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix(tag))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_guest_pings_and_moves_64_mib_each_way() {
    let _one = OneGuest::take();
    let (ns, backend, dir) = setup(&[]);
    let to_guest = pattern(0x5eed, 64 * MIB);
    let to_guest_sum = md5(&to_guest);
    let server = serve(&ns, 5001, to_guest);
    let receiver = sink(&ns, 5002, 64 * MIB);
    let script = format!(
        "{NET_UP}\
echo rx=$(nc {HOST_IP} 5001 </dev/null | md5sum)
dd if=/dev/urandom of=/tmp/out bs=1M count=64 2>/dev/null
echo tx=$(md5sum /tmp/out)
nc {HOST_IP} 5002 </tmp/out >/dev/null
echo NET-OK
"
    );
    let out = guest(&dir.path().join("net.sock"), 1, 1)
        .run_strict(&strict(&script))
        .unwrap_or_else(|e| panic!("{e}"));
    server.join().unwrap();
    let from_guest = receiver.join().unwrap();
    assert!(out.output.contains("NET-OK"), "console:\n{}", out.console);
    assert!(out.output.contains("52:54:00:99:00:02"), "{}", out.output);
    assert!(
        out.output.contains("3 packets received"),
        "ping: {}",
        out.output
    );
    assert_eq!(sums(&out.output, "rx="), [to_guest_sum], "host -> guest");
    assert_eq!(
        sums(&out.output, "tx="),
        [md5(&from_guest)],
        "guest -> host"
    );
    eprintln!("{}", out.output);
    backend.stop();
    drop(ns);
}

#[test]
fn two_queue_pairs_on_a_two_vcpu_guest_use_every_queue() {
    let _one = OneGuest::take();
    let (ns, backend, dir) = setup(&["--num-queue-pairs", "2"]);
    let a = pattern(1, 32 * MIB);
    let b = pattern(2, 32 * MIB);
    let (sum_a, sum_b) = (md5(&a), md5(&b));
    let servers = [serve(&ns, 5001, a), serve(&ns, 5003, b)];
    let sinks = [sink(&ns, 5002, 32 * MIB), sink(&ns, 5004, 32 * MIB)];
    // One flow per vCPU each way: XPS puts vCPU n's sends on queue n, and
    // the tap steers each flow's replies to the queue it came from.
    let script = format!(
        "{NET_UP}\
ls -d /sys/class/net/eth0/queues/rx-* | wc -l
(echo rxa=$(taskset 1 nc {HOST_IP} 5001 </dev/null | md5sum)) &
(echo rxb=$(taskset 2 nc {HOST_IP} 5003 </dev/null | md5sum)) &
wait
dd if=/dev/urandom of=/tmp/a bs=1M count=32 2>/dev/null
dd if=/dev/urandom of=/tmp/b bs=1M count=32 2>/dev/null
echo txa=$(md5sum /tmp/a)
echo txb=$(md5sum /tmp/b)
taskset 1 nc {HOST_IP} 5002 </tmp/a >/dev/null &
taskset 2 nc {HOST_IP} 5004 </tmp/b >/dev/null &
wait
echo NET-OK
"
    );
    let out = guest(&dir.path().join("net.sock"), 2, 2)
        .run_strict(&strict(&script))
        .unwrap_or_else(|e| panic!("{e}"));
    for s in servers {
        s.join().unwrap();
    }
    let [ga, gb] = sinks.map(|s| s.join().unwrap());
    eprintln!("{}", out.output);
    assert!(out.output.contains("NET-OK"), "console:\n{}", out.console);
    assert!(
        out.output.lines().any(|l| l.trim() == "2"),
        "two rx queues: {}",
        out.output
    );
    assert_eq!(sums(&out.output, "rxa="), [sum_a]);
    assert_eq!(sums(&out.output, "rxb="), [sum_b]);
    assert_eq!(sums(&out.output, "txa="), [md5(&ga)]);
    assert_eq!(sums(&out.output, "txb="), [md5(&gb)]);
    // Every queue moved frames: the backend logs each pair's counts when
    // the frontend goes away.
    let log = backend.stop();
    let pairs: Vec<(u64, u64)> = log
        .lines()
        .filter_map(|l| l.split("queue pair ").nth(1))
        .filter_map(|l| {
            let n: Vec<u64> = l
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            (n.len() == 2).then(|| (n[0], n[1]))
        })
        .collect();
    assert_eq!(pairs.len(), 2, "per-pair counts in the log:\n{log}");
    assert!(
        pairs.iter().all(|&(rx, tx)| rx > 0 && tx > 0),
        "an idle queue: {pairs:?}"
    );
    drop(ns);
}
