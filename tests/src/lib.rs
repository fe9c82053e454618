//! pvio's test-guest kit: fetches Debian's generic kernel, builds a busybox
//! initramfs with the modules a test asks for, boots it under QEMU and returns
//! what a script printed inside the guest.
//!
//! It must not know pvio's internals beyond the public `pvio` command and the
//! crates' public APIs: it tests them from the outside.
//! See `docs/testing.md` for the cache directory, the environment variables
//! and how to read a failure.

pub mod cache;
pub mod cpio;
pub mod init;
pub mod initramfs;
pub mod kernel;
pub mod ldd;
pub mod modinfo;
pub mod modules;
pub mod vmlinux;

pub use init::strict;
pub use initramfs::{FileSource, Initramfs, InitramfsBuilder, InitramfsError};
pub use kernel::{GuestKernel, KernelError};
pub use modules::{ModuleIndex, ModulesError, ResolvedModule};
