//! What the host offers: the accelerator choice, the guest types it runs
//! and `pvio host-check`.

pub mod accel;
pub mod check;
pub mod media;
pub mod qemu;

pub use qemu::qemu_release;
pub mod guests;
