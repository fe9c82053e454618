//! What the block backend adds: io_uring (a ring per queue, made per
//! connection; its opcodes are restricted on the ring itself), and the
//! synchronous calls of the sync engine and the inline path.
//!
//! It must not know how requests are parsed.

use super::{allow, Rules};

pub(crate) fn add(rules: &mut Rules) {
    allow(
        rules,
        &[
            libc::SYS_io_uring_setup,
            libc::SYS_io_uring_enter,
            libc::SYS_io_uring_register,
            libc::SYS_pread64,
            libc::SYS_pwrite64,
            libc::SYS_preadv,
            libc::SYS_pwritev,
            libc::SYS_preadv2,
            libc::SYS_pwritev2,
            libc::SYS_fdatasync,
            libc::SYS_fsync,
            libc::SYS_fallocate,
            // The engine asks whether the image is on tmpfs when it makes a
            // ring.
            libc::SYS_fstatfs,
            // GET_INFLIGHT_FD: the inflight region is a sealed memfd made
            // and sized here (vhost_user/inflight.rs).
            libc::SYS_memfd_create,
            libc::SYS_ftruncate,
        ],
    );
}
