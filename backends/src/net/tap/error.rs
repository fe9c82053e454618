//! What can go wrong with a tap, each error one line with what to do next,
//! and how a failed `TUNSETIFF` is explained (the interface's driver, asked
//! over ethtool, tells a bridge or a tun device from a tap).

use std::ffi::CStr;
use std::io;
use std::os::fd::AsFd;

use libc::{c_short, c_uint};

use super::super::sys;
use super::TUN_PATH;

/// Errors of opening and configuring a tap device.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The tap name cannot be an interface name.
    #[error("invalid tap name {name:?}: {why}; use 1-15 bytes without '/', ':' or whitespace")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// `/dev/net/tun` does not exist.
    #[error("{TUN_PATH} is missing: load the tun driver (modprobe tun) or create the node (mknod /dev/net/tun c 10 200)")]
    TunMissing,
    /// `/dev/net/tun` exists but cannot be opened.
    #[error("cannot open {TUN_PATH}; run pvio as root or with CAP_NET_ADMIN")]
    OpenTun(#[source] io::Error),
    /// The kernel's tun driver lacks a flag pvio needs.
    #[error("the kernel's tun driver does not support {0}")]
    Unsupported(&'static str),
    /// Creating or attaching the tap needs `CAP_NET_ADMIN`.
    #[error("no permission to create or open tap {name}: run pvio as root or with CAP_NET_ADMIN (or use a tap owned by this user)")]
    Permission {
        /// The tap name.
        name: String,
    },
    /// The name is taken by an interface that is not a tap device.
    #[error("interface {name} exists and is not a tap device ({kind}); choose another --tap name or delete it")]
    NotATap {
        /// The interface name.
        name: String,
        /// What it is, as far as pvio can tell.
        kind: String,
    },
    /// The tap exists with the other multi-queue setting.
    #[error("tap {name} exists {existing}, but {wanted} queue pair(s) were asked for; delete it (ip link del {name}) or change --num-queue-pairs")]
    MultiQueueMismatch {
        /// The interface name.
        name: String,
        /// "as a multi-queue tap" or "as a single-queue tap".
        existing: &'static str,
        /// The number of queue pairs asked for.
        wanted: u16,
    },
    /// Another process has the (single-queue) tap open.
    #[error("tap {name} is in use by another process; stop it or choose another --tap name")]
    Busy {
        /// The interface name.
        name: String,
    },
    /// `TUNSETIFF` failed for another reason.
    #[error("cannot create or attach to tap {name}")]
    Attach {
        /// The interface name.
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A persistent tap was asked for under a name that is taken.
    #[error("interface {name} already exists; a new tap needs a free name")]
    Exists {
        /// The interface name.
        name: String,
    },
    /// A persistent tap was made but could not be given its owner or kept.
    #[error("cannot {what} {name}")]
    Persist {
        /// The interface name.
        name: String,
        /// "set the owner of tap", "set the group of tap" or "make
        /// persistent the tap".
        what: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The vnet header length was refused.
    #[error("tap {name} refuses a {len}-byte virtio-net header")]
    VnetHdr {
        /// The interface name.
        name: String,
        /// The header length.
        len: usize,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `open_queues` was asked for a tap that does not exist.
    #[error("tap {name} does not exist; create it first (ip tuntap add {name} mode tap multi_queue vnet_hdr)")]
    NoSuchTap {
        /// The interface name.
        name: String,
    },
    /// An inherited fd is not a tap queue pvio can use.
    #[error("--tap-fd {fd}: {why}; pass queues from pvio_backends::net::tap::open_queues")]
    BadQueueFd {
        /// The fd number.
        fd: i32,
        /// What is wrong with it.
        why: String,
    },
    /// The kernel refused the offload flags, even the basic ones.
    #[error("tap {name} refuses offload flags {flags:#x}")]
    Offload {
        /// The interface name.
        name: String,
        /// The `TUN_F_*` flags.
        flags: c_uint,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The interface MTU could not be read or set.
    #[error("cannot set the MTU of {name} to {mtu}")]
    Mtu {
        /// The interface name.
        name: String,
        /// The MTU.
        mtu: u16,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The interface could not be brought up (or its state read).
    #[error("cannot bring {name} up")]
    Up {
        /// The interface name.
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Setting the MTU or the link state of the interface needs
    /// `CAP_NET_ADMIN`, even on a tap this user may open.
    #[error("no permission to {what} of {name}: run pvio with CAP_NET_ADMIN (or as root), or set it beforehand (ip link set {name} ...) and leave --mtu out")]
    ConfigPermission {
        /// The interface name.
        name: String,
        /// "set the MTU" or "bring up the link".
        what: &'static str,
    },
}

impl TapError {
    /// `err` for interface `name`, unless `source` says the process lacks
    /// the capability to change `what`.
    pub(super) fn unless_denied(
        name: &str,
        what: &'static str,
        source: io::Error,
        err: impl FnOnce(io::Error) -> Self,
    ) -> Self {
        match source.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => Self::ConfigPermission {
                name: name.to_owned(),
                what,
            },
            _ => err(source),
        }
    }
}

/// Why `TUNSETIFF` failed.
#[derive(Debug)]
pub(super) enum Diagnosis {
    /// The tap exists as a multi-queue tap and one queue was asked for:
    /// retry as multi-queue.
    SingleQueueWanted,
    /// A plain error.
    Error(TapError),
}

impl Diagnosis {
    pub(super) fn into_error(self) -> TapError {
        match self {
            Self::Error(e) => e,
            // Only reached if the multi-queue retry fails the same way.
            Self::SingleQueueWanted => TapError::Attach {
                name: String::new(),
                source: io::Error::from_raw_os_error(libc::EINVAL),
            },
        }
    }
}

/// Explains a failed `TUNSETIFF`. EINVAL on an existing name means a device
/// that is not a tap, or a tap with the other multi-queue setting: the
/// interface's driver (asked over ethtool, in the caller's network
/// namespace) tells which.
pub(super) fn diagnose(
    name: &str,
    cname: &CStr,
    e: io::Error,
    multi_queue: bool,
    wanted: u16,
) -> Diagnosis {
    let owned = || name.to_owned();
    let err = match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => TapError::Permission { name: owned() },
        Some(libc::EBUSY) => TapError::Busy { name: owned() },
        Some(libc::EINVAL) => match driver_of(cname) {
            Some((driver, bus)) if driver == "tun" && bus == "tap" => {
                if multi_queue {
                    TapError::MultiQueueMismatch {
                        name: owned(),
                        existing: "as a single-queue tap",
                        wanted,
                    }
                } else {
                    return Diagnosis::SingleQueueWanted;
                }
            }
            Some((driver, bus)) if driver == "tun" && bus == "tun" => TapError::NotATap {
                name: owned(),
                kind: "a tun (layer 3) device".to_owned(),
            },
            Some((driver, _)) => TapError::NotATap {
                name: owned(),
                kind: format!("driver {driver}"),
            },
            None => TapError::Attach {
                name: owned(),
                source: e,
            },
        },
        _ => TapError::Attach {
            name: owned(),
            source: e,
        },
    };
    Diagnosis::Error(err)
}

/// The driver and bus info of an existing interface, or `None` when there is
/// no such interface (or it does not answer ethtool).
fn driver_of(name: &CStr) -> Option<(String, String)> {
    sys::if_index(name)?;
    let sock = sys::ioctl_socket().ok()?;
    match sys::if_driver(sock.as_fd(), name) {
        Ok(info) => Some(info),
        // Some virtual devices (loopback among them) do not implement
        // ethtool's driver info.
        Err(_) => {
            let flags = sys::if_get_flags(sock.as_fd(), name).unwrap_or(0);
            let lo = c_short::try_from(libc::IFF_LOOPBACK).unwrap_or(0);
            let kind = if flags & lo != 0 {
                "loopback"
            } else {
                "unknown"
            };
            Some((kind.to_owned(), String::new()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_and_busy_errors_name_the_cause() {
        let e = |n| io::Error::from_raw_os_error(n);
        let name = c"pvio-nonexist9";
        let eperm = diagnose("t0", name, e(libc::EPERM), false, 1).into_error();
        assert!(matches!(eperm, TapError::Permission { .. }));
        assert!(eperm.to_string().contains("CAP_NET_ADMIN"), "{eperm}");
        let ebusy = diagnose("t0", name, e(libc::EBUSY), false, 1).into_error();
        assert!(matches!(ebusy, TapError::Busy { .. }));
        // No such interface: the raw error is kept.
        let einval = diagnose("t0", name, e(libc::EINVAL), false, 1).into_error();
        assert!(matches!(einval, TapError::Attach { .. }), "{einval}");
    }

    #[test]
    fn eperm_on_mtu_or_link_names_cap_net_admin() {
        let e = TapError::unless_denied(
            "t0",
            "set the MTU",
            io::Error::from_raw_os_error(libc::EPERM),
            |source| TapError::Up {
                name: "t0".to_owned(),
                source,
            },
        );
        assert!(matches!(e, TapError::ConfigPermission { .. }), "{e}");
        assert!(e.to_string().contains("CAP_NET_ADMIN"), "{e}");
        let e = TapError::unless_denied(
            "t0",
            "bring up the link",
            io::Error::from_raw_os_error(libc::ENODEV),
            |source| TapError::Up {
                name: "t0".to_owned(),
                source,
            },
        );
        assert!(matches!(e, TapError::Up { .. }), "{e}");
    }

    #[test]
    fn loopback_is_not_a_tap() {
        // `lo` exists in every network namespace and is no tun device.
        let err = diagnose(
            "lo",
            c"lo",
            io::Error::from_raw_os_error(libc::EINVAL),
            false,
            1,
        )
        .into_error();
        assert!(matches!(err, TapError::NotATap { .. }), "{err}");
        assert!(err.to_string().contains("not a tap"), "{err}");
    }
}
