//! The rtnetlink messages pvio sends about links and what it reads from
//! the answers, as bytes in and out: no socket here, so every message is
//! checked by unit tests. The types are `netlink-packet-route`'s.

use std::io;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLMSG_ALIGNTO, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;

use super::{Link, LinkKind};

/// A request for the link named `name` (`RTM_GETLINK` by `IFLA_IFNAME`).
pub fn get_link(name: &str) -> RouteNetlinkMessage {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.to_owned()));
    RouteNetlinkMessage::GetLink(m)
}

/// Sets the MTU of link `index` (`RTM_SETLINK` with `IFLA_MTU`).
pub fn set_mtu(index: u32, mtu: u32) -> RouteNetlinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.attributes.push(LinkAttribute::Mtu(mtu));
    RouteNetlinkMessage::SetLink(m)
}

/// Brings link `index` up or down (`RTM_SETLINK`, `IFF_UP` in the change
/// mask).
pub fn set_up(index: u32, up: bool) -> RouteNetlinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.header.change_mask = LinkFlags::Up;
    if up {
        m.header.flags = LinkFlags::Up;
    }
    RouteNetlinkMessage::SetLink(m)
}

/// Makes link `master` the controller (a bridge) of link `index`
/// (`RTM_SETLINK` with `IFLA_MASTER`); 0 releases it.
pub fn set_master(index: u32, master: u32) -> RouteNetlinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.attributes.push(LinkAttribute::Controller(master));
    RouteNetlinkMessage::SetLink(m)
}

/// Deletes the link named `name` (`RTM_DELLINK` by `IFLA_IFNAME`).
pub fn del_link(name: &str) -> RouteNetlinkMessage {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.to_owned()));
    RouteNetlinkMessage::DelLink(m)
}

/// Whether the kernel is to acknowledge a request (every change is; a
/// look-up is answered by the link itself).
pub fn wants_ack(msg: &RouteNetlinkMessage) -> bool {
    !matches!(msg, RouteNetlinkMessage::GetLink(_))
}

/// `msg` as a netlink datagram with sequence number `seq`.
pub fn encode(seq: u32, msg: RouteNetlinkMessage) -> Vec<u8> {
    let ack = if wants_ack(&msg) { NLM_F_ACK } else { 0 };
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | ack;
    header.sequence_number = seq;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    buf
}

/// What the kernel said to a request.
#[derive(Debug)]
pub enum Answer {
    /// The request was carried out (an `NLMSG_ERROR` with code 0).
    Ack,
    /// The link asked for.
    Link(Link),
}

/// The answer to request `seq` among the messages of one datagram, if it
/// is there (messages of other requests are skipped). A refusal is the
/// kernel's `errno`; bytes that do not parse are `InvalidData`.
pub fn answer(datagram: &[u8], seq: u32) -> io::Result<Option<Answer>> {
    let mut rest = datagram;
    while !rest.is_empty() {
        let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let len = usize::try_from(msg.header.length).unwrap_or(usize::MAX);
        let align = usize::from(NLMSG_ALIGNTO);
        let step = len.checked_next_multiple_of(align).unwrap_or(usize::MAX);
        rest = rest.get(step..).unwrap_or_default();
        if msg.header.sequence_number != seq {
            continue;
        }
        match msg.payload {
            NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
            NetlinkPayload::Error(_) => return Ok(Some(Answer::Ack)),
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => {
                return Ok(Some(Answer::Link(link_of(l))))
            }
            _ => {}
        }
    }
    Ok(None)
}

/// What pvio reads of a link.
pub fn link_of(msg: LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        up: msg.header.flags.contains(LinkFlags::Up),
        mtu: None,
        master: None,
        kind: None,
    };
    for a in msg.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::Mtu(m) => link.mtu = Some(m),
            LinkAttribute::Controller(m) if m != 0 => link.master = Some(m),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        link.kind = Some(match k {
                            InfoKind::Bridge => LinkKind::Bridge,
                            InfoKind::Tun => LinkKind::Tun,
                            _ => LinkKind::Other,
                        });
                    }
                }
            }
            _ => {}
        }
    }
    link
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroI32;

    use netlink_packet_core::ErrorMessage;

    use super::*;

    /// The fixed header of a request: (length, type, flags, seq).
    fn nlmsghdr(buf: &[u8]) -> (u32, u16, u16, u32) {
        let u32_at = |i: usize| u32::from_ne_bytes(buf[i..i + 4].try_into().unwrap());
        let u16_at = |i: usize| u16::from_ne_bytes(buf[i..i + 2].try_into().unwrap());
        (u32_at(0), u16_at(4), u16_at(6), u32_at(8))
    }

    /// The `ifinfomsg` after the netlink header: (index, flags, change).
    fn ifinfomsg(buf: &[u8]) -> (u32, u32, u32) {
        let u32_at = |i: usize| u32::from_ne_bytes(buf[16 + i..20 + i].try_into().unwrap());
        (u32_at(4), u32_at(8), u32_at(12))
    }

    /// The attributes after the `ifinfomsg`: (type, value).
    fn attrs(buf: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 32;
        while at + 4 <= buf.len() {
            let len = usize::from(u16::from_ne_bytes([buf[at], buf[at + 1]]));
            let kind = u16::from_ne_bytes([buf[at + 2], buf[at + 3]]);
            out.push((kind, buf[at + 4..at + len].to_vec()));
            at += len.next_multiple_of(4);
        }
        out
    }

    const RTM_NEWLINK: u16 = 16;
    const RTM_DELLINK: u16 = 17;
    const RTM_GETLINK: u16 = 18;
    const RTM_SETLINK: u16 = 19;
    const IFLA_IFNAME: u16 = 3;
    const IFLA_MTU: u16 = 4;
    const IFLA_MASTER: u16 = 10;

    #[test]
    fn a_look_up_names_the_link_and_asks_no_ack() {
        let buf = encode(7, get_link("tap0"));
        let (len, kind, flags, seq) = nlmsghdr(&buf);
        assert_eq!(usize::try_from(len).unwrap(), buf.len());
        assert_eq!((kind, flags, seq), (RTM_GETLINK, NLM_F_REQUEST, 7));
        assert_eq!(ifinfomsg(&buf), (0, 0, 0));
        assert_eq!(attrs(&buf), vec![(IFLA_IFNAME, b"tap0\0".to_vec())]);
    }

    #[test]
    fn changes_name_the_index_and_ask_an_ack() {
        let buf = encode(1, set_mtu(5, 9000));
        let (_, kind, flags, _) = nlmsghdr(&buf);
        assert_eq!((kind, flags), (RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK));
        assert_eq!(ifinfomsg(&buf), (5, 0, 0));
        assert_eq!(
            attrs(&buf),
            vec![(IFLA_MTU, 9000u32.to_ne_bytes().to_vec())]
        );

        let buf = encode(2, set_master(5, 3));
        assert_eq!(
            attrs(&buf),
            vec![(IFLA_MASTER, 3u32.to_ne_bytes().to_vec())]
        );

        let iff_up = u32::try_from(libc::IFF_UP).unwrap();
        let up = encode(3, set_up(5, true));
        assert_eq!(ifinfomsg(&up), (5, iff_up, iff_up));
        assert!(attrs(&up).is_empty());
        let down = encode(4, set_up(5, false));
        assert_eq!(ifinfomsg(&down), (5, 0, iff_up));

        let del = encode(5, del_link("tap0"));
        let (_, kind, flags, _) = nlmsghdr(&del);
        assert_eq!((kind, flags), (RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK));
        assert_eq!(attrs(&del), vec![(IFLA_IFNAME, b"tap0\0".to_vec())]);
    }

    /// A datagram as the kernel would send it.
    fn datagram(seq: u32, payload: NetlinkPayload<RouteNetlinkMessage>) -> Vec<u8> {
        let mut header = NetlinkHeader::default();
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, payload);
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        buf
    }

    fn error(code: i32) -> NetlinkPayload<RouteNetlinkMessage> {
        let mut e = ErrorMessage::default();
        e.code = NonZeroI32::new(code);
        NetlinkPayload::Error(e)
    }

    #[test]
    fn a_link_answer_is_read() {
        let mut m = LinkMessage::default();
        m.header.index = 9;
        m.header.flags = LinkFlags::Up | LinkFlags::Broadcast;
        m.attributes = vec![
            LinkAttribute::IfName("tap0".into()),
            LinkAttribute::Mtu(1400),
            LinkAttribute::Controller(3),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Tun)]),
        ];
        let buf = datagram(4, NetlinkPayload::from(RouteNetlinkMessage::NewLink(m)));
        assert_eq!(nlmsghdr(&buf).1, RTM_NEWLINK);
        let Some(Answer::Link(l)) = answer(&buf, 4).unwrap() else {
            panic!("no link");
        };
        assert_eq!(
            l,
            Link {
                index: 9,
                name: "tap0".into(),
                up: true,
                mtu: Some(1400),
                master: Some(3),
                kind: Some(LinkKind::Tun),
            }
        );
        let mut bridge = LinkMessage::default();
        bridge.attributes = vec![LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
            InfoKind::Bridge,
        )])];
        let buf = datagram(
            5,
            NetlinkPayload::from(RouteNetlinkMessage::NewLink(bridge)),
        );
        let Some(Answer::Link(l)) = answer(&buf, 5).unwrap() else {
            panic!("no link");
        };
        assert!(l.is_bridge() && !l.up && l.master.is_none());
    }

    #[test]
    fn acks_refusals_and_other_requests_answers() {
        assert!(matches!(
            answer(&datagram(1, error(0)), 1).unwrap(),
            Some(Answer::Ack)
        ));
        let e = answer(&datagram(1, error(-libc::ENODEV)), 1).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENODEV));
        // A late answer to an earlier request is skipped, in the same
        // datagram as the one awaited or alone.
        let mut two = datagram(1, error(-libc::EPERM));
        two.extend(datagram(2, error(0)));
        assert!(matches!(answer(&two, 2).unwrap(), Some(Answer::Ack)));
        assert!(answer(&datagram(1, error(0)), 2).unwrap().is_none());
    }

    #[test]
    fn garbage_is_invalid_data_not_a_panic() {
        let e = answer(&[1, 2, 3], 1).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let mut lying = datagram(1, error(0));
        lying[0] = 0xff;
        assert!(answer(&lying, 1).is_err());
    }
}
