//! Resolves module names into the files to `insmod`, in dependency order.
//!
//! The source of truth is the kernel's `modules.dep` (depmod's format:
//! `path: dep dep ...`) and `modules.builtin` (one path per line: modules
//! compiled into the kernel, which need no file). Names match the way
//! modprobe matches them: `vfio-pci` and `vfio_pci` are the same module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::modinfo::{canonical_name, name_from_path};

/// Errors from reading the module index or resolving names against it.
#[derive(Debug, thiserror::Error)]
pub enum ModulesError {
    /// `modules.dep` or `modules.builtin` could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line of `modules.dep` is not `path: deps`.
    #[error("{path}:{line}: not a modules.dep line: {text:?}")]
    BadLine {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// The line.
        text: String,
    },
    /// A requested module is neither a module file nor built in.
    #[error("kernel {version} has no module {name:?} (neither in modules.dep nor built in)")]
    Unknown {
        /// The name as asked for.
        name: String,
        /// The kernel's version.
        version: String,
    },
}

/// One module to load: its name and its file relative to the modules
/// directory (`lib/modules/<version>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModule {
    /// The canonical name (`_`, as `/sys/module` shows it).
    pub name: String,
    /// The `.ko` file, relative to the modules directory.
    pub path: String,
}

/// A kernel's module index: what `modules.dep` and `modules.builtin` say.
#[derive(Debug, Clone, Default)]
pub struct ModuleIndex {
    version: String,
    /// name -> (path, dependency paths as listed).
    deps: BTreeMap<String, (String, Vec<String>)>,
    builtin: BTreeSet<String>,
}

impl ModuleIndex {
    /// Reads `modules.dep` and (if present) `modules.builtin` from a modules
    /// directory whose last component is the kernel version.
    pub fn load(modules_dir: &Path) -> Result<ModuleIndex, ModulesError> {
        let read = |name: &str| {
            let path = modules_dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| ModulesError::Read { path, source })
        };
        let dep = read("modules.dep")?;
        let builtin = match read("modules.builtin") {
            Ok(b) => b,
            Err(ModulesError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                String::new()
            }
            Err(e) => return Err(e),
        };
        let version = modules_dir
            .file_name()
            .map(|v| v.to_string_lossy().into_owned())
            .unwrap_or_default();
        ModuleIndex::parse(&version, &dep, &builtin, &modules_dir.join("modules.dep"))
    }

    /// Builds the index from the text of `modules.dep` and `modules.builtin`
    /// (`dep_path` is only for error messages).
    pub fn parse(
        version: &str,
        modules_dep: &str,
        modules_builtin: &str,
        dep_path: &Path,
    ) -> Result<ModuleIndex, ModulesError> {
        let mut deps = BTreeMap::new();
        for (i, line) in modules_dep.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || ModulesError::BadLine {
                path: dep_path.to_owned(),
                line: i + 1,
                text: line.to_owned(),
            };
            let (path, rest) = line.split_once(':').ok_or_else(bad)?;
            let name = name_from_path(path.trim()).ok_or_else(bad)?;
            let list = rest.split_whitespace().map(str::to_owned).collect();
            deps.insert(name, (path.trim().to_owned(), list));
        }
        let builtin = modules_builtin
            .lines()
            .filter_map(|l| name_from_path(l.trim()))
            .collect();
        Ok(ModuleIndex {
            version: version.to_owned(),
            deps,
            builtin,
        })
    }

    /// The kernel version this index belongs to.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Whether `name` is compiled into the kernel.
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&canonical_name(name))
    }

    /// Whether `name` is a loadable module with a file.
    pub fn has_module(&self, name: &str) -> bool {
        self.deps.contains_key(&canonical_name(name))
    }

    /// The module files to load, dependencies first, each once, for the
    /// requested names (in the order asked where dependencies allow).
    /// A built-in module needs no file and is left out.
    pub fn resolve<S: AsRef<str>>(&self, names: &[S]) -> Result<Vec<ResolvedModule>, ModulesError> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for name in names {
            let canon = canonical_name(name.as_ref());
            if self.deps.contains_key(&canon) {
                self.visit(&canon, &mut seen, &mut out);
            } else if !self.builtin.contains(&canon) {
                return Err(ModulesError::Unknown {
                    name: name.as_ref().to_owned(),
                    version: self.version.clone(),
                });
            }
        }
        Ok(out)
    }

    /// Depth-first, post-order: every dependency before its dependents.
    fn visit(&self, name: &str, seen: &mut BTreeSet<String>, out: &mut Vec<ResolvedModule>) {
        if !seen.insert(name.to_owned()) {
            return;
        }
        let Some((path, deps)) = self.deps.get(name) else {
            return;
        };
        // modules.dep lists the one to load first last.
        for dep in deps.iter().rev() {
            if let Some(dep_name) = name_from_path(dep) {
                self.visit(&dep_name, seen, out);
            }
        }
        out.push(ResolvedModule {
            name: name.to_owned(),
            path: path.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small excerpt in the shape of Debian 6.1's modules.dep.
    const DEP: &str = "\
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/virt/lib/irqbypass.ko:
kernel/drivers/vfio/vfio.ko:
kernel/drivers/vfio/vfio_virqfd.ko: kernel/drivers/vfio/vfio.ko
kernel/drivers/vfio/pci/vfio-pci-core.ko: kernel/drivers/vfio/vfio_virqfd.ko kernel/virt/lib/irqbypass.ko kernel/drivers/vfio/vfio.ko
kernel/drivers/vfio/pci/vfio-pci.ko: kernel/drivers/vfio/pci/vfio-pci-core.ko kernel/drivers/vfio/vfio_virqfd.ko kernel/virt/lib/irqbypass.ko kernel/drivers/vfio/vfio.ko
";
    const BUILTIN: &str = "kernel/drivers/tty/serial/8250/8250.ko\nkernel/drivers/char/mem.ko\n";

    fn index() -> ModuleIndex {
        ModuleIndex::parse("6.1.0-test", DEP, BUILTIN, Path::new("modules.dep")).expect("parse")
    }

    fn names(v: &[ResolvedModule]) -> Vec<&str> {
        v.iter().map(|m| m.name.as_str()).collect()
    }

    fn pos(v: &[ResolvedModule], n: &str) -> usize {
        v.iter()
            .position(|m| m.name == n)
            .unwrap_or_else(|| panic!("{n} missing from {:?}", names(v)))
    }

    #[test]
    fn dependencies_come_first() {
        let r = index().resolve(&["virtio_blk"]).expect("resolve");
        assert_eq!(names(&r), vec!["virtio", "virtio_ring", "virtio_blk"]);
        assert_eq!(r[2].path, "kernel/drivers/block/virtio_blk.ko");
    }

    #[test]
    fn vfio_pci_core_gets_irqbypass_and_virqfd_first() {
        let r = index().resolve(&["vfio-pci"]).expect("resolve");
        let core = pos(&r, "vfio_pci_core");
        assert!(pos(&r, "irqbypass") < core);
        assert!(pos(&r, "vfio_virqfd") < core);
        assert!(pos(&r, "vfio") < pos(&r, "vfio_virqfd"));
        assert_eq!(pos(&r, "vfio_pci"), r.len() - 1);
    }

    #[test]
    fn shared_dependencies_load_once() {
        let r = index()
            .resolve(&["virtio_pci", "virtio_blk", "virtio-blk"])
            .expect("resolve");
        assert_eq!(r.iter().filter(|m| m.name == "virtio").count(), 1);
        assert_eq!(r.iter().filter(|m| m.name == "virtio_blk").count(), 1);
        assert!(pos(&r, "virtio_ring") < pos(&r, "virtio_pci"));
    }

    #[test]
    fn dash_and_underscore_match() {
        let i = index();
        assert_eq!(
            i.resolve(&["vfio_pci"]).expect("_"),
            i.resolve(&["vfio-pci"]).expect("-")
        );
    }

    #[test]
    fn builtin_needs_no_file() {
        let i = index();
        assert!(i.resolve(&["8250", "mem"]).expect("resolve").is_empty());
        assert!(i.is_builtin("8250"));
        assert!(!i.has_module("8250"));
    }

    #[test]
    fn unknown_module_is_an_error_naming_it() {
        let err = index().resolve(&["nosuch"]).expect_err("unknown");
        assert!(err.to_string().contains("\"nosuch\""), "{err}");
        assert!(err.to_string().contains("6.1.0-test"), "{err}");
    }

    #[test]
    fn a_line_without_colon_is_an_error() {
        let err =
            ModuleIndex::parse("v", "kernel/x.ko\n", "", Path::new("m.dep")).expect_err("bad line");
        assert!(err.to_string().contains("m.dep:1"), "{err}");
    }
}
