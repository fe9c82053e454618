//! The block backend served in-process on a temporary socket and driven by a
//! real vhost-user-blk frontend with no VM: libblkio's
//! `virtio-blk-vhost-user` driver (the `blkio` crate). Guest memory is
//! libblkio's shared memfd, handed to the backend over the socket exactly as
//! QEMU would hand it the guest's RAM.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use blkio::{Blkio, Blkioq, MemoryRegion, ReqFlags};
use pvio_backends::blk::{BlkError, BlkOptions, BlkServer};
use pvio_backends::vhost_user::StopHandle;

const MIB: usize = 1 << 20;

/// A backend running on a thread, stopped and joined on drop.
struct Backend {
    stop: StopHandle,
    thread: Option<JoinHandle<Result<(), BlkError>>>,
    socket: PathBuf,
    image: PathBuf,
    _dir: tempfile::TempDir,
}

impl Backend {
    fn start(image_len: usize, tweak: impl FnOnce(&mut BlkOptions)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.img");
        let f = fs::File::create(&image).unwrap();
        f.set_len(u64::try_from(image_len).unwrap()).unwrap();
        let socket = dir.path().join("blk.sock");
        let mut opts = BlkOptions::new(&socket, &image);
        tweak(&mut opts);
        let server = BlkServer::new(&opts).unwrap();
        let stop = server.stop_handle();
        let thread = thread::spawn(move || server.run());
        Self {
            stop,
            thread: Some(thread),
            socket,
            image,
            _dir: dir,
        }
    }

    fn stop(mut self) -> Result<(), BlkError> {
        self.stop.stop();
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A connected libblkio client with one memory region for buffers.
struct Client {
    queues: Vec<Blkioq>,
    region: MemoryRegion,
    capacity: u64,
    _blkio: Blkio,
}

fn connect(socket: &Path, read_only: bool, num_queues: i32) -> blkio::Result<Client> {
    let mut b = Blkio::new("virtio-blk-vhost-user")?;
    b.set_str("path", socket.to_str().unwrap())?;
    b.set_bool("read-only", read_only)?;
    b.connect()?;
    b.set_i32("num-queues", num_queues)?;
    let started = b.start()?;
    let capacity = b.get_u64("capacity")?;
    let region = b.alloc_mem_region(4 * MIB)?;
    b.map_mem_region(&region)?;
    Ok(Client {
        queues: started.queues,
        region,
        capacity,
        _blkio: b,
    })
}

#[derive(Clone, Copy)]
enum Io {
    Read,
    Write,
    Flush,
    Discard,
    WriteZeroes,
}

impl Client {
    /// The client's buffer memory (shared with the backend).
    fn buf(&mut self) -> &mut [u8] {
        // SAFETY: the region is a live mapping of `len` bytes owned by the
        // client; no request is in flight while the slice is used.
        unsafe { std::slice::from_raw_parts_mut(self.region.addr as *mut u8, self.region.len) }
    }

    /// Submits one request on queue `q` (data at buffer offset `buf_off`) and
    /// waits for it, at most 10 s. Returns the completion's `ret`.
    fn io(&mut self, q: usize, io: Io, offset: usize, len: usize, buf_off: usize) -> i32 {
        let offset = u64::try_from(offset).unwrap();
        let dlen = u64::try_from(len).unwrap();
        let buf = (self.region.addr + buf_off) as *mut u8;
        let queue = &mut self.queues[q];
        match io {
            Io::Read => queue.read(offset, buf, len, 7, ReqFlags::empty()),
            Io::Write => queue.write(offset, buf, len, 7, ReqFlags::empty()),
            Io::Flush => queue.flush(7, ReqFlags::empty()),
            Io::Discard => queue.discard(offset, dlen, 7, ReqFlags::empty()),
            Io::WriteZeroes => queue.write_zeroes(offset, dlen, 7, ReqFlags::empty()),
        }
        let mut done = [std::mem::MaybeUninit::uninit()];
        let mut timeout = Duration::from_secs(10);
        let n = queue.do_io(&mut done, 1, Some(&mut timeout), None).unwrap();
        assert_eq!(n, 1, "request did not complete within 10 s");
        // SAFETY: do_io filled `n` (= 1) completions.
        let c = unsafe { done[0].assume_init_read() };
        assert_eq!(c.user_data, 7);
        c.ret
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

#[test]
fn seeded_pattern_written_flushed_and_read_back() {
    let b = Backend::start(16 * MIB, |_| {});
    let mut c = connect(&b.socket, false, 1).unwrap();
    assert_eq!(c.capacity, u64::try_from(16 * MIB).unwrap());
    let data = pattern(42, 3 * MIB);
    c.buf()[..data.len()].copy_from_slice(&data);
    // Three 1 MiB writes at scattered offsets, then a flush.
    let offsets = [0, 5 * MIB, 15 * MIB];
    for (i, &off) in offsets.iter().enumerate() {
        let ret = c.io(0, Io::Write, off, MIB, i * MIB);
        assert_eq!(ret, 0, "write at {off}");
    }
    assert_eq!(c.io(0, Io::Flush, 0, 0, 0), 0);
    c.buf()[..data.len()].fill(0);
    for (i, &off) in offsets.iter().enumerate() {
        assert_eq!(c.io(0, Io::Read, off, MIB, i * MIB), 0);
    }
    assert!(c.buf()[..data.len()] == data[..], "read back differs");
    // And the image on the host holds the same bytes.
    let image = fs::read(&b.image).unwrap();
    for (i, &off) in offsets.iter().enumerate() {
        let (o, m) = (off, MIB);
        assert!(
            image[o..o + m] == data[i * m..(i + 1) * m],
            "image at {off}"
        );
    }
    drop(c);
    b.stop().unwrap();
}

#[test]
fn read_only_backend_refuses_a_writable_client_and_serves_reads() {
    let b = Backend::start(MIB, |o| o.read_only = true);
    fs::write(&b.image, pattern(7, MIB)).unwrap();
    let err = connect(&b.socket, false, 1)
        .err()
        .expect("writable client accepted");
    assert!(err.to_string().contains("read-only"), "{err}");
    let mut c = connect(&b.socket, true, 1).unwrap();
    assert_eq!(c.io(0, Io::Read, 4096, 8192, 0), 0);
    assert!(c.buf()[..8192] == pattern(7, MIB)[4096..12288]);
    drop(c);
    assert_eq!(fs::read(&b.image).unwrap(), pattern(7, MIB));
}

#[test]
fn discard_and_write_zeroes_then_read_zeroes() {
    let b = Backend::start(4 * MIB, |_| {});
    let mut c = connect(&b.socket, false, 1).unwrap();
    let data = pattern(3, 2 * MIB);
    c.buf()[..data.len()].copy_from_slice(&data);
    assert_eq!(c.io(0, Io::Write, 0, 2 * MIB, 0), 0);
    assert_eq!(c.io(0, Io::Discard, 64 * 1024, 128 * 1024, 0), 0);
    assert_eq!(c.io(0, Io::WriteZeroes, MIB, 4096, 0), 0);
    c.buf()[..data.len()].fill(0xaa);
    assert_eq!(c.io(0, Io::Read, 0, 2 * MIB, 0), 0);
    let got = c.buf()[..data.len()].to_vec();
    let mut want = data.clone();
    want[64 * 1024..192 * 1024].fill(0);
    want[MIB..MIB + 4096].fill(0);
    assert!(got == want, "discarded or zeroed range reads back wrong");
}

#[test]
fn out_of_range_read_fails_with_an_error_not_a_hang() {
    let b = Backend::start(MIB, |_| {});
    let mut c = connect(&b.socket, false, 1).unwrap();
    let start = Instant::now();
    let ret = c.io(0, Io::Read, MIB, 4096, 0);
    assert!(ret < 0, "read past the end returned {ret}");
    let ret = c.io(0, Io::Read, MIB - 512, 1024, 0);
    assert!(ret < 0, "read across the end returned {ret}");
    assert!(start.elapsed() < Duration::from_secs(5));
    // The queue still works after the errors.
    assert_eq!(c.io(0, Io::Read, 0, 4096, 0), 0);
}

#[test]
fn frontend_disconnect_then_reconnect_sees_the_data() {
    let b = Backend::start(2 * MIB, |_| {});
    let data = pattern(11, 64 * 1024);
    {
        let mut c = connect(&b.socket, false, 1).unwrap();
        c.buf()[..data.len()].copy_from_slice(&data);
        assert_eq!(c.io(0, Io::Write, 8192, data.len(), 0), 0);
        // Dropped without a flush: the frontend just goes away.
    }
    for round in 0..3 {
        let mut c = connect(&b.socket, false, 1).unwrap();
        assert_eq!(c.io(0, Io::Read, 8192, data.len(), 0), 0, "round {round}");
        assert!(c.buf()[..data.len()] == data[..], "round {round}");
    }
    b.stop().unwrap();
}

/// One thread's work on its own queue: `rounds` times, writes its 1 MiB
/// pattern at `image_off` in 64 KiB requests with up to 8 in flight, then
/// reads it back the same way and compares. Starts its I/O when every
/// thread at `barrier` is ready; returns when its I/O started and ended.
fn busy_queue(
    mut q: Blkioq,
    barrier: &Barrier,
    buf: usize,
    image_off: usize,
    seed: u64,
    rounds: usize,
) -> (Instant, Instant) {
    const CHUNK: usize = 64 * 1024;
    const DEPTH: usize = 8;
    let data = pattern(seed, MIB);
    let (wbuf, rbuf) = (buf as *mut u8, (buf + MIB) as *mut u8);
    // SAFETY: `buf` is this thread's 2 MiB of the client's mapped region;
    // nothing is in flight yet.
    unsafe { std::slice::from_raw_parts_mut(wbuf, MIB) }.copy_from_slice(&data);
    barrier.wait();
    let start = Instant::now();
    for _ in 0..rounds {
        for write in [true, false] {
            let (mut next, mut done, mut in_flight) = (0, 0, 0);
            while done < MIB / CHUNK {
                while in_flight < DEPTH && next < MIB / CHUNK {
                    let off = next * CHUNK;
                    let tag = next;
                    if write {
                        // SAFETY: inside this thread's write buffer.
                        let p = unsafe { wbuf.add(off) };
                        q.write((image_off + off) as u64, p, CHUNK, tag, ReqFlags::empty());
                    } else {
                        // SAFETY: inside this thread's read buffer.
                        let p = unsafe { rbuf.add(off) };
                        q.read((image_off + off) as u64, p, CHUNK, tag, ReqFlags::empty());
                    }
                    next += 1;
                    in_flight += 1;
                }
                let mut c = [const { std::mem::MaybeUninit::uninit() }; DEPTH];
                let mut timeout = Duration::from_secs(10);
                let n = q.do_io(&mut c, 1, Some(&mut timeout), None).unwrap();
                assert!(n > 0, "no completion within 10 s");
                for c in &c[..n] {
                    // SAFETY: do_io filled the first `n` completions.
                    let c = unsafe { c.assume_init_read() };
                    assert_eq!(c.ret, 0, "request {} failed", c.user_data);
                }
                done += n;
                in_flight -= n;
            }
        }
        // SAFETY: every read has completed.
        let back = unsafe { std::slice::from_raw_parts(rbuf, MIB) };
        assert!(back == data, "queue at {image_off}: read back differs");
        // SAFETY: as above; cleared so the next round checks fresh reads.
        unsafe { std::slice::from_raw_parts_mut(rbuf, MIB) }.fill(0);
    }
    (start, Instant::now())
}

#[test]
fn two_queues_are_busy_at_once_from_two_threads() {
    let b = Backend::start(8 * MIB, |o| o.num_queues = 2);
    let mut c = connect(&b.socket, false, 2).unwrap();
    assert_eq!(c.queues.len(), 2);
    let base = c.region.addr;
    let barrier = Arc::new(Barrier::new(2));
    let threads: Vec<_> = std::mem::take(&mut c.queues)
        .into_iter()
        .enumerate()
        .map(|(i, q)| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                // Queue i: buffers at 2 MiB * i, image at 4 MiB * i.
                let (buf, at) = (base + 2 * MIB * i, 4 * MIB * i);
                busy_queue(q, &barrier, buf, at, 100 + i as u64, 50)
            })
        })
        .collect();
    let spans: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    // The two queues' I/O overlapped in time.
    let latest_start = spans.iter().map(|s| s.0).max().unwrap();
    let earliest_end = spans.iter().map(|s| s.1).min().unwrap();
    assert!(
        latest_start < earliest_end,
        "the queues took turns: {spans:?}"
    );
    // And the image holds both patterns.
    let image = fs::read(&b.image).unwrap();
    assert!(image[..MIB] == pattern(100, MIB)[..]);
    assert!(image[4 * MIB..5 * MIB] == pattern(101, MIB)[..]);
    drop(c);
    b.stop().unwrap();
}

#[test]
fn stop_while_connected_returns_and_removes_the_socket() {
    let b = Backend::start(MIB, |_| {});
    let mut c = connect(&b.socket, false, 1).unwrap();
    assert_eq!(c.io(0, Io::Read, 0, 4096, 0), 0);
    let socket = b.socket.clone();
    b.stop().unwrap();
    assert!(!socket.exists(), "socket left behind");
    drop(c);
}

#[test]
fn images_qemu_img_makes_are_refused_naming_their_format() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("blk.sock");
    for (format, named) in [
        ("qcow", "a qcow image"),
        ("qcow2", "a qcow2 image"),
        ("qed", "a qed image"),
        ("vmdk", "a vmdk image"),
        ("vdi", "a vdi image"),
        ("vhdx", "a vhdx image"),
        ("vpc", "a vpc (VHD) image"),
        ("parallels", "a parallels image"),
    ] {
        let image = dir.path().join(format!("disk.{format}"));
        let out = Command::new("qemu-img")
            .args(["create", "-q", "-f", format])
            .arg(&image)
            .arg("16M")
            .output()
            .expect("qemu-img (package qemu-utils) is needed by this test");
        assert!(
            out.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = BlkServer::new(&BlkOptions::new(&socket, &image))
            .err()
            .unwrap_or_else(|| panic!("{format} image accepted"));
        let msg = err.to_string();
        assert!(msg.contains(named), "{format}: {msg}");
        assert!(msg.contains("qemu-img convert -O raw"), "{msg}");
        assert!(
            !socket.exists(),
            "socket created before the image was checked"
        );
    }
}

#[test]
fn missing_image_is_an_error_before_the_socket_exists() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("blk.sock");
    let err = BlkServer::new(&BlkOptions::new(&socket, dir.path().join("none.img")))
        .err()
        .expect("missing image accepted");
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(!socket.exists());
}
