//! Tap queues opened by a privileged supervisor and passed to the backend
//! as fds: [`open_queues`] is what the supervisor calls (as root, before it
//! starts the backend), [`Tap::from_fds`] what the backend does with them.
//! The backend then needs no privilege at all: the ioctls it makes while
//! serving (`TUNSETOFFLOAD`, `TUNSETVNETHDRSZ`, `TUNSETQUEUE`) act on the
//! queue fds themselves.
//!
//! It must not know who passes the fds or how.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use libc::c_int;
use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
use rustix::io::{fcntl_setfd, FdFlags};

use super::super::sys;
use super::{validate_name, Result, Tap, TapError, TapQueue};

/// The `TUNSETIFF` flags of every queue pvio uses: a tap (Ethernet frames),
/// no packet-information prefix, a virtio-net header on every frame.
/// `IFF_MULTI_QUEUE` is added when the tap is multi-queue.
pub const QUEUE_FLAGS: c_int = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;

/// Opens `queue_pairs` queues of the existing tap `name` for a backend (call
/// as root or with `CAP_NET_ADMIN`, in the tap's network namespace).
///
/// Each fd is `/dev/net/tun` opened `O_RDWR | O_NONBLOCK | O_CLOEXEC` and
/// attached with `TUNSETIFF` and [`QUEUE_FLAGS`], plus `IFF_MULTI_QUEUE`
/// when `queue_pairs > 1` or the tap is multi-queue already. The link is
/// brought up (`IFF_UP`), as the backend could not do it unprivileged;
/// offloads are off and the header is 12 bytes until a guest negotiates.
/// The fds are close-on-exec: clear `FD_CLOEXEC` on the ones handed to the
/// backend (or `dup2` them) and pass their numbers as `--tap-fd`, in order.
pub fn open_queues(name: &str, queue_pairs: u16) -> Result<Vec<OwnedFd>> {
    let cname = validate_name(name)?;
    if sys::if_index(&cname).is_none() {
        return Err(TapError::NoSuchTap {
            name: name.to_owned(),
        });
    }
    let tap = Tap::open(name, queue_pairs)?;
    tap.set_up()?;
    Ok(tap.into_queues().into_iter().map(|q| q.fd).collect())
}

impl Tap {
    /// Takes over queue fds opened by [`open_queues`] (one per queue pair,
    /// all of one tap). Each becomes close-on-exec and non-blocking; the
    /// flags it was attached with are checked with `TUNGETIFF`.
    pub fn from_fds(fds: Vec<OwnedFd>) -> Result<Self> {
        let multi_queue = fds.len() > 1;
        let mut name: Option<String> = None;
        let mut queues = Vec::with_capacity(fds.len());
        for fd in fds {
            let raw = fd.as_raw_fd();
            let bad = |why: String| TapError::BadQueueFd { fd: raw, why };
            fcntl_setfd(&fd, FdFlags::CLOEXEC).map_err(|e| bad(e.to_string()))?;
            let fl = fcntl_getfl(&fd).map_err(|e| bad(e.to_string()))?;
            if !fl.contains(OFlags::NONBLOCK) {
                fcntl_setfl(&fd, fl | OFlags::NONBLOCK).map_err(|e| bad(e.to_string()))?;
            }
            let (ifname, flags) = sys::tun_get_iff(fd.as_fd())
                .map_err(|e| bad(format!("not an attached tun/tap queue ({e})")))?;
            let flags = c_int::from(flags);
            if flags & QUEUE_FLAGS != QUEUE_FLAGS {
                return Err(bad(format!(
                    "attached with flags {flags:#x}, not IFF_TAP | IFF_NO_PI | IFF_VNET_HDR"
                )));
            }
            if multi_queue && flags & libc::IFF_MULTI_QUEUE == 0 {
                return Err(bad(
                    "several queues given but the tap is not multi-queue".into()
                ));
            }
            match &name {
                Some(n) if *n != ifname => {
                    return Err(bad(format!("a queue of {ifname}, the others are of {n}")));
                }
                _ => name = Some(ifname),
            }
            queues.push(TapQueue { fd });
        }
        let name = name.ok_or(TapError::BadQueueFd {
            fd: -1,
            why: "no queue given".into(),
        })?;
        Self::configure(name, queues, false, multi_queue)
    }
}
