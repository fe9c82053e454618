//! Helpers shared by the net guest tests and the net benchmark: the
//! machine-wide one-guest lock, a network namespace made by the test,
//! `pvio backend net` as a child process, TCP endpoints in the namespace,
//! patterns and checksums. Only addresses inside the namespace are used.

#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use pvio_tests::pvio_bin;

pub const MIB: usize = 1 << 20;
pub const HOST_IP: &str = "10.99.0.1";

/// Holds the machine-wide "one guest at a time" lock (other test binaries
/// booting guests take the same file).
pub struct OneGuest {
    _lock: File,
}

impl OneGuest {
    pub fn take() -> Self {
        let f = File::create("/tmp/pvio-one-guest.lock").expect("lock file");
        // SAFETY: flock on a descriptor we own; blocks until the lock is ours.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock");
        Self { _lock: f }
    }
}

/// A network namespace made by the test, removed on drop (with the tap).
pub struct NetNs(String);

impl NetNs {
    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.0
    }

    pub fn new(tag: &str) -> Self {
        let name = format!("pvio-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        run("ip", &["netns", "add", &name]);
        let ns = Self(name);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.0.as_str()];
        all.extend_from_slice(args);
        run("ip", &all);
    }

    /// Runs `f` on a thread inside the namespace.
    pub fn spawn<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> JoinHandle<R> {
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

pub fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().expect(program);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `pvio backend net` in the namespace; SIGTERM on stop.
pub struct Backend {
    child: Option<Child>,
    socket: PathBuf,
    log: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl Backend {
    pub fn start(ns: &NetNs, tap: &str, socket: &Path, extra: &[&str]) -> Self {
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.0])
            .arg(pvio_bin())
            // The sandbox has its own tests; sandboxed, a backend bound by
            // path cannot remove its socket at exit (docs/backends.md).
            .args(["backend", "net", "--no-sandbox", "--tap", tap, "--socket"])
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
    pub fn stop(mut self) -> String {
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
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
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
pub fn md5(data: &[u8]) -> String {
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

/// Serves `data` to the first client on `port`, in the namespace; returns
/// the time from the connection to the client closing it after reading all.
pub fn serve(ns: &NetNs, port: u16, data: Vec<u8>) -> JoinHandle<Duration> {
    let listener = ns
        .spawn(move || TcpListener::bind((HOST_IP, port)).expect("bind"))
        .join()
        .unwrap();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let start = Instant::now();
        s.write_all(&data).expect("send to the guest");
        let _ = s.shutdown(Shutdown::Write);
        // Wait for the guest to close (its reads are done then).
        let mut sink = [0u8; 64];
        let _ = s.read(&mut sink);
        start.elapsed()
    })
}

/// Receives `len` bytes from the first client on `port`, in the namespace;
/// returns them and the time from the first byte to the last.
pub fn sink(ns: &NetNs, port: u16, len: usize) -> JoinHandle<(Vec<u8>, Duration)> {
    let listener = ns
        .spawn(move || TcpListener::bind((HOST_IP, port)).expect("bind"))
        .join()
        .unwrap();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut got = vec![0u8; len];
        s.read_exact(&mut got[..1]).expect("receive from the guest");
        let start = Instant::now();
        s.read_exact(&mut got[1..]).expect("receive from the guest");
        let took = start.elapsed();
        let _ = s.shutdown(Shutdown::Both);
        (got, took)
    })
}
