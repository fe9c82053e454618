//! The system calls every backend process makes once sandboxed: threads per
//! connection, memory (guest RAM is mapped per connection), futexes, epoll
//! and eventfds, the vhost-user socket (accept, messages with fds, the
//! relay's private socket pair), signals, time, logging to stderr, exit.
//!
//! It must not know what a device does with its queues.

use super::{allow, allow_arg, Rules};

/// `FIONBIO`: `set_nonblocking` on sockets.
const FIONBIO: u64 = 0x5421;
/// `FIOCLEX`: close-on-exec.
const FIOCLEX: u64 = 0x5451;
/// `PR_SET_NAME` / `PR_GET_NAME`: thread names.
const PR_SET_NAME: u64 = 15;
const PR_GET_NAME: u64 = 16;
/// `AF_UNIX`: the relay's socket to the vhost-user daemon.
const AF_UNIX: u64 = 1;

pub(crate) fn add(rules: &mut Rules) {
    allow(
        rules,
        &[
            // Threads: spawned per connection (queue threads, the request
            // handler, the relay), joined when it ends.
            libc::SYS_clone,
            libc::SYS_clone3,
            libc::SYS_set_robust_list,
            libc::SYS_rseq,
            libc::SYS_sigaltstack,
            libc::SYS_futex,
            libc::SYS_sched_yield,
            libc::SYS_sched_getaffinity,
            libc::SYS_gettid,
            libc::SYS_getpid,
            libc::SYS_exit,
            libc::SYS_exit_group,
            // Memory: guest RAM, thread stacks, the allocator.
            libc::SYS_mmap,
            libc::SYS_munmap,
            libc::SYS_mremap,
            libc::SYS_mprotect,
            libc::SYS_madvise,
            libc::SYS_brk,
            // Waiting and waking.
            libc::SYS_epoll_create1,
            libc::SYS_epoll_ctl,
            libc::SYS_epoll_wait,
            libc::SYS_epoll_pwait,
            libc::SYS_eventfd2,
            libc::SYS_poll,
            libc::SYS_ppoll,
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_close,
            libc::SYS_fcntl,
            libc::SYS_fstat,
            libc::SYS_newfstatat,
            libc::SYS_statx,
            libc::SYS_lseek,
            // The vhost-user socket and the relay's socket pair.
            libc::SYS_accept,
            libc::SYS_accept4,
            libc::SYS_bind,
            libc::SYS_listen,
            libc::SYS_connect,
            libc::SYS_recvmsg,
            libc::SYS_sendmsg,
            libc::SYS_recvfrom,
            libc::SYS_sendto,
            libc::SYS_shutdown,
            libc::SYS_getsockopt,
            libc::SYS_getsockname,
            // Signals: SIGTERM/SIGINT through sigwait; thread exit.
            libc::SYS_rt_sigprocmask,
            libc::SYS_rt_sigaction,
            libc::SYS_rt_sigreturn,
            libc::SYS_rt_sigtimedwait,
            // Time and randomness.
            libc::SYS_clock_gettime,
            libc::SYS_clock_nanosleep,
            libc::SYS_nanosleep,
            libc::SYS_getrandom,
        ],
    );
    allow_arg(rules, libc::SYS_socket, 0, &[AF_UNIX]);
    allow_arg(rules, libc::SYS_socketpair, 0, &[AF_UNIX]);
    allow_arg(rules, libc::SYS_prctl, 0, &[PR_SET_NAME, PR_GET_NAME]);
    allow_arg(rules, libc::SYS_ioctl, 1, &[FIONBIO, FIOCLEX]);
}
