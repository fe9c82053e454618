//! One queue of a tap: a `/dev/net/tun` file attached to it, through which
//! frames (each behind a virtio-net header) are read and written.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::super::sys;

/// One queue of the tap: a non-blocking `/dev/net/tun` file attached to it.
/// Each frame read or written starts with the virtio-net header.
#[derive(Debug)]
pub struct TapQueue {
    pub(super) fd: OwnedFd,
}

impl TapQueue {
    /// Reads one frame into `iov`. `WouldBlock` when the tap has nothing.
    /// A frame longer than `iov` is cut short by the kernel (the rest is
    /// lost), so `iov` must hold the largest frame the tap can deliver.
    ///
    /// # Safety
    ///
    /// See [`sys::readv`]: every iovec must be mapped, writable memory not
    /// behind a live Rust reference, for the duration of the call.
    pub unsafe fn read_vectored(&self, iov: &[libc::iovec]) -> io::Result<usize> {
        // SAFETY: the contract is this function's own.
        unsafe { sys::readv(self.fd.as_fd(), iov) }
    }

    /// Writes one frame gathered from `iov`.
    ///
    /// # Safety
    ///
    /// See [`sys::writev`]: every iovec must be mapped, readable memory for
    /// the duration of the call.
    pub unsafe fn write_vectored(&self, iov: &[libc::iovec]) -> io::Result<usize> {
        // SAFETY: the contract is this function's own.
        unsafe { sys::writev(self.fd.as_fd(), iov) }
    }

    /// Whether a frame waits to be read.
    pub fn readable(&self) -> bool {
        sys::readable(self.fd.as_fd())
    }

    /// Reads one frame into `buf`.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let iov = [libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        }];
        // SAFETY: the iovec is `buf`, a live exclusive borrow for the call.
        unsafe { sys::readv(self.fd.as_fd(), &iov) }
    }

    /// Writes one frame from `buf`.
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        let iov = [libc::iovec {
            iov_base: buf.as_ptr().cast_mut().cast(),
            iov_len: buf.len(),
        }];
        // SAFETY: the iovec is `buf`, live for the call; writev only reads it.
        unsafe { sys::writev(self.fd.as_fd(), &iov) }
    }
}

impl AsFd for TapQueue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
