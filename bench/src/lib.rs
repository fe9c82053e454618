//! pvio-bench: the backends measured alone, with no VM, behind `pvio bench
//! blk` and `pvio bench net`. [`blk`] drives pvio's block backend and its
//! peers (qemu-storage-daemon, Cloud Hypervisor's daemon, the null engine)
//! with one libblkio client, and runs fio for the host ceiling; [`net`]
//! drives the net backend with `pvio-net-driver` on a tap in a namespace.
//!
//! The clients, peers and drivers are tooling, so they live here and not
//! in `pvio-backends` (which does not depend on `blkio`); the `pvio` binary
//! takes this crate for its `bench` command only. It must not know the
//! backends' internals: it starts them in-process through their public
//! servers (`BlkServer`, `NetServer`) and reaches them over their sockets,
//! as any frontend would. It must not shape a workload to a target: every
//! peer gets the same client and settings.

pub mod blk;
pub mod net;
