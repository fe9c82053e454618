//! The backends' sandbox, from outside: the probe program shows that a call
//! outside a role's allowlist kills the process with SIGSYS and that the
//! calls a backend makes do not; a `pvio backend blk` started as root shows
//! the sandbox in `/proc/PID/status` and still serves libblkio, over a
//! socket path and over inherited fds. Needs root (as CI runs).

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use blkio::{Blkio, ReqFlags};

const MIB: usize = 1 << 20;

fn probe(role: &str, call: &str) -> std::process::ExitStatus {
    Command::new(env!("CARGO_BIN_EXE_pvio-sandbox-probe"))
        .args([role, call])
        .stderr(Stdio::null())
        .status()
        .expect("run the probe")
}

#[test]
fn a_call_outside_the_allowlist_kills_the_backend_with_sigsys() {
    assert!(rustix::process::geteuid().is_root(), "run as root");
    for role in ["blk", "net"] {
        for call in ["inet-socket", "openat", "execve"] {
            let st = probe(role, call);
            assert_eq!(st.signal(), Some(libc::SIGSYS), "{role} {call}: {st:?}");
        }
    }
}

#[test]
fn the_calls_a_backend_makes_are_allowed() {
    assert!(rustix::process::geteuid().is_root(), "run as root");
    for role in ["blk", "net"] {
        let st = probe(role, "allowed");
        assert_eq!(st.code(), Some(0), "{role}: {st:?}");
    }
}

/// `/proc/PID/status` lines by key.
fn status(pid: u32) -> std::collections::HashMap<String, String> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}

fn wait_for(path: &Path, child: &mut Child) {
    let start = Instant::now();
    while !path.exists() {
        assert!(child.try_wait().expect("wait").is_none(), "backend exited");
        assert!(start.elapsed() < Duration::from_secs(20), "no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the backend logged that it serves (the sandbox is entered
/// before that line).
fn wait_for_log(log: &Path, child: &mut Child, line: &str) {
    let start = Instant::now();
    while !fs::read_to_string(log).unwrap_or_default().contains(line) {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "backend exited: {}",
            fs::read_to_string(log).unwrap_or_default()
        );
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no {line:?} in the log"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Connects libblkio over `socket` with two queues and checks writes, a
/// flush, a discard, write-zeroes and reads on both.
fn serve_io(socket: &Path) {
    let mut b = Blkio::new("virtio-blk-vhost-user").expect("blkio");
    b.set_str("path", socket.to_str().expect("utf-8"))
        .expect("path");
    b.connect().expect("connect");
    b.set_i32("num-queues", 2).expect("queues");
    let mut started = b.start().expect("start");
    let region = b.alloc_mem_region(4 * MIB).expect("alloc");
    b.map_mem_region(&region).expect("map");
    // SAFETY: the region is a live mapping of `len` bytes owned by this
    // client; no request is in flight while the slice is used.
    let buf = unsafe { std::slice::from_raw_parts_mut(region.addr as *mut u8, region.len) };
    for (i, q) in started.queues.iter_mut().enumerate() {
        let seed = u8::try_from(i).expect("few queues") + 1;
        let off = u64::try_from(i * MIB).expect("offset");
        buf[..MIB]
            .iter_mut()
            .enumerate()
            .for_each(|(j, b)| *b = seed ^ u8::try_from(j % 251).unwrap_or(0));
        let mut run = |submit: &mut dyn FnMut(&mut blkio::Blkioq)| {
            submit(q);
            let mut done = [std::mem::MaybeUninit::uninit()];
            let mut timeout = Duration::from_secs(10);
            let n = q
                .do_io(&mut done, 1, Some(&mut timeout), None)
                .expect("do_io");
            assert_eq!(n, 1, "request did not complete");
            // SAFETY: do_io filled `n` (= 1) completions.
            let c = unsafe { done[0].assume_init_read() };
            assert_eq!(c.ret, 0);
        };
        let p = region.addr as *mut u8;
        run(&mut |q| q.write(off, p, MIB, 1, ReqFlags::empty()));
        run(&mut |q| q.flush(2, ReqFlags::empty()));
        run(&mut |q| q.discard(off + 3 * MIB as u64, 4096, 3, ReqFlags::empty()));
        run(&mut |q| q.write_zeroes(off + 3 * MIB as u64, 4096, 4, ReqFlags::empty()));
        // SAFETY: the second MiB of the region is in the mapping.
        let p2 = unsafe { p.add(MIB) };
        run(&mut |q| q.read(off, p2, MIB, 5, ReqFlags::empty()));
        assert_eq!(buf[..MIB], buf[MIB..2 * MIB], "queue {i}: read back");
    }
}

fn assert_sandboxed(pid: u32) {
    let s = status(pid);
    let uid = s["Uid"].split_whitespace().next().expect("uid").to_owned();
    assert_ne!(uid, "0", "{s:?}");
    for cap in ["CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd"] {
        assert_eq!(s[cap], "0000000000000000", "{cap}");
    }
    assert_eq!(s["NoNewPrivs"], "1");
    assert_eq!(s["Seccomp"], "2");
    let ns = |p: &str| fs::read_link(p).expect("ns link");
    assert_ne!(ns(&format!("/proc/{pid}/ns/net")), ns("/proc/self/ns/net"));
}

fn stop(mut child: Child) {
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .expect("SIGTERM");
    let st = child.wait().expect("wait");
    assert!(
        st.success(),
        "the backend exits cleanly in its sandbox: {st:?}"
    );
}

#[test]
fn a_sandboxed_blk_backend_shows_it_in_proc_and_serves_io_twice() {
    assert!(rustix::process::geteuid().is_root(), "run as root");
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("disk.img");
    fs::File::create(&image)
        .expect("image")
        .set_len(16 * MIB as u64)
        .expect("len");
    let socket = dir.path().join("blk.sock");
    let log = dir.path().join("log");
    let mut child = Command::new(pvio_tests::pvio_bin())
        .args(["backend", "blk", "--num-queues", "2", "--socket"])
        .arg(&socket)
        .arg("--image")
        .arg(&image)
        .stderr(fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start pvio backend blk");
    wait_for(&socket, &mut child);
    wait_for_log(&log, &mut child, "sandbox (blk) applied");
    // Twice: the second frontend gets new queue threads and io_uring rings,
    // all made inside the sandbox.
    serve_io(&socket);
    assert_sandboxed(child.id());
    serve_io(&socket);
    assert!(child.try_wait().expect("wait").is_none(), "backend alive");
    stop(child);
}

/// Clears `FD_CLOEXEC` so that the child inherits `fd`.
fn inheritable(fd: &OwnedFd) {
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty()).expect("fcntl");
}

#[test]
fn a_blk_backend_serves_an_inherited_listener_and_image() {
    assert!(rustix::process::geteuid().is_root(), "run as root");
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("disk.img");
    fs::File::create(&image)
        .expect("image")
        .set_len(16 * MIB as u64)
        .expect("len");
    let socket = dir.path().join("blk.sock");
    let listener: OwnedFd = UnixListener::bind(&socket).expect("bind").into();
    let image_fd: OwnedFd = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&image)
        .expect("open")
        .into();
    inheritable(&listener);
    inheritable(&image_fd);
    let log = dir.path().join("log");
    let mut child = Command::new(pvio_tests::pvio_bin())
        .args(["backend", "blk", "--num-queues", "2", "--direct"])
        .arg(format!("--listen-fd={}", listener.as_raw_fd()))
        .arg(format!("--image-fd={}", image_fd.as_raw_fd()))
        .stderr(fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start pvio backend blk");
    drop(listener);
    drop(image_fd);
    wait_for_log(&log, &mut child, "listening on inherited fd");
    serve_io(&socket);
    assert_sandboxed(child.id());
    stop(child);
    // The backend never owned the socket file: it is still there.
    assert!(socket.exists());
}
