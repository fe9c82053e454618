//! A writer for the `newc` cpio format, the one the kernel unpacks as an
//! initramfs (see the kernel's `Documentation/driver-api/early-userspace/
//! buffer-format.rst`).
//!
//! Each entry is a 110-byte ASCII header (`070701` then thirteen 8-digit hex
//! fields), the NUL-terminated name, padding to 4 bytes, the data, padding to
//! 4 bytes. The archive ends with an entry named `TRAILER!!!`. The kernel does
//! not create missing parent directories: a directory must come before what
//! it holds.

use std::io::{self, Read, Write};

/// Errors from writing an archive.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    /// Writing failed.
    #[error("cannot write the cpio archive")]
    Io(#[from] io::Error),
    /// A field does not fit in newc's 32 bits.
    #[error("{what} of {name:?} does not fit in a newc header (32 bits)")]
    TooLarge {
        /// Which field.
        what: &'static str,
        /// The entry's name.
        name: String,
    },
    /// A file's reader gave fewer or more bytes than its stated size.
    #[error("{name:?}: expected {expected} bytes, the source gave {got}")]
    SizeMismatch {
        /// The entry's name.
        name: String,
        /// The size written in the header.
        expected: u32,
        /// What the reader gave.
        got: u64,
    },
}

/// File type bits of `st_mode`.
pub const S_IFDIR: u32 = 0o040_000;
/// Regular file.
pub const S_IFREG: u32 = 0o100_000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120_000;
/// Character device.
pub const S_IFCHR: u32 = 0o020_000;

/// Writes a newc archive entry by entry. Names are relative paths without a
/// leading `/` (`bin/busybox`).
#[derive(Debug)]
pub struct CpioWriter<W: Write> {
    out: W,
    next_ino: u32,
    written: u64,
}

struct Header<'a> {
    name: &'a str,
    mode: u32,
    nlink: u32,
    size: u32,
    rdev: (u32, u32),
}

impl<W: Write> CpioWriter<W> {
    /// Starts an archive on `out`.
    pub fn new(out: W) -> CpioWriter<W> {
        CpioWriter {
            out,
            next_ino: 1,
            written: 0,
        }
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), CpioError> {
        self.out.write_all(bytes)?;
        self.written += u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        Ok(())
    }

    fn pad(&mut self) -> Result<(), CpioError> {
        let rem = self.written % 4;
        if rem != 0 {
            let n = usize::try_from(4 - rem).unwrap_or(0);
            self.put(&[0u8; 3][..n])?;
        }
        Ok(())
    }

    fn header(&mut self, h: &Header<'_>) -> Result<(), CpioError> {
        let namesize = u32::try_from(h.name.len() + 1).map_err(|_| CpioError::TooLarge {
            what: "the name",
            name: h.name.to_owned(),
        })?;
        let ino = self.next_ino;
        self.next_ino = self.next_ino.wrapping_add(1);
        let fields = [
            ino, h.mode, 0, // uid
            0, // gid
            h.nlink, 0, // mtime
            h.size, 0, // devmajor
            0, // devminor
            h.rdev.0, h.rdev.1, namesize, 0, // check
        ];
        let mut text = String::with_capacity(110);
        text.push_str("070701");
        for f in fields {
            text.push_str(&format!("{f:08X}"));
        }
        self.put(text.as_bytes())?;
        self.put(h.name.as_bytes())?;
        self.put(&[0])?;
        self.pad()
    }

    /// A directory.
    pub fn dir(&mut self, name: &str, perm: u32) -> Result<(), CpioError> {
        self.header(&Header {
            name,
            mode: S_IFDIR | (perm & 0o7777),
            nlink: 2,
            size: 0,
            rdev: (0, 0),
        })
    }

    /// A regular file of `size` bytes read from `data`.
    pub fn file(
        &mut self,
        name: &str,
        perm: u32,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<(), CpioError> {
        let size32 = u32::try_from(size).map_err(|_| CpioError::TooLarge {
            what: "the size",
            name: name.to_owned(),
        })?;
        self.header(&Header {
            name,
            mode: S_IFREG | (perm & 0o7777),
            nlink: 1,
            size: size32,
            rdev: (0, 0),
        })?;
        let copied = io::copy(&mut data.take(size), &mut self.out)?;
        self.written += copied;
        if copied != size {
            return Err(CpioError::SizeMismatch {
                name: name.to_owned(),
                expected: size32,
                got: copied,
            });
        }
        self.pad()
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, name: &str, target: &str) -> Result<(), CpioError> {
        let size = u32::try_from(target.len()).map_err(|_| CpioError::TooLarge {
            what: "the link target",
            name: name.to_owned(),
        })?;
        self.header(&Header {
            name,
            mode: S_IFLNK | 0o777,
            nlink: 1,
            size,
            rdev: (0, 0),
        })?;
        self.put(target.as_bytes())?;
        self.pad()
    }

    /// A character device node (`/dev/console` is 5:1). No privilege is
    /// needed to put one in an archive.
    pub fn char_dev(
        &mut self,
        name: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        self.header(&Header {
            name,
            mode: S_IFCHR | (perm & 0o7777),
            nlink: 1,
            size: 0,
            rdev: (major, minor),
        })
    }

    /// Writes the trailer and returns the output.
    pub fn finish(mut self) -> Result<W, CpioError> {
        self.header(&Header {
            name: "TRAILER!!!",
            mode: 0,
            nlink: 1,
            size: 0,
            rdev: (0, 0),
        })?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(h: &[u8], i: usize) -> u32 {
        let s = std::str::from_utf8(&h[6 + 8 * i..14 + 8 * i]).expect("ascii");
        u32::from_str_radix(s, 16).expect("hex")
    }

    #[test]
    fn header_layout_and_padding() {
        let mut w = CpioWriter::new(Vec::new());
        w.file("ab", 0o755, 3, &mut &b"xyz"[..]).expect("file");
        let out = w.finish().expect("finish");
        assert_eq!(&out[..6], b"070701");
        assert_eq!(field(&out, 1), S_IFREG | 0o755);
        assert_eq!(field(&out, 6), 3, "filesize");
        assert_eq!(field(&out, 11), 3, "namesize counts the NUL");
        // 110 header + "ab\0" = 113, padded to 116; data 3, padded to 4.
        assert_eq!(&out[110..113], b"ab\0");
        assert_eq!(&out[113..116], &[0, 0, 0]);
        assert_eq!(&out[116..119], b"xyz");
        assert_eq!(out[119], 0);
        assert_eq!(&out[120..126], b"070701");
        assert_eq!(&out[230..241], b"TRAILER!!!\0");
        assert_eq!(out.len() % 4, 0);
    }

    #[test]
    fn symlink_and_device() {
        let mut w = CpioWriter::new(Vec::new());
        w.symlink("bin/sh", "busybox").expect("symlink");
        let len = w.written;
        w.char_dev("dev/console", 0o600, 5, 1).expect("dev");
        let out = w.finish().expect("finish");
        assert_eq!(field(&out, 1), S_IFLNK | 0o777);
        assert_eq!(field(&out, 6), 7);
        let dev = &out[usize::try_from(len).expect("usize")..];
        assert_eq!(field(dev, 1), S_IFCHR | 0o600);
        assert_eq!((field(dev, 9), field(dev, 10)), (5, 1));
    }

    #[test]
    fn short_reader_is_an_error() {
        let mut w = CpioWriter::new(Vec::new());
        let err = w.file("f", 0o644, 10, &mut &b"abc"[..]).expect_err("short");
        assert!(
            matches!(err, CpioError::SizeMismatch { got: 3, .. }),
            "{err}"
        );
    }

    /// The host's `cpio` reads what the writer writes.
    #[test]
    fn host_cpio_lists_the_archive() {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("bin", 0o755).expect("dir");
        w.file("bin/a", 0o644, 5, &mut &b"hello"[..]).expect("file");
        w.symlink("bin/b", "a").expect("symlink");
        let archive = w.finish().expect("finish");
        let mut child = std::process::Command::new("cpio")
            .args(["-it", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("cpio runs (scripts/setup.sh installs it)");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(&archive).expect("write");
        drop(stdin);
        let out = child.wait_with_output().expect("cpio");
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "bin\nbin/a\nbin/b\n");
    }
}
