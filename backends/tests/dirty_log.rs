//! Dirty-page logging for migration (vhost-user spec, "Migration"), checked
//! over the block backend's socket with no VM: a frontend (rust-vmm's
//! vhost-user `Frontend`, memfd guest memory, one split ring) negotiates
//! `VHOST_F_LOG_ALL` and `LOG_SHMFD`, shares a log memfd with
//! `SET_LOG_BASE`, reads from the disk, and looks at the log's bits: exactly
//! the pages the backend wrote (data, status byte, used ring) are set, and
//! none once the frontend acks features without `LOG_ALL`. A log that does
//! not fit its fd or the guest memory ends the connection, not the backend.
//!
//! The receive side of the net backend is checked in `net_socket.rs`.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use pvio_backends::blk::{BlkOptions, BlkServer};
use pvio_frontend_protocol::features::{VHOST_USER_F_PROTOCOL_FEATURES, VIRTIO_F_VERSION_1};
use pvio_net_driver::{Buf, DriverQueue};
use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserDirtyLogRegion, VhostUserMemoryRegionInfo, VringConfigData};
use vm_memory::GuestRegionMmap;
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

const LOG_ALL: u64 = 1 << 26;
const MEM: usize = 1 << 20;
const PAGE: u64 = 4096;
/// One bit per page of the 1 MiB guest.
const LOG_BYTES: usize = MEM / 4096 / 8;

const HEADER: u64 = 0x8000;
const DATA: u64 = 0x2_0000;
const DATA_LEN: u32 = 8192;
const STATUS: u64 = 0x3_0000;

fn memfd(name: &std::ffi::CStr, len: u64) -> OwnedFd {
    let fd = rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&fd, len).unwrap();
    fd
}

/// A frontend with one queue of 16 over 1 MiB of memfd guest memory.
struct Guest {
    fe: Frontend,
    mem: GuestMemoryMmap,
    q: DriverQueue,
    acked: u64,
}

impl Guest {
    fn connect(socket: &Path, log_all: bool) -> Self {
        let mut fe = Frontend::connect(socket, 1).unwrap();
        fe.set_owner().unwrap();
        let offered = fe.get_features().unwrap();
        assert_ne!(offered & LOG_ALL, 0, "VHOST_F_LOG_ALL offered");
        let mut acked = VIRTIO_F_VERSION_1 | VHOST_USER_F_PROTOCOL_FEATURES;
        if log_all {
            acked |= LOG_ALL;
        }
        let pf = fe.get_protocol_features().unwrap();
        assert!(pf.contains(VhostUserProtocolFeatures::LOG_SHMFD));
        fe.set_protocol_features(VhostUserProtocolFeatures::LOG_SHMFD)
            .unwrap();
        fe.set_features(acked).unwrap();

        let file = File::from(memfd(c"pvio-test-guest", MEM as u64));
        let region =
            GuestRegionMmap::from_range(GuestAddress(0), MEM, Some(FileOffset::new(file, 0)))
                .unwrap();
        let mem = GuestMemoryMmap::from_regions(vec![region]).unwrap();
        let info =
            VhostUserMemoryRegionInfo::from_guest_region(mem.iter().next().unwrap()).unwrap();
        let va = info.userspace_addr;
        fe.set_mem_table(&[info]).unwrap();
        let (q, _) = DriverQueue::new(0x1000, 16, 0).unwrap();
        fe.set_vring_num(0, q.size).unwrap();
        let cfg = VringConfigData {
            queue_max_size: q.size,
            queue_size: q.size,
            flags: 0,
            desc_table_addr: va + q.desc.0,
            used_ring_addr: va + q.used.0,
            avail_ring_addr: va + q.avail.0,
            log_addr: None,
        };
        fe.set_vring_addr(0, &cfg).unwrap();
        fe.set_vring_base(0, 0).unwrap();
        fe.set_vring_call(0, &q.call).unwrap();
        fe.set_vring_kick(0, &q.kick).unwrap();
        fe.set_vring_enable(0, true).unwrap();
        Self { fe, mem, q, acked }
    }

    fn set_log(&self, log: &OwnedFd, size: u64) -> Result<(), vhost::Error> {
        self.fe.set_log_base(
            0,
            Some(VhostUserDirtyLogRegion {
                mmap_size: size,
                mmap_offset: 0,
                mmap_handle: log.as_raw_fd(),
            }),
        )
    }

    /// Reads the disk's first 8 KiB into `DATA`.
    fn read(&mut self) {
        let mut hdr = [0u8; 16];
        hdr[0..4].copy_from_slice(&0u32.to_le_bytes()); // VIRTIO_BLK_T_IN
        self.mem.write_slice(&hdr, GuestAddress(HEADER)).unwrap();
        let bufs = [
            Buf::Raw {
                addr: HEADER,
                len: 16,
                write: false,
            },
            Buf::Raw {
                addr: DATA,
                len: DATA_LEN,
                write: true,
            },
            Buf::Raw {
                addr: STATUS,
                len: 1,
                write: true,
            },
        ];
        self.q.add(&self.mem, &bufs).unwrap().unwrap();
        self.q.notify().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self.q.pop_used(&self.mem).unwrap() {
                assert_eq!(e.len(), DATA_LEN + 1);
                let head = u16::try_from(e.id()).unwrap();
                self.q.free_chain(&self.mem, head).unwrap();
                break;
            }
            assert!(Instant::now() < deadline, "no completion");
            thread::yield_now();
        }
        let status: u8 = self.mem.read_obj(GuestAddress(STATUS)).unwrap();
        assert_eq!(status, 0, "VIRTIO_BLK_S_OK");
    }
}

/// The pages whose bits are set in `log`.
fn dirty_pages(log: &OwnedFd) -> Vec<u64> {
    let mut bits = [0u8; LOG_BYTES];
    rustix::io::pread(log, &mut bits, 0).unwrap();
    let mut pages = Vec::new();
    for (i, b) in bits.iter().enumerate() {
        for bit in 0..8 {
            if b & (1 << bit) != 0 {
                pages.push(u64::try_from(i * 8 + bit).unwrap());
            }
        }
    }
    pages
}

fn clear(log: &OwnedFd) {
    rustix::io::pwrite(log, &[0u8; LOG_BYTES], 0).unwrap();
}

fn start_blk(dir: &Path) -> (BlkServer, std::path::PathBuf) {
    let image = dir.join("disk.img");
    std::fs::write(&image, vec![0x5a; 1 << 20]).unwrap();
    let socket = dir.join("blk.sock");
    (
        BlkServer::new(&BlkOptions::new(&socket, &image)).unwrap(),
        socket,
    )
}

#[test]
fn spec_migration_block_reads_mark_exactly_the_pages_written_while_logging() {
    reads_mark_exactly_the_pages_written(&tempfile::tempdir().unwrap());
}

/// On tmpfs the engine copies through a mapping of the image instead of a
/// system call: the pages it writes must be marked all the same.
#[test]
fn spec_migration_block_reads_copied_from_a_tmpfs_image_are_marked_too() {
    reads_mark_exactly_the_pages_written(&tempfile::tempdir_in("/dev/shm").unwrap());
}

fn reads_mark_exactly_the_pages_written(dir: &tempfile::TempDir) {
    let (server, socket) = start_blk(dir.path());
    let stop = server.stop_handle();
    let backend = thread::spawn(move || server.run());

    let mut g = Guest::connect(&socket, true);
    assert_ne!(g.acked & LOG_ALL, 0);
    let log = memfd(c"pvio-test-log", PAGE);
    g.set_log(&log, PAGE).unwrap();
    g.read();
    let used_page = g.q.used.0 / PAGE;
    let mut want = vec![used_page, DATA / PAGE, DATA / PAGE + 1, STATUS / PAGE];
    want.sort_unstable();
    assert_eq!(dirty_pages(&log), want, "data, status and used ring");
    let mut data = vec![0u8; DATA_LEN as usize];
    g.mem.read_slice(&mut data, GuestAddress(DATA)).unwrap();
    assert!(data.iter().all(|&b| b == 0x5a));

    // Migration over: features without LOG_ALL stop the logging.
    g.fe.set_features(g.acked & !LOG_ALL).unwrap();
    // SET_FEATURES has no reply: a round trip orders it before the read.
    g.fe.get_features().unwrap();
    clear(&log);
    g.read();
    assert_eq!(dirty_pages(&log), Vec::<u64>::new(), "logging is off");

    drop(g);
    stop.stop();
    backend.join().unwrap().unwrap();
}

#[test]
fn without_a_log_nothing_is_marked_and_log_all_alone_is_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let (server, socket) = start_blk(dir.path());
    let stop = server.stop_handle();
    let backend = thread::spawn(move || server.run());

    // Neither LOG_ALL nor a log.
    let mut g = Guest::connect(&socket, false);
    g.read();
    drop(g);
    // LOG_ALL with no log: reads work, nothing to mark.
    let mut g = Guest::connect(&socket, true);
    g.read();
    g.read();
    drop(g);
    stop.stop();
    backend.join().unwrap().unwrap();
}

#[test]
fn a_log_that_does_not_fit_ends_the_connection_and_the_backend_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let (server, socket) = start_blk(dir.path());
    let stop = server.stop_handle();
    let backend = thread::spawn(move || server.run());

    // A log larger than its fd: a mark past the end would be SIGBUS.
    let g = Guest::connect(&socket, true);
    let small = memfd(c"pvio-test-log", 16);
    assert!(g.set_log(&small, PAGE).is_err());
    drop(g);
    // A log with too few bits for the guest memory.
    let g = Guest::connect(&socket, true);
    let log = memfd(c"pvio-test-log", PAGE);
    assert!(g.set_log(&log, 8).is_err());
    drop(g);
    // Not a file at all.
    let g = Guest::connect(&socket, true);
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    assert!(g.set_log(&OwnedFd::from(a), PAGE).is_err());
    drop(g);

    // Still alive: the next frontend logs its reads.
    let mut g = Guest::connect(&socket, true);
    g.set_log(&log, PAGE).unwrap();
    g.read();
    assert!(dirty_pages(&log).contains(&(DATA / PAGE)));
    drop(g);
    assert!(!backend.is_finished());
    stop.stop();
    backend.join().unwrap().unwrap();
}

/// The cost of logging: 8 KiB reads at depth 1 through the raw frontend,
/// rounds with logging off and on alternating. By hand, on a release build:
/// `cargo test --release -p pvio-backends --test dirty_log -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, run by hand"]
fn bench_reads_with_logging_off_and_on() {
    const READS: u32 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let (server, socket) = start_blk(dir.path());
    let stop = server.stop_handle();
    let backend = thread::spawn(move || server.run());
    let mut g = Guest::connect(&socket, true);
    let log = memfd(c"pvio-test-log", PAGE);
    let mut per_read = [Vec::new(), Vec::new()];
    for round in 0..6 {
        let on = round % 2 == 1;
        if on {
            g.fe.set_features(g.acked).unwrap();
            g.set_log(&log, PAGE).unwrap();
        } else {
            g.fe.set_features(g.acked & !LOG_ALL).unwrap();
            g.fe.get_features().unwrap();
        }
        let t = Instant::now();
        for _ in 0..READS {
            g.read();
        }
        let us = t.elapsed().as_secs_f64() * 1e6 / f64::from(READS);
        per_read[usize::from(on)].push(us);
        println!(
            "round {round}: logging {}: {us:.2} us/read",
            if on { "on" } else { "off" }
        );
    }
    for (name, v) in ["off", "on"].iter().zip(&per_read) {
        let mean = v.iter().sum::<f64>() / 3.0;
        println!("logging {name}: mean {mean:.2} us per 8 KiB read at depth 1");
    }
    drop(g);
    stop.stop();
    backend.join().unwrap().unwrap();
}
