//! The host side of the PV NIC: a Linux tap device opened through
//! `/dev/net/tun` with a virtio-net header on every frame
//! (`IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, plus `IFF_MULTI_QUEUE` with one
//! file per queue pair when there is more than one).
//!
//! The tap is created when it does not exist (and then disappears when pvio
//! closes it), or an existing one is opened. Offloads and the header length
//! follow what the guest negotiated; the MTU and the link state are set on
//! the interface. Every failure names what to do next.
//!
//! A tap can also come as queue fds a privileged supervisor opened
//! ([`open_queues`]) and passed: `fd.rs` takes them over.
//!
//! It must not know about virtqueues or guest memory: the raw calls are in
//! `sys.rs`, the feature mapping in `offload.rs`, the interface's MTU and
//! link state are changed over rtnetlink by `host/`. Here: opening and
//! configuring the tap; `fd.rs`: queues opened elsewhere; `persist.rs`:
//! persistent taps made for others to open; `queue.rs`: reading and
//! writing frames; `error.rs`: the errors and how a refusal is diagnosed.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use libc::{c_int, c_short, c_uint};

use super::host::{self, Route};
use super::offload::TUN_F_ALL;
use super::sys;

/// Where the tun driver's control device lives.
pub const TUN_PATH: &str = "/dev/net/tun";

/// Most frames [`Tap::drain`] reads from one queue.
const MAX_DRAIN: usize = 4096;

mod error;
mod fd;
mod persist;
mod queue;

pub use error::TapError;
use error::{diagnose, Diagnosis};
pub use fd::{open_queues, QUEUE_FLAGS};
pub use persist::{create_persistent, create_persistent_at, TapOwner};
pub use queue::TapQueue;

/// Local result type.
pub type Result<T> = std::result::Result<T, TapError>;

/// Checks `name` the way the kernel's `dev_valid_name` does.
pub fn validate_name(name: &str) -> Result<CString> {
    let bad = |why| TapError::InvalidName {
        name: name.to_owned(),
        why,
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.len() > sys::IFNAME_MAX {
        return Err(bad("it is longer than 15 bytes"));
    }
    if name == "." || name == ".." {
        return Err(bad("it is a path component"));
    }
    if name.contains('/') {
        return Err(bad("it contains '/'"));
    }
    if name.contains(':') {
        return Err(bad("it contains ':'"));
    }
    if name.chars().any(char::is_whitespace) {
        return Err(bad("it contains whitespace"));
    }
    CString::new(name).map_err(|_| bad("it contains a NUL byte"))
}

/// An open tap device with one [`TapQueue`] per queue pair.
#[derive(Debug)]
pub struct Tap {
    name: String,
    queues: Vec<TapQueue>,
    created: bool,
    offload_support: c_uint,
}

impl Tap {
    /// Opens tap `name` with `queue_pairs` queues (at least 1), creating it if
    /// it does not exist. Offloads start off and the header is 12 bytes
    /// until [`set_offload`](Self::set_offload) and
    /// [`set_vnet_hdr_len`](Self::set_vnet_hdr_len) say otherwise.
    pub fn open(name: &str, queue_pairs: u16) -> Result<Self> {
        Self::open_at(Path::new(TUN_PATH), name, queue_pairs)
    }

    /// [`open`](Self::open) with another control device path (for tests of
    /// the error paths).
    pub fn open_at(tun_path: &Path, name: &str, queue_pairs: u16) -> Result<Self> {
        let cname = validate_name(name)?;
        let queue_pairs = queue_pairs.max(1);
        let existed = sys::if_index(&cname).is_some();
        let path = CString::new(tun_path.as_os_str().as_encoded_bytes())
            .map_err(|_| TapError::TunMissing)?;

        let first = open_tun(&path)?;
        let mut multi_queue = queue_pairs > 1;
        check_tun_features(&first, multi_queue)?;
        if let Err(e) = attach(&first, &cname, multi_queue) {
            let why = diagnose(name, &cname, e, multi_queue, queue_pairs);
            // An existing multi-queue tap serves one queue pair just as well.
            if !matches!(why, Diagnosis::SingleQueueWanted) {
                return Err(why.into_error());
            }
            multi_queue = true;
            attach(&first, &cname, true)
                .map_err(|e| diagnose(name, &cname, e, true, queue_pairs).into_error())?;
        }
        let mut queues = vec![TapQueue { fd: first }];
        for _ in 1..queue_pairs {
            let fd = open_tun(&path)?;
            attach(&fd, &cname, multi_queue)
                .map_err(|e| diagnose(name, &cname, e, multi_queue, queue_pairs).into_error())?;
            queues.push(TapQueue { fd });
        }
        Self::configure(name.to_owned(), queues, !existed, multi_queue)
    }

    /// Probes the offloads, turns them off and sets the 12-byte header: the
    /// state every guest starts from.
    fn configure(
        name: String,
        queues: Vec<TapQueue>,
        created: bool,
        multi_queue: bool,
    ) -> Result<Self> {
        let mut tap = Self {
            name,
            queues,
            created,
            offload_support: 0,
        };
        tap.offload_support = tap.probe_offloads();
        tap.set_offload(0)?;
        tap.set_vnet_hdr_len(pvio_frontend_protocol::net::NET_HDR_LEN)?;
        tracing::info!(
            "tap {}: {} with {} queue(s){}, offloads the kernel accepts: {:#x}",
            tap.name,
            if tap.created { "created" } else { "opened" },
            tap.queues.len(),
            if multi_queue { " (multi-queue)" } else { "" },
            tap.offload_support
        );
        Ok(tap)
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether pvio created the tap (it then disappears when closed).
    pub fn created(&self) -> bool {
        self.created
    }

    /// The queues, one per queue pair.
    pub fn queues(&self) -> &[TapQueue] {
        &self.queues
    }

    /// Takes the queues out (the tap stays as long as they are open).
    pub fn into_queues(self) -> Vec<TapQueue> {
        self.queues
    }

    /// The `TUN_F_*` offload flags this kernel accepts on this tap.
    pub fn offload_support(&self) -> c_uint {
        self.offload_support
    }

    fn first(&self) -> BorrowedFd<'_> {
        // `open` makes at least one queue and nothing removes one.
        self.queues[0].as_fd()
    }

    /// Tries every offload, then without UFO (dropped by Linux 4.14, back
    /// in some kernels), then without USO: the set that sticks is what the
    /// kernel supports.
    fn probe_offloads(&self) -> c_uint {
        let candidates = [
            TUN_F_ALL,
            TUN_F_ALL & !libc::TUN_F_UFO,
            TUN_F_ALL & !(libc::TUN_F_USO4 | libc::TUN_F_USO6),
            TUN_F_ALL & !(libc::TUN_F_UFO | libc::TUN_F_USO4 | libc::TUN_F_USO6),
        ];
        for flags in candidates {
            if sys::tun_set_offload(self.first(), flags).is_ok() {
                return flags;
            }
        }
        0
    }

    /// Tells the kernel which offloaded frames (`TUN_F_*`) may be read from
    /// the tap, keeping only what it supports. Returns the flags set.
    pub fn set_offload(&self, flags: c_uint) -> Result<c_uint> {
        let flags = flags & self.offload_support;
        sys::tun_set_offload(self.first(), flags).map_err(|source| TapError::Offload {
            name: self.name.clone(),
            flags,
            source,
        })?;
        Ok(flags)
    }

    /// Reads and drops every frame waiting in the tap's queues (frames
    /// queued for a guest that went away); returns how many.
    pub fn drain(&self) -> usize {
        // tun consumes a frame even when it is cut short: a small buffer
        // does.
        let mut buf = [0u8; 256];
        let mut dropped = 0;
        for q in &self.queues {
            // At most a full tun queue's worth per call, so that frames
            // arriving as fast as they are read cannot keep it here.
            for _ in 0..MAX_DRAIN {
                match q.read(&mut buf) {
                    Ok(_) => dropped += 1,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        dropped
    }

    /// Attaches or detaches queue `index` of a multi-queue tap (frames are
    /// only steered to attached queues). A detached queue's file reports an
    /// error to poll: stop polling it first.
    pub fn set_queue_attached(&self, index: usize, attach: bool) -> io::Result<()> {
        let q = self
            .queues
            .get(index)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        sys::tun_set_queue(q.as_fd(), attach)
    }

    /// Sets the length of the virtio-net header on every frame (10, 12 or
    /// 20 bytes; the device-wide setting, shared by all queues).
    pub fn set_vnet_hdr_len(&self, len: usize) -> Result<()> {
        let err = |source| TapError::VnetHdr {
            name: self.name.clone(),
            len,
            source,
        };
        let sz =
            c_int::try_from(len).map_err(|_| err(io::Error::from_raw_os_error(libc::EINVAL)))?;
        sys::tun_set_vnet_hdr_sz(self.first(), sz).map_err(err)
    }

    /// The interface as the kernel describes it now.
    fn link(&self, route: &mut Route) -> io::Result<host::Link> {
        route
            .link_raw(&self.name)?
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))
    }

    /// The interface MTU.
    pub fn mtu(&self) -> Result<u16> {
        let err = |source| TapError::Mtu {
            name: self.name.clone(),
            mtu: 0,
            source,
        };
        let mut route = Route::open_raw().map_err(err)?;
        let mtu = self
            .link(&mut route)
            .and_then(|l| {
                l.mtu
                    .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODATA))
            })
            .map_err(err)?;
        // An MTU above 65535 (loopback-like) is capped: a frame cannot be longer.
        Ok(u16::try_from(mtu).unwrap_or(u16::MAX))
    }

    /// Sets the interface MTU.
    pub fn set_mtu(&self, mtu: u16) -> Result<()> {
        let err = |source| {
            TapError::unless_denied(&self.name, "set the MTU", source, |source| TapError::Mtu {
                name: self.name.clone(),
                mtu,
                source,
            })
        };
        let mut route = Route::open_raw().map_err(err)?;
        let link = self.link(&mut route).map_err(err)?;
        route.set_mtu_raw(link.index, u32::from(mtu)).map_err(err)
    }

    /// Brings the interface up (`IFF_UP`), as `ip link set NAME up` does.
    pub fn set_up(&self) -> Result<()> {
        let err = |source| {
            TapError::unless_denied(&self.name, "bring up the link", source, |source| {
                TapError::Up {
                    name: self.name.clone(),
                    source,
                }
            })
        };
        let mut route = Route::open_raw().map_err(err)?;
        let link = self.link(&mut route).map_err(err)?;
        if link.up {
            return Ok(());
        }
        route.set_up_raw(link.index).map_err(err)
    }
}

fn open_tun(path: &CStr) -> Result<OwnedFd> {
    sys::open_tun(path).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENODEV | libc::ENXIO) => TapError::TunMissing,
        _ => TapError::OpenTun(e),
    })
}

fn check_tun_features(fd: &OwnedFd, multi_queue: bool) -> Result<()> {
    // Kernels without TUNGETFEATURES are older than any pvio supports; if the
    // call fails, let TUNSETIFF report the problem.
    let Ok(features) = sys::tun_get_features(fd.as_fd()) else {
        return Ok(());
    };
    let has = |flag: c_int| u32::try_from(flag).is_ok_and(|f| features & f == f);
    if !has(libc::IFF_TAP) {
        return Err(TapError::Unsupported("IFF_TAP"));
    }
    if !has(libc::IFF_VNET_HDR) {
        return Err(TapError::Unsupported("IFF_VNET_HDR"));
    }
    if multi_queue && !has(libc::IFF_MULTI_QUEUE) {
        return Err(TapError::Unsupported("IFF_MULTI_QUEUE"));
    }
    Ok(())
}

/// `TUNSETIFF` with pvio's flags.
fn attach(fd: &OwnedFd, name: &CStr, multi_queue: bool) -> io::Result<()> {
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;
    if multi_queue {
        flags |= libc::IFF_MULTI_QUEUE;
    }
    let flags = c_short::try_from(flags).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    sys::tun_set_iff(fd.as_fd(), name, flags).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_kernel_rules() {
        assert!(validate_name("tap0").is_ok());
        assert!(validate_name("pvio-net.1_x").is_ok());
        assert!(validate_name("a23456789012345").is_ok());
        for (bad, why) in [
            ("", "empty"),
            ("a234567890123456", "longer than 15"),
            ("a/b", "'/'"),
            ("a b", "whitespace"),
            ("a\tb", "whitespace"),
            ("eth0:1", "':'"),
            (".", "path component"),
            ("..", "path component"),
        ] {
            let err = validate_name(bad).unwrap_err();
            assert!(matches!(err, TapError::InvalidName { .. }), "{bad:?}");
            assert!(err.to_string().contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_missing_control_device_says_how_to_get_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = Tap::open_at(&dir.path().join("tun"), "pviotest0", 1).unwrap_err();
        assert!(matches!(err, TapError::TunMissing), "{err}");
        assert!(err.to_string().contains("modprobe tun"), "{err}");
    }

    #[test]
    fn a_bad_name_is_refused_before_touching_the_kernel() {
        let dir = tempfile::tempdir().unwrap();
        let err = Tap::open_at(&dir.path().join("tun"), "no/slash", 1).unwrap_err();
        assert!(matches!(err, TapError::InvalidName { .. }), "{err}");
    }
}
