//! An image taken over from an inherited fd: a supervisor opened the file or
//! block device (with the access the backend needs) and passed it by number.
//!
//! The fd is checked like a path would be (a file or a block device, raw,
//! not empty, opened for writing unless read-only); `direct` turns O_DIRECT
//! on with `F_SETFL` if it is off. It must not know where the fd came from.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use rustix::fs::{fcntl_getfl, fcntl_setfl, fstat, FileType, OFlags};

use super::{detect_format, probe_err, Image, ImageError, Result};

impl Image {
    /// Takes over `fd`, an open image. `read_only`: offer the disk read-only
    /// (the fd may then be read-only); `direct`: use O_DIRECT (set here if
    /// the fd lacks it). An fd opened with O_DIRECT keeps it either way.
    pub fn from_fd(fd: OwnedFd, read_only: bool, direct: bool) -> Result<Self> {
        let name = PathBuf::from(format!("inherited fd {}", fd.as_raw_fd()));
        rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)
            .map_err(|e| probe_err(&name, e.into()))?;
        let st = fstat(&fd).map_err(|e| ImageError::Unreadable {
            path: name.clone(),
            source: e.into(),
        })?;
        let block_device = match FileType::from_raw_mode(st.st_mode) {
            FileType::BlockDevice => true,
            FileType::RegularFile => false,
            _ => return Err(ImageError::NotADisk(name)),
        };
        let flags = fcntl_getfl(&fd).map_err(|e| probe_err(&name, e.into()))?;
        let mode = flags & OFlags::ACCMODE;
        if mode == OFlags::WRONLY {
            return Err(ImageError::Unreadable {
                path: name,
                source: io::Error::from_raw_os_error(libc::EBADF),
            });
        }
        if mode == OFlags::RDONLY && !read_only {
            return Err(ImageError::FdReadOnly(name));
        }
        // The probe reads an unaligned buffer: without O_DIRECT.
        let had_direct = flags.contains(OFlags::DIRECT);
        let set = |f: OFlags| fcntl_setfl(&fd, f).map_err(io::Error::from);
        if had_direct {
            set(flags - OFlags::DIRECT).map_err(|e| probe_err(&name, e))?;
        }
        let mut head = [0u8; 512];
        let file = File::from(fd);
        let len = read_head(&file, &mut head).map_err(|e| probe_err(&name, e))?;
        if let Some(format) = detect_format(&mut &head[..len]).map_err(|e| probe_err(&name, e))? {
            return Err(ImageError::NotRaw { path: name, format });
        }
        let direct = direct || had_direct;
        if direct {
            let flags = fcntl_getfl(&file).map_err(|e| probe_err(&name, e.into()))?;
            fcntl_setfl(&file, flags | OFlags::DIRECT).map_err(|e| match e {
                rustix::io::Errno::INVAL => ImageError::DirectUnsupported(name.clone()),
                e => probe_err(&name, e.into()),
            })?;
        }
        Self::from_open_file(file, name, read_only, direct, block_device)
    }
}

/// The first bytes of the image, read without moving the file offset.
fn read_head(file: &File, head: &mut [u8]) -> io::Result<usize> {
    let mut len = 0;
    while len < head.len() {
        let offset = u64::try_from(len).unwrap_or(u64::MAX);
        match file.read_at(&mut head[len..], offset) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::io::Write;

    fn image(bytes: &[u8], len: u64) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f.as_file().set_len(len).unwrap();
        f
    }

    fn fd(f: &tempfile::NamedTempFile, write: bool) -> OwnedFd {
        OpenOptions::new()
            .read(true)
            .write(write)
            .open(f.path())
            .unwrap()
            .into()
    }

    #[test]
    fn an_inherited_fd_is_sized_and_checked() {
        let f = image(b"", 1 << 20);
        let img = Image::from_fd(fd(&f, true), false, false).unwrap();
        assert_eq!(img.size(), 1 << 20);
        assert!(img
            .path()
            .display()
            .to_string()
            .starts_with("inherited fd "));
        let flags = rustix::io::fcntl_getfd(img.file()).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
    }

    #[test]
    fn a_read_only_fd_needs_read_only() {
        let f = image(b"", 1 << 20);
        let err = Image::from_fd(fd(&f, false), false, false).unwrap_err();
        assert!(err.to_string().contains("--read-only"), "{err}");
        assert!(Image::from_fd(fd(&f, false), true, false)
            .unwrap()
            .read_only());
    }

    #[test]
    fn a_qcow2_fd_is_refused() {
        let f = image(b"QFI\xfb\0\0\0\x03", 1 << 20);
        let err = Image::from_fd(fd(&f, true), false, false).unwrap_err();
        assert!(matches!(err, ImageError::NotRaw { .. }), "{err}");
    }

    #[test]
    fn a_directory_fd_is_not_a_disk() {
        let dir = tempfile::tempdir().unwrap();
        let d: OwnedFd = File::open(dir.path()).unwrap().into();
        let err = Image::from_fd(d, true, false).unwrap_err();
        assert!(matches!(err, ImageError::NotADisk(_)), "{err}");
    }
}
