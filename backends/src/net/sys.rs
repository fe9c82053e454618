//! The raw system calls behind a tap device: the `TUN*` ioctls on a
//! `/dev/net/tun` file, the `SIOC*` ioctls that tell what an interface is,
//! and vectored reads and writes. Links are changed over rtnetlink
//! (`host/`).
//!
//! Every `unsafe` block of the net backend's tap handling lives here, each
//! with the reason it is sound. Nothing here interprets errors: `tap/` turns
//! `errno` values into messages.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use libc::{c_int, c_short, c_uint, c_ulong};

/// Longest interface name, without the terminating NUL (`IFNAMSIZ - 1`).
pub const IFNAME_MAX: usize = libc::IFNAMSIZ - 1;

/// Most iovecs one `readv` / `writev` takes (Linux `UIO_MAXIOV`).
pub const IOV_MAX: usize = 1024;

/// A `struct ifreq` with `name` in `ifr_name`. `name` is at most
/// [`IFNAME_MAX`] bytes (checked by the caller; longer names are cut here,
/// which the kernel would then reject or misread, so callers must check).
fn ifreq(name: &CStr) -> libc::ifreq {
    // SAFETY: `ifreq` is plain old data (a byte array and a union of plain
    // data); all-zero is a valid value, and the one the kernel expects for
    // the fields we do not set.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in req
        .ifr_name
        .iter_mut()
        .zip(name.to_bytes().iter().take(IFNAME_MAX))
    {
        *dst = libc::c_char::from_ne_bytes([src]);
    }
    req
}

/// The interface name the kernel wrote back into `req`.
fn ifreq_name(req: &libc::ifreq) -> String {
    let bytes: Vec<u8> = req
        .ifr_name
        .iter()
        .map(|c| c.to_ne_bytes()[0])
        .take_while(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn check(ret: c_int) -> io::Result<c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Opens `/dev/net/tun` (or `path`) read-write, non-blocking, close-on-exec.
pub fn open_tun(path: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: `path` is a NUL-terminated string that outlives the call; the
    // flags ask for nothing that could affect memory safety.
    let fd = check(unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: `open` just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `TUNSETIFF`: attaches `fd` to the interface `name` (created if missing)
/// with `flags` (`IFF_TAP | ...`). Returns the name the kernel used.
pub fn tun_set_iff(fd: BorrowedFd<'_>, name: &CStr, flags: c_short) -> io::Result<String> {
    let mut req = ifreq(name);
    req.ifr_ifru.ifru_flags = flags;
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, and `req` is a
    // live, properly laid out `ifreq` for the whole call.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req) })?;
    Ok(ifreq_name(&req))
}

/// `TUNGETIFF`: the name of the interface `fd` is attached to and the
/// `IFF_*` flags it was attached with.
pub fn tun_get_iff(fd: BorrowedFd<'_>) -> io::Result<(String, c_short)> {
    let mut req = ifreq(c"");
    // SAFETY: TUNGETIFF writes one `struct ifreq`, live and properly laid
    // out for the whole call.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETIFF, &mut req) })?;
    // SAFETY: the kernel filled the `ifru_flags` member, a `short` for which
    // every bit pattern is valid.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    Ok((ifreq_name(&req), flags))
}

/// `TUNGETFEATURES`: the `IFF_*` flags this kernel's tun driver supports.
pub fn tun_get_features(fd: BorrowedFd<'_>) -> io::Result<c_uint> {
    let mut features: c_uint = 0;
    // SAFETY: TUNGETFEATURES writes one `unsigned int` to the pointer, which
    // points to a live `c_uint`.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETFEATURES, &mut features) })?;
    Ok(features)
}

/// `TUNSETOFFLOAD`: which offloaded packets (`TUN_F_*`) the reader of `fd`
/// accepts.
pub fn tun_set_offload(fd: BorrowedFd<'_>, flags: c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned long);
    // no memory is passed.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, c_ulong::from(flags)) })?;
    Ok(())
}

/// `TUNSETVNETHDRSZ`: the length of the virtio-net header in front of every
/// frame read from or written to the device.
pub fn tun_set_vnet_hdr_sz(fd: BorrowedFd<'_>, len: c_int) -> io::Result<()> {
    // SAFETY: TUNSETVNETHDRSZ reads one `int` from the pointer, which points
    // to a live `c_int`.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &len) })?;
    Ok(())
}

/// `TUNSETPERSIST`: whether the interface `fd` is attached to outlives
/// its last open file.
pub fn tun_set_persist(fd: BorrowedFd<'_>, persist: bool) -> io::Result<()> {
    // SAFETY: TUNSETPERSIST takes its argument by value (an unsigned long);
    // no memory is passed.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETPERSIST, c_ulong::from(persist)) })?;
    Ok(())
}

/// `TUNSETOWNER`: the user who may attach to the interface without
/// `CAP_NET_ADMIN`.
pub fn tun_set_owner(fd: BorrowedFd<'_>, uid: u32) -> io::Result<()> {
    // SAFETY: TUNSETOWNER takes the uid by value (an unsigned long); no
    // memory is passed.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOWNER, c_ulong::from(uid)) })?;
    Ok(())
}

/// `TUNSETGROUP`: the group whose members may attach to the interface
/// without `CAP_NET_ADMIN`.
pub fn tun_set_group(fd: BorrowedFd<'_>, gid: u32) -> io::Result<()> {
    // SAFETY: TUNSETGROUP takes the gid by value (an unsigned long); no
    // memory is passed.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETGROUP, c_ulong::from(gid)) })?;
    Ok(())
}

/// `TUNSETQUEUE`: attaches (`IFF_ATTACH_QUEUE`) or detaches
/// (`IFF_DETACH_QUEUE`) one queue of a multi-queue tap, so that the kernel
/// steers frames to it or not.
pub fn tun_set_queue(fd: BorrowedFd<'_>, attach: bool) -> io::Result<()> {
    let mut req = ifreq(c"");
    let flag = if attach {
        libc::IFF_ATTACH_QUEUE
    } else {
        libc::IFF_DETACH_QUEUE
    };
    req.ifr_ifru.ifru_flags =
        c_short::try_from(flag).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: TUNSETQUEUE reads one `struct ifreq`, live for the call.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETQUEUE, &mut req) })?;
    Ok(())
}

/// An `AF_INET` datagram socket, the handle for the `SIOC*IF*` ioctls (they
/// act on the network namespace the socket was made in).
pub fn ioctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: `socket` takes plain integers.
    let fd =
        check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `socket` just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `SIOCGIFFLAGS`.
pub fn if_get_flags(sock: BorrowedFd<'_>, name: &CStr) -> io::Result<c_short> {
    let mut req = ifreq(name);
    // SAFETY: SIOCGIFFLAGS reads and writes one `struct ifreq`, live for the
    // call.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
    // SAFETY: the kernel filled the `ifru_flags` member, a `short` for which
    // every bit pattern is valid.
    Ok(unsafe { req.ifr_ifru.ifru_flags })
}

/// `struct ethtool_drvinfo` (linux/ethtool.h), the answer to
/// `ETHTOOL_GDRVINFO`.
#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// `ETHTOOL_GDRVINFO` (linux/ethtool.h).
const ETHTOOL_GDRVINFO: u32 = 3;

/// The driver name and bus info of interface `name` (`SIOCETHTOOL`,
/// `ETHTOOL_GDRVINFO`): `("tun", "tap")` for a tap, `("tun", "tun")` for a
/// tun device, `("bridge", ..)`, `("veth", ..)` and so on for others.
pub fn if_driver(sock: BorrowedFd<'_>, name: &CStr) -> io::Result<(String, String)> {
    let mut info = EthtoolDrvinfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        n_priv_flags: 0,
        n_stats: 0,
        testinfo_len: 0,
        eedump_len: 0,
        regdump_len: 0,
    };
    let mut req = ifreq(name);
    req.ifr_ifru.ifru_data = std::ptr::addr_of_mut!(info).cast();
    // SAFETY: SIOCETHTOOL reads the `ifreq`, whose `ifru_data` points to
    // `info`, a live `ethtool_drvinfo` the kernel fills; both outlive the
    // call.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut req) })?;
    let text = |b: &[u8]| {
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    };
    Ok((text(&info.driver), text(&info.bus_info)))
}

/// The interface index of `name` in the caller's network namespace, or `None`
/// when there is no such interface.
pub fn if_index(name: &CStr) -> Option<u32> {
    // SAFETY: `name` is NUL-terminated and outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// Whether `fd` is readable now (`poll(2)` with no timeout); false on any
/// error.
pub fn readable(fd: BorrowedFd<'_>) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is one live pollfd for the call; a zero timeout never
    // blocks.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & libc::POLLIN != 0
}

/// `readv(2)` into `iov`; returns the number of bytes read.
///
/// # Safety
///
/// Every iovec must describe memory that is mapped, writable, and not behind
/// a live Rust reference for the duration of the call (guest memory, reached
/// through a `vm-memory` guard the caller holds, qualifies).
pub unsafe fn readv(fd: BorrowedFd<'_>, iov: &[libc::iovec]) -> io::Result<usize> {
    let count = c_int::try_from(iov.len().min(IOV_MAX)).unwrap_or(c_int::MAX);
    // SAFETY: `iov` is a live slice of at least `count` iovecs; the memory
    // they point to is valid for writes per this function's contract.
    let n = unsafe { libc::readv(fd.as_raw_fd(), iov.as_ptr(), count) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// `writev(2)` from `iov`; returns the number of bytes written.
///
/// # Safety
///
/// Every iovec must describe memory that is mapped and readable for the
/// duration of the call.
pub unsafe fn writev(fd: BorrowedFd<'_>, iov: &[libc::iovec]) -> io::Result<usize> {
    let count = c_int::try_from(iov.len().min(IOV_MAX)).unwrap_or(c_int::MAX);
    // SAFETY: `iov` is a live slice of at least `count` iovecs; the memory
    // they point to is valid for reads per this function's contract.
    let n = unsafe { libc::writev(fd.as_raw_fd(), iov.as_ptr(), count) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}
