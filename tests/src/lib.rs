//! pvio's test-guest kit: fetches Debian's generic kernel, builds a busybox
//! initramfs with the modules a test asks for, boots it under QEMU and returns
//! what a script printed inside the guest.
//!
//! It must not know pvio's internals beyond the public `pvio` command and the
//! crates' public APIs: it tests them from the outside.
