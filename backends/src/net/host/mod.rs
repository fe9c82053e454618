//! The host's network as pvio changes it: links looked up, brought up,
//! given an MTU, joined to a bridge and deleted over rtnetlink
//! (`netlink-packet-route` messages on a `NETLINK_ROUTE` socket), in this
//! network namespace or another one. Persistent taps are made with the tun
//! ioctls of [`tap`](super::tap) ([`create_persistent`](super::tap::create_persistent));
//! everything else about a link is here, for the supervisor's taps and the
//! net backend's own alike. No program (`ip`) is run.
//!
//! It must not know about domains, configs, tap queues or virtio: `tap/`
//! uses it, never the other way round. `message.rs` builds and reads the
//! messages (pure, unit tested), `route.rs` is the socket, `netns.rs`
//! finds a namespace again.

mod message;
mod netns;
mod route;

use std::fmt;
use std::io;

pub use netns::{current as current_netns, open as open_netns};
pub use route::Route;

/// Local result type.
pub type Result<T> = std::result::Result<T, HostNetError>;

/// What pvio reads of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The interface index.
    pub index: u32,
    /// The interface name.
    pub name: String,
    /// Whether it is up (`IFF_UP`).
    pub up: bool,
    /// Its MTU, when the kernel says.
    pub mtu: Option<u32>,
    /// The index of its controller (the bridge it is a port of).
    pub master: Option<u32>,
    /// What kind of link it is, when the kernel says.
    pub kind: Option<LinkKind>,
}

impl Link {
    /// Whether the link is a bridge.
    pub fn is_bridge(&self) -> bool {
        self.kind == Some(LinkKind::Bridge)
    }
}

/// The kinds of link pvio tells apart (`IFLA_INFO_KIND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// A bridge.
    Bridge,
    /// A tun or tap device.
    Tun,
    /// Anything else.
    Other,
}

/// A change or look-up of a link, as an error names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkOp {
    /// Looking up an interface.
    LookUp(String),
    /// Setting an MTU.
    SetMtu {
        /// The interface.
        name: String,
        /// The MTU.
        mtu: u32,
    },
    /// Bringing a link up or down.
    SetUp {
        /// The interface.
        name: String,
        /// Up (or down).
        up: bool,
    },
    /// Joining a link to a bridge.
    Join {
        /// The interface.
        name: String,
        /// The bridge.
        bridge: String,
    },
    /// Deleting a link.
    Delete(String),
}

impl fmt::Display for LinkOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LookUp(n) => write!(f, "look up interface {n}"),
            Self::SetMtu { name, mtu } => write!(f, "set the MTU of {name} to {mtu}"),
            Self::SetUp { name, up: true } => write!(f, "bring {name} up"),
            Self::SetUp { name, up: false } => write!(f, "bring {name} down"),
            Self::Join { name, bridge } => write!(f, "join {name} to bridge {bridge}"),
            Self::Delete(n) => write!(f, "delete {n}"),
        }
    }
}

/// Errors of changing the host's network, each one line with what to do
/// next where there is something to do.
#[derive(Debug, thiserror::Error)]
pub enum HostNetError {
    /// No netlink route socket could be made.
    #[error("cannot open a netlink route socket")]
    Socket(#[source] io::Error),
    /// A namespace could not be entered to reach its links.
    #[error("cannot enter network namespace {ns} (needs root)")]
    Namespace {
        /// The namespace, as `net:[INODE]`.
        ns: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The kernel refused a change or a look-up.
    #[error("cannot {op}")]
    Link {
        /// What was asked.
        op: LinkOp,
        /// The kernel's answer (`EPERM`: not root or without
        /// `CAP_NET_ADMIN`).
        #[source]
        source: io::Error,
    },
    /// The bridge does not exist.
    #[error("bridge {bridge} does not exist; create it with `ip link add {bridge} type bridge && ip link set {bridge} up`")]
    NoBridge {
        /// The bridge's name.
        bridge: String,
    },
    /// The name is taken by a link that is not a bridge.
    #[error("{bridge} is not a bridge; name a bridge, or make one (ip link add NAME type bridge)")]
    NotABridge {
        /// The name.
        bridge: String,
    },
}

/// What became of a link that was deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    /// It was there and is gone now.
    Deleted,
    /// It was already gone.
    Gone,
    /// Its namespace no longer exists: the link went with it.
    NamespaceGone,
}

/// Deletes link `name` in the network namespace `netns` it was made in
/// (`net:[INODE]`; this thread's when `None` or the same), so that a
/// clean-up run from another namespace deletes the right link and says
/// what really happened.
pub fn delete_in(name: &str, netns: Option<&str>) -> Result<Deleted> {
    let here = current_netns();
    let mut route = match netns.filter(|ns| Some(*ns) != here.as_deref()) {
        None => Route::open()?,
        Some(ns) => match open_netns(ns) {
            Some(file) => Route::open_in(&file, ns)?,
            None => return Ok(Deleted::NamespaceGone),
        },
    };
    Ok(if route.delete(name)? {
        Deleted::Deleted
    } else {
        Deleted::Gone
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_was_asked() {
        let e = HostNetError::Link {
            op: LinkOp::Join {
                name: "t0".into(),
                bridge: "br0".into(),
            },
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        assert_eq!(e.to_string(), "cannot join t0 to bridge br0");
        let e = HostNetError::NoBridge {
            bridge: "xenbr0".into(),
        };
        assert!(
            e.to_string().contains("ip link add xenbr0 type bridge"),
            "{e}"
        );
    }

    #[test]
    fn looking_up_and_deleting_a_missing_link_is_no_error() {
        let mut r = Route::open().unwrap();
        assert_eq!(r.link("pvio-gone0").unwrap(), None);
        assert!(r.link("lo").unwrap().is_some_and(|l| !l.is_bridge()));
        assert!(matches!(
            r.bridge("pvio-no-such-br"),
            Err(HostNetError::NoBridge { .. })
        ));
        assert!(matches!(
            r.bridge("lo"),
            Err(HostNetError::NotABridge { .. })
        ));
        assert_eq!(delete_in("pvio-gone0", None).unwrap(), Deleted::Gone);
        let here = current_netns().unwrap();
        assert_eq!(delete_in("pvio-gone0", Some(&here)).unwrap(), Deleted::Gone);
        assert_eq!(
            delete_in("pvio-gone0", Some("net:[1]")).unwrap(),
            Deleted::NamespaceGone
        );
    }
}
