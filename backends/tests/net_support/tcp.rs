//! Just enough IPv4 and TCP for the tests to play a guest's network stack
//! through the no-VM driver: build segments with correct checksums (or a
//! partial one, for checksum offload), and read segments back and check
//! theirs.

#![allow(dead_code)]

/// What the test's fake guest puts in each segment it sends.
#[derive(Debug, Clone, Copy)]
pub struct Endpoints {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_ip: [u8; 4],
    pub dst_ip: [u8; 4],
    pub src_port: u16,
    pub dst_port: u16,
}

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// Ethernet + IPv4 + TCP header lengths (no options).
pub const ETH: usize = 14;
pub const IP: usize = 20;
pub const TCP: usize = 20;

fn sum16(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    u16::try_from(acc).unwrap()
}

/// The one's complement sum of the TCP pseudo-header for a segment of
/// `tcp_len` bytes (what a driver leaves in the checksum field when it asks
/// for checksum offload).
pub fn pseudo_sum(src: [u8; 4], dst: [u8; 4], tcp_len: usize) -> u16 {
    let mut acc = sum16(&src, 0);
    acc = sum16(&dst, acc);
    acc += 6;
    acc += u32::try_from(tcp_len).unwrap();
    fold(acc)
}

/// A TCP/IPv4 frame. With `partial`, the TCP checksum holds only the
/// pseudo-header sum (checksum offload: `csum_start` 34, `csum_offset` 16);
/// otherwise it is complete. `options` go after the TCP header (a multiple
/// of 4 bytes).
#[allow(clippy::too_many_arguments)]
pub fn segment(
    ep: &Endpoints,
    seq: u32,
    ack: u32,
    flags: u8,
    options: &[u8],
    payload: &[u8],
    partial: bool,
) -> Vec<u8> {
    let tcp_len = TCP + options.len() + payload.len();
    let ip_len = IP + tcp_len;
    let mut f = Vec::with_capacity(ETH + ip_len);
    f.extend_from_slice(&ep.dst_mac);
    f.extend_from_slice(&ep.src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    // IPv4, DF, TTL 64.
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&u16::try_from(ip_len).unwrap_or(0).to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&ep.src_ip);
    f.extend_from_slice(&ep.dst_ip);
    let ip_sum = !fold(sum16(&f[ETH..ETH + IP], 0));
    f[ETH + 10..ETH + 12].copy_from_slice(&ip_sum.to_be_bytes());
    // TCP.
    f.extend_from_slice(&ep.src_port.to_be_bytes());
    f.extend_from_slice(&ep.dst_port.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&ack.to_be_bytes());
    let words = u8::try_from((TCP + options.len()) / 4).unwrap();
    f.extend_from_slice(&[words << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend_from_slice(options);
    f.extend_from_slice(payload);
    let pseudo = pseudo_sum(ep.src_ip, ep.dst_ip, tcp_len);
    let check = if partial {
        pseudo
    } else {
        !fold(sum16(&f[ETH + IP..], u32::from(pseudo)))
    };
    f[ETH + IP + 16..ETH + IP + 18].copy_from_slice(&check.to_be_bytes());
    f
}

/// A TCP segment read from a frame.
#[derive(Debug, Clone)]
pub struct Seen {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub payload: Vec<u8>,
    /// Whether the TCP checksum over the frame is right.
    pub checksum_ok: bool,
}

/// The TCP segment in `frame`, if it is TCP over IPv4 between `a` and `b`
/// (either way).
pub fn parse(frame: &[u8], a: [u8; 4], b: [u8; 4]) -> Option<Seen> {
    if frame.len() < ETH + IP + TCP || frame[12..14] != [0x08, 0x00] || frame[ETH + 9] != 6 {
        return None;
    }
    let ip = &frame[ETH..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let (src, dst) = (&ip[12..16], &ip[16..20]);
    if !((src == a && dst == b) || (src == b && dst == a)) || total > ip.len() {
        return None;
    }
    let tcp = &ip[ihl..total];
    let off = usize::from(tcp[12] >> 4) * 4;
    let pseudo = pseudo_sum(src.try_into().unwrap(), dst.try_into().unwrap(), tcp.len());
    let checksum_ok = fold(sum16(tcp, u32::from(pseudo))) == 0xffff;
    Some(Seen {
        src_port: u16::from_be_bytes([tcp[0], tcp[1]]),
        dst_port: u16::from_be_bytes([tcp[2], tcp[3]]),
        seq: u32::from_be_bytes(tcp[4..8].try_into().unwrap()),
        ack: u32::from_be_bytes(tcp[8..12].try_into().unwrap()),
        flags: tcp[13],
        payload: tcp[off..].to_vec(),
        checksum_ok,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_segment_parses_with_a_good_checksum() {
        let ep = Endpoints {
            src_mac: [2, 0, 0, 0, 0, 9],
            dst_mac: [2, 0, 0, 0, 0, 1],
            src_ip: [10, 98, 0, 2],
            dst_ip: [10, 98, 0, 1],
            src_port: 40000,
            dst_port: 7000,
        };
        let f = segment(&ep, 5, 6, ACK | PSH, &[], b"hello", false);
        let s = parse(&f, ep.src_ip, ep.dst_ip).unwrap();
        assert!(s.checksum_ok);
        assert_eq!((s.seq, s.ack, s.payload.as_slice()), (5, 6, &b"hello"[..]));
        let p = segment(&ep, 5, 6, ACK | PSH, &[], b"hello", true);
        assert!(!parse(&p, ep.src_ip, ep.dst_ip).unwrap().checksum_ok);
    }
}
