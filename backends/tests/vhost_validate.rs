//! Control messages a frontend must not get past the backend's checks,
//! sent raw over the socket of an in-process block backend: a memory region
//! longer than its memfd, rings outside the mapped memory, a queue size that
//! is not a power of two. Each is refused by closing the connection; the
//! backend stays up and serves the next (good) frontend, libblkio.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;
use std::time::Duration;

use blkio::{Blkio, ReqFlags};
use pvio_backends::blk::{BlkOptions, BlkServer};
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

const SET_OWNER: u32 = 3;
const SET_MEM_TABLE: u32 = 5;
const SET_VRING_NUM: u32 = 8;
const SET_VRING_ADDR: u32 = 9;
const BASE: u64 = 0x1000_0000;
const MIB: u64 = 1 << 20;

fn send(sock: &UnixStream, request: u32, payload: &[u8], fds: &[&OwnedFd]) {
    let mut bytes = request.to_le_bytes().to_vec();
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_le_bytes());
    bytes.extend_from_slice(payload);
    let raw: Vec<_> = fds.iter().map(|f| f.as_raw_fd()).collect();
    // The backend may already have closed the connection: that is what is
    // being checked below, not here.
    let _ = sock.send_with_fds(&[&bytes[..]], &raw);
}

fn memfd(len: u64) -> OwnedFd {
    let fd = rustix::fs::memfd_create("guest", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&fd, len).unwrap();
    fd
}

fn mem_table(size: u64) -> Vec<u8> {
    let mut p = 1u32.to_le_bytes().to_vec();
    p.extend_from_slice(&[0; 4]);
    for v in [0, size, BASE, 0] {
        p.extend_from_slice(&u64::to_le_bytes(v));
    }
    p
}

fn pair(a: u32, b: u32) -> Vec<u8> {
    let mut p = a.to_le_bytes().to_vec();
    p.extend_from_slice(&b.to_le_bytes());
    p
}

/// The backend closed the connection (a read sees the end, not a timeout).
fn assert_closed(sock: &mut UnixStream) {
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 64];
    let n = sock.read(&mut buf).expect("closed, not timed out");
    assert_eq!(n, 0, "the backend answered instead of closing");
    let _ = sock.write_all(&[0; 12]);
}

/// A good frontend: libblkio reads the first sector.
fn good_frontend(socket: &Path) {
    let mut b = Blkio::new("virtio-blk-vhost-user").unwrap();
    b.set_str("path", socket.to_str().unwrap()).unwrap();
    b.connect().unwrap();
    let mut started = b.start().unwrap();
    let region = b.alloc_mem_region(1 << 20).unwrap();
    b.map_mem_region(&region).unwrap();
    let q = &mut started.queues[0];
    q.read(0, region.addr as *mut u8, 4096, 1, ReqFlags::empty());
    let mut done = [std::mem::MaybeUninit::uninit()];
    let mut timeout = Duration::from_secs(10);
    assert_eq!(q.do_io(&mut done, 1, Some(&mut timeout), None).unwrap(), 1);
    // SAFETY: do_io filled one completion.
    assert_eq!(unsafe { done[0].assume_init_read() }.ret, 0);
}

#[test]
fn bad_control_messages_close_the_connection_and_the_next_frontend_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    std::fs::File::create(&image).unwrap().set_len(MIB).unwrap();
    let socket = dir.path().join("blk.sock");
    let server = BlkServer::new(&BlkOptions::new(&socket, &image)).unwrap();
    let stop = server.stop_handle();
    let backend = thread::spawn(move || server.run());

    // A region twice as long as its memfd.
    let mut s = UnixStream::connect(&socket).unwrap();
    send(&s, SET_OWNER, &[], &[]);
    let fd = memfd(MIB);
    send(&s, SET_MEM_TABLE, &mem_table(2 * MIB), &[&fd]);
    assert_closed(&mut s);

    // A queue size that is not a power of two.
    let mut s = UnixStream::connect(&socket).unwrap();
    send(&s, SET_OWNER, &[], &[]);
    send(&s, SET_VRING_NUM, &pair(0, 100), &[]);
    assert_closed(&mut s);

    // A used ring that runs past the end of the only region.
    let mut s = UnixStream::connect(&socket).unwrap();
    send(&s, SET_OWNER, &[], &[]);
    let fd = memfd(MIB);
    send(&s, SET_MEM_TABLE, &mem_table(MIB), &[&fd]);
    send(&s, SET_VRING_NUM, &pair(0, 256), &[]);
    let mut addr = pair(0, 0);
    for v in [BASE, BASE + MIB - 100, BASE + 0x1000, 0] {
        addr.extend_from_slice(&v.to_le_bytes());
    }
    send(&s, SET_VRING_ADDR, &addr, &[]);
    assert_closed(&mut s);

    // Still alive: a good frontend is served.
    good_frontend(&socket);
    assert!(!backend.is_finished());
    stop.stop();
    backend.join().unwrap().unwrap();
}
