//! An image on tmpfs mapped into the process, so that a read or write is a
//! memory copy on the queue thread: no system call per request.
//!
//! tmpfs has no non-blocking reads or writes, so io_uring hands every
//! operation on it to a kernel worker thread (a wake-up per batch, on
//! another core), and a `preadv` on the queue thread is a system call per
//! request. The image's pages are memory either way; copying them here is
//! what the kernel would do, without the entry and exit.
//!
//! What it costs: a page of a sparse image that is only read is allocated
//! (a read fault on a tmpfs hole allocates, where `read` returns zeroes),
//! and an image truncated by someone else under the mapping would kill the
//! backend with SIGBUS (it is restarted, as after any crash). Operations
//! past the mapped length are not done here: the caller uses a system call.
//!
//! It must not know about guests or virtio.

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::ptr::NonNull;

/// A shared mapping of a whole image file.
#[derive(Debug)]
pub struct MappedImage {
    base: NonNull<u8>,
    len: usize,
    writable: bool,
}

// SAFETY: the mapping is plain shared memory owned by this value; moving it
// to another thread moves only the pointer. It is used by one queue thread.
unsafe impl Send for MappedImage {}

impl MappedImage {
    /// Maps `file` (its current length), writable if `writable`.
    pub fn new(file: &File, writable: bool) -> io::Result<Self> {
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        if len == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a new mapping chosen by the kernel (no address given) of
        // an open descriptor; it aliases no Rust object.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base =
            NonNull::new(ptr.cast()).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        Ok(Self {
            base,
            len,
            writable,
        })
    }

    /// Whether `len` bytes at `offset` lie inside the mapping.
    fn covers(&self, offset: u64, len: usize) -> Option<usize> {
        let start = usize::try_from(offset).ok()?;
        (start.checked_add(len)? <= self.len).then_some(start)
    }

    /// Copies the image at `offset` into the buffers `iov` describes, or into
    /// the image from them if `write`. Bytes copied, or `None` when the range
    /// is not mapped (or the mapping is read-only and `write` is asked).
    ///
    /// # Safety
    ///
    /// `iov` must point to `iovcnt` iovecs of mapped memory (writable for a
    /// read) that no Rust reference points into for the call's duration.
    pub unsafe fn copy(
        &self,
        offset: u64,
        iov: *const libc::iovec,
        iovcnt: u32,
        write: bool,
    ) -> Option<i32> {
        if (write && !self.writable) || iov.is_null() {
            return None;
        }
        let n = usize::try_from(iovcnt).ok()?;
        // SAFETY: the caller guarantees `iov` points to `iovcnt` readable
        // iovecs.
        let iovs = unsafe { std::slice::from_raw_parts(iov, n) };
        let total = iovs
            .iter()
            .try_fold(0usize, |acc, v| acc.checked_add(v.iov_len))?;
        let done = i32::try_from(total).ok()?;
        let mut at = self.covers(offset, total)?;
        for v in iovs {
            // SAFETY: `covers` checked that `at..at + total` lies inside the
            // mapping, and every iovec is part of `total`.
            let image = unsafe { self.base.as_ptr().add(at) };
            let buf = v.iov_base.cast::<u8>();
            // SAFETY: both ranges are mapped for `iov_len` bytes (the
            // mapping by `covers`, the buffer by the caller), they do not
            // overlap (guest memory and the image are different mappings),
            // and no Rust reference points into either.
            unsafe {
                if write {
                    std::ptr::copy_nonoverlapping(buf.cast_const(), image, v.iov_len);
                } else {
                    std::ptr::copy_nonoverlapping(image.cast_const(), buf, v.iov_len);
                }
            }
            at += v.iov_len;
        }
        Some(done)
    }
}

impl Drop for MappedImage {
    fn drop(&mut self) {
        // SAFETY: the mapping was made in `new` with this length and no
        // pointer into it outlives `self`.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, Write};

    use super::*;

    fn iov(buf: &mut [u8]) -> libc::iovec {
        libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        }
    }

    #[test]
    fn copies_both_ways_and_refuses_what_is_not_mapped() {
        let mut tmp = tempfile::NamedTempFile::new_in("/dev/shm").unwrap();
        let bytes: Vec<u8> = (0..16384u32).map(|i| (i % 251) as u8).collect();
        tmp.write_all(&bytes).unwrap();
        let m = MappedImage::new(tmp.as_file(), true).unwrap();
        let (mut a, mut b) = (vec![0u8; 100], vec![0u8; 4000]);
        let v = [iov(&mut a), iov(&mut b)];
        // SAFETY: `v` describes two live vectors nothing else touches.
        assert_eq!(unsafe { m.copy(1000, v.as_ptr(), 2, false) }, Some(4100));
        assert_eq!(a[0], (1000 % 251) as u8);
        assert_eq!(b[0], (1100 % 251) as u8);
        let mut w = vec![7u8; 512];
        let wv = [iov(&mut w)];
        // SAFETY: as above.
        assert_eq!(unsafe { m.copy(8192, wv.as_ptr(), 1, true) }, Some(512));
        let mut back = vec![0u8; 512];
        let mut f = tmp.reopen().unwrap();
        f.seek(std::io::SeekFrom::Start(8192)).unwrap();
        f.read_exact(&mut back).unwrap();
        assert_eq!(back, w);
        // SAFETY: as above.
        assert_eq!(unsafe { m.copy(16000, v.as_ptr(), 2, false) }, None);
        let ro = MappedImage::new(tmp.as_file(), false).unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { ro.copy(0, wv.as_ptr(), 1, true) }, None);
    }
}
