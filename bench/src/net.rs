//! `pvio bench net`: the net backend alone, measured with no VM: frames per
//! second each way at a given frame size, with the socket-level driver
//! (`pvio-net-driver`) as the guest and a tap inside a network namespace
//! made for the run.
//!
//! Transmit: the driver keeps the transmit ring full of copies of one frame;
//! the backend writes each to the tap (the namespace's stack drops them).
//! Receive: a thread sends frames into the tap through an `AF_PACKET`
//! socket; the driver hands every filled buffer straight back. Both count
//! what the backend completed over the same wall-clock time. Everything runs
//! on this machine's cores at once (driver, backend, injector), so the
//! figures are a floor for the backend, not a line rate.
//!
//! `pvio bench net` prints them.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pvio_backends::net::{NetError, NetOptions, NetServer};
use pvio_net_driver::{DriverError, DriverOptions, NetDriver, NetHdr};

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Setting up the namespace, socket or threads failed.
    #[error("benchmark set-up: {0}")]
    Setup(String),
    /// The backend could not start.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The driver failed.
    #[error("driver: {0}")]
    Driver(#[from] DriverError),
}

/// Frames per second each way at one frame size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FramesResult {
    /// Frame length in bytes (Ethernet header included, no FCS).
    pub frame_len: usize,
    /// Guest to tap.
    pub tx_fps: f64,
    /// Tap to guest.
    pub rx_fps: f64,
    /// Frames per second the injector offered on the receive side.
    pub rx_offered_fps: f64,
    /// Median round trip of one frame, driver to tap and back through an
    /// echo in the namespace, in microseconds.
    pub rtt_median_us: f64,
}

/// A network namespace of the run's own: made by a thread that leaves
/// the host's (`unshare`) and hands back its namespace file; it goes away
/// with the last thread in it once that file is closed, so nothing is
/// left behind on any exit.
struct Netns(File);

impl Netns {
    fn new() -> Result<Self, BenchError> {
        let made = thread::spawn(|| -> io::Result<File> {
            // SAFETY: only the network namespace is unshared, not the file
            // table, so every thread still sees every descriptor.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }?;
            File::open("/proc/thread-self/ns/net")
        })
        .join()
        .map_err(|_| BenchError::Setup("namespace thread panicked".into()))?
        .map_err(|e| BenchError::Setup(format!("a network namespace of its own: {e}")))?;
        pvio_backends::net::host::Route::open_in(&made, "the benchmark's")
            .and_then(|mut route| route.set_up("lo", true))
            .map_err(|e| BenchError::Setup(format!("loopback up: {e}")))?;
        Ok(Self(made))
    }

    /// Runs `f` on a thread inside the namespace.
    fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<thread::JoinHandle<R>, BenchError> {
        let file = self
            .0
            .try_clone()
            .map_err(|e| BenchError::Setup(format!("the namespace file: {e}")))?;
        let handle = thread::spawn(move || {
            if let Err(e) = rustix::thread::move_into_link_name_space(
                file.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            ) {
                tracing::warn!("setns: {e}");
            }
            f()
        });
        Ok(handle)
    }
}

/// An `AF_PACKET` socket bound to interface `name` in the calling thread's
/// namespace; frames sent on it come out of the tap to its reader.
fn packet_socket(name: &str) -> io::Result<OwnedFd> {
    let cname = std::ffi::CString::new(name).map_err(|_| io::Error::other("name"))?;
    let proto = u16::try_from(libc::ETH_P_ALL).map_err(|_| io::Error::other("proto"))?;
    // SAFETY: plain integer arguments.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(proto.to_be()),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket() just returned this descriptor; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `cname` is NUL-terminated and outlives the call.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = u16::try_from(libc::AF_PACKET).map_err(|_| io::Error::other("family"))?;
    sll.sll_protocol = proto.to_be();
    sll.sll_ifindex = i32::try_from(index).map_err(|_| io::Error::other("ifindex"))?;
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_ll>())
        .map_err(|_| io::Error::other("len"))?;
    // SAFETY: `sll` is a live sockaddr_ll of `len` bytes.
    let rc = unsafe { libc::bind(fd.as_raw_fd(), std::ptr::addr_of!(sll).cast(), len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// A frame of `len` bytes (at least an Ethernet header) with an
/// experimental EtherType nobody answers.
pub fn bench_frame(len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(14)];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f
}

/// Measures frames per second each way at `frame_len` bytes, `duration`
/// per direction. Needs root (a namespace and a tap).
pub fn frames_per_second(frame_len: usize, duration: Duration) -> Result<FramesResult, BenchError> {
    let ns = Netns::new()?;
    let dir = std::env::temp_dir().join(format!("pvio-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| BenchError::Setup(e.to_string()))?;
    let socket = dir.join("net.sock");
    let tap = "pvbench0";
    let opts = NetOptions::new(&socket, tap);
    let server = ns
        .run(move || NetServer::new(&opts))?
        .join()
        .map_err(|_| BenchError::Setup("backend thread panicked".into()))??;
    let stop = server.stop_handle();
    let server_thread = thread::spawn(move || server.run());
    let result = measure(&ns, &socket, tap, frame_len, duration);
    stop.stop();
    let _ = server_thread.join();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure(
    ns: &Netns,
    socket: &std::path::Path,
    tap: &str,
    frame_len: usize,
    duration: Duration,
) -> Result<FramesResult, BenchError> {
    let mut drv = NetDriver::connect(socket, &DriverOptions::default())?;
    drv.fill_rx(0)?;
    let frame = bench_frame(frame_len);

    // Transmit.
    let start = Instant::now();
    let mut sent = 0usize;
    while start.elapsed() < duration {
        let n = drv.pump_tx(0, &frame)?;
        if n == 0 {
            // Sleep until the backend completes some (as a guest would).
            drv.wait_used(1, Duration::from_millis(10))?;
        }
        sent += n;
    }
    let tx_fps = rate(sent, start.elapsed());
    drv.wait_tx_done(0, Duration::from_secs(5))?;

    // Receive.
    let stop = Arc::new(AtomicBool::new(false));
    let offered = Arc::new(AtomicU64::new(0));
    let (stop2, offered2, tap2, frame2) = (
        Arc::clone(&stop),
        Arc::clone(&offered),
        tap.to_owned(),
        frame.clone(),
    );
    let injector = ns.run(move || -> io::Result<()> {
        let fd = packet_socket(&tap2)?;
        while !stop2.load(Ordering::Relaxed) {
            // SAFETY: `frame2` is live for the call; send only reads it.
            let n = unsafe { libc::send(fd.as_raw_fd(), frame2.as_ptr().cast(), frame2.len(), 0) };
            if n > 0 {
                offered2.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    })?;
    // Let the injector get going, then count.
    thread::sleep(Duration::from_millis(100));
    drv.drain_rx(0)?;
    let offered_before = offered.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut got = 0usize;
    while start.elapsed() < duration {
        let n = drv.drain_rx(0)?;
        if n == 0 {
            drv.wait_used(0, Duration::from_millis(10))?;
        }
        got += n;
    }
    let elapsed = start.elapsed();
    let offered_n = offered.load(Ordering::Relaxed) - offered_before;
    stop.store(true, Ordering::Relaxed);
    injector
        .join()
        .map_err(|_| BenchError::Setup("injector panicked".into()))?
        .map_err(|e| BenchError::Setup(format!("injector: {e}")))?;
    let rtt_median_us = round_trips(ns, &mut drv, tap, &frame)?;
    Ok(FramesResult {
        frame_len,
        tx_fps,
        rx_fps: rate(got, elapsed),
        rx_offered_fps: rate(usize::try_from(offered_n).unwrap_or(usize::MAX), elapsed),
        rtt_median_us,
    })
}

fn rate(n: usize, d: Duration) -> f64 {
    // Frame counts stay far below 2^52: exact in an f64.
    let n = u32::try_from(n).map_or(f64::from(u32::MAX), f64::from);
    n / d.as_secs_f64().max(1e-9)
}

/// Round trips measured.
const ROUND_TRIPS: usize = 500;

/// One frame at a time: the driver sends it, a thread in the namespace
/// reads it off the tap's `AF_PACKET` socket and sends it back, the driver
/// waits for it (sleeping on the call eventfd, as a guest does). Returns
/// the median in microseconds.
fn round_trips(
    ns: &Netns,
    drv: &mut NetDriver,
    tap: &str,
    frame: &[u8],
) -> Result<f64, BenchError> {
    let stop = Arc::new(AtomicBool::new(false));
    let (stop2, tap2) = (Arc::clone(&stop), tap.to_owned());
    let echo = ns.run(move || -> io::Result<()> {
        let fd = packet_socket(&tap2)?;
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        let len = libc::socklen_t::try_from(std::mem::size_of::<libc::timeval>())
            .map_err(|_| io::Error::other("len"))?;
        // SAFETY: `tv` is a live timeval of `len` bytes.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                std::ptr::addr_of!(tv).cast(),
                len,
            )
        };
        let mut buf = vec![0u8; 65_536];
        while !stop2.load(Ordering::Relaxed) {
            let mut from: libc::sockaddr_ll = {
                // SAFETY: all-zero is a valid sockaddr_ll.
                unsafe { std::mem::zeroed() }
            };
            let mut from_len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_ll>())
                .map_err(|_| io::Error::other("len"))?;
            // SAFETY: `buf` and `from` are live and writable for their sizes.
            let n = unsafe {
                libc::recvfrom(
                    fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    std::ptr::addr_of_mut!(from).cast(),
                    &mut from_len,
                )
            };
            // Echo only frames the tap received from pvio (not our own).
            if n > 0 && from.sll_pkttype != libc::PACKET_OUTGOING {
                let n = usize::try_from(n).unwrap_or(0);
                // SAFETY: `buf[..n]` is live for the call; send only reads it.
                unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), n, 0) };
            }
        }
        Ok(())
    })?;
    thread::sleep(Duration::from_millis(50));
    drv.drain_rx(0)?;
    let mut samples = Vec::with_capacity(ROUND_TRIPS);
    let hdr = NetHdr::default();
    for _ in 0..ROUND_TRIPS {
        drv.reclaim_tx(0)?;
        let start = Instant::now();
        drv.queue_frame(0, &hdr, frame, false)?;
        drv.kick(1)?;
        let end = start + Duration::from_secs(1);
        loop {
            if drv.drain_rx(0)? > 0 {
                samples.push(start.elapsed().as_secs_f64() * 1e6);
                break;
            }
            if Instant::now() > end {
                break;
            }
            drv.wait_used(0, Duration::from_millis(5))?;
        }
    }
    stop.store(true, Ordering::Relaxed);
    echo.join()
        .map_err(|_| BenchError::Setup("echo panicked".into()))?
        .map_err(|e| BenchError::Setup(format!("echo: {e}")))?;
    if samples.is_empty() {
        return Err(BenchError::Setup("no frame came back from the echo".into()));
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}
