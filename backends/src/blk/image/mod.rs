//! Opens what a PV disk is served from: a raw image file or a block device.
//!
//! Everything a user can get wrong about the image (missing, unreadable,
//! read-only without `--read-only`, a qcow2 or other format that is not raw,
//! empty, O_DIRECT not supported) is found here, before the socket exists.
//!
//! An image can also be an inherited, already open fd (`fd.rs`): a
//! supervisor opened it and the backend never sees a path.
//!
//! It must not know about guests, queues or vhost-user.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use pvio_frontend_protocol::blk::SECTOR_SIZE;

mod fd;

/// Errors opening an image, each with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No such file.
    #[error("image {} does not exist", .0.display())]
    Missing(PathBuf),
    /// The image cannot be opened for reading.
    #[error("cannot read image {}; check its permissions", .path.display())]
    Unreadable {
        /// The image path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Writable access was refused: the file or its filesystem is read-only.
    #[error(
        "image {} cannot be opened for writing; pass --read-only to serve it read-only",
        .path.display()
    )]
    ReadOnly {
        /// The image path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Neither a regular file nor a block device.
    #[error("{} is neither a regular file nor a block device", .0.display())]
    NotADisk(PathBuf),
    /// A known image format that is not raw.
    #[error(
        "{} is a {format} image; pvio serves raw images only: convert it with `qemu-img convert -O raw {} {}.raw`",
        .path.display(), .path.display(), .path.display()
    )]
    NotRaw {
        /// The image path.
        path: PathBuf,
        /// The format its magic names.
        format: &'static str,
    },
    /// Smaller than one sector.
    #[error("image {} is smaller than one 512-byte sector", .0.display())]
    Empty(PathBuf),
    /// The filesystem refused O_DIRECT.
    #[error("the filesystem under {} does not support O_DIRECT; run without --direct", .0.display())]
    DirectUnsupported(PathBuf),
    /// An inherited image fd opened read-only, served writable.
    #[error("{} was opened read-only; pass --read-only or open it read-write", .0.display())]
    FdReadOnly(PathBuf),
    /// Another I/O error while probing the image.
    #[error("cannot probe image {}", .path.display())]
    Probe {
        /// The image path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Local result type.
pub type Result<T> = std::result::Result<T, ImageError>;

/// How to open an image.
#[derive(Clone, Debug)]
pub struct ImageOptions {
    /// The image file or block device.
    pub path: PathBuf,
    /// Open read-only (and offer the disk read-only).
    pub read_only: bool,
    /// Open with O_DIRECT.
    pub direct: bool,
}

/// An open raw image.
#[derive(Debug)]
pub struct Image {
    file: File,
    path: PathBuf,
    size: u64,
    read_only: bool,
    direct: bool,
    block_device: bool,
    logical_block: u32,
    physical_block: u32,
}

impl Image {
    /// Opens and checks the image.
    pub fn open(opts: &ImageOptions) -> Result<Self> {
        let path = opts.path.as_path();
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ImageError::Missing(path.to_owned()),
            _ => ImageError::Unreadable {
                path: path.to_owned(),
                source: e,
            },
        })?;
        let block_device = meta.file_type().is_block_device();
        if !block_device && !meta.is_file() {
            return Err(ImageError::NotADisk(path.to_owned()));
        }

        // Probe the format through a plain read-only handle: O_DIRECT would
        // need an aligned buffer, and the probe must not need write access.
        let mut probe = File::open(path).map_err(|source| ImageError::Unreadable {
            path: path.to_owned(),
            source,
        })?;
        if let Some(format) = detect_format(&mut probe).map_err(|source| probe_err(path, source))? {
            return Err(ImageError::NotRaw {
                path: path.to_owned(),
                format,
            });
        }
        drop(probe);

        let file = open_file(path, opts.read_only, opts.direct)?;
        Self::from_open_file(
            file,
            path.to_owned(),
            opts.read_only,
            opts.direct,
            block_device,
        )
    }

    /// Sizes an opened, probed image and reads its block sizes.
    fn from_open_file(
        file: File,
        path: PathBuf,
        read_only: bool,
        direct: bool,
        block_device: bool,
    ) -> Result<Self> {
        let mut sizer = &file;
        // SEEK_END gives a block device's size as BLKGETSIZE64 does.
        let size = sizer
            .seek(SeekFrom::End(0))
            .map_err(|source| probe_err(&path, source))?;
        if size < SECTOR_SIZE {
            return Err(ImageError::Empty(path));
        }
        if size % SECTOR_SIZE != 0 {
            tracing::warn!(
                "image {} is not a whole number of sectors: the last {} bytes are not visible to the guest",
                path.display(),
                size % SECTOR_SIZE
            );
        }
        let (logical_block, physical_block) = if block_device {
            block_sizes(&file).map_err(|source| probe_err(&path, source))?
        } else {
            // Page-cache granularity: guests that align to it avoid
            // read-modify-write in the host.
            (512, 4096)
        };
        Ok(Self {
            file,
            path,
            size,
            read_only,
            direct,
            block_device,
            logical_block,
            physical_block,
        })
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The open file, owned.
    pub fn into_file(self) -> File {
        self.file
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Size in 512-byte sectors (a partial last sector is not counted).
    pub fn sectors(&self) -> u64 {
        self.size / SECTOR_SIZE
    }

    /// Opened read-only.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Opened with O_DIRECT.
    pub fn direct(&self) -> bool {
        self.direct
    }

    /// A block device rather than a file.
    pub fn is_block_device(&self) -> bool {
        self.block_device
    }

    /// The logical block size in bytes (what O_DIRECT must be aligned to).
    pub fn logical_block(&self) -> u32 {
        self.logical_block
    }

    /// The physical block size in bytes.
    pub fn physical_block(&self) -> u32 {
        self.physical_block
    }
}

fn probe_err(path: &Path, source: io::Error) -> ImageError {
    ImageError::Probe {
        path: path.to_owned(),
        source,
    }
}

fn open_file(path: &Path, read_only: bool, direct: bool) -> Result<File> {
    let mut opts = OpenOptions::new();
    opts.read(true).write(!read_only);
    if direct {
        opts.custom_flags(libc::O_DIRECT);
    }
    opts.open(path)
        .map_err(|e| open_error(path, e, read_only, direct))
}

/// Names why an open failed, with what to do about it.
fn open_error(path: &Path, e: io::Error, read_only: bool, direct: bool) -> ImageError {
    let denied = matches!(
        e.raw_os_error(),
        Some(libc::EACCES | libc::EROFS | libc::EPERM)
    );
    match e.raw_os_error() {
        Some(libc::EINVAL) if direct => ImageError::DirectUnsupported(path.to_owned()),
        _ if denied && !read_only => ImageError::ReadOnly {
            path: path.to_owned(),
            source: e,
        },
        _ => ImageError::Unreadable {
            path: path.to_owned(),
            source: e,
        },
    }
}

/// The formats refused, each by its full magic where qemu-img writes it.
/// qcow and qcow2 share a magic and are told apart by their version (see
/// [`qcow_format`]).
const MAGICS: &[(usize, &[u8], &str)] = &[
    (0, b"QED\0", "qed"),
    (0, b"KDMV", "vmdk"),
    (0, b"COWD", "vmdk"),
    (0, b"# Disk DescriptorFile", "vmdk"),
    (0x40, &[0x7f, 0x10, 0xda, 0xbe], "vdi"),
    (0, b"vhdxfile", "vhdx"),
    (0, b"conectix", "vpc (VHD)"),
    (0, b"WithoutFreeSpace", "parallels"),
    (0, b"WithouFreSpacExt", "parallels"),
    (0, b"Bochs Virtual HD Image\0", "bochs"),
];

/// The qcow family: the magic `QFI\xfb`, then a big-endian version, 1 for
/// qcow and 2 or 3 for qcow2. Anything else (a raw disk that happens to
/// start with "QFI") is not one.
fn qcow_format(head: &[u8]) -> Option<&'static str> {
    let version = head.strip_prefix(b"QFI\xfb")?.get(..4)?;
    match u32::from_be_bytes(version.try_into().ok()?) {
        1 => Some("qcow"),
        2 | 3 => Some("qcow2"),
        _ => None,
    }
}

/// Reads the first bytes of an image and names its format if it is a known
/// non-raw one.
pub fn detect_format<R: Read>(image: &mut R) -> io::Result<Option<&'static str>> {
    let mut head = [0u8; 512];
    let mut len = 0;
    while len < head.len() {
        match image.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    let head = &head[..len];
    let by_magic = || {
        MAGICS.iter().find_map(|&(offset, magic, name)| {
            let end = offset.checked_add(magic.len())?;
            (head.get(offset..end)? == magic).then_some(name)
        })
    };
    Ok(qcow_format(head).or_else(by_magic))
}

/// `BLKSSZGET`: the logical block size, `int`.
const BLKSSZGET: libc::c_ulong = 0x1268;
/// `BLKPBSZGET`: the physical block size, `unsigned int`.
const BLKPBSZGET: libc::c_ulong = 0x127b;

/// The logical and physical block sizes of a block device.
fn block_sizes(file: &File) -> io::Result<(u32, u32)> {
    let mut logical: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one `int` through the pointer, which points to
    // a live local of that type; the fd is an open block device.
    let ret = unsafe { libc::ioctl(file.as_raw_fd(), BLKSSZGET, &mut logical) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut physical: libc::c_uint = 0;
    // SAFETY: BLKPBSZGET writes one `unsigned int` through the pointer, which
    // points to a live local of that type.
    let ret = unsafe { libc::ioctl(file.as_raw_fd(), BLKPBSZGET, &mut physical) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let logical = u32::try_from(logical)
        .ok()
        .filter(|l| l.is_power_of_two() && *l >= 512)
        .unwrap_or(512);
    let physical = if physical.is_power_of_two() && physical >= logical {
        physical
    } else {
        logical
    };
    Ok((logical, physical))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn image_with(bytes: &[u8], len: u64) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f.as_file().set_len(len).unwrap();
        f
    }

    fn opts(path: &Path, read_only: bool) -> ImageOptions {
        ImageOptions {
            path: path.to_owned(),
            read_only,
            direct: false,
        }
    }

    #[test]
    fn raw_image_opens_with_its_size() {
        let f = image_with(b"", 1 << 20);
        let img = Image::open(&opts(f.path(), false)).unwrap();
        assert_eq!(img.size(), 1 << 20);
        assert_eq!(img.sectors(), 2048);
        assert!(!img.read_only());
        assert!(!img.is_block_device());
    }

    #[test]
    fn qcow2_magic_is_refused_naming_qemu_img_convert() {
        let f = image_with(b"QFI\xfb\0\0\0\x03", 1 << 16);
        let err = Image::open(&opts(f.path(), false)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("qcow2"), "{msg}");
        assert!(msg.contains("qemu-img convert -O raw"), "{msg}");
    }

    #[test]
    fn qcow_and_qcow2_are_told_apart_by_version() {
        let v = |n: u8| [b'Q', b'F', b'I', 0xfb, 0, 0, 0, n, 0, 0];
        assert_eq!(detect_format(&mut &v(1)[..]).unwrap(), Some("qcow"));
        assert_eq!(detect_format(&mut &v(2)[..]).unwrap(), Some("qcow2"));
        assert_eq!(detect_format(&mut &v(3)[..]).unwrap(), Some("qcow2"));
        // Not a version either format has, or cut short: raw.
        assert_eq!(detect_format(&mut &v(0)[..]).unwrap(), None);
        assert_eq!(detect_format(&mut &v(9)[..]).unwrap(), None);
        assert_eq!(detect_format(&mut &b"QFI\xfb\0\0"[..]).unwrap(), None);
    }

    #[test]
    fn raw_disk_starting_with_qfi_is_served() {
        let f = image_with(b"QFI is just text on this disk", 1 << 16);
        assert_eq!(detect_format(&mut f.reopen().unwrap()).unwrap(), None);
        let img = Image::open(&opts(f.path(), false)).unwrap();
        assert_eq!(img.size(), 1 << 16);
    }

    #[test]
    fn qcow_v1_is_refused_as_qcow() {
        let f = image_with(b"QFI\xfb\0\0\0\x01", 1 << 16);
        let msg = Image::open(&opts(f.path(), false)).unwrap_err().to_string();
        assert!(msg.contains("is a qcow image"), "{msg}");
        assert!(msg.contains("qemu-img convert -O raw"), "{msg}");
    }

    #[test]
    fn other_formats_are_detected_by_their_full_magic() {
        let mut vdi = [0u8; 0x44];
        vdi[0x40..].copy_from_slice(&[0x7f, 0x10, 0xda, 0xbe]);
        assert_eq!(detect_format(&mut &vdi[..]).unwrap(), Some("vdi"));
        for (magic, name) in [
            (&b"QED\0...."[..], "qed"),
            (b"KDMV....", "vmdk"),
            (b"COWD....", "vmdk"),
            (b"# Disk DescriptorFile\n", "vmdk"),
            (b"vhdxfile", "vhdx"),
            (b"conectix", "vpc (VHD)"),
            (b"WithouFreSpacExt", "parallels"),
            (b"Bochs Virtual HD Image\0", "bochs"),
        ] {
            assert_eq!(detect_format(&mut &magic[..]).unwrap(), Some(name));
        }
        // A prefix of a magic is not the magic.
        for raw in [&b"QED"[..], b"KDM", b"vhdx", b"conect", b"QFI"] {
            assert_eq!(detect_format(&mut &raw[..]).unwrap(), None, "{raw:?}");
        }
    }

    #[test]
    fn missing_image_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = Image::open(&opts(&dir.path().join("nope.img"), false)).unwrap_err();
        assert!(matches!(err, ImageError::Missing(_)), "{err}");
    }

    #[test]
    fn empty_image_is_refused() {
        let f = image_with(b"", 100);
        let err = Image::open(&opts(f.path(), false)).unwrap_err();
        assert!(matches!(err, ImageError::Empty(_)), "{err}");
    }

    #[test]
    fn directory_is_not_a_disk() {
        let dir = tempfile::tempdir().unwrap();
        let err = Image::open(&opts(dir.path(), true)).unwrap_err();
        assert!(matches!(err, ImageError::NotADisk(_)), "{err}");
    }

    #[test]
    fn refused_write_access_asks_for_read_only() {
        let p = Path::new("/x.img");
        for errno in [libc::EROFS, libc::EACCES, libc::EPERM] {
            let e = open_error(p, io::Error::from_raw_os_error(errno), false, false);
            assert!(matches!(e, ImageError::ReadOnly { .. }), "{e}");
            assert!(e.to_string().contains("--read-only"), "{e}");
        }
        let e = open_error(p, io::Error::from_raw_os_error(libc::EACCES), true, false);
        assert!(matches!(e, ImageError::Unreadable { .. }), "{e}");
        let e = open_error(p, io::Error::from_raw_os_error(libc::EINVAL), false, true);
        assert!(e.to_string().contains("without --direct"), "{e}");
    }

    #[test]
    fn read_only_open_needs_no_write_access() {
        use std::os::unix::fs::PermissionsExt;
        let f = image_with(b"", 1 << 16);
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o444)).unwrap();
        assert!(Image::open(&opts(f.path(), true)).unwrap().read_only());
    }
}
