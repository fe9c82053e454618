//! A netlink route socket in one network namespace, and the link changes
//! made through it: one request at a time, each answered before the next
//! is sent.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::net::netlink::SocketAddrNetlink;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

use super::message::{self, Answer};
use super::{HostNetError, Link, LinkOp, Result};

/// The largest answer read: a link's attributes with its statistics take a
/// few KiB.
const ANSWER_MAX: usize = 64 * 1024;

/// A `NETLINK_ROUTE` socket, bound to the network namespace it was made in.
#[derive(Debug)]
pub struct Route {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

fn route_socket() -> io::Result<OwnedFd> {
    // `None`: protocol 0, NETLINK_ROUTE.
    rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(io::Error::from)
}

impl Route {
    /// A socket in this thread's network namespace.
    pub fn open() -> Result<Self> {
        route_socket().map(Self::with).map_err(HostNetError::Socket)
    }

    /// [`open`](Self::open) for callers that map the error themselves.
    pub fn open_raw() -> io::Result<Self> {
        route_socket().map(Self::with)
    }

    /// A socket in the network namespace `ns_file` (a `/run/netns/NAME` or
    /// `/proc/PID/ns/net` file) refers to, `ns` naming it in errors: made
    /// by a short-lived thread that enters the namespace (needs
    /// `CAP_SYS_ADMIN`), so this thread stays where it is.
    pub fn open_in(ns_file: &File, ns: &str) -> Result<Self> {
        let entered = std::thread::scope(|s| -> io::Result<OwnedFd> {
            let made = std::thread::Builder::new()
                .name("pvio-netns".into())
                .spawn_scoped(s, || -> io::Result<OwnedFd> {
                    move_into_link_name_space(ns_file.as_fd(), Some(LinkNameSpaceType::Network))?;
                    route_socket()
                })?;
            made.join()
                .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))
        });
        entered
            .map(Self::with)
            .map_err(|source| HostNetError::Namespace {
                ns: ns.to_owned(),
                source,
            })
    }

    fn with(fd: OwnedFd) -> Self {
        Self {
            fd,
            seq: 0,
            buf: vec![0; ANSWER_MAX],
        }
    }

    /// Sends `msg` and waits for its answer.
    fn request(&mut self, msg: netlink_packet_route::RouteNetlinkMessage) -> io::Result<Answer> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let wire = message::encode(seq, msg);
        rustix::net::sendto(
            &self.fd,
            &wire,
            SendFlags::empty(),
            &SocketAddrNetlink::new(0, 0),
        )?;
        loop {
            let (got, len) = rustix::net::recv(&self.fd, &mut self.buf[..], RecvFlags::TRUNC)?;
            if len > got {
                return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
            }
            if let Some(a) = message::answer(&self.buf[..got], seq)? {
                return Ok(a);
            }
        }
    }

    /// Sends a change and waits for the kernel's acknowledgement.
    fn change(&mut self, msg: netlink_packet_route::RouteNetlinkMessage) -> io::Result<()> {
        match self.request(msg)? {
            Answer::Ack => Ok(()),
            Answer::Link(_) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a link where an acknowledgement was due",
            )),
        }
    }

    /// The link named `name`, or `None` when there is none (in the raw
    /// form the tap's own code maps to its errors).
    pub fn link_raw(&mut self, name: &str) -> io::Result<Option<Link>> {
        match self.request(message::get_link(name)) {
            Ok(Answer::Link(l)) => Ok(Some(l)),
            Ok(Answer::Ack) => Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The link named `name`, or `None` when there is none.
    pub fn link(&mut self, name: &str) -> Result<Option<Link>> {
        self.link_raw(name).map_err(|source| HostNetError::Link {
            op: LinkOp::LookUp(name.to_owned()),
            source,
        })
    }

    /// The link named `name`, which must exist.
    fn existing(&mut self, name: &str, op: impl Fn() -> LinkOp) -> Result<Link> {
        let err = |source| HostNetError::Link { op: op(), source };
        self.link(name)?
            .ok_or_else(|| err(io::Error::from_raw_os_error(libc::ENODEV)))
    }

    /// The bridge named `name`: [`HostNetError::NoBridge`] when there is no
    /// such link, [`HostNetError::NotABridge`] when it is something else.
    pub fn bridge(&mut self, name: &str) -> Result<Link> {
        match self.link(name)? {
            Some(l) if l.is_bridge() => Ok(l),
            Some(_) => Err(HostNetError::NotABridge {
                bridge: name.to_owned(),
            }),
            None => Err(HostNetError::NoBridge {
                bridge: name.to_owned(),
            }),
        }
    }

    /// Sets the MTU of link `index` (raw: the tap's own code maps the
    /// error).
    pub fn set_mtu_raw(&mut self, index: u32, mtu: u32) -> io::Result<()> {
        self.change(message::set_mtu(index, mtu))
    }

    /// Brings link `index` up (raw: the tap's own code maps the error).
    pub fn set_up_raw(&mut self, index: u32) -> io::Result<()> {
        self.change(message::set_up(index, true))
    }

    /// Sets the MTU of link `name`.
    pub fn set_mtu(&mut self, name: &str, mtu: u32) -> Result<()> {
        let op = || LinkOp::SetMtu {
            name: name.to_owned(),
            mtu,
        };
        let link = self.existing(name, op)?;
        self.set_mtu_raw(link.index, mtu)
            .map_err(|source| HostNetError::Link { op: op(), source })
    }

    /// Brings link `name` up or down.
    pub fn set_up(&mut self, name: &str, up: bool) -> Result<()> {
        let op = || LinkOp::SetUp {
            name: name.to_owned(),
            up,
        };
        let link = self.existing(name, op)?;
        self.change(message::set_up(link.index, up))
            .map_err(|source| HostNetError::Link { op: op(), source })
    }

    /// Makes link `name` a port of bridge `bridge`, as
    /// `ip link set NAME master BRIDGE` does.
    pub fn join_bridge(&mut self, name: &str, bridge: &str) -> Result<()> {
        let op = || LinkOp::Join {
            name: name.to_owned(),
            bridge: bridge.to_owned(),
        };
        let master = self.bridge(bridge)?;
        let link = self.existing(name, op)?;
        if link.master == Some(master.index) {
            return Ok(());
        }
        self.change(message::set_master(link.index, master.index))
            .map_err(|source| HostNetError::Link { op: op(), source })
    }

    /// Deletes link `name`; `false` when there was none.
    pub fn delete(&mut self, name: &str) -> Result<bool> {
        match self.change(message::del_link(name)) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
            // Changes are refused to the unprivileged before the name is
            // looked up: a link that is not there is no error even then.
            Err(e)
                if e.raw_os_error() == Some(libc::EPERM)
                    && matches!(self.link_raw(name), Ok(None)) =>
            {
                Ok(false)
            }
            Err(source) => Err(HostNetError::Link {
                op: LinkOp::Delete(name.to_owned()),
                source,
            }),
        }
    }
}
