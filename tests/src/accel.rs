//! Which accelerator guests get by default: the runtime's own decision
//! (`pvio_hvm_runtime::host::accel`), so tests boot guests the way `pvio`
//! would on the same host. It tells usable KVM (`kvm_intel`, `kvm_amd`) from
//! the nested `kvm_pvm` that hangs stock kernels, and honours
//! `PVIO_ACCEL=tcg|kvm`.

pub use pvio_hvm_runtime::host::accel::{detect, Accel, AccelDecision};
