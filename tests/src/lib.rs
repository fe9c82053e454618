//! pvio's test-guest kit: fetches Debian's generic kernel, builds a busybox
//! initramfs with the modules a test asks for, boots it under QEMU and returns
//! what a script printed inside the guest.
//!
//! It must not know pvio's internals beyond the public `pvio` command and the
//! crates' public APIs: it tests them from the outside.
//!
//! ```no_run
//! use pvio_tests::Guest;
//! let out = Guest::builder()
//!     .modules(&["virtio_pci", "virtio_blk"])
//!     .run_strict("ls /sys/module/virtio_blk")
//!     .expect("guest ran");
//! println!("booted in {:?}: {}", out.boot_time, out.output);
//! ```
//!
//! See `docs/testing.md` for the cache directory, the environment variables
//! and how to read a failure.

pub mod accel;
pub mod cache;
pub mod console;
pub mod cpio;
pub mod daemon;
pub mod fixture_host;
pub mod guest;
pub mod init;
pub mod initramfs;
pub mod kernel;
pub mod ldd;
pub mod modinfo;
pub mod modules;
pub mod plot;
pub mod qemu;
pub mod vmlinux;

use std::path::{Path, PathBuf};

pub use accel::{Accel, AccelDecision};
pub use guest::{Guest, GuestBuilder, GuestError, GuestOutput, RunningGuest};
pub use init::strict;
pub use initramfs::{FileSource, Initramfs, InitramfsBuilder, InitramfsError};
pub use kernel::{GuestKernel, KernelError};
pub use modules::{ModuleIndex, ModulesError, ResolvedModule};

/// The environment variable that names the `pvio` binary to test.
pub const PVIO_BIN_ENV: &str = "PVIO_BIN";

/// Errors from finding the `pvio` binary.
#[derive(Debug, thiserror::Error)]
pub enum BinError {
    /// `PVIO_BIN` names a file that is not there.
    #[error("PVIO_BIN={0} does not exist")]
    EnvMissing(PathBuf),
    /// No built binary next to the test executable.
    #[error("no pvio binary in {searched}: run `cargo build -p pvio-hvm-runtime` first (or set PVIO_BIN)")]
    NotBuilt {
        /// The directories looked in.
        searched: String,
    },
}

/// The `pvio` binary to test: `$PVIO_BIN`, else the one cargo built into
/// the same target directory as the running test (`<target>/debug/pvio` or
/// `<target>/release/pvio`, found from `std::env::current_exe()`).
pub fn try_pvio_bin() -> Result<PathBuf, BinError> {
    if let Some(p) = std::env::var_os(PVIO_BIN_ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(BinError::EnvMissing(p))
        };
    }
    let exe = std::env::current_exe().unwrap_or_default();
    find_pvio_bin(&exe).map_err(|dirs| BinError::NotBuilt {
        searched: dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// [`try_pvio_bin`], panicking with its message: for tests.
///
/// # Panics
///
/// If the binary is not built and `PVIO_BIN` is not set.
pub fn pvio_bin() -> PathBuf {
    try_pvio_bin().unwrap_or_else(|e| panic!("{e}"))
}

/// Looks for `pvio` in the profile directory the test executable `exe` was
/// built into (a test lives in `<target>/<profile>/deps/`), then in
/// `<target>/debug` and `<target>/release`. `Err` lists where it looked.
fn find_pvio_bin(exe: &Path) -> Result<PathBuf, Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for dir in exe.ancestors().skip(1).take(4) {
        dirs.push(dir.to_owned());
        dirs.push(dir.join("debug"));
        dirs.push(dir.join("release"));
    }
    dirs.dedup();
    for d in &dirs {
        let candidate = d.join("pvio");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_pvio_next_to_the_deps_directory() {
        let t = tempfile::tempdir().expect("tempdir");
        let deps = t.path().join("target/debug/deps");
        std::fs::create_dir_all(&deps).expect("mkdir");
        let exe = deps.join("guest_kit-0123");
        assert!(find_pvio_bin(&exe).is_err());
        let bin = t.path().join("target/debug/pvio");
        std::fs::write(&bin, b"").expect("write");
        assert_eq!(find_pvio_bin(&exe).expect("found"), bin);
    }

    #[test]
    fn finds_a_release_build_from_a_debug_test() {
        let t = tempfile::tempdir().expect("tempdir");
        let deps = t.path().join("target/debug/deps");
        std::fs::create_dir_all(&deps).expect("mkdir");
        std::fs::create_dir_all(t.path().join("target/release")).expect("mkdir");
        let bin = t.path().join("target/release/pvio");
        std::fs::write(&bin, b"").expect("write");
        assert_eq!(find_pvio_bin(&deps.join("x")).expect("found"), bin);
    }
}
