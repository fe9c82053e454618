//! The guest kernel: Debian's generic `linux-image-<abi>-amd64`, fetched with
//! `apt-get download` and unpacked with `dpkg -x` into the cache directory,
//! once per machine.
//!
//! The package is the one `linux-image-amd64` depends on (or the one named
//! by `PVIO_KERNEL_PACKAGE`). Unpacking is idempotent and safe when several
//! threads and processes ask at once: the one that does the work holds a
//! `flock` on `<cache>/kernels/<package>.lock`, unpacks into a temporary
//! directory beside the final one and renames it into place when it is
//! complete, so a reader never sees a half-unpacked tree.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use crate::cache::{cache_dir, CacheError, FileLock};
use crate::modinfo::{write_modules_dep, ModinfoError};
use crate::modules::{ModuleIndex, ModulesError};
use crate::vmlinux::{config_has_pvh, extract_to, VmlinuxError};

/// The environment variable that names the kernel package to use instead of
/// what `linux-image-amd64` depends on.
pub const KERNEL_PACKAGE_ENV: &str = "PVIO_KERNEL_PACKAGE";

/// The metapackage whose dependency is the current generic kernel.
const META_PACKAGE: &str = "linux-image-amd64";

/// What to do when apt cannot help.
const SETUP_HINT: &str = "run scripts/setup.sh (it installs the tools and runs apt-get update)";

/// Errors from finding, fetching or unpacking the guest kernel.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The cache directory is unusable.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// A host tool the kit runs is not installed.
    #[error("`{tool}` is not installed: {hint}")]
    ToolMissing {
        /// The program.
        tool: String,
        /// What to do.
        hint: &'static str,
    },
    /// A host tool ran and failed.
    #[error("`{command}` failed ({status}): {stderr}; {hint}")]
    ToolFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The end of what it wrote to stderr.
        stderr: String,
        /// What to do.
        hint: &'static str,
    },
    /// A host tool could not be started for another reason.
    #[error("cannot run `{tool}`")]
    Spawn {
        /// The program.
        tool: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// apt does not know the metapackage, or it has no kernel dependency.
    #[error("apt knows no kernel package behind {META_PACKAGE}: its package lists are empty or stale; {SETUP_HINT}")]
    NoKernelPackage,
    /// The unpacked package does not look like a kernel package.
    #[error("{package} unpacked into {dir} but {what}")]
    BadPackage {
        /// The package.
        package: String,
        /// Where it was unpacked.
        dir: PathBuf,
        /// What is missing.
        what: String,
    },
    /// A file system operation in the cache failed.
    #[error("{what} {path}")]
    Io {
        /// What the kit was doing.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `modules.dep` could not be written.
    #[error(transparent)]
    Modinfo(#[from] ModinfoError),
    /// The module index could not be read.
    #[error(transparent)]
    Modules(#[from] ModulesError),
    /// The uncompressed kernel could not be extracted.
    #[error(transparent)]
    Vmlinux(#[from] VmlinuxError),
}

/// A guest kernel unpacked in the cache: a `vmlinuz` to hand to QEMU's
/// `-kernel` and the modules that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestKernel {
    package: String,
    version: String,
    vmlinuz: PathBuf,
    vmlinux: Option<PathBuf>,
    pvh: bool,
    modules_dir: PathBuf,
}

/// The kernel found by the first successful [`GuestKernel::get`] of this
/// process.
static KERNEL: Mutex<Option<GuestKernel>> = Mutex::new(None);

impl GuestKernel {
    /// The guest kernel, downloaded and unpacked into the cache directory
    /// first if it is not there yet. Later calls in the same process return
    /// the same kernel at once.
    pub fn get() -> Result<GuestKernel, KernelError> {
        let mut memo = KERNEL
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(k) = memo.as_ref() {
            return Ok(k.clone());
        }
        let kernels = cache_dir()?.join("kernels");
        create_dir(&kernels)?;
        let package = match std::env::var(KERNEL_PACKAGE_ENV) {
            Ok(p) if !p.is_empty() => p,
            _ => match kernel_package_name() {
                Ok(p) => p,
                // Without apt, a kernel unpacked earlier is as good.
                Err(e) => newest_cached(&kernels).ok_or(e)?,
            },
        };
        let kernel = GuestKernel::get_package(&kernels, &package)?;
        *memo = Some(kernel.clone());
        Ok(kernel)
    }

    /// The kernel of `package`, unpacked under `kernels` if it is not yet.
    fn get_package(kernels: &Path, package: &str) -> Result<GuestKernel, KernelError> {
        let dir = kernels.join(package);
        let lock_path = kernels.join(format!("{package}.lock"));
        if !dir.is_dir() {
            let _lock = FileLock::acquire(&lock_path)?;
            // Another thread or process may have finished while we waited.
            if !dir.is_dir() {
                unpack(kernels, package, &dir)?;
            }
        }
        let kernel = GuestKernel::from_dir(package, &dir)?;
        if kernel.vmlinux.is_some() || !kernel.pvh {
            return Ok(kernel);
        }
        // Unpacked by an older kit, without the uncompressed kernel.
        let _lock = FileLock::acquire(&lock_path)?;
        let vmlinux = kernel.vmlinux_path();
        if !vmlinux.is_file() {
            extract_to(&kernel.vmlinuz, &vmlinux)?;
        }
        GuestKernel::from_dir(package, &dir)
    }

    /// Where the uncompressed kernel is (or goes).
    fn vmlinux_path(&self) -> PathBuf {
        self.vmlinuz
            .with_file_name(format!("vmlinux-{}", self.version))
    }

    /// Reads an unpacked kernel package tree.
    fn from_dir(package: &str, dir: &Path) -> Result<GuestKernel, KernelError> {
        let bad = |what: String| KernelError::BadPackage {
            package: package.to_owned(),
            dir: dir.to_owned(),
            what,
        };
        let lib_modules = dir.join("lib/modules");
        let mut versions: Vec<String> = std::fs::read_dir(&lib_modules)
            .map_err(|_| bad("has no lib/modules".to_owned()))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if versions.len() != 1 {
            return Err(bad(format!(
                "lib/modules holds {} versions, not one",
                versions.len()
            )));
        }
        let version = versions.remove(0);
        let vmlinuz = dir.join("boot").join(format!("vmlinuz-{version}"));
        if !vmlinuz.is_file() {
            return Err(bad(format!("has no boot/vmlinuz-{version}")));
        }
        let config = dir.join("boot").join(format!("config-{version}"));
        let pvh = std::fs::read_to_string(config).is_ok_and(|c| config_has_pvh(&c));
        let vmlinux = dir.join("boot").join(format!("vmlinux-{version}"));
        Ok(GuestKernel {
            package: package.to_owned(),
            modules_dir: lib_modules.join(&version),
            version,
            vmlinuz,
            vmlinux: (pvh && vmlinux.is_file()).then_some(vmlinux),
            pvh,
        })
    }

    /// The Debian package it came from (`linux-image-6.1.0-56-amd64`).
    pub fn package(&self) -> &str {
        &self.package
    }

    /// The kernel release, as `uname -r` prints it in the guest.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The compressed kernel image (bzImage), as the package ships it.
    pub fn vmlinuz(&self) -> &Path {
        &self.vmlinuz
    }

    /// The uncompressed kernel (an ELF with a PVH entry point), extracted
    /// from `vmlinuz` when the kernel was unpacked; `None` if the kernel
    /// has no PVH entry point.
    pub fn vmlinux(&self) -> Option<&Path> {
        self.vmlinux.as_deref()
    }

    /// What to hand to QEMU's `-kernel`: `vmlinux` if there is one (QEMU
    /// boots it through PVH with no decompression: about 3 s faster under
    /// TCG), else `vmlinuz`.
    pub fn boot_image(&self) -> &Path {
        self.vmlinux().unwrap_or(&self.vmlinuz)
    }

    /// `lib/modules/<version>`: the modules, `modules.dep` and
    /// `modules.builtin`.
    pub fn modules_dir(&self) -> &Path {
        &self.modules_dir
    }

    /// The kernel's module index, to resolve module names into files.
    pub fn module_index(&self) -> Result<ModuleIndex, KernelError> {
        Ok(ModuleIndex::load(&self.modules_dir)?)
    }
}

fn create_dir(path: &Path) -> Result<(), KernelError> {
    std::fs::create_dir_all(path).map_err(|source| KernelError::Io {
        what: "cannot create",
        path: path.to_owned(),
        source,
    })
}

/// Runs a host tool to completion, capturing its output; a non-zero exit is
/// an error that carries the end of its stderr and `hint`.
fn run_tool(cmd: &mut Command, hint: &'static str) -> Result<Output, KernelError> {
    let tool = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            KernelError::ToolMissing {
                tool: tool.clone(),
                hint,
            }
        } else {
            KernelError::Spawn {
                tool: tool.clone(),
                source,
            }
        }
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        return Err(KernelError::ToolFailed {
            command: format!("{tool} {}", args.join(" ")),
            status: out.status,
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" / "),
            hint,
        });
    }
    Ok(out)
}

/// The kernel package `linux-image-amd64` depends on, from `apt-cache`.
fn kernel_package_name() -> Result<String, KernelError> {
    let out = run_tool(
        Command::new("apt-cache").args(["depends", META_PACKAGE]),
        SETUP_HINT,
    )
    .map_err(|e| match e {
        KernelError::ToolFailed { .. } => KernelError::NoKernelPackage,
        other => other,
    })?;
    parse_depends(&String::from_utf8_lossy(&out.stdout)).ok_or(KernelError::NoKernelPackage)
}

/// The first `Depends: linux-image-...` of `apt-cache depends` output.
fn parse_depends(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(|p| p.trim().trim_start_matches('<').trim_end_matches('>'))
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_owned)
}

/// The lexically last kernel already unpacked in the cache, if any.
fn newest_cached(kernels: &Path) -> Option<String> {
    std::fs::read_dir(kernels)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("linux-image-"))
        .max()
}

/// Downloads `package` and unpacks it into `dest` (which must not exist),
/// through a temporary directory beside it. The caller holds the lock.
fn unpack(kernels: &Path, package: &str, dest: &Path) -> Result<(), KernelError> {
    let tmp = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(kernels)
        .map_err(|source| KernelError::Io {
            what: "cannot create a temporary directory in",
            path: kernels.to_owned(),
            source,
        })?;
    run_tool(
        Command::new("apt-get")
            .args(["download", "-q", package])
            .current_dir(tmp.path()),
        "check that apt can reach Debian's package registry; run scripts/setup.sh (apt-get update)",
    )?;
    let deb = std::fs::read_dir(tmp.path())
        .map_err(|source| KernelError::Io {
            what: "cannot read",
            path: tmp.path().to_owned(),
            source,
        })?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| KernelError::BadPackage {
            package: package.to_owned(),
            dir: tmp.path().to_owned(),
            what: "apt-get download left no .deb".to_owned(),
        })?;
    let root = tmp.path().join("root");
    run_tool(
        Command::new("dpkg").arg("-x").arg(&deb).arg(&root),
        "install dpkg (the kit unpacks Debian packages with dpkg -x)",
    )?;
    let kernel = GuestKernel::from_dir(package, &root)?;
    if kernel.pvh {
        extract_to(&kernel.vmlinuz, &kernel.vmlinux_path())?;
    }
    decompress_modules(kernel.modules_dir())?;
    if !kernel.modules_dir().join("modules.dep").is_file() {
        write_modules_dep(kernel.modules_dir())?;
    }
    std::fs::rename(&root, dest).map_err(|source| KernelError::Io {
        what: "cannot move the unpacked kernel to",
        path: dest.to_owned(),
        source,
    })?;
    Ok(())
}

/// Compressed module suffixes and the host tool (with arguments) that
/// decompresses such files in place.
const COMPRESSED: [(&str, &[&str]); 3] = [
    (".ko.xz", &["xz", "-d", "-f"]),
    (".ko.zst", &["zstd", "-d", "-q", "-f", "--rm"]),
    (".ko.gz", &["gzip", "-d", "-f"]),
];

/// Decompresses every compressed module under `dir` in place: busybox's
/// `insmod` in the guest reads only plain `.ko` files.
fn decompress_modules(dir: &Path) -> Result<(), KernelError> {
    let mut files = Vec::new();
    collect_files(dir, &mut files)?;
    for (suffix, tool) in COMPRESSED {
        let matching: Vec<&PathBuf> = files
            .iter()
            .filter(|p| p.to_string_lossy().ends_with(suffix))
            .collect();
        for chunk in matching.chunks(256) {
            let (prog, args) = tool.split_first().unwrap_or((&"xz", &[]));
            run_tool(
                Command::new(prog).args(args).args(chunk),
                "install it: the kernel ships compressed modules and the guest needs plain ones",
            )?;
        }
    }
    Ok(())
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), KernelError> {
    let io = |source| KernelError::Io {
        what: "cannot read",
        path: dir.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if entry.file_type().map_err(io)?.is_dir() {
            collect_files(&entry.path(), out)?;
        } else {
            out.push(entry.path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_kernel_dependency() {
        let text = "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n";
        assert_eq!(
            parse_depends(text).as_deref(),
            Some("linux-image-6.1.0-56-amd64")
        );
        assert_eq!(
            parse_depends("x\n  Depends: <linux-image-6.1.0-9-amd64>\n").as_deref(),
            Some("linux-image-6.1.0-9-amd64")
        );
        assert_eq!(parse_depends("linux-image-amd64\n"), None);
    }

    #[test]
    fn reads_an_unpacked_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("lib/modules/6.1.0-9-amd64")).expect("mkdir");
        std::fs::create_dir_all(root.join("boot")).expect("mkdir");
        std::fs::write(root.join("boot/vmlinuz-6.1.0-9-amd64"), b"k").expect("write");
        let k = GuestKernel::from_dir("linux-image-6.1.0-9-amd64", root).expect("kernel");
        assert_eq!(k.version(), "6.1.0-9-amd64");
        assert_eq!(k.modules_dir(), root.join("lib/modules/6.1.0-9-amd64"));
    }

    #[test]
    fn a_tree_without_vmlinuz_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("lib/modules/6.1")).expect("mkdir");
        let err = GuestKernel::from_dir("p", dir.path()).expect_err("no vmlinuz");
        assert!(err.to_string().contains("boot/vmlinuz-6.1"), "{err}");
    }
}
