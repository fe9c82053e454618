//! Helpers shared by the net backend's tests: a network namespace made (and
//! removed) by the test, and threads that run inside it.
//!
//! Tests never use an address outside the namespace they make.

#![allow(dead_code)]

pub mod inproc;
pub mod tcp;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A network namespace (`ip netns add`), deleted on drop with everything in
/// it (taps made inside disappear with it).
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Makes a fresh namespace named after `tag`, the process id and a
    /// counter, with `lo` up.
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "pvio-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME ARGS...` and panics on failure.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("ip", &all);
    }

    /// Runs `ip -n NAME ARGS...` and returns whether it succeeded.
    pub fn try_ip(&self, args: &[&str]) -> bool {
        Command::new("ip")
            .args(["-n", &self.name])
            .args(args)
            .stderr(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Runs `program args...` inside the namespace (`ip netns exec`).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Moves the calling thread into the namespace.
    pub fn enter(&self) {
        let f = File::open(format!("/var/run/netns/{}", self.name)).expect("netns file");
        // SAFETY: setns takes a descriptor we own for the duration of the
        // call and a flag; it changes only this thread's namespace.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    }

    /// Runs `f` on a new thread inside the namespace and returns its result.
    pub fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = File::open(path).expect("netns file");
            // SAFETY: as in `enter`.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("thread in namespace panicked")
    }

    /// Spawns `f` on a thread inside the namespace.
    pub fn spawn<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> std::thread::JoinHandle<R> {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = File::open(path).expect("netns file");
            // SAFETY: as in `enter`.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
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

/// A raw `AF_PACKET` socket bound to one interface: sees every frame the
/// interface sends or receives, and injects frames as if they arrived on it.
pub struct PacketSocket {
    fd: std::os::fd::OwnedFd,
    ifindex: i32,
}

impl PacketSocket {
    /// Opens a socket on interface `name` (in the calling thread's
    /// namespace), with a receive timeout.
    pub fn bind(name: &str) -> Self {
        use std::os::fd::FromRawFd;
        let cname = std::ffi::CString::new(name).unwrap();
        // SAFETY: plain integer arguments.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(eth_p_all().to_be()),
            )
        };
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        // SAFETY: the descriptor was just returned to us.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        // SAFETY: NUL-terminated name.
        let ifindex = i32::try_from(unsafe { libc::if_nametoindex(cname.as_ptr()) }).unwrap();
        assert!(ifindex > 0, "no interface {name}");
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = u16::try_from(libc::AF_PACKET).unwrap();
        sll.sll_protocol = eth_p_all().to_be();
        sll.sll_ifindex = ifindex;
        // SAFETY: `sll` is a live sockaddr_ll of the size given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::addr_of!(sll).cast(),
                socklen::<libc::sockaddr_ll>(),
            )
        };
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        let tv = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: `tv` is a live timeval of the size given.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                std::ptr::addr_of!(tv).cast(),
                socklen::<libc::timeval>(),
            )
        };
        Self { fd, ifindex }
    }

    /// Makes every frame sent start with a 10-byte virtio-net header
    /// (`PACKET_VNET_HDR`), so the kernel builds offloaded packets: a GSO
    /// frame is handed to the tap whole when the tap's reader took TSO, and
    /// segmented (and checksummed) by the kernel otherwise.
    pub fn with_vnet_hdr(self) -> Self {
        let on: libc::c_int = 1;
        // SAFETY: `on` is a live int of the size given.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_VNET_HDR,
                std::ptr::addr_of!(on).cast(),
                socklen::<libc::c_int>(),
            )
        };
        assert_eq!(
            rc,
            0,
            "PACKET_VNET_HDR: {}",
            std::io::Error::last_os_error()
        );
        self
    }

    /// Sends `frame` behind the 10-byte virtio-net header `hdr` (see
    /// [`with_vnet_hdr`](Self::with_vnet_hdr)).
    pub fn send_with_hdr(&self, hdr: &[u8], frame: &[u8]) {
        let mut buf = hdr[..10].to_vec();
        buf.extend_from_slice(frame);
        self.send_raw(&buf, &frame[..6]);
    }

    /// Sends one frame out of the interface (the tap's reader receives it).
    pub fn send(&self, frame: &[u8]) {
        self.send_raw(frame, &frame[..6]);
    }

    fn send_raw(&self, frame: &[u8], dst: &[u8]) {
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = u16::try_from(libc::AF_PACKET).unwrap();
        sll.sll_ifindex = self.ifindex;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(dst);
        // SAFETY: `frame` and `sll` are live for the call.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                std::ptr::addr_of!(sll).cast(),
                socklen::<libc::sockaddr_ll>(),
            )
        };
        assert_eq!(
            usize::try_from(n).ok(),
            Some(frame.len()),
            "sendto: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Receives frames until one satisfies `want` (others, such as IPv6
    /// router solicitations, are skipped), or panics after the timeout.
    pub fn recv_matching(&self, want: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let mut buf = vec![0u8; 70_000];
        loop {
            // SAFETY: `buf` is live and writable for its length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            assert!(n >= 0, "recv: {}", std::io::Error::last_os_error());
            let frame = &buf[..usize::try_from(n).unwrap()];
            if want(frame) {
                return frame.to_vec();
            }
        }
    }
}

/// An Ethernet frame with an experimental EtherType (0x88b5, IEEE local
/// experimental) so that no protocol stack answers it, `len` bytes long,
/// filled with a pattern from `seed`.
pub fn test_frame(seed: u8, len: usize) -> Vec<u8> {
    assert!(len >= 14);
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, 0x00, 0x02]); // dst
    f.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, 0x00, 0x01]); // src
    f.extend_from_slice(&[0x88, 0xb5]);
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(1);
    while f.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        f.push(x.to_le_bytes()[0]);
    }
    f
}

/// Whether `frame` is one of ours (EtherType 0x88b5).
pub fn is_test_frame(frame: &[u8]) -> bool {
    frame.len() >= 14 && frame[12..14] == [0x88, 0xb5]
}

/// Drops `CAP_NET_ADMIN` from the calling thread's effective capabilities
/// (capabilities are per thread on Linux).
pub fn drop_net_admin_in_this_thread() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget writes two `Data` into `data` and reads `header`.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    assert_eq!(rc, 0, "capget");
    const CAP_NET_ADMIN: u32 = 12;
    data[0].effective &= !(1 << CAP_NET_ADMIN);
    // SAFETY: capset reads `header` and two `Data`.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    assert_eq!(rc, 0, "capset: {}", std::io::Error::last_os_error());
}

fn eth_p_all() -> u16 {
    u16::try_from(libc::ETH_P_ALL).unwrap()
}

fn socklen<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(std::mem::size_of::<T>()).unwrap()
}
