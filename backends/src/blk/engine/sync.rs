//! The synchronous fallback engine: each operation is a system call made on
//! the queue thread when it is pushed. Used only when io_uring cannot be set
//! up (old kernel, io_uring disabled by policy).
//!
//! It must not know about guests or virtio.

use std::fs::File;
use std::io;
use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::Arc;

use super::{Completion, Op};

/// Synchronous I/O on the image.
#[derive(Debug)]
pub struct SyncEngine {
    file: Arc<File>,
    done: Vec<Completion>,
}

impl SyncEngine {
    /// An engine on `file`.
    pub fn new(file: Arc<File>) -> Self {
        Self {
            file,
            done: Vec::new(),
        }
    }

    /// Performs `op` now; its completion is handed out by the next `reap`.
    ///
    /// # Safety
    ///
    /// See [`Engine::push`](super::Engine::push).
    pub unsafe fn push(&mut self, tag: u64, op: Op) -> io::Result<()> {
        // SAFETY: forwarded contract.
        let result = unsafe { perform(self.file.as_raw_fd(), op) };
        self.done.push(Completion { tag, result });
        Ok(())
    }

    /// Hands out what was performed since the last call.
    pub fn reap(&mut self, out: &mut Vec<Completion>) {
        out.append(&mut self.done);
    }

    /// Operations performed and not yet reaped.
    pub fn in_flight(&self) -> usize {
        self.done.len()
    }
}

/// Performs `op` on `fd` now: bytes transferred, 0, or `-errno`.
///
/// # Safety
///
/// See [`Engine::push`](super::Engine::push); `fd` must be open.
pub(super) unsafe fn perform(fd: RawFd, op: Op) -> i32 {
    let ret: isize = match op {
        Op::Read {
            offset,
            iov,
            iovcnt,
        } => {
            let (Ok(off), Ok(cnt)) = (libc::off_t::try_from(offset), i32::try_from(iovcnt)) else {
                return -libc::EINVAL;
            };
            // SAFETY: the caller guarantees `iov` describes `iovcnt`
            // buffers of mapped, writable memory that nothing else
            // accesses until this completes (it completes here).
            retry(|| unsafe { libc::preadv(fd, iov, cnt, off) })
        }
        Op::Write {
            offset,
            iov,
            iovcnt,
            dsync,
        } => {
            let (Ok(off), Ok(cnt)) = (libc::off_t::try_from(offset), i32::try_from(iovcnt)) else {
                return -libc::EINVAL;
            };
            let flags = if dsync { libc::RWF_DSYNC } else { 0 };
            // SAFETY: as for reads; the buffers are only read.
            retry(|| unsafe { libc::pwritev2(fd, iov, cnt, off, flags) })
        }
        Op::Flush => retry(|| {
            // SAFETY: fdatasync takes only a file descriptor we own.
            let ret = unsafe { libc::fdatasync(fd) };
            isize::try_from(ret).unwrap_or(-1)
        }),
        Op::Fallocate { mode, offset, len } => {
            let (Ok(off), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len))
            else {
                return -libc::EINVAL;
            };
            retry(|| {
                // SAFETY: fallocate takes only a file descriptor we own
                // and integers.
                let ret = unsafe { libc::fallocate(fd, mode, off, len) };
                isize::try_from(ret).unwrap_or(-1)
            })
        }
    };
    if ret < 0 {
        let errno = io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        return -errno;
    }
    i32::try_from(ret).unwrap_or(-libc::EOVERFLOW)
}

/// Repeats a system call interrupted by a signal.
fn retry(mut call: impl FnMut() -> isize) -> isize {
    loop {
        let ret = call();
        if ret >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return ret;
        }
    }
}
