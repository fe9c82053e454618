//! Builds the guest's initramfs: busybox, the requested kernel modules, any
//! files and host binaries a test adds, the test script and `/init`
//! (see [`crate::init`]), as one uncompressed `newc` cpio archive.
//!
//! ```no_run
//! # fn main() -> Result<(), pvio_tests::InitramfsError> {
//! use pvio_tests::Initramfs;
//! let dir = tempfile::tempdir().expect("tempdir");
//! let path = Initramfs::builder()
//!     .modules(&["virtio_pci", "virtio_blk"])
//!     .file("/etc/motd", b"hello\n", 0o644)
//!     .script("cat /etc/motd; ls /sys/block")
//!     .build(dir.path())?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cpio::{CpioError, CpioWriter};
use crate::init::{render_init, SCRIPT_PATH};
use crate::kernel::{GuestKernel, KernelError};
use crate::ldd::{needed_libraries, LddError};
use crate::modules::ModulesError;

/// Where busybox is taken from on the host (Debian's `busybox-static`).
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// Host binaries larger than this get their debug info stripped on the way
/// in (when `objcopy` is there): a debug build of `pvio` would otherwise
/// take much of a small guest's RAM, twice (archive and unpacked copy).
const STRIP_ABOVE: u64 = 8 << 20;

/// Errors from building an initramfs.
#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    /// The guest kernel is unavailable.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// A requested module cannot be resolved.
    #[error(transparent)]
    Modules(#[from] ModulesError),
    /// A host binary's libraries cannot be listed.
    #[error(transparent)]
    Ldd(#[from] LddError),
    /// Writing the archive failed.
    #[error(transparent)]
    Cpio(#[from] CpioError),
    /// Busybox is missing on the host.
    #[error("{path} is missing: install busybox-static (scripts/setup.sh does)")]
    NoBusybox {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// `busybox --list-full` failed.
    #[error("`{path} --list-full` failed: {why}")]
    BusyboxList {
        /// The busybox binary.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// A host file could not be read.
    #[error("cannot read {path} (to put in the initramfs)")]
    ReadHost {
        /// The host file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The archive could not be created.
    #[error("cannot create {path}")]
    Create {
        /// The archive's path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A guest path is not absolute or not clean.
    #[error("guest path {0:?} must be absolute, without `.` or `..` components")]
    BadGuestPath(String),
}

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    /// These bytes.
    Bytes(Vec<u8>),
    /// The content of this host file (read at build time; symlinks followed).
    Host(PathBuf),
}

impl From<Vec<u8>> for FileSource {
    fn from(v: Vec<u8>) -> Self {
        FileSource::Bytes(v)
    }
}
impl From<&[u8]> for FileSource {
    fn from(v: &[u8]) -> Self {
        FileSource::Bytes(v.to_vec())
    }
}
impl<const N: usize> From<&[u8; N]> for FileSource {
    fn from(v: &[u8; N]) -> Self {
        FileSource::Bytes(v.to_vec())
    }
}
impl From<PathBuf> for FileSource {
    fn from(p: PathBuf) -> Self {
        FileSource::Host(p)
    }
}
impl From<&Path> for FileSource {
    fn from(p: &Path) -> Self {
        FileSource::Host(p.to_owned())
    }
}

/// One entry of the guest tree.
#[derive(Debug, Clone)]
enum Entry {
    Dir,
    File {
        source: FileSource,
        mode: u32,
        strip: bool,
    },
    Symlink(String),
    CharDev {
        major: u32,
        minor: u32,
    },
}

/// Namespace for [`Initramfs::builder`].
#[derive(Debug)]
pub struct Initramfs;

impl Initramfs {
    /// A builder with busybox and `/init`, no modules and an empty script.
    pub fn builder() -> InitramfsBuilder {
        InitramfsBuilder::default()
    }
}

/// Collects what goes into the initramfs; [`InitramfsBuilder::build`]
/// writes it. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct InitramfsBuilder {
    kernel: Option<GuestKernel>,
    modules: Vec<String>,
    script: String,
    files: Vec<(String, Entry)>,
}

/// Checks a guest path and turns it into an archive name (no leading `/`).
fn archive_name(guest_path: &str) -> Result<String, InitramfsError> {
    let bad = || InitramfsError::BadGuestPath(guest_path.to_owned());
    let rel = guest_path.strip_prefix('/').ok_or_else(bad)?;
    let parts: Vec<&str> = rel.split('/').collect();
    if rel.is_empty()
        || parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(bad());
    }
    Ok(rel.to_owned())
}

impl InitramfsBuilder {
    /// The kernel whose modules go in (default: [`GuestKernel::get`]).
    pub fn kernel(mut self, kernel: GuestKernel) -> Self {
        self.kernel = Some(kernel);
        self
    }

    /// Modules to load at boot, by name (`-` and `_` alike); their
    /// dependencies are added and everything is loaded in dependency order.
    /// Adds to earlier calls.
    pub fn modules<S: AsRef<str>>(mut self, names: &[S]) -> Self {
        self.modules
            .extend(names.iter().map(|n| n.as_ref().to_owned()));
        self
    }

    /// The test script (`sh` syntax; runs as root in `/`, stdin from
    /// `/dev/null`, stdout and stderr to the console). Its exit status is
    /// its last command's: see [`crate::strict`].
    pub fn script(mut self, script: &str) -> Self {
        self.script = script.to_owned();
        self
    }

    /// Adds a file at the absolute guest path `guest_path` with permission
    /// bits `mode` (`0o755` for a program). `source` is bytes (`b"..."`,
    /// `Vec<u8>`) or a host file (`Path`, `PathBuf`). A later file at the
    /// same path replaces an earlier one (busybox's applet links included).
    pub fn file(mut self, guest_path: &str, source: impl Into<FileSource>, mode: u32) -> Self {
        self.files.push((
            guest_path.to_owned(),
            Entry::File {
                source: source.into(),
                mode,
                strip: false,
            },
        ));
        self
    }

    /// Adds a symbolic link at `guest_path` pointing to `target`.
    pub fn symlink(mut self, guest_path: &str, target: &str) -> Self {
        self.files
            .push((guest_path.to_owned(), Entry::Symlink(target.to_owned())));
        self
    }

    /// Adds an empty directory.
    pub fn dir(mut self, guest_path: &str) -> Self {
        self.files.push((guest_path.to_owned(), Entry::Dir));
        self
    }

    /// Copies a host program into the guest as `/usr/bin/<file name>`, with
    /// the shared libraries and the ELF interpreter `ldd` lists, at their
    /// host paths. Large binaries lose their debug info on the way in.
    pub fn host_binary(self, host_path: impl AsRef<Path>) -> Self {
        let host_path = host_path.as_ref();
        let name = host_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.host_binary_at(host_path, &format!("/usr/bin/{name}"))
    }

    /// Like [`InitramfsBuilder::host_binary`], at the guest path `guest_path`.
    pub fn host_binary_at(mut self, host_path: impl AsRef<Path>, guest_path: &str) -> Self {
        self.files.push((
            guest_path.to_owned(),
            Entry::File {
                source: FileSource::Host(host_path.as_ref().to_owned()),
                mode: 0o755,
                strip: true,
            },
        ));
        self
    }

    /// Writes the archive. `dest` is the archive's path, or an existing
    /// directory to write `initramfs.cpio` in. Returns the archive's path.
    pub fn build(&self, dest: &Path) -> Result<PathBuf, InitramfsError> {
        let path = if dest.is_dir() {
            dest.join("initramfs.cpio")
        } else {
            dest.to_owned()
        };
        let tree = self.tree(&path)?;
        let file = File::create(&path).map_err(|source| InitramfsError::Create {
            path: path.clone(),
            source,
        })?;
        let mut cpio = CpioWriter::new(BufWriter::new(file));
        for (name, entry) in &tree {
            match entry {
                Entry::Dir => cpio.dir(name, 0o755)?,
                Entry::Symlink(target) => cpio.symlink(name, target)?,
                Entry::CharDev { major, minor } => cpio.char_dev(name, 0o600, *major, *minor)?,
                Entry::File { source, mode, .. } => match source {
                    FileSource::Bytes(b) => {
                        let len = u64::try_from(b.len()).unwrap_or(u64::MAX);
                        cpio.file(name, *mode, len, &mut b.as_slice())?;
                    }
                    FileSource::Host(p) => {
                        let read_err = |source| InitramfsError::ReadHost {
                            path: p.clone(),
                            source,
                        };
                        let mut f = File::open(p).map_err(read_err)?;
                        let len = f.metadata().map_err(read_err)?.len();
                        cpio.file(name, *mode, len, &mut f)?;
                    }
                },
            }
        }
        cpio.finish()?;
        // Stripped copies were made beside the archive; they are in it now.
        for entry in tree.values() {
            if let Entry::File {
                source: FileSource::Host(p),
                strip: true,
                ..
            } = entry
            {
                let _ = std::fs::remove_file(p);
            }
        }
        Ok(path)
    }

    /// The whole guest tree, sorted so that every directory comes before
    /// what it holds. Stripped copies of host binaries are made next to
    /// `archive` (and marked `strip: true`, so that `build` removes them).
    fn tree(&self, archive: &Path) -> Result<BTreeMap<String, Entry>, InitramfsError> {
        let mut tree = BTreeMap::new();
        for d in ["dev", "proc", "sys", "tmp", "run", "root", "etc"] {
            tree.insert(d.to_owned(), Entry::Dir);
        }
        tree.insert(
            "dev/console".to_owned(),
            Entry::CharDev { major: 5, minor: 1 },
        );
        tree.insert("dev/null".to_owned(), Entry::CharDev { major: 1, minor: 3 });

        // Busybox and its applet links (a later file may replace one).
        let busybox = Path::new(HOST_BUSYBOX);
        if !busybox.is_file() {
            return Err(InitramfsError::NoBusybox {
                path: busybox.to_owned(),
            });
        }
        for applet in busybox_applets(busybox)? {
            tree.insert(applet, Entry::Symlink("/bin/busybox".to_owned()));
        }
        self.add_host_program(&mut tree, busybox, "bin/busybox", false, archive)?;

        // Modules, in load order.
        let mut load = Vec::new();
        if !self.modules.is_empty() {
            let kernel = match &self.kernel {
                Some(k) => k.clone(),
                None => GuestKernel::get()?,
            };
            let index = kernel.module_index()?;
            let guest_dir = format!("lib/modules/{}", kernel.version());
            for m in index.resolve(&self.modules)? {
                let name = format!("{guest_dir}/{}", m.path);
                tree.insert(
                    name.clone(),
                    Entry::File {
                        source: FileSource::Host(kernel.modules_dir().join(&m.path)),
                        mode: 0o644,
                        strip: false,
                    },
                );
                load.push((m.name, format!("/{name}")));
            }
        }

        for (guest_path, entry) in &self.files {
            let name = archive_name(guest_path)?;
            match entry {
                Entry::File {
                    source: FileSource::Host(p),
                    strip: true,
                    ..
                } => self.add_host_program(&mut tree, p, &name, true, archive)?,
                other => {
                    tree.insert(name, other.clone());
                }
            }
        }

        tree.insert(
            archive_name(SCRIPT_PATH)?,
            Entry::File {
                source: FileSource::Bytes(self.script.clone().into_bytes()),
                mode: 0o755,
                strip: false,
            },
        );
        tree.insert(
            "init".to_owned(),
            Entry::File {
                source: FileSource::Bytes(render_init(&load).into_bytes()),
                mode: 0o755,
                strip: false,
            },
        );

        // Every parent directory, so that the kernel can create each entry.
        let parents: Vec<String> = tree
            .keys()
            .flat_map(|k| {
                let mut ps = Vec::new();
                let mut p = k.as_str();
                while let Some((parent, _)) = p.rsplit_once('/') {
                    ps.push(parent.to_owned());
                    p = parent;
                }
                ps
            })
            .collect();
        for p in parents {
            tree.entry(p).or_insert(Entry::Dir);
        }
        Ok(tree)
    }

    /// Adds a host program at `name` and the libraries it needs at their
    /// host paths. With `strip`, a large program is replaced by a copy
    /// without debug info, made next to `archive`.
    fn add_host_program(
        &self,
        tree: &mut BTreeMap<String, Entry>,
        host: &Path,
        name: &str,
        strip: bool,
        archive: &Path,
    ) -> Result<(), InitramfsError> {
        let size = std::fs::metadata(host)
            .map_err(|source| InitramfsError::ReadHost {
                path: host.to_owned(),
                source,
            })?
            .len();
        let stripped = if strip && size > STRIP_ABOVE {
            strip_debug(host, archive)
        } else {
            None
        };
        for lib in needed_libraries(host)? {
            let lib_name = lib.to_string_lossy().trim_start_matches('/').to_owned();
            tree.insert(
                lib_name,
                Entry::File {
                    source: FileSource::Host(lib),
                    mode: 0o755,
                    strip: false,
                },
            );
        }
        let (source, strip) = match stripped {
            Some(p) => (FileSource::Host(p), true),
            None => (FileSource::Host(host.to_owned()), false),
        };
        tree.insert(
            name.to_owned(),
            Entry::File {
                source,
                mode: 0o755,
                strip,
            },
        );
        Ok(())
    }
}

/// A copy of `host` without debug info, next to `archive`; `None` if
/// `objcopy` is missing or fails (the original is used then).
fn strip_debug(host: &Path, archive: &Path) -> Option<PathBuf> {
    let name = host.file_name()?.to_string_lossy().into_owned();
    let out = archive.with_file_name(format!(".{name}.stripped"));
    let ok = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(host)
        .arg(&out)
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(out)
}

/// The applet paths busybox would install (`bin/sh`, `sbin/insmod`, ...),
/// relative to `/`.
fn busybox_applets(busybox: &Path) -> Result<Vec<String>, InitramfsError> {
    let err = |why: String| InitramfsError::BusyboxList {
        path: busybox.to_owned(),
        why,
    };
    let out = Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        return Err(err(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().trim_start_matches('/').to_owned())
        .filter(|l| !l.is_empty() && !l.contains(".."))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_paths_must_be_absolute_and_clean() {
        assert_eq!(archive_name("/etc/x").expect("ok"), "etc/x");
        for bad in ["etc/x", "/", "/a/../b", "/a//b", "/a/./b"] {
            assert!(archive_name(bad).is_err(), "{bad}");
        }
    }

    /// The archive has busybox, its links, the script and `/init`, and every
    /// directory before what it holds. No kernel is needed without modules.
    #[test]
    fn archive_without_modules() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = Initramfs::builder()
            .script("echo hi")
            .file("/etc/deep/er/motd", b"hello", 0o644)
            .host_binary("/bin/true")
            .build(dir.path())
            .expect("build");
        let out = Command::new("cpio")
            .args(["-it", "--quiet"])
            .stdin(File::open(&path).expect("open"))
            .output()
            .expect("cpio is installed by scripts/setup.sh");
        let listing = String::from_utf8_lossy(&out.stdout);
        let names: Vec<&str> = listing.lines().collect();
        for want in [
            "init",
            "pvio-test.sh",
            "bin/busybox",
            "bin/sh",
            "sbin/insmod",
            "dev/console",
            "etc/deep/er/motd",
            "usr/bin/true",
        ] {
            assert!(names.contains(&want), "{want} missing from\n{listing}");
        }
        for (i, n) in names.iter().enumerate() {
            if let Some((parent, _)) = n.rsplit_once('/') {
                let p = names.iter().position(|x| *x == parent);
                assert!(p.is_some_and(|p| p < i), "{parent} not before {n}");
            }
        }
        assert!(
            names.iter().any(|n| n.contains("libc.so")),
            "libc for /bin/true: {listing}"
        );
    }
}
