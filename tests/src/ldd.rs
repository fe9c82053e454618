//! Which shared libraries a host binary needs, from `ldd`.
//!
//! A dynamically linked binary copied into the guest needs its libraries and
//! its ELF interpreter at the same absolute paths as on the host. `ldd`
//! prints them:
//!
//! ```text
//!     linux-vdso.so.1 (0x00007ffc...)
//!     libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f...)
//!     /lib64/ld-linux-x86-64.so.2 (0x00007f...)
//! ```
//!
//! A static binary makes `ldd` say "not a dynamic executable" (and exit 1):
//! it needs nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Errors from asking `ldd`.
#[derive(Debug, thiserror::Error)]
pub enum LddError {
    /// `ldd` could not be run.
    #[error("cannot run `ldd {binary}` (ldd comes with libc-bin)")]
    Spawn {
        /// The binary asked about.
        binary: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `ldd` failed for a reason other than a static binary.
    #[error("`ldd {binary}` failed: {stderr}")]
    Failed {
        /// The binary asked about.
        binary: PathBuf,
        /// What ldd said.
        stderr: String,
    },
    /// A library could not be found on the host.
    #[error("{binary} needs {library}, which ldd cannot find on the host")]
    NotFound {
        /// The binary asked about.
        binary: PathBuf,
        /// The library's name.
        library: String,
    },
}

/// The absolute paths of the libraries and the interpreter `binary` needs;
/// empty for a static binary.
pub fn needed_libraries(binary: &Path) -> Result<Vec<PathBuf>, LddError> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|source| LddError::Spawn {
            binary: binary.to_owned(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if stdout.contains("not a dynamic executable")
            || stderr.contains("not a dynamic executable")
        {
            return Ok(Vec::new());
        }
        return Err(LddError::Failed {
            binary: binary.to_owned(),
            stderr: stderr.trim().to_owned(),
        });
    }
    parse_ldd(&stdout).map_err(|library| LddError::NotFound {
        binary: binary.to_owned(),
        library,
    })
}

/// Parses `ldd` output into absolute paths; `Err(name)` for a library ldd
/// reports as "not found".
pub fn parse_ldd(text: &str) -> Result<Vec<PathBuf>, String> {
    let mut paths = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.contains("statically linked") {
            continue;
        }
        let target = match line.split_once("=>") {
            Some((name, rest)) => {
                let rest = rest.trim();
                if rest.starts_with("not found") {
                    return Err(name.trim().to_owned());
                }
                rest
            }
            None => line,
        };
        // Drop the load address: "path (0x...)".
        let path = target.split(" (").next().unwrap_or(target).trim();
        if path.starts_with('/') && !paths.iter().any(|p: &PathBuf| p == Path::new(path)) {
            paths.push(PathBuf::from(path));
        }
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libraries_and_interpreter_but_not_the_vdso() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd2f1f1000)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f1)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f3)\n";
        assert_eq!(
            parse_ldd(text).expect("parse"),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }

    #[test]
    fn a_missing_library_is_named() {
        let text = "\tlibfoo.so.1 => not found\n";
        assert_eq!(parse_ldd(text), Err("libfoo.so.1".to_owned()));
    }

    #[test]
    fn the_host_shell_needs_libc() {
        let libs = needed_libraries(Path::new("/bin/sh")).expect("ldd /bin/sh");
        assert!(
            libs.iter().any(|p| p.to_string_lossy().contains("libc.so")),
            "{libs:?}"
        );
    }

    #[test]
    fn static_busybox_needs_nothing() {
        let libs = needed_libraries(Path::new("/bin/busybox")).expect("ldd busybox");
        assert!(libs.is_empty(), "{libs:?}");
    }
}
