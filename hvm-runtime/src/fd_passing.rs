//! A descriptor handed to another process over a Unix socket
//! (`SCM_RIGHTS`): to QEMU's QMP (`getfd`, `add-fd`), and from the `pvio`
//! command to a domain's supervisor (the file or pipe of a save or a
//! migration). It must not know what the descriptor is or who reads it.

use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;

/// Sends the first part of `bytes` with `fd` attached; returns how many
/// bytes went (the caller writes the rest).
pub fn send_with_fd(s: &UnixStream, bytes: &[u8], fd: BorrowedFd<'_>) -> io::Result<usize> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let fds = [fd];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut anc = SendAncillaryBuffer::new(&mut space);
    anc.push(SendAncillaryMessage::ScmRights(&fds));
    Ok(rustix::net::sendmsg(
        s,
        &[io::IoSlice::new(bytes)],
        &mut anc,
        SendFlags::NOSIGNAL,
    )?)
}
