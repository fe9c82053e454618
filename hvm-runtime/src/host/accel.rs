//! Which accelerator QEMU gets: KVM where it can run a stock guest kernel,
//! TCG otherwise.
//!
//! `/dev/kvm` alone does not prove that KVM is usable. Some hosts expose a
//! paravirtual nested KVM (the `kvm_pvm` module) that only runs guest kernels
//! built for it; QEMU with `-enable-kvm` hangs a stock kernel early in boot
//! there. A real host has `kvm_intel` or `kvm_amd` loaded.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The CPU accelerator handed to QEMU (`-accel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualization through `/dev/kvm`.
    Kvm,
    /// QEMU's binary translator: slow but runs anywhere.
    Tcg,
}

impl Accel {
    /// The value of QEMU's `-accel` option.
    pub fn qemu_arg(&self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "KVM",
            Accel::Tcg => "TCG",
        })
    }
}

/// What the host offers for KVM, read from `/dev` and `/sys/module`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KvmState {
    /// `/dev/kvm` exists.
    pub dev_kvm: bool,
    /// The KVM vendor module that is loaded (`kvm_intel`, `kvm_amd`,
    /// `kvm_pvm`), if any.
    pub vendor_module: Option<String>,
    /// `/dev/kvm` opens for reading and writing (QEMU needs both); `false`
    /// when it is missing.
    pub dev_kvm_openable: bool,
}

impl KvmState {
    /// Reads the state under `root` (`/` on a real host; a fixture tree in
    /// tests).
    pub fn probe(root: &Path) -> KvmState {
        let dev = root.join("dev/kvm");
        let dev_kvm = dev.exists();
        let dev_kvm_openable = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&dev)
            .is_ok();
        let vendor_module = ["kvm_intel", "kvm_amd", "kvm_pvm"]
            .iter()
            .find(|m| root.join("sys/module").join(m).exists())
            .map(|m| (*m).to_owned());
        KvmState {
            dev_kvm,
            vendor_module,
            dev_kvm_openable,
        }
    }

    /// Decides the accelerator and says why.
    pub fn decide(&self) -> AccelDecision {
        let (accel, reason) = match (self.dev_kvm, self.vendor_module.as_deref()) {
            (false, _) => (
                Accel::Tcg,
                "/dev/kvm is missing (no VT-x/AMD-V, or the kvm module is not loaded)".to_owned(),
            ),
            (true, Some(m @ ("kvm_intel" | "kvm_amd"))) if self.dev_kvm_openable => {
                (Accel::Kvm, format!("/dev/kvm is backed by {m}"))
            }
            (true, Some(m @ ("kvm_intel" | "kvm_amd"))) => (
                Accel::Tcg,
                format!(
                    "/dev/kvm is backed by {m} but cannot be opened for reading and writing \
                     (run as root or join the kvm group)"
                ),
            ),
            (true, Some("kvm_pvm")) => (
                Accel::Tcg,
                "/dev/kvm is the nested paravirtual kvm_pvm, which runs only guest kernels \
                 built for it; stock guests hang under it"
                    .to_owned(),
            ),
            (true, other) => (
                Accel::Tcg,
                format!(
                    "/dev/kvm exists but no known vendor module backs it ({})",
                    other.unwrap_or("none loaded")
                ),
            ),
        };
        AccelDecision { accel, reason }
    }
}

/// The accelerator chosen for QEMU and the reason, for one warning line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccelDecision {
    /// The accelerator to use.
    pub accel: Accel,
    /// Why: what was found on the host.
    pub reason: String,
}

/// Decides the accelerator for this host. `PVIO_ACCEL=tcg|kvm` overrides the
/// probe (a user who knows better, or a test that must not use KVM).
pub fn detect() -> AccelDecision {
    detect_under(&host_root())
}

/// [`detect`] with the host filesystem under `root` (a fixture tree in
/// tests): the `PVIO_ACCEL` override first, then the probe.
pub fn detect_under(root: &Path) -> AccelDecision {
    match std::env::var("PVIO_ACCEL").ok().as_deref() {
        Some("tcg") => AccelDecision {
            accel: Accel::Tcg,
            reason: "PVIO_ACCEL=tcg".to_owned(),
        },
        Some("kvm") => AccelDecision {
            accel: Accel::Kvm,
            reason: "PVIO_ACCEL=kvm".to_owned(),
        },
        _ => KvmState::probe(root).decide(),
    }
}

/// The root of the host's filesystem: `/`, or the fixture tree
/// `PVIO_HOST_ROOT` names in a build with the `test-host-root` feature (a
/// production build, which runs as root, never reads the host from a path
/// its caller's environment chose; it says once that it ignores it).
pub fn host_root() -> PathBuf {
    match std::env::var_os("PVIO_HOST_ROOT") {
        Some(p) if cfg!(feature = "test-host-root") => PathBuf::from(p),
        Some(_) => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                tracing::warn!(
                    "PVIO_HOST_ROOT is ignored: only test builds (feature test-host-root) read the host from a fixture tree"
                );
            });
            PathBuf::from("/")
        }
        None => PathBuf::from("/"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(dev: bool, module: Option<&str>) -> KvmState {
        KvmState {
            dev_kvm: dev,
            vendor_module: module.map(str::to_owned),
            dev_kvm_openable: dev,
        }
    }

    #[test]
    fn a_dev_kvm_that_does_not_open_is_tcg_with_the_fix() {
        let mut s = state(true, Some("kvm_intel"));
        s.dev_kvm_openable = false;
        let d = s.decide();
        assert_eq!(d.accel, Accel::Tcg);
        assert!(d.reason.contains("kvm group"), "{}", d.reason);
    }

    #[test]
    fn real_vendor_modules_give_kvm() {
        assert_eq!(state(true, Some("kvm_intel")).decide().accel, Accel::Kvm);
        assert_eq!(state(true, Some("kvm_amd")).decide().accel, Accel::Kvm);
    }

    #[test]
    fn nested_pvm_falls_back_to_tcg_with_reason() {
        let d = state(true, Some("kvm_pvm")).decide();
        assert_eq!(d.accel, Accel::Tcg);
        assert!(d.reason.contains("kvm_pvm"), "{}", d.reason);
    }

    #[test]
    fn no_dev_kvm_is_tcg() {
        assert_eq!(state(false, Some("kvm_intel")).decide().accel, Accel::Tcg);
        assert_eq!(state(true, None).decide().accel, Accel::Tcg);
    }

    #[test]
    fn probe_reads_a_fixture_tree() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("dev")).unwrap();
        std::fs::write(dir.path().join("dev/kvm"), b"").unwrap();
        std::fs::create_dir_all(dir.path().join("sys/module/kvm_amd")).unwrap();
        assert_eq!(KvmState::probe(dir.path()), state(true, Some("kvm_amd")));
    }
}
