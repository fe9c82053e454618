//! What the net backend adds: vectored reads and writes of frames on the
//! tap queues, and the tap ioctls it makes while serving (offloads and the
//! header length follow what the guest negotiated; queues are attached and
//! detached as the guest enables queue pairs).
//!
//! It must not know how frames are moved.

use super::{allow, allow_arg, Rules};

pub(crate) fn add(rules: &mut Rules) {
    allow(rules, &[libc::SYS_readv, libc::SYS_writev]);
    let tun = [
        libc::TUNSETOFFLOAD,
        libc::TUNSETVNETHDRSZ,
        libc::TUNSETQUEUE,
        libc::TUNGETIFF,
    ];
    // The kernel compares the request as 32 bits; these all fit.
    let tun: Vec<u64> = tun
        .iter()
        .filter_map(|&r| u32::try_from(r).ok().map(u64::from))
        .collect();
    allow_arg(rules, libc::SYS_ioctl, 1, &tun);
}
