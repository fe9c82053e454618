//! Extracts the uncompressed kernel (`vmlinux`, an ELF) from a `vmlinuz`
//! (bzImage), the way the kernel's `scripts/extract-vmlinux` does.
//!
//! Why: under TCG the bzImage's own decompressor takes about 3 s of every
//! boot (Debian compresses with XZ). QEMU boots an ELF kernel that carries a
//! PVH entry note (`CONFIG_PVH=y`, as Debian's has) directly, with no
//! decompression; a guest then reaches `/init` in about 2 s instead of 5.
//! The extraction is done once, when the kernel is unpacked into the cache.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Errors from extracting `vmlinux`.
#[derive(Debug, thiserror::Error)]
pub enum VmlinuxError {
    /// A file could not be read or written.
    #[error("{what} {path}")]
    Io {
        /// What the kit was doing.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No compressed payload the kit knows was found.
    #[error("{0} holds no xz, zstd or gzip payload that decompresses to an ELF kernel")]
    NoPayload(PathBuf),
}

/// Compressed payload magics and the host tool that decompresses one from
/// stdin to stdout, ignoring what trails it.
const PAYLOADS: [(&[u8], &[&str]); 3] = [
    (b"\xfd7zXZ\x00", &["xz", "-dc", "--single-stream"]),
    (b"\x28\xb5\x2f\xfd", &["zstd", "-dcq"]),
    (b"\x1f\x8b\x08", &["gzip", "-dc"]),
];

/// Decompresses `data` (from its start) with `tool`; `None` if the tool is
/// missing or the result is not an ELF file. Trailing garbage after the
/// stream makes some tools exit non-zero; the output still counts.
fn decompress(data: &[u8], tool: &[&str]) -> Option<Vec<u8>> {
    let (prog, args) = tool.split_first()?;
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let input = data.to_vec();
    let writer = std::thread::spawn(move || {
        // A tool that stops reading early (end of stream) closes the pipe.
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().ok()?;
    let _ = writer.join();
    out.stdout.starts_with(b"\x7fELF").then_some(out.stdout)
}

/// Finds the compressed kernel inside `vmlinuz` and decompresses it.
pub fn extract(vmlinuz: &[u8]) -> Option<Vec<u8>> {
    for (magic, tool) in PAYLOADS {
        let mut from = 0;
        while let Some(pos) = vmlinuz
            .get(from..)
            .and_then(|rest| rest.windows(magic.len()).position(|w| w == magic))
        {
            let start = from + pos;
            if let Some(elf) = vmlinuz.get(start..).and_then(|d| decompress(d, tool)) {
                return Some(elf);
            }
            from = start + 1;
        }
    }
    None
}

/// Writes the `vmlinux` inside `vmlinuz` to `dest` (through a temporary file
/// beside it, renamed when complete).
pub fn extract_to(vmlinuz: &Path, dest: &Path) -> Result<(), VmlinuxError> {
    let data = std::fs::read(vmlinuz).map_err(|source| VmlinuxError::Io {
        what: "cannot read",
        path: vmlinuz.to_owned(),
        source,
    })?;
    let elf = extract(&data).ok_or_else(|| VmlinuxError::NoPayload(vmlinuz.to_owned()))?;
    let tmp = dest.with_extension("partial");
    std::fs::write(&tmp, elf).map_err(|source| VmlinuxError::Io {
        what: "cannot write",
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, dest).map_err(|source| VmlinuxError::Io {
        what: "cannot rename into place",
        path: dest.to_owned(),
        source,
    })
}

/// Whether a kernel config (the text of `boot/config-<version>`) enables
/// the PVH entry point QEMU needs to boot `vmlinux` directly.
pub fn config_has_pvh(config: &str) -> bool {
    config.lines().any(|l| l.trim() == "CONFIG_PVH=y")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_gzip_payload_after_a_false_magic() {
        let mut elf = b"\x7fELF".to_vec();
        elf.extend_from_slice(&[7u8; 1000]);
        let mut gz = Command::new("gzip")
            .arg("-c")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("gzip");
        gz.stdin
            .take()
            .expect("stdin")
            .write_all(&elf)
            .expect("write");
        let packed = gz.wait_with_output().expect("gzip").stdout;
        // A setup header, a stray magic that is no stream, then the payload.
        let mut image = vec![0u8; 600];
        image.extend_from_slice(b"\x1f\x8b\x08garbage");
        image.extend_from_slice(&packed);
        image.extend_from_slice(&[0u8; 64]);
        assert_eq!(extract(&image), Some(elf));
    }

    #[test]
    fn no_payload() {
        assert_eq!(extract(&[0u8; 4096]), None);
    }

    #[test]
    fn pvh_in_config() {
        assert!(config_has_pvh("CONFIG_X=y\nCONFIG_PVH=y\n"));
        assert!(!config_has_pvh("# CONFIG_PVH is not set\n"));
    }
}
