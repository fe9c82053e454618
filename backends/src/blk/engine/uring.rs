//! The io_uring engine: operations of one queue batched into one
//! `io_uring_enter` per kick, completions signalled on an eventfd that the
//! queue thread's epoll loop watches, so the same thread handles them.
//!
//! It must not know about guests or virtio.

use std::fs::File;
use std::io;
use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::Arc;

use io_uring::{opcode, squeue, types, IoUring, Probe};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::mapped::MappedImage;
use super::sync::perform;
use super::{Completion, Op};

/// The image as fixed file 0 of the ring (saves a file lookup per op).
const FILE: types::Fixed = types::Fixed(0);

/// The operations this engine issues; a kernel without one of them gets the
/// synchronous fallback.
const NEEDED: [u8; 6] = [
    opcode::Read::CODE,
    opcode::Readv::CODE,
    opcode::Write::CODE,
    opcode::Writev::CODE,
    opcode::Fsync::CODE,
    opcode::Fallocate::CODE,
];

/// Reads and writes up to this size are done on the queue thread when the
/// image is on tmpfs and nothing else is in flight (see `inline_small`).
const INLINE_MAX: usize = 16 * 1024;

/// io_uring with a registered image file and completion eventfd.
pub struct UringEngine {
    ring: IoUring,
    event: EventFd,
    /// Completions taken off the ring while making room to submit, handed
    /// out by the next `reap`.
    early: Vec<Completion>,
    in_flight: usize,
    /// The image is on tmpfs, which has no non-blocking reads and writes:
    /// io_uring hands every operation on it to a kernel worker thread, and
    /// waking that thread costs more than the copy. Reads and writes are
    /// then done on the queue thread (see [`Inline`]), as io_uring itself
    /// does for page-cache hits on ext4 or xfs.
    inline: Inline,
    /// Operations were submitted since the completion eventfd was last
    /// emptied with none in flight: it may hold a count.
    armed: bool,
    /// Keeps the registered fd open for the ring's lifetime.
    file: Arc<File>,
}

impl std::fmt::Debug for UringEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringEngine")
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl UringEngine {
    /// A ring deep enough for `depth` requests.
    pub fn new(file: Arc<File>, depth: u32) -> io::Result<Self> {
        let entries = depth.clamp(8, 4096).next_power_of_two();
        // Made disabled, so that its restrictions are in place before the
        // first submission.
        let ring = IoUring::builder()
            .setup_cqsize(entries.saturating_mul(2))
            .setup_r_disabled()
            .build(entries)?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        if let Some(op) = NEEDED.iter().find(|&&op| !probe.is_supported(op)) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("the kernel's io_uring lacks opcode {op}"),
            ));
        }
        ring.submitter().register_files(&[file.as_raw_fd()])?;
        let event = EventFd::new(EFD_NONBLOCK | libc::EFD_CLOEXEC)?;
        ring.submitter().register_eventfd(event.as_raw_fd())?;
        restrict(&ring)?;
        let inline = Inline::choose(&file);
        Ok(Self {
            ring,
            event,
            early: Vec::new(),
            in_flight: 0,
            inline,
            armed: false,
            file,
        })
    }

    /// Queues one operation (submitting earlier ones if the ring is full).
    ///
    /// # Safety
    ///
    /// See [`Engine::push`](super::Engine::push).
    pub unsafe fn push(&mut self, tag: u64, op: Op) -> io::Result<()> {
        // SAFETY: forwarded contract; an operation done inline completes
        // before this returns.
        if let Some(result) = unsafe { self.try_inline(op) } {
            self.early.push(Completion { tag, result });
            return Ok(());
        }
        // SAFETY: the caller's contract covers the iovecs `build` reads.
        let entry = unsafe { build(op) }.user_data(tag);
        loop {
            // SAFETY: the caller keeps the iovecs and the memory they point
            // to valid until the completion for `tag` is reaped; `entry`
            // refers to nothing else.
            let pushed = unsafe { self.ring.submission().push(&entry) };
            if pushed.is_ok() {
                self.in_flight += 1;
                return Ok(());
            }
            // The submission queue is full: start what is in it.
            self.submit()?;
        }
    }

    /// Nothing in the kernel, queued for it, or finished and not reaped.
    fn nothing_pending(&self) -> bool {
        self.in_flight == 0 && self.early.is_empty()
    }

    /// Whether reads and writes are done on the queue thread (the image is
    /// on tmpfs).
    pub fn inlines_small(&self) -> bool {
        !matches!(self.inline, Inline::Never)
    }

    /// Does `op` on the queue thread if this image's policy says so.
    ///
    /// # Safety
    ///
    /// See [`Engine::push`](super::Engine::push).
    unsafe fn try_inline(&mut self, op: Op) -> Option<i32> {
        let (offset, iov, iovcnt, write) = match op {
            Op::Read {
                offset,
                iov,
                iovcnt,
            } => (offset, iov, iovcnt, false),
            // Write-through asks for RWF_DSYNC: the system call says so.
            Op::Write {
                offset,
                iov,
                iovcnt,
                dsync,
            } if !(dsync && matches!(self.inline, Inline::Map(_))) => (offset, iov, iovcnt, true),
            _ => return None,
        };
        match &self.inline {
            Inline::Never => None,
            Inline::LoneSmall => {
                // SAFETY: the caller's contract covers the iovecs.
                let small = unsafe { op.transfer_len() } <= INLINE_MAX;
                (small && self.nothing_pending())
                    // SAFETY: forwarded contract; done here.
                    .then(|| unsafe { perform(self.file.as_raw_fd(), op) })
            }
            // SAFETY: forwarded contract; done here.
            Inline::Syscall => Some(unsafe { perform(self.file.as_raw_fd(), op) }),
            // SAFETY: forwarded contract; a range the mapping does not
            // cover goes to the ring.
            Inline::Map(m) => unsafe { m.copy(offset, iov, iovcnt, write) },
        }
    }

    /// Submits every queued operation.
    pub fn submit(&mut self) -> io::Result<()> {
        // Entering with nothing to start is a system call for nothing (and
        // the queue thread calls this after every step).
        if self.ring.submission().is_empty() {
            return Ok(());
        }
        self.armed = true;
        loop {
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) => match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // The completion queue is full: make room and retry.
                    Some(libc::EBUSY | libc::EAGAIN) => {
                        let before = self.early.len();
                        self.take_completions_early();
                        if self.early.len() == before {
                            // Nothing to take: let the kernel make progress.
                            self.enter_and_wait(1)?;
                        }
                    }
                    _ => return Err(e),
                },
            }
        }
    }

    fn take_completions_early(&mut self) {
        let mut early = std::mem::take(&mut self.early);
        self.reap_ring(&mut early);
        self.early = early;
    }

    fn enter_and_wait(&mut self, want: usize) -> io::Result<()> {
        self.armed = true;
        loop {
            match self.ring.submit_and_wait(want) {
                Ok(_) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    self.take_completions_early();
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Moves finished operations into `out`.
    pub fn reap(&mut self, out: &mut Vec<Completion>) {
        out.append(&mut self.early);
        self.reap_ring(out);
    }

    fn reap_ring(&mut self, out: &mut Vec<Completion>) {
        for cqe in self.ring.completion() {
            self.in_flight = self.in_flight.saturating_sub(1);
            out.push(Completion {
                tag: cqe.user_data(),
                result: cqe.result(),
            });
        }
    }

    /// Waits for every operation in flight.
    pub fn wait_all(&mut self, out: &mut Vec<Completion>) -> io::Result<()> {
        out.append(&mut self.early);
        while self.in_flight > 0 {
            self.enter_and_wait(1)?;
            self.reap(out);
        }
        Ok(())
    }

    /// Whether the completion queue holds entries (or some were taken early).
    pub fn has_completions(&mut self) -> bool {
        !self.early.is_empty() || !self.ring.completion().is_empty()
    }

    /// Operations pushed and not yet reaped.
    pub fn in_flight(&self) -> usize {
        self.in_flight + self.early.len()
    }

    /// The completion eventfd.
    pub fn event_fd(&self) -> RawFd {
        self.event.as_raw_fd()
    }

    /// Empties the completion eventfd.
    pub fn clear_event(&mut self) {
        // Nothing went to the ring since the last time it was emptied with
        // nothing in flight: the eventfd cannot hold a count (operations done
        // inline never touch it), and reading it would be a system call for
        // nothing.
        if !self.armed {
            return;
        }
        // EAGAIN (already empty) is the expected case.
        let _ = self.event.read();
        if self.in_flight == 0 {
            self.armed = false;
        }
    }
}

impl Drop for UringEngine {
    fn drop(&mut self) {
        // The kernel must not touch guest memory after its owner has gone:
        // an engine is only dropped drained, but make sure.
        let mut sink = Vec::new();
        if let Err(e) = self.wait_all(&mut sink) {
            tracing::error!("cannot drain io_uring before closing it: {e}");
        }
    }
}

/// The submission entry for `op`.
///
/// Restricts the ring to the opcodes in [`NEEDED`] on the registered image
/// (every submission must carry `IOSQE_FIXED_FILE`, no other flag), no
/// registration after this, then enables it. Submissions do not pass the
/// seccomp filter: this is what keeps a ring from opening files or sockets
/// on the backend's behalf.
fn restrict(ring: &IoUring) -> io::Result<()> {
    let mut rules: Vec<io_uring::register::Restriction> = NEEDED
        .iter()
        .map(|&op| io_uring::register::Restriction::sqe_op(op))
        .collect();
    rules.push(io_uring::register::Restriction::sqe_flags_required(
        squeue::Flags::FIXED_FILE.bits(),
    ));
    ring.submitter().register_restrictions(&mut rules)?;
    ring.submitter().register_enable_rings()
}

/// # Safety
///
/// A read or write's `iov` must point to `iovcnt` readable iovecs.
unsafe fn build(op: Op) -> squeue::Entry {
    match op {
        Op::Read {
            offset,
            iov,
            iovcnt,
        } => {
            // SAFETY: forwarded contract.
            match unsafe { single(iov, iovcnt) } {
                Some((base, len)) => opcode::Read::new(FILE, base.cast(), len)
                    .offset(offset)
                    .build(),
                None => opcode::Readv::new(FILE, iov, iovcnt).offset(offset).build(),
            }
        }
        Op::Write {
            offset,
            iov,
            iovcnt,
            dsync,
        } => {
            let flags = if dsync { libc::RWF_DSYNC } else { 0 };
            // SAFETY: forwarded contract.
            match unsafe { single(iov, iovcnt) } {
                Some((base, len)) => opcode::Write::new(FILE, base.cast_const().cast(), len)
                    .offset(offset)
                    .rw_flags(flags)
                    .build(),
                None => opcode::Writev::new(FILE, iov, iovcnt)
                    .offset(offset)
                    .rw_flags(flags)
                    .build(),
            }
        }
        Op::Flush => opcode::Fsync::new(FILE)
            .flags(types::FsyncFlags::DATASYNC)
            .build(),
        Op::Fallocate { mode, offset, len } => opcode::Fallocate::new(FILE, len)
            .offset(offset)
            .mode(mode)
            .build(),
    }
}

/// The one buffer of a one-iovec operation, when its length fits the
/// non-vectored opcodes.
///
/// # Safety
///
/// `iov` must point to `iovcnt` readable iovecs.
unsafe fn single(iov: *const libc::iovec, iovcnt: u32) -> Option<(*mut libc::c_void, u32)> {
    if iovcnt != 1 || iov.is_null() {
        return None;
    }
    // SAFETY: `iov` is non-null and the caller guarantees it points to
    // `iovcnt` (here one) readable iovecs.
    let v = unsafe { *iov };
    Some((v.iov_base, u32::try_from(v.iov_len).ok()?))
}

/// Which reads and writes are done on the queue thread instead of the ring.
#[derive(Debug)]
enum Inline {
    /// None (a disk filesystem: io_uring completes page-cache hits inline
    /// itself, and O_DIRECT needs the ring).
    Never,
    /// A read or write of up to `INLINE_MAX` bytes with nothing else in
    /// flight, as a system call (tmpfs, before the mapping).
    LoneSmall,
    /// Every read and write, as a system call (tmpfs).
    Syscall,
    /// Every read and write, as a copy through a mapping of the image
    /// (tmpfs; see `mapped.rs`).
    Map(MappedImage),
}

impl Inline {
    /// The policy for `file`: a copy through a mapping on tmpfs (unless
    /// opened with O_DIRECT), the ring elsewhere. `PVIO_BLK_INLINE` =
    /// `ring`, `lone`, `syscall` or `map` picks one on tmpfs, for measuring
    /// what each buys (docs/benchmarks.md).
    fn choose(file: &File) -> Self {
        let Ok(flags) = rustix::fs::fcntl_getfl(file) else {
            return Inline::Never;
        };
        if !on_tmpfs(file) || flags.contains(rustix::fs::OFlags::DIRECT) {
            return Inline::Never;
        }
        let writable = flags.contains(rustix::fs::OFlags::RDWR);
        let map = || match MappedImage::new(file, writable) {
            Ok(m) => Inline::Map(m),
            Err(e) => {
                tracing::debug!("cannot map the image ({e}): system calls instead");
                Inline::Syscall
            }
        };
        match std::env::var("PVIO_BLK_INLINE").as_deref() {
            Ok("ring") => Inline::Never,
            Ok("lone") => Inline::LoneSmall,
            Ok("syscall") => Inline::Syscall,
            _ => map(),
        }
    }
}

/// Whether `file` is on tmpfs.
fn on_tmpfs(file: &File) -> bool {
    rustix::fs::fstatfs(file).is_ok_and(|st| st.f_type == libc::TMPFS_MAGIC)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::Path;

    use super::*;

    /// A 64 KiB file of a known pattern in `dir`, and the engine on it.
    fn engine_in(dir: &Path) -> (tempfile::NamedTempFile, UringEngine) {
        let mut tmp = tempfile::NamedTempFile::new_in(dir).unwrap();
        let bytes: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
        tmp.write_all(&bytes).unwrap();
        let file = Arc::new(tmp.reopen().unwrap());
        (tmp, UringEngine::new(file, 8).unwrap())
    }

    fn read_into(e: &mut UringEngine, tag: u64, buf: &mut [u8], offset: u64) {
        let iov = Box::leak(Box::new(libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        }));
        let op = Op::Read {
            offset,
            iov,
            iovcnt: 1,
        };
        // SAFETY: the iovec is leaked (never freed) and the buffer outlives
        // the engine's use of it: every test reaps before dropping it.
        unsafe { e.push(tag, op) }.unwrap();
    }

    #[test]
    fn on_tmpfs_reads_are_done_before_any_submit() {
        let (_f, mut e) = engine_in(Path::new("/dev/shm"));
        assert!(e.inlines_small());
        let mut a = vec![0u8; 4096];
        read_into(&mut e, 1, &mut a, 4096);
        assert!(e.has_completions(), "done inline, nothing submitted");
        // A second one while the first is not reaped.
        let mut b = vec![0u8; 4096];
        read_into(&mut e, 2, &mut b, 8192);
        assert_eq!(e.in_flight(), 2);
        e.submit().unwrap();
        let mut out = Vec::new();
        e.wait_all(&mut out).unwrap();
        out.sort_by_key(|c| c.tag);
        assert_eq!(
            out,
            [
                Completion {
                    tag: 1,
                    result: 4096
                },
                Completion {
                    tag: 2,
                    result: 4096
                }
            ]
        );
        assert_eq!(a[0], (4096 % 251) as u8);
        assert_eq!(b[1], (8193 % 251) as u8);
    }

    #[test]
    fn on_tmpfs_a_read_past_the_mapped_image_goes_through_the_ring() {
        let (_f, mut e) = engine_in(Path::new("/dev/shm"));
        let mut a = vec![0u8; 8192];
        read_into(&mut e, 1, &mut a, 65536 - 4096);
        assert!(!e.has_completions(), "queued, not done");
        let mut out = Vec::new();
        e.submit().unwrap();
        e.wait_all(&mut out).unwrap();
        assert_eq!(out[0].result, 4096, "short: the image ends");
        assert_eq!(a[300], ((65536 - 4096 + 300) % 251) as u8);
    }

    #[test]
    fn on_a_disk_filesystem_nothing_is_done_inline() {
        // The crate's own directory: a checkout on disk.
        let (_f, mut e) = engine_in(Path::new(env!("CARGO_MANIFEST_DIR")));
        assert!(!e.inlines_small(), "the checkout is not expected on tmpfs");
        let mut a = vec![0u8; 4096];
        read_into(&mut e, 1, &mut a, 0);
        assert!(!e.has_completions());
        let mut out = Vec::new();
        e.submit().unwrap();
        e.wait_all(&mut out).unwrap();
        assert_eq!(out[0].result, 4096);
    }
}
