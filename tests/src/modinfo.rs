//! Reads a kernel module's `.modinfo` section and writes `modules.dep`.
//!
//! Debian's kernel package ships no `modules.dep`: `depmod` writes it when
//! the package is installed, and the kit only unpacks the package (and the
//! host need not have `kmod`). Every `.ko` carries its direct dependencies in
//! its `.modinfo` ELF section (`depends=a,b`, written by `modpost`), so the
//! kit writes a `modules.dep` in depmod's format from those: one line per
//! module, `path: dep dep ...`, the full closure, the one to load first last.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Errors from reading modules or writing `modules.dep`.
#[derive(Debug, thiserror::Error)]
pub enum ModinfoError {
    /// A module file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A module file is not the ELF64 little-endian object a `.ko` is.
    #[error("{path} is not a kernel module: {why}")]
    NotAModule {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: &'static str,
    },
    /// `modules.dep` could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What the kit needs from a module's `.modinfo`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModInfo {
    /// The module's name (`name=`), if the section has one.
    pub name: Option<String>,
    /// The modules it needs loaded first (`depends=`), by name.
    pub depends: Vec<String>,
}

/// The canonical form of a module name: `-` and `_` are the same to the
/// kernel and to modprobe, and `_` is what `/sys/module` shows.
pub fn canonical_name(name: &str) -> String {
    name.replace('-', "_")
}

/// The module name a `.ko` file path stands for (`.../vfio-pci.ko` is
/// `vfio_pci`), or `None` if the path is not a `.ko` file.
pub fn name_from_path(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let stem = file.strip_suffix(".ko")?;
    Some(canonical_name(stem))
}

/// Parses the NUL-separated `key=value` strings of a `.modinfo` section.
pub fn parse_modinfo(section: &[u8]) -> ModInfo {
    let mut info = ModInfo::default();
    for entry in section.split(|b| *b == 0) {
        let Ok(entry) = std::str::from_utf8(entry) else {
            continue;
        };
        if let Some(v) = entry.strip_prefix("depends=") {
            info.depends = v
                .split(',')
                .filter(|d| !d.is_empty())
                .map(canonical_name)
                .collect();
        } else if let Some(v) = entry.strip_prefix("name=") {
            info.name = Some(canonical_name(v));
        }
    }
    info
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// Reads `len` bytes at `offset` of `file`.
fn read_at(file: &File, path: &Path, offset: u64, len: u64) -> Result<Vec<u8>, ModinfoError> {
    /// No section of a module comes near this; a larger one means a corrupt file.
    const MAX: u64 = 64 << 20;
    if len > MAX {
        return Err(ModinfoError::NotAModule {
            path: path.to_owned(),
            why: "a section is implausibly large",
        });
    }
    let len = usize::try_from(len).map_err(|_| ModinfoError::NotAModule {
        path: path.to_owned(),
        why: "a section does not fit in memory",
    })?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset)
        .map_err(|source| ModinfoError::Read {
            path: path.to_owned(),
            source,
        })?;
    Ok(buf)
}

/// Reads the `.modinfo` section of the module at `path` (an uncompressed
/// ELF64 little-endian `.ko`).
pub fn read_modinfo(path: &Path) -> Result<ModInfo, ModinfoError> {
    let bad = |why| ModinfoError::NotAModule {
        path: path.to_owned(),
        why,
    };
    let file = File::open(path).map_err(|source| ModinfoError::Read {
        path: path.to_owned(),
        source,
    })?;
    let ehdr = read_at(&file, path, 0, 64)?;
    if ehdr.get(0..4) != Some(b"\x7fELF".as_slice()) {
        return Err(bad("no ELF magic (compressed?)"));
    }
    if ehdr.get(4) != Some(&2) || ehdr.get(5) != Some(&1) {
        return Err(bad("not ELF64 little-endian"));
    }
    let shoff = u64_at(&ehdr, 0x28).ok_or_else(|| bad("short ELF header"))?;
    let shentsize = u16_at(&ehdr, 0x3a).ok_or_else(|| bad("short ELF header"))?;
    let shnum = u16_at(&ehdr, 0x3c).ok_or_else(|| bad("short ELF header"))?;
    let shstrndx = u16_at(&ehdr, 0x3e).ok_or_else(|| bad("short ELF header"))?;
    if shentsize < 64 {
        return Err(bad("section headers too small"));
    }
    let shdrs = read_at(&file, path, shoff, u64::from(shentsize) * u64::from(shnum))?;
    let entsize = usize::from(shentsize);
    // (name offset, file offset, size) of section `i`.
    let section = |i: u16| -> Option<(u32, u64, u64)> {
        let base = usize::from(i) * entsize;
        Some((
            u32_at(&shdrs, base)?,
            u64_at(&shdrs, base + 24)?,
            u64_at(&shdrs, base + 32)?,
        ))
    };
    let (_, stroff, strsize) = section(shstrndx).ok_or_else(|| bad("no section names"))?;
    let names = read_at(&file, path, stroff, strsize)?;
    for i in 0..shnum {
        let (name_off, off, size) = section(i).ok_or_else(|| bad("short section table"))?;
        let name_off = usize::try_from(name_off).map_err(|_| bad("bad section name"))?;
        let name = names
            .get(name_off..)
            .and_then(|n| n.split(|b| *b == 0).next())
            .unwrap_or_default();
        if name == b".modinfo" {
            return Ok(parse_modinfo(&read_at(&file, path, off, size)?));
        }
    }
    Err(bad("no .modinfo section"))
}

/// Every `.ko` file under `dir`, as paths relative to `dir` with `/`.
fn find_modules(dir: &Path, rel: &str, out: &mut Vec<String>) -> Result<(), ModinfoError> {
    let read_err = |source| ModinfoError::Read {
        path: dir.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let child_rel = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let ty = entry.file_type().map_err(read_err)?;
        if ty.is_dir() {
            find_modules(&entry.path(), &child_rel, out)?;
        } else if name.ends_with(".ko") {
            out.push(child_rel);
        }
    }
    Ok(())
}

/// Renders `modules.dep` from each module's path and direct dependencies
/// (by name). Each line lists the module's full dependency closure, the one
/// to load first last, as depmod does. A dependency with no module file
/// (built in, or missing) is left out.
pub fn render_modules_dep(modules: &BTreeMap<String, (String, Vec<String>)>) -> String {
    // name -> path, to turn a dependency name into a file.
    let mut out = String::new();
    for (name, (path, _)) in modules {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        seen.insert(name.clone());
        visit(name, modules, &mut seen, &mut order);
        // `order` is post-order: dependencies before dependents, `name` last.
        order.pop();
        let deps: Vec<&str> = order
            .iter()
            .rev()
            .filter_map(|d| modules.get(d).map(|(p, _)| p.as_str()))
            .collect();
        out.push_str(path);
        out.push(':');
        for d in deps {
            out.push(' ');
            out.push_str(d);
        }
        out.push('\n');
    }
    out
}

fn visit(
    name: &str,
    modules: &BTreeMap<String, (String, Vec<String>)>,
    seen: &mut BTreeSet<String>,
    order: &mut Vec<String>,
) {
    if let Some((_, deps)) = modules.get(name) {
        for d in deps {
            if seen.insert(d.clone()) {
                visit(d, modules, seen, order);
            }
        }
    }
    order.push(name.to_owned());
}

/// Writes `modules_dir/modules.dep` from the `.modinfo` of every `.ko` under
/// `modules_dir`. Returns how many modules it lists.
pub fn write_modules_dep(modules_dir: &Path) -> Result<usize, ModinfoError> {
    let mut files = Vec::new();
    find_modules(modules_dir, "", &mut files)?;
    files.sort();
    let mut modules = BTreeMap::new();
    for rel in files {
        let info = read_modinfo(&modules_dir.join(&rel))?;
        let Some(name) = info.name.or_else(|| name_from_path(&rel)) else {
            continue;
        };
        modules.insert(name, (rel, info.depends));
    }
    let path = modules_dir.join("modules.dep");
    std::fs::write(&path, render_modules_dep(&modules))
        .map_err(|source| ModinfoError::Write { path, source })?;
    Ok(modules.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_depends_and_name() {
        let s = b"license=GPL\0depends=virtio,virtio_ring\0retpoline=Y\0name=virtio_blk\0";
        let info = parse_modinfo(s);
        assert_eq!(info.name.as_deref(), Some("virtio_blk"));
        assert_eq!(info.depends, vec!["virtio", "virtio_ring"]);
    }

    #[test]
    fn empty_depends_is_no_dependency() {
        assert!(parse_modinfo(b"depends=\0").depends.is_empty());
    }

    #[test]
    fn dashes_become_underscores() {
        assert_eq!(
            name_from_path("kernel/drivers/vfio/pci/vfio-pci.ko").as_deref(),
            Some("vfio_pci")
        );
        assert_eq!(name_from_path("modules.dep"), None);
    }

    #[test]
    fn renders_the_closure_with_the_first_to_load_last() {
        let mut m = BTreeMap::new();
        m.insert("a".to_owned(), ("k/a.ko".to_owned(), vec!["b".to_owned()]));
        m.insert("b".to_owned(), ("k/b.ko".to_owned(), vec!["c".to_owned()]));
        m.insert(
            "c".to_owned(),
            ("k/c.ko".to_owned(), vec!["builtin".to_owned()]),
        );
        let dep = render_modules_dep(&m);
        assert_eq!(dep, "k/a.ko: k/b.ko k/c.ko\nk/b.ko: k/c.ko\nk/c.ko:\n");
    }

    #[test]
    fn a_cycle_does_not_loop() {
        let mut m = BTreeMap::new();
        m.insert("a".to_owned(), ("a.ko".to_owned(), vec!["b".to_owned()]));
        m.insert("b".to_owned(), ("b.ko".to_owned(), vec!["a".to_owned()]));
        let dep = render_modules_dep(&m);
        assert_eq!(dep, "a.ko: b.ko\nb.ko: a.ko\n");
    }

    #[test]
    fn a_non_elf_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.ko");
        std::fs::write(&p, [0xfdu8, b'7', b'z', b'X', b'Z', 0].repeat(20)).expect("write");
        let err = read_modinfo(&p).expect_err("not ELF");
        assert!(err.to_string().contains("compressed"), "{err}");
    }
}
